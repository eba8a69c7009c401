# Differentiable SparseK on CPU and CUDA tensors: torch.autograd Functions over the compiled forward and gradient ops (float64: the reference).
"""PyTorch autograd for SparseK attention on CPU and CUDA tensors.

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

CUDA tensors (float32, float16, bfloat16) run the same ops compiled by
sparsek-gpu-pipeline on torch's current stream (device pointers, no host
copies): the forward as in inference, the backward through the gradient
ops' parallel GPU lowering (one thread per query, key or element; sums over
queries added atomically). The GPU libraries need D = Dv (they are compiled
with static head dimensions) and come from the compiler's disk cache, so a
machine without LLVM runs ones prebuilt elsewhere (`prebuild_cuda`).
float64 CUDA tensors run the reference on the host and return to the device.

The selection is recomputed from u in the backward (see
`sparsek.select_attention_grad`): nothing but the inputs is saved. Scores
reach the loss only through the gates, so du is zero outside the SPARSEK
support, and it is piecewise: finite differences across a top-k crossing or
a clip kink do not match any gradient (SPEC 3).
"""

import numpy as np
import torch

from . import grad_libraries, reference
from .layer import LayerConfig

_ELEM = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
_LIBS = {}


def _library(key, text):
    """The CPU library of the module `text`, compiled once per process (and cached on disk)."""
    if key not in _LIBS:
        from . import toolchain
        from .cpu import CompiledLibrary

        _LIBS[key] = CompiledLibrary(toolchain.compile_shared_library(text))
    return _LIBS[key]


def _gpu_library(key, text):
    """The GPU library of the module `text` (sparsek-gpu-pipeline, through the compiler's disk
    cache)."""
    key = ("cuda",) + key
    if key not in _LIBS:
        from . import gpu

        _LIBS[key] = gpu.GPULibrary(gpu.compile(text))
    return _LIBS[key]


def _attention_library(k, w, scale, elem, head_dim=None):
    """CPU library when head_dim is None, else the GPU one with D = Dv = head_dim static."""
    if head_dim is None:
        return _library(("attention", k, w, scale, elem),
                        grad_libraries.attention_module(k, w, scale, elem))
    return _gpu_library(("attention", k, w, scale, elem, head_dim),
                        grad_libraries.attention_module(k, w, scale, elem, head_dim))


def _score_library(bias, slope, elem, cuda=False):
    text = grad_libraries.score_module(bias, slope, elem)
    key = ("score", bias, slope, elem)
    return _gpu_library(key, text) if cuda else _library(key, text)


def prebuild_cuda(k, w, head_dim, dtype=torch.float32, scale=None, bias=True, slope=False):
    """grad_libraries.prebuild_cuda for a torch dtype: the GPU libraries that CUDA tensors of
    these settings load, compiled into the disk cache (no GPU needed); returns their paths."""
    return grad_libraries.prebuild_cuda(k, w, head_dim, _ELEM[dtype], scale, bias, slope)


def _np64(t):
    return t.detach().cpu().numpy().astype(np.float64)


def _c(t):
    return t.detach().contiguous()


def _check_device(*tensors):
    """All tensors on one CPU or CUDA device; returns it."""
    present = [t for t in tensors if t is not None]
    device = present[0].device
    if device.type not in ("cpu", "cuda"):
        raise NotImplementedError(f"sparsek.autograd runs on CPU and CUDA tensors, got {device}")
    for t in present:
        if t.device != device:
            raise ValueError(f"sparsek.autograd: tensors on {device} and {t.device}; "
                             "move them to one device")
    return device


def _from64(a, device):
    return torch.from_numpy(a).to(device)


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


def _gpu_head_dim(q, value):
    """None on the CPU; on CUDA the static head dimension the GPU library is compiled for."""
    if not q.is_cuda:
        return None
    if q.shape[3] != value.shape[3]:
        raise ValueError("sparsek.autograd on CUDA needs the same head dimension for q/key and "
                         f"value (D = Dv), got {q.shape[3]} and {value.shape[3]}")
    return int(q.shape[3])


