#!/usr/bin/env bash
# tls.sh - what TLS on the websocket port costs: the same eddy-bench
# scenarios against eddy standalone with plain ws:// and with wss:// (a
# certificate made with openssl for the run), back to back. Prints
# deliveries/s, server CPU s per million deliveries and latency for both and
# the ratio; every run also goes, as one JSON line, to BUILD/bench-results.jsonl.
# (The cost of TLS on the cluster links is measured apart, with the cluster.)
#
# usage: tests/bench/tls.sh [BUILD_DIR] [seconds per run]
# Exits 1 when a run lost, reordered or refused anything.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-5}
out=$build/bench-results.jsonl
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
source tests/bench/eddy-standalone.sh

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
  -days 1 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null

bench() { # LABEL URL PID SCENARIO [options]
  local label=$1 url=$2 pid=$3; shift 3
  "$build/eddy-bench" "$@" --url "$url" --pid "$pid" --seconds "$secs" --label "$label" --json "$tmp/runs.jsonl" ||
    echo "tls.sh: eddy-bench $* against $label exited $?" >&2
}

run_scenarios() { # LABEL URL PID
  bench "$@" events --rate 12500     # 50k deliveries/s (4 subscribers)
  bench "$@" events --rate 0         # as fast as delivered
  bench "$@" records --rate 2000     # 8k updates delivered/s
  bench "$@" records --rate 0
}

eddy_start "$build" "$tmp/data-plain" "$tmp/plain.log"
run_scenarios plain "ws://127.0.0.1:$EDDY_PORT/deepstream" "$EDDY_PID"
eddy_stop || exit 1

eddy_start "$build" "$tmp/data-tls" "$tmp/tls.log" --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"
run_scenarios tls "wss://127.0.0.1:$EDDY_PORT/deepstream" "$EDDY_PID"
eddy_stop || exit 1

cat "$tmp/runs.jsonl" >>"$out"
python3 - "$tmp/runs.jsonl" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    load = f'{r["scenario"]} ' + ("max" if r["rate"] == 0 else f'{r["rate"] * r["subscribers"] // 1000}k/s')
    by.setdefault(load, {})[r["label"]] = r
print(f'\n{"TLS on the websocket port":40} {"ws://":>14} {"wss://":>14} {"ratio":>8}')
for load, pair in by.items():
    a, b = pair.get("plain"), pair.get("tls")
    if not a or not b:
        continue
    for key, what in [("deliveries_per_s", "deliveries/s"), ("cpu_s_per_million", "CPU s per 1M deliveries"),
                      ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")]:
        if key in a and key in b:
            ratio = b[key] / a[key] if a[key] else float("nan")
            print(f'  {load + " " + what:38} {a[key]:>14,.2f} {b[key]:>14,.2f} {ratio:>7.2f}x')
bad = [r for r in runs if r.get("lost", 0) or r.get("reordered", 0) or r.get("bad", 0)]
for r in bad:
    print(f'LOST/REORDERED/BAD: {r["label"]} {r["scenario"]}: {r.get("lost", 0)}/{r.get("reordered", 0)}/{r.get("bad", 0)}')
sys.exit(1 if bad else 0)
PY
