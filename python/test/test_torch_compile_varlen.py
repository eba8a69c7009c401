# torch.compile over SparseKAttention's varlen prefill (packed prompts, cu_seqlens) on CPU tensors: the varlen torch.ops.sparsek ops pass torch's operator checks, models calling it compile with fullgraph=True and no graph break, and compiled results equal eager ones and the float64 reference (CUDA: test/gpu/test_gpu_torch_compile.py).
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from runtime_harness import require_runtime  # noqa: E402
from sparsek.layer import reference_prefill  # noqa: E402
from test_nn import module as attention, weights  # noqa: E402  (the same seeded test layer)
from test_torch_compile import _fresh_dynamo  # noqa: E402, F401  (autouse: compiles from scratch)

# Empty, single-token, odd and long prompts; the long one holds many tiles and evicts.
LENGTHS = [0, 1, 17, 300, 5]


def packed(lengths, seed, dtype=torch.float32):
    """x [N, 32] of prompts of `lengths` and their int32 offsets [B + 1]."""
    g = torch.Generator().manual_seed(seed)
    cu = torch.tensor([0] + np.cumsum(lengths).tolist(), dtype=torch.int32)
    return torch.randn(int(cu[-1]), 32, generator=g).to(dtype), cu


def detached_args(attn):
    return tuple(t.detach() if isinstance(t, torch.Tensor) else t for t in attn._op_args())


def check_reference(attn, x, cu, got):
    """Each prompt's rows against the float64 layer over that prompt alone (SPEC 8)."""
    for b in range(cu.numel() - 1):
        r = slice(int(cu[b]), int(cu[b + 1]))
        if r.stop == r.start:
            continue
        want = reference_prefill(attn.cfg, x[r].float().numpy()[None], weights(attn))[0][0]
        tol = 1e-4 if attn.dtype == torch.float32 else 2e-2
        np.testing.assert_allclose(got[r].float().numpy(), want, rtol=0,
                                   atol=tol * max(1.0, np.abs(want).max()), err_msg=f"prompt {b}")


class VarlenBlock(torch.nn.Module):
    """A pre-norm transformer block around the varlen prefill: torch ops before and after it."""

    def __init__(self, seed=0):
        super().__init__()
        self.attn = attention(seed)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 32))

    def forward(self, x, cu):
        h = x + self.attn.prefill(torch.nn.functional.rms_norm(x, (32,)), cu_seqlens=cu)
        return h + self.mlp(torch.nn.functional.rms_norm(h, (32,)))


def test_varlen_ops_pass_torch_operator_checks():
    """Schemas, fake implementations against the real ones, AOT dispatch with dynamic shapes."""
    attn = attention()
    x, cu = packed([0, 1, 17, 5], 0)
    for op in (torch.ops.sparsek.prefill_varlen, torch.ops.sparsek.prefill_varlen_kv):
        torch.library.opcheck(op.default, (x, cu) + detached_args(attn))
        torch.library.opcheck(op.default, (x, cu.long()) + detached_args(attn))


def test_varlen_ops_register_their_placeholder_backward():
    """opcheck's autograd registration test with inputs that require grad: the ops have
    a registered backward (the placeholder), not torch's silent fallback."""
    attn = attention(1)
    x, cu = packed([3, 0, 9], 1)
    args = tuple(t.detach().requires_grad_() if isinstance(t, torch.Tensor) else t
                 for t in attn._op_args())
    for op in (torch.ops.sparsek.prefill_varlen, torch.ops.sparsek.prefill_varlen_kv):
        torch.library.opcheck(op.default, (x.requires_grad_(), cu) + args,
                              test_utils=("test_schema", "test_autograd_registration"))


