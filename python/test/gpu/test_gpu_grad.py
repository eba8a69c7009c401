# Gradients on CUDA: sparsek.autograd and SparseKAttention backward through the GPU lowering of select_attention_grad and score_grad, against the float64 reference (SPEC 8).
import numpy as np
import pytest

from gpu_checks import grad_close
from grad_configs import COMPOSITE, MODULES


def scores(g, shape, kind):
    """f32 scores of one kind of test_cpu_grad.py's matrix."""
    if kind == "spread":
        u = g.normal(size=shape) * 3
    elif kind == "narrow":
        u = g.uniform(0.0, 0.6, size=shape)
    elif kind == "ties":
        u = np.round(g.uniform(0, 2, size=shape) * 4) / 4
    else:  # masked
        u = g.uniform(0.0, 0.8, size=shape)
        u[g.random(shape) < 0.25] = -np.inf
    return u.astype(np.float32)


def composite_inputs(torch, case, elem, seed):
    B, Hq, Hkv, S, T, k, w, D, kind = case
    g = np.random.default_rng(seed)
    q = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    key = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    value = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    do = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    u = scores(g, (B, Hkv, S), kind)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[elem]
    cuda = [torch.from_numpy(a).cuda().to(dtype) for a in (q, key, value)]
    # The reference gets the inputs as the GPU sees them (bf16-rounded).
    rounded = [t.float().cpu().numpy().astype(np.float64) for t in cuda]
    do_cuda = torch.from_numpy(do).cuda().to(dtype)
    do64 = do_cuda.float().cpu().numpy().astype(np.float64)
    return cuda, torch.from_numpy(u).cuda(), do_cuda, rounded, u.astype(np.float64), do64, k, w


@pytest.mark.parametrize("elem", ["f32", "bf16"])
@pytest.mark.parametrize("case", COMPOSITE, ids=[f"{c[0]}x{c[1]}x{c[2]}_S{c[3]}_T{c[4]}_k{c[5]}_w{c[6]}_d{c[7]}_{c[8]}"
                                                 for c in COMPOSITE])
def test_composite_gradients_match_reference(torch, layer_cache, case, elem):
    from sparsek import autograd, reference

    (q, key, value), u, do, rounded, u64, do64, k, w = composite_inputs(torch, case, elem, seed=case[3] + case[5])
    leaves = [t.requires_grad_() for t in (q, key, value, u)]
    out = autograd.sparsek_attention(*leaves, k, w)
    out.backward(do)
    torch.cuda.synchronize()
    want = reference.sparsek_attention_vjp(*rounded, u64, k, w, do64)
    rel = 1e-3 if elem == "f32" else 2e-2
    for name, t, ref in zip(("dq", "dkey", "dvalue", "du"), leaves, want):
        assert t.grad.dtype == t.dtype
        grad_close(t.grad.float().cpu().numpy(), ref, rel, f"{elem} {name}")


def test_directional_derivatives_match_finite_differences(torch, layer_cache):
    """gradcheck's question for f32 CUDA code: <grad, v> against central differences of the
    float64 forward along random directions v of q, key and value (scores that keep every
    selection and clip piece within the step)."""
    from sparsek import autograd, reference

    case = (1, 4, 2, 24, 24, 4, 3, 64, "spread")
    (q, key, value), u, do, rounded, u64, do64, k, w = composite_inputs(torch, case, "f32", seed=3)
    leaves = [t.requires_grad_() for t in (q, key, value)]
    autograd.sparsek_attention(*leaves, u, k, w).backward(do)
    g = np.random.default_rng(4)
    eps = 1e-6
    for which, t in enumerate(leaves):
        for _ in range(3):
            v = g.normal(size=rounded[which].shape)
            plus, minus = list(rounded), list(rounded)
            plus[which], minus[which] = rounded[which] + eps * v, rounded[which] - eps * v
            fd = (np.sum(reference.sparsek_attention(*plus, u64, k, w) * do64)
                  - np.sum(reference.sparsek_attention(*minus, u64, k, w) * do64)) / (2 * eps)
            got = float(np.sum(t.grad.double().cpu().numpy() * v))
            assert abs(got - fd) <= 1e-3 * max(1.0, abs(fd)), (which, got, fd)


