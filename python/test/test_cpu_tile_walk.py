# The tile-first select_attention (sparsek-tile-select-attention) in its
# scalar form on the CPU: the same tiles as the GPU's kernels (64 rows, or
# the 128 of the wgmma kernel's two warpgroups = BM queries x G heads, key
# tiles of 64 slots: Sel(t0) then the
# contiguous range), the same block lists and per-query thresholds, the same
# membership test and per-tile online softmax, checked against the float64
# reference over the tiles' edges.
import numpy as np
import pytest

from cpu_harness import assert_output_close, library, rng
from sparsek import ir, reference
from sparsek.memref import from_bf16_bits, to_bf16_bits


def tiles(chunk=0, rows=0):
    return (f"sparsek-cpu-pipeline{{prefill-kernel=tiles select-chunk={chunk} "
            f"tile-rows={rows}}}")


def scores(g, kind, shape):
    if kind == "normal":
        return g.normal(size=shape).astype(np.float32)
    if kind == "ties":  # few distinct values: theta's position decides
        u = g.integers(0, 4, size=shape).astype(np.float32)
        u[g.random(shape) < 0.2] = -np.inf
        return u
    if kind == "masked":  # many -inf scores, window keys among them
        u = g.normal(size=shape).astype(np.float32)
        u[g.random(shape) < 0.6] = -np.inf
        return u
    raise ValueError(kind)


def run(B, Hq, Hkv, S, T, D, k, w, kind="normal", chunk=0, seed=0, rows=0):
    g = rng(seed + S + 7 * T + 13 * k + w)
    q = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    key = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    value = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    u = scores(g, kind, (B, Hkv, S))
    lib = library(ir.select_attention_function("sa_tiles", k, w), pipeline=tiles(chunk, rows))
    o = np.full((B, Hq, T, D), 7, np.float32)
    lib.call("sa_tiles", q, key, value, u, o)
    return q, key, value, u, o


def check(B, Hq, Hkv, S, T, D, k, w, kind="normal", chunk=0, rows=0):
    q, key, value, u, o = run(B, Hq, Hkv, S, T, D, k, w, kind, chunk, rows=rows)
    want = reference.sparsek_attention(q, key, value, u, k, w)
    umax = float(np.max(np.abs(np.where(np.isfinite(u), u, 0)), initial=0))
    assert_output_close(o, want, value, gate_tol=1e-6 * max(1.0, umax))


# Every group size (BM = 64 / G queries per tile), T around the tile edges
# (1, BM - 1, BM + 1, several tiles), S > T (cached prefix), several key
# tiles per block (k + w + BM > 64).
@pytest.mark.parametrize("G", [1, 2, 4, 8])
@pytest.mark.parametrize("T", [1, 63, 65, 130])
@pytest.mark.parametrize("extra", [0, 37])
def test_tile_edges(G, T, extra):
    check(1, 2 * G, 2, T + extra, T, 8, 24, 9, kind="normal")


# Tiles of 128 rows (the wgmma kernel's default): BM = 128 / G queries, one
# list per block for G <= 2 and per 64 queries (several blocks) above.
@pytest.mark.parametrize("G", [1, 2, 4, 8])
@pytest.mark.parametrize("T", [1, 127, 129, 260])
@pytest.mark.parametrize("extra", [0, 37])
def test_wide_tile_edges(G, T, extra):
    check(1, 2 * G, 2, T + extra, T, 8, 24, 9, kind="normal", rows=128)


@pytest.mark.parametrize("kind", ["ties", "masked"])
@pytest.mark.parametrize("G,T,S", [(1, 65, 65), (4, 63, 100), (8, 70, 200)])
def test_ties_and_masked_scores(kind, G, T, S):
    check(2, G, 1, S, T, 8, 12, 5, kind=kind)


# Chunks of the selection much shorter than a query block: a block's Sel(t0)
# comes from a chunk's first list plus the chunk's range; chunk 1 and 7 put
# chunk boundaries inside every block.
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_block_lists_across_selection_chunks(chunk):
    check(1, 4, 2, 300, 260, 8, 16, 6, kind="ties", chunk=chunk)


