#!/usr/bin/env bash
# Configures (once) and builds SparseK into ${SPARSEK_BUILD_DIR:-build}:
# the dialect, passes, sparsek-opt, the runtime, the lit suite's tools.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SPARSEK_BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
  cmake -G Ninja -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit "$@"
fi
cmake --build "$build"