def test_fake_implementations_give_the_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    attn = attention(2, score_slope=False)
    mode = FakeTensorMode()
    x, cu = (mode.from_tensor(t) for t in packed([4, 0, 7], 2))
    args = tuple(mode.from_tensor(t) if isinstance(t, torch.Tensor) else t for t in detached_args(attn))
    with mode:
        out, key, value, u = torch.ops.sparsek.prefill_varlen_kv(x, cu, *args)
        assert out.shape == (11, 32) and key.shape == value.shape == (11, 2, 8)
        assert u.shape == (11, 2) and u.dtype == torch.float32
        assert torch.ops.sparsek.prefill_varlen(x, cu, *args).shape == (11, 32)
        with pytest.raises(ValueError, match=r"expected packed rows \[N, C\] with C = 32"):
            torch.ops.sparsek.prefill_varlen(x[None], cu, *args)
        with pytest.raises(ValueError, match="cu_seqlens: expected a 1-D int32 or int64 tensor"):
            torch.ops.sparsek.prefill_varlen(x, cu.float(), *args)
        with pytest.raises(TypeError, match="expected torch.float32"):
            torch.ops.sparsek.prefill_varlen(x.double(), cu, *args)


def test_bad_offsets_are_refused_when_the_op_runs():
    attn = attention(3)
    x, _ = packed([5, 6], 3)
    with torch.no_grad(), pytest.raises(ValueError, match="offsets must rise from 0 to 11"):
        torch.compile(lambda x, cu: attn.prefill(x, cu_seqlens=cu), fullgraph=True)(
            x, torch.tensor([0, 6, 5, 11], dtype=torch.int32))


def test_compiled_block_has_no_graph_break_and_equals_eager():
    model = VarlenBlock()
    x, cu = packed(LENGTHS, 4)
    with torch.no_grad():
        want = model(x, cu)
        explanation = torch._dynamo.explain(model)(x, cu)
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1
        got = torch.compile(model, fullgraph=True)(x, cu)
    # Inductor fuses the surrounding norms and MLP differently from eager: float32 rounding.
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_compiled_varlen_prefill_is_bitwise_eager_and_matches_reference():
    """One opaque node: the same call, the same bits. dynamic=True: other batches (other N and
    B, offsets as a list) run through the same graph."""
    attn = attention(5)
    compiled = torch.compile(lambda x, cu: attn.prefill(x, cu_seqlens=cu), fullgraph=True, dynamic=True)
    with torch.no_grad():
        for seed, lengths in enumerate((LENGTHS, [2, 40, 0, 0, 1, 9], [33])):
            x, cu = packed(lengths, 10 + seed)
            got = compiled(x, cu)
            assert torch.equal(got, attn.prefill(x, cu_seqlens=cu)), lengths
            check_reference(attn, x, cu, got)
        # Host offsets (a list, a numpy array) become a tensor inside the graph.
        x, cu = packed([3, 0, 8], 13)
        for host in ([0, 3, 3, 11], np.array([0, 3, 3, 11])):
            listed = torch.compile(lambda x: attn.prefill(x, cu_seqlens=host), fullgraph=True)
            assert torch.equal(listed(x), attn.prefill(x, cu_seqlens=cu))


def test_compiled_bf16_varlen_prefill_equals_eager():
    attn = attention(6, dtype=torch.bfloat16, score_slope=False)
    x, cu = packed(LENGTHS, 6, dtype=torch.bfloat16)
    with torch.no_grad():
        got = torch.compile(lambda x, cu: attn.prefill(x, cu_seqlens=cu), fullgraph=True)(x, cu)
        assert torch.equal(got, attn.prefill(x, cu_seqlens=cu))
    check_reference(attn, x, cu, got)


def test_compiled_with_gradients_enabled_refuses_backward():
    """Parameters require grad by default: compiled, the varlen prefill still has no graph
    break and runs; the placeholder backward raises only when a gradient is computed."""
    attn = attention(7)
    x, cu = packed([4, 0, 12], 7)
    fn = lambda x, cu: attn.prefill(x, cu_seqlens=cu)  # noqa: E731
    assert torch._dynamo.explain(fn)(x, cu).graph_break_count == 0
    got = torch.compile(fn, fullgraph=True)(x, cu)
    assert got.requires_grad and torch.equal(got.detach(), fn(x, cu).detach())
    with pytest.raises(RuntimeError, match=r"no backward here \(sparsek::prefill_varlen\)"):
        got.sum().backward()


