# The GPU pipeline's parallel loop form (sparsek-lower-to-loops{parallel-loops})
# compiled for the CPU, where its scf.parallel loops run sequentially: checks
# that form's logic (per-row slices of shared scratch, block guards) against
# the reference where there is no GPU. Its reports of NaN and +inf scores and
# bad cache states (the device status) are in test_cpu_device_status.py.
import importlib.util
import os

import numpy as np
import pytest

from cpu_harness import decode_batch, library, require_compiler, rng
from sparsek import ir, reference, toolchain
from sparsek.cpu import CompiledLibrary

PARALLEL = "sparsek-cpu-pipeline{parallel-loops=true}"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def chunked(chunk):
    """The parallel form with `chunk` candidates per selection chunk."""
    return f"sparsek-cpu-pipeline{{parallel-loops=true select-chunk={chunk}}}"


def run_select(u, k, w, T, pipeline=PARALLEL):
    lib = library(ir.select_function("select", k, w), pipeline=pipeline)
    B, H, _ = u.shape
    idx = np.full((B, H, T, k), 7, np.int32)
    gates = np.full((B, H, T, k), 7, np.float32)
    tau = np.full((B, H, T), 7, np.float32)
    lib.call("select", u, idx, gates, tau)
    return idx, gates, tau


@pytest.mark.parametrize("B,H,S,T,k,w", [
    (2, 3, 100, 100, 8, 4), (1, 2, 200, 70, 8, 4), (1, 1, 5, 5, 8, 4),
    (2, 2, 60, 60, 64, 3), (2, 2, 60, 40, 0, 4)])
def test_select_parallel_form(B, H, S, T, k, w):
    g = rng(S + T + k)
    u = g.integers(0, 4, size=(B, H, S)).astype(np.float32)  # ties everywhere
    u[g.random(u.shape) < 0.2] = -np.inf
    idx, gates, tau = run_select(u, k, w, T)
    r_idx, r_gates, r_tau = reference.select(u.astype(np.float64), k, w, T)
    np.testing.assert_array_equal(idx, r_idx)
    np.testing.assert_allclose(gates, r_gates, rtol=0, atol=1e-6 * 4)
    np.testing.assert_allclose(tau, r_tau, rtol=0, atol=1e-6 * 4)


def check_select(u, k, w, T, pipeline):
    idx, gates, tau = run_select(u, k, w, T, pipeline)
    masked = np.where(np.isfinite(u), u, -np.inf).astype(np.float64)
    r_idx, r_gates, r_tau = reference.select(masked, k, w, T)
    np.testing.assert_array_equal(idx, r_idx)
    scale = max(1.0, float(np.max(np.abs(np.where(np.isfinite(u), u, 0)))))
    np.testing.assert_allclose(gates, r_gates, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(tau, r_tau, rtol=0, atol=1e-6 * scale)


# The chunked selection with chunks far shorter than the rows: per-chunk
# lists, several scan rounds, boundary thresholds and chunk walks all take
# part. Chunk 1 is the extreme; chunks longer than the row make one chunk.
@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1000])
@pytest.mark.parametrize("kind", ["normal", "ties", "narrow", "gaps"])
@pytest.mark.parametrize("B,H,S,T,k,w", [(1, 2, 300, 300, 16, 8), (2, 1, 260, 90, 5, 0),
                                         (1, 1, 120, 120, 40, 3)])
def test_chunked_select(chunk, kind, B, H, S, T, k, w):
    g = rng(S + T + k + chunk)
    if kind == "normal":
        u = g.normal(size=(B, H, S)).astype(np.float32)
    elif kind == "ties":
        u = g.integers(0, 4, size=(B, H, S)).astype(np.float32)
        u[g.random(u.shape) < 0.2] = -np.inf
    elif kind == "narrow":  # many scores within 1 of tau: wide solver bands
        u = (g.normal(size=(B, H, S)) * 0.05).astype(np.float32)
    else:  # gaps >= 1: the exact hard top-k, tau = z(k) - 1
        u = (g.permutation(B * H * S).reshape(B, H, S) * 3.0).astype(np.float32)
    check_select(u, k, w, T, chunked(chunk))


# Rows long enough that most chunks start with more than k candidates before
# them: each query's tau is searched over its chunk's band (the prefix scores
# whose breakpoints fall between the chunk's boundary taus) and the unheaped
# counts, and its theta ranked against the prefix list.
@pytest.mark.parametrize("S,T,k,w,chunk,scale", [(3000, 2000, 300, 16, 37, 2.0),
                                                  (2500, 2500, 128, 8, 60, 0.05)])
def test_chunked_select_long_rows(S, T, k, w, chunk, scale):
    u = (rng(S + k).normal(size=(1, 2, S)) * scale).astype(np.float32)
    check_select(u, k, w, T, chunked(chunk))


