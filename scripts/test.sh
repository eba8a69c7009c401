#!/usr/bin/env bash
# Builds SparseK and runs the whole test suite: lit (dialect, passes,
# pipelines), the runtime's GoogleTest suite (plus its ASan/UBSan build),
# both fuzzers for a bounded time (scripts/fuzz.sh, fuzz_entry_points.py),
# the Python tests (reference and compiled CPU code against it), the
# out-of-tree CMake consumer, the docs check and the bundled example.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${SPARSEK_BUILD_DIR:-$root/build}
export SPARSEK_BUILD_DIR=$build
jobs=$(nproc)
# The Python tests and examples run in the test environment with torch
# (scripts/setup-venv.sh), else in Debian's python3 where the torch tests skip.
source scripts/python-env.sh

step() { printf '\n== %s\n' "$*"; }

step "build"
bash scripts/build.sh

step "lit: check-sparsek"
cmake --build "$build" --target check-sparsek

step "ctest (runtime GoogleTest suites, C API tests)"
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 600

if [ -f runtime/scripts/check.sh ]; then
  step "runtime: sanitizer build (ASan/UBSan)"
  bash runtime/scripts/check.sh "$build/runtime-asan" --sanitize-only
fi

step "fuzz: libFuzzer over parse, verify, each pass and both pipelines (${SPARSEK_FUZZ_SECONDS:-60} s)"
# A fixed seed from a fresh corpus: the routine run is repeatable, and longer
# runs (scripts/fuzz.sh SECONDS, any seed) explore further.
bash scripts/fuzz.sh "${SPARSEK_FUZZ_SECONDS:-60}" -seed="${SPARSEK_FUZZ_SEED:-1}"

step "CMake package: install and build an out-of-tree consumer"
rm -rf "$build/install" "$build/consumer"
cmake --install "$build" --prefix "$build/install" > /dev/null
cmake -G Ninja -S test/consumer -B "$build/consumer" \
  -DSparseK_DIR="$build/install/lib/cmake/SparseK" > /dev/null
cmake --build "$build/consumer" > /dev/null
"$build/consumer/sparsek-consumer" | tail -n 1
"$build/consumer/sparsek-capi-consumer" | tail -n 1

step "docs: docs/ matches ODS"
cmake --build "$build" --target sparsek-doc > /dev/null
for f in "$build"/docs/SparseK/*.md; do
  if ! cmp -s "$f" "docs/$(basename "$f")"; then
    echo "docs/$(basename "$f") is out of date: run scripts/update-docs.sh" >&2
    exit 1
  fi
done
echo "docs up to date"

if command -v ptxas > /dev/null || [ -x /usr/local/cuda/bin/ptxas ]; then
  step "GPU artifacts: attention kernels to sm_90 and sm_90a fatbins (ptxas; run on the GPU machine)"
  /usr/bin/python3 scripts/gpu_artifacts.py "$build/gpu-artifacts"
  /usr/bin/python3 scripts/prebuild_gpu_layers.py --prune "$build/gpu-artifacts/cache"
fi

step "python: $SPARSEK_PYTHON, torch $("$SPARSEK_PYTHON" -c 'import torch; print(torch.__version__)' 2> /dev/null || echo "not installed: the torch tests skip")"
if [ -n "${SPARSEK_REQUIRE_TORCH:-}" ] && ! "$SPARSEK_PYTHON" -c "import torch" 2> /dev/null; then
  echo "SPARSEK_REQUIRE_TORCH is set but $SPARSEK_PYTHON has no torch (run scripts/setup-venv.sh)" >&2
  exit 1
fi

step "example: the SparseK layer on the CPU"
"$SPARSEK_PYTHON" examples/run_layer.py
step "example: a tiny transformer generating tokens with SparseK attention"
"$SPARSEK_PYTHON" examples/tiny_transformer.py

step "example: training the tiny transformer (SparseK vs dense vs window-only retrieval)"
if "$SPARSEK_PYTHON" -c "import torch" 2> /dev/null; then
  # Exits non-zero unless SparseK gets below the loss that window-only cannot reach.
  "$SPARSEK_PYTHON" examples/train_tiny.py
else
  echo "skipped: $SPARSEK_PYTHON has no torch (scripts/setup-venv.sh)"
fi

step "fuzz: compiled CPU entry points against the reference (${SPARSEK_FUZZ_SECONDS:-60} s)"
# A random seed each run (printed, with --repro for any failing case); the
# classes that issue 13 has yet to fix are left out (KNOWN_FAILING).
"$SPARSEK_PYTHON" python/test/fuzz_entry_points.py --seconds "${SPARSEK_FUZZ_SECONDS:-60}" --classes passing

step "python: pytest"
cd python
"$SPARSEK_PYTHON" -m pytest -q -p no:cacheprovider -rs test
