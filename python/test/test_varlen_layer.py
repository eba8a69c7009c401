# A whole SparseK layer over a varlen batch of prompts (sparsek.varlen.Layer, one compiled call)
# and the KV cache filled from it in one call (KVCache.append_varlen), on the CPU: against each
# prompt run alone through the compiled layer and filled with append_chunk; then
# SparseKAttention.prefill(..., cu_seqlens=...) and decoding after it (with torch).
import numpy as np
import pytest

from cpu_harness import require_compiler
from sparsek import kv_cache, varlen
from sparsek.compiled_layer import CompiledLayer
from sparsek.layer import LayerConfig


@pytest.fixture(autouse=True)
def _compiler():
    require_compiler()


def runtime():
    try:
        kv_cache.library_path()
    except kv_cache.RuntimeNotFound as e:
        pytest.skip(str(e))


def make_inputs(cfg, lengths, seed):
    g = np.random.default_rng(seed)
    weights = {n: (g.normal(size=s) * 0.3).astype(np.float32) for n, s in cfg.weight_shapes().items()}
    x = g.normal(size=(sum(lengths), cfg.C)).astype(np.float32)
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return weights, x, cu


CFG = LayerConfig(C=32, Hq=4, Hkv=2, D=8, k=6, w=4, dtype="f32", bias=True, slope=True, scale=None)
LENGTHS = [1, 17, 0, 4096, 5, 0]


