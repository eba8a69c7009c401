#!/usr/bin/env bash
# On the development machine (LLVM/MLIR + CUDA toolkit, no GPU): builds the
# compiled functions bench/gpu_bench.py calls into build/bench-artifacts
# (libsparsek_runtime.so copied next to them). Uses the existing build of
# sparsek-compile; set SPARSEK_BENCH_REBUILD=1 to run scripts/build.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SPARSEK_BENCH_REBUILD:-0}" = 1 ]; then bash scripts/build.sh; fi
/usr/bin/python3 bench/build_bench_artifacts.py "${1:-build/bench-artifacts}"
