#!/usr/bin/env python3
# Compiles examples/sparsek_layer.mlir for the CPU, runs it on random weights
# and checks it against the float64 reference; exits non-zero on a mismatch.
"""Run the bundled SparseK layer end to end on the CPU.

    python3 examples/run_layer.py [--seq-len T ...]

The layer (q/k/v projections, scoring network, selection + sparse attention,
output projection) goes through `sparsek-opt --sparsek-cpu-pipeline`, LLVM
and the system linker into a shared library, which is then called through
ctypes on seeded random inputs; the result is compared with
`sparsek.reference` in float64 at SPEC 8's f32 tolerance.
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

from sparsek import reference, toolchain  # noqa: E402
from sparsek.cpu import CompiledLibrary  # noqa: E402

C, HQ, HKV, D, K, W = 64, 4, 2, 16, 16, 16


def reference_layer(x, wq, wk, wv, wsc, bsc, wo):
    T = x.shape[1]

    def heads(w, h):
        return (x[0] @ w).reshape(T, h, D).transpose(1, 0, 2)[None]

    q, k, v = heads(wq, HQ), heads(wk, HKV), heads(wv, HKV)
    u = reference.score(x, wsc, bias=bsc)
    o = reference.sparsek_attention(q, k, v, u, K, W)
    return (o[0].transpose(1, 0, 2).reshape(T, HQ * D) @ wo)[None]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, nargs="+", default=[1, 37, 256],
                        help="sequence lengths to run (one compiled library serves all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    src = os.path.join(ROOT, "examples", "sparsek_layer.mlir")
    start = time.time()
    lib = CompiledLibrary(toolchain.compile_shared_library(open(src).read()))
    print(f"compiled {os.path.relpath(src, ROOT)} for the CPU in {time.time() - start:.1f} s")

    rng = np.random.default_rng(args.seed)
    f32 = np.float32
    wq = (rng.normal(size=(C, HQ * D)) / np.sqrt(C)).astype(f32)
    wk = (rng.normal(size=(C, HKV * D)) / np.sqrt(C)).astype(f32)
    wv = (rng.normal(size=(C, HKV * D)) / np.sqrt(C)).astype(f32)
    wsc = (rng.normal(size=(HKV, C)) / np.sqrt(C)).astype(f32)
    bsc = rng.normal(size=HKV).astype(f32)
    wo = (rng.normal(size=(HQ * D, C)) / np.sqrt(HQ * D)).astype(f32)

    ok = True
    for T in args.seq_len:
        x = rng.normal(size=(1, T, C)).astype(f32)
        out = np.zeros((1, T, C), f32)
        lib.call("sparsek_layer", x, wq, wk, wv, wsc, bsc, wo, out)
        want = reference_layer(x, wq, wk, wv, wsc, bsc, wo)
        err = float(np.max(np.abs(out - want))) if T else 0.0
        tol = 1e-4 * max(1.0, float(np.max(np.abs(want))))
        good = err <= tol
        ok &= good
        print(f"T = {T:5d}: max |compiled - reference| = {err:.2e} (tolerance {tol:.1e}) "
              f"{'OK' if good else 'MISMATCH'}")
    print("example PASSED" if ok else "example FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
