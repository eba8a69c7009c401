# A/B of the select_attention_wgmma bench family compiled from different commits (or
# options) into different folders (bench/build_bench_artifacts.py): the same inputs
# through each, outputs against the first folder's, whole-call times side by side.
"""A/B of compiled select_attention_wgmma libraries (GPU machine):

    python3 bench/ab_select_attention.py DIR_A,DIR_B[,...]

Per shape (P1 at T = 32768 and 8192, P3; BENCHMARKS.md) and folder: the median and
minimum of 10 CUDA-event timings of the whole call after 3 warm-ups (no L2 flush:
for comparing variants within one run, not for the benchmark's figures), and the
output against the first folder's (max abs difference, fraction of elements off by
more than 2e-2, NaN count).
"""

import argparse
import os
import sys

import torch

FORM = "wgmma"
# name: (B, Hq, Hkv, D, k, w, T)
SHAPES = {"P1-32k": (1, 32, 8, 128, 2048, 512, 32768),
          "P1-8k": (1, 32, 8, 128, 2048, 512, 8192),
          "P3": (8, 12, 12, 64, 256, 256, 4096)}


def make_inputs(B, Hq, Hkv, D, T):
    """bf16 q, key, value and f32 scores (spread 2) on the GPU, seeded: the
    same inputs in every script that takes them."""
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(B, Hq, T, D, device="cuda", generator=g).bfloat16()
    key = torch.randn(B, Hkv, T, D, device="cuda", generator=g).bfloat16()
    value = torch.randn(B, Hkv, T, D, device="cuda", generator=g).bfloat16()
    u = torch.randn(B, Hkv, T, device="cuda", generator=g) * 2
    return q, key, value, u


def timed_calls(call, warmup=3, repeats=10):
    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2], times[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", help="comma-separated artifact folders; the first is the reference")
    folders = p.parse_args().folders.split(",")
    sys.path.insert(0, os.path.join(folders[0], "python"))
    from sparsek.gpu import GPULibrary

    libs = [GPULibrary(os.path.join(f, f"libbench_select_attention_{FORM}.so")) for f in folders]
    for name, (B, Hq, Hkv, D, k, w, T) in SHAPES.items():
        q, key, value, u = make_inputs(B, Hq, Hkv, D, T)
        fn = f"select_attention_bf16_k{k}_w{w}_{FORM}"
        first = None
        for folder, lib in zip(folders, libs):
            out = torch.empty(B, Hq, T, D, device="cuda", dtype=torch.bfloat16)
            median, best = timed_calls(lambda: lib.call(fn, q, key, value, u, out))
            got = out.float()
            first = got if first is None else first
            diff = (got - first).abs()
            print(f"{name:7s} {folder:12s} median {median:.3f} ms  min {best:.3f}  "
                  f"maxdiff {diff.max().item():.3e}  frac>2e-2 {(diff > 2e-2).float().mean().item():.2e}  "
                  f"nan {torch.isnan(got).sum().item()}", flush=True)
        del q, key, value, u, first
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
