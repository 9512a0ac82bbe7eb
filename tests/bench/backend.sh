#!/usr/bin/env bash
# backend.sh - runs bench_backend (libeddy round trips) against a fresh
# standalone server, and the websocket client's RPC round trips against the
# same server kind, so the two can be compared in one session.
# usage: tests/bench/backend.sh [BUILD_DIR] [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-3}
make -s BUILD="$build" "$build/bench_backend" >/dev/null
tmp=$(mktemp -d)
source tests/bench/eddy-standalone.sh
trap 'kill -TERM ${EDDY_PID:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
eddy_start "$build" "$tmp/data" "$tmp/log"
"$build/bench_backend" "$EDDY_BACKENDS" "$secs" 8