def make_module(torch, name, seed):
    from sparsek.nn import SparseKAttention

    opts = dict(MODULES[name])
    opts["dtype"] = {"f32": torch.float32, "bf16": torch.bfloat16}[opts.get("dtype", "f32")]
    torch.manual_seed(seed)
    attn = SparseKAttention(**opts)
    with torch.no_grad():
        attn.score_bias.normal_()
        if attn.score_slope is not None:
            attn.score_slope.normal_(std=0.05)
    return attn


def _twice(attn, x):
    """The same layer twice in one graph (and its input reused): gradients accumulate."""
    return attn(attn(x) + x) + 0.5 * attn(x)


def test_module_used_twice_accumulates_on_cuda(torch, layer_cache):
    """SparseKAttention on CUDA tensors (torch.ops.sparsek.prefill and its backward) against the
    float64 module on the CPU (the reference, which test_autograd.py gradchecks)."""
    # Two modules of the same seed (a deep copy would copy loaded libraries).
    attn, attn64 = make_module(torch, "small", 4).cuda(), make_module(torch, "small", 4).double()
    x64 = torch.randn(2, 12, 16, dtype=torch.float64, requires_grad=True)
    x = x64.detach().float().cuda().requires_grad_()
    _twice(attn64, x64).square().sum().backward()
    _twice(attn, x).square().sum().backward()
    torch.cuda.synchronize()
    grad_close(x.grad.cpu().numpy(), x64.grad.numpy(), 1e-3, "dx")
    for (name, p), p64 in zip(attn.named_parameters(), attn64.parameters()):
        if name == "score_bias":  # exactly 0 in float64 (SPARSEK is shift-invariant, SPEC 3)
            assert float(p.grad.abs().max()) <= 1e-3 * float(attn64.wsc.grad.abs().max())
            continue
        grad_close(p.grad.cpu().numpy(), p64.grad.numpy(), 1e-3, name)


def test_bf16_module_gradients_on_cuda(torch, layer_cache):
    """A bf16 module (the tile-first forward kernel, the gradient kernels on bf16 data) against
    the float64 module on the same weights. SPEC 8's 2e-2 holds per op on the same rounded
    inputs (test_composite_gradients_match_reference); a module also rounds every activation
    and gradient between its ops to bf16 (q, k, v, the output, do, the projections' gradients),
    whence 3e-2 of each gradient's scale here."""
    attn, attn64 = make_module(torch, "bf16", 6).cuda(), make_module(torch, "bf16", 6).double()
    C = attn.cfg.C
    x = torch.randn(2, 200, C).to(torch.bfloat16)
    x64 = x.double().requires_grad_()
    xc = x.cuda().requires_grad_()
    r = torch.randn(2, 200, C, dtype=torch.float64)
    (attn64(x64) * r).sum().backward()
    (attn(xc).double() * r.cuda()).sum().backward()
    torch.cuda.synchronize()
    grad_close(xc.grad.float().cpu().numpy(), x64.grad.numpy(), 3e-2, "dx")
    for (name, p), p64 in zip(attn.named_parameters(), attn64.parameters()):
        if name == "score_bias":
            continue
        grad_close(p.grad.float().cpu().numpy(), p64.grad.numpy(), 3e-2, name)


def test_compiled_training_step_on_cuda(torch, layer_cache):
    """torch.compile(fullgraph=True) of forward and backward: no graph break, eager's gradients."""
    attn = make_module(torch, "small", 8).cuda()
    x = torch.randn(2, 20, 16, device="cuda")

    def step(x):
        return attn(x).square().sum()

    torch._dynamo.reset()
    assert torch._dynamo.explain(step)(x.clone().requires_grad_()).graph_break_count == 0
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    step(xe).backward()
    eager = [p.grad.clone() for p in attn.parameters()]
    attn.zero_grad()
    torch.compile(step, fullgraph=True)(xc).backward()
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-4, atol=1e-5)
    for p, want in zip(attn.parameters(), eager):
        torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()
