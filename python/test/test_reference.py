# Checks sparsek.reference against brute-force definitions of SPEC 2-6 that share no code with it.
import math
from fractions import Fraction

import numpy as np
import pytest

from sparsek import reference as R

INF = math.inf


# ----------------------------------------------------------------------------
# Brute-force definitions, written from the SPEC in plain Python loops.
# ----------------------------------------------------------------------------


def f_direct(z, tau):
    return sum(min(max(zi - tau, 0.0), 1.0) for zi in z if zi != -INF)


def tau_bisect(z, k, iters=100):
    """Largest tau with f(tau) >= k, by bisection on f (SPEC 3 definition)."""
    live = [zi for zi in z if zi != -INF]
    if k == 0:
        return INF
    if k >= len(live):
        return -INF
    lo, hi = min(live) - 1.0, max(live)  # f(lo) = n > k, f(hi) = 0 < k
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f_direct(live, mid) >= k:
            lo = mid
        else:
            hi = mid
    return lo


def clip01(x):
    return min(max(x, 0.0), 1.0)


def brute_select(u_row, k, w, pos):
    """Sel(t), gates and tau for one query, straight from SPEC 4."""
    cand = [j for j in range(0, pos - w + 1) if u_row[j] != -INF]
    tau = tau_bisect([u_row[j] for j in cand], k)
    ranked = sorted(cand, key=lambda j: (-u_row[j], j))[:k]
    sel = sorted(ranked)
    gates = [clip01(u_row[j] - tau) if tau != -INF else 1.0 for j in sel]
    return sel, gates, tau


def naive_attention(q, key, value, indices, gates, w, scale):
    """SPEC 5 per query from an explicit {position: gate} map."""
    B, Hq, T, D = q.shape
    Hkv, S = key.shape[1], key.shape[2]
    G = Hq // Hkv
    o = np.zeros((B, Hq, T, value.shape[3]))
    for b in range(B):
        for hq in range(Hq):
            h = hq // G
            for t in range(T):
                pos = S - T + t
                weight = {j: 1.0 for j in range(max(0, pos - w + 1), pos + 1)}
                for j, g in zip(indices[b, h, t], gates[b, h, t]):
                    if 0 <= j <= pos - w:
                        weight[int(j)] = float(g)
                if not weight:
                    continue
                logits = {j: scale * sum(q[b, hq, t, d] * key[b, h, j, d] for d in range(D)) for j in weight}
                m = max(logits.values())
                denom = sum(math.exp(s - m) for s in logits.values())
                for j, s in logits.items():
                    o[b, hq, t] += math.exp(s - m) / denom * weight[j] * value[b, h, j]
    return o


def naive_dense_causal(q, key, value, scale):
    B, Hq, T, D = q.shape
    S = key.shape[2]
    K = S
    indices = np.broadcast_to(np.arange(K), key.shape[:2] + (T, K))
    # Everything visible with gate 1: window w = 0, all positions "selected".
    return naive_attention(q, key, value, indices, np.ones(indices.shape), 0, scale)


def tol(z):
    finite = np.asarray(z)[np.isfinite(z)]
    return 1e-9 * max(1.0, float(np.abs(finite).max()) if finite.size else 1.0)


def assert_tau_close(a, b, z):
    if math.isinf(a) or math.isinf(b):
        assert a == b
    else:
        assert abs(a - b) <= tol(z), (a, b)


# ----------------------------------------------------------------------------
# SPEC 2: scoring.
# ----------------------------------------------------------------------------


def test_score_matches_loop_with_absolute_positions():
    rng = np.random.default_rng(0)
    B, T, C, Hkv, offset = 2, 5, 7, 3, 11
    x, wsc = rng.normal(size=(B, T, C)), rng.normal(size=(Hkv, C))
    bias, slope = rng.normal(size=Hkv), rng.normal(size=Hkv)
    u = R.score(x, wsc, bias, slope, offset=offset)
    assert u.shape == (B, Hkv, T)
    for b in range(B):
        for h in range(Hkv):
            for t in range(T):
                ref = sum(x[b, t, c] * wsc[h, c] for c in range(C)) + bias[h] + slope[h] * (offset + t)
                assert abs(u[b, h, t] - ref) < 1e-12
    assert np.allclose(R.score(x, wsc), np.einsum("btc,hc->bht", x, wsc))


