# The device status of the GPU loop form, run on the CPU: kernels report NaN/+inf scores and bad decode cache states with the CPU path's codes.
"""The GPU pipeline's kernels report invalid data through the device status
(Status.h): a compare-and-swap on a status word, first error wins. In
`sparsek-cpu-pipeline{parallel-loops}` the same kernel code runs on the CPU
with the library's host status word as that word, so the entry point
returns what the kernels found. Each case here compiles one function in the
sequential form (the CPU path) and in the parallel form (the GPU's loops),
breaks one input, and requires both to raise the same SparseKError (code and
message); a valid call afterwards runs clean and matches the reference.
python/test/gpu/test_gpu_device_status.py checks the same on the GPU."""
import numpy as np
import pytest

from cpu_harness import decode_batch, library, rng
from device_status_cases import ARG_INDEX, TILE_CASES, assert_other_heads_kept, case_value
from sparsek import ir, reference
from sparsek.status import INVALID_CACHE_STATE, INVALID_SCORE, SparseKError

SERIAL = "sparsek-cpu-pipeline"
PARALLEL = "sparsek-cpu-pipeline{parallel-loops select-chunk=3}"
FUSED_SERIAL = "sparsek-cpu-pipeline{fuse-select-attention}"
TILES = "sparsek-cpu-pipeline{prefill-kernel=tiles select-chunk=3}"
DECODE_TILES = "sparsek-cpu-pipeline{decode-kernel=tiles}"


def _raises(lib, name, args):
    with pytest.raises(SparseKError) as e:
        lib.call(name, *args)
    return e.value


def _same_error(pipelines, funcs, name, make_args, code):
    """Every pipeline raises SparseKError `code` with the same message (or,
    with `code` None, none raises)."""
    messages = set()
    for pipeline in pipelines:
        lib = library(funcs, pipeline=pipeline)
        if code is None:
            lib.call(name, *make_args())
            continue
        err = _raises(lib, name, make_args())
        assert err.code == code, (pipeline, err)
        messages.add(str(err))
    assert len(messages) <= 1, messages


def _select_args(u, k, T):
    B, H, _ = u.shape
    return [u, np.zeros((B, H, T, k), np.int32), np.zeros((B, H, T, k), np.float32),
            np.zeros((B, H, T), np.float32)]


# Candidates (read by the chunked selection) and window-only positions
# (read by no selection kernel), NaN and +inf. With k = 0 the select
# canonicalizes to tau = +inf, reading no score: no form reports anything.
@pytest.mark.parametrize("k,w,pos,code", [(4, 3, 2, INVALID_SCORE), (4, 3, 28, INVALID_SCORE),
                                          (4, 3, 30, INVALID_SCORE), (4, 0, 29, INVALID_SCORE),
                                          (40, 2, 10, INVALID_SCORE), (0, 3, 5, None)])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_select_reports_bad_scores_like_the_cpu_path(k, w, pos, code, bad):
    g = rng(k + w + pos)
    u = g.normal(size=(2, 2, 31)).astype(np.float32)
    u[1, 1, pos] = bad
    _same_error([SERIAL, PARALLEL, "sparsek-cpu-pipeline{parallel-loops}"],
                ir.select_function("select", k, w), "select",
                lambda: _select_args(u.copy(), k, 31), code)


def _composite_args(g, u, D=8, Hq=2, T=None):
    B, Hkv, S = u.shape
    T = S if T is None else T
    q = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    key, value = (g.normal(size=(B, Hkv, S, D)).astype(np.float32) for _ in range(2))
    return [q, key, value, u, np.zeros_like(q)]


# The fused composite's selection kernels, its window-score kernel, and the
# tile-first prefill (scalar tiles on the CPU: the mma-sync kernel's key sets).
# k = 0 canonicalizes to sliding-window attention, which reads no score.
@pytest.mark.parametrize("k,w,pos,code", [(4, 3, 1, INVALID_SCORE), (4, 3, 25, INVALID_SCORE),
                                          (5, 2, 12, INVALID_SCORE), (0, 3, 24, None)])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_select_attention_reports_bad_scores_like_the_cpu_path(k, w, pos, code, bad):
    g = rng(10 + k + pos)
    u = g.normal(size=(1, 1, 26)).astype(np.float32)
    u[0, 0, pos] = bad
    args = _composite_args(g, u)
    pipelines = [FUSED_SERIAL, PARALLEL]
    if k > 0:
        pipelines.append(TILES)
    _same_error(pipelines, ir.select_attention_function("sa", k, w, head_dim=8), "sa",
                lambda: [a.copy() for a in args], code)


def _decode_args(k, w, D=16, Hq=4, Hkv=2, lengths=(1, 9, 40)):
    g = rng(k + w + D)
    args, pos = decode_batch(g, lengths, Hkv, D, k, w)
    q = g.normal(size=(len(lengths), Hq, D)).astype(np.float32)
    return [q, *args, pos, np.zeros((len(lengths), Hq, D), np.float32)]


def _broken(args, what, value, at):
    args = [a.copy() for a in args]
    args[ARG_INDEX[what]][at] = value
    return args


