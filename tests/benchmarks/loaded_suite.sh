#!/usr/bin/env bash
# The whole test suite, N times in a row (default 3), while a CPU hog runs beside it: one busy
# Python loop per core. Proves that the tests wait on facts (SUBACKs, metrics, rows in InfluxDB)
# and that their time limits hold on a loaded machine.
#   tests/benchmarks/loaded_suite.sh [N] [pytest options...]
# Runs pytest as CI does (.ci/run -> deploy/quickstart.sh test: `.venv/bin/python -m pytest`
# with no options of its own; pyproject.toml holds the rest). Prints each run's wall time and
# pass/fail; exits non-zero if any run failed. Needs the development environment in place
# (`deploy/quickstart.sh test` sets it up). Takes about 10 minutes per run on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=${1:-3}
shift || true
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [N] [pytest options...]  (N: runs, default 3)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "no .venv: run deploy/quickstart.sh test once first" >&2
  exit 2
fi

hogs=()
stop_hogs() {
  local pid
  for pid in "${hogs[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${hogs[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  hogs=()
}
trap stop_hogs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cores=$(nproc)
for _ in $(seq "$cores"); do
  python3 -c 'while True: pass' &
  hogs+=("$!")
done
echo "CPU hog: ${#hogs[@]} busy loop(s) on $cores core(s) (pids ${hogs[*]})"

failed=0
results=()
for run in $(seq "$runs"); do
  echo "=== run $run of $runs ==="
  started=$(date +%s)
  if .venv/bin/python -m pytest "$@"; then
    verdict=pass
  else
    verdict=FAIL
    failed=$((failed + 1))
  fi
  elapsed=$(($(date +%s) - started))
  results+=("run $run: $verdict in $((elapsed / 60))m$((elapsed % 60))s")
  echo "${results[-1]}"
done

echo "=== summary (CPU hog on $cores core(s)) ==="
printf '%s\n' "${results[@]}"
if [ "$failed" -gt 0 ]; then
  echo "$failed of $runs run(s) failed"
  exit 1
fi
echo "all $runs run(s) passed"