def test_score_with_cached_prefix_equals_slice_of_full():
    rng = np.random.default_rng(1)
    x, wsc = rng.normal(size=(1, 9, 4)), rng.normal(size=(2, 4))
    slope = rng.normal(size=2)
    full = R.score(x, wsc, slope=slope)
    assert np.allclose(R.score(x[:, 6:], wsc, slope=slope, offset=6), full[:, :, 6:], atol=1e-13)


# ----------------------------------------------------------------------------
# SPEC 3: SPARSEK operator.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("spread", [0.05, 1.0, 10.0, 1000.0])
def test_tau_matches_bisection(spread):
    rng = np.random.default_rng(int(spread * 100))
    for n in [1, 2, 3, 7, 40, 300]:
        z = rng.normal(size=n) * spread + rng.normal() * 5
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n, n + 2}):
            tau = R.sparsek_tau(z, k)
            assert_tau_close(tau, tau_bisect(list(z), k), z)
            p, tau_m = R.sparsek_mask(z, k)
            assert tau_m == tau
            assert ((p >= 0) & (p <= 1)).all()
            assert abs(p.sum() - min(k, n)) <= 1e-9 * max(1, n)


def test_mask_is_the_euclidean_projection():
    # The capped simplex's feasible directions are spanned by e_i - e_j with
    # p_i < 1 and p_j > 0; p is optimal iff none of them decreases ||p - z||^2.
    rng = np.random.default_rng(2)
    for n, k in [(10, 3), (25, 8), (6, 5)]:
        z = rng.normal(size=n) * 2
        p, _ = R.sparsek_mask(z, k)
        grad = p - z
        for i in range(n):
            for j in range(n):
                if i != j and p[i] < 1 and p[j] > 0:
                    assert grad[i] - grad[j] >= -1e-12


def test_shift_invariance():
    rng = np.random.default_rng(3)
    z = rng.normal(size=50) * 3
    p0, tau0 = R.sparsek_mask(z, 7)
    for c in [-100.0, 0.37, 1e4]:
        p1, tau1 = R.sparsek_mask(z + c, 7)
        assert abs(tau1 - (tau0 + c)) <= 1e-9 * (1 + abs(c))
        assert np.allclose(p1, p0, atol=1e-9 * (1 + abs(c)))


def test_ties_give_equal_p():
    rng = np.random.default_rng(4)
    z = np.round(rng.normal(size=60) * 2) / 4  # many exact ties
    for k in [1, 5, 17, 40]:
        p, tau = R.sparsek_mask(z, k)
        assert_tau_close(tau, tau_bisect(list(z), k), z)
        for value in np.unique(z):
            assert np.ptp(p[z == value]) == 0.0


def test_tau_on_decimal_grid_and_near_hard_cases():
    # Scores on a 0.1 grid are not exact in binary: gaps of "exactly 1" and
    # breakpoints that coincide in decimal differ by an ulp here, the spot
    # where a bracket search can pick the wrong end of a flat piece.
    rng = np.random.default_rng(14)
    for trial in range(100):
        n = int(rng.integers(2, 25))
        z = rng.integers(-30, 30, size=n) / 10 + (1e3 if trial % 2 else 0.0)
        for k in range(1, n):
            assert_tau_close(R.sparsek_tau(z, k), tau_bisect(list(z), k), z)


def tau_exact(z, k):
    """tau as an exact rational: the largest t with f(t) = k (SPEC 3).

    f is evaluated exactly at every breakpoint z_i, z_i - 1; on the piece
    where it crosses k it is linear, so t is solved there exactly.
    """
    live = [Fraction(zi) for zi in z if zi != -INF]
    if k == 0:
        return INF
    if k >= len(live):
        return -INF

    def f(t):
        return sum(min(max(zi - t, 0), 1) for zi in live)

    points = sorted(set(live) | {zi - 1 for zi in live})
    values = [f(t) for t in points]
    solutions = [t for t, v in zip(points, values) if v == k]
    for (t0, v0), (t1, v1) in zip(zip(points, values), zip(points[1:], values[1:])):
        if v0 > k > v1:
            solutions.append(t0 + (v0 - k) * (t1 - t0) / (v0 - v1))
    return max(solutions)


