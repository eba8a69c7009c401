#!/usr/bin/env bash
# Builds the libFuzzer harness (tools/sparsek-fuzz: parse, verify, each sparsek
# pass and both pipelines) in ${SPARSEK_BUILD_DIR:-build}/fuzz with clang and
# ASan, replays the recorded crash inputs, then fuzzes for SECONDS (default
# 60) from a corpus seeded with test/ and examples/.
#
# usage: scripts/fuzz.sh [SECONDS [libFuzzer flags...]]
# Without clang's libFuzzer it says so and exits 0, unless
# SPARSEK_REQUIRE_FUZZER=1 (CI). A crash, a sanitizer report or a hang exits
# non-zero and leaves the input in build/fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${1:-60}
shift || true
fuzz=${SPARSEK_BUILD_DIR:-$root/build}/fuzz
# clang of the same LLVM as libMLIR (install-deps.sh installs it): our code
# needs C++ that clang 14 lacks.
cxx=${SPARSEK_FUZZ_CXX:-clang++-22}
cc=${SPARSEK_FUZZ_CC:-clang-22}

if ! command -v "$cxx" > /dev/null ||
   ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char *, long) { return 0; }' |
     "$cxx" -x c++ -fsanitize=fuzzer,address -o /dev/null - 2> /dev/null; then
  echo "fuzz: no clang with libFuzzer ($cxx); skipping the fuzzer"
  [ -z "${SPARSEK_REQUIRE_FUZZER:-}" ] || exit 1
  exit 0
fi

if [ ! -f "$fuzz/build/build.ninja" ]; then
  launcher=()
  if command -v ccache > /dev/null; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
  # -g1: line tables, for readable sanitizer reports.
  cmake -G Ninja -S . -B "$fuzz/build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" "${launcher[@]}" \
    -DCMAKE_CXX_FLAGS=-g1 -DSPARSEK_ENABLE_FUZZER=ON -DSPARSEK_ENABLE_RUNTIME=OFF \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit > /dev/null
fi
cmake --build "$fuzz/build" --target sparsek-fuzz
bin=$fuzz/build/bin/sparsek-fuzz

# libMLIR.so is not instrumented, so ASan cannot see its containers' bounds.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_container_overflow=0:detect_leaks=0}
# Each recorded crash (tools/sparsek-fuzz/regressions) must now pass.
regressions=(tools/sparsek-fuzz/regressions/*)
if [ -e "${regressions[0]}" ]; then
  "$bin" -runs=1 "${regressions[@]}" 2>&1 | tail -n 1
fi

rm -rf "$fuzz/seeds"
/usr/bin/python3 tools/sparsek-fuzz/make_corpus.py "$fuzz/seeds" test examples
mkdir -p "$fuzz/corpus" "$fuzz/crashes"
# A slow input counts as a hang after 60 s; inputs stay under 64 KiB.
"$bin" -max_total_time="$seconds" -timeout=60 -rss_limit_mb=6144 -max_len=65536 \
  -dict=tools/sparsek-fuzz/sparsek.dict -print_final_stats=1 -artifact_prefix="$fuzz/crashes/" \
  "$@" "$fuzz/corpus" "$fuzz/seeds"
