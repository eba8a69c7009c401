#!/usr/bin/env bash
# Regenerates docs/ (op and pass reference, from ODS) from a configured build.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SPARSEK_BUILD_DIR:-build}
cmake --build "$build" --target sparsek-doc
cp "$build"/docs/SparseK/*.md docs/
