#!/usr/bin/env python3
# Prints the figures of a bench/gpu_bench.py record as markdown tables.
"""python3 bench/gpu_bench_table.py bench/results/gpu_bench_h200.json"""

import json
import sys


def fmt(x, digits=4):
    return "" if x is None else (f"{x:.{digits}g}" if isinstance(x, float) else str(x))


def main():
    r = json.load(open(sys.argv[1]))
    env = r["environment"]
    print(f"{env.get('gpu')}, driver {env.get('driver')}, torch {env.get('torch')}, triton {env.get('triton')}, "
          f"artifacts commit {str(env.get('artifacts_commit'))[:12]}"
          f"{' (work tree dirty)' if env.get('artifacts_worktree_dirty') else ''}; "
          f"device copy {r['copy_rate']['GBps']:.0f} GB/s\n")
    print("| workload | size | implementation | median ms | TFLOP/s | GB/s | check | note |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    ratios = []
    for row in r.get("summary", []):
        if "ratio" in row:
            ratios.append(row)
            continue
        if "impl" not in row:
            print(f"| {row.get('workload')} | | | | | | | ERROR {fmt(row.get('error'))[:120]} |")
            continue
        note = row.get("skipped") or row.get("error") or ""
        if row.get("best"):
            note = f"best: {row['best']} " + note
        if row.get("reduced"):
            note += f" {row.get('repeats')} timed (slow)"
        check = {True: "ok", False: "FAILED", None: ""}[row.get("check_passed")]
        print(f"| {row['workload']} | {row['size']} | {row['impl']} | {fmt(row.get('median_ms'))} | "
              f"{fmt(row.get('tflops'), 3)} | {fmt(row.get('GBps'), 4)} | {check} | {note[:160]} |")
    print("\n| workload | size | time ratio (> 1: ours slower) | value |")
    print("| --- | --- | --- | --- |")
    for row in ratios:
        print(f"| {row['workload']} | {row['size']} | {row['ratio']} | {fmt(row['value'])} |")
    sel = [x for x in r.get("results", []) if x.get("workload") == "S1" and "bytes_written" in x]
    if sel:
        print("\n| S1 T | GB written (indices + gates + tau) | floor at the copy rate, ms | selection / P1 attention, same T |")
        print("| --- | --- | --- | --- |")
        for x in sel:
            sv = x.get("select_vs_p1_attention", {})
            vs = sv.get("unavailable") or "; ".join(f"{k} {fmt(v)}" for k, v in sv.get("ratios", {}).items())
            print(f"| {x['shape']['T']} | {fmt(x['bytes_written'] / 1e9)} | "
                  f"{fmt(x.get('write_floor_ms_at_copy_rate'))} | {vs} |")
    for s in r.get("skipped", []):
        print(f"\nskipped: {s['workload']}: {s['why']}")


if __name__ == "__main__":
    main()
