# torch.compile over SparseKAttention on CUDA tensors: no graph break, results equal eager (the GPU layer of the torch.ops.sparsek ops, varlen batches included), and the CUDA KV cache's ops stay in order.
import numpy as np
import pytest

from test_gpu_nn import make_module


@pytest.fixture(autouse=True)
def _fresh_dynamo(torch):
    """Compiles from scratch (see test_torch_compile.py: stale on-disk graphs)."""
    torch._dynamo.reset()
    with torch._inductor.config.patch(fx_graph_cache=False), \
            torch._functorch.config.patch(enable_autograd_cache=False):
        yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ["f32", "bf16"])
def test_compiled_module_has_no_graph_break_and_equals_eager(torch, layer_cache, name):
    attn = make_module(torch, name).cuda()
    dtype = attn.dtype
    with torch.no_grad():
        for T in (1, 37, 100):
            x = torch.randn(2, T, attn.cfg.C, device="cuda").to(dtype)
            explanation = torch._dynamo.explain(attn)(x)
            assert explanation.graph_break_count == 0
            got = torch.compile(attn, fullgraph=True, dynamic=True)(x)
            assert torch.equal(got, attn(x)), T


def generation_equal_eager(torch, attn, max_seqs, steps, args):
    """Runs steps(cache, seqs, *args) (prefill then two decodes of the same
    token) on a fresh CUDA cache of max_seqs sequences, eager and compiled
    with fullgraph; asserts equal outputs (the two decodes differ) and cache
    positions, and returns the positions."""
    def run(compiled):
        cache = attn.new_cache(max_seqs=max_seqs)
        seqs = [cache.alloc_seq() for _ in range(max_seqs)]

        def generate(*a):
            return steps(cache, seqs, *a)
        fn = torch.compile(generate, fullgraph=True) if compiled else generate
        with torch.no_grad():
            out = fn(*args)
        torch.cuda.synchronize()
        cache.check_device_error()
        pos = cache.torch_view(0).pos.cpu().tolist()
        cache.close()
        return out, pos

    (want, want_pos), (got, got_pos) = run(False), run(True)
    assert not torch.equal(want[1], want[2])
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert got_pos == want_pos
    return want_pos


def test_compiled_prefill_and_decode_equal_eager(torch, layer_cache):
    attn = make_module(torch, "f32", seed=1).cuda()
    prompt = torch.randn(2, 10, attn.cfg.C, device="cuda")
    tok = torch.randn(2, attn.cfg.C, device="cuda")

    def steps(cache, seqs, p, t):
        return [attn.prefill(p, cache, seqs), attn.decode(t, cache, seqs), attn.decode(t, cache, seqs)]
    pos = generation_equal_eager(torch, attn, 2, steps, (prompt, tok))
    assert pos[:2] == [11, 11]


def test_compiled_with_gradients_enabled_matches_eager(torch, layer_cache):
    # On CUDA, sparsek::prefill has a backward (sparsek::prefill_backward): the
    # compiled graph differentiates through it, eager through the autograd
    # path (torch projections, the gradient library). Two implementations:
    # equal within SPEC 8 (f32 on the GPU), not bitwise.
    attn = make_module(torch, "f32", seed=2).cuda()
    x = torch.randn(1, 12, attn.cfg.C, device="cuda", requires_grad=True)
    got = torch.compile(attn, fullgraph=True)(x)
    want = attn(x)
    tol = 1e-4 * max(1.0, float(want.detach().abs().max()))
    torch.testing.assert_close(got.detach(), want.detach(), rtol=0, atol=tol)
    (gx_got,) = torch.autograd.grad(got.sum(), x)
    (gx_want,) = torch.autograd.grad(want.sum(), x)
    gtol = 1e-3 * max(1.0, float(gx_want.abs().max()))
    torch.testing.assert_close(gx_got, gx_want, rtol=0, atol=gtol)


# -- Varlen batches: SparseKAttention.prefill(x, ..., cu_seqlens=...) ----------------------

VARLEN_LENGTHS = [0, 1, 17, 300, 5]


def varlen_batch(torch, attn, lengths, seed):
    """Packed prompts x [N, C] on the GPU and their offsets (an int32 CUDA tensor)."""
    g = torch.Generator().manual_seed(seed)
    cu = torch.tensor([0] + np.cumsum(lengths).tolist(), dtype=torch.int32)
    x = torch.randn(int(cu[-1]), attn.cfg.C, generator=g).to(attn.dtype)
    return x.cuda(), cu.cuda()


@pytest.mark.parametrize("name", ["f32", "bf16", "bf16_d64"])
def test_compiled_varlen_prefill_has_no_graph_break_and_equals_eager(torch, layer_cache, name):
    """The varlen ops (sparsek::prefill_varlen) on CUDA tensors: no graph break, the compiled
    call equals eager bit for bit, and both equal the CPU module (same weights; SPEC 8).
    dynamic=True: a second batch of another N and B runs through the same graph."""
    from test_gpu_varlen import modules

    cpu, attn = modules(torch, name, seed=3)
    fn = lambda x, cu: attn.prefill(x, cu_seqlens=cu)  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True, dynamic=True)
    tol = 1e-4 if attn.dtype == torch.float32 else 2e-2
    with torch.no_grad():
        for seed, lengths in enumerate((VARLEN_LENGTHS, [40, 0, 2])):
            x, cu = varlen_batch(torch, attn, lengths, seed)
            if seed == 0:
                assert torch._dynamo.explain(fn)(x, cu).graph_break_count == 0
            got, want = compiled(x, cu), fn(x, cu)
            assert got.shape == x.shape and got.dtype == attn.dtype
            assert torch.equal(got, want), lengths
            ref = cpu.prefill(x.cpu(), cu_seqlens=cu.cpu()).float().numpy()
            np.testing.assert_allclose(got.float().cpu().numpy(), ref, rtol=0,
                                       atol=tol * max(1.0, float(np.abs(ref).max())))


def test_compiled_varlen_prefill_into_cache_and_decode_equal_eager(torch, layer_cache):
    """The CUDA cache filled by sparsek::fill_cache_varlen (an ordered effect), then two
    decode steps of the same token: compiled == eager, outputs and cache positions."""
    from test_gpu_varlen import modules

    _, attn = modules(torch, "f32", seed=4)
    x, cu = varlen_batch(torch, attn, VARLEN_LENGTHS, 9)
    busy = [b for b, n in enumerate(VARLEN_LENGTHS) if n]
    tok = torch.randn(len(busy), attn.cfg.C, device="cuda")

    def steps(cache, seqs, x, cu, t):
        return [attn.prefill(x, cache, seqs, cu_seqlens=cu),
                attn.decode(t, cache, [seqs[b] for b in busy]),
                attn.decode(t, cache, [seqs[b] for b in busy])]
    pos = generation_equal_eager(torch, attn, len(VARLEN_LENGTHS), steps, (x, cu, tok))
    assert pos == [n + 1 if n else -1 for n in VARLEN_LENGTHS]
