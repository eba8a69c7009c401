#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test SparseK:
# LLVM/MLIR 22 (Debian packages, never a source build), Ninja, CMake,
# GoogleTest, numpy and pytest, clang 22 with libFuzzer (scripts/fuzz.sh);
# then the Python test environment with torch from PyPI
# (scripts/setup-venv.sh, kept outside the clone). The CUDA 13 toolkit is
# optional (the GPU parts are skipped without it) and is not installed here.
set -euo pipefail

packages=(cmake ninja-build g++ llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools
          libgtest-dev python3 python3-numpy python3-pytest python3-venv
          clang-22 libclang-rt-22-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: every Debian package is installed"
else
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash "$(dirname "$0")/setup-venv.sh"
