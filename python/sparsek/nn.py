# SparseKAttention: a forward-only torch.nn.Module over the compiled layer (CPU tensors now; CUDA raises until the GPU issues land).
"""PyTorch integration: `SparseKAttention`.

    attn = SparseKAttention(embed_dim=64, num_heads=4, num_kv_heads=2, k=16, w=16)
    y = attn(x)                                   # x [B, T, C], positions 0..T-1
    cache = attn.new_cache(max_seqs=B)            # runtime KV cache (one layer)
    seqs = [cache.alloc_seq() for _ in range(B)]
    y = attn.prefill(x, cache, seqs)              # also fills the cache
    y_t = attn.decode(x_t, cache, seqs)           # x_t [B, C], one new token each

CPU tensors run the CPU library compiled from `sparsek.layer` (numpy views
of contiguous tensors, no copies). CUDA tensors raise NotImplementedError:
the GPU entry points come with the GPU pipeline. The intended path passes
device pointers and `torch.cuda.current_stream().cuda_stream` to the
compiled entry points (see `_cuda_call`), with no host copies.
The module is forward-only: backward raises a RuntimeError.
"""

import torch

from .compiled_layer import CompiledLayer
from .cpu import _host_array
from .kv_cache import KVCache
from .layer import LayerConfig

_DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}


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
        raise RuntimeError("SparseKAttention is forward-only: the compiled SparseK layer has no "
                           "backward yet (use sparsek.reference's *_vjp functions for gradients)")


def _cuda_call(module, *tensors):
    """The CUDA call path: device pointers of contiguous tensors and torch's current stream.

    Raises NotImplementedError until sparsek-gpu-pipeline produces entry
    points to call; nothing is copied to the host.
    """
    device = tensors[0].device
    for t in tensors:
        if not t.is_cuda or t.device != device:
            raise ValueError(f"all tensors must be on {device}, got one on {t.device}")
    raise NotImplementedError(
        f"SparseKAttention on CUDA tensors ({device}) is not available yet: the GPU entry points "
        "(sparsek-gpu-pipeline) have not landed. Move the module and inputs to the CPU to use the "
        "compiled CPU path.")


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
        num_kv_heads = num_kv_heads or num_heads
        head_dim = head_dim or embed_dim // num_heads
        self.cfg = LayerConfig(C=embed_dim, Hq=num_heads, Hkv=num_kv_heads, D=head_dim, k=k, w=w,
                               dtype=_DTYPES[dtype], bias=score_bias, slope=score_slope, scale=scale)
        self.dtype = dtype
        C, Hq, Hkv, D = embed_dim, num_heads, num_kv_heads, head_dim
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

    def _weights(self):
        named = {"wq": self.wq, "wk": self.wk, "wv": self.wv, "wsc": self.wsc,
                 "bias": self.score_bias, "slope": self.score_slope, "wo": self.wo}
        return {n: _to_numpy(named[n], torch.float32 if n in ("bias", "slope") else self.dtype)
                for n in self.cfg.weight_names()}

    def _run(self, fn, x, out_dtype):
        if x.is_cuda or any(p.is_cuda for p in self._params()):
            _cuda_call(self, x, *self._params())
        if x.device.type != "cpu":
            raise NotImplementedError(f"SparseKAttention runs on CPU tensors only, got {x.device}")

        def call():
            return _from_numpy(fn(), out_dtype)
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self._params()))
        return _ForwardOnly.apply(call, x, *self._params()) if needs_grad else call()

    def new_cache(self, max_seqs=1, num_layers=1, score_capacity=None):
        """A CPU KV cache shaped for this module (layer index 0..num_layers-1)."""
        c = self.cfg
        return KVCache(num_layers, c.Hkv, c.k, c.w, c.D, dtype=c.dtype, max_seqs=max_seqs,
                       score_capacity=score_capacity)

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
        return self._run(fn, x, self.dtype)

    def decode(self, x, cache, seq_ids, layer=0):
        """x [B, C], the next token of each sequence seq_ids[b] -> [B, C]; appends it to the cache."""
        return self._run(lambda: self._layer.decode(_to_numpy(x, self.dtype), self._weights(), cache,
                                                    layer, seq_ids), x, self.dtype)