@pytest.mark.parametrize("magnitude", [1.0, 1e20, 1e30, 1e36, 3e38, 1e300])
def test_tau_is_exact_for_any_magnitude(magnitude):
    # Scores up to float32's limit (and float64's, whose differences
    # overflow) once lost the unit breakpoints z - 1: IndexError, or tau off
    # by a factor of 2. The result must be the exact rational tau, rounded.
    rng = np.random.default_rng(int(math.log10(magnitude)))
    for trial in range(150):
        n = int(rng.integers(2, 9))
        # Few distinct values (ties), small offsets next to huge ones, -inf.
        base = rng.integers(-3, 4, size=n) * magnitude * rng.choice([1.0, 0.25, 1 / 3])
        z = base + rng.choice([0.0, 0.0, 0.5, -0.3, 1.0], size=n)
        if magnitude <= 3e38:  # values a float32 score can hold
            big = float(np.finfo(np.float32).max)
            z = np.clip(z, -big, big).astype(np.float32).astype(np.float64)
        z[rng.random(n) < 0.1] = -INF
        for k in range(0, n + 1):
            exact = tau_exact(list(z), k)
            tau = R.sparsek_tau(z, k)
            if math.isinf(exact):
                assert tau == exact
            else:
                assert abs(Fraction(tau) - exact) <= 1e-12 * max(1, abs(exact)), (z, k, tau, float(exact))


def test_hard_case_is_top_k_with_largest_tau():
    # Dyadic values keep every sum exact, so tau = z(k) - 1 holds bit for bit.
    z = np.array([4.0, -3.0, 7.5, 2.25, 7.0, -0.5, 3.0])
    zs = np.sort(z)[::-1]
    for k in range(1, z.size):
        if zs[k - 1] - zs[k] >= 1:
            p, tau = R.sparsek_mask(z, k)
            assert tau == zs[k - 1] - 1
            assert np.array_equal(p, (z >= zs[k - 1]).astype(float))
    # and a gap of exactly 1 sits on the boundary of the hard case
    p, tau = R.sparsek_mask(np.array([3.0, 2.0, 0.0]), 1)
    assert tau == 2.0 and np.array_equal(p, [1.0, 0.0, 0.0])


def test_k_zero_and_k_at_least_n():
    z = np.array([0.3, -INF, 2.0, -1.0])
    p, tau = R.sparsek_mask(z, 0)
    assert tau == INF and np.array_equal(p, np.zeros(4))
    for k in [3, 4, 10]:
        p, tau = R.sparsek_mask(z, k)
        assert tau == -INF and np.array_equal(p, [1.0, 0.0, 1.0, 1.0])
    p, tau = R.sparsek_mask(np.full(3, -INF), 2)  # all masked: n = 0 <= k
    assert tau == -INF and np.array_equal(p, np.zeros(3))
    p, tau = R.sparsek_mask(np.zeros(0), 2)
    assert tau == -INF and p.shape == (0,)


def test_masked_entries_are_ignored():
    rng = np.random.default_rng(5)
    z = rng.normal(size=30)
    zm = z.copy()
    zm[::4] = -INF
    for k in [1, 4, 12]:
        p, tau = R.sparsek_mask(zm, k)
        assert tau == R.sparsek_tau(zm[np.isfinite(zm)], k)
        assert (p[::4] == 0).all()
        assert abs(p.sum() - k) < 1e-9


def test_mask_batched_rows_match_1d():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(2, 3, 9))
    z[0, 1, :5] = -INF
    p, tau = R.sparsek_mask(z, 3)
    assert tau.shape == (2, 3) and p.shape == z.shape
    for idx in np.ndindex(2, 3):
        assert tau[idx] == R.sparsek_tau(z[idx], 3)


@pytest.mark.parametrize("bad", [np.nan, INF])
def test_invalid_scores_raise(bad):
    z = np.array([0.0, bad, 1.0])
    with pytest.raises(ValueError, match="z"):
        R.sparsek_tau(z, 1)
    with pytest.raises(ValueError, match="z"):
        R.sparsek_mask(z[None], 1)
    with pytest.raises(ValueError, match="u"):
        R.select(np.array([[[0.0, bad, 1.0]]]), 1, 1)


def test_invalid_budget_raises():
    with pytest.raises(ValueError, match="k"):
        R.sparsek_tau([1.0, 2.0], -1)
    with pytest.raises(ValueError, match="k"):
        R.sparsek_tau([1.0, 2.0], 1.5)


