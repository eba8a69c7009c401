# SparseKAttention: a torch.nn.Module over the compiled layer (CPU tensors: the CPU library; CUDA tensors: the GPU library), differentiable through sparsek.autograd.
"""PyTorch integration: `SparseKAttention`.

    attn = SparseKAttention(embed_dim=64, num_heads=4, num_kv_heads=2, k=16, w=16)
    y = attn(x)                                   # x [B, T, C], positions 0..T-1
    cache = attn.new_cache(max_seqs=B)            # runtime KV cache (one layer), on the module's device
    seqs = [cache.alloc_seq() for _ in range(B)]
    y = attn.prefill(x, cache, seqs)              # also fills the cache
    y_t = attn.decode(x_t, cache, seqs)           # x_t [B, C], one new token each

CPU tensors run the CPU library compiled from `sparsek.layer` (numpy views
of contiguous tensors, no copies) over a CPU KV cache. CUDA tensors run the
same layer compiled by sparsek-gpu-pipeline (`CompiledLayer.cuda_*`): the
compiled entry points get the tensors' device pointers and torch's current
stream of their device, over a KV cache with the CUDA backend (its slots
viewed as CUDA tensors); nothing is copied to the host. Both run through the
operators torch.ops.sparsek.* (sparsek.torch_ops), so that
torch.compile(model, fullgraph=True) traces the module without graph breaks
(training and varlen batches, `prefill(..., cu_seqlens=...)`, included).
Libraries come from the compiler's disk cache, so a machine without LLVM
runs the ones carried from a machine with it (`CompiledLayer.prebuild`,
examples/tiny_transformer.py --prebuild). The module is differentiable on
CPU and CUDA tensors: `prefill` without a cache with gradients wanted runs
`sparsek.autograd.sparsek_layer` in eager mode (scores and attention as
separate autograd nodes over the compiled forward and gradient ops; CUDA
tensors: their GPU lowering; a float64 module: the reference), and under
torch.compile torch.ops.sparsek.prefill, whose registered backward runs the
same gradient ops, so that a training step compiles without a graph break. A
prefill into a KV cache, a varlen prefill and decode are forward-only: their
backward raises.
"""

import torch

from . import autograd, torch_ops
from .kv_cache import KVCache
from .layer import attention_config

_DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
TORCH_DTYPES = {v: k for k, v in _DTYPES.items()}


def _check_device(x, params):
    """All tensors on x's device; a clear error otherwise."""
    for t in params:
        if t.device != x.device:
            raise ValueError(f"SparseKAttention: the input is on {x.device} but a parameter is on "
                             f"{t.device}; move the module with .to(device)")
    if x.device.type not in ("cpu", "cuda"):
        raise NotImplementedError(f"SparseKAttention runs on CPU and CUDA tensors, got {x.device}")


