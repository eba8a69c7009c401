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


# -- The padded form (varlen.padded_function): what the GPU runs, on the CPU --
#
# The same module through the CPU loops, the tile walk of the GPU's mma.sync
# kernel (prefill-kernel=tiles, its scalar form) and the GPU's parallel loop
# form: each against the loop form above (itself bitwise equal to each
# sequence alone) and the float64 reference.
PADDED_PIPELINES = {
    "loops": "sparsek-cpu-pipeline",
    "tiles": "sparsek-cpu-pipeline{prefill-kernel=tiles select-chunk=16}",
    "parallel": "sparsek-cpu-pipeline{parallel-loops select-chunk=16}",
}


def run_padded(form, q, key, value, u, cuq, cuk, k, w, scale=None, elem="f32", tp_sp=None, out=None):
    tp, sp = varlen.alignment(cuq, cuk, w) if tp_sp is None else tp_sp
    # Static head dims, as the GPU path compiles it (the parallel form needs them).
    lib = library(varlen.padded_function("varlen", k, w, elem, scale, q.shape[2], value.shape[2]),
                  pipeline=PADDED_PIPELINES[form])
    if out is None:
        out = np.zeros((q.shape[0], q.shape[1], value.shape[2]), q.dtype)
    lib.call("varlen", q, key, value, u, np.asarray(cuq, np.int32), np.asarray(cuk, np.int32), tp, sp, out)
    return out


def check_padded(form, lengths_q, lengths_k, hq, hkv, d, dv, k, w, seed, scale=None, reference_up_to=300):
    g = rng(seed)
    q, key, value, u, cuq, cuk = packed(g, lengths_q, lengths_k, hq, hkv, d, dv)
    got = run_padded(form, q, key, value, u, cuq, cuk, k, w, scale)
    loop = varlen.select_attention(q, key, value, u, cuq, cuk, k=k, w=w, scale=scale)
    if form == "loops":
        # Per query the same arithmetic: the padding only adds masked keys.
        np.testing.assert_array_equal(got, loop)
    else:
        np.testing.assert_allclose(got, loop, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(value).max()))
    for b in range(len(lengths_q)):
        rq, rk = slice(cuq[b], cuq[b + 1]), slice(cuk[b], cuk[b + 1])
        if 0 < lengths_q[b] <= reference_up_to:
            want = reference.sparsek_attention(
                q[rq].transpose(1, 0, 2)[None], key[rk].transpose(1, 0, 2)[None],
                value[rk].transpose(1, 0, 2)[None], u[rk].T[None], k, w, scale)[0]
            assert_output_close(got[rq].transpose(1, 0, 2), want, value[rk])
    return varlen.alignment(cuq, cuk, w)


def test_alignment():
    # Prefill with w > 1: every shorter sequence starts at row 0, so T' = S'.
    assert varlen.alignment([0, 1, 18, 18, 4114], [0, 1, 18, 18, 4114], 4) == (4096, 4096)
    # w = 1: no window reaches back, every sequence ends at row S' - 1: T' = max T_b.
    assert varlen.alignment([0, 1, 18, 4114], [0, 1, 18, 4114], 1) == (4096, 4096)
    assert varlen.alignment([0, 1, 18], [0, 1, 18], 1) == (17, 17)
    # Long cached prefixes (S_b - T_b >= w - 1): right-aligned, T' = max T_b.
    assert varlen.alignment([0, 1, 4, 4, 6], [0, 9, 4009, 4014, 4078], 3) == (3, 4000)
    # A short prefix among them: left-aligned, T' grows to S' - (S_b - T_b).
    assert varlen.alignment([0, 2, 5], [0, 3, 100], 3) == (96, 97)
    assert varlen.alignment([0, 0, 0], [0, 5, 9], 3) == (0, 0)


@pytest.mark.parametrize("form", sorted(PADDED_PIPELINES))
def test_padded_mixed_lengths(form):
    """Lengths 1, 17, 4096 and 0 in one batch (S = T): one select_attention over [B, H, 4096, D]."""
    lengths = [1, 17, 0, 4096, 17, 0]
    assert check_padded(form, lengths, lengths, hq=4, hkv=2, d=8, dv=8, k=8, w=4, seed=11) == (4096, 4096)


