# The row selection (lib/Conversion/SparseKToGPU/RowSelection.cpp) in its CPU
# form: sparsek-cpu-pipeline{prefill-kernel=tiles row-selection=true} gives
# rows of 1 to 4096 candidates the GPU kernel's steps (the row sorted once,
# each warp's run of queries carrying tau's piece of f and theta, then the
# block lists), run for warps of one lane. Checked through select_attention's
# output against the float64 reference, on scores that make the sweep walk
# far, take SPEC 3's hard case, carry huge sums or tie inside the band; rows
# past 4096 candidates take the chunked selection in the same function.
import numpy as np
import pytest

from cpu_harness import assert_output_close, library, rng
from sparsek import ir, reference
from sparsek.status import SparseKError

PIPELINE = "sparsek-cpu-pipeline{prefill-kernel=tiles row-selection=true}"


def scores(g, kind, shape):
    if kind == "normal":
        return (g.normal(size=shape) * 2).astype(np.float32)
    if kind == "ties":  # few distinct values: theta's position decides
        u = g.integers(0, 4, size=shape).astype(np.float32)
        u[g.random(shape) < 0.2] = -np.inf
        return u
    if kind == "halves":  # many ties inside the band around z(k)
        return (np.round(g.normal(size=shape) * 4) / 2).astype(np.float32)
    if kind == "masked":  # many -inf: queries cross k candidates late
        u = (g.normal(size=shape) * 2).astype(np.float32)
        u[g.random(shape) < 0.6] = -np.inf
        return u
    if kind == "spread":  # distinct scores 1.25 apart: the hard case everywhere
        flat = np.stack([g.permutation(shape[-1]) * 1.25
                         for _ in range(int(np.prod(shape[:-1])))])
        return flat.reshape(shape).astype(np.float32)
    if kind == "huge":  # tau's sums far from 1
        return (g.normal(size=shape) * 2e30).astype(np.float32)
    raise ValueError(kind)


def check(B, Hq, Hkv, S, T, k, w, kind="normal", D=4, seed=0):
    g = rng(seed + S + 7 * T + 13 * k + w)
    q = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    key = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    value = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    u = scores(g, kind, (B, Hkv, S))
    lib = library(ir.select_attention_function("sa_rows", k, w), pipeline=PIPELINE)
    o = np.full((B, Hq, T, D), 7, np.float32)
    lib.call("sa_rows", q, key, value, u, o)
    want = reference.sparsek_attention(q, key, value, u, k, w)
    umax = float(np.max(np.abs(np.where(np.isfinite(u), u, 0)), initial=0))
    assert_output_close(o, want, value, gate_tol=1e-6 * max(1.0, umax))


@pytest.mark.parametrize("kind", ["normal", "ties", "halves", "masked", "spread", "huge"])
@pytest.mark.parametrize("T,S,k,w", [(300, 300, 24, 9), (130, 400, 16, 6), (200, 230, 64, 200)])
def test_scores(kind, T, S, k, w):
    check(1, 4, 2, S, T, k, w, kind)


# Every group size and T around the tiles' edges (the lists' first queries).
@pytest.mark.parametrize("G", [1, 2, 4, 8])
@pytest.mark.parametrize("T", [1, 63, 65, 130])
def test_tile_edges(G, T):
    check(2, 2 * G, 2, T + 5, T, 10, 4)


# One candidate; every query at most k (all selected); k past S.
@pytest.mark.parametrize("S,T,k,w", [(9, 9, 4, 8), (60, 60, 80, 4), (70, 50, 3, 2)])
def test_small_rows(S, T, k, w):
    check(1, 2, 1, S, T, k, w, "ties")


# 4096 candidates take the row selection, 4097 the chunked one: both exact.
@pytest.mark.parametrize("S", [4096 + 16, 4097 + 16])
def test_longest_rows(S):
    check(1, 1, 1, S, 2000, 40, 16, "halves")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_candidates_are_reported(bad):
    B, Hq, Hkv, S, T, D = 1, 2, 1, 90, 90, 4
    g = rng(5)
    q, key, value = (g.normal(size=s).astype(np.float32)
                     for s in ((B, Hq, T, D), (B, Hkv, S, D), (B, Hkv, S, D)))
    u = g.normal(size=(B, Hkv, S)).astype(np.float32)
    u[0, 0, 30] = bad
    lib = library(ir.select_attention_function("sa_rows", 8, 4), pipeline=PIPELINE)
    with pytest.raises(SparseKError) as e:
        lib.call("sa_rows", q, key, value, u, np.zeros((B, Hq, T, D), np.float32))
    assert "score" in str(e.value).lower()
