# Independent float64 numpy implementation of SPEC.md sections 2-6: the ground truth for every other path.
"""Float64 reference semantics of SparseK attention.

Everything here is written straight from ../shared/SPEC.md, in float64,
favouring clarity over speed: loops over (batch, head, query) where a loop
states the definition, numpy vectorization only where it stays obvious.
Other implementations (CPU lowering, GPU kernels, KV-cache runtime) are
tested against these functions to the tolerances of SPEC section 8.

Layout is [B, H, T, D] throughout. All results are float64 (indices int64).

API
  score(x, wsc, bias=None, slope=None, offset=0)        -> u [B, Hkv, T]
  sparsek_tau(z, k)                                     -> tau (float), z 1-D
  sparsek_mask(z, k)                                    -> (p, tau), last axis
  sparsek_mask_vjp(p, g)                                -> dL/dz
  select(u, k, w, T=None)                               -> (indices, gates, tau)
  attention(q, key, value, indices, gates, w, scale=None) -> o [B, Hq, T, Dv]
  sparsek_attention(q, key, value, u, k, w, scale=None) -> o
  dense_causal_attention(q, key, value, scale=None)     -> o
  score_vjp, attention_vjp, sparsek_attention_vjp       SPEC 5 backward
  DecodeCache(num_kv_heads, k, w)                       SPEC 6, token by token
  decode_attention(q, kslots, vslots, slot_scores, tau, pool_count, pos, k, w, scale=None)
"""

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "score",
    "sparsek_tau",
    "sparsek_mask",
    "sparsek_mask_vjp",
    "select",
    "attention",
    "sparsek_attention",
    "dense_causal_attention",
    "score_vjp",
    "attention_vjp",
    "sparsek_attention_vjp",
    "DecodeCache",
    "DecodeSlots",
    "decode_attention",
]


# ----------------------------------------------------------------------------
# Input validation. Every error is a ValueError naming the offending operand.
# ----------------------------------------------------------------------------


def _as_float(x, name, ndim=None):
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: cannot convert to a float64 array ({e})") from None
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected rank {ndim}, got shape {a.shape}")
    return a


def _as_index(x, name, ndim=None):
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected an integer array, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected rank {ndim}, got shape {a.shape}")
    return a.astype(np.int64)


def _as_count(v, name):
    # bool is an int subclass but never a meaningful budget or window.
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name}: expected a non-negative integer, got {v!r}")
    if v < 0:
        raise ValueError(f"{name}: must be >= 0, got {v}")
    return int(v)


def _check_k_w(k, w):
    k = _as_count(k, "k")
    w = _as_count(w, "w")
    if k == 0 and w == 0:
        raise ValueError("k and w: k = 0 with w = 0 leaves nothing to attend to")
    return k, w


def _check_scores(z, name):
    # SPEC 3: -inf means "masked"; NaN and +inf are invalid input.
    if np.isnan(z).any():
        raise ValueError(f"{name}: contains NaN (scores must be finite or -inf)")
    if np.isposinf(z).any():
        raise ValueError(f"{name}: contains +inf (scores must be finite or -inf)")


def _check_scale(scale, d):
    if scale is None:
        return 1.0 / math.sqrt(d)
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale: must be finite, got {scale}")
    return scale


# ----------------------------------------------------------------------------
# SPEC 2: scoring network.
# ----------------------------------------------------------------------------


def score(x, wsc, bias=None, slope=None, offset=0):
    """u[b, h, t] = x[b, t] . wsc[h] + bias[h] + slope[h] * (offset + t).

    x: [B, T, C]; wsc: [Hkv, C]; bias, slope: [Hkv] or None. offset is the
    absolute position of x[:, 0] (the length of the cached prefix), so the
    slope term is linear in the absolute position.
    """
    x = _as_float(x, "x", 3)
    wsc = _as_float(wsc, "wsc", 2)
    B, T, C = x.shape
    Hkv = wsc.shape[0]
    if wsc.shape[1] != C:
        raise ValueError(f"wsc: expected [Hkv, {C}] to match x's width, got {wsc.shape}")
    offset = _as_count(offset, "offset")
    u = np.einsum("btc,hc->bht", x, wsc)
    if bias is not None:
        bias = _as_float(bias, "bias", 1)
        if bias.shape != (Hkv,):
            raise ValueError(f"bias: expected shape ({Hkv},), got {bias.shape}")
        u = u + bias[None, :, None]
    if slope is not None:
        slope = _as_float(slope, "slope", 1)
        if slope.shape != (Hkv,):
            raise ValueError(f"slope: expected shape ({Hkv},), got {slope.shape}")
        positions = offset + np.arange(T, dtype=np.float64)
        u = u + slope[None, :, None] * positions[None, None, :]
    return u


