#!/usr/bin/env python3
# Times the compiled CPU selection (sparsek.select) at growing T to show its
# cost is linear in T (a running top-k with exact tau, no sort per query).
"""CPU selection benchmark (issue 3): T = S in {4096, 65536} by default.

    python3 bench/select_cpu.py [--seq 4096 65536] [--k 2048] [--w 512]

Checks sampled query rows against sparsek.reference first, then reports the
median of repeated runs and the ratio between sizes (linear: ~16x for 16x
more queries; a sort per query would be ~256x). Writes JSON to
bench/results/select_cpu.json. CPU times say nothing about GPU speed.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

from sparsek import ir, reference, toolchain  # noqa: E402
from sparsek.cpu import CompiledLibrary  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=int, nargs="+", default=[4096, 65536])
    p.add_argument("--k", type=int, default=2048)
    p.add_argument("--w", type=int, default=512)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "select_cpu.json"))
    a = p.parse_args()

    lib = CompiledLibrary(toolchain.compile_shared_library(
        ir.module(ir.select_function("bench_select", a.k, a.w))))
    rng = np.random.default_rng(0)
    rows = []
    for T in a.seq:
        u = rng.normal(size=(1, a.heads, T)).astype(np.float32)
        idx = np.empty((1, a.heads, T, a.k), np.int32)
        gates = np.empty((1, a.heads, T, a.k), np.float32)
        tau = np.empty((1, a.heads, T), np.float32)
        lib.call("bench_select", u, idx, gates, tau)
        for t in rng.choice(T, size=4, replace=False):  # sampled rows
            r_idx, _, r_tau = reference.select(u[:, :1, : t + 1].astype(np.float64), a.k, a.w, T=1)
            assert np.array_equal(idx[0, 0, t], r_idx[0, 0, 0]), f"row {t} differs"
            want = r_tau[0, 0, 0]
            assert (np.isneginf(want) and np.isneginf(tau[0, 0, t])) or \
                abs(float(tau[0, 0, t]) - want) <= 1e-5 * max(1, abs(want)), f"tau of row {t} differs"
        times = []
        for _ in range(a.repeat):
            start = time.perf_counter()
            lib.call("bench_select", u, idx, gates, tau)
            times.append(time.perf_counter() - start)
        med = float(np.median(times))
        rows.append({"T": T, "S": T, "median_s": med, "times_s": times})
        print(f"T = S = {T:6d}, k = {a.k}, w = {a.w}, Hkv = {a.heads}: {med * 1e3:9.1f} ms")
    for lo, hi in zip(rows, rows[1:]):
        ratio = hi["median_s"] / lo["median_s"]
        print(f"  {hi['T'] // lo['T']}x more queries -> {ratio:.1f}x the time")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    record = {"benchmark": "select_cpu", "commit": commit, "machine": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "k": a.k, "w": a.w, "heads": a.heads, "results": rows,
              "command": "python3 bench/select_cpu.py " + " ".join(sys.argv[1:])}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {os.path.relpath(a.out, ROOT)}")


if __name__ == "__main__":
    main()
