#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, for a runtime build made
# on the build machine (cmake -S runtime -B BUILD -G Ninja
# -DCMAKE_BUILD_TYPE=Release && cmake --build BUILD, carried as BUILD): the
# runtime's GPU tests, then the D1 decode-append benchmark at 256 sequences
# (checked against the CPU cache first) and at 1 sequence, and the prompt
# fill (sk_cache_append_chunk of 32767 tokens, Hkv 8, k 2048, w 512, D 128,
# bf16; checked against the CPU cache first). Each result goes
# to ${OUT:-/tmp/sk-d1} (a test log and a JSON file), a summary to stdout.
# usage: bash runtime/bench/run_d1.sh BUILD
set -u
B=${1:?usage: run_d1.sh BUILD}
R=${OUT:-/tmp/sk-d1}
mkdir -p "$R"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$R/gpu.txt" 2>&1
status=0
for t in sparsek_runtime_mgpu_test sparsek_runtime_cache_gpu_test; do
  (cd "$B/test" && LD_LIBRARY_PATH=.. timeout 300 "./$t" >"$R/$t.txt" 2>&1) ||
    status=1
done
LD_LIBRARY_PATH=$B timeout 60 "$B/bench/sparsek_runtime_decode_bench" \
  --seqs 256 >"$R/d1_256.json" 2>&1 || status=1
LD_LIBRARY_PATH=$B timeout 60 "$B/bench/sparsek_runtime_decode_bench" \
  --seqs 1 --verify-seqs 0 >"$R/d1_1.json" 2>&1 || status=1
LD_LIBRARY_PATH=$B timeout 120 "$B/bench/sparsek_runtime_prompt_fill_bench" \
  >"$R/prompt_fill.json" 2>&1 || status=1
cat "$R/gpu.txt"
for f in "$R"/*test.txt; do
  echo "$(basename "$f"): $(grep -E '^\[  PASSED|^\[  FAILED' "$f" | tr '\n' ' ')"
done
for f in "$R"/*.json; do
  echo "$(basename "$f"): $(grep -oE '"(median_us|back_to_back_us_per_step|empty_kernel_us|two_empty_kernels_us|verified_against_cpu_seqs|median_ms)": [0-9.]+' "$f" | tr '\n' ' ')"
done
exit $status