# ----------------------------------------------------------------------------
# SPEC 3: the SPARSEK operator.
# ----------------------------------------------------------------------------


def _f_at(a, prefix, t):
    """f(t) = sum_i clip(a_i - t, 0, 1) for a sorted ascending, at every t.

    Entries <= t add 0, entries >= t + 1 add 1, the ones between add a_i - t;
    prefix[i] = a[0] + ... + a[i-1] gives the middle sum in O(log n).
    """
    n = a.size
    lo = np.searchsorted(a, t, side="right")  # a[lo:] > t
    hi = np.searchsorted(a, t + 1.0, side="left")  # a[hi:] >= t + 1
    return (n - hi) + (prefix[hi] - prefix[lo]) - (hi - lo) * t


def sparsek_tau(z, k):
    """Exact SPARSEK threshold of the 1-D scores z with budget k (SPEC 3).

    Returns +inf for k = 0 and -inf when k >= n (n = number of entries that
    are not -inf). Otherwise tau solves f(tau) = k, found by evaluating f at
    every breakpoint {z_i} U {z_i - 1}, bracketing k, and solving the linear
    piece; where f = k on a whole interval (hard top-k) the largest point is
    returned, which is z(k) - 1.
    """
    z = _as_float(z, "z", 1)
    k = _as_count(k, "k")
    _check_scores(z, "z")
    live = z[z > -np.inf]
    n = live.size
    if k == 0:
        return math.inf
    if k >= n:
        return -math.inf
    a = np.sort(live)
    kth, next_ = a[n - k], a[n - k - 1]  # z(k) and z(k+1) of the descending order
    with np.errstate(over="ignore"):  # a gap beyond float64 range is still >= 1
        gap = kth - next_
    if gap >= 1.0:
        # Hard case: f = k on all of [z(k+1), z(k) - 1]. Decided from the
        # scores themselves, because f evaluated in float at z(k) - 1 can
        # round just below k and the bracket search below would then return
        # the left end of the flat piece instead of its largest point.
        return float(kth - 1.0)
    # Soft case: f(z(k)) <= k - 1 (only the k - 1 larger entries add) and
    # f(z(k+1) - 1) >= k + 1, so tau lies in (z(k+1) - 1, z(k)), within 2 of
    # z(k). Shift invariance lets us anchor there: a = z - z(k) is then exact
    # or nearly so for every entry that can be in the support, whatever the
    # magnitude of the scores (an anchor at the row maximum loses the unit
    # breakpoints a - 1 once |z| passes 2^53). Entries at or above 1 add 1 and
    # entries at or below -2 add 0 for every t in [-2, 0], so clipping a to
    # [-2, 1] leaves f unchanged there and keeps a huge spread (even one that
    # overflows to inf) out of the prefix sums.
    anchor = kth
    with np.errstate(over="ignore"):
        a = np.clip(a - anchor, -2.0, 1.0)
    prefix = np.concatenate(([0.0], np.cumsum(a)))
    breakpoints = np.unique(np.concatenate((a, a - 1.0)))  # ascending
    f = _f_at(a, prefix, breakpoints)
    # f is non-increasing: f(a(k+1) - 1) >= k + 1 > k and f(max a) = 0 < k,
    # so the last breakpoint with f >= k exists and is not the final one: tau
    # lies on the linear piece that follows it. Outside the hard case f has no
    # flat piece at height k (flat pieces sit at integers U != k), so the
    # piece has a support and rounding in f moves tau no more than it moves f.
    i = int(np.nonzero(f >= k)[0][-1])
    # On that piece U entries add 1 and the support (W - U entries between t
    # and t + 1) adds a_j - t, so f(t) = k solves as (sum of the support's a_j
    # + U - k) / (W - U). Summing the support alone (fsum, not prefix-sum
    # differences) makes tau depend on the support only: a score added at or
    # below tau leaves tau bit for bit unchanged, never lowered by rounding
    # (SPEC 6: tau never decreases).
    mid = 0.5 * (breakpoints[i] + breakpoints[i + 1])
    ones = a >= mid + 1.0
    support = a[(a > mid) & ~ones]
    tau = (math.fsum(support) + int(ones.sum()) - k) / support.size
    return float(tau + anchor)