def test_vjp_matches_finite_differences():
    rng = np.random.default_rng(7)
    checked = 0
    while checked < 6:
        n, k = int(rng.integers(4, 30)), int(rng.integers(1, 4))
        z = rng.normal(size=n) * 1.5
        _, tau = R.sparsek_mask(z, k)
        # stay away from the kinks of clip (z = tau, z = tau + 1)
        if np.min(np.abs(np.concatenate([z - tau, z - tau - 1]))) < 1e-3:
            continue
        c = rng.normal(size=n)
        p, _ = R.sparsek_mask(z, k)
        grad = R.sparsek_mask_vjp(p, c)
        eps = 1e-6
        fd = np.array(
            [
                (c @ R.sparsek_mask(z + eps * e, k)[0] - c @ R.sparsek_mask(z - eps * e, k)[0]) / (2 * eps)
                for e in np.eye(n)
            ]
        )
        assert np.allclose(grad, fd, atol=1e-7)
        checked += 1


def test_vjp_empty_support_and_batched():
    p = np.array([[1.0, 0.0, 1.0], [0.25, 0.75, 0.0]])
    g = np.array([[3.0, -1.0, 2.0], [1.0, 3.0, 5.0]])
    assert np.array_equal(R.sparsek_mask_vjp(p, g), [[0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]])


# ----------------------------------------------------------------------------
# SPEC 4: selection.
# ----------------------------------------------------------------------------


def check_select(u, k, w, T):
    indices, gates, tau = R.select(u, k, w, T)
    B, Hkv, S = u.shape
    assert indices.shape == gates.shape == (B, Hkv, T, k) and tau.shape == (B, Hkv, T)
    assert indices.dtype == np.int64
    for b in range(B):
        for h in range(Hkv):
            for t in range(T):
                sel, g, tau_ref = brute_select(list(u[b, h]), k, w, S - T + t)
                n = len(sel)
                assert list(indices[b, h, t, :n]) == sel
                assert (indices[b, h, t, n:] == -1).all() and (gates[b, h, t, n:] == 0).all()
                assert np.allclose(gates[b, h, t, :n], g, atol=tol(u[b, h]), rtol=0)
                assert_tau_close(tau[b, h, t], tau_ref, u[b, h])


@pytest.mark.parametrize(
    "S,T,k,w",
    [
        (24, 24, 4, 3),
        (24, 24, 0, 2),  # sliding window only
        (20, 20, 30, 2),  # k >= S
        (20, 8, 3, 10),  # w >= T, cached prefix
        (30, 7, 5, 0),  # no window, cached prefix
        (16, 16, 16, 1),
        (12, 12, 2, 40),  # window covers everything: no candidates
    ],
)
def test_select_matches_brute_force(S, T, k, w):
    rng = np.random.default_rng(S * 100 + T * 10 + k + w)
    u = rng.normal(size=(2, 2, S)) * 2
    check_select(u, k, w, T)


def test_select_ties_and_masked_scores():
    rng = np.random.default_rng(8)
    u = np.round(rng.normal(size=(1, 3, 40))) / 2  # heavy ties
    u[0, 1, rng.random(40) < 0.3] = -INF
    u[0, 2, :] = 0.5  # all equal: smaller positions win
    u[0, 2, 5] = -INF
    for k, w in [(3, 2), (6, 0), (1, 5)]:
        check_select(u, k, w, 40)
        check_select(u, k, w, 13)
    indices, gates, _ = R.select(u, 3, 2)
    assert list(indices[0, 2, -1]) == [0, 1, 2]
    indices, _, _ = R.select(u[:, 2:], 3, 0)
    assert list(indices[0, 0, 7]) == [0, 1, 2]  # position 5 is masked, not a tie


def test_select_all_masked():
    u = np.full((1, 1, 6), -INF)
    indices, gates, tau = R.select(u, 2, 1)
    assert (indices == -1).all() and (gates == 0).all() and (tau == -INF).all()


def test_select_validation():
    u = np.zeros((1, 1, 5))
    with pytest.raises(ValueError, match="T"):
        R.select(u, 1, 1, T=6)
    with pytest.raises(ValueError, match="k = 0 with w = 0"):
        R.select(u, 0, 0)
    with pytest.raises(ValueError, match="w"):
        R.select(u, 1, -1)
    with pytest.raises(ValueError, match="u"):
        R.select(np.zeros((1, 5)), 1, 1)