@pytest.mark.parametrize("form", sorted(PADDED_PIPELINES))
def test_padded_more_keys_than_queries(form):
    """S > T per sequence, short and long cached prefixes (left- and right-aligned)."""
    check_padded(form, [1, 17, 0, 300, 5], [9, 17, 5, 4096, 64], hq=4, hkv=1, d=16, dv=8, k=6, w=3,
                 seed=12, scale=0.3)
    # Every prefix >= w - 1: all right-aligned behind masked left padding, T' = max T_b.
    assert check_padded(form, [1, 3, 0, 2, 5], [9, 4000, 5, 64, 4096], hq=2, hkv=2, d=8, dv=8, k=5,
                        w=3, seed=13) == (5, 4096)


@pytest.mark.parametrize("form", sorted(PADDED_PIPELINES))
def test_padded_window_edges(form):
    # w = 1: prefill sequences right-aligned too; w = 0: selection only; k = 0: window only.
    assert check_padded(form, [1, 17, 40], [1, 17, 40], hq=2, hkv=1, d=4, dv=4, k=4, w=1, seed=14) == (40, 40)
    check_padded(form, [3, 17, 40], [3, 20, 40], hq=2, hkv=1, d=4, dv=4, k=4, w=0, seed=15)
    check_padded(form, [3, 40], [7, 40], hq=2, hkv=2, d=4, dv=4, k=0, w=5, seed=16)
    check_padded(form, [3, 40], [7, 40], hq=2, hkv=2, d=4, dv=4, k=64, w=64, seed=17)


def test_padded_bf16():
    g = rng(18)
    lq, lk = [5, 0, 33, 1], [5, 4, 40, 70]
    q, key, value, u, cuq, cuk = packed(g, lq, lk, 4, 2, 8, 8)
    bits = [to_bf16_bits(a) for a in (q, key, value)]
    for form in PADDED_PIPELINES:
        got = run_padded(form, *bits, u, cuq, cuk, 4, 4, elem="bf16")
        want = varlen.select_attention(*bits, u, cuq, cuk, k=4, w=4, elem="bf16")
        np.testing.assert_allclose(from_bf16_bits(got), from_bf16_bits(want), atol=2e-2)


def test_padded_skips_what_does_not_fit():
    """Offsets out of range, decreasing, or a sequence that does not fit the (T', S') passed:
    that sequence's rows keep their contents; the others are computed as usual."""
    g = rng(19)
    q, key, value, u, _, _ = packed(g, [4, 4], [4, 4], 2, 1, 4, 4)
    for cuq, cuk, tp_sp in [([0, 4, 1000], [0, 4, 8], (4, 4)), ([0, 4, 2], [0, 4, 8], (4, 4)),
                            ([-5, 4, 8], [0, 4, 8], (4, 4)), ([0, 4, 8], [0, 4, 1 << 30], (4, 4)),
                            ([0, 4, 8], [0, 6, 3], (4, 4)), ([0, 4, 8], [0, 4, 8], (3, 4)),
                            ([0, 4, 8], [0, 4, 8], (4, 3)), ([0, 4, 8], [0, 4, 8], (4, 5)),
                            ([0, 4, 8], [0, 4, 8], (-3, 4)), ([0, 4, 8], [0, 4, 8], (4, -1))]:
        out = np.full((8, 2, 4), 7.0, np.float32)
        run_padded("loops", q, key, value, u, cuq, cuk, 2, 2, tp_sp=tp_sp, out=out)
        untouched = np.ones(8, bool)
        tp, sp = max(tp_sp[0], 0), max(tp_sp[1], 0)  # negative sizes count as 0
        tp = min(tp, sp)  # T' > S' is cut to S'
        for b in range(2):
            q0, q1, k0, k1 = cuq[b], cuq[b + 1], cuk[b], cuk[b + 1]
            t, s = q1 - q0, k1 - k0
            if not (0 <= q0 < q1 <= 8 and 0 <= k0 <= k1 <= 8 and t <= s <= sp):
                continue
            pk = sp - s if (s == sp or s - t >= 1) else 0
            i0 = pk + s - t - (sp - tp)
            if i0 < 0 or i0 + t > tp:
                continue
            want = one_sequence(q[q0:q1], key[k0:k1], value[k0:k1], u[k0:k1], 2, 2)
            np.testing.assert_array_equal(out[q0:q1], want)
            untouched[q0:q1] = False
        assert (out[untouched] == 7.0).all(), (cuq, cuk, tp_sp)
