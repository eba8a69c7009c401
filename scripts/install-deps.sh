#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test SparseK:
# LLVM/MLIR 22 (Debian packages, never a source build), Ninja, CMake,
# GoogleTest, numpy and pytest. The CUDA 13 toolkit is optional (the GPU
# parts are skipped without it) and is not installed here.
set -euo pipefail

packages=(cmake ninja-build g++ llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools
          libgtest-dev python3 python3-numpy python3-pytest)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
