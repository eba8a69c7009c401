#!/usr/bin/env bash
# On the GPU machine (an H100: the H200 machines refuse the tool): runs the
# GPU suite (scripts/run-gpu-tests.sh over the carried artifacts) under
# compute-sanitizer's memcheck, racecheck and synccheck, one tool at a time,
# and writes each tool's log plus summary.txt (errors per tool, pytest's
# closing line) to OUT_DIR. Exits non-zero if a tool reports an error or a
# test fails.
#
# usage: scripts/run-gpu-sanitizers.sh [ARTIFACTS [OUT_DIR [pytest args...]]]
#   ARTIFACTS  default build/gpu-artifacts (scripts/build-gpu-artifacts.sh)
#   OUT_DIR    default sanitizer-logs
# COMPUTE_SANITIZER names the tool where it is not on PATH or under
# /usr/local/cuda/bin; SANITIZER_TOOLS picks tools (default all three).
set -euo pipefail
cd "$(dirname "$0")/.."
artifacts=${1:-build/gpu-artifacts}
out=$(mkdir -p "${2:-sanitizer-logs}" && cd "${2:-sanitizer-logs}" && pwd)
shift $(( $# < 2 ? $# : 2 ))

sanitizer=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
if [ ! -x "$sanitizer" ]; then
  echo "run-gpu-sanitizers: no compute-sanitizer (set COMPUTE_SANITIZER)" >&2
  exit 1
fi

summary=$out/summary.txt
{
  echo "compute-sanitizer over the GPU suite, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit $(git rev-parse --short HEAD 2> /dev/null || echo unknown)"
  nvidia-smi -L 2> /dev/null || true
  "$sanitizer" --version | tail -n 1
} > "$summary"

failed=0
for tool in ${SANITIZER_TOOLS:-memcheck racecheck synccheck}; do
  log=$out/$tool.log
  echo "== $tool"
  # The tool's own report goes to $log; pytest's output to $tool.pytest.log.
  # --error-exitcode makes any error fail the run even if the tests pass.
  set +e
  SPARSEK_TEST_LAUNCHER="$sanitizer --tool $tool --target-processes all --error-exitcode 86 \
    --print-limit 200 --log-file $log" \
    bash scripts/run-gpu-tests.sh "$artifacts" "$@" > "$out/$tool.pytest.log" 2>&1
  rc=$?
  set -e
  errors=$( (grep -ho 'ERROR SUMMARY: [0-9]* error' "$log" 2> /dev/null || true) |
           awk '{s += $3} END {print s + 0}')
  tests=$( (grep -E '[0-9]+ (passed|failed|errors?)' "$out/$tool.pytest.log" || true) | tail -n 1)
  printf '%-10s errors: %s; exit %s; pytest: %s\n' "$tool" "$errors" "$rc" "${tests:-no result}" |
    tee -a "$summary"
  [ "$rc" -eq 0 ] && [ "$errors" -eq 0 ] || failed=1
done
echo "summary: $summary"
exit $failed