def _clip_gate(z, tau):
    # clip(z - tau, 0, 1) with masked (-inf) entries at 0; the explicit where
    # avoids -inf - (-inf) = NaN when tau = -inf.
    with np.errstate(invalid="ignore"):
        p = np.clip(z - tau, 0.0, 1.0)
    return np.where(z == -np.inf, 0.0, p)


def sparsek_mask(z, k):
    """SPARSEK(z, k) on the last axis of z (any rank >= 1).

    Returns (p, tau): p has z's shape, tau has shape z.shape[:-1].
    """
    z = _as_float(z, "z")
    if z.ndim < 1:
        raise ValueError(f"z: expected rank >= 1, got shape {z.shape}")
    k = _as_count(k, "k")
    _check_scores(z, "z")
    tau = np.empty(z.shape[:-1], dtype=np.float64)
    for idx in np.ndindex(*z.shape[:-1]):
        tau[idx] = sparsek_tau(z[idx], k)
    p = _clip_gate(z, tau[..., None])
    return p, tau


def sparsek_mask_vjp(p, g):
    """dL/dz given p = SPARSEK(z, k) and g = dL/dp (SPEC 3), last axis.

    With S = {i : 0 < p_i < 1}: dz_i = [i in S] (g_i - mean_{j in S} g_j).
    """
    p = _as_float(p, "p")
    g = _as_float(g, "g")
    if p.shape != g.shape:
        raise ValueError(f"g: expected p's shape {p.shape}, got {g.shape}")
    if p.ndim < 1:
        raise ValueError(f"p: expected rank >= 1, got shape {p.shape}")
    support = (p > 0.0) & (p < 1.0)
    count = support.sum(axis=-1, keepdims=True)
    mean = np.where(support, g, 0.0).sum(axis=-1, keepdims=True) / np.maximum(count, 1)
    return np.where(support, g - mean, 0.0)


# ----------------------------------------------------------------------------
# SPEC 4: causal selection.
# ----------------------------------------------------------------------------


def _select_one(u_row, k, w, pos):
    """Sel, gates and tau for one query at absolute position pos, one head."""
    candidates = np.arange(0, max(pos - w + 1, 0))
    candidates = candidates[u_row[candidates] > -np.inf]
    uc = u_row[candidates]
    tau = sparsek_tau(uc, k)
    # Order (u, -j) descending: a stable sort on -u keeps ascending j among
    # equal scores, so the smaller position wins a tie.
    order = np.argsort(-uc, kind="stable")[:k]
    chosen = np.sort(candidates[order])
    return chosen, _clip_gate(u_row[chosen], tau), tau


def select(u, k, w, T=None):
    """Causal SparseK selection (SPEC 4) for the last T of the S positions of u.

    u: [B, Hkv, S]. Returns indices [B, Hkv, T, k] int64 (positions sorted
    ascending, padded with -1), gates [B, Hkv, T, k] float64 (padded with 0)
    and tau [B, Hkv, T].
    """
    u = _as_float(u, "u", 3)
    k, w = _check_k_w(k, w)
    _check_scores(u, "u")
    B, Hkv, S = u.shape
    T = S if T is None else _as_count(T, "T")
    if T > S:
        raise ValueError(f"T: must be <= S = {S} (queries are the last T positions), got {T}")
    indices = np.full((B, Hkv, T, k), -1, dtype=np.int64)
    gates = np.zeros((B, Hkv, T, k), dtype=np.float64)
    tau = np.empty((B, Hkv, T), dtype=np.float64)
    for b in range(B):
        for h in range(Hkv):
            for t in range(T):
                chosen, g, tau[b, h, t] = _select_one(u[b, h], k, w, S - T + t)
                indices[b, h, t, : chosen.size] = chosen
                gates[b, h, t, : chosen.size] = g
    return indices, gates, tau


# ----------------------------------------------------------------------------
# SPEC 5: attention.
# ----------------------------------------------------------------------------


