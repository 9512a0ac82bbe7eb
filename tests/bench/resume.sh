#!/usr/bin/env bash
# resume.sh - the resume time of a backend after N missed events (default
# 100000): bench_resume against a fresh standalone server whose events.history
# keeps N events of each bench/ name, beside the time to receive N events live
# on the same server (the baseline; their ratio is the figure to report).
# usage: tests/bench/resume.sh [BUILD_DIR] [events]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; events=${2:-100000}
make -s BUILD="$build" "$build/bench_resume" >/dev/null
tmp=$(mktemp -d)
"$build/eddy" standalone --host 127.0.0.1 --port 0 --data "$tmp/data" \
  --events-history "$events,0,^bench/" --events-history-max-bytes $((512 << 20)) >/dev/null 2>"$tmp/log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 200); do grep -qs broker-listening "$tmp/log" && break; sleep 0.05; done
backends=$(sed -n 's/.*backends-listening request=\([^ ]*\).*/\1/p' "$tmp/log")
"$build/bench_resume" "$backends" "$events"