def test_chunked_select_masked_rows():
    # Whole chunks of -inf, NaN and +inf, and a row with fewer candidates
    # than k. NaN and +inf are reported (INVALID_SCORE, as the sequential
    # form does) and the kernels skip them like -inf, so the outputs are
    # still the masked selection's.
    from sparsek.status import INVALID_SCORE, SparseKError

    g = rng(11)
    u = g.normal(size=(2, 2, 150)).astype(np.float32)
    u[0, 0, 20:90] = -np.inf
    u[0, 1, ::3] = np.nan
    u[1, 0, 100:] = np.inf
    u[1, 1, 10:] = -np.inf
    masked = np.where(np.isfinite(u), u, -np.inf)
    for chunk in (4, 16):
        lib = library(ir.select_function("select", 12, 5), pipeline=chunked(chunk))
        idx = np.full((2, 2, 150, 12), 7, np.int32)
        gates = np.full((2, 2, 150, 12), 7, np.float32)
        tau = np.full((2, 2, 150), 7, np.float32)
        with pytest.raises(SparseKError) as e:
            lib.call("select", u, idx, gates, tau)
        assert e.value.code == INVALID_SCORE
        r_idx, r_gates, r_tau = reference.select(masked.astype(np.float64), 12, 5, 150)
        np.testing.assert_array_equal(idx, r_idx)
        np.testing.assert_allclose(gates, r_gates, rtol=0, atol=1e-6 * 4)
        np.testing.assert_allclose(tau, r_tau, rtol=0, atol=1e-6 * 4)


def fused(parallel, chunk):
    return (f"sparsek-cpu-pipeline{{parallel-loops={str(parallel).lower()} "
            f"fuse-select-attention=true select-chunk={chunk}}}")


# The fused composite (SPEC 7: thresholds per query, no materialized
# indices) in the sequential and the parallel loop form.
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("chunk", [0, 5])
@pytest.mark.parametrize("B,Hq,Hkv,S,T,k,w", [(1, 4, 2, 80, 50, 8, 4), (2, 2, 2, 120, 120, 16, 0),
                                              (1, 3, 1, 60, 60, 64, 3), (1, 2, 1, 100, 100, 0, 5)])
def test_fused_composite(parallel, chunk, B, Hq, Hkv, S, T, k, w):
    D = 8
    lib = library(ir.select_attention_function("sa", k, w, head_dim=D),
                  pipeline=fused(parallel, chunk))
    g = rng(S + T + k + chunk)
    q = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    key, value = (g.normal(size=(B, Hkv, S, D)).astype(np.float32) for _ in range(2))
    u = g.normal(size=(B, Hkv, S)).astype(np.float32)
    u[g.random(u.shape) < 0.1] = -np.inf
    out = np.full_like(q, 7)
    lib.call("sa", q, key, value, u, out)
    want = reference.sparsek_attention(q, key, value, u.astype(np.float64), k, w)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_fused_composite_reports_bad_scores():
    # Outside kernels the fused form still reports NaN / +inf, also in
    # window-only positions the selection never reads.
    from sparsek.status import SparseKError

    lib = library(ir.select_attention_function("sa", 4, 3, head_dim=8),
                  pipeline=fused(False, 0))
    g = rng(12)
    q = g.normal(size=(1, 1, 20, 8)).astype(np.float32)
    key, value = (g.normal(size=(1, 1, 20, 8)).astype(np.float32) for _ in range(2))
    for pos in (2, 19):
        u = g.normal(size=(1, 1, 20)).astype(np.float32)
        u[0, 0, pos] = np.nan
        with pytest.raises(SparseKError):
            lib.call("sa", q, key, value, u, np.zeros_like(q))


