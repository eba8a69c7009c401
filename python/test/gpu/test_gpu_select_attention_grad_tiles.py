# select_attention_grad on the tile-first mma.sync backward (sparsek-gpu-pipeline{backward-kernel=
# tiles}): the forward's block key sets, two passes per tile (row statistics and Delta, then
# dS, dq, and dkey / dvalue added atomically from each warp's 16 keys), the score gradient's
# own terms from the tiles and its mean term from the support sums. Over the tiles' edges (T
# around BM = 64 / G, S > T, every G), lists of several key tiles, k = 0, w = 0, k >= S, ties
# and -inf scores; bf16 and f16, D in {64, 128}. SPEC 8: the reference on the same rounded
# inputs, 2e-2 of each gradient's scale. Destinations start at 7: the lowering must overwrite.
import numpy as np
import pytest

from gpu_checks import grad_close
from sparsek import reference

ELEMENTS = ("bf16", "f16")
HEAD_DIMS = (64, 128)


def make_inputs(seed, B, Hq, Hkv, T, S, D, kind):
    g = np.random.default_rng(seed)
    q = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    key = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    value = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    do = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    if kind == "ties":  # few distinct scores: theta's position decides
        u = np.round(g.uniform(0, 2, size=(B, Hkv, S)) * 4) / 4
        u[g.random(u.shape) < 0.2] = -np.inf
    elif kind == "masked":
        u = g.uniform(0.0, 0.8, size=(B, Hkv, S))
        u[g.random(u.shape) < 0.4] = -np.inf
    elif kind == "narrow":  # wide supports, entries truncated out of Sel(t)
        u = g.uniform(0.0, 0.6, size=(B, Hkv, S))
    else:
        u = g.normal(size=(B, Hkv, S)) * 2
    return q, key, value, u.astype(np.float32), do


def check(torch, lib, manifest, elem, d, k, w, B, Hq, Hkv, T, S, kind="narrow"):
    q, key, value, u, do = make_inputs(B + Hq + T + S + k + w + d, B, Hq, Hkv, T, S, d, kind)
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[elem]
    dev = [torch.from_numpy(a).cuda().to(dtype) for a in (q, key, value, do)]
    grads = [torch.full(a.shape, 7.0, dtype=torch.float32, device="cuda")
             for a in (q, key, value, u)]
    lib.call(manifest["grad_tiles"][f"{elem}/{k}/{w}/{d}"], *dev[:3], torch.from_numpy(u).cuda(),
             dev[3], *grads)
    torch.cuda.synchronize()
    rq, rk, rv, rdo = (t.double().cpu().numpy() for t in dev)
    want = reference.sparsek_attention_vjp(rq, rk, rv, u.astype(np.float64), k, w, rdo)
    for name, got, ref in zip(("dq", "dkey", "dvalue", "du"), grads, want):
        grad_close(got.cpu().numpy(), ref, 2e-2, f"{elem} d{d} {name}")
    return [g.cpu().numpy() for g in grads]


@pytest.mark.parametrize("elem", ELEMENTS)
@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("G", (1, 4, 8))
@pytest.mark.parametrize("T,extra", [(1, 0), (63, 0), (65, 3), (129, 0), (260, 40)])
def test_tile_edges(torch, gpu_grad_tiles_lib, manifest, elem, d, G, T, extra):
    check(torch, gpu_grad_tiles_lib, manifest, elem, d, 16, 16, 2, 2 * G, 2, T, T + extra)


@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("kind", ("spread", "narrow", "ties", "masked"))
def test_lists_of_several_key_tiles(torch, gpu_grad_tiles_lib, manifest, d, kind):
    got = check(torch, gpu_grad_tiles_lib, manifest, "bf16", d, 100, 60, 1, 8, 2, 600, 640, kind)
    if kind == "narrow":
        assert np.abs(got[3]).max() > 0


@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("k,w", [(0, 8), (4, 0), (5000, 16), (8, 4)])
def test_window_only_no_window_and_dense(torch, gpu_grad_tiles_lib, manifest, d, k, w):
    got = check(torch, gpu_grad_tiles_lib, manifest, "f16", d, k, w, 1, 4, 2, 300, 300, "spread")
    if k == 0 or k >= 300:
        assert not np.any(got[3])  # no selection or every gate 1: no score gradient
