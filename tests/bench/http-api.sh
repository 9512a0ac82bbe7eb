#!/usr/bin/env bash
# http-api.sh - deepstream's HTTP API (POST /api) side by side: requests/s
# with one event emit per request and with a batch of 100, against
# @deepstream/server 7.0.2 (installed in a scratch folder, never part of eddy)
# and then against eddy standalone, back to back with the same connections
# and duration (tests/bench/http-api.mjs is the load generator). Before the
# measured runs, a short run on each server with a websocket subscriber to the
# event name checks that the emits are delivered, not only acknowledged. Prints
# one table with both servers and the eddy/deepstream ratio; every run also
# goes, as one JSON line, to BUILD/bench-results.jsonl.
#
# usage: tests/bench/http-api.sh [BUILD_DIR] [seconds per run (10)] [connections (16)]
# Exits 1 when any request failed on either server or a check run delivered nothing.
# eddy runs with limits.messageRate off (--message-rate 0), as in side-by-side.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-10}; conns=${3:-16}
check_secs=2
out=$build/bench-results.jsonl
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

source tests/bench/deepstream-scratch.sh
scratch=$(deepstream_scratch "$build")

failed=0
load() { # LABEL PORT PID [options]: one run; a failed run is reported and fails the script at the end
  local label=$1 port=$2 pid=$3; shift 3
  node tests/bench/http-api.mjs --url "http://127.0.0.1:$port/api" --pid "$pid" --connections "$conns" \
    --label "$label" --json "$tmp/runs.jsonl" "$@" || { echo "http-api: a run against $label failed" >&2; failed=1; }
}
run_scenarios() { # LABEL PORT PID
  load "$@" --batch 100 --seconds "$check_secs" --subscribe "ws://127.0.0.1:$2/deepstream"
  load "$@" --batch 1 --seconds "$secs"
  load "$@" --batch 100 --seconds "$secs"
}

deepstream_start "$scratch" "$tmp/deepstream.log"
run_scenarios deepstream "$DS_PORT" "$DS_PID"
deepstream_stop

eddy_start "$build" "$tmp/data" "$tmp/eddy.log"
run_scenarios eddy "$EDDY_PORT" "$EDDY_PID"
eddy_stop || exit 1

cat "$tmp/runs.jsonl" >>"$out"
python3 - "$tmp/runs.jsonl" "$conns" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    name = f'batch {r["batch"]}' + (', 1 subscriber (check)' if 'delivered' in r else '')
    by.setdefault(name, {})[r["label"]] = r

MEASURES = [("requests_per_s", "requests/s"), ("ops_per_s", "emits/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
            ("server_cpu_s_per_1000", "server CPU s per 1000 requests"),
            ("client_cpu_s_per_1000", "client CPU s per 1000 requests")]

def cell(v):
    return f'{v:.3f}' if isinstance(v, float) and v < 1 else f'{v:.2f}' if isinstance(v, float) and v < 100 \
        else f'{v:,.0f}' if isinstance(v, (int, float)) else str(v)

print(f'\n{"HTTP API, " + sys.argv[2] + " keep-alive connections":66} {"deepstream":>14} {"eddy":>14} {"eddy/ds":>9}')
for name, pair in sorted(by.items(), key=lambda kv: ('check' in kv[0], kv[1].get('eddy', {}).get('batch', 0))):
    a, b = pair.get("deepstream"), pair.get("eddy")
    if not a or not b:
        continue
    for key, what in MEASURES:
        ratio = b[key] / a[key] if a.get(key) else float("nan")
        print(f'  {name + ": " + what:64} {cell(a[key]):>14} {cell(b[key]):>14} {ratio:>8.2f}x')
    print(f'  {name + ": failed requests":64} {a["failed"]:>14} {b["failed"]:>14}')
    print(f'  {name + ": connections opened":64} {a["new_connections"]:>14} {b["new_connections"]:>14}')
    if 'delivered' in a:
        d = lambda r: f'{r["delivered"]}/{r["emitted"]}'
        print(f'  {name + ": delivered/emitted":64} {d(a):>14} {d(b):>14}')
PY
echo "(one JSON line per run appended to $out)"
exit $failed