def _check_qkv(q, key, value):
    q = _as_float(q, "q", 4)
    key = _as_float(key, "key", 4)
    value = _as_float(value, "value", 4)
    B, Hq, T, D = q.shape
    if key.shape[0] != B or key.shape[3] != D:
        raise ValueError(f"key: expected [{B}, Hkv, S, {D}] to match q {q.shape}, got {key.shape}")
    Hkv, S = key.shape[1], key.shape[2]
    if value.shape[:3] != (B, Hkv, S):
        raise ValueError(f"value: expected [{B}, {Hkv}, {S}, Dv] to match key, got {value.shape}")
    if Hkv == 0 or Hq % Hkv != 0:
        raise ValueError(f"q: query heads Hq = {Hq} must be a multiple of key heads Hkv = {Hkv}")
    if T > S:
        raise ValueError(f"q: T = {T} queries exceed S = {S} keys (need S >= T)")
    return q, key, value


def _gated_softmax_attention(q, key, value, allowed, gate, scale):
    """o = sum_j softmax_{allowed}(scale q.k_j) * gate_j * v_j for one query.

    q [D], key [S, D], value [S, Dv], allowed [S] bool, gate [S]. An empty
    allowed set gives 0.
    """
    if not allowed.any():
        return np.zeros(value.shape[1])
    s = scale * (key[allowed] @ q)
    e = np.exp(s - s.max())
    a = e / e.sum()
    return (a * gate[allowed]) @ value[allowed]


def _check_selection(q, key, value, indices, gates, w, scale):
    q, key, value = _check_qkv(q, key, value)
    B, Hq, T, D = q.shape
    Hkv = key.shape[1]
    indices = _as_index(indices, "indices", 4)
    gates = _as_float(gates, "gates", 4)
    K = indices.shape[3]
    if indices.shape != (B, Hkv, T, K):
        raise ValueError(f"indices: expected [{B}, {Hkv}, {T}, K], got {indices.shape}")
    if gates.shape != indices.shape:
        raise ValueError(f"gates: expected indices' shape {indices.shape}, got {gates.shape}")
    _, w = _check_k_w(K, w)
    return q, key, value, indices, gates, w, _check_scale(scale, D)


def _attended_sets(indices, gates, w, S):
    """Dense per-query view of Win(t) U Sel(t) for every (b, h, t).

    Returns allowed [B, Hkv, T, S] bool, gate [B, Hkv, T, S] and entry
    [B, Hkv, T, S] (which slot of indices holds a selected position, -1 for
    window and unattended positions; the backward pass scatters dgates by it).
    A selection is a set: repeated positions have no meaning, so they are
    rejected rather than silently merged.
    """
    B, Hkv, T, K = indices.shape
    allowed = np.zeros((B, Hkv, T, S), dtype=bool)
    gate = np.zeros((B, Hkv, T, S))
    entry = np.full((B, Hkv, T, S), -1, dtype=np.int64)
    for t in range(T):
        pos = S - T + t
        lo = max(0, pos - w + 1)
        allowed[:, :, t, lo : pos + 1] = True
        gate[:, :, t, lo : pos + 1] = 1.0
        for b in range(B):
            for h in range(Hkv):
                idx = indices[b, h, t]
                keep = np.nonzero((idx >= 0) & (idx <= pos - w))[0]
                chosen = idx[keep]
                if np.unique(chosen).size != chosen.size:
                    raise ValueError(f"indices: repeated position at batch {b}, head {h}, query {t}")
                allowed[b, h, t, chosen] = True
                gate[b, h, t, chosen] = gates[b, h, t, keep]
                entry[b, h, t, chosen] = keep
    return allowed, gate, entry


def attention(q, key, value, indices, gates, w, scale=None):
    """SparseK attention over Win(t) U Sel(t) given a materialized selection.

    q [B, Hq, T, D]; key [B, Hkv, S, D]; value [B, Hkv, S, Dv];
    indices, gates [B, Hkv, T, K]. Query head hq uses KV head hq // G.
    Index entries < 0 are padding; entries outside 0..pos(t) - w (which would
    overlap the window or the future) are ignored. Window gates are 1.
    """
    q, key, value, indices, gates, w, scale = _check_selection(q, key, value, indices, gates, w, scale)
    B, Hq, T, _ = q.shape
    Hkv, S = key.shape[1], key.shape[2]
    G = Hq // Hkv
    allowed, gate, _ = _attended_sets(indices, gates, w, S)
    o = np.zeros((B, Hq, T, value.shape[3]))
    for b in range(B):
        for hq in range(Hq):
            h = hq // G
            for t in range(T):
                o[b, hq, t] = _gated_softmax_attention(
                    q[b, hq, t], key[b, h], value[b, h], allowed[b, h, t], gate[b, h, t], scale
                )
    return o


