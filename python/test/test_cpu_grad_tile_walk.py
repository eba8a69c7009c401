# The backward tile walk (sparsek-tile-select-attention{grads=true}: the mma.sync backward
# kernel's algorithm, MmaSyncGradKernel.cpp) as scalar loops on the CPU
# (backward-kernel=tiles): its key lists, two passes (the row statistics and Delta, then each
# member's gradients from exp(s - lse)) and the split of the score gradient (the selected
# support's own terms from the tiles, the mean term from the support sums) against the float64
# reference, where there is no GPU.
import numpy as np
import pytest

from cpu_harness import library, rng
from grad_cases import MATRIX, check_bad_scores_and_sizes_reported, check_select_attention_grad
from sparsek import ir


def tiles(chunk=0, rows=0, row_selection=False):
    """The CPU pipeline on the backward tile walk; rows = 0 takes its default tiles (128 rows);
    with `row_selection` the key lists and thresholds come from the row selection's CPU form."""
    return (f"sparsek-cpu-pipeline{{backward-kernel=tiles select-chunk={chunk} "
            f"grad-tile-rows={rows} row-selection={str(row_selection).lower()}}}")


def run_sag(q, key, value, u, do, k, w, pipeline=None):
    lib = library(ir.select_attention_grad_function("sag_tiles", k, w), pipeline=pipeline or tiles())
    out = [np.full(a.shape, 7, np.float32) for a in (q, key, value, u)]  # tiles must overwrite
    lib.call("sag_tiles", q, key, value, u, do, *out)
    return out


@pytest.mark.parametrize("B,Hq,Hkv,S,T,k,w,kind", MATRIX)
def test_grad_tile_walk_matches_reference(B, Hq, Hkv, S, T, k, w, kind):
    check_select_attention_grad(run_sag, rng(S * 17 + T * 5 + k + w), B, Hq, Hkv, S, T, k, w,
                                kind)


# Several tiles per head (64 rows: 16 queries x G = 4, or 64 queries at G = 1), lists shared by
# consecutive blocks, key lists longer than one key tile, selection chunks.
@pytest.mark.parametrize("chunk", [0, 7])
@pytest.mark.parametrize("B,Hq,Hkv,S,T,k,w,kind", [
    (1, 4, 1, 300, 300, 40, 24, "narrow"),
    (1, 8, 2, 260, 200, 70, 9, "spread"),
    (2, 2, 2, 210, 210, 33, 64, "ties"),
    (1, 4, 4, 230, 230, 90, 0, "masked"),
])
def test_grad_tile_walk_many_tiles(chunk, B, Hq, Hkv, S, T, k, w, kind):
    got = check_select_attention_grad(lambda *a: run_sag(*a, pipeline=tiles(chunk, rows=64)),
                                      rng(S + T + k + chunk), B, Hq, Hkv, S, T, k, w, kind)
    if kind == "narrow":
        assert np.abs(got[3]).max() > 0


# 128-row tiles (the kernel's 8 warps, the default): 32 queries x G = 4 per tile, two blocks per list at G = 4.
@pytest.mark.parametrize("B,Hq,Hkv,S,T,k,w,kind", [
    (1, 4, 1, 300, 300, 40, 24, "narrow"),
    (1, 16, 2, 200, 170, 30, 9, "ties"),
    (1, 2, 2, 150, 150, 20, 0, "masked"),
])
def test_grad_tile_walk_wide_tiles(B, Hq, Hkv, S, T, k, w, kind):
    check_select_attention_grad(lambda *a: run_sag(*a, pipeline=tiles(rows=128)),
                                rng(S + T + k + 128), B, Hq, Hkv, S, T, k, w, kind)


# The thresholds and lists of the row selection (row-selection=true), as the GPU takes them with
# that option.
@pytest.mark.parametrize("B,Hq,Hkv,S,T,k,w,kind", MATRIX)
def test_grad_tile_walk_on_the_row_selection(B, Hq, Hkv, S, T, k, w, kind):
    check_select_attention_grad(lambda *a: run_sag(*a, pipeline=tiles(row_selection=True)),
                                rng(S * 17 + T * 5 + k + w), B, Hq, Hkv, S, T, k, w, kind)


def test_grad_tile_walk_reports_bad_input():
    check_bad_scores_and_sizes_reported(run_sag)
