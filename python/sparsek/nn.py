# SparseKAttention: a forward-only torch.nn.Module over the compiled layer (CPU tensors: the CPU library; CUDA tensors: the GPU library).
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
viewed as CUDA tensors); nothing is copied to the host. Libraries come from
the compiler's disk cache, so a machine without LLVM runs the ones carried
from a machine with it (`CompiledLayer.prebuild`, examples/tiny_transformer.py
--prebuild). On CPU tensors the module is differentiable: when autograd is
on (or the module is float64, `.double()`), `prefill` without a cache runs
`sparsek.autograd.sparsek_layer`, whose attention and scores have compiled
backward ops (float64: the reference). The CUDA path is forward-only:
backward raises a RuntimeError.
"""

import torch

from . import autograd
from .compiled_layer import CompiledLayer
from .cpu import _host_array
from .kv_cache import KVCache
from .layer import attention_config

_DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
TORCH_DTYPES = {v: k for k, v in _DTYPES.items()}


def _to_numpy(t, dtype):
    """A numpy view of a CPU tensor (bf16 as uint16 bits); copies only if not contiguous."""
    t = t.detach()
    if t.dtype != dtype:
        raise TypeError(f"expected a {dtype} tensor, got {t.dtype}")
    return _host_array(t.contiguous())


def _from_numpy(a, dtype):
    t = torch.from_numpy(a)
    return t.view(torch.bfloat16) if dtype == torch.bfloat16 else t


class _ForwardOnly(torch.autograd.Function):
    """Runs `fn` (numpy in, numpy out) and refuses to differentiate it."""

    @staticmethod
    def forward(ctx, fn, *tensors):
        return fn()

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("SparseKAttention has no backward here: gradients exist on CPU tensors "
                           "without a KV cache (the GPU lowering of the gradient ops does not exist "
                           "yet; use sparsek.reference's *_vjp functions for CUDA)")


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
        self._layer = CompiledLayer(self.cfg)  # compiled on first use

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

    def _weights(self):
        return {n: _to_numpy(t, torch.float32 if n in ("bias", "slope") else self.dtype)
                for n, t in self._named().items()}

    def _cuda_weights(self):
        return {n: t.detach() for n, t in self._named().items()}

    def _run(self, fn, x, out_dtype, cuda_fn=None, grad_fn=None):
        """fn() (numpy out) on CPU tensors, cuda_fn() (a CUDA tensor) on CUDA tensors; grad_fn()
        (differentiable) on CPU tensors when gradients are wanted or the module is float64."""
        _check_device(x, self._params())
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self._params()))
        if grad_fn is not None and not x.is_cuda and (needs_grad or x.dtype == torch.float64):
            return grad_fn()
        if x.is_cuda:
            call = cuda_fn
        else:
            def call():
                return _from_numpy(fn(), out_dtype)
        return _ForwardOnly.apply(call, x, *self._params()) if needs_grad else call()

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

    def prefill(self, x, cache=None, seq_ids=None, layer=0):
        """Like forward; with a cache, also appends the T tokens to the sequences seq_ids."""
        if cache is not None and (seq_ids is None or len(seq_ids) != x.shape[0]):
            raise ValueError("prefill with a cache needs one sequence id per batch row")

        def fn():
            xa = _to_numpy(x, self.dtype)
            if cache is None:
                return self._layer(xa, self._weights())
            out, key, value, u = self._layer(xa, self._weights(), return_kv=True)
            self._layer.fill_cache(cache, layer, seq_ids, key, value, u)
            return out

        def cuda_fn():
            self._check_x(x)
            if cache is None:
                return self._layer.cuda_prefill(x, self._cuda_weights())
            # Check the cache before computing anything.
            self._layer._cuda_check_cache(cache, x.device)
            out, key, value, u = self._layer.cuda_prefill(x, self._cuda_weights(), return_kv=True)
            self._layer.cuda_fill_cache(cache, layer, seq_ids, key, value, u)
            return out

        def grad_fn():
            return autograd.sparsek_layer(x, self.cfg, self._named())
        return self._run(fn, x, self.dtype, cuda_fn, grad_fn if cache is None else None)

    def decode(self, x, cache, seq_ids, layer=0):
        """x [B, C], the next token of each sequence seq_ids[b] -> [B, C]; appends it to the cache."""
        def cuda_fn():
            self._check_x(x)
            return self._layer.cuda_decode(x, self._cuda_weights(), cache, layer, seq_ids)
        return self._run(lambda: self._layer.decode(_to_numpy(x, self.dtype), self._weights(), cache,
                                                    layer, seq_ids), x, self.dtype, cuda_fn)
