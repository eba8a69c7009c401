#!/usr/bin/env bash
# On the GPU machine (torch, numpy, pytest, a GPU; no LLVM needed): runs the
# GPU suite against the artifacts of scripts/build-gpu-artifacts.sh. A skipped
# test is a failure here: every GPU test must run on this machine.
# SPARSEK_TEST_LAUNCHER prefixes the python command (e.g. compute-sanitizer
# and its flags; scripts/run-gpu-sanitizers.sh runs the suite per file).
set -euo pipefail
cd "$(dirname "$0")/.."
export SPARSEK_GPU_ARTIFACTS=$(cd "${1:-build/gpu-artifacts}" && pwd)
export SPARSEK_GPU_REQUIRED=1
nvidia-smi -L || true
cd python
${SPARSEK_TEST_LAUNCHER:-} "${PYTHON:-python3}" -m pytest -q -p no:cacheprovider -rs test/gpu "${@:2}"
