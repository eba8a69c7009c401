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
# A machine with a GPU, torch and the CUDA toolkit also runs the layer on the
# GPU (compiled by sparsek-gpu-pipeline) against the same reference.
if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
  if /usr/bin/python3 -c "import torch; assert torch.cuda.is_available()" 2> /dev/null &&
     { command -v ptxas > /dev/null || [ -x /usr/local/cuda/bin/ptxas ]; }; then
    echo "== the layer on the GPU, against the reference"
    bash scripts/build-gpu-artifacts.sh build/gpu-artifacts > /dev/null
    PYTHON=/usr/bin/python3 bash scripts/run-gpu-tests.sh build/gpu-artifacts -k layer
  else
    echo "== a GPU is present, but the GPU path needs torch with CUDA and the CUDA toolkit (ptxas)"
  fi
fi
