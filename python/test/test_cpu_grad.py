# Compiled gradient ops (SPEC 5 "Backward") on the CPU against the float64 reference and float64 finite differences.
import numpy as np
import pytest

from cpu_harness import library, rng
from grad_cases import (MATRIX, assert_grad_close, check_attention_grad,
                        check_bad_scores_and_sizes_reported, check_score_grad,
                        check_select_attention_grad, qkv, scores)
from sparsek import ir, reference


def run_select_attention_grad(q, key, value, u, do, k, w, scale=None):
    lib = library(ir.select_attention_grad_function("sag", k, w, scale=scale))
    out = [np.zeros(a.shape, np.float32) for a in (q, key, value, u)]
    lib.call("sag", q, key, value, u, do, *out)
    return out


@pytest.mark.parametrize("B,Hq,Hkv,S,T,k,w,kind", MATRIX)
def test_select_attention_grad_matches_reference(B, Hq, Hkv, S, T, k, w, kind):
    got = check_select_attention_grad(run_select_attention_grad, rng(S * 31 + T * 7 + k + w),
                                      B, Hq, Hkv, S, T, k, w, kind)
    if k == 0 or k >= S or w >= T:
        assert not got[3].any(), "no support, no score gradient"
    if kind == "narrow" and 0 < k < S and w < T:
        assert np.abs(got[3]).max() > 0


def test_truncated_support_entries_get_the_mean_term():
    """A support entry that no query selected still gets -mean(t) (SPEC 5)."""
    g = rng(5)
    q, key, value, do = qkv(g, 1, 1, 1, 1, 12, 4, 4)
    # One query at position 11, w = 1: candidates 0..10, all with gates in (0, 1).
    u = np.linspace(0.0, 0.5, 12).astype(np.float32)[None, None]
    k, w = 2, 1
    _, _, _, du = run_select_attention_grad(q, key, value, u, do, k, w)
    indices, gates, tau = reference.select(u, k, w, T=1)
    assert ((gates > 0) & (gates < 1)).all()
    support = (u[0, 0, :11] > tau[0, 0, 0]) & (u[0, 0, :11] < tau[0, 0, 0] + 1)
    truncated = support.copy()
    truncated[indices[0, 0, 0]] = False
    assert truncated.sum() >= 3
    want = reference.sparsek_attention_vjp(q, key, value, u, k, w, do)[3]
    assert_grad_close(du, want)
    # Every truncated entry gets the same -mean; it is not zero.
    vals = du[0, 0, :11][truncated]
    np.testing.assert_allclose(vals, vals[0], rtol=1e-6)
    assert abs(vals[0]) > 0


def _loss(q, key, value, u, do, k, w):
    return float(np.sum(reference.sparsek_attention(q, key, value, u, k, w) * do))


def _structure(u, k, w, T):
    """Sel(t) and the SPARSEK pieces of every candidate: what must not change under a
    finite-difference step (SPEC 3: no top-k crossing, no clip kink)."""
    indices, _, tau = reference.select(u, k, w, T=T)
    with np.errstate(invalid="ignore"):
        d = u[:, :, None, :] - tau[..., None]
    return indices, np.sign(d) + np.sign(d - 1)


@pytest.mark.parametrize("B,Hq,Hkv,S,T,k,w,kind", [m for m in MATRIX if m[7] != "ties"])
def test_select_attention_grad_matches_finite_differences(B, Hq, Hkv, S, T, k, w, kind):
    g = rng(S * 13 + T + k * 3 + w)
    q, key, value, do = qkv(g, B, Hq, Hkv, T, S, 8, 6)
    u = scores(g, (B, Hkv, S), kind)
    got = run_select_attention_grad(q, key, value, u, do, k, w)
    args = [a.astype(np.float64) for a in (q, key, value, u)]
    do64 = do.astype(np.float64)
    eps = 1e-6
    base = _structure(args[3], k, w, T)
    for which, grad in enumerate(got):
        x = args[which]
        finite = np.flatnonzero(np.isfinite(x))
        picks = g.choice(finite, size=min(24, finite.size), replace=False)
        checked = 0
        fd = np.zeros(picks.size)
        for n, flat in enumerate(picks):
            plus, minus = [a.copy() for a in args], [a.copy() for a in args]
            plus[which].flat[flat] += eps
            minus[which].flat[flat] -= eps
            if which == 3 and not all(
                    all(np.array_equal(a, b, equal_nan=True) for a, b in zip(_structure(v[3], k, w, T), base))
                    for v in (plus, minus)):
                fd[n] = np.nan  # a top-k crossing or a clip kink within the step
                continue
            fd[n] = (_loss(*plus, do64, k, w) - _loss(*minus, do64, k, w)) / (2 * eps)
            checked += 1
        assert checked >= picks.size // 2, "too few points away from the kinks"
        keep = ~np.isnan(fd)
        assert_grad_close(grad.flat[picks[keep]], fd[keep], ["dq", "dkey", "dvalue", "du"][which])


@pytest.mark.parametrize("G,S,T,K,w", [(1, 20, 20, 5, 3), (2, 24, 10, 4, 2)])
def test_attention_grad_matches_reference(G, S, T, K, w):
    check_attention_grad(rng(S + K), 1, 2 * G, S, T, K, w)


def test_select_grad_matches_mask_vjp_rows():
    """select_grad is the SPARSEK VJP of each query's candidate row, written here
    directly over the rows (the reference composite does it through attention)."""
    g = rng(9)
    S, T, k, w = 26, 26, 4, 3
    u = scores(g, (2, 2, S), "masked")
    indices, gates, tau = reference.select(u, k, w, T=T)
    dg = (g.normal(size=gates.shape) * (indices >= 0)).astype(np.float32)
    lib = library(ir.select_grad_function("sg", w, k=k, index_type="i64"))
    du = np.zeros(u.shape, np.float32)
    lib.call("sg", u, indices, tau.astype(np.float32), dg, du)
    want = np.zeros(u.shape)
    for b in range(2):
        for h in range(2):
            for t in range(T):
                cand = np.arange(0, max(S - T + t - w + 1, 0))
                p = reference._clip_gate(u[b, h, cand].astype(np.float64), tau[b, h, t])
                row = np.zeros(cand.size)
                for i, j in enumerate(indices[b, h, t]):
                    if j >= 0:
                        row[j] = dg[b, h, t, i]
                want[b, h, cand] += reference.sparsek_mask_vjp(p, row)
    assert_grad_close(du, want)


@pytest.mark.parametrize("offset", [False, True])
def test_score_grad_matches_reference(offset):
    check_score_grad(rng(3), 2, 7, offset)


@pytest.mark.parametrize("k", [0, 3, 9])
def test_mask_grad_matches_reference(k):
    g = rng(k)
    z = scores(g, (5, 9), "masked")
    p, tau = reference.sparsek_mask(z, k)
    dp = g.normal(size=z.shape).astype(np.float32)
    lib = library(ir.mask_grad_function("mg"))
    dz = np.zeros(z.shape, np.float32)
    lib.call("mg", z, tau.astype(np.float32), dp, dz)
    assert_grad_close(dz, reference.sparsek_mask_vjp(p, dp))


def test_nan_scores_and_mismatched_sizes_are_reported():
    check_bad_scores_and_sizes_reported(run_select_attention_grad)
