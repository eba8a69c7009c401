#!/usr/bin/env bash
# Builds variant builds of the CUDA cache for run_d1_variants.sh, on the
# build machine: for each NAME=FLAGS argument, configures
# runtime/build-perf-v-NAME with CMAKE_CUDA_FLAGS=FLAGS, builds the decode
# benchmark and the GPU test, and packs libsparsek_runtime.so and both
# binaries into runtime/build-perf/var/NAME/ (the default build,
# runtime/build-perf, must exist). Run from the repository root, e.g.
#   bash runtime/bench/build_d1_variants.sh 'nolist=-DSK_WEAK_LIST=0'
set -euo pipefail
for spec in "$@"; do
  name=${spec%%=*}
  flags=${spec#*=}
  dir=runtime/build-perf-v-$name
  cmake -S runtime -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_CUDA_FLAGS=$flags" >/dev/null
  cmake --build "$dir" --target sparsek_runtime_decode_bench \
    sparsek_runtime_cache_gpu_test >/dev/null
  out=runtime/build-perf/var/$name
  rm -rf "$out"
  mkdir -p "$out"
  cp "$dir/libsparsek_runtime.so" "$dir/bench/sparsek_runtime_decode_bench" \
    "$dir/test/sparsek_runtime_cache_gpu_test" "$out/"
  echo "$name: $flags"
done
