# The tile-first decode (sparsek-tile-decode-attention) in its scalar form on
# the CPU: the GPU kernel's split count, slot numbering (pool slots below the
# pool count, then the valid window ring slots), per-lane slot classes,
# gates, merges and the last-split merge behind an atomic counter, run
# sequentially and checked against the float64 reference; and its reports
# of invalid cache states and scores.
import numpy as np
import pytest

from cpu_harness import assert_output_close, decode_batch, library, rng
from sparsek import ir, reference
from sparsek.memref import from_bf16_bits, to_bf16_bits
from sparsek.status import INVALID_CACHE_STATE, INVALID_SCORE, SparseKError

TILES = "sparsek-cpu-pipeline{decode-kernel=tiles}"
# The tensor-core kernel's walk (math=mma): 16 slots per warp and iteration,
# one softmax state per (warp, head).
TILES_MMA = "sparsek-cpu-pipeline{decode-kernel=tiles-mma}"
# The kernel aims at 264 blocks and splits a (b, h) pair at most once per 64
# slots: k + w < 128 gives one split (the block writes the output), longer
# caches with few pairs several (partials merged by the last split).


def run(lengths, Hkv, G, D, k, w, seed=0, tweak=None, pipeline=TILES):
    g = rng(seed + 31 * k + w + 7 * G + D)
    args, pos = decode_batch(g, lengths, Hkv, D, k, w)
    if tweak:
        tweak(args, pos)
    B, Hq = len(lengths), G * Hkv
    q = g.normal(size=(B, Hq, D)).astype(np.float32)
    lib = library(ir.decode_function("decode_tiles", k, w, head_dim=D), pipeline=pipeline)
    want = reference.decode_attention(q, *args, pos, k, w)
    o = np.full((B, Hq, D), 7, np.float32)
    lib.call("decode_tiles", q, *args, pos, o)
    assert_output_close(o, want, args[1], gate_tol=1e-6)
    return o


# Positions inside the window, pools filling and full, several sequences at
# different positions; caches long enough for several splits and short
# enough for one.
@pytest.mark.parametrize("k,w", [(100, 40), (300, 50), (60, 4), (8, 4)])
@pytest.mark.parametrize("G", [1, 4, 8])
@pytest.mark.parametrize("D", [64, 128])
def test_batch_at_different_positions(k, w, G, D):
    run((1, 3, 45, 140, 700), 2, G, D, k, w)


# k = 0 (window only) and w = 0 (pool only), split or not; pos < w.
@pytest.mark.parametrize("k,w", [(0, 8), (0, 200), (16, 0), (400, 0)])
@pytest.mark.parametrize("G", [1, 4])
def test_window_only_and_pool_only(k, w, G):
    run((1, 2, 5, 90, 600), 2, G, 64, k, w)


# Split boundaries: n valid slots around multiples of the split count and of
# a warp's slots per iteration, so splits end inside an iteration, some
# splits are empty (n < splits) and a split's last iteration is partial.
@pytest.mark.parametrize("length", [1, 2, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300])
def test_split_boundaries(length):
    run((length,), 1, 4, 128, 256, 64)


# The mma walk: positions, pools, splits (16-slot warp pieces, so splits end
# inside a key tile), k = 0 and w = 0, every G of one kernel shape.
@pytest.mark.parametrize("k,w", [(100, 40), (300, 50), (60, 4), (0, 200), (400, 0)])
@pytest.mark.parametrize("G", [1, 3, 8])
@pytest.mark.parametrize("D", [64, 128])
def test_mma_walk(k, w, G, D):
    run((1, 3, 45, 140, 700), 2, G, D, k, w, pipeline=TILES_MMA)


@pytest.mark.parametrize("length", [1, 15, 16, 17, 63, 64, 65, 255, 257])
def test_mma_walk_split_boundaries(length):
    run((length,), 1, 4, 128, 256, 64, pipeline=TILES_MMA)


# The last split resets its counter: every later call (a CUDA graph replay
# on the GPU) merges again, over its own partials. New queries per call, so
# a merge that ran early over an earlier call's partials shows.
def test_counters_reset_between_calls():
    k, w, D, Hkv, G, lengths = 200, 40, 64, 2, 4, (1, 50, 400)
    g = rng(17)
    args, pos = decode_batch(g, lengths, Hkv, D, k, w)
    lib = library(ir.decode_function("decode_tiles", k, w, head_dim=D), pipeline=TILES)
    for _ in range(4):
        q = g.normal(size=(len(lengths), G * Hkv, D)).astype(np.float32)
        o = np.full(q.shape, 7, np.float32)
        lib.call("decode_tiles", q, *args, pos, o)
        assert_output_close(o, reference.decode_attention(q, *args, pos, k, w), args[1])


