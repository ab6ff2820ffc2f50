#!/bin/bash
# Runs every fuzz target (or those named) for SECONDS each, one after the other, at the lowest
# CPU priority, then prints a table of executions and findings per target.
#   fuzz/run.sh [-j JOBS] SECONDS [TARGET...]
# Findings (crashes, timeouts, out-of-memory) are kept in fuzz/artifacts/<target>/; each one
# must become a regression test in the normal test suite. Exit status 1 when any target found
# something or failed to run.
set -euo pipefail
cd "$(dirname "$0")"
jobs=1
if [ "${1:-}" = -j ]; then jobs=$2; shift 2; fi
secs=${1:?usage: fuzz/run.sh [-j JOBS] SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
[ -d corpus ] || ./seeds.sh >/dev/null
for t in "${targets[@]}"; do
    nice -n 19 cargo +nightly fuzz build -O "$t" 2>&1 | tail -1 >&2
done
parallel=()
[ "$jobs" -le 1 ] || parallel=(-jobs="$jobs" -workers="$jobs")
mkdir -p logs
status=0
rows=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(ls "artifacts/$t" | wc -l)
    log=logs/$t.log
    # -rss_limit_mb: the targets refuse large inputs themselves; more memory is a finding.
    nice -n 19 cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=30 "${parallel[@]}" \
        -print_final_stats=1 >"$log" 2>&1 && rc=0 || rc=$?
    # With -jobs, libFuzzer writes one fuzz-N.log per job.
    execs=$({ cat "$log"; cat fuzz-*.log 2>/dev/null || true; } \
        | sed -n 's/^stat::number_of_executed_units: *//p' | awk '{s+=$1} END {print s+0}')
    rm -f fuzz-*.log
    found=$(( $(ls "artifacts/$t" | wc -l) - before ))
    corpus=$(ls "corpus/$t" | wc -l)
    if [ "$found" -gt 0 ] || [ "$rc" -ne 0 ]; then status=1; fi
    rows+=("$(printf '%-14s %12s %8s %9s %4s' "$t" "$execs" "$corpus" "$found" "$rc")")
done
printf '%-14s %12s %8s %9s %4s\n' target executions corpus findings rc
printf '%s\n' "${rows[@]}"
exit $status
