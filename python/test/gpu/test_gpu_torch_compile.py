# torch.compile over SparseKAttention on CUDA tensors: no graph break, results equal eager (the GPU layer of the torch.ops.sparsek ops), and the CUDA KV cache's ops stay in order.
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


def test_compiled_prefill_and_decode_equal_eager(torch, layer_cache):
    attn = make_module(torch, "f32", seed=1).cuda()
    prompt = torch.randn(2, 10, attn.cfg.C, device="cuda")
    tok = torch.randn(2, attn.cfg.C, device="cuda")

    def run(compiled):
        cache = attn.new_cache(max_seqs=2)
        seqs = [cache.alloc_seq() for _ in range(2)]

        def generate(p, t):
            return [attn.prefill(p, cache, seqs), attn.decode(t, cache, seqs), attn.decode(t, cache, seqs)]
        fn = torch.compile(generate, fullgraph=True) if compiled else generate
        with torch.no_grad():
            out = fn(prompt, tok)
        torch.cuda.synchronize()
        pos = cache.torch_view(0).pos.cpu().tolist()
        cache.close()
        return out, pos

    (want, want_pos), (got, got_pos) = run(False), run(True)
    assert not torch.equal(want[1], want[2])
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert got_pos[:2] == want_pos[:2] == [11, 11]


def test_compiled_with_gradients_enabled_refuses_backward(torch, layer_cache):
    attn = make_module(torch, "f32", seed=2).cuda()
    x = torch.randn(1, 12, attn.cfg.C, device="cuda")
    got = torch.compile(attn, fullgraph=True)(x)
    assert torch.equal(got.detach(), attn(x).detach())
    with pytest.raises(RuntimeError, match="no backward here"):
        got.sum().backward()
