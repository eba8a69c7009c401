# bf16 linalg.matmul on tensor cores (sparsek-gpu-matmul-tiles, the GPU pipeline's
# default) against cuBLAS (torch.matmul) at the generation bench's projection
# shapes, in one process on one GPU.
"""Matmul tiles against cuBLAS (GPU machine):

    python3 bench/matmul_tiles.py ARTIFACTS [--out FILE.json]

ARTIFACTS is a folder of scripts/gpu_artifacts.py (its matmul library). Per
shape (M, K, N): the median of 20 CUDA-event timings after 5 warm-ups of
C += A @ B (bf16 operands, f32 C) through the compiled library, and of cuBLAS'
bf16 A @ B (bf16 out, f32 accumulation) with the same operands; TFLOP/s as
2 M K N / time. M = 1 and 64 are the decode step's projections (B sequences),
4096 and 32768 the prefill's rows (B * T).
"""

import argparse
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

SHAPES = [(1, 2048, 2048), (64, 2048, 2048), (256, 2048, 2048), (4096, 2048, 2048),
          (32768, 2048, 2048), (4096, 2048, 512), (1, 2048, 8192), (4096, 2048, 8192)]


def median_ms(fn, warmup=5, repeats=20):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts")
    parser.add_argument("--out")
    args = parser.parse_args()
    from sparsek.gpu import GPULibrary

    with open(os.path.join(args.artifacts, "manifest.json")) as f:
        manifest = json.load(f)
    lib = GPULibrary(os.path.join(args.artifacts, manifest["matmul_library"]))
    rows = []
    torch.manual_seed(0)
    for m, k, n in SHAPES:
        name = manifest["matmul"][f"bf16/{k}/{n}"]
        a = torch.randn(m, k, device="cuda").bfloat16()
        b = torch.randn(k, n, device="cuda").bfloat16()
        c = torch.zeros(m, n, device="cuda")
        lib.call(name, a, b, c)
        want = a.float() @ b.float()
        err = float((c - want).abs().max() / want.abs().max())
        ours = median_ms(lambda: lib.call(name, a, b, c))
        cublas = median_ms(lambda: a @ b)
        flop = 2.0 * m * k * n
        row = {"M": m, "K": k, "N": n, "ours_ms": ours, "cublas_ms": cublas,
               "ours_tflops": flop / ours / 1e9, "cublas_tflops": flop / cublas / 1e9,
               "max_rel_err": err}
        rows.append(row)
        print(f"M={m:6d} K={k} N={n:5d}: ours {ours * 1e3:9.1f} us ({row['ours_tflops']:6.1f} TFLOP/s)"
              f"  cuBLAS {cublas * 1e3:9.1f} us ({row['cublas_tflops']:6.1f})  rel err {err:.1e}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
