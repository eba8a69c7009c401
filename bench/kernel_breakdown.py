# Per-kernel GPU times of one call of a compiled composite (P1 shape by
# default, or P3's), in launch order, from torch.profiler: which of the selection
# kernels, the block key sets and the attention tiles dominates. Runs on the
# GPU machine against build/bench-artifacts (bench/build_bench_artifacts.sh).
#   python3 bench/kernel_breakdown.py [--forms mma_sync,wgmma] [--T 32768,4096] [--shape P1|P3]
import argparse
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from ab_select_attention import make_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--artifacts", default=os.path.join(ROOT, "build", "bench-artifacts"))
    p.add_argument("--forms", default="mma_sync,wgmma")
    p.add_argument("--T", default="32768,4096")
    p.add_argument("--shape", default="P1", choices=("P1", "P3"))
    a = p.parse_args()
    sys.path.insert(0, os.path.join(a.artifacts, "python"))
    from sparsek.gpu import GPULibrary

    # BENCHMARKS.md's shapes (T from --T).
    B, Hq, Hkv, D, k, w = (1, 32, 8, 128, 2048, 512) if a.shape == "P1" else (8, 12, 12, 64, 256, 256)
    for T in (int(t) for t in a.T.split(",")):
        q, key, value, u = make_inputs(B, Hq, Hkv, D, T)
        out = torch.empty(B, Hq, T, D, device="cuda", dtype=torch.bfloat16)
        for form in a.forms.split(","):
            lib = GPULibrary(os.path.join(a.artifacts, f"libbench_select_attention_{form}.so"))
            fn = f"select_attention_bf16_k{k}_w{w}_{form}"
            for _ in range(2):  # module load, pools
                lib.call(fn, q, key, value, u, out)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                lib.call(fn, q, key, value, u, out)
                torch.cuda.synchronize()
            kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            kernels.sort(key=lambda e: e.time_range.start)
            total = sum(e.time_range.elapsed_us() for e in kernels)
            span = kernels[-1].time_range.end - kernels[0].time_range.start
            print(f"T={T} {form}: {len(kernels)} GPU events, {total / 1e3:.2f} ms busy, "
                  f"{span / 1e3:.2f} ms from first start to last end")
            # The gap column is the time since the previous event ended (in
            # start order): launch latency and host work between launches,
            # negative where kernels of two streams overlap. `at`: the start
            # since the first event's.
            first = prev = kernels[0].time_range.start
            for i, e in enumerate(kernels):
                gap = e.time_range.start - prev
                prev = e.time_range.end
                print(f"  {i:2d} {e.name[-40:]:40s} {e.time_range.elapsed_us() / 1e3:8.3f} ms"
                      f"  gap {gap / 1e3:6.3f}  at {(e.time_range.start - first) / 1e3:6.3f}")


if __name__ == "__main__":
    main()