def test_score_and_composite_parallel_form():
    g = rng(3)
    lib = library(ir.score_function("score", bias=True, slope=True, offset=True),
                  ir.select_attention_function("sa", 8, 4, head_dim=16), pipeline=PARALLEL)
    x, wsc = g.normal(size=(2, 30, 24)).astype(np.float32), g.normal(size=(3, 24)).astype(np.float32)
    bias, slope = g.normal(size=3).astype(np.float32), g.normal(size=3).astype(np.float32)
    u = np.zeros((2, 3, 30), np.float32)
    lib.call("score", x, wsc, bias, slope, 5, u)
    np.testing.assert_allclose(u, reference.score(x, wsc, bias=bias, slope=slope, offset=5),
                               rtol=1e-5, atol=1e-5)
    q = g.normal(size=(1, 4, 50, 16)).astype(np.float32)
    key, value = (g.normal(size=(1, 2, 80, 16)).astype(np.float32) for _ in range(2))
    u = g.normal(size=(1, 2, 80)).astype(np.float32)
    out = np.zeros_like(q)
    lib.call("sa", q, key, value, u, out)
    want = reference.sparsek_attention(q, key, value, u.astype(np.float64), 8, 4)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_example_layer_parallel_form():
    require_compiler()
    with open(os.path.join(ROOT, "examples", "sparsek_layer.mlir")) as f:
        lib = CompiledLibrary(toolchain.compile_shared_library(f.read(), pipeline=PARALLEL))
    spec = importlib.util.spec_from_file_location(
        "run_layer", os.path.join(ROOT, "examples", "run_layer.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    g = rng(4)
    shapes = [(m.C, m.HQ * m.D), (m.C, m.HKV * m.D), (m.C, m.HKV * m.D), (m.HKV, m.C),
              (m.HKV,), (m.HQ * m.D, m.C)]
    weights = [(g.normal(size=s) / 8).astype(np.float32) for s in shapes]
    for T in (1, 37, 130):
        x = g.normal(size=(1, T, m.C)).astype(np.float32)
        out = np.zeros((1, T, m.C), np.float32)
        lib.call("sparsek_layer", x, *weights, out)
        want = m.reference_layer(x, *weights)
        np.testing.assert_allclose(out, want, rtol=0, atol=1e-4 * max(1.0, np.abs(want).max()))


# Decode in the GPU pipeline's split form: one partial softmax per
# (sequence, query head, split of 64 slots), then a merge. k + w spans
# several splits, pools are partly filled, windows partly full, and a
# split can hold nothing valid (its partial has max -inf).
@pytest.mark.parametrize("k,w", [(100, 40), (3, 2), (0, 70), (130, 0), (60, 4)])
@pytest.mark.parametrize("G,D", [(2, 16), (1, 64), (4, 128), (8, 64)])
def test_decode_split_form(k, w, G, D):
    g = rng(k + w + G)
    Hkv = 2
    Hq = G * Hkv
    args, pos = decode_batch(g, (1, 9, 60, 400), Hkv, D, k, w)
    q = g.normal(size=(4, Hq, D)).astype(np.float32)
    lib = library(ir.decode_function("decode", k, w, head_dim=D), pipeline=PARALLEL)
    o = np.full((4, Hq, D), 7, np.float32)
    lib.call("decode", q, *args, pos, o)
    want = reference.decode_attention(q, *args, pos, k, w)
    np.testing.assert_allclose(o, want, rtol=1e-5, atol=1e-5)


# Rows longer than 1024 elements live in memory, not in vector registers
# (vector code is unrolled per element: compile time grew with the head
# dimension, minutes at 100000). Attention and the split decode (partials
# stored and merged element by element) in that form, against the reference.
def test_long_rows_parallel_form():
    g = rng(12)
    D, k, w = 1040, 3, 2
    lib = library(ir.attention_function("attn", w, k=k, head_dim=D),
                  ir.decode_function("decode", 70, 8, head_dim=D), pipeline=PARALLEL)
    S, T = 12, 9
    q = g.normal(size=(1, 4, T, D)).astype(np.float32)
    key, value = (g.normal(size=(1, 2, S, D)).astype(np.float32) for _ in range(2))
    indices, gates, _ = reference.select(g.normal(size=(1, 2, S)), k, w, T=T)
    out = np.zeros_like(q)
    lib.call("attn", q, key, value, indices.astype(np.int32), gates.astype(np.float32), out)
    want = reference.attention(q, key, value, indices, gates.astype(np.float32), w)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)

    args, pos = decode_batch(g, (1, 40, 120), 2, D, 70, 8)
    q = g.normal(size=(3, 4, D)).astype(np.float32)
    o = np.full((3, 4, D), 7, np.float32)
    lib.call("decode", q, *args, pos, o)
    np.testing.assert_allclose(o, reference.decode_attention(q, *args, pos, 70, 8),
                               rtol=1e-5, atol=1e-5)


def test_huge_k_over_few_keys_costs_what_the_keys_cost():
    """The merge scan's threads are bounded by the lists' width, min(k, candidates) + 1, not
    by k + 1: k = 2^31 - 1 over 7 keys took ~20 s (2^32 idle threads) before."""
    import time

    k, w, T = 2**31 - 1, 2, 7
    g = rng(3)
    q, key, value = (g.normal(size=(1, 2, T, 8)).astype(np.float32) for _ in range(3))
    u = g.normal(size=(1, 2, T)).astype(np.float32)
    lib = library(ir.select_attention_function("sa_huge_k", k, w, head_dim=8),
                  pipeline="sparsek-cpu-pipeline{parallel-loops select-chunk=3}")
    o = np.zeros_like(q)
    start = time.perf_counter()
    lib.call("sa_huge_k", q, key, value, u, o)
    assert time.perf_counter() - start < 3.0
    want = reference.sparsek_attention(q, key, value, u, T, w)   # any k >= S: every candidate
    np.testing.assert_allclose(o, want, rtol=1e-5, atol=1e-5)