# ----------------------------------------------------------------------------
# SPEC 5: attention.
# ----------------------------------------------------------------------------


def random_qkv(rng, B, Hq, Hkv, T, S, D=5, Dv=3):
    return (
        rng.normal(size=(B, Hq, T, D)),
        rng.normal(size=(B, Hkv, S, D)),
        rng.normal(size=(B, Hkv, S, Dv)),
    )


@pytest.mark.parametrize("G,S,T,K,w", [(1, 10, 10, 4, 2), (4, 12, 5, 6, 3), (2, 9, 9, 3, 0), (1, 8, 4, 0, 3)])
def test_attention_matches_naive_with_arbitrary_indices(G, S, T, K, w):
    # Indices that a selection would never produce: padding, positions in the
    # window or the future (to be ignored), unsorted order, arbitrary gates.
    rng = np.random.default_rng(G * 1000 + S * 10 + K)
    B, Hkv = 2, 2
    q, key, value = random_qkv(rng, B, Hkv * G, Hkv, T, S)
    indices = np.empty((B, Hkv, T, K), dtype=np.int64)
    for idx in np.ndindex(B, Hkv, T):
        indices[idx] = rng.permutation(S)[:K]
    indices[rng.random(indices.shape) < 0.25] = -1
    gates = rng.random(indices.shape)
    scale = 0.7
    o = R.attention(q, key, value, indices, gates, w, scale)
    assert o.shape == (B, Hkv * G, T, 3)
    assert np.allclose(o, naive_attention(q, key, value, indices, gates, w, scale), atol=1e-12)


@pytest.mark.parametrize("G", [1, 4])
@pytest.mark.parametrize("S,T", [(16, 16), (16, 6)])
@pytest.mark.parametrize("w", [0, 1, 4, 40])
def test_full_budget_equals_dense_causal(G, S, T, w):
    rng = np.random.default_rng(G + S + T + w)
    q, key, value = random_qkv(rng, 1, 2 * G, 2, T, S)
    u = rng.normal(size=(1, 2, S))
    dense = R.dense_causal_attention(q, key, value)
    for k in [S, S + 3]:
        assert np.allclose(R.sparsek_attention(q, key, value, u, k, w), dense, atol=1e-12)


@pytest.mark.parametrize("G,S,T", [(1, 7, 7), (4, 9, 4)])
def test_dense_causal_matches_naive(G, S, T):
    rng = np.random.default_rng(9)
    q, key, value = random_qkv(rng, 2, 2 * G, 2, T, S)
    scale = 1 / math.sqrt(q.shape[-1])
    assert np.allclose(R.dense_causal_attention(q, key, value), naive_dense_causal(q, key, value, scale), atol=1e-12)


def test_sparsek_attention_composite_matches_naive():
    rng = np.random.default_rng(10)
    S, T, k, w = 20, 9, 4, 3
    q, key, value = random_qkv(rng, 1, 4, 2, T, S)
    u = np.round(rng.normal(size=(1, 2, S)) * 2) / 2
    u[0, 0, 3] = -INF
    o = R.sparsek_attention(q, key, value, u, k, w, scale=0.5)
    indices = np.full((1, 2, T, k), -1)
    gates = np.zeros((1, 2, T, k))
    for h in range(2):
        for t in range(T):
            sel, g, _ = brute_select(list(u[0, h]), k, w, S - T + t)
            indices[0, h, t, : len(sel)] = sel
            gates[0, h, t, : len(sel)] = g
    assert np.allclose(o, naive_attention(q, key, value, indices, gates, w, 0.5), atol=1e-9)


def test_sliding_window_only_and_empty_set():
    rng = np.random.default_rng(11)
    q, key, value = random_qkv(rng, 1, 2, 1, 8, 8)
    u = rng.normal(size=(1, 1, 8))
    empty = np.zeros((1, 1, 8, 0), dtype=np.int64)
    o = R.sparsek_attention(q, key, value, u, 0, 3)
    assert np.allclose(o, naive_attention(q, key, value, empty, empty.astype(float), 3, 1 / math.sqrt(5)))
    # w = 0 and every candidate masked: nothing to attend to, o = 0
    o = R.sparsek_attention(q, key, value, np.full((1, 1, 8), -INF), 2, 0)
    assert np.array_equal(o, np.zeros_like(o))