class SelectAttention(torch.autograd.Function):
    """o = select_attention(q, key, value, u; k, w, scale) with its SPEC 5 backward."""

    @staticmethod
    def forward(ctx, q, key, value, u, k, w, scale):
        device = _check_device(q, key, value, u)
        dtype = _check_dtypes([q, key, value], [u])
        ctx.save_for_backward(q, key, value, u)
        ctx.k, ctx.w, ctx.scale = k, w, scale
        if dtype == torch.float64:
            o = reference.sparsek_attention(_np64(q), _np64(key), _np64(value), _np64(u), k, w, scale)
            return _from64(o, device)
        B, Hq, T, _ = q.shape
        out = torch.empty((B, Hq, T, value.shape[3]), dtype=dtype, device=device)
        _attention_library(k, w, scale, _ELEM[dtype], _gpu_head_dim(q, value)).call(
            "forward", _c(q), _c(key), _c(value), _c(u), out)
        return out

    @staticmethod
    def backward(ctx, do):
        q, key, value, u = ctx.saved_tensors
        k, w, scale = ctx.k, ctx.w, ctx.scale
        if q.dtype == torch.float64:
            grads = reference.sparsek_attention_vjp(_np64(q), _np64(key), _np64(value), _np64(u),
                                                    k, w, _np64(do), scale)
            grads = [_from64(g, q.device) for g in grads]
        else:
            # The kernels write every element (dq per query, the sums zeroed first).
            grads = [torch.empty(t.shape, dtype=torch.float32, device=q.device)
                     for t in (q, key, value, u)]
            _attention_library(k, w, scale, _ELEM[q.dtype], _gpu_head_dim(q, value)).call(
                "backward", _c(q), _c(key), _c(value), _c(u), _c(do.to(q.dtype)), *grads)
            grads = [g.to(t.dtype) for g, t in zip(grads, (q, key, value, u))]
        return (*grads, None, None, None)


class Score(torch.autograd.Function):
    """u = score(x, wsc, bias, slope; offset) (SPEC 2) with its chain-rule backward."""

    @staticmethod
    def forward(ctx, x, wsc, bias, slope, offset):
        device = _check_device(x, wsc, bias, slope)
        dtype = _check_dtypes([x, wsc], [bias, slope])
        ctx.save_for_backward(x, wsc)
        ctx.offset, ctx.has = offset, (bias is not None, slope is not None)
        if dtype == torch.float64:
            u = reference.score(_np64(x), _np64(wsc), None if bias is None else _np64(bias),
                                None if slope is None else _np64(slope), offset)
            return _from64(u, device)
        B, T, _ = x.shape
        u = torch.empty((B, wsc.shape[0], T), dtype=torch.float32, device=device)
        extra = [_c(t) for t in (bias, slope) if t is not None]
        _score_library(bias is not None, slope is not None, _ELEM[dtype], x.is_cuda).call(
            "forward", _c(x), _c(wsc), *extra, int(offset), u)
        return u

    @staticmethod
    def backward(ctx, du):
        x, wsc = ctx.saved_tensors
        if x.dtype == torch.float64:
            grads = [_from64(g, x.device)
                     for g in reference.score_vjp(_np64(x), _np64(wsc), _np64(du), ctx.offset)]
        else:
            Hkv = wsc.shape[0]
            grads = [torch.empty(s, dtype=torch.float32, device=x.device)
                     for s in (x.shape, wsc.shape, (Hkv,), (Hkv,))]
            _score_library(*ctx.has, _ELEM[x.dtype], x.is_cuda).call(
                "backward", _c(x), _c(wsc), _c(du.to(torch.float32)), int(ctx.offset), *grads)
            grads[0], grads[1] = grads[0].to(x.dtype), grads[1].to(wsc.dtype)
        dbias = grads[2] if ctx.has[0] else None
        dslope = grads[3] if ctx.has[1] else None
        return grads[0], grads[1], dbias, dslope, None


def sparsek_attention(q, key, value, u, k, w, scale=None):
    """SPEC 7's composite, differentiable in q, key, value and u (CPU or CUDA tensors)."""
    return SelectAttention.apply(q, key, value, u, int(k), int(w), scale)


def score(x, wsc, bias=None, slope=None, offset=0):
    """SPEC 2's scores [B, Hkv, T], differentiable in x, wsc, bias and slope (CPU or CUDA)."""
    return Score.apply(x, wsc, bias, slope, int(offset))


