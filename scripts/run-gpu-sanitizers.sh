#!/usr/bin/env bash
# On the GPU machine (an H100: the H200 machines refuse the tool): runs units
# of the GPU suite under compute-sanitizer tools, one process per (tool, unit),
# several at a time on the one GPU, each under a timeout, and writes
# OUT_DIR/summary.md: a row per run (tool, unit, result, errors, tests,
# seconds) and the first reports of every run that did not pass. A run passes
# when the tool exits 0 (errors make it exit 86, --error-exitcode) AND its log
# holds ERROR SUMMARY lines that add up to 0. Exits non-zero if a run failed,
# timed out or was not started before the deadline.
#
# usage: scripts/run-gpu-sanitizers.sh [options] [UNIT...]
#   -t TOOLS    comma-separated memcheck,racecheck,synccheck (default: all)
#   -j N        runs at a time (default 4)
#   -T SECONDS  timeout of one run (default 300)
#   -D SECONDS  start no run later than this after the script starts (and cut
#               each run's timeout to fit), so that the summary is written
#               inside a caller's time limit (default: no deadline)
#   -a DIR      GPU artifacts, scripts/build-gpu-artifacts.sh (default
#               build/gpu-artifacts)
#   -b DIR      the build tree holding runtime/test (default build)
#   -o DIR      logs (DIR/runs) and DIR/summary.md (default
#               build/sanitizer-logs)
#   -x GLOB     leave out the units matching GLOB (repeatable)
#   -l          print the units and exit
# UNIT (default: rt py):
#   py              one unit per python/test/gpu/test_*.py
#   py:NODE         a pytest node of python/test/gpu (test_x.py[::test_y])
#   py:FILE%I/N     shard I (1..N) of FILE's collected tests: every N-th test
#                   from the I-th, so that a long file runs in N parallel runs
#   rt              one unit per test of the runtime's GPU test binaries
#   rt:BIN          one unit per test of build/runtime/test/sparsek_runtime_BIN
#   rt:BIN:FILTER   one run of that binary with --gtest_filter=FILTER
# racecheck leaves out the units matching $SANITIZER_RACECHECK_LARGE (default:
# the 40000-token benchmark-shape prompts, whose 9000- and 12000-token
# siblings run the same kernels and barriers); SANITIZER_RACECHECK_LARGE=''
# keeps them. SANITIZER_COMMIT names the commit in the summary where the tree
# has no git history. COMPUTE_SANITIZER names the tool where it is not on PATH or
# under /usr/local/cuda/bin; PYTHON the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

tools=memcheck,racecheck,synccheck
jobs=4
timeout_s=300
deadline_s=
artifacts=build/gpu-artifacts
build=build
out=build/sanitizer-logs
list_only=0
excludes=()
while getopts "t:j:T:D:a:b:o:x:lh" opt; do
  case $opt in
  t) tools=$OPTARG ;;
  j) jobs=$OPTARG ;;
  T) timeout_s=$OPTARG ;;
  D) deadline_s=$OPTARG ;;
  a) artifacts=$OPTARG ;;
  b) build=$OPTARG ;;
  o) out=$OPTARG ;;
  x) excludes+=("$OPTARG") ;;
  l) list_only=1 ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- rt py
