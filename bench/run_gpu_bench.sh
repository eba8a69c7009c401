#!/usr/bin/env bash
# On the GPU machine (python3 with torch, triton, numpy; no LLVM needed): runs
# bench/gpu_bench.py against the artifacts of bench/build_bench_artifacts.sh.
#   bash bench/run_gpu_bench.sh [OUT_DIR] [extra gpu_bench.py options]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
export SPARSEK_BENCH_INVOCATION="bash bench/run_gpu_bench.sh $*"
# E1's KV cache loads the runtime that was built with the artifacts.
export SPARSEK_RUNTIME_LIB=${SPARSEK_RUNTIME_LIB:-$PWD/build/bench-artifacts/libsparsek_runtime.so}
PYTHONUNBUFFERED=1 python3 bench/gpu_bench.py --artifacts build/bench-artifacts --out "$out" "${@:2}"
