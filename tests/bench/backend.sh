#!/usr/bin/env bash
# backend.sh - runs bench_backend (libeddy round trips) against a fresh
# standalone server, and the websocket client's RPC round trips against the
# same server kind, so the two can be compared in one session.
# usage: tests/bench/backend.sh [BUILD_DIR] [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-3}
tmp=$(mktemp -d)
"$build/eddy" standalone --host 127.0.0.1 --port 0 --data "$tmp/data" >/dev/null 2>"$tmp/log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 200); do grep -q broker-listening "$tmp/log" && break; sleep 0.05; done
backends=$(sed -n 's/.*backends-listening request=\([^ ]*\).*/\1/p' "$tmp/log")
"$build/bench_backend" "$backends" "$secs" 8
