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
source tests/bench/eddy-standalone.sh
trap 'kill -TERM ${EDDY_PID:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
eddy_start "$build" "$tmp/data" "$tmp/log" --events-history "$events,0,^bench/" --events-history-max-bytes $((512 << 20))
"$build/bench_resume" "$EDDY_BACKENDS" "$events"