def attention_vjp(q, key, value, indices, gates, w, do, scale=None):
    """SPEC 5 backward of attention(): (dq, dkey, dvalue, dgates) given do = dL/do.

    dgates has the shape of gates; padding and ignored entries get 0.
    """
    q, key, value, indices, gates, w, scale = _check_selection(q, key, value, indices, gates, w, scale)
    B, Hq, T, _ = q.shape
    Hkv, S, Dv = key.shape[1], key.shape[2], value.shape[3]
    do = _as_float(do, "do", 4)
    if do.shape != (B, Hq, T, Dv):
        raise ValueError(f"do: expected the output's shape {(B, Hq, T, Dv)}, got {do.shape}")
    G = Hq // Hkv
    allowed, gate, entry = _attended_sets(indices, gates, w, S)
    dq, dkey, dvalue = np.zeros_like(q), np.zeros_like(key), np.zeros_like(value)
    dgates = np.zeros_like(gates)
    for b in range(B):
        for hq in range(Hq):
            h = hq // G
            for t in range(T):
                J = np.nonzero(allowed[b, h, t])[0]
                if J.size == 0:
                    continue
                g, kJ, vJ, dot = gate[b, h, t, J], key[b, h, J], value[b, h, J], do[b, hq, t]
                s = scale * (kJ @ q[b, hq, t])
                a = np.exp(s - s.max())
                a /= a.sum()
                dP = g * (vJ @ dot)  # <do, vt(t, j)> with vt = g * value
                ds = a * (dP - a @ dP)
                dq[b, hq, t] = scale * (ds @ kJ)
                dkey[b, h, J] += scale * np.outer(ds, q[b, hq, t])
                dvalue[b, h, J] += np.outer(a * g, dot)
                slots = entry[b, h, t, J]
                sel = slots >= 0  # window keys have fixed gates
                dgates[b, h, t, slots[sel]] += (a * (vJ @ dot))[sel]
    return dq, dkey, dvalue, dgates


def sparsek_attention(q, key, value, u, k, w, scale=None):
    """The composite layer (SPEC 7): select(u, k, w) then attention."""
    q, key, value = _check_qkv(q, key, value)
    u = _as_float(u, "u", 3)
    B, Hkv, S = key.shape[0], key.shape[1], key.shape[2]
    if u.shape != (B, Hkv, S):
        raise ValueError(f"u: expected [{B}, {Hkv}, {S}] to match key, got {u.shape}")
    indices, gates, _ = select(u, k, w, T=q.shape[2])
    return attention(q, key, value, indices, gates, w, scale)


def sparsek_attention_vjp(q, key, value, u, k, w, do, scale=None):
    """SPEC 5 backward of sparsek_attention(): (dq, dkey, dvalue, du).

    du[h, j] = sum_t [j in Supp(t)] (dg(t, j) - mean_{l in Supp(t)} dg(t, l)),
    with Supp(t) the candidates with 0 < p < 1 and dg = 0 for support
    entries truncated out of Sel(t): the SPARSEK VJP of each query's
    candidate row, with the gate gradients scattered into it.
    """
    q, key, value = _check_qkv(q, key, value)
    u = _as_float(u, "u", 3)
    B, Hkv, S = key.shape[0], key.shape[1], key.shape[2]
    if u.shape != (B, Hkv, S):
        raise ValueError(f"u: expected [{B}, {Hkv}, {S}] to match key, got {u.shape}")
    T = q.shape[2]
    indices, gates, tau = select(u, k, w, T=T)
    dq, dkey, dvalue, dgates = attention_vjp(q, key, value, indices, gates, w, do, scale)
    du = np.zeros_like(u)
    for b in range(B):
        for h in range(Hkv):
            for t in range(T):
                candidates = np.arange(0, max(S - T + t - w + 1, 0))
                candidates = candidates[u[b, h, candidates] > -np.inf]
                p = _clip_gate(u[b, h, candidates], tau[b, h, t])
                dg = np.zeros(candidates.size)
                chosen = indices[b, h, t] >= 0
                dg[np.searchsorted(candidates, indices[b, h, t, chosen])] = dgates[b, h, t, chosen]
                du[b, h, candidates] += sparsek_mask_vjp(p, dg)
    return dq, dkey, dvalue, du