def test_layer_matches_each_prompt_alone():
    """Lengths 1, 17, 0, 4096, 5, 0; the score slope makes positions restart per prompt."""
    weights, x, cu = make_inputs(CFG, LENGTHS, 1)
    out, key, value, u = varlen.Layer(CFG)(x, weights, cu)
    alone = CompiledLayer(CFG)
    for b in range(len(LENGTHS)):
        r = slice(cu[b], cu[b + 1])
        if LENGTHS[b] == 0:
            continue
        want, wk, wv, wu = alone(x[None, r], weights, return_kv=True)
        scale = max(1.0, np.abs(want).max())
        np.testing.assert_allclose(out[r], want[0], rtol=1e-5, atol=1e-5 * scale, err_msg=f"prompt {b}")
        np.testing.assert_allclose(key[r], wk[0].transpose(1, 0, 2), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(value[r], wv[0].transpose(1, 0, 2), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(u[r], wu[0].T, rtol=1e-5, atol=1e-5)


def test_layer_empty_and_bad_offsets():
    layer = varlen.Layer(CFG)
    weights, x, _ = make_inputs(CFG, [3], 2)
    out, key, value, u = layer(x[:0], weights, [0, 0, 0])
    assert out.shape == (0, CFG.C) and key.shape == (0, CFG.Hkv, CFG.D)
    with pytest.raises(ValueError, match="offsets must rise"):
        layer(x, weights, [0, 2, 1, 3])


def test_cache_fill_in_one_call_equals_chunks():
    """append_varlen of the packed prompts == append_chunk of each, bit for bit (every slot
    array), prompts listed out of slot order; then a second varlen batch continues them."""
    runtime()
    weights, x, cu = make_inputs(CFG, LENGTHS, 3)
    _, key, value, u = varlen.Layer(CFG)(x, weights, cu)
    B = len(LENGTHS)
    caches = [kv_cache.KVCache(1, CFG.Hkv, CFG.k, CFG.w, CFG.D, max_seqs=B + 1) for _ in range(2)]
    for c in caches:
        assert [c.alloc_seq() for _ in range(B + 1)] == list(range(B + 1))
    order = [3, 0, 5, 1, 4, 2]   # sequence slot of prompt b
    caches[0].append_varlen(0, order, cu, key, value, u)
    for b in range(B):
        r = slice(cu[b], cu[b + 1])
        if LENGTHS[b]:
            caches[1].append_chunk(0, order[b], key[r].transpose(1, 0, 2), value[r].transpose(1, 0, 2),
                                   u[r].T)
    for a, b in zip(caches[0].view(0), caches[1].view(0)):
        np.testing.assert_array_equal(a, b)
    # More tokens for some: a varlen batch onto cached prefixes.
    more = [2, 0, 7]
    g = np.random.default_rng(4)
    cu2 = np.concatenate([[0], np.cumsum(more)]).astype(np.int32)
    k2, v2 = (g.normal(size=(cu2[-1], CFG.Hkv, CFG.D)).astype(np.float32) for _ in range(2))
    u2 = g.normal(size=(cu2[-1], CFG.Hkv)).astype(np.float32)
    caches[0].append_varlen(0, [0, 3, 2], cu2, k2, v2, u2)
    for i, seq in enumerate([0, 3, 2]):
        r = slice(cu2[i], cu2[i + 1])
        if more[i]:
            caches[1].append_chunk(0, seq, k2[r].transpose(1, 0, 2), v2[r].transpose(1, 0, 2), u2[r].T)
    for a, b in zip(caches[0].view(0), caches[1].view(0)):
        np.testing.assert_array_equal(a, b)


def test_cache_fill_refuses_bad_input():
    runtime()
    cache = kv_cache.KVCache(1, 2, 4, 4, 8, max_seqs=3)
    s = [cache.alloc_seq() for _ in range(2)]
    k = np.zeros((5, 2, 8), np.float32)
    u = np.zeros((5, 2), np.float32)
    with pytest.raises(kv_cache.RuntimeCacheError, match="appears twice"):
        cache.append_varlen(0, [s[0], s[0]], [0, 2, 5], k, k, u)
    with pytest.raises(kv_cache.RuntimeCacheError, match="decreases"):
        cache.append_varlen(0, s, [0, 4, 3], k[:3], k[:3], u[:3])
    with pytest.raises(ValueError, match="expected 3 integer offsets"):
        cache.append_varlen(0, s, [0, 5], k, k, u)
    bad = u.copy()
    bad[4, 1] = np.nan
    with pytest.raises(kv_cache.RuntimeCacheError, match="NaN"):
        cache.append_varlen(0, s, [0, 2, 5], k, k, bad)
    assert (cache.view(0).pos[s] == -1).all(), "a rejected call changes nothing"


def test_module_prefill_varlen_then_decode():
    """SparseKAttention.prefill(x_packed, cache, seqs, cu_seqlens=...) equals each prompt's own
    prefill, fills the cache like them, and decoding continues alike."""
    runtime()
    torch = pytest.importorskip("torch")
    from sparsek.nn import SparseKAttention

    torch.manual_seed(0)
    attn = SparseKAttention(embed_dim=32, num_heads=4, num_kv_heads=2, k=6, w=4, score_slope=True)
    with torch.no_grad():
        attn.score_bias.normal_()
        attn.score_slope.normal_(std=0.05)
    lengths = [1, 17, 0, 300, 5]
    B = len(lengths)
    cu = torch.tensor([0] + np.cumsum(lengths).tolist(), dtype=torch.int32)
    x = torch.randn(int(cu[-1]), 32)
    packed, single = attn.new_cache(max_seqs=B), attn.new_cache(max_seqs=B)
    sp, ss = [packed.alloc_seq() for _ in range(B)], [single.alloc_seq() for _ in range(B)]
    with torch.no_grad():
        got = attn.prefill(x, packed, sp, cu_seqlens=cu)
        assert got.shape == x.shape
        for b in range(B):
            r = slice(int(cu[b]), int(cu[b + 1]))
            if lengths[b]:
                want = attn.prefill(x[r][None], single, [ss[b]])[0]
                torch.testing.assert_close(got[r], want, rtol=1e-5, atol=1e-5)
        for a, b in zip(packed.view(0), single.view(0)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        busy = [s for s, n in zip(sp, lengths) if n]
        xt = torch.randn(len(busy), 32)
        torch.testing.assert_close(attn.decode(xt, packed, busy),
                                   attn.decode(xt, single, [s for s, n in zip(ss, lengths) if n]),
                                   rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="already hold tokens"):
            attn.prefill(x, packed, sp, cu_seqlens=cu)
    # Forward-only: with gradients wanted it runs, and a gradient through it raises.
    y = attn.prefill(x.requires_grad_(), cu_seqlens=cu)
    torch.testing.assert_close(y.detach(), got, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match=r"no backward here \(sparsek::prefill_varlen\)"):
        y.sum().backward()
