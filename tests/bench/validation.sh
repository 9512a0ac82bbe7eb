#!/usr/bin/env bash
# validation.sh - durable writes through backend validators (bench_validate):
# unvalidated, through 1 validator and through 4, back to back on one fresh
# standalone server (storage.sync batch). Prints writes per second and the
# ratios to the unvalidated run.
# usage: tests/bench/validation.sh [BUILD_DIR] [seconds per phase (5)] [threads (8)]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-5}; threads=${3:-8}
make -s BUILD="$build" "$build/bench_validate" >/dev/null
tmp=$(mktemp -d)
source tests/bench/eddy-standalone.sh
trap 'kill -TERM ${EDDY_PID:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
eddy_start "$build" "$tmp/data" "$tmp/log"
"$build/bench_validate" "$EDDY_BACKENDS" "$secs" "$threads"