def test_attention_validation():
    rng = np.random.default_rng(12)
    q, key, value = random_qkv(rng, 1, 3, 2, 4, 6)
    u = np.zeros((1, 2, 6))
    with pytest.raises(ValueError, match="multiple"):
        R.sparsek_attention(q, key, value, u, 2, 1)
    q, key, value = random_qkv(rng, 1, 2, 2, 7, 6)
    with pytest.raises(ValueError, match="S >= T"):
        R.dense_causal_attention(q, key, value)
    q, key, value = random_qkv(rng, 1, 2, 2, 4, 6)
    with pytest.raises(ValueError, match="value"):
        R.attention(q, key, value[:, :, :5], np.zeros((1, 2, 4, 1), dtype=int), np.ones((1, 2, 4, 1)), 1)
    with pytest.raises(ValueError, match="indices"):
        R.attention(q, key, value, np.zeros((1, 2, 4, 1)), np.ones((1, 2, 4, 1)), 1)
    with pytest.raises(ValueError, match="indices: repeated"):
        R.attention(q, key, value, np.zeros((1, 2, 4, 2), dtype=int), np.ones((1, 2, 4, 2)), 1)
    with pytest.raises(ValueError, match="k = 0 with w = 0"):
        R.attention(q, key, value, np.zeros((1, 2, 4, 0), dtype=int), np.ones((1, 2, 4, 0)), 0)
    with pytest.raises(ValueError, match="u"):
        R.sparsek_attention(q, key, value, u[:, :1], 2, 1)


def test_dense_causal_matches_torch_sdpa():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(13)
    for G, S, T in [(1, 12, 12), (4, 12, 12), (2, 15, 6)]:
        q, key, value = random_qkv(rng, 2, 2 * G, 2, T, S)
        qt, kt, vt = (torch.from_numpy(a) for a in (q, key, value))
        if S == T:
            ref = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=G > 1)
        else:
            mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)  # lower right
            ref = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, enable_gqa=G > 1)
        assert np.allclose(R.dense_causal_attention(q, key, value), ref.numpy(), atol=1e-10)


# ----------------------------------------------------------------------------
# SPEC 5 backward, against central finite differences of the forward.
# ----------------------------------------------------------------------------


def finite_difference(fn, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        old = x[i]
        x[i] = old + eps
        hi = fn()
        x[i] = old - eps
        lo = fn()
        x[i] = old
        grad[i] = (hi - lo) / (2 * eps)
    return grad


def far_from_kinks(u, k, w, T, margin=1e-3):
    """No clip kink (u = tau, u = tau + 1) and no top-k crossing within margin."""
    S = u.shape[-1]
    for row in u.reshape(-1, S):
        for t in range(T):
            cand = sorted((row[j] for j in range(0, S - T + t - w + 1) if row[j] != -INF), reverse=True)
            tau = tau_bisect(cand, k)
            if math.isfinite(tau) and min(min(abs(c - tau), abs(c - tau - 1)) for c in cand) < margin:
                return False
            if len(cand) > k and cand[k - 1] - cand[k] < margin:
                return False
    return True


def test_score_vjp_matches_finite_differences():
    rng = np.random.default_rng(15)
    x, wsc, bias, slope = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 3)), rng.normal(size=2), rng.normal(size=2)
    du = rng.normal(size=(2, 2, 4))
    loss = lambda: float((du * R.score(x, wsc, bias, slope, offset=5)).sum())
    dx, dwsc, dbias, dslope = R.score_vjp(x, wsc, du, offset=5)
    for grad, var in [(dx, x), (dwsc, wsc), (dbias, bias), (dslope, slope)]:
        assert np.allclose(grad, finite_difference(loss, var), atol=1e-7)


@pytest.mark.parametrize("G,S,T,K,w", [(2, 9, 6, 3, 2), (1, 7, 7, 4, 0)])
def test_attention_vjp_matches_finite_differences(G, S, T, K, w):
    rng = np.random.default_rng(16 + G)
    q, key, value = random_qkv(rng, 1, 2 * G, 2, T, S, D=3, Dv=2)
    indices = np.stack([rng.permutation(S)[:K] for _ in range(2 * T)]).reshape(1, 2, T, K)
    indices[rng.random(indices.shape) < 0.2] = -1
    gates = rng.random(indices.shape)
    do = rng.normal(size=(1, 2 * G, T, 2))
    loss = lambda: float((do * R.attention(q, key, value, indices, gates, w, 0.8)).sum())
    grads = R.attention_vjp(q, key, value, indices, gates, w, do, 0.8)
    for grad, var in zip(grads, (q, key, value, gates)):
        assert np.allclose(grad, finite_difference(loss, var), atol=1e-7)