def score_vjp(x, wsc, du, offset=0):
    """Backward of score(): (dx, dwsc, dbias, dslope) given du = dL/du [B, Hkv, T]."""
    x = _as_float(x, "x", 3)
    wsc = _as_float(wsc, "wsc", 2)
    du = _as_float(du, "du", 3)
    B, T, C = x.shape
    Hkv = wsc.shape[0]
    if wsc.shape[1] != C:
        raise ValueError(f"wsc: expected [Hkv, {C}] to match x's width, got {wsc.shape}")
    if du.shape != (B, Hkv, T):
        raise ValueError(f"du: expected [{B}, {Hkv}, {T}], got {du.shape}")
    offset = _as_count(offset, "offset")
    positions = offset + np.arange(T, dtype=np.float64)
    dx = np.einsum("bht,hc->btc", du, wsc)
    dwsc = np.einsum("bht,btc->hc", du, x)
    return dx, dwsc, du.sum(axis=(0, 2)), (du * positions).sum(axis=(0, 2))


def dense_causal_attention(q, key, value, scale=None):
    """Plain softmax attention, query t seeing keys 0..pos(t) (lower right), GQA.

    Written independently of attention() on purpose: it is what k >= S must
    reproduce.
    """
    q, key, value = _check_qkv(q, key, value)
    B, Hq, T, D = q.shape
    Hkv, S = key.shape[1], key.shape[2]
    scale = _check_scale(scale, D)
    G = Hq // Hkv
    kr = np.repeat(key, G, axis=1)
    vr = np.repeat(value, G, axis=1)
    s = scale * np.einsum("bhtd,bhsd->bhts", q, kr)
    visible = np.arange(S)[None, :] <= (S - T + np.arange(T))[:, None]
    s = np.where(visible, s, -np.inf)
    a = np.exp(s - s.max(axis=-1, keepdims=True))
    a = a / a.sum(axis=-1, keepdims=True)
    return np.einsum("bhts,bhsv->bhtv", a, vr)


# ----------------------------------------------------------------------------
# SPEC 6: incremental decoding.
# ----------------------------------------------------------------------------


class DecodeSlots(NamedTuple):
    """One sequence's cache in the runtime's slot layout (see decode_attention).

    kslots [Hkv, k + w, D], vslots [Hkv, k + w, Dv], slot_scores [Hkv, k + w],
    slot_pos [Hkv, k + w] (absolute positions, -1 for empty slots),
    tau [Hkv], pool_count [Hkv], pos (position of the last appended token).
    Empty slots hold zeros and score -inf.
    """

    kslots: np.ndarray
    vslots: np.ndarray
    slot_scores: np.ndarray
    slot_pos: np.ndarray
    tau: np.ndarray
    pool_count: np.ndarray
    pos: int


class _Entry(NamedTuple):
    pos: int
    score: float
    key: np.ndarray
    value: np.ndarray


