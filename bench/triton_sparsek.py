# A Triton SparseK forward kernel (SPEC 5) with explicit indices and gates:
# the baseline a researcher would write instead of our compiler. Also the
# torch selection used to feed it (and timed as the S1 baseline).
"""Triton SparseK attention forward + torch selection (bench baselines).

attention(q, key, value, indices, gates, w): q [B, Hq, T, D], key/value
[B, Hkv, S, D] (bf16 or f16), indices [B, Hkv, T, K] int32 (positions sorted
ascending, padded with -1: SPEC 4's materialized selection), gates [B, Hkv,
T, K] float32. Softmax over Win(t) U Sel(t); gates scale the values and are
not renormalized; f32 accumulation; output in q's dtype.

Design: scores are per KV head, so the G query heads of a group share Sel(t).
One program per (batch, KV head, query t) loads the G query rows as the M
side of the tile (padded to 16 for tl.dot), gathers BLOCK_N selected K/V rows
by index per step, then walks the window span with contiguous loads, all
with one online softmax in f32 registers (NSA-style selected attention).
With explicit per-query indices the key set differs per query, so a query
block shares no tiles; GQA is what is shared.

select_torch(u, k, w, T): the obvious torch selection: per chunk of query
rows, mask u to each query's candidates, torch.topk, SPARSEK tau by
bisection in float64 over the top candidates, gates, indices sorted.

Check: python3 bench/triton_sparsek.py (small shapes against
sparsek.reference, needs a GPU or TRITON_INTERPRET=1).
"""

import math
import os
import sys

import torch
import triton
import triton.language as tl


@triton.jit
def _sparsek_fwd_kernel(Q, K, V, I, Gt, O,
                        sqb, sqh, sqt, skb, skh, sks, svb, svh, svs, sib, sih, sit,
                        sgb, sgh, sgt, sob, soh, sot,
                        HKV, T, S, NSEL, W, qk_scale,
                        G: tl.constexpr, M: tl.constexpr, D: tl.constexpr,
                        BLOCK_N: tl.constexpr):
    t = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // HKV
    h = bh % HKV
    pos = S - T + t  # absolute position of query t (SPEC 1)

    rows = tl.arange(0, M)          # query heads of the group, padded to M
    row_ok = rows < G
    d = tl.arange(0, D)
    hq = h * G + rows
    q_ptrs = Q + b * sqb + hq[:, None] * sqh + t * sqt + d[None, :]
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)

    m_i = tl.full([M], -1.0e30, tl.float32)
    l_i = tl.zeros([M], tl.float32)
    acc = tl.zeros([M, D], tl.float32)

    kbase = K + b * skb + h * skh
    vbase = V + b * svb + h * svh
    n = tl.arange(0, BLOCK_N)

    # Selected keys: indices sorted ascending, padding (-1) at the end. Only
    # entries in 0 .. pos - w count (SPEC 5 / the reference ignores others).
    last_cand = pos - W
    n_sel = tl.minimum(NSEL, tl.maximum(last_cand + 1, 0))
    ibase = I + b * sib + h * sih + t * sit
    gbase = Gt + b * sgb + h * sgh + t * sgt
    for n0 in range(0, n_sel, BLOCK_N):
        slot = n0 + n
        in_range = slot < n_sel
        idx = tl.load(ibase + slot, mask=in_range, other=-1)
        ok = in_range & (idx >= 0) & (idx <= last_cand)
        g = tl.load(gbase + slot, mask=ok, other=0.0)
        idx = tl.where(ok, idx, 0)
        kt = tl.load(kbase + idx[:, None].to(tl.int64) * sks + d[None, :], mask=ok[:, None], other=0.0)
        vt = tl.load(vbase + idx[:, None].to(tl.int64) * svs + d[None, :], mask=ok[:, None], other=0.0)
        s = tl.dot(q, tl.trans(kt)) * qk_scale  # log2 domain
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        pg = p * g[None, :]  # gates scale the values, not the softmax
        acc = acc * alpha[:, None] + tl.dot(pg.to(vt.dtype), vt)
        m_i = m_new

    # Window keys: the contiguous span max(0, pos - w + 1) .. pos, gate 1.
    lo = tl.maximum(pos - W + 1, 0)
    hi = pos + 1
    for j0 in range(lo, hi, BLOCK_N):
        j = j0 + n
        ok = j < hi
        kt = tl.load(kbase + j[:, None].to(tl.int64) * sks + d[None, :], mask=ok[:, None], other=0.0)
        vt = tl.load(vbase + j[:, None].to(tl.int64) * svs + d[None, :], mask=ok[:, None], other=0.0)
        s = tl.dot(q, tl.trans(kt)) * qk_scale
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(vt.dtype), vt)
        m_i = m_new

    out = tl.where(l_i[:, None] > 0, acc / tl.maximum(l_i, 1e-30)[:, None], 0.0)
    o_ptrs = O + b * sob + hq[:, None] * soh + t * sot + d[None, :]
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None])


