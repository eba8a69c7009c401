#!/usr/bin/env python3
# A CPU model of a proposed GPU selection for short rows (P3: C = S - w candidates per row in
# the thousands), written before the kernel: it checks the algorithm's tau(t) and theta(t)
# against sparsek.reference and counts each warp's serial steps, to size the kernel.
"""Model of a per-row selection kernel: one CTA per (batch, KV head) row, for short rows.

    python3 bench/selection_row_model.py [--T 4096] [--S 4096] [--k 256] [--w 256]
                                         [--rows 2] [--warps 32] [--scores KIND]
                                         [--init-rounds R]

Today's chunked selection (lib/Conversion/SparseKToLoops/ChunkedSelection.h)
takes about 38 launches at P3. The kernel modelled here takes one:

1. The CTA loads the row's candidate scores into workgroup memory and sorts
   them once, descending in SPEC 4's order (u, -j). -inf/NaN go last.
2. Query t sees candidate positions below e(t) = t + S - T - w + 1. The
   queries with e(t) > k are cut into W equal segments of consecutive
   queries, one per warp; the others select every candidate.
3. At its first query with more than k candidates, the warp initializes:
   - theta is the k-th visible entry, found by ballots from the top;
   - it counts U (entries >= theta's score) and sums the band
     (z(k) - 1, z(k)) relative to the anchor z(k);
   - it then walks tau up from z(k) - 1 (step 4's loop), or with
     --init-rounds R from the left end of R bisections of [z(k) - 1, z(k))
     by f evaluations (each a ballot pass over the band).
4. Each later query makes one entry visible (position e(t) - 1):
   - the entry goes into its class: UPPER (z >= tau + 1), MIDDLE or below;
   - theta moves to the next visible entry above it when the new entry
     ranks above theta;
   - tau walks right across breakpoints until the root of f(tau) = k lies
     on the current piece; in SPEC 3's hard case (z(k) - z(k+1) >= 1, decided
     from the scores) to z(k) - 1, the largest point of the flat piece.

Tau never decreases (SPEC 3's monotonicity), so a warp's pointers only move
up the sorted row. Per warp the model counts:
- serial steps: one per query, crossing and pointer move;
- ballots: 32 sorted entries read at once (theta search, the band pass,
  skipping entries not yet visible).
It reports both with the largest error against sparsek.reference.sparsek_tau
and whether theta agrees with reference.select exactly.
"""

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))

from sparsek import reference  # noqa: E402