class DecodeCache:
    """A pure-numpy model of the SPEC 6 KV cache for one sequence.

    Per KV head: a window ring of the last w tokens, a pool of at most k
    selected tokens (a new candidate replaces the weakest pool entry in its
    slot, as a runtime would), and tau.

    With capacity=None (the reference) it keeps every candidate score and
    solves tau over all of them. With an integer capacity it follows the
    runtime procedure of SPEC 6 instead: solve tau over the kept scores plus
    the newcomer, drop every score at or below it, and if more than capacity
    remain keep the highest ones and set `tau_approximate` (tau is then a
    lower bound, sticky for the sequence). Without overflow both modes give
    the same tau up to rounding. `live_scores(h)` is the kept scalar state.
    """

    def __init__(self, num_kv_heads, k, w, capacity=None):
        self.num_kv_heads = _as_count(num_kv_heads, "num_kv_heads")
        if self.num_kv_heads == 0:
            raise ValueError("num_kv_heads: must be >= 1")
        self.k, self.w = _check_k_w(k, w)
        if capacity is not None and _as_count(capacity, "capacity") < self.k:
            raise ValueError(f"capacity: must be >= k = {self.k} to hold the pool's scores, got {capacity}")
        self.capacity = capacity
        self.tau_approximate = False
        self.length = 0  # tokens appended so far; the last one is at length - 1
        self._window = [[] for _ in range(self.num_kv_heads)]  # oldest first
        self._pool = [[] for _ in range(self.num_kv_heads)]  # slot order
        self._candidate_scores = [[] for _ in range(self.num_kv_heads)]
        self.tau = np.full(self.num_kv_heads, math.inf if self.k == 0 else -math.inf)
        self._dims = None

    def append(self, k_vec, v_vec, scores):
        """Append the token at position self.length: k_vec [Hkv, D], v_vec [Hkv, Dv], scores [Hkv]."""
        Hkv = self.num_kv_heads
        k_vec = _as_float(k_vec, "k_vec", 2)
        v_vec = _as_float(v_vec, "v_vec", 2)
        scores = _as_float(scores, "scores", 1)
        if k_vec.shape[0] != Hkv:
            raise ValueError(f"k_vec: expected [{Hkv}, D], got {k_vec.shape}")
        if v_vec.shape[0] != Hkv:
            raise ValueError(f"v_vec: expected [{Hkv}, Dv], got {v_vec.shape}")
        if scores.shape != (Hkv,):
            raise ValueError(f"scores: expected shape ({Hkv},), got {scores.shape}")
        if self._dims is None:
            self._dims = (k_vec.shape[1], v_vec.shape[1])
        elif (k_vec.shape[1], v_vec.shape[1]) != self._dims:
            raise ValueError(
                f"k_vec/v_vec: head dims {k_vec.shape[1]}, {v_vec.shape[1]} differ from earlier {self._dims}"
            )
        _check_scores(scores, "scores")
        p = self.length
        for h in range(Hkv):
            self._window[h].append(_Entry(p, float(scores[h]), k_vec[h].copy(), v_vec[h].copy()))
            if len(self._window[h]) > self.w:
                # The token at p - w leaves the window and becomes a candidate.
                self._admit(h, self._window[h].pop(0))
        self.length += 1

    def _admit(self, h, entry):
        if entry.score == -math.inf:
            return  # masked keys are never candidates
        scores = self._candidate_scores[h]
        scores.append(entry.score)
        self.tau[h] = sparsek_tau(np.array(scores), self.k)
        if self.capacity is not None:
            # Scores at or below tau never return (monotonicity), so only the
            # ones above it stay; what overflows is lost and tau can only be
            # underestimated from then on.
            scores[:] = [s for s in scores if s > self.tau[h]]
            if len(scores) > self.capacity:
                scores[:] = sorted(scores, reverse=True)[: self.capacity]
                self.tau_approximate = True
        pool = self._pool[h]
        if len(pool) < self.k:
            pool.append(entry)
            return
        if self.k == 0:
            return
        # Weakest: lowest score, then the larger position. The newcomer has
        # the largest position so far, so it must score strictly higher.
        weakest = min(range(len(pool)), key=lambda i: (pool[i].score, -pool[i].pos))
        if entry.score > pool[weakest].score:
            pool[weakest] = entry

    def live_scores(self, h):
        """Candidate scores strictly above tau, descending: the scalar state SPEC 6 keeps."""
        return sorted((s for s in self._candidate_scores[h] if s > self.tau[h]), reverse=True)

    def pool_positions(self, h):
        """Positions in the pool of head h, sorted ascending (= Sel of the last query)."""
        return sorted(e.pos for e in self._pool[h])

    def decode(self, q, scale=None):
        """Attention output [Hq, Dv] for query q [Hq, D] at the last appended position."""
        if self.length == 0:
            raise ValueError("decode: the cache is empty (append a token first)")
        D, Dv = self._dims
        q = _as_float(q, "q", 2)
        Hq = q.shape[0]
        if q.shape[1] != D or Hq % self.num_kv_heads != 0:
            raise ValueError(f"q: expected [Hq, {D}] with Hq a multiple of {self.num_kv_heads}, got {q.shape}")
        scale = _check_scale(scale, D)
        G = Hq // self.num_kv_heads
        o = np.zeros((Hq, Dv))
        for hq in range(Hq):
            h = hq // G
            entries = [(e, 1.0) for e in self._window[h]]
            entries += [(e, float(_clip_gate(np.float64(e.score), self.tau[h]))) for e in self._pool[h]]
            if not entries:
                continue
            s = np.array([scale * float(q[hq] @ e.key) for e, _ in entries])
            a = np.exp(s - s.max())
            a /= a.sum()
            for (e, g), aj in zip(entries, a):
                o[hq] += aj * g * e.value
        return o

    def slots(self):
        """Export the cache in the runtime's slot layout (a DecodeSlots)."""
        if self.length == 0:
            raise ValueError("slots: the cache is empty (append a token first)")
        D, Dv = self._dims
        Hkv, k, w = self.num_kv_heads, self.k, self.w
        kslots = np.zeros((Hkv, k + w, D))
        vslots = np.zeros((Hkv, k + w, Dv))
        slot_scores = np.full((Hkv, k + w), -math.inf)
        slot_pos = np.full((Hkv, k + w), -1, dtype=np.int64)
        pool_count = np.zeros(Hkv, dtype=np.int64)
        for h in range(Hkv):
            placed = [(i, e) for i, e in enumerate(self._pool[h])]
            placed += [(k + e.pos % w, e) for e in self._window[h]]  # ring: token p in slot k + p mod w
            for slot, e in placed:
                kslots[h, slot] = e.key
                vslots[h, slot] = e.value
                slot_scores[h, slot] = e.score
                slot_pos[h, slot] = e.pos
            pool_count[h] = len(self._pool[h])
        return DecodeSlots(kslots, vslots, slot_scores, slot_pos, self.tau.copy(), pool_count, self.length - 1)


