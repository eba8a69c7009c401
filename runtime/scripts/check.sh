#!/usr/bin/env bash
# CI entry point of the runtime: configures, builds and runs ctest twice, a
# normal build and an ASan+UBSan build of the host code, under BUILD_DIR
# (--normal-only / --sanitize-only run one of them, e.g. when the normal
# build is already part of the project's build). Exits non-zero on the
# first failure. Needs cmake, a C++17 compiler and GoogleTest; uses the CUDA
# toolkit when present (GPU tests skip without a GPU).
set -euo pipefail

usage() {
  echo "usage: $0 BUILD_DIR [--normal-only | --sanitize-only]" >&2
  exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
normal=1
sanitize=1
case "${2:-}" in
"") ;;
--normal-only) sanitize=0 ;;
--sanitize-only) normal=0 ;;
*) usage ;;
esac
mkdir -p "$1"
build_root=$(cd "$1" && pwd)
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=${JOBS:-$(nproc)}
generator=()
if command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi

check() {
  local name=$1
  shift
  local dir="$build_root/$name"
  echo "=== runtime check: $name ($*)"
  cmake -S "$src" -B "$dir" "${generator[@]}" "$@"
  cmake --build "$dir" -j "$jobs"
  # Tests run in parallel; each has a generous per-test limit.
  (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 600)
}

if [ "$normal" = 1 ]; then
  check normal -DCMAKE_BUILD_TYPE=Release
fi
if [ "$sanitize" = 1 ]; then
  # -O1 keeps the sanitized stress tests fast; the reports stay precise.
  check sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPARSEK_SANITIZE=ON \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g"
fi
echo "=== runtime check: all passed"
