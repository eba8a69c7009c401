# The composite sparsek.select_attention on both GPU paths, fused (per-query
# thresholds, no materialized indices; the GPU pipeline's default) and
# decomposed (select and attention kernels, indices and gates in device
# memory), against reference.sparsek_attention (SPEC 8) and, for k >= S,
# torch's SDPA. The suite's libraries use 16-candidate selection chunks, so
# rows span many chunks; the "auto" library keeps the default chunking.
import numpy as np
import pytest

from gpu_checks import assert_matches_sdpa
from sparsek import reference

D = 64
DTYPES = ("f32", "bf16", "f16")


def make_inputs(seed, B, Hq, Hkv, T, S, masked=0.0):
    g = np.random.default_rng(seed)
    q = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    key = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    value = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    u = (g.normal(size=(B, Hkv, S)) * 2).astype(np.float32)
    if masked:
        u[g.random(u.shape) < masked] = -np.inf
    return q, key, value, u


PATHS = ("fused", "decomposed")


@pytest.fixture
def libs(gpu_lib, gpu_decomposed_lib):
    return {"fused": gpu_lib, "decomposed": gpu_decomposed_lib}


def run_composite(torch, lib, manifest, elem, k, w, q, key, value, u, key_set="select_attention"):
    """Returns the output and the rounded q, key, value (as float32 numpy)."""
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[elem]
    dev = [torch.from_numpy(a).cuda().to(dtype) for a in (q, key, value)]
    out = torch.full(q.shape, 7.0, dtype=dtype, device="cuda")
    lib.call(manifest[key_set][f"{elem}/{k}/{w}/{D}"], *dev, torch.from_numpy(u).cuda(), out)
    torch.cuda.synchronize()
    return out.float().cpu().numpy(), [t.float().cpu().numpy() for t in dev]


SHAPES = [  # B, Hq, Hkv, T, S
    (1, 1, 1, 1, 1),
    (2, 4, 4, 96, 96),
    (1, 8, 2, 70, 200),   # GQA, cached prefix
    (3, 4, 2, 33, 65),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("elem", DTYPES)
@pytest.mark.parametrize("k,w", [(8, 4), (16, 16)])
@pytest.mark.parametrize("shape", SHAPES)
def test_composite_matches_reference(torch, libs, manifest, path, elem, k, w, shape):
    B, Hq, Hkv, T, S = shape
    q, key, value, u = make_inputs(sum(shape) + k, B, Hq, Hkv, T, S, masked=0.1)
    out, (rq, rk, rv) = run_composite(torch, libs[path], manifest, elem, k, w, q, key, value, u)
    u64 = u.astype(np.float64)  # bit-identical scores: identical selections
    if elem == "f32":
        want = reference.sparsek_attention(q, key, value, u64, k, w)
        np.testing.assert_allclose(out, want, atol=1e-4, rtol=1e-4)
    else:  # SPEC 8: float32 reference on the same rounded inputs, 2e-2
        want = reference.sparsek_attention(rq, rk, rv, u64, k, w)
        np.testing.assert_allclose(out, want, atol=2e-2)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("elem", DTYPES)
@pytest.mark.parametrize("B,Hq,Hkv,T,S", [(1, 4, 4, 128, 128), (2, 8, 2, 64, 192),
                                          (1, 8, 2, 100, 100)])
def test_composite_k_at_least_s_equals_sdpa(torch, libs, manifest, path, elem, B, Hq, Hkv, T, S):
    k, w = 256, 16
    assert k >= S
    q, key, value, u = make_inputs(S * 3 + T, B, Hq, Hkv, T, S)
    out, (rq, rk, rv) = run_composite(torch, libs[path], manifest, elem, k, w, q, key, value, u)
    assert_matches_sdpa(torch, out, rq, rk, rv, elem)


@pytest.mark.parametrize("elem", ("f32", "bf16"))
@pytest.mark.parametrize("B,Hq,Hkv,T,S,spread", [(1, 4, 2, 3000, 3000, 2.0),
                                                 (1, 2, 1, 1500, 4000, 0.05)])
def test_composite_default_chunks(torch, gpu_auto_lib, manifest, elem, B, Hq, Hkv, T, S, spread):
    # Default chunking (256 candidates) over rows of thousands; a small
    # score spread keeps many scores near tau (wide thresholds' bands).
    k, w = 64, 16
    q, key, value, u = make_inputs(T + S, B, Hq, Hkv, T, S)
    u = (u * spread / 2).astype(np.float32)
    out, (rq, rk, rv) = run_composite(torch, gpu_auto_lib, manifest, elem, k, w, q, key, value, u,
                                      key_set="auto_select_attention")
    u64 = u.astype(np.float64)
    if elem == "f32":
        want = reference.sparsek_attention(q, key, value, u64, k, w)
        np.testing.assert_allclose(out, want, atol=1e-4, rtol=1e-4)
    else:
        want = reference.sparsek_attention(rq, rk, rv, u64, k, w)
        np.testing.assert_allclose(out, want, atol=2e-2)
