# torch.compile over SparseKAttention on CPU tensors: the torch.ops.sparsek ops pass torch's operator checks, models compile with fullgraph=True and no graph break, and compiled results equal eager ones (CUDA: test/gpu/test_gpu_torch_compile.py).
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cpu_harness import require_compiler  # noqa: E402
from runtime_harness import require_runtime  # noqa: E402
from sparsek import torch_ops  # noqa: E402
from sparsek.layer import reference_prefill  # noqa: E402
from test_nn import module as attention  # noqa: E402  (the same seeded test layer)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Compiles from scratch: torch's on-disk graph caches key a graph by its ops and shapes,
    not by the effects registered for the ops, so a graph cached under other registrations
    (an older sparsek) would be served stale."""
    require_compiler()
    torch._dynamo.reset()
    with torch._inductor.config.patch(fx_graph_cache=False), \
            torch._functorch.config.patch(enable_autograd_cache=False):
        yield
    torch._dynamo.reset()


class Block(torch.nn.Module):
    """A pre-norm transformer block around SparseKAttention: torch ops before and after it."""

    def __init__(self, seed=0):
        super().__init__()
        self.attn = attention(seed)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 32))

    def forward(self, x):
        h = x + self.attn(torch.nn.functional.rms_norm(x, (32,)))
        return h + self.mlp(torch.nn.functional.rms_norm(h, (32,)))


def test_ops_pass_torch_operator_checks():
    """Schemas, fake (meta) implementations against the real ones, AOT dispatch with dynamic shapes."""
    attn = attention()
    args = tuple(t.detach() if isinstance(t, torch.Tensor) else t for t in attn._op_args())
    x = torch.randn(2, 11, 32)
    torch.library.opcheck(torch.ops.sparsek.prefill.default, (x,) + args)
    torch.library.opcheck(torch.ops.sparsek.prefill_kv.default, (x,) + args)


def test_fake_implementations_give_the_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    attn = attention(score_slope=False)
    real = tuple(t.detach() if isinstance(t, torch.Tensor) else t for t in attn._op_args())
    mode = FakeTensorMode()
    x = mode.from_tensor(torch.randn(3, 9, 32))
    args = tuple(mode.from_tensor(t) if isinstance(t, torch.Tensor) else t for t in real)
    with mode:
        out, key, value, u = torch.ops.sparsek.prefill_kv(x, *args)
        assert out.shape == (3, 9, 32) and key.shape == value.shape == (3, 2, 9, 8)
        assert u.shape == (3, 2, 9) and u.dtype == torch.float32
        with pytest.raises(ValueError, match=r"expected \[B, T, C\] with C = 32"):
            torch.ops.sparsek.prefill(x[..., :16], *args)


def test_compiled_model_has_no_graph_break_and_equals_eager():
    model = Block()
    x = torch.randn(2, 29, 32)
    with torch.no_grad():
        want = model(x)
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1
        got = torch.compile(model, fullgraph=True)(x)
    # Inductor fuses the surrounding norms and MLP differently from eager: float32 rounding.
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_compiled_attention_is_bitwise_eager_at_several_lengths():
    """The compiled layer is one opaque node: the same call, the same bits; T varies without a
    graph break (dynamic shapes through the fake implementations)."""
    attn = attention(1)
    compiled = torch.compile(attn, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for T in (1, 7, 29, 64):
            x = torch.randn(2, T, 32)
            got, want = compiled(x), attn(x)
            assert torch.equal(got, want), T
            ref = reference_prefill(attn.cfg, x.numpy(), {
                n: t.detach().float().numpy() for n, t in attn._named().items()})[0]
            np.testing.assert_allclose(got.numpy(), ref, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_compiled_bf16_module_equals_eager():
    attn = attention(2, dtype=torch.bfloat16, score_slope=False)
    x = torch.randn(1, 16, 32).to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(torch.compile(attn, fullgraph=True)(x), attn(x))


def test_prefill_backward_passes_torch_operator_checks():
    """prefill's registered autograd (opcheck's test_autograd_registration) and the backward op
    itself (schema, fake implementation, dynamic shapes)."""
    attn = attention(6)
    args = tuple(t.detach().requires_grad_() if isinstance(t, torch.Tensor) else t
                 for t in attn._op_args())
    x = torch.randn(2, 11, 32, requires_grad=True)
    torch.library.opcheck(torch.ops.sparsek.prefill.default, (x,) + args)
    plain = tuple(t.detach() if isinstance(t, torch.Tensor) else t for t in args)
    torch.library.opcheck(torch.ops.sparsek.prefill_backward.default,
                          (torch.randn(2, 11, 32), x.detach()) + plain)


def _training_step(model):
    def step(x):
        return model(x).square().mean()
    return step


@pytest.mark.parametrize("seed,T", [(0, 29), (1, 7)])
def test_compiled_training_step_has_no_graph_break_and_equals_eager(seed, T):
    """torch.compile(fullgraph=True) of forward and backward through SparseKAttention (the
    prefill op and its registered backward): one graph, no break, and eager's gradients."""
    model = Block(seed)
    x = torch.randn(2, T, 32)
    explanation = torch._dynamo.explain(_training_step(model))(x.clone().requires_grad_())
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    xe = x.clone().requires_grad_()
    _training_step(model)(xe).backward()
    eager = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    xc = x.clone().requires_grad_()
    loss = torch.compile(_training_step(model), fullgraph=True)(xc)
    loss.backward()
    # Inductor fuses the norms and the MLP differently from eager: float32 rounding.
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-4, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, eager[n], rtol=1e-4, atol=1e-6, msg=n)
    if T > model.attn.cfg.k + model.attn.cfg.w + 1:  # some gate in (0, 1): scores learn
        assert model.attn.wsc.grad.abs().max() > 0