racecheck_large=${SANITIZER_RACECHECK_LARGE-rt:cache_gpu_test:Prompts/*k2048_w512}

# The runtime binaries that exercise the GPU (the other runtime tests are
# host-only).
rt_gpu_bins=(cache_gpu_test mgpu_test cache_graph_test)
rt_dir=$(cd "$build/runtime" 2> /dev/null && pwd || echo "$root/$build/runtime")

# Tests of one gtest binary as Suite.Test names (parameter comments dropped).
gtest_names() {
  LD_LIBRARY_PATH=$rt_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
    "$rt_dir/test/sparsek_runtime_$1" --gtest_list_tests |
    awk '/^[^ ]/ && /\.$/ {suite = $1; next} /^  / && suite != "" {print suite $1}'
}

units=()
for spec in "$@"; do
  case $spec in
  py)
    for f in python/test/gpu/test_*.py; do units+=("py:${f#python/test/gpu/}"); done
    ;;
  py:*) units+=("$spec") ;;
  rt) for b in "${rt_gpu_bins[@]}"; do
    while read -r t; do units+=("rt:$b:$t"); done < <(gtest_names "$b")
  done ;;
  rt:*:*) units+=("$spec") ;;
  rt:*) while read -r t; do units+=("rt:${spec#rt:}:$t"); done < <(gtest_names "${spec#rt:}") ;;
  *)
    echo "run-gpu-sanitizers: unknown unit '$spec' (py, py:NODE, rt, rt:BIN, rt:BIN:FILTER)" >&2
    exit 2
    ;;
  esac
done
kept=()
for u in "${units[@]}"; do
  skip=0
  for g in "${excludes[@]}"; do
    # shellcheck disable=SC2053 # a glob on purpose
    [[ $u == $g ]] && skip=1
  done
  [ $skip -eq 1 ] || kept+=("$u")
done
units=("${kept[@]}")
if [ ${#units[@]} -eq 0 ]; then
  echo "run-gpu-sanitizers: no unit left to run" >&2
  exit 2
fi
if [ $list_only -eq 1 ]; then
  printf '%s\n' "${units[@]}"
  exit 0
fi

sanitizer=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
if [ ! -x "$sanitizer" ]; then
  echo "run-gpu-sanitizers: no compute-sanitizer (set COMPUTE_SANITIZER)" >&2
  exit 1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/runs"
mkdir -p "$out/runs"
export SPARSEK_GPU_ARTIFACTS
SPARSEK_GPU_ARTIFACTS=$(cd "$artifacts" 2> /dev/null && pwd || echo "$root/$artifacts")
export SPARSEK_GPU_REQUIRED=1
start=$(date +%s)
export RGS_ROOT=$root RGS_OUT=$out RGS_RT_DIR=$rt_dir RGS_SANITIZER=$sanitizer \
  RGS_TIMEOUT=$timeout_s RGS_DEADLINE=${deadline_s:+$((start + deadline_s))} \
  RGS_PYTHON=${PYTHON:-python3}

# One (tool, unit) run; writes runs/NAME.tsv (tool, unit, result, errors,
# warnings, tests, seconds) next to NAME.log (the tool's report) and
# NAME.out (the test's output).
# shellcheck disable=SC2317 # called through xargs (export -f)
run_one() {
  local tool=$1 unit=$2
  local name
  name=$(printf '%s__%s' "$tool" "$unit" | tr -c 'A-Za-z0-9._-' '_')
  local base=$RGS_OUT/runs/$name
  local limit=$RGS_TIMEOUT
  if [ -n "$RGS_DEADLINE" ]; then
    local left=$((RGS_DEADLINE - $(date +%s)))
    if [ "$left" -lt 20 ]; then
      printf '%s\t%s\tnot run (deadline)\t-\t-\t-\t0\n' "$tool" "$unit" > "$base.tsv"
      return 0
    fi
    [ "$left" -ge "$limit" ] || limit=$left
  fi
  local flags=(--tool "$tool" --error-exitcode 86 --print-limit 100
    --require-cuda-init=no --log-file "$base.log")
  # This test provokes a driver error on purpose (a missing kernel name) and
  # checks the message; memcheck would report the API error it asked for.
  [[ $unit != *MgpuGpu.DriverErrorsNameTheCallAndTheCudaError ]] ||
    flags+=(--report-api-errors no)
  local t0 rc=0
  t0=$(date +%s)
  case $unit in
  py:*%*/*)
    # Collected without the tool (collection launches nothing), then run.
    local spec=${unit#py:}
    local file=${spec%\%*} shard=${spec##*%}
    local nodes=()
    mapfile -t nodes < <(cd "$RGS_ROOT/python" && "$RGS_PYTHON" -m pytest -q \
      -p no:cacheprovider --collect-only "test/gpu/$file" 2> /dev/null |
      grep '::' | awk -v i="${shard%/*}" -v n="${shard#*/}" '(NR - i) % n == 0')
    if [ ${#nodes[@]} -eq 0 ]; then
      echo "no test collected for $unit" > "$base.out"
      rc=2
    else
      (cd "$RGS_ROOT/python" && exec timeout -k 20 "$limit" "$RGS_SANITIZER" "${flags[@]}" \
        --target-processes all "$RGS_PYTHON" -m pytest -q -p no:cacheprovider -rs \
        "${nodes[@]}") > "$base.out" 2>&1 || rc=$?
    fi
    ;;
  py:*)
    (cd "$RGS_ROOT/python" && exec timeout -k 20 "$limit" "$RGS_SANITIZER" "${flags[@]}" \
      --target-processes all "$RGS_PYTHON" -m pytest -q -p no:cacheprovider -rs \
      "test/gpu/${unit#py:}") > "$base.out" 2>&1 || rc=$?
    ;;
  rt:*)
    local rest=${unit#rt:}
    local bin=${rest%%:*} filter=${rest#*:}
    (cd "$RGS_RT_DIR/test" &&
      LD_LIBRARY_PATH=$RGS_RT_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec timeout -k 20 \
        "$limit" "$RGS_SANITIZER" "${flags[@]}" "./sparsek_runtime_$bin" \
        --gtest_filter="$filter") > "$base.out" 2>&1 || rc=$?
    ;;
  esac
  local seconds=$(($(date +%s) - t0))
  local summaries errors warnings tests result
  # memcheck and synccheck end with "ERROR SUMMARY: N errors", racecheck
  # with "RACECHECK SUMMARY: H hazards displayed (N errors, W warnings)".
  summaries=$(grep -cE '(ERROR SUMMARY: [0-9]* error|RACECHECK SUMMARY: .*[0-9]* error)' \
    "$base.log" 2> /dev/null || true)
  summaries=${summaries:-0}
  errors=$( (grep -hoE 'ERROR SUMMARY: [0-9]* error|\([0-9]* error' "$base.log" 2> /dev/null || true) |
    grep -oE '[0-9]+ error' | awk '{s += $1} END {print s + 0}')
  # A run whose process never touched CUDA has nothing to check.
  local idle=0
  grep -q 'terminated before first instrumented API call' "$base.log" 2> /dev/null && idle=1
  warnings=-
  [ "$tool" != racecheck ] ||
    warnings=$( (grep -ho 'RACECHECK SUMMARY: .*[0-9]* warning' "$base.log" 2> /dev/null || true) |
      (grep -o '[0-9]* warning' || true) | awk '{s += $1} END {print s + 0}')
  if [ "${unit%%:*}" = py ]; then
    tests=$( (grep -E ' in [0-9.]+s' "$base.out" || true) | tail -n 1 | sed 's/=//g; s/ in [0-9.]*s.*//; s/^ *//')
  else
    tests=$(awk '/^\[  PASSED  \]/ {p = $4} /^\[  SKIPPED \]/ && /tests?,/ {s = $4}
      /^\[  FAILED  \]/ && /tests?,/ {f = $4}
      END {if (p != "" || f != "") printf "%d passed, %d skipped, %d failed", p, s, f}' "$base.out")
  fi
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    result="timeout (${limit} s)"
  elif [ "$rc" -ne 0 ]; then
    result="failed (exit $rc)"
  elif [ "$summaries" -eq 0 ] && [ "$idle" -eq 1 ]; then
    result="passed (no CUDA call)"
    errors=0
  elif [ "$summaries" -eq 0 ]; then
    result="failed (no ERROR SUMMARY)"
  elif [ "$errors" -ne 0 ]; then
    result=failed
  elif [ "${unit%%:*}" = rt ] && [[ ${tests:-} == "0 passed, 0 skipped"* ]]; then
    result="failed (no test ran)"
  elif [[ ${tests:-} == "0 passed, "[1-9]* ]]; then
    result=skipped # e.g. a no-device test on the GPU machine
  else
    result=passed
  fi
  [ "$summaries" -gt 0 ] || [ "$idle" -eq 1 ] || errors='?'
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$unit" "$result" "$errors" \
    "$warnings" "${tests:-no result}" "$seconds" > "$base.tsv"
  printf '%-9s %-70s %s, %s errors, %s s\n' "$tool" "$unit" "$result" "$errors" "$seconds"
}
export -f run_one

runs=()
IFS=, read -r -a tool_list <<< "$tools"
for tool in "${tool_list[@]}"; do
  case $tool in memcheck | racecheck | synccheck | initcheck) ;; *)
    echo "run-gpu-sanitizers: unknown tool '$tool'" >&2
    exit 2
    ;;
  esac
  for u in "${units[@]}"; do
    # shellcheck disable=SC2053 # a glob on purpose
    if [ "$tool" = racecheck ] && [ -n "$racecheck_large" ] && [[ $u == $racecheck_large ]]; then
      name=$(printf '%s__%s' "$tool" "$u" | tr -c 'A-Za-z0-9._-' '_')
      printf '%s\t%s\tleft out (size; SANITIZER_RACECHECK_LARGE)\t-\t-\t-\t0\n' \
        "$tool" "$u" > "$out/runs/$name.tsv"
      continue
    fi
    runs+=("$tool"$'\t'"$u")
  done
done

echo "run-gpu-sanitizers: ${#runs[@]} runs, $jobs at a time, ${timeout_s} s each${deadline_s:+, deadline ${deadline_s} s}"
# shellcheck disable=SC2016 # expanded by the inner shell
printf '%s\n' "${runs[@]}" |
  xargs -d '\n' -P "$jobs" -I{} bash -c 'IFS=$'"'"'\t'"'"' read -r t u <<< "$1"; run_one "$t" "$u"' _ {} ||
  true

summary=$out/summary.md
{
  echo "# compute-sanitizer over the GPU suite"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit ${SANITIZER_COMMIT:-$(git rev-parse --short HEAD 2> /dev/null || echo unknown)}," \
    "$(nvidia-smi -L 2> /dev/null | head -n 1 | sed 's/ (UUID.*//' || echo 'no nvidia-smi')," \
    "$("$sanitizer" --version | tail -n 1)."
  echo "Tools $tools, $jobs runs at a time, ${timeout_s} s per run${deadline_s:+, deadline ${deadline_s} s}."
  echo "A run passes when the tool exits 0 (--error-exitcode 86) and its ERROR SUMMARY (racecheck: RACECHECK SUMMARY) error counts add up to 0."
  echo
  echo "| tool | unit | result | errors | racecheck warnings | tests | s |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  sort -t $'\t' -k1,1 -k2,2 "$out"/runs/*.tsv |
    awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7}'
  echo
  sort -t $'\t' -k1,1 "$out"/runs/*.tsv | awk -F'\t' '
    {n[$1]++; r = $3; sub(/ \(.*/, "", r); c[$1 "\t" r]++}
    END {for (t in n) {line = t ":"; for (k in c) {split(k, a, "\t");
         if (a[1] == t) line = line " " c[k] " " a[2] ","} sub(/,$/, "", line); print "- " line}}' |
    sort
  bad=$(awk -F'\t' '$3 !~ /^(passed|skipped|left out)/ {print FILENAME}' "$out"/runs/*.tsv)
  if [ -n "$bad" ]; then
    echo
    echo "## First reports of the runs that did not pass"
    for f in $bad; do
      echo
      echo "### $(cut -f1,2 "$f" | tr '\t' ' ')"
      echo
      log=${f%.tsv}.log
      if [ -s "$log" ]; then
        grep '^=========' "$log" |
          grep -v -e 'COMPUTE-SANITIZER' -e 'ERROR SUMMARY' -e '^=========$' |
          head -n 12 | sed 's/^/    /' || true
      fi
      echo "    -- test output (last lines):"
      tail -n 5 "${f%.tsv}.out" 2> /dev/null | sed 's/^/    /' || true
    done
  fi
} > "$summary"
cat "$summary"
echo "summary: $summary (logs: $out/runs)"
if awk -F'\t' '$3 !~ /^(passed|skipped|left out)/ {bad = 1} END {exit !bad}' "$out"/runs/*.tsv; then
  exit 1
fi
exit 0
