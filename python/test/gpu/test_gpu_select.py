# Compiled sparsek.select and sparsek.score on the GPU: selected indices
# bit-identical to the reference on identical u, gates and tau within SPEC 8
# (1e-4 for f32); NaN and +inf scores reported through the device status and
# skipped like -inf in the kernel (SPEC 3).
import numpy as np
import pytest

from sparsek import reference
from sparsek.status import INVALID_SCORE, QUERIES_EXCEED_KEYS, SparseKError


def run_select(torch, gpu_lib, manifest, u, k, w, T, key_set="select"):
    """u: float32 [B, H, S]; returns (indices, gates, tau) as numpy."""
    B, H, _ = u.shape
    tu = torch.from_numpy(u).cuda()
    idx = torch.full((B, H, T, k), 7, dtype=torch.int32, device="cuda")
    gates = torch.full((B, H, T, k), 7.0, device="cuda")
    tau = torch.full((B, H, T), 7.0, device="cuda")
    gpu_lib.call(manifest[key_set][f"{k}/{w}"], tu, idx, gates, tau)
    torch.cuda.synchronize()
    return idx.cpu().numpy(), gates.cpu().numpy(), tau.cpu().numpy()


def check_select(torch, gpu_lib, manifest, u, k, w, T, reference_u=None, key_set="select"):
    """Runs the kernel on the float32 u and compares with the reference on
    the same values (or on `reference_u`, e.g. with NaN replaced by -inf)."""
    idx, gates, tau = run_select(torch, gpu_lib, manifest, u, k, w, T, key_set)
    ref_u = (u if reference_u is None else reference_u).astype(np.float64)
    want_i, want_g, want_t = reference.select(ref_u, k, w, T)
    np.testing.assert_array_equal(idx, want_i)
    finite = np.where(np.isfinite(ref_u), np.abs(ref_u), 0.0)
    row_scale = np.maximum(1.0, finite.max(axis=2, initial=0.0))[:, :, None]
    np.testing.assert_allclose(gates, want_g, rtol=0, atol=1e-4 * row_scale.max())
    # Infinite thresholds (k = 0, |Cand| <= k) must match exactly.
    assert np.array_equal(np.isinf(tau), np.isinf(want_t))
    assert np.array_equal(np.sign(tau[np.isinf(tau)]), np.sign(want_t[np.isinf(want_t)]))
    fin = np.isfinite(want_t)
    np.testing.assert_allclose(tau[fin], want_t[fin], rtol=0,
                               atol=1e-4 * row_scale.max())


@pytest.mark.parametrize("k,w", [(8, 4), (1, 0), (16, 16)])
@pytest.mark.parametrize("B,H,S,T", [(2, 3, 100, 100), (1, 2, 200, 70), (3, 1, 33, 1),
                                     (1, 1, 5, 5)])
def test_select_random(torch, gpu_lib, manifest, k, w, B, H, S, T):
    g = np.random.default_rng(S * 7 + T + k)
    u = (g.normal(size=(B, H, S)) * 2).astype(np.float32)
    check_select(torch, gpu_lib, manifest, u, k, w, T)


@pytest.mark.parametrize("k,w", [(8, 4), (16, 16)])
def test_select_ties_and_masked(torch, gpu_lib, manifest, k, w):
    # Few distinct values: ties everywhere go to the smaller position.
    g = np.random.default_rng(5)
    u = g.integers(0, 3, size=(2, 2, 150)).astype(np.float32)
    u[g.random(u.shape) < 0.2] = -np.inf
    check_select(torch, gpu_lib, manifest, u, k, w, 150)


def test_select_hard_case(torch, gpu_lib, manifest):
    # Scores spread far apart: exact hard top-k, tau = z(k) - 1.
    g = np.random.default_rng(6)
    u = (g.permutation(120).reshape(1, 1, 120) * 3.0).astype(np.float32)
    check_select(torch, gpu_lib, manifest, u, 8, 4, 120)


def test_select_all_candidates_masked(torch, gpu_lib, manifest):
    u = np.full((1, 2, 40), -np.inf, dtype=np.float32)
    check_select(torch, gpu_lib, manifest, u, 8, 4, 40)


def test_select_k_at_least_s(torch, gpu_lib, manifest):
    g = np.random.default_rng(7)
    u = g.normal(size=(2, 2, 100)).astype(np.float32)
    u[0, 0, 10:20] = -np.inf
    check_select(torch, gpu_lib, manifest, u, 256, 3, 100)