@pytest.mark.parametrize("T,S,w", [(40, 40, 40), (40, 90, 200), (65, 65, 1)])
def test_window_covers_queries(T, S, w):
    check(1, 4, 2, S, T, 8, 6, w)


@pytest.mark.parametrize("G,T,S", [(1, 65, 65), (2, 63, 80), (4, 70, 70)])
def test_k_at_least_s_is_dense_causal(G, T, S):
    q, key, value, u, o = run(1, 2 * G, 2, S, T, 8, S + 5, 3)
    assert_output_close(o, reference.dense_causal_attention(q, key, value), value)


@pytest.mark.parametrize("G,T,S,w", [(1, 65, 65, 8), (8, 20, 90, 3)])
def test_k_zero_is_sliding_window(G, T, S, w):
    check(1, G, 1, S, T, 8, 0, w)


def test_rows_without_keys_give_zero():
    # w = 0 and every candidate masked: no row has a key (SPEC 5: o = 0).
    B, Hq, Hkv, S, T, D = 1, 2, 1, 70, 70, 8
    g = rng(3)
    q = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    key = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    value = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    u = np.full((B, Hkv, S), -np.inf, np.float32)
    u[0, 0, 10:20] = 1.0  # with w = 0, query t sees candidates j <= t
    lib = library(ir.select_attention_function("sa_tiles_w0", 4, 0), pipeline=tiles())
    o = np.full((B, Hq, T, D), 7, np.float32)
    lib.call("sa_tiles_w0", q, key, value, u, o)
    want = reference.sparsek_attention(q, key, value, u, 4, 0)
    assert np.all(o[:, :, :10] == 0)  # query t < 10 has no finite candidate
    assert_output_close(o, want, value)


def test_long_sequence_many_blocks():
    check(1, 2, 1, 4097 + 31, 4097, 4, 40, 16, kind="ties")


# The GPU kernel's types: bf16 rows of 64, G = 4, against the reference on
# the same rounded inputs (SPEC 8: 2e-2 on outputs of unit scale).
def test_bf16_head_dim_64():
    B, Hq, Hkv, S, T, D, k, w = 1, 8, 2, 150, 129, 64, 16, 8
    g = rng(11)
    q, key, value = (to_bf16_bits(g.normal(size=s).astype(np.float32))
                     for s in ((B, Hq, T, D), (B, Hkv, S, D), (B, Hkv, S, D)))
    u = g.normal(size=(B, Hkv, S)).astype(np.float32)
    lib = library(ir.select_attention_function("sa_tiles_bf16", k, w, elem="bf16", head_dim=D),
                  pipeline=tiles())
    o = to_bf16_bits(np.zeros((B, Hq, T, D), np.float32))
    lib.call("sa_tiles_bf16", q, key, value, u, o)
    want = reference.sparsek_attention(from_bf16_bits(q), from_bf16_bits(key),
                                       from_bf16_bits(value), u, k, w)
    np.testing.assert_allclose(from_bf16_bits(o), want, atol=2e-2)


# k above the list step's 256-entry segments: a block's Sel(t0) is counted
# and written by several threads (segment offsets), ties across segments.
@pytest.mark.parametrize("kind", ["normal", "ties"])
def test_block_lists_over_several_segments(kind):
    check(1, 4, 2, 1000, 700, 8, 300, 20, kind=kind)


# Key tiles of each class the wgmma kernel (and this walk) treats apart
# (KeyTileClass): whole tiles of Sel(t0) entries (k = 128: two), whole tiles
# inside every query's window (w = 160 spans more than 64 + BM keys common
# to a block's queries), and mixed tiles between them; G = 2 (BM = 32).
@pytest.mark.parametrize("kind", ["normal", "ties", "masked"])
@pytest.mark.parametrize("S,T", [(600, 600), (700, 517)])
@pytest.mark.parametrize("rows", [64, 128])
def test_key_tile_classes(kind, S, T, rows):
    check(1, 4, 2, S, T, 8, 128, 160, kind=kind, rows=rows)
