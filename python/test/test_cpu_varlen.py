# Variable-length batches (sparsek.varlen) on the CPU: packed sequences against each sequence run alone (compiled select_attention) and the float64 reference.
import numpy as np
import pytest

from cpu_harness import assert_output_close, library, require_compiler, rng
from sparsek import ir, reference, varlen
from sparsek.memref import from_bf16_bits, to_bf16_bits


@pytest.fixture(autouse=True)
def _compiler():
    require_compiler()


def packed(g, lengths_q, lengths_k, hq, hkv, d, dv):
    tq, tk = sum(lengths_q), sum(lengths_k)
    q = g.normal(size=(tq, hq, d)).astype(np.float32)
    key = g.normal(size=(tk, hkv, d)).astype(np.float32)
    value = g.normal(size=(tk, hkv, dv)).astype(np.float32)
    u = g.normal(size=(tk, hkv)).astype(np.float32)
    cu = [np.concatenate([[0], np.cumsum(n)]).astype(np.int32) for n in (lengths_q, lengths_k)]
    return q, key, value, u, cu[0], cu[1]


def one_sequence(q, key, value, u, k, w, scale=None):
    """The sequence alone through the compiled (non-varlen) select_attention: [T, H, D] rows."""
    if q.shape[0] == 0:
        return np.zeros((0, q.shape[1], value.shape[2]), np.float32)
    heads = [np.ascontiguousarray(a.transpose(1, 0, 2)[None]) for a in (q, key, value)]
    uh = np.ascontiguousarray(u.T[None])
    out = np.zeros((1, q.shape[1], q.shape[0], value.shape[2]), np.float32)
    library(ir.select_attention_function("sa", k, w, scale=scale)).call("sa", *heads, uh, out)
    return out[0].transpose(1, 0, 2)


def check_against_each_sequence(lengths_q, lengths_k, hq, hkv, d, dv, k, w, seed, scale=None,
                                reference_up_to=300):
    g = rng(seed)
    q, key, value, u, cuq, cuk = packed(g, lengths_q, lengths_k, hq, hkv, d, dv)
    out = varlen.select_attention(q, key, value, u, cuq, cuk, k=k, w=w, scale=scale)
    assert out.shape == (q.shape[0], hq, dv)
    for b in range(len(lengths_q)):
        rq, rk = slice(cuq[b], cuq[b + 1]), slice(cuk[b], cuk[b + 1])
        got = out[rq]
        # The same op on the sequence alone: the same arithmetic.
        np.testing.assert_array_equal(got, one_sequence(q[rq], key[rk], value[rk], u[rk], k, w, scale))
        if 0 < lengths_q[b] <= reference_up_to:
            want = reference.sparsek_attention(
                q[rq].transpose(1, 0, 2)[None], key[rk].transpose(1, 0, 2)[None],
                value[rk].transpose(1, 0, 2)[None], u[rk].T[None], k, w, scale)[0]
            assert_output_close(got.transpose(1, 0, 2), want, value[rk])


def test_mixed_lengths_self_attention():
    """Lengths 1, 17, 4096 and 0 in one batch (prefill: S = T per sequence), G = 2."""
    lengths = [1, 17, 0, 4096, 17, 0]
    check_against_each_sequence(lengths, lengths, hq=4, hkv=2, d=8, dv=8, k=8, w=4, seed=1)


def test_cached_prefix_more_keys_than_queries():
    """S > T per sequence: queries continue a cached prefix; a sequence with keys only."""
    check_against_each_sequence([1, 17, 0, 300, 5], [9, 17, 5, 4096, 64], hq=4, hkv=1, d=16, dv=8,
                                k=6, w=3, seed=2, scale=0.3)


def test_window_only_and_budget_beyond_lengths():
    check_against_each_sequence([3, 40], [3, 50], hq=2, hkv=2, d=4, dv=4, k=0, w=5, seed=3)
    check_against_each_sequence([3, 40], [7, 40], hq=2, hkv=2, d=4, dv=4, k=64, w=64, seed=4)


def test_empty_batch_and_all_empty_sequences():
    g = rng(5)
    q, key, value, u, cuq, cuk = packed(g, [0, 0], [0, 0], 2, 1, 4, 4)
    assert varlen.select_attention(q, key, value, u, cuq, cuk, k=2, w=2).shape == (0, 2, 4)
    assert varlen.select_attention(q, key, value, u, [0], [0], k=2, w=2).shape == (0, 2, 4)


def test_bf16():
    g = rng(6)
    lengths = [5, 0, 33]
    q, key, value, u, cuq, cuk = packed(g, lengths, lengths, 4, 2, 8, 8)
    bits = [to_bf16_bits(a) for a in (q, key, value)]
    out = varlen.select_attention(*bits, u, cuq, cuk, k=4, w=4, elem="bf16")
    assert out.dtype == np.uint16
    exact = [from_bf16_bits(b) for b in bits]
    want = varlen.select_attention(*exact, u, cuq, cuk, k=4, w=4)
    np.testing.assert_allclose(from_bf16_bits(out), want, atol=2e-2 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("cuq,cuk,match", [
    ([0, 3, 2, 5], [0, 3, 4, 5], "offsets must rise"),
    ([1, 3, 5], [0, 3, 5], "offsets must rise from 0"),
    ([0, 3, 4], [0, 3, 5], "from 0 to 5"),
    ([0, 3, 5], [0, 2, 5], r"sequences \[0\] have more queries than keys"),
    ([0, 5], [0, 3, 5], "1 sequences, cu_seqlens_k 2"),
])
def test_bad_offsets_are_refused(cuq, cuk, match):
    g = rng(7)
    q, key, value, u, _, _ = packed(g, [5], [5], 2, 1, 4, 4)
    with pytest.raises(ValueError, match=match):
        varlen.select_attention(q, key, value, u, np.array(cuq, np.int32), np.array(cuk, np.int32),
                                k=2, w=2)


def test_compiled_code_skips_out_of_range_offsets():
    """Bypassing the Python checks, a sequence whose offsets leave the packed rows or decrease
    is skipped by the compiled code (its rows keep their contents), never read or written
    out of bounds; the others are computed as usual."""
    g = rng(8)
    q, key, value, u, _, _ = packed(g, [4, 4], [4, 4], 2, 1, 4, 4)
    lib = varlen._library(2, 2, "f32", None)
    for cuq, cuk in [([0, 4, 1000], [0, 4, 8]), ([0, 4, 2], [0, 4, 8]), ([-5, 4, 8], [0, 4, 8]),
                     ([0, 4, 8], [0, 4, 1 << 30]), ([0, 4, 8], [0, 6, 3])]:
        out = np.full((8, 2, 4), 7.0, np.float32)
        lib.call("varlen", q, key, value, u, np.array(cuq, np.int32), np.array(cuk, np.int32), out)
        untouched = np.ones(8, bool)
        for b in range(2):
            q0, q1, k0, k1 = cuq[b], cuq[b + 1], cuk[b], cuk[b + 1]
            if 0 <= q0 < q1 <= 8 and 0 <= k0 <= k1 <= 8:
                want = one_sequence(q[q0:q1], key[k0:k1], value[k0:k1], u[k0:k1], 2, 2)
                np.testing.assert_array_equal(out[q0:q1], want)
                untouched[q0:q1] = False
        assert (out[untouched] == 7.0).all(), (cuq, cuk)