@pytest.mark.parametrize("G,S,T,k,w", [(2, 12, 8, 3, 2), (1, 10, 10, 4, 0), (4, 9, 9, 2, 3)])
def test_sparsek_attention_vjp_matches_finite_differences(G, S, T, k, w):
    rng = np.random.default_rng(17 + S)
    q, key, value = random_qkv(rng, 1, 2 * G, 2, T, S, D=3, Dv=2)
    do = rng.normal(size=(1, 2 * G, T, 2))
    while True:  # scores with mostly fractional gates, away from every kink
        u = rng.normal(size=(1, 2, S)) * 0.6
        u[0, 1, 2] = -INF
        if far_from_kinks(u, k, w, T):
            break
    loss = lambda: float((do * R.sparsek_attention(q, key, value, u, k, w)).sum())
    dq, dkey, dvalue, du = R.sparsek_attention_vjp(q, key, value, u, k, w, do)
    for grad, var in [(dq, q), (dkey, key), (dvalue, value)]:
        assert np.allclose(grad, finite_difference(loss, var), atol=1e-7)
    # a -inf score stays -inf under a step, so its difference is 0 as well
    assert np.allclose(du, finite_difference(loss, u), atol=1e-7)
    assert du[0, 1, 2] == 0.0 and np.abs(du).max() > 1e-3  # the gradient path is exercised


# ----------------------------------------------------------------------------
# SPEC 6: incremental decoding.
# ----------------------------------------------------------------------------


def run_decode(seed, n, Hkv, G, k, w, D=6, Dv=4, masked=0.15):
    rng = np.random.default_rng(seed)
    Hq = Hkv * G
    keys, values = rng.normal(size=(1, Hkv, n, D)), rng.normal(size=(1, Hkv, n, Dv))
    queries = rng.normal(size=(1, Hq, n, D))
    u = np.round(rng.normal(size=(1, Hkv, n)) * 4) / 8  # spread < ~1: large tau state, ties
    u[rng.random(u.shape) < masked] = -INF
    cache = R.DecodeCache(Hkv, k, w)
    taus, slots = [], []
    pruned = [[] for _ in range(Hkv)]  # the scalar state a runtime keeps
    for p in range(n):
        cache.append(keys[0, :, p], values[0, :, p], u[0, :, p])
        qp = queries[:, :, p : p + 1]
        o_full = R.sparsek_attention(qp, keys[:, :, : p + 1], values[:, :, : p + 1], u[:, :, : p + 1], k, w)
        o = cache.decode(queries[0, :, p])
        assert np.allclose(o, o_full[0, :, 0], atol=1e-12)
        s = cache.slots()
        assert s.pos == p
        o_slots = R.decode_attention(
            queries[:, :, p], s.kslots[None], s.vslots[None], s.slot_scores[None], s.tau[None],
            s.pool_count[None], np.array([s.pos]), k, w,
        )
        assert np.allclose(o_slots[0], o, atol=1e-12)
        indices, _, tau_sel = R.select(u[:, :, : p + 1], k, w, T=1)
        for h in range(Hkv):
            # the pool reproduces Sel(t) exactly, tau to float64 precision
            assert cache.pool_positions(h) == [j for j in indices[0, h, 0] if j >= 0]
            assert tau_sel[0, h, 0] == cache.tau[h] or abs(tau_sel[0, h, 0] - cache.tau[h]) < 1e-12
            # window ring: token j in slot k + j mod w
            for j in range(max(0, p - w + 1), p + 1):
                assert s.slot_pos[h, k + j % w] == j
            # SPEC 6 pruning: solve over kept scores + newcomer, then drop <= tau
            c = p - w
            if c >= 0 and u[0, h, c] != -INF:
                pruned[h].append(u[0, h, c])
                t_pruned = R.sparsek_tau(np.array(pruned[h]), k)
                assert t_pruned == cache.tau[h] or abs(t_pruned - cache.tau[h]) < 1e-12
                pruned[h] = [x for x in pruned[h] if x > t_pruned]
                assert sorted(pruned[h], reverse=True) == cache.live_scores(h)
        taus.append(cache.tau.copy())
        slots.append(s)
    return np.array(taus), slots, queries