class SparseKAttention(torch.nn.Module):
    """SparseK attention (SPEC 7): projections, scoring network, selection, sparse attention.

    Parameters use the layout y = x @ W: wq [C, Hq*D], wk/wv [C, Hkv*D],
    wsc [Hkv, C], score_bias/score_slope [Hkv], wo [Hq*D, C].
    """

    def __init__(self, embed_dim, num_heads, num_kv_heads=None, head_dim=None, k=64, w=64,
                 score_bias=True, score_slope=False, scale=None, dtype=torch.float32):
        super().__init__()
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {list(_DTYPES)}, got {dtype}")
        self.cfg = attention_config(embed_dim, num_heads, num_kv_heads, head_dim, k=k, w=w,
                                    score_bias=score_bias, score_slope=score_slope, scale=scale,
                                    dtype=_DTYPES[dtype])
        self.dtype = dtype
        C, Hq, Hkv, D = self.cfg.C, self.cfg.Hq, self.cfg.Hkv, self.cfg.D
        p = lambda *shape, dt=dtype: torch.nn.Parameter(torch.empty(*shape, dtype=dt))  # noqa: E731
        self.wq, self.wk, self.wv = p(C, Hq * D), p(C, Hkv * D), p(C, Hkv * D)
        self.wsc, self.wo = p(Hkv, C), p(Hq * D, C)
        self.score_bias = p(Hkv, dt=torch.float32) if score_bias else None
        self.score_slope = p(Hkv, dt=torch.float32) if score_slope else None
        self.reset_parameters()
        self._layer = torch_ops.compiled_layer(self.cfg)  # compiled on first use
        self._op_config = torch_ops.config_key(self.cfg)

    @torch.no_grad()
    def reset_parameters(self):
        for w in (self.wq, self.wk, self.wv, self.wo):
            torch.nn.init.normal_(w, std=w.shape[0] ** -0.5)
        torch.nn.init.normal_(self.wsc, std=self.wsc.shape[1] ** -0.5)
        if self.score_bias is not None:
            self.score_bias.zero_()
        if self.score_slope is not None:
            self.score_slope.zero_()

    def _params(self):
        return [t for t in (self.wq, self.wk, self.wv, self.wsc, self.score_bias, self.score_slope,
                            self.wo) if t is not None]

    def _named(self):
        named = {"wq": self.wq, "wk": self.wk, "wv": self.wv, "wsc": self.wsc,
                 "bias": self.score_bias, "slope": self.score_slope, "wo": self.wo}
        return {n: named[n] for n in self.cfg.weight_names()}

    def _op_args(self):
        """The weights and config that every torch.ops.sparsek layer op takes after x."""
        return (self.wq, self.wk, self.wv, self.wsc, self.score_bias, self.score_slope, self.wo,
                self._op_config)

    def _run(self, call, x, grad_fn=None):
        """call() (torch.ops.sparsek ops on x's device; prefill's backward is
        torch.ops.sparsek.prefill_backward, the others' raises) after checks; grad_fn()
        (sparsek.autograd.sparsek_layer) instead for a float64 module, and in eager mode when
        gradients are wanted: there its parts (scores, attention) are separate autograd nodes,
        which a caller can inspect or detach. Under torch.compile the op, one opaque node with
        its registered backward, keeps the graph whole."""
        _check_device(x, self._params())
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self._params()))
        eager_grad = needs_grad and not torch.compiler.is_compiling()
        if grad_fn is not None and (x.dtype == torch.float64 or eager_grad):
            return grad_fn()
        self._check_x(x)
        return call()

    def new_cache(self, max_seqs=1, num_layers=1, score_capacity=None, device=None):
        """A KV cache shaped for this module (layer index 0..num_layers-1), on `device`
        (default: the module's): the CPU backend for the CPU, the CUDA backend for a GPU."""
        c = self.cfg
        device = torch.device(device) if device is not None else self.wq.device
        backend, index = ("cuda", device.index if device.index is not None else torch.cuda.current_device()) \
            if device.type == "cuda" else ("cpu", 0)
        return KVCache(num_layers, c.Hkv, c.k, c.w, c.D, dtype=c.dtype, max_seqs=max_seqs,
                       score_capacity=score_capacity, backend=backend, device=index)

    def _check_x(self, x):
        if x.dtype != self.dtype:
            raise TypeError(f"expected a {self.dtype} tensor, got {x.dtype}")

    def forward(self, x):
        """x [B, T, C] at positions 0..T-1 -> [B, T, C], without a cache."""
        return self.prefill(x)

    def prefill(self, x, cache=None, seq_ids=None, layer=0, cu_seqlens=None):
        """Like forward; with a cache, also appends the T tokens to the sequences seq_ids.

        With `cu_seqlens` ([B + 1] offsets rising from 0, host values or a tensor) x holds
        prompts of different lengths packed as in FlashAttention's varlen layout: x [N, C],
        sequence b owning rows cu_seqlens[b]:cu_seqlens[b + 1] at positions 0.. of its own;
        returns [N, C] in one compiled call (sparsek.varlen.Layer), and with a cache fills
        the B sequences seq_ids in one call (KVCache.append_varlen); both through
        torch.ops.sparsek ops (prefill_varlen(_kv), fill_cache_varlen), so torch.compile
        traces it without a graph break. Forward-only: a gradient through it raises."""
        if cu_seqlens is not None:
            return self._prefill_varlen(x, cache, seq_ids, layer, cu_seqlens)
        if cache is not None and (seq_ids is None or len(seq_ids) != x.shape[0]):
            raise ValueError("prefill with a cache needs one sequence id per batch row")

        def call():
            if cache is None:
                return torch.ops.sparsek.prefill(x, *self._op_args())
            out, key, value, u = torch.ops.sparsek.prefill_kv(x, *self._op_args())
            torch.ops.sparsek.fill_cache(key, value, u, self._op_config, cache.handle, layer,
                                         [int(s) for s in seq_ids])
            return out

        def grad_fn():
            return autograd.sparsek_layer(x, self.cfg, self._named())
        return self._run(call, x, grad_fn if cache is None else None)

    def _prefill_varlen(self, x, cache, seq_ids, layer, cu_seqlens):
        _check_device(x, self._params())
        self._check_x(x)
        if x.dim() != 2:
            raise ValueError(f"a varlen prefill takes packed rows x [N, C], got {tuple(x.shape)}")
        cu = cu_seqlens if isinstance(cu_seqlens, torch.Tensor) else torch.as_tensor(cu_seqlens)
        if cache is None:
            return torch.ops.sparsek.prefill_varlen(x, cu, *self._op_args())
        if seq_ids is None or len(seq_ids) != cu.shape[0] - 1:
            raise ValueError("a varlen prefill with a cache needs one sequence id per sequence")
        out, key, value, u = torch.ops.sparsek.prefill_varlen_kv(x, cu, *self._op_args())
        torch.ops.sparsek.fill_cache_varlen(key, value, u, cu, cache.handle, layer,
                                            [int(s) for s in seq_ids])
        return out

    def decode(self, x, cache, seq_ids, layer=0):
        """x [B, C], the next token of each sequence seq_ids[b] -> [B, C]; appends it to the cache."""
        return self._run(lambda: torch.ops.sparsek.decode(
            x, *self._op_args(), cache.handle, layer, [int(s) for s in seq_ids]), x)
