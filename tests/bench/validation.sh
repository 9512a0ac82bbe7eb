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
"$build/eddy" standalone --host 127.0.0.1 --port 0 --data "$tmp/data" >/dev/null 2>"$tmp/log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 200); do grep -qs broker-listening "$tmp/log" && break; sleep 0.05; done
backends=$(sed -n 's/.*backends-listening request=\([^ ]*\).*/\1/p' "$tmp/log")
[[ -n $backends ]] || { cat "$tmp/log"; echo "validation.sh: eddy did not start" >&2; exit 1; }
"$build/bench_validate" "$backends" "$secs" "$threads"