def test_empty_cache_state_gives_zero():
    # Pool count 0 and w = 0: no slot, the output is 0 (SPEC 5).
    def empty(args, pos):
        args[4][:] = 0
    o = run((5, 9), 2, 2, 64, 300, 0, tweak=empty)
    assert np.all(o == 0)


def test_bad_cache_state_is_reported_and_skipped_like_the_gpu_loops():
    # NaN / +inf pool scores are reported (INVALID_SCORE) and drop their
    # slot; pool counts outside [0, k] and negative positions are reported
    # (INVALID_CACHE_STATE) and their heads output zeros, reading no slot:
    # what the GPU loop form's kernels do (test_cpu_device_status.py
    # compares the two forms case by case).
    k, w, D, Hkv, G = 150, 20, 64, 2, 2
    g = rng(5)
    args, pos = decode_batch(g, (200, 200, 200), Hkv, D, k, w)
    q = g.normal(size=(3, G * Hkv, D)).astype(np.float32)
    scores = args[2].copy()
    args[2][0, 0, 3] = np.nan
    args[2][0, 1, 7] = np.inf
    lib = library(ir.decode_function("decode_tiles", k, w, head_dim=D), pipeline=TILES)
    o = np.full((3, G * Hkv, D), 7, np.float32)
    with pytest.raises(SparseKError) as e:
        lib.call("decode_tiles", q, *args, pos, o)
    assert e.value.code == INVALID_SCORE
    # The reference shows a dropped slot by leaving it out of the pool.
    for b, h, s in ((0, 0, 3), (0, 1, 7)):
        want = _without_slot(q, args, pos, k, w, b, h, s)
        np.testing.assert_allclose(o[b, h * G:(h + 1) * G], want, rtol=1e-5, atol=1e-5)
    want = reference.decode_attention(q, *[a.copy() for a in args[:2]], scores, *args[3:], pos,
                                      k, w)
    np.testing.assert_allclose(o[1:], want[1:], rtol=1e-5, atol=1e-5)
    args[2][:] = scores
    args[4][1, 0] = k + 5
    args[4][1, 1] = -3
    pos2 = pos.copy()
    pos2[2] = -4
    o[:] = 7
    with pytest.raises(SparseKError) as e:
        lib.call("decode_tiles", q, *args, pos2, o)
    assert e.value.code == INVALID_CACHE_STATE
    assert np.all(o[1:] == 0)
    want = reference.decode_attention(q[:1], *[a[:1] for a in args], pos[:1], k, w)
    np.testing.assert_allclose(o[0], want[0], rtol=1e-5, atol=1e-5)


def _without_slot(q, args, pos, k, w, b, h, s):
    """The reference output of the query heads of (b, h) with pool slot s moved out."""
    key, value, sc, tau, cnt = (a[b:b + 1].copy() for a in args)
    n = int(cnt[0, h])
    keep = [i for i in range(n) if i != s]
    for arr in (key, value):
        arr[0, h, :n - 1] = arr[0, h, keep]
    sc[0, h, :n - 1] = sc[0, h, keep]
    cnt[0, h] = n - 1
    sc[~np.isfinite(sc)] = 0.0  # other heads' bad scores: not compared
    G = q.shape[1] // key.shape[1]
    out = reference.decode_attention(q[b:b + 1], key, value, sc, tau, cnt, pos[b:b + 1], k, w)
    return out[0, h * G:(h + 1) * G]


# Run-time group sizes: one walk for G <= 8, the loops beyond.
def test_group_beyond_eight_keeps_the_loops():
    run((3, 200), 1, 12, 64, 100, 40)


# The GPU kernel's types: bf16 rows against the reference on the same
# rounded inputs (SPEC 8: 2e-2 on outputs of unit scale).
@pytest.mark.parametrize("D", [64, 128])
def test_bf16(D):
    k, w, Hkv, G = 200, 30, 2, 4
    g = rng(9)
    args, pos = decode_batch(g, (2, 40, 300), Hkv, D, k, w)
    q = g.normal(size=(3, G * Hkv, D)).astype(np.float32)
    qb, kb, vb = (to_bf16_bits(a) for a in (q, args[0], args[1]))
    lib = library(ir.decode_function("decode_tiles_bf16", k, w, elem="bf16", head_dim=D),
                  pipeline=TILES)
    o = to_bf16_bits(np.zeros((3, G * Hkv, D), np.float32))
    lib.call("decode_tiles_bf16", qb, kb, vb, *args[2:], pos, o)
    want = reference.decode_attention(from_bf16_bits(qb), from_bf16_bits(kb), from_bf16_bits(vb),
                                      *args[2:], pos, k, w)
    np.testing.assert_allclose(from_bf16_bits(o), want, atol=2e-2)
