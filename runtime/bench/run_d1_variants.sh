#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root: the GPU tests and the D1
# decode benchmark for the default build (runtime/build-perf) and for variant
# builds packed as runtime/build-perf/var/<name>/{libsparsek_runtime.so,
# sparsek_runtime_decode_bench, sparsek_runtime_cache_gpu_test}. Results go
# to $OUT (one JSON / test log per build and size) and a summary to stdout.
set -u
R=${OUT:-/tmp/sk-d1}
mkdir -p "$R"
B=runtime/build-perf
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$R/gpu.txt" 2>&1
test_log() { # name dir binary
  (cd "$2" && LD_LIBRARY_PATH=$3 timeout 60 "$4" >"$R/$1.txt" 2>&1
   echo "rc=$?" >>"$R/$1.txt")
}
test_log default_mgpu_test $B/test .. ./sparsek_runtime_mgpu_test
test_log default_gpu_test $B/test .. ./sparsek_runtime_cache_gpu_test
LD_LIBRARY_PATH=$B timeout 30 $B/bench/sparsek_runtime_decode_bench \
  --seqs 256 >"$R/default_256.json" 2>&1
for v in ${VARIANTS:-}; do
  d=$B/var/$v
  test_log "${v}_gpu_test" "$d" . ./sparsek_runtime_cache_gpu_test
  LD_LIBRARY_PATH=$d timeout 30 "$d/sparsek_runtime_decode_bench" \
    --seqs 256 >"$R/${v}_256.json" 2>&1
  LD_LIBRARY_PATH=$d timeout 30 "$d/sparsek_runtime_decode_bench" \
    --seqs 1 --verify-seqs 0 >"$R/${v}_1.json" 2>&1
done
LD_LIBRARY_PATH=$B timeout 30 $B/bench/sparsek_runtime_decode_bench \
  --seqs 1 --verify-seqs 0 >"$R/default_1.json" 2>&1
# The default once more at the end: the spread of two runs of one build.
LD_LIBRARY_PATH=$B timeout 30 $B/bench/sparsek_runtime_decode_bench \
  --seqs 256 >"$R/default_256_again.json" 2>&1
cat "$R/gpu.txt"
for f in "$R"/*test.txt; do
  echo "$(basename "$f"): $(grep -E '^\[  PASSED|^\[  FAILED' "$f" | tr '\n' ' ') $(tail -n1 "$f")"
done
for f in "$R"/*.json; do
  echo "$(basename "$f"): $(grep -oE '"(median_us|back_to_back_us_per_step|empty_kernel_us|two_empty_kernels_us|verified_against_cpu_seqs)": [0-9.]+' "$f" | tr '\n' ' ')"
  grep -q median_us "$f" || tail -n 3 "$f"
done
