#!/usr/bin/env bash
# run.sh - runs each libFuzzer target for SECONDS from its seed corpus
# (tests/fuzz/corpus/<target>/, read only) into a working corpus in
# BUILD/corpus/<target>/, where what it finds stays. A crash, a leak, a
# timeout, an out-of-memory or a sanitizer report stops that target with its
# reproducer in BUILD/artifacts/<target>/ and fails the run (after the other
# targets have had their turn). Prints each target's last status line
# (executions, cov, ft, corpus, exec/s) and the end of the log of a failed one.
# FUZZ_JOBS targets run at once (default 1; each still gets SECONDS).
#
# usage: tests/fuzz/run.sh BUILD SECONDS TARGET...
set -uo pipefail
cd "$(dirname "$0")/../.."
build=$1
seconds=$2
shift 2
jobs=${FUZZ_JOBS:-1}
mkdir -p "$build/tmp"

run_one() {
  local t=$1 corpus=$build/corpus/$1 artifacts=$build/artifacts/$1 log=$build/$1.log
  mkdir -p "$corpus" "$artifacts" "$build/tmp/$t"
  local opts=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -print_final_stats=1
              -artifact_prefix="$artifacts/")
  case $t in
    fuzz_frame) opts+=(-max_len=8192) ;;   # room for a 4 KiB name or correlation id
    fuzz_json)  opts+=(-max_len=4096) ;;
  esac
  local start rc
  start=$(date +%s)
  # TMPDIR: fuzz_frame's RocksDB folder and fuzz_config's file, under BUILD
  TMPDIR=$PWD/$build/tmp/$t UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    "$build/$t" "${opts[@]}" "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  echo "$rc $(( $(date +%s) - start ))" >"$build/$t.status"
}

echo "# fuzz: ${seconds}s each, $jobs at a time: $*"
running=0
for t in "$@"; do
  rm -f "$build/$t.status"
  run_one "$t" &
  running=$((running + 1))
  if [[ $running -ge $jobs ]]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

failed=()
for t in "$@"; do
  log=$build/$t.log
  read -r rc took <"$build/$t.status" 2>/dev/null || { rc=1; took=?; }
  # libFuzzer's last status line: #runs DONE/NEW/... cov: ft: corp: exec/s: rss:
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "$t: ${last:-no status line} | runs=${runs:-?} in ${took}s, exit $rc"
  if [[ $rc != 0 ]]; then
    echo "$t: FAILED; from $log (progress lines left out):" >&2
    grep -v -E '^#[0-9]+|NEW_FUNC|^INFO: ' "$log" | tail -80 >&2
    ls -l "$build/artifacts/$t" >&2
    failed+=("$t")
  fi
done
rm -rf "$build/tmp"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: findings in: ${failed[*]} (reproducers in $build/artifacts/)" >&2
  exit 1
fi
echo "fuzz: $# targets, no finding"