def prefill_then_decode(attn, lengths):
    """(cache, seqs, generate): generate(x, cu, tok) prefills the packed prompts into a fresh
    cache's sequences, then decodes `tok` twice for the non-empty ones."""
    B = len(lengths)
    cache = attn.new_cache(max_seqs=B + 1)
    cache.alloc_seq()   # slot 0 stays empty: the prompts go to slots other than 0..B-1 in order
    seqs = [cache.alloc_seq() for _ in range(B)][::-1]
    busy = [s for s, n in zip(seqs, lengths) if n]

    def generate(x, cu, tok):
        return [attn.prefill(x, cache, seqs, cu_seqlens=cu), attn.decode(tok, cache, busy),
                attn.decode(tok, cache, busy)]
    return cache, seqs, generate


def test_compiled_prefill_into_cache_and_decode_equal_eager():
    """The varlen cache fill is an ordered effect: compiled, it runs once and before the
    decode steps that read it (two decodes of the same token differ), and leaves the cache as
    eager does, bit for bit."""
    require_runtime()
    attn = attention(8)
    x, cu = packed(LENGTHS, 8)
    tok = torch.randn(sum(1 for n in LENGTHS if n), 32)
    with torch.no_grad():
        eager_cache, _, eager = prefill_then_decode(attn, LENGTHS)
        want = eager(x, cu, tok)
        cache, seqs, generate = prefill_then_decode(attn, LENGTHS)
        assert torch._dynamo.explain(generate)(x, cu, tok).graph_break_count == 0
        for s in seqs:   # explain ran the graph once: start again from empty sequences
            cache.reset_seq(s)
        compiled = torch.compile(generate, fullgraph=True)
        got = compiled(x, cu, tok)
        with pytest.raises(ValueError, match="already hold tokens"):
            compiled(x, cu, tok)
    assert not torch.equal(want[1], want[2])
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    check_reference(attn, x, cu, got[0])
    for a, b in zip(cache.view(0), eager_cache.view(0)):
        np.testing.assert_array_equal(a, b)
    assert cache.view(0).pos[seqs].tolist() == [n + 1 if n else -1 for n in LENGTHS]
    cache.close(), eager_cache.close()


def test_fill_cache_varlen_refuses_bad_input():
    """A clear error and an unchanged cache, never an out-of-range slot read or write."""
    require_runtime()
    attn = attention(9)
    x, cu = packed([3, 4], 9)
    cache = attn.new_cache(max_seqs=3)
    seqs = [cache.alloc_seq() for _ in range(2)]
    with torch.no_grad():
        _, key, value, u = torch.ops.sparsek.prefill_varlen_kv(x, cu, *detached_args(attn))
    fill = torch.ops.sparsek.fill_cache_varlen
    with pytest.raises(ValueError, match="one sequence id per sequence: 2 sequences, 1 ids"):
        fill(key, value, u, cu, cache.handle, 0, seqs[:1])
    with pytest.raises(ValueError, match="the cache has slots 0..2"):
        fill(key, value, u, cu, cache.handle, 0, [seqs[0], -1])
    with pytest.raises(ValueError, match="layer 1 is out of range"):
        fill(key, value, u, cu, cache.handle, 1, seqs)
    with pytest.raises(ValueError, match="offsets must rise"):
        fill(key, value, u, torch.tensor([0, 5, 3], dtype=torch.int32), cache.handle, 0, seqs)
    assert (cache.view(0).pos == -1).all()
    fill(key, value, u, cu, cache.handle, 0, seqs)
    assert cache.view(0).pos[seqs].tolist() == [2, 3]
    handle = cache.handle
    cache.close()
    with pytest.raises(ValueError, match=f"no open KV cache has handle {handle}"):
        fill(key, value, u, cu, handle, 0, seqs)