def test_prefill_op_gradients_match_float64_module():
    """torch.ops.sparsek.prefill's registered backward (sparsek_layer_vjp: the compiled gradient
    ops, called directly here; eager modules take sparsek.autograd.sparsek_layer) against the
    float64 reference module."""
    attn, attn64 = attention(7), attention(7).double()  # the same seeded weights
    x64 = torch.randn(2, 19, 32, dtype=torch.float64, requires_grad=True)
    x = x64.detach().float().requires_grad_()
    r = torch.randn(2, 19, 32, dtype=torch.float64)
    (attn64(x64) * r).sum().backward()
    out = torch.ops.sparsek.prefill(x, *attn._op_args())
    assert out.grad_fn is not None and "prefill" in type(out.grad_fn).__name__.lower()
    (out * r.float()).sum().backward()
    pairs = [("x", x.grad, x64.grad)] + [
        (n, p.grad, p64.grad) for (n, p), p64 in zip(attn.named_parameters(), attn64.parameters())]
    for name, got, want in pairs:
        if name == "score_bias":  # 0 in float64: SPARSEK is shift-invariant
            continue
        scale = float(want.abs().max())
        assert float((got.double() - want).abs().max()) <= 1e-3 * scale, name


def test_compiled_forward_only_path_with_gradients_enabled_refuses_backward():
    """Parameters require grad by default. A prefill into a KV cache is forward-only (prefill
    without a cache is differentiable): compiled with
    gradients enabled it still has no graph break and runs; the placeholder backward raises
    only when a gradient is computed."""
    require_runtime()
    attn = attention(3)
    x = torch.randn(1, 12, 32)

    def prefill_into_new_cache(compiled):
        cache = attn.new_cache()
        seq = [cache.alloc_seq()]
        fn = lambda x: attn.prefill(x, cache, seq)  # noqa: E731
        return (torch.compile(fn, fullgraph=True) if compiled else fn)(x)

    want, got = prefill_into_new_cache(False), prefill_into_new_cache(True)
    assert got.requires_grad
    assert torch.equal(got.detach(), want.detach())
    with pytest.raises(RuntimeError, match="no backward here"):
        got.sum().backward()


def run_prefill_decode(attn, x, steps):
    """Prefill x[:, :P] into a fresh cache, then decode each of `steps` (list of [B, C])."""
    cache = attn.new_cache(max_seqs=x.shape[0])
    seqs = [cache.alloc_seq() for _ in range(x.shape[0])]

    def generate(prompt, tokens):
        outs = [attn.prefill(prompt, cache, seqs)]
        for t in tokens:
            outs.append(attn.decode(t, cache, seqs))
        return outs
    return cache, seqs, generate


def test_compiled_prefill_and_decode_equal_eager_and_keep_cache_order():
    """The cache ops change the runtime cache behind torch's back: compiled, they must run
    once each and in order. Two decode steps of the same token give different results (the
    second sees the first in the cache), which a merged or reordered call would not."""
    require_runtime()
    attn = attention(4)
    prompt = torch.randn(2, 10, 32)
    tok = torch.randn(2, 32)
    with torch.no_grad():
        eager_cache, _, eager = run_prefill_decode(attn, prompt, [tok, tok])
        want = eager(prompt, [tok, tok])
        cache, seqs, generate = run_prefill_decode(attn, prompt, [tok, tok])
        explanation = torch._dynamo.explain(lambda p, t: generate(p, [t, t]))(prompt, tok)
        assert explanation.graph_break_count == 0
        # explain ran the graph once: start again from an empty cache.
        for s in seqs:
            cache.reset_seq(s)
        got = torch.compile(lambda p, t: generate(p, [t, t]), fullgraph=True)(prompt, tok)
    assert not torch.equal(want[1], want[2])
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert cache.view(0).pos.tolist() == eager_cache.view(0).pos.tolist() == [11, 11]
    cache.close(), eager_cache.close()


def test_cache_ops_refuse_a_closed_cache():
    require_runtime()
    attn = attention(5)
    cache = attn.new_cache()
    seq = [cache.alloc_seq()]
    handle = cache.handle
    cache.close()
    with torch.no_grad(), pytest.raises(ValueError, match=f"no open KV cache has handle {handle}"):
        torch.ops.sparsek.decode(torch.randn(1, 32), *attn._op_args(), handle, 0, seq)


def test_layers_are_shared_per_config():
    a, b = attention(6), attention(7)
    assert a._layer is b._layer is torch_ops.compiled_layer(a.cfg)
    assert torch_ops.config_key(a.cfg) == a._op_config
