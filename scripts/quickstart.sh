#!/usr/bin/env bash
# Quick start: install what is missing, build, and run the bundled SparseK
# layer end to end on the CPU (compiled by sparsek-opt, checked against the
# float64 reference).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
export SPARSEK_BUILD_DIR=${SPARSEK_BUILD_DIR:-$PWD/build}
echo "== sparsek-opt verifies the layer"
"$SPARSEK_BUILD_DIR/bin/sparsek-opt" examples/sparsek_layer.mlir > /dev/null
echo "== the layer, compiled for the CPU, against the reference"
/usr/bin/python3 examples/run_layer.py
if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
  echo "== a GPU is present; the GPU path of the example is not available yet"
fi