DEFAULT_CONFIG = {"BLOCK_N": 64, "num_warps": 4, "num_stages": 2}
CONFIGS = [
    {"BLOCK_N": 64, "num_warps": 4, "num_stages": 2},
    {"BLOCK_N": 32, "num_warps": 4, "num_stages": 3},
    {"BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
]


def attention(q, key, value, indices, gates, w, scale=None, out=None, config=None):
    """SparseK attention forward (SPEC 5) on CUDA tensors; see the module doc."""
    B, Hq, T, D = q.shape
    Hkv, S = key.shape[1], key.shape[2]
    assert key.shape == (B, Hkv, S, D) and value.shape == (B, Hkv, S, D), "Dv = D only"
    assert Hq % Hkv == 0 and T <= S
    assert indices.shape[:3] == (B, Hkv, T) and gates.shape == indices.shape
    assert indices.dtype == torch.int32 and gates.dtype == torch.float32
    for x in (q, key, value, indices, gates):
        assert x.stride(-1) == 1
    G = Hq // Hkv
    M = max(16, triton.next_power_of_2(G))
    cfg = dict(DEFAULT_CONFIG if config is None else config)
    block_n = cfg.pop("BLOCK_N")
    if out is None:
        out = torch.empty_like(q)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    grid = (T, B * Hkv)
    _sparsek_fwd_kernel[grid](
        q, key, value, indices, gates, out,
        q.stride(0), q.stride(1), q.stride(2), key.stride(0), key.stride(1), key.stride(2),
        value.stride(0), value.stride(1), value.stride(2),
        indices.stride(0), indices.stride(1), indices.stride(2),
        gates.stride(0), gates.stride(1), gates.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        Hkv, T, S, indices.shape[3], w, scale * 1.4426950408889634,
        G=G, M=M, D=D, BLOCK_N=block_n, **cfg)
    return out


# ----------------------------------------------------------------------------
# Block variant: FlashAttention-style per (batch, KV head, query block).
# ----------------------------------------------------------------------------
# Scores do not depend on the query, so for a block of BT queries t0..t1 every
# Sel(t) lies in Sel(t0) U (c0, c1], c0 = pos(t0) - w, c1 = pos(t1) - w
# (DESIGN.md). A torch preprocessing step (block_gates) turns the explicit
# per-query (indices, gates) into that union list per block plus a dense
# [T, k + BT] gate row per query (-1 = not selected). The kernel then runs
# M = BT x G rows (all query heads of the group, BT queries) over shared K/V
# tiles: the union, then the window span, one online softmax.


@triton.jit
def _tile(acc, m_i, l_i, q, kbase, vbase, sks, svs, kpos, key_ok, member, gate, d, qk_scale):
    kt = tl.load(kbase + kpos[:, None].to(tl.int64) * sks + d[None, :], mask=key_ok[:, None], other=0.0)
    vt = tl.load(vbase + kpos[:, None].to(tl.int64) * svs + d[None, :], mask=key_ok[:, None], other=0.0)
    s = tl.dot(q, tl.trans(kt)) * qk_scale
    s = tl.where(member, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.math.exp2(m_i - m_new)
    p = tl.math.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot((p * gate).to(vt.dtype), vt)
    return acc, m_new, l_i


@triton.jit
def _sparsek_block_kernel(Q, K, V, U, GD, O,
                          sqb, sqh, sqt, skb, skh, sks, svb, svh, svs, sub, suh, sun,
                          sgb, sgh, sgt, sob, soh, sot,
                          HKV, T, S, NSEL, W, qk_scale,
                          G: tl.constexpr, BT: tl.constexpr, M: tl.constexpr, D: tl.constexpr,
                          BLOCK_N: tl.constexpr):
    # M = BT * G rows: row r is query t0 + r // G of query head h * G + r % G
    blk = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // HKV
    h = bh % HKV
    t0 = blk * BT
    r = tl.arange(0, M)
    tr = t0 + r // G                 # query of row r
    hq = h * G + r % G               # query head of row r
    row_ok = tr < T
    posr = S - T + tr                # absolute positions per row
    d = tl.arange(0, D)
    q = tl.load(Q + b * sqb + hq[:, None] * sqh + tr[:, None] * sqt + d[None, :], mask=row_ok[:, None], other=0.0)
    m_i = tl.full([M], -1.0e30, tl.float32)
    l_i = tl.zeros([M], tl.float32)
    acc = tl.zeros([M, D], tl.float32)
    kbase = K + b * skb + h * skh
    vbase = V + b * svb + h * svh
    ubase = U + b * sub + h * suh + blk * sun
    gbase = GD + b * sgb + h * sgh
    n = tl.arange(0, BLOCK_N)
    c0 = S - T + t0 - W
    n_base = tl.minimum(NSEL, tl.maximum(c0 + 1, 0))
    # Sel(t0): union slots 0 .. n_base
    for n0 in range(0, n_base, BLOCK_N):
        slot = n0 + n
        in_range = slot < n_base
        kpos = tl.load(ubase + slot, mask=in_range, other=-1)
        key_ok = in_range & (kpos >= 0) & (kpos < S)
        gd = tl.load(gbase + tr[:, None] * sgt + slot[None, :], mask=row_ok[:, None] & key_ok[None, :], other=-1.0)
        member = gd >= 0
        acc, m_i, l_i = _tile(acc, m_i, l_i, q, kbase, vbase, sks, svs, tl.where(key_ok, kpos, 0), key_ok,
                              member, tl.maximum(gd, 0.0), d, qk_scale)
    # (c0, c0 + BT]: union slots NSEL .. NSEL + BT, contiguous positions
    for n0 in range(0, BT, BLOCK_N):
        m = n0 + n
        kpos = c0 + 1 + m
        key_ok = (m < BT) & (kpos >= 0) & (kpos < S)
        gd = tl.load(gbase + tr[:, None] * sgt + (NSEL + m)[None, :], mask=row_ok[:, None] & key_ok[None, :],
                     other=-1.0)
        member = gd >= 0
        acc, m_i, l_i = _tile(acc, m_i, l_i, q, kbase, vbase, sks, svs, tl.where(key_ok, kpos, 0), key_ok,
                              member, tl.maximum(gd, 0.0), d, qk_scale)
    # Window: keys pos(t0) - w + 1 .. pos(t_last), per-row mask
    t_last = tl.minimum(t0 + BT, T) - 1
    lo = tl.maximum(S - T + t0 - W + 1, 0)
    hi = S - T + t_last + 1
    ones = tl.full([M, BLOCK_N], 1.0, tl.float32)
    for j0 in range(lo, hi, BLOCK_N):
        j = j0 + n
        key_ok = j < hi
        member = row_ok[:, None] & key_ok[None, :] & (j[None, :] <= posr[:, None]) & \
            (j[None, :] > posr[:, None] - W)
        acc, m_i, l_i = _tile(acc, m_i, l_i, q, kbase, vbase, sks, svs, tl.where(key_ok, j, 0), key_ok,
                              member, ones, d, qk_scale)
    out = tl.where(l_i[:, None] > 0, acc / tl.maximum(l_i, 1e-30)[:, None], 0.0)
    tl.store(O + b * sob + hq[:, None] * soh + tr[:, None] * sot + d[None, :], out.to(O.dtype.element_ty),
             mask=row_ok[:, None])


BLOCK_CONFIGS = [
    {"block_n": 64, "num_warps": 4, "num_stages": 2},
    {"block_n": 64, "num_warps": 8, "num_stages": 2},
    {"block_n": 32, "num_warps": 4, "num_stages": 3},
]


def block_rows(G, rows=64):
    """Queries per block so that BT x G = rows (G a power of two <= rows)."""
    assert G & (G - 1) == 0 and G <= rows, "block variant: G must be a power of two <= 64"
    return rows // G


def block_gates(indices, gates, w, S, BT):
    """Preprocessing of the block variant: the union list of every query
    block (Sel(t0), padded with -1) and dense per-query gates over the union
    slots [0, K) (Sel(t0)) and [K, K + BT) (positions c0 + 1 ...), -1 where
    the key is not selected for that query. Returns (union [B, Hkv, nb, K],
    dense [B, Hkv, T, K + BT + 1], misses): misses counts selected keys that
    fall outside the union (0 for a SPEC 4 selection)."""
    B, H, T, K = indices.shape
    dev = indices.device
    t = torch.arange(T, device=dev)
    t0 = (t // BT) * BT
    pos = S - T + t
    c0 = (S - T + t0) - w
    union = indices[:, :, ::BT].contiguous()                      # [B, H, nb, K]
    base = torch.where(union < 0, torch.iinfo(torch.int32).max, union)
    base = base.repeat_interleave(BT, dim=2)[:, :, :T].contiguous()
    j = indices
    valid = (j >= 0) & (j <= (pos - w)[:, None])
    in_base = j <= c0[:, None]
    sb = torch.searchsorted(base, j.contiguous(), out_int32=True).clamp_(max=K - 1)
    found = torch.gather(base, 3, sb.long()) == j
    misses = int((valid & in_base & ~found).sum()) + int((valid & ~in_base & (j > (c0 + BT)[:, None])).sum())
    slot = torch.where(in_base, sb, (K + (j - c0[:, None] - 1)).to(torch.int32))
    slot = torch.where(valid & (~in_base | found), slot, K + BT)  # dump column
    dense = torch.full((B, H, T, K + BT + 1), -1.0, dtype=torch.float32, device=dev)
    dense.scatter_(3, slot.long(), torch.where(valid, gates, -1.0))
    del base, sb, found, slot
    return union, dense, misses


def attention_block(q, key, value, indices, gates, w, scale=None, out=None, prep=None, block_n=64,
                    num_warps=4, num_stages=2):
    """SparseK forward, block variant (see above). `prep` = block_gates(...)
    may be passed to time the kernel alone."""
    B, Hq, T, D = q.shape
    Hkv, S = key.shape[1], key.shape[2]
    G = Hq // Hkv
    BT = block_rows(G)
    K = indices.shape[3]
    if prep is None:
        prep = block_gates(indices, gates, w, S, BT)
    union, dense, _ = prep
    if out is None:
        out = torch.empty_like(q)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    grid = (triton.cdiv(T, BT), B * Hkv)
    _sparsek_block_kernel[grid](
        q, key, value, union, dense, out,
        q.stride(0), q.stride(1), q.stride(2), key.stride(0), key.stride(1), key.stride(2),
        value.stride(0), value.stride(1), value.stride(2), union.stride(0), union.stride(1), union.stride(2),
        dense.stride(0), dense.stride(1), dense.stride(2), out.stride(0), out.stride(1), out.stride(2),
        Hkv, T, S, K, w, scale * 1.4426950408889634,
        G=G, BT=BT, M=BT * G, D=D, BLOCK_N=block_n, num_warps=num_warps, num_stages=num_stages)
    return out


# ----------------------------------------------------------------------------
# Selection baseline: torch.topk over masked score rows.
# ----------------------------------------------------------------------------


def _tau_bisect(vals, k, iters=48):
    """SPARSEK tau (SPEC 3) of each row of vals [R, M] (float64, sorted
    descending, -inf for masked), given that every entry above tau is in the
    row. Bisection on f(tau) = sum clip(v - tau, 0, 1) = k over
    [v_k - 1, v_k] (f(v_k - 1) >= k > f(v_k)), then the exact solve on the
    linear piece found. Rows with <= k finite entries get -inf."""
    vk = vals[:, k - 1]
    lo = vk - 1.0
    hi = vk.clone()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        f = (vals - mid[:, None]).clamp_(0.0, 1.0).sum(1)
        big = f >= k
        lo = torch.where(big, mid, lo)
        hi = torch.where(big, hi, mid)
    tau = lo
    # Exact solve on the piece: U entries at 1, W - U in (0, 1).
    U = (vals >= tau[:, None] + 1.0).sum(1)
    inside = (vals > tau[:, None]) & (vals < tau[:, None] + 1.0)
    Wn = inside.sum(1)
    ssum = torch.where(inside, vals, torch.zeros((), dtype=vals.dtype, device=vals.device)).sum(1)
    exact = (ssum + U - k) / Wn.clamp(min=1)
    tau = torch.where(Wn > 0, exact, vk - 1.0)  # hard case: the largest point, z(k) - 1
    return tau


def select_torch(u, k, w, T=None, chunk=None, extra=4):
    """Causal SparseK selection (SPEC 4) with torch on the GPU.

    u [B, Hkv, S] float32. Returns indices [B, Hkv, T, k] int32 (sorted
    ascending, -1 padded), gates [B, Hkv, T, k] float32, tau [B, Hkv, T]
    float32, and `ok`: whether every row's support fit in the top
    `extra * k` candidates (tau exact); rows where it did not are counted.
    """
    B, Hkv, S = u.shape
    T = S if T is None else T
    dev = u.device
    if chunk is None:
        chunk = max(1, min(T, (1 << 28) // max(1, B * Hkv * S)))  # ~1 GiB of f32 per chunk
    M = min(S, extra * k)
    indices = torch.empty((B, Hkv, T, k), dtype=torch.int32, device=dev)
    gates = torch.empty((B, Hkv, T, k), dtype=torch.float32, device=dev)
    tau_out = torch.empty((B, Hkv, T), dtype=torch.float32, device=dev)
    bad_rows = 0
    j = torch.arange(S, device=dev)
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        pos = (S - T) + torch.arange(t0, t1, device=dev)
        cand = j[None, :] <= (pos - w)[:, None]                       # [C, S]
        z = torch.where(cand[None, None], u[:, :, None, :], float("-inf"))  # [B, Hkv, C, S]
        vals, idx = torch.topk(z, M, dim=-1, sorted=True)
        n = cand.sum(1)                                               # candidates per row
        v64 = vals.reshape(-1, M).double()
        if k < M:
            tau = _tau_bisect(v64, k)
            full = n[None, None, :].expand(B, Hkv, -1).reshape(-1) > M
            # exact only if the support ends inside the kept top M
            bad = full & (v64[:, M - 1] > tau)
            bad_rows += int(bad.sum())
        else:
            tau = torch.full((v64.shape[0],), float("-inf"), dtype=torch.float64, device=dev)
        few = n[None, None, :].expand(B, Hkv, -1).reshape(-1) <= k
        tau = torch.where(few, torch.full_like(tau, float("-inf")), tau)
        top_v, top_i = vals[..., :k], idx[..., :k]
        valid = top_v > float("-inf")
        g = (top_v.double() - tau.view(B, Hkv, -1, 1)).clamp(0.0, 1.0).float()
        key_sort = torch.where(valid, top_i, S + torch.arange(k, device=dev))  # padding last
        key_sort, order = torch.sort(key_sort, dim=-1)
        g = torch.gather(torch.where(valid, g, 0.0), -1, order)
        indices[:, :, t0:t1] = torch.where(key_sort < S, key_sort, -1).to(torch.int32)
        gates[:, :, t0:t1] = g
        tau_out[:, :, t0:t1] = tau.view(B, Hkv, -1).float()
    return indices, gates, tau_out, bad_rows


def topk_only(u, k, w, T=None, chunk=None):
    """Just the masked-row torch.topk of select_torch (k values), no tau, no
    gates, no sort: a lower bound of the obvious selection."""
    B, Hkv, S = u.shape
    T = S if T is None else T
    if chunk is None:
        chunk = max(1, min(T, (1 << 28) // max(1, B * Hkv * S)))
    j = torch.arange(S, device=u.device)
    out = torch.empty((B, Hkv, T, k), dtype=torch.int64, device=u.device)
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        pos = (S - T) + torch.arange(t0, t1, device=u.device)
        cand = j[None, :] <= (pos - w)[:, None]
        z = torch.where(cand[None, None], u[:, :, None, :], float("-inf"))
        out[:, :, t0:t1] = torch.topk(z, k, dim=-1, sorted=False).indices
    return out


def _self_check(dtype=torch.bfloat16):
    """Small shapes against sparsek.reference (float32 reference on the same
    rounded inputs, 2e-2), the selection against reference.select."""
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
    from sparsek import reference

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    worst = 0.0
    for (B, Hq, Hkv, T, S, k, w, D) in [(1, 8, 2, 150, 150, 16, 16, 64), (2, 4, 4, 97, 130, 8, 5, 64),
                                       (1, 4, 1, 70, 70, 4, 100, 128), (1, 2, 2, 64, 64, 8, 0, 64)]:
        g = torch.Generator().manual_seed(T + S)
        q = torch.randn(B, Hq, T, D, generator=g).to(dtype)
        key = torch.randn(B, Hkv, S, D, generator=g).to(dtype)
        value = torch.randn(B, Hkv, S, D, generator=g).to(dtype)
        u = torch.randn(B, Hkv, S, generator=g) * 2
        idx, gates, tau, bad = select_torch(u.to(dev), k, w, T)
        r_idx, r_g, r_tau = reference.select(u.double().numpy(), k, w, T)
        assert bad == 0
        assert np.array_equal(idx.cpu().numpy(), r_idx), "selection indices differ"
        np.testing.assert_allclose(gates.cpu().numpy(), r_g, atol=1e-5)
        want = reference.attention(q.float().numpy(), key.float().numpy(), value.float().numpy(),
                                   r_idx, r_g, w)
        prep = block_gates(idx, gates, w, S, block_rows(Hq // Hkv))
        assert prep[2] == 0, "selected keys outside the block union"
        for variant in (attention, attention_block):
            out = variant(q.to(dev), key.to(dev), value.to(dev), idx, gates, w)
            err = float(np.abs(out.float().cpu().numpy() - want).max())
            worst = max(worst, err)
            assert err <= 2e-2, f"{variant.__name__}: max abs error {err}"
    print(f"triton_sparsek self-check passed ({dtype}, max abs error {worst:.2e})")


if __name__ == "__main__":
    # (the Triton interpreter, TRITON_INTERPRET=1, mishandles bf16: use float16 there)
    _self_check(getattr(torch, sys.argv[1]) if len(sys.argv) > 1 else torch.bfloat16)
