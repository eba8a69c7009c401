# torch.autograd over SparseK on the CPU: gradcheck of the float64 path, the compiled f32 backward against it, a layer used twice.
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cpu_harness import require_compiler  # noqa: E402
from sparsek import autograd  # noqa: E402
from sparsek.layer import LayerConfig  # noqa: E402
from sparsek.nn import SparseKAttention  # noqa: E402


def rel_close(got, want, what=""):
    """SPEC 8 gradients (f32 against float64): 1e-3 relative to the gradient's scale."""
    want = want.detach().double()
    scale = max(float(want.abs().max()), 1e-6) if want.numel() else 1.0
    err = float((got.detach().double() - want).abs().max()) if want.numel() else 0.0
    assert err <= 1e-3 * scale, f"{what}: max error {err:.3g} vs scale {scale:.3g}"


def inputs(seed, B, Hq, Hkv, T, S, D, u_range, masked=0.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hq, T, D, generator=g, dtype=dtype)
    key = torch.randn(B, Hkv, S, D, generator=g, dtype=dtype)
    value = torch.randn(B, Hkv, S, D, generator=g, dtype=dtype)
    u = torch.rand(B, Hkv, S, generator=g, dtype=dtype) * u_range
    u[torch.rand(u.shape, generator=g) < masked] = -float("inf")
    return [t.requires_grad_() for t in (q, key, value)] + [u.requires_grad_()]


# The float64 path is the reference, so gradcheck checks SPEC 5's backward
# formulas against central differences of the forward. Random continuous
# scores put a kink within gradcheck's step (1e-6) with negligible probability.
@pytest.mark.parametrize("B,Hq,Hkv,T,S,k,w,u_range,masked", [
    (1, 2, 2, 10, 10, 3, 2, 0.6, 0.0),    # support truncated to the top k
    (1, 4, 2, 8, 14, 3, 3, 4.0, 0.0),     # GQA, S > T, gates mostly 0 or 1
    (2, 2, 1, 9, 9, 2, 2, 0.8, 0.3),      # -inf scores
    (1, 2, 2, 8, 8, 0, 3, 1.0, 0.0),      # k = 0
    (1, 2, 2, 8, 8, 9, 2, 1.0, 0.0),      # k >= S
])
def test_gradcheck_select_attention_float64(B, Hq, Hkv, T, S, k, w, u_range, masked):
    args = inputs(B * 100 + S + k, B, Hq, Hkv, T, S, 4, u_range, masked)
    assert torch.autograd.gradcheck(lambda q, kk, v, u: autograd.sparsek_attention(q, kk, v, u, k, w),
                                    args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_score_float64():
    g = torch.Generator().manual_seed(0)
    x, wsc, bias, slope = (torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()
                           for s in ((2, 5, 6), (3, 6), (3,), (3,)))
    assert torch.autograd.gradcheck(lambda *a: autograd.score(*a, offset=4), (x, wsc, bias, slope))


def test_gradcheck_module_float64():
    torch.manual_seed(1)
    attn = SparseKAttention(embed_dim=16, num_heads=4, num_kv_heads=2, k=3, w=2, score_slope=True).double()
    with torch.no_grad():
        attn.score_bias.normal_()
        attn.score_slope.normal_(std=0.05)
    x = torch.randn(1, 9, 16, dtype=torch.float64, requires_grad=True)
    # fast_mode checks random projections v^T J u: one backward instead of one per output.
    assert torch.autograd.gradcheck(attn, (x,), fast_mode=True)


def _f32_and_f64_grads(seed, fn, make):
    """Gradients of sum(fn(*inputs) * r) from the compiled f32 path and the float64 path."""
    require_compiler()
    ins64 = make(torch.float64)
    ins32 = [t.detach().float().requires_grad_() for t in ins64]
    out64 = fn(*ins64)
    r = torch.randn(out64.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (out64 * r).sum().backward()
    (fn(*ins32) * r.float()).sum().backward()
    return [(a.grad, b.grad) for a, b in zip(ins32, ins64)]


@pytest.mark.parametrize("k,w,u_range", [(4, 3, 0.5), (4, 3, 5.0), (0, 4, 1.0)])
def test_compiled_backward_matches_float64_path(k, w, u_range):
    grads = _f32_and_f64_grads(
        7, lambda q, kk, v, u: autograd.sparsek_attention(q, kk, v, u, k, w),
        lambda dt: inputs(3, 2, 4, 2, 20, 26, 8, u_range, 0.1, dtype=dt))
    for name, (got, want) in zip(("dq", "dkey", "dvalue", "du"), grads):
        rel_close(got, want, name)


def test_compiled_score_backward_matches_float64_path():
    def make(dt):
        g = torch.Generator().manual_seed(2)
        return [torch.randn(*s, generator=g, dtype=dt).requires_grad_()
                for s in ((2, 7, 8), (3, 8), (3,), (3,))]
    grads = _f32_and_f64_grads(1, lambda *a: autograd.score(*a, offset=3), make)
    for name, (got, want) in zip(("dx", "dwsc", "dbias", "dslope"), grads):
        rel_close(got, want, name)


def _twice(attn, x):
    """The same layer twice in one graph (and its input reused): gradients accumulate."""
    return attn(attn(x) + x) + 0.5 * attn(x)


def test_layer_used_twice_accumulates():
    require_compiler()
    torch.manual_seed(4)
    attn32 = SparseKAttention(embed_dim=16, num_heads=4, num_kv_heads=2, k=3, w=2, score_slope=True)
    with torch.no_grad():
        attn32.score_bias.normal_()
        attn32.score_slope.normal_(std=0.05)
    attn64 = copy.deepcopy(attn32).double()
    x64 = torch.randn(2, 12, 16, dtype=torch.float64, requires_grad=True)
    x32 = x64.detach().float().requires_grad_()
    _twice(attn64, x64).square().sum().backward()
    _twice(attn32, x32).square().sum().backward()
    rel_close(x32.grad, x64.grad, "dx")
    for (name, p32), p64 in zip(attn32.named_parameters(), attn64.parameters()):
        if name == "score_bias":
            # SPARSEK is shift-invariant (SPEC 3): a per-head bias moves every score and tau
            # together, so its gradient is exactly 0; f32 leaves rounding at the scale of
            # the other score gradients.
            assert float(p64.grad.abs().max()) < 1e-12
            assert float(p32.grad.abs().max()) <= 1e-3 * float(attn64.wsc.grad.abs().max())
            continue
        rel_close(p32.grad, p64.grad, name)
    # float64: the accumulated gradients are the true ones.
    x = x64.detach()[:1, :9].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: _twice(attn64, x), (x,), fast_mode=True)


def test_sparsek_layer_matches_the_compiled_forward():
    """autograd.sparsek_layer (projections in torch) computes what the compiled layer does."""
    require_compiler()
    torch.manual_seed(5)
    attn = SparseKAttention(embed_dim=16, num_heads=2, num_kv_heads=1, k=4, w=3)
    x = torch.randn(1, 15, 16)
    with torch.no_grad():
        want = attn(x)
    got = attn(x.requires_grad_())
    assert got.requires_grad
    np.testing.assert_allclose(got.detach().numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


def test_mixed_dtypes_are_clear_errors():
    cfg = LayerConfig(C=8, Hq=2, Hkv=1, D=4, k=2, w=2)
    x = torch.randn(1, 4, 8, dtype=torch.float64)
    weights = {n: torch.randn(*s) for n, s in cfg.weight_shapes().items()}  # float32
    with pytest.raises(TypeError, match="one dtype"):
        autograd.sparsek_layer(x, cfg, weights)
