# Differentiable SparseK on CPU tensors: torch.autograd Functions over the compiled forward and gradient ops (float64: the reference).
"""PyTorch autograd for SparseK attention on the CPU.

    from sparsek import autograd
    o = autograd.sparsek_attention(q, key, value, u, k=16, w=16)   # q [B, Hq, T, D], u [B, Hkv, S]
    u = autograd.score(x, wsc, bias, slope)                          # x [B, T, C]
    y = autograd.sparsek_layer(x, cfg, weights)                       # a whole layer (LayerConfig)

Two paths, chosen by the tensors' dtype:
- float32 (also float16/bfloat16 data): the forward is the compiled
  `sparsek.select_attention` / `sparsek.score`, the backward the compiled
  `sparsek.select_attention_grad` / `sparsek.score_grad` (SPEC 5
  "Backward"; gradients in f32, cast to the input's dtype). Libraries are
  compiled once per (k, w, scale, dtype) and cached on disk.
- float64: forward and backward are `sparsek.reference` (numpy float64),
  so that `torch.autograd.gradcheck` checks the backward formulas against
  finite differences of the forward at float64 precision. The compiled f32
  path is held to that reference by python/test/test_cpu_grad.py (SPEC 8:
  1e-3 relative); gradcheck itself cannot check f32 code honestly (its
  finite differences need float64).

The selection is recomputed from u in the backward (see
`sparsek.select_attention_grad`): nothing but the inputs is saved. Scores
reach the loss only through the gates, so du is zero outside the SPARSEK
support, and it is piecewise: finite differences across a top-k crossing or
a clip kink do not match any gradient (SPEC 3).
"""

import numpy as np
import torch

from . import ir, reference
from .layer import LayerConfig

_ELEM = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
_LIBS = {}


def _library(key, *funcs):
    """The CPU library of `funcs`, compiled once per process (and cached on disk)."""
    if key not in _LIBS:
        from . import toolchain
        from .cpu import CompiledLibrary

        _LIBS[key] = CompiledLibrary(toolchain.compile_shared_library(ir.module(*funcs)))
    return _LIBS[key]


def _attention_library(k, w, scale, elem):
    return _library(("attention", k, w, scale, elem),
                    ir.select_attention_function("forward", k, w, elem=elem, scale=scale),
                    ir.select_attention_grad_function("backward", k, w, elem=elem, scale=scale))


def _score_library(bias, slope, elem):
    return _library(("score", bias, slope, elem),
                    ir.score_function("forward", elem=elem, bias=bias, slope=slope, offset=True),
                    ir.score_grad_function("backward", elem=elem, offset=True))


def _np64(t):
    return t.detach().cpu().numpy().astype(np.float64)


def _c(t):
    return t.detach().contiguous()


def _check_cpu(*tensors):
    for t in tensors:
        if t is not None and t.device.type != "cpu":
            raise NotImplementedError(
                "sparsek.autograd differentiates CPU tensors only: the GPU lowering of the "
                f"gradient ops does not exist yet (got a tensor on {t.device})")


def _check_dtypes(data, f32_tensors):
    """Data tensors share one dtype; scores and score parameters are float32 (float64 on the
    reference path)."""
    dtype = data[0].dtype
    if dtype != torch.float64 and dtype not in _ELEM:
        raise TypeError(f"expected float64, float32, float16 or bfloat16 tensors, got {dtype}")
    for t in data:
        if t.dtype != dtype:
            raise TypeError(f"all data tensors must share one dtype ({dtype}), got {t.dtype}")
    want = torch.float64 if dtype == torch.float64 else torch.float32
    for t in f32_tensors:
        if t is not None and t.dtype != want:
            raise TypeError(f"scores and score parameters must be {want} here, got {t.dtype}")
    return dtype