def test_select_k0_is_window_only(torch, gpu_lib, manifest):
    g = np.random.default_rng(8)
    u = g.normal(size=(2, 3, 50)).astype(np.float32)
    idx, gates, tau = run_select(torch, gpu_lib, manifest, u, 0, 8, 30)
    assert idx.shape == (2, 3, 30, 0) and gates.shape == (2, 3, 30, 0)
    assert np.all(tau == np.inf)
    check_select(torch, gpu_lib, manifest, u, 0, 8, 30)


def test_select_nan_and_inf_are_reported_and_skipped(torch, gpu_lib, manifest):
    # SPEC 3: NaN and +inf are invalid input, reported as on the CPU path
    # (device status, raised by check=True); the kernels skip them like -inf,
    # so the outputs are the masked selection's.
    g = np.random.default_rng(9)
    u = g.normal(size=(1, 2, 80)).astype(np.float32)
    u[0, 0, [3, 17, 40]] = np.nan
    u[0, 1, [0, 5, 60, 79]] = np.inf
    masked = np.where(np.isfinite(u), u, -np.inf).astype(np.float64)
    idx = torch.full((1, 2, 80, 8), 7, dtype=torch.int32, device="cuda")
    gates = torch.full((1, 2, 80, 8), 7.0, device="cuda")
    tau = torch.full((1, 2, 80), 7.0, device="cuda")
    with pytest.raises(SparseKError) as e:
        gpu_lib.call(manifest["select"]["8/4"], torch.from_numpy(u).cuda(), idx, gates, tau,
                     check=True)
    assert e.value.code == INVALID_SCORE
    want_i, want_g, _ = reference.select(masked, 8, 4, 80)
    np.testing.assert_array_equal(idx.cpu().numpy(), want_i)
    np.testing.assert_allclose(gates.cpu().numpy(), want_g, rtol=0, atol=1e-4 * 4)
    assert gpu_lib.device_status() == 0  # check() cleared it


def test_select_more_queries_than_keys_is_an_error(torch, gpu_lib, manifest):
    u = torch.zeros(1, 1, 8, device="cuda")
    idx = torch.zeros(1, 1, 9, 8, dtype=torch.int32, device="cuda")
    gates = torch.zeros(1, 1, 9, 8, device="cuda")
    tau = torch.zeros(1, 1, 9, device="cuda")
    with pytest.raises(SparseKError) as e:
        gpu_lib.call(manifest["select"]["8/4"], u, idx, gates, tau)
    assert e.value.code == QUERIES_EXCEED_KEYS


@pytest.mark.parametrize("elem", ["f32", "bf16", "f16"])
@pytest.mark.parametrize("B,T,C,H", [(2, 70, 48, 3), (1, 1, 64, 2), (1, 300, 128, 4)])
def test_score_matches_reference(torch, gpu_lib, manifest, elem, B, T, C, H):
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[elem]
    full = elem == "f32"
    g = np.random.default_rng(B * T + C)
    x = torch.from_numpy(g.normal(size=(B, T, C)).astype(np.float32)).cuda().to(dtype)
    wsc = torch.from_numpy((g.normal(size=(H, C)) / np.sqrt(C)).astype(np.float32)).cuda().to(dtype)
    u = torch.full((B, H, T), 7.0, device="cuda")
    rx, rw = x.float().cpu().numpy(), wsc.float().cpu().numpy()
    if full:
        bias = torch.from_numpy(g.normal(size=H).astype(np.float32)).cuda()
        slope = torch.from_numpy((g.normal(size=H) * 1e-2).astype(np.float32)).cuda()
        offset = 17
        gpu_lib.call(manifest["score"]["f32/full"], x, wsc, bias, slope, offset, u)
        want = reference.score(rx, rw, bias=bias.cpu().numpy(), slope=slope.cpu().numpy(),
                               offset=offset)
    else:
        gpu_lib.call(manifest["score"][f"{elem}/plain"], x, wsc, u)
        want = reference.score(rx, rw)
    torch.cuda.synchronize()
    got = u.cpu().numpy()
    scale = max(1.0, float(np.abs(want).max()))
    tol = 1e-4 if full else 2e-2  # SPEC 8; 16-bit: f32 reference on rounded inputs
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("B,H,S,T,spread", [(1, 2, 5000, 5000, 2.0), (2, 1, 3000, 1000, 0.05),
                                            (1, 1, 2000, 2000, 0.0)])
def test_select_default_chunks(torch, gpu_auto_lib, manifest, B, H, S, T, spread):
    # The GPU pipeline's default chunking (256 candidates per chunk here)
    # over long rows; spread 0 makes every score tie.
    g = np.random.default_rng(S + T)
    u = (g.normal(size=(B, H, S)) * spread).astype(np.float32)
    check_select(torch, gpu_auto_lib, manifest, u, 64, 16, T, key_set="auto_select")