# Cache states the runtime never produces: the CPU path scans the cache
# before any slot is read; the split kernels check what they read.
@pytest.mark.parametrize("what,value,at,code", [
    ("pool_count", 9, (1, 0), INVALID_CACHE_STATE),     # more than k
    ("pool_count", -1, (2, 1), INVALID_CACHE_STATE),
    ("pos", -1, (0,), INVALID_CACHE_STATE),
    ("pos", -(2**40), (2,), INVALID_CACHE_STATE),
    ("slot_scores", np.nan, (2, 1, 0), INVALID_SCORE),  # a pool slot
    ("slot_scores", np.inf, (2, 0, 7), INVALID_SCORE),
    ("tau", np.nan, (1, 1), INVALID_SCORE),
])
def test_decode_reports_bad_cache_states_like_the_cpu_path(what, value, at, code):
    k, w = 8, 4
    args = _decode_args(k, w)
    assert args[5][2].min() == k  # the long sequence's pools are full: slot 7 is in use
    _same_error([SERIAL, PARALLEL], ir.decode_function("decode", k, w, head_dim=16), "decode",
                lambda: _broken(args, what, value, at), code)


def test_decode_error_skips_only_the_bad_head_and_reads_no_slot_out_of_range():
    # A pool count far past k + w must not make a kernel read past the slots
    # (the split form clamped it before; now it skips that head): the other
    # heads' outputs are still right, the bad one's are zeros.
    k, w = 8, 4
    args = _decode_args(k, w)
    bad = _broken(args, "pool_count", 1 << 30, (1, 0))
    lib = library(ir.decode_function("decode", k, w, head_dim=16), pipeline=PARALLEL)
    err = _raises(lib, "decode", bad)
    assert err.code == INVALID_CACHE_STATE
    out = bad[-1]
    want = reference.decode_attention(*args[:7], k, w)
    G = 2  # query heads 0, 1 read KV head 0
    np.testing.assert_array_equal(out[1, :G], 0)
    mask = np.ones(out.shape[:2], bool)
    mask[1, :G] = False
    np.testing.assert_allclose(out[mask], want[mask], rtol=1e-5, atol=1e-5)


def test_valid_calls_after_an_error_run_clean():
    k, w = 8, 4
    lib = library(ir.decode_function("decode", k, w, head_dim=16),
                  ir.select_function("select", 4, 3), pipeline=PARALLEL)
    args = _decode_args(k, w)
    assert _raises(lib, "decode", _broken(args, "slot_scores", np.nan, (2, 0, 0))).code \
        == INVALID_SCORE
    good = [a.copy() for a in args]
    lib.call("decode", *good)
    np.testing.assert_allclose(good[-1], reference.decode_attention(*args[:7], k, w),
                               rtol=1e-5, atol=1e-5)
    u = rng(3).normal(size=(1, 2, 20)).astype(np.float32)
    u[0, 0, 4] = np.inf
    assert _raises(lib, "select", _select_args(u, 4, 20)).code == INVALID_SCORE
    u[0, 0, 4] = 0.5
    sel = _select_args(u, 4, 20)
    lib.call("select", *sel)
    r_idx, _, _ = reference.select(u.astype(np.float64), 4, 3, 20)
    np.testing.assert_array_equal(sel[1], r_idx)


# The tile-first decode (decode-kernel=tiles; its scalar form on the CPU,
# the split-K kernel's walk) checks the cache state and scores at the same
# points as the loop form's kernels: D = 64 (the tile forms' head dims), one
# split (k + w = 12) and five splits of the (b, h) pairs (k + w = 360), with
# the cases of device_status_cases.py.
def _tile_decode_args(k, w):
    return _decode_args(k, w, D=64, lengths=(1, 9, 400) if k > 8 else (1, 9, 40))


@pytest.mark.parametrize("k,w", [(8, 4), (300, 60)])
@pytest.mark.parametrize("what,value,at,code", TILE_CASES)
def test_tile_decode_reports_like_the_loop_form(k, w, what, value, at, code):
    value = case_value(value, k)
    args = _tile_decode_args(k, w)
    assert args[5][2].min() == k  # the long sequence's pools are full
    _same_error([SERIAL, PARALLEL, DECODE_TILES],
                ir.decode_function("decode", k, w, head_dim=64), "decode",
                lambda: _broken(args, what, value, at), code)


@pytest.mark.parametrize("k,w", [(8, 4), (300, 60)])
@pytest.mark.parametrize("what,value,at,code", TILE_CASES)
def test_tile_decode_keeps_the_heads_the_loop_form_keeps(k, w, what, value, at, code):
    # After the report the tile walk outputs what the loop form's kernels
    # output: zeros for every query head of a (b, h) with a bad pool count
    # (of every head of a sequence at a negative position), invalid pool
    # slots left out, a NaN tau's gates; the other heads exact.
    args = _tile_decode_args(k, w)
    bad = _broken(args, what, case_value(value, k), at)
    outs = {}
    for pipeline in (PARALLEL, DECODE_TILES):
        lib = library(ir.decode_function("decode", k, w, head_dim=64), pipeline=pipeline)
        call = [a.copy() for a in bad]
        call[-1][:] = 7
        assert _raises(lib, "decode", call).code == code
        outs[pipeline] = call[-1]
        # A valid call afterwards runs clean (the error was reported once).
        good = [a.copy() for a in args]
        lib.call("decode", *good)
        np.testing.assert_allclose(good[-1], reference.decode_attention(*args[:7], k, w),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[DECODE_TILES], outs[PARALLEL], rtol=1e-5, atol=1e-5)
    out, want = outs[DECODE_TILES], reference.decode_attention(*args[:7], k, w)
    assert_other_heads_kept(out, want, what, at, G=2, rtol=1e-5, atol=1e-5)
