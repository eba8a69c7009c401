#!/usr/bin/env bash
# On the development machine (LLVM/MLIR + CUDA toolkit, no GPU): builds the
# compiled functions bench/gpu_bench.py calls into build/bench-artifacts
# (libsparsek_runtime.so copied next to them). Uses the existing build of
# sparsek-compile; set SPARSEK_BENCH_REBUILD=1 to run scripts/build.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SPARSEK_BENCH_REBUILD:-0}" = 1 ]; then bash scripts/build.sh; fi
out=${1:-build/bench-artifacts}
/usr/bin/python3 bench/build_bench_artifacts.py "$out"
# The committed python package (sparsek.gpu, .reference) travels with them.
rm -rf "$out/python" && mkdir -p "$out/python"
git archive HEAD python/sparsek | tar -x -C "$out"
echo "python/sparsek of $(git rev-parse --short HEAD) in $out/python"