class Warp:
    """One warp's sweep over the sorted row `z` (descending, SPEC 4 order) whose
    positions are `pos`; `rank[j]` is position j's index in that order."""

    def __init__(self, z, pos, rank, k, rounds=0):
        self.z, self.pos, self.rank, self.k, self.rounds = z, pos, rank, k, rounds
        self.serial = self.ballots = 0
        self.started = False

    def visible(self, i):
        return self.pos[i] < self.e and self.z[i] > -math.inf

    def _above(self, i, stop=0):
        """Largest index < i (and >= stop) of a visible entry, or None; counts the
        32-entry ballots that read the entries skipped."""
        j = i - 1
        while j >= stop and not self.visible(j):
            j -= 1
        self.ballots += max(1, -(-(i - max(j, stop)) // 32))
        return j if j >= stop else None

    def _init(self):
        """theta, the classes at tau = z(k) - 1 (anchored at z(k)), then the walk."""
        z, k = self.z, self.k
        seen, i = 0, 0
        while True:   # the k-th visible entry from the top
            if self.visible(i):
                seen += 1
                if seen == k:
                    break
            i += 1
        self.ballots += i // 32 + 1
        self.theta = i
        self.anchor = float(z[i])
        n = len(z)
        lo = -1.0   # anchored tau: z(k) - 1, where f >= k
        if self.rounds and self._hard() is None:
            # Bisection of [z(k) - 1, z(k)) by f evaluations, each a ballot pass over the
            # band (-1 < a < 1): entries above it add 1, their count known from the theta
            # search (which passes them).
            top = 0
            while top < n and z[top] - self.anchor >= 1.0:
                top += 1
            end = top
            while end < n and z[end] - self.anchor > -1.0:
                end += 1
            vis = np.array([self.visible(j) for j in range(end)], bool)
            a = z[:end] - self.anchor
            hi = 0.0
            for _ in range(self.rounds):
                mid = 0.5 * (lo + hi)
                f = math.fsum(np.clip(a[vis] - mid, 0.0, 1.0))
                self.serial += 1
                self.ballots += -(-(end - top) // 32)
                if f >= self.k:
                    lo = mid
                else:
                    hi = mid
        # The classes at tau = lo: UPPER a >= lo + 1 (at lo = -1 every entry >= z(k), ties of
        # theta's score included), MIDDLE lo < a < lo + 1.
        self.pa = 0
        while self.pa < n and z[self.pa] - self.anchor >= lo + 1.0:
            self.pa += 1
        self.pm = self.pa
        while self.pm < n and z[self.pm] - self.anchor > lo:
            self.pm += 1
        vis = [j for j in range(self.pm) if self.visible(j)]
        self.ballots += -(-self.pm // 32)
        self.upper = sum(1 for j in vis if j < self.pa)
        band = [z[j] - self.anchor for j in vis if j >= self.pa]
        self.mid, self.sum = len(band), math.fsum(band)
        self.tau = lo
        self.started = True
        self._walk()

    def _below(self, i):
        """Smallest index > i of a visible entry, or None (counting ballots as _above)."""
        j, n = i + 1, len(self.z)
        while j < n and not self.visible(j):
            j += 1
        self.ballots += max(1, -(-(j - i) // 32))
        return j if j < n else None

    def _hard(self):
        """The anchored tau of the hard case (SPEC 3: z(k) - z(k+1) >= 1, where f = k on a
        whole interval and tau is its largest point, z(k) - 1), or None. Decided from the
        scores, as the reference does: in float the walk's f could round either way there."""
        nxt = self._below(self.theta)
        zk = self.z[self.theta]
        if nxt is None or zk - self.z[nxt] >= 1.0:
            return zk - self.anchor - 1.0
        return None

    def _walk(self):
        """tau right across breakpoints: to the hard case's tau, or until the root of the
        current piece lies before its next breakpoint."""
        k, hard = self.k, self._hard()
        while True:
            self.serial += 1
            ia = self._above(self.pa)                 # the smallest visible UPPER entry
            im = self._above(self.pm, self.pa)        # the smallest visible MIDDLE entry
            ba = self.z[ia] - self.anchor - 1.0 if ia is not None else math.inf
            bm = self.z[im] - self.anchor if im is not None else math.inf
            nb = min(ba, bm)
            if hard is not None:
                if nb >= hard:
                    self.tau = hard
                    return
            elif self.mid:   # outside the hard case f = k has no flat piece: mid = 0 -> cross
                root = (self.upper + self.sum - k) / self.mid
                if root < nb:
                    self.tau = root
                    return
            self.tau = nb
            if ba <= bm:     # UPPER -> MIDDLE
                self.upper -= 1
                self.mid += 1
                self.sum += self.z[ia] - self.anchor
                self.pa = ia
            else:            # MIDDLE -> below
                self.mid -= 1
                self.sum -= self.z[im] - self.anchor
                self.pm = im

    def query(self, e):
        """tau and theta's index for a query seeing positions < e (n > k assumed by the
        caller); the entry at position e - 1 became visible since the last query."""
        grown = self.started and e > self.e
        self.e = e
        self.serial += 1
        if not self.started:
            self._init()
        elif grown:
            r = self.rank[e - 1]
            x = self.z[r]
            if x > -math.inf:
                if r < self.pa:
                    self.upper += 1
                elif r < self.pm:
                    self.mid += 1
                    self.sum += x - self.anchor
                if r < self.theta:
                    self.theta = self._above(self.theta)
            self._walk()
        return self.tau + self.anchor, self.theta


def model_row(u, T, S, k, w, warps, rounds=0):
    C = max(S - w, 0)
    cand = u[:C]
    order = np.lexsort((np.arange(C), -np.where(np.isnan(cand), -np.inf, cand)))
    z = cand[order].astype(np.float64)
    z[np.isnan(z)] = -np.inf
    rank = np.empty(C, np.int64)
    rank[order] = np.arange(C)
    lag = S - T - w
    # Queries with at most k candidates (e(t) <= k) select all of them: no warp spends time
    # there, the others share the rest.
    first = min(max(k - lag, 0), T)
    per = -(-(T - first) // warps)
    worst_tau, theta_ok, steps, ballots = 0.0, True, [], []
    for wi in range(warps):
        wp = Warp(z, order, rank, k, rounds)
        for t in range(first + wi * per, min(T, first + (wi + 1) * per)):
            e = min(max(t + lag + 1, 0), C)
            live = int(np.count_nonzero(cand[:e] > -np.inf))
            if live <= k:
                continue   # every candidate selected, tau = -inf: no search
            tau, th = wp.query(e)
            want = reference.sparsek_tau(cand[:e], k)
            worst_tau = max(worst_tau, abs(tau - want) / max(1.0, float(np.max(np.abs(cand[:e])))))
            chosen, _, _ = reference._select_one(u, k, w, t + S - T)
            theta_ok &= int(order[th]) in set(chosen.tolist()) and \
                all(rank[j] <= th for j in chosen)
        steps.append(wp.serial)
        ballots.append(wp.ballots)
    return worst_tau, theta_ok, steps, ballots


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=4096)
    p.add_argument("--S", type=int, default=4096)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--w", type=int, default=256)
    p.add_argument("--rows", type=int, default=2)
    p.add_argument("--warps", type=int, default=32)
    p.add_argument("--init-rounds", type=int, default=0,
                   help="bisection rounds (f evaluations) before a warp's first walk; 0: walk "
                        "from z(k) - 1")
    p.add_argument("--scores", choices=("normal", "ties", "masked", "spread", "huge"),
                   default="normal", help="N(0, 4); rounded to halves; 20%% -inf; distinct "
                   "multiples of 1.25 (SPEC 3's hard case everywhere); N(0, 4) * 1e30")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    for row in range(a.rows):
        u = (rng.standard_normal(a.S) * 2).astype(np.float32)   # as the GPU bench: N(0, 4)
        if a.scores == "ties":
            u = np.round(u * 2) / 2
        elif a.scores == "masked":
            u[rng.random(a.S) < 0.2] = -np.inf
        elif a.scores == "spread":
            u = (rng.permutation(a.S) * 1.25).astype(np.float32)
        elif a.scores == "huge":
            u = u * np.float32(1e30)
        err, ok, steps, ballots = model_row(u, a.T, a.S, a.k, a.w, a.warps, a.init_rounds)
        print(f"row {row} ({a.scores}): max |tau - reference| / max(1, |u|) = {err:.2e}, "
              f"theta exact: {ok}; per warp serial steps max {max(steps)} mean "
              f"{np.mean(steps):.0f}, ballots max {max(ballots)} mean {np.mean(ballots):.0f}")


if __name__ == "__main__":
    main()