class SelectAttention(torch.autograd.Function):
    """o = select_attention(q, key, value, u; k, w, scale) with its SPEC 5 backward."""

    @staticmethod
    def forward(ctx, q, key, value, u, k, w, scale):
        _check_cpu(q, key, value, u)
        dtype = _check_dtypes([q, key, value], [u])
        ctx.save_for_backward(q, key, value, u)
        ctx.k, ctx.w, ctx.scale = k, w, scale
        if dtype == torch.float64:
            o = reference.sparsek_attention(_np64(q), _np64(key), _np64(value), _np64(u), k, w, scale)
            return torch.from_numpy(o)
        B, Hq, T, _ = q.shape
        out = torch.empty((B, Hq, T, value.shape[3]), dtype=dtype)
        _attention_library(k, w, scale, _ELEM[dtype]).call(
            "forward", _c(q), _c(key), _c(value), _c(u), out)
        return out

    @staticmethod
    def backward(ctx, do):
        q, key, value, u = ctx.saved_tensors
        k, w, scale = ctx.k, ctx.w, ctx.scale
        if q.dtype == torch.float64:
            grads = reference.sparsek_attention_vjp(_np64(q), _np64(key), _np64(value), _np64(u),
                                                    k, w, _np64(do), scale)
            grads = [torch.from_numpy(g) for g in grads]
        else:
            grads = [torch.zeros(t.shape, dtype=torch.float32) for t in (q, key, value, u)]
            _attention_library(k, w, scale, _ELEM[q.dtype]).call(
                "backward", _c(q), _c(key), _c(value), _c(u), _c(do.to(q.dtype)), *grads)
            grads = [g.to(t.dtype) for g, t in zip(grads, (q, key, value, u))]
        return (*grads, None, None, None)


class Score(torch.autograd.Function):
    """u = score(x, wsc, bias, slope; offset) (SPEC 2) with its chain-rule backward."""

    @staticmethod
    def forward(ctx, x, wsc, bias, slope, offset):
        _check_cpu(x, wsc, bias, slope)
        dtype = _check_dtypes([x, wsc], [bias, slope])
        ctx.save_for_backward(x, wsc)
        ctx.offset, ctx.has = offset, (bias is not None, slope is not None)
        if dtype == torch.float64:
            u = reference.score(_np64(x), _np64(wsc), None if bias is None else _np64(bias),
                                None if slope is None else _np64(slope), offset)
            return torch.from_numpy(u)
        B, T, _ = x.shape
        u = torch.empty((B, wsc.shape[0], T), dtype=torch.float32)
        extra = [_c(t) for t in (bias, slope) if t is not None]
        _score_library(bias is not None, slope is not None, _ELEM[dtype]).call(
            "forward", _c(x), _c(wsc), *extra, int(offset), u)
        return u

    @staticmethod
    def backward(ctx, du):
        x, wsc = ctx.saved_tensors
        if x.dtype == torch.float64:
            grads = [torch.from_numpy(g) for g in reference.score_vjp(_np64(x), _np64(wsc), _np64(du),
                                                                       ctx.offset)]
        else:
            Hkv = wsc.shape[0]
            grads = [torch.zeros(s, dtype=torch.float32) for s in (x.shape, wsc.shape, (Hkv,), (Hkv,))]
            _score_library(*ctx.has, _ELEM[x.dtype]).call(
                "backward", _c(x), _c(wsc), _c(du.to(torch.float32)), int(ctx.offset), *grads)
            grads[0], grads[1] = grads[0].to(x.dtype), grads[1].to(wsc.dtype)
        dbias = grads[2] if ctx.has[0] else None
        dslope = grads[3] if ctx.has[1] else None
        return grads[0], grads[1], dbias, dslope, None


def sparsek_attention(q, key, value, u, k, w, scale=None):
    """SPEC 7's composite, differentiable in q, key, value and u (CPU tensors)."""
    return SelectAttention.apply(q, key, value, u, int(k), int(w), scale)


def score(x, wsc, bias=None, slope=None, offset=0):
    """SPEC 2's scores [B, Hkv, T], differentiable in x, wsc, bias and slope (CPU tensors)."""
    return Score.apply(x, wsc, bias, slope, int(offset))


def sparsek_layer(x, cfg: LayerConfig, weights):
    """The layer of `sparsek.layer` (projections, scores, composite attention, output
    projection) on x [B, T, C] at positions 0..T-1, differentiable in x and every weight.
    `weights` maps the names of cfg.weight_names() to tensors."""
    B, T, C = x.shape
    Hq, Hkv, D = cfg.Hq, cfg.Hkv, cfg.D
    _check_cpu(x, *weights.values())
    _check_dtypes([x] + [weights[n] for n in ("wq", "wk", "wv", "wsc", "wo")],
                  [weights.get("bias") if cfg.bias else None, weights.get("slope") if cfg.slope else None])

    def heads(wt, n):
        return (x @ wt).view(B, T, n, D).transpose(1, 2)

    q, key, value = heads(weights["wq"], Hq), heads(weights["wk"], Hkv), heads(weights["wv"], Hkv)
    u = score(x, weights["wsc"], weights.get("bias") if cfg.bias else None,
              weights.get("slope") if cfg.slope else None)
    o = sparsek_attention(q, key, value, u, cfg.k, cfg.w, cfg.scale)
    return o.transpose(1, 2).reshape(B, T, Hq * D) @ weights["wo"]