@pytest.mark.parametrize("Hkv,G,k,w", [(2, 2, 5, 4), (1, 4, 3, 0), (2, 1, 0, 3), (1, 2, 8, 1), (1, 1, 50, 2)])
def test_decode_cache_matches_full_recompute(Hkv, G, k, w):
    taus, _, _ = run_decode(seed=k * 10 + w, n=40, Hkv=Hkv, G=G, k=k, w=w)
    # monotonicity: tau never decreases as candidates arrive
    assert (taus[1:] >= taus[:-1]).all()  # (inf - inf would be NaN in np.diff)


def test_decode_cache_capacity_overflow_gives_lower_bound():
    # Scores spanning well under 1 keep many candidates above tau (SPEC 6).
    rng = np.random.default_rng(18)
    n, k, w = 80, 4, 2
    u = rng.normal(size=(2, n)) * 0.1
    exact, roomy, tight = (R.DecodeCache(2, k, w, capacity=c) for c in (None, 10**6, 6))
    z = np.zeros((2, 1))
    for p in range(n):
        for cache in (exact, roomy, tight):
            cache.append(z, z, u[:, p])
        assert np.allclose(roomy.tau, exact.tau, atol=1e-12, rtol=0)
        assert not roomy.tau_approximate
        assert (tight.tau <= exact.tau + 1e-12).all()
        if not tight.tau_approximate:
            assert np.allclose(tight.tau, exact.tau, atol=1e-12, rtol=0)
        assert all(len(tight.live_scores(h)) <= 6 for h in range(2))
    assert max(len(exact.live_scores(h)) for h in range(2)) > 6  # the tight cache did overflow
    assert tight.tau_approximate and (tight.tau < exact.tau - 1e-6).any()
    for h in range(2):
        assert tight.pool_positions(h) == exact.pool_positions(h)  # the pool does not depend on tau
    with pytest.raises(ValueError, match="capacity"):
        R.DecodeCache(1, 4, 1, capacity=3)


def test_decode_attention_batched_slots():
    _, slots_a, qa = run_decode(seed=1, n=15, Hkv=2, G=2, k=3, w=4)
    _, slots_b, qb = run_decode(seed=2, n=15, Hkv=2, G=2, k=3, w=4)
    a, b = slots_a[-1], slots_b[6]  # different positions in one batch
    stack = lambda f: np.stack([getattr(a, f), getattr(b, f)])
    q = np.stack([qa[0, :, 14], qb[0, :, 6]])
    o = R.decode_attention(
        q, stack("kslots"), stack("vslots"), stack("slot_scores"), stack("tau"), stack("pool_count"),
        np.array([a.pos, b.pos]), 3, 4,
    )
    for i, (s, qi) in enumerate([(a, qa[0, :, 14]), (b, qb[0, :, 6])]):
        one = R.decode_attention(
            qi[None], s.kslots[None], s.vslots[None], s.slot_scores[None], s.tau[None],
            s.pool_count[None], np.array([s.pos]), 3, 4,
        )
        assert np.allclose(o[i], one[0], atol=1e-14)


def test_decode_validation():
    with pytest.raises(ValueError, match="k = 0 with w = 0"):
        R.DecodeCache(1, 0, 0)
    cache = R.DecodeCache(2, 2, 2)
    with pytest.raises(ValueError, match="empty"):
        cache.decode(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="scores"):
        cache.append(np.zeros((2, 4)), np.zeros((2, 3)), np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="k_vec"):
        cache.append(np.zeros((3, 4)), np.zeros((2, 3)), np.zeros(2))
    cache.append(np.zeros((2, 4)), np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="q"):
        cache.decode(np.zeros((3, 4)))
    s = cache.slots()
    with pytest.raises(ValueError, match="pool_count"):
        R.decode_attention(
            np.zeros((1, 2, 4)), s.kslots[None], s.vslots[None], s.slot_scores[None], s.tau[None],
            np.array([[3, 0]]), np.array([0]), 2, 2,
        )


def test_package_import_is_light():
    import subprocess
    import sys

    code = "import sys, sparsek; assert 'numpy' not in sys.modules; sparsek.reference; assert 'numpy' in sys.modules"
    python_dir = __import__("os").path.dirname(__import__("os").path.dirname(__file__))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=python_dir)
