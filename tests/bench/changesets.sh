#!/usr/bin/env bash
# changesets.sh - changesets of 10 records against 10 single writes of the
# same records, back to back on one eddy standalone (storage.sync batch), both
# through the HTTP API (tests/bench/changesets.mjs is the load generator): a
# changeset is one request, one node operation, one storage batch and one
# acknowledgement; the 10 writes are one request whose operations run one
# after the other, each acknowledged once durable. Prints both runs and the
# ratio (records written per second, changesets / single writes).
#
# usage: tests/bench/changesets.sh [BUILD_DIR] [seconds per run (10)] [connections (8)]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-10}; conns=${3:-8}
tmp=$(mktemp -d)
source tests/bench/eddy-standalone.sh
trap 'kill -TERM ${EDDY_PID:-} 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
eddy_start "$build" "$tmp/data" "$tmp/log"
url="http://127.0.0.1:$EDDY_PORT/api"
single=$(node tests/bench/changesets.mjs --url "$url" --seconds "$secs" --connections "$conns" --records 10 --mode writes)
cs=$(node tests/bench/changesets.mjs --url "$url" --seconds "$secs" --connections "$conns" --records 10 --mode changeset)
echo "single writes: $single"
echo "changesets:    $cs"
node -e 'const [a, b] = process.argv.slice(1).map(JSON.parse)
console.log(`records/s: changesets ${b.records_per_s}, single writes ${a.records_per_s}, ratio ${(b.records_per_s / a.records_per_s).toFixed(2)}`)' "$single" "$cs"