def decode_attention(q, kslots, vslots, slot_scores, tau, pool_count, pos, k, w, scale=None):
    """Decode attention on the runtime's slot layout (SPEC 6).

    q [B, Hq, D]; kslots [B, Hkv, k + w, D]; vslots [B, Hkv, k + w, Dv];
    slot_scores [B, Hkv, k + w]; tau [B, Hkv]; pool_count [B, Hkv] int;
    pos [B] int, the position of the query (the token just appended).
    Slots [0, pool_count) hold the pool, gate clip(score - tau, 0, 1); slots
    [k, k + w) are the window ring, token p in slot k + (p mod w), gate 1,
    valid for p in max(0, pos - w + 1)..pos. Returns o [B, Hq, Dv].
    """
    k, w = _check_k_w(k, w)
    q = _as_float(q, "q", 3)
    kslots = _as_float(kslots, "kslots", 4)
    vslots = _as_float(vslots, "vslots", 4)
    slot_scores = _as_float(slot_scores, "slot_scores", 3)
    tau = _as_float(tau, "tau", 2)
    pool_count = _as_index(pool_count, "pool_count", 2)
    pos = _as_index(pos, "pos", 1)
    B, Hq, D = q.shape
    Hkv = kslots.shape[1]
    if kslots.shape != (B, Hkv, k + w, D):
        raise ValueError(f"kslots: expected [{B}, Hkv, {k + w}, {D}], got {kslots.shape}")
    if vslots.shape[:3] != (B, Hkv, k + w):
        raise ValueError(f"vslots: expected [{B}, {Hkv}, {k + w}, Dv], got {vslots.shape}")
    if slot_scores.shape != (B, Hkv, k + w):
        raise ValueError(f"slot_scores: expected [{B}, {Hkv}, {k + w}], got {slot_scores.shape}")
    if tau.shape != (B, Hkv):
        raise ValueError(f"tau: expected [{B}, {Hkv}], got {tau.shape}")
    if pool_count.shape != (B, Hkv) or (pool_count < 0).any() or (pool_count > k).any():
        raise ValueError(f"pool_count: expected [{B}, {Hkv}] with values in 0..{k}")
    if pos.shape != (B,) or (pos < 0).any():
        raise ValueError(f"pos: expected [{B}] non-negative positions, got {pos}")
    if Hq % Hkv != 0:
        raise ValueError(f"q: query heads Hq = {Hq} must be a multiple of key heads Hkv = {Hkv}")
    if np.isnan(tau).any():
        raise ValueError("tau: contains NaN")
    scale = _check_scale(scale, D)
    G = Hq // Hkv

    o = np.zeros((B, Hq, vslots.shape[3]))
    for b in range(B):
        p = int(pos[b])
        window_slots = [k + j % w for j in range(max(0, p - w + 1), p + 1)]
        for h in range(Hkv):
            n = int(pool_count[b, h])
            pool_scores = slot_scores[b, h, :n]
            _check_scores(pool_scores, "slot_scores (pool)")
            allowed = np.zeros(k + w, dtype=bool)
            gate = np.zeros(k + w)
            allowed[:n] = True
            gate[:n] = _clip_gate(pool_scores, tau[b, h])
            allowed[window_slots] = True
            gate[window_slots] = 1.0
            for hq in range(h * G, (h + 1) * G):
                o[b, hq] = _gated_softmax_attention(q[b, hq], kslots[b, h], vslots[b, h], allowed, gate, scale)
    return o