def sparsek_layer(x, cfg: LayerConfig, weights):
    """The layer of `sparsek.layer` (projections, scores, composite attention, output
    projection) on x [B, T, C] at positions 0..T-1, differentiable in x and every weight.
    `weights` maps the names of cfg.weight_names() to tensors."""
    B, T, C = x.shape
    Hq, Hkv, D = cfg.Hq, cfg.Hkv, cfg.D
    _check_device(x, *weights.values())
    _check_dtypes([x] + [weights[n] for n in ("wq", "wk", "wv", "wsc", "wo")],
                  [weights.get("bias") if cfg.bias else None, weights.get("slope") if cfg.slope else None])

    def heads(wt, n):
        return (x @ wt).view(B, T, n, D).transpose(1, 2)

    q, key, value = heads(weights["wq"], Hq), heads(weights["wk"], Hkv), heads(weights["wv"], Hkv)
    u = score(x, weights["wsc"], weights.get("bias") if cfg.bias else None,
              weights.get("slope") if cfg.slope else None)
    o = sparsek_attention(q, key, value, u, cfg.k, cfg.w, cfg.scale)
    return o.transpose(1, 2).reshape(B, T, Hq * D) @ weights["wo"]


def sparsek_layer_vjp(x, cfg: LayerConfig, weights, grad):
    """The gradients of sparsek_layer(x, cfg, weights) for the incoming gradient `grad`
    [B, T, C], without autograd: {"x": dx, name: dweight} for x and every weight of cfg, each in
    its tensor's dtype. The attention output is recomputed (nothing is saved); the attention and
    score gradients are the compiled ops (CPU or CUDA, as the tensors are), the projections'
    plain matrix products in float32. torch.ops.sparsek.prefill's backward is this function:
    it runs inside an operator, where no autograd graph is recorded."""
    B, T, C = x.shape
    Hq, Hkv, D = cfg.Hq, cfg.Hkv, cfg.D
    _check_device(x, *weights.values())
    if x.dtype == torch.float64:
        raise TypeError("sparsek_layer_vjp runs the compiled ops: float32, float16 or bfloat16")
    dtype = x.dtype
    f32 = lambda t: t.detach().to(torch.float32)  # noqa: E731

    def heads(wt, n):
        return (x.detach() @ wt.detach()).view(B, T, n, D).transpose(1, 2)

    q, key, value = heads(weights["wq"], Hq), heads(weights["wk"], Hkv), heads(weights["wv"], Hkv)
    bias = weights.get("bias") if cfg.bias else None
    slope = weights.get("slope") if cfg.slope else None
    u = Score.apply(x.detach(), weights["wsc"].detach(), None if bias is None else bias.detach(),
                    None if slope is None else slope.detach(), 0)
    o = SelectAttention.apply(q, key, value, u, int(cfg.k), int(cfg.w), cfg.scale)
    flat_o = o.transpose(1, 2).reshape(B * T, Hq * D)
    g = f32(grad).reshape(B * T, C)
    grads = {"wo": f32(flat_o).t() @ g}
    do = (g @ f32(weights["wo"]).t()).view(B, T, Hq, D).transpose(1, 2)
    lib = _attention_library(cfg.k, cfg.w, cfg.scale, _ELEM[dtype], _gpu_head_dim(q, value))
    dq, dk, dv, du = [torch.empty(t.shape, dtype=torch.float32, device=x.device)
                      for t in (q, key, value, u)]
    lib.call("backward", _c(q), _c(key), _c(value), _c(u), _c(do.to(dtype)), dq, dk, dv, du)
    sg = [torch.empty(s, dtype=torch.float32, device=x.device)
          for s in (x.shape, weights["wsc"].shape, (Hkv,), (Hkv,))]
    _score_library(bias is not None, slope is not None, _ELEM[dtype], x.is_cuda).call(
        "backward", _c(x), _c(weights["wsc"]), du, 0, *sg)
    xf = f32(x).reshape(B * T, C)
    dx = sg[0].reshape(B * T, C)
    for name, d, n in (("wq", dq, Hq), ("wk", dk, Hkv), ("wv", dv, Hkv)):
        flat = d.transpose(1, 2).reshape(B * T, n * D)
        grads[name] = xf.t() @ flat
        dx = dx + flat @ f32(weights[name]).t()
    grads["x"] = dx.view(B, T, C)
    grads["wsc"] = sg[1]
    if bias is not None:
        grads["bias"] = sg[2]
    if slope is not None:
        grads["slope"] = sg[3]
    like = dict(weights, x=x)
    return {n: t.to(like[n].dtype) for n, t in grads.items()}
