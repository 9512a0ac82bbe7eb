#!/usr/bin/env bash
# events.sh - eddy-bench's events scenario against a fresh eddy standalone:
# as fast as the publishers' sockets take, then open loop at 20k and 40k
# deliveries/s (4 subscribers), with the server's CPU and memory.
# usage: tests/bench/events.sh [BUILD_DIR] [seconds] [JSON_FILE]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-5}; json=${3:-$build/bench-events.jsonl}
tmp=$(mktemp -d)
"$build/eddy" standalone --host 127.0.0.1 --port 0 --data "$tmp/data" >/dev/null 2>"$tmp/log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 200); do grep -q broker-listening "$tmp/log" && break; sleep 0.05; done
url="ws://127.0.0.1:$(sed -n 's/.*broker-listening port=\([0-9]*\).*/\1/p' "$tmp/log")/deepstream"
for rate in 0 5000 10000; do
  "$build/eddy-bench" events --url "$url" --pid "$pid" --seconds "$secs" --rate "$rate" --label "eddy" --json "$json"
done
echo "(results appended to $json)"
