# The composite sparsek.select_attention on the tile-first tensor-core
# kernels, each test once per form: sparsek-gpu-pipeline{prefill-kernel=
# mma-sync} (block key sets, then one CTA of 4 warps per 64 (query, head)
# rows with cp.async gathers, ldmatrix and mma.sync) and prefill-kernel=wgmma
# (double-buffered gathers and wgmma, sm_90a; tiles of 64 rows on one
# warpgroup, and of 128 on two with tile-rows=128), over the tiles' edges: T
# around BM = M / G, S > T, every
# G, w >= T, k >= S (against SDPA), k = 0, ties and -inf scores. bf16 and
# f16, D in {64, 128}; SPEC 8: float32 reference on the same rounded inputs,
# 2e-2 absolute. The libraries' selection uses 16-candidate chunks, but
# wgmma_rows's (row-selection=true): its rows of at most 4096 candidates take
# the one-launch row selection (RowSelection.h), which
# test_row_selection_scores also checks on SPEC 3's hard case, huge and
# tied scores.
import numpy as np
import pytest

from gpu_checks import assert_matches_sdpa
from sparsek import reference

ELEMENTS = ("bf16", "f16")
HEAD_DIMS = (64, 128)


def make_inputs(seed, B, Hq, Hkv, T, S, D, kind="normal"):
    g = np.random.default_rng(seed)
    q = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    key = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    value = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    if kind == "ties":  # few distinct scores: theta's position decides
        u = g.integers(0, 4, size=(B, Hkv, S)).astype(np.float32)
        u[g.random(u.shape) < 0.2] = -np.inf
    elif kind == "masked":
        u = (g.normal(size=(B, Hkv, S)) * 2).astype(np.float32)
        u[g.random(u.shape) < 0.6] = -np.inf
    elif kind == "spread":  # distinct scores 1.25 apart: SPEC 3's hard case everywhere
        u = np.stack([np.stack([g.permutation(S) * 1.25 for _ in range(Hkv)])
                      for _ in range(B)]).astype(np.float32)
    elif kind == "huge":  # tau's sums far from 1: relative error decides
        u = (g.normal(size=(B, Hkv, S)) * 2e30).astype(np.float32)
    elif kind == "halves":  # many ties inside the band around z(k)
        u = (np.round(g.normal(size=(B, Hkv, S)) * 4) / 2).astype(np.float32)
    else:
        u = (g.normal(size=(B, Hkv, S)) * 2).astype(np.float32)
    return q, key, value, u


@pytest.fixture(params=("mma_sync", "wgmma", "wgmma128", "wgmma_rows"))
def tiles(request, torch, manifest):
    """(library, function names) of one form of the tile-first kernel."""
    lib = request.getfixturevalue(f"gpu_{request.param}_lib")
    return lib, manifest[f"{request.param}_select_attention"]


def run(torch, tiles, elem, k, w, d, q, key, value, u):
    lib, names = tiles
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[elem]
    dev = [torch.from_numpy(a).cuda().to(dtype) for a in (q, key, value)]
    out = torch.full((q.shape[0], q.shape[1], q.shape[2], value.shape[3]), 7.0, dtype=dtype,
                     device="cuda")
    lib.call(names[f"{elem}/{k}/{w}/{d}"], *dev,
             torch.from_numpy(u).cuda(), out)
    torch.cuda.synchronize()
    return out.float().cpu().numpy(), [t.float().cpu().numpy() for t in dev]


def check(torch, tiles, elem, d, k, w, B, Hq, Hkv, T, S, kind="normal"):
    q, key, value, u = make_inputs(B + Hq + T + S + k + w + d, B, Hq, Hkv, T, S, d, kind)
    out, (rq, rk, rv) = run(torch, tiles, elem, k, w, d, q, key, value, u)
    want = reference.sparsek_attention(rq, rk, rv, u.astype(np.float64), k, w)
    np.testing.assert_allclose(out, want, atol=2e-2)


@pytest.mark.parametrize("elem", ELEMENTS)
@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("G", (1, 2, 4, 8))
@pytest.mark.parametrize("T,extra", [(1, 0), (63, 0), (65, 0), (65, 70), (127, 0), (129, 0),
                                     (130, 3), (260, 5)])
def test_tile_edges(torch, tiles, elem, d, G, T, extra):
    check(torch, tiles, elem, d, 16, 16, 2, 2 * G, 2, T, T + extra)


@pytest.mark.parametrize("elem", ELEMENTS)
@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("G,S", [(1, 4097), (8, 4200)])
def test_long_rows(torch, tiles, elem, d, G, S):
    check(torch, tiles, elem, d, 8, 4, 1, G, 1, 4097, S)


@pytest.mark.parametrize("kind", ("ties", "masked"))
@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("G,T,S", [(1, 65, 65), (4, 63, 100), (8, 70, 200)])
def test_ties_and_masked_scores(torch, tiles, kind, d, G, T, S):
    check(torch, tiles, "bf16", d, 8, 4, 2, G, 1, T, S, kind)


@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("T,S", [(40, 40), (90, 90), (33, 120)])
def test_window_covers_queries(torch, tiles, d, T, S):
    check(torch, tiles, "bf16", d, 24, 100, 1, 4, 2, T, S)


@pytest.mark.parametrize("elem", ELEMENTS)
@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("G,T,S", [(1, 65, 65), (2, 128, 200), (8, 4097, 4097)])
def test_k_at_least_s_equals_sdpa(torch, tiles, elem, d, G, T, S):
    k = 5000
    assert k >= S
    q, key, value, u = make_inputs(T + S + G, 1, 2 * G, 2, T, S, d)
    out, (rq, rk, rv) = run(torch, tiles, elem, k, 16, d, q, key, value, u)
    assert_matches_sdpa(torch, out, rq, rk, rv, elem)


@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("G,T,S", [(1, 65, 65), (8, 63, 90)])
def test_k_zero_is_sliding_window(torch, tiles, d, G, T, S):
    check(torch, tiles, "bf16", d, 0, 8, 1, G, 1, T, S)


# Key tiles of each class (KeyTileClass; the wgmma kernel branches on it):
# whole tiles of Sel(t0) entries (k = 128), whole tiles inside every query's
# window (w = 160), mixed tiles; G = 2 and 4.
@pytest.mark.parametrize("kind", ("normal", "ties", "masked"))
@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("G,T,S", [(2, 600, 600), (4, 517, 700)])
def test_key_tile_classes(torch, tiles, kind, d, G, T, S):
    check(torch, tiles, "bf16", d, 128, 160, 1, 2 * G, 2, T, S, kind)


# The row selection's cases (wgmma_rows; the chunked forms run them too):
# scores that make the sweep walk far, take SPEC 3's hard case, carry huge
# sums, tie inside the band; S > T; rows near the kernel's 4096-candidate
# limit on either side (S - w = 4096 takes it, 4097 the chunked selection).
@pytest.mark.parametrize("kind", ("normal", "spread", "huge", "halves", "masked"))
@pytest.mark.parametrize("k,w,T,S", [(128, 160, 600, 600), (24, 100, 300, 1000),
                                     (16, 16, 4096, 4112), (16, 16, 4000, 4113)])
def test_row_selection_scores(torch, tiles, kind, k, w, T, S):
    check(torch, tiles, "bf16", 64, k, w, 1, 4, 2, T, S, kind)
