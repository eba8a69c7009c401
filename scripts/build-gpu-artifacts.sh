#!/usr/bin/env bash
# On a machine with LLVM/MLIR and the CUDA toolkit (no GPU needed): builds the
# project and the GPU suite's artifacts into build/gpu-artifacts (a few MiB,
# carried to the GPU machine by scripts/run-gpu-tests.sh's caller).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
/usr/bin/python3 scripts/gpu_artifacts.py "${1:-build/gpu-artifacts}"
# SparseKAttention's and examples/tiny_transformer.py's layers (CPU and GPU) into the
# compiler's cache inside the same folder; python/test/gpu/conftest.py points there.
# --prune: only this build's libraries travel (not those of earlier builds or chips).
/usr/bin/python3 scripts/prebuild_gpu_layers.py --prune "${1:-build/gpu-artifacts}/cache"
