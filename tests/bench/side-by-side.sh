#!/usr/bin/env bash
# side-by-side.sh - the same eddy-bench scenarios against @deepstream/server
# 7.0.2 (installed in a scratch folder, never part of eddy), against eddy
# standalone, and against an eddy cluster (3 nodes, 2 brokers, the load split
# over both brokers), one after the other in one run. Prints a table with
# deepstream, eddy and the ratio, then the cluster's figures. Every run also
# goes, as one JSON line, to BUILD/bench-results.jsonl.
#
# usage: tests/bench/side-by-side.sh [BUILD_DIR] [seconds per run]
#   BENCH_CONNECTIONS=N  idle connections in the connections scenario (10000;
#                        at most the open-file limit minus 64)
#   BENCH_EDDY_ONLY=1    skip deepstream: eddy standalone and the cluster only (the
#                        cluster against standalone table, issue 19's figures)
# Exits 1 when eddy lost, reordered or refused anything in any run.
# eddy runs with limits.messageRate off (--message-rate 0): a load generator's
# connection sends more than the 10,000 messages a second a client may by
# default, and these runs measure the server (deepstream has no such limit).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-5}
conns=${BENCH_CONNECTIONS:-10000}
out=$build/bench-results.jsonl
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -f $tmp/cluster/cluster.yml ]] && bash cluster-tests/cluster.sh down --dir "$tmp/cluster" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" # every connection is a file descriptor, in the bench and in the server

source tests/bench/deepstream-scratch.sh
eddy_only=${BENCH_EDDY_ONLY:-0}
[[ $eddy_only == 1 ]] || scratch=$(deepstream_scratch "$build")

bench() { # LABEL URLS PIDS SCENARIO [options]: one run; a failed run is reported, not fatal
  local label=$1 urls=$2 ps=$3; shift 3
  "$build/eddy-bench" "$@" --url "$urls" --pid "$ps" --seconds "$secs" --label "$label" --json "$tmp/runs.jsonl" ||
    echo "side-by-side: eddy-bench $* against $label exited $?" >&2
}

run_scenarios() { # LABEL URLS PIDS
  bench "$@" events --rate 5000      # 20k deliveries/s (4 subscribers)
  bench "$@" events --rate 12500     # 50k deliveries/s
  bench "$@" events --rate 0         # as fast as delivered
  bench "$@" records --rate 2000     # 8k updates delivered/s
  bench "$@" records --rate 0
  bench "$@" rpc --inflight 1
  bench "$@" rpc --inflight 10
  bench "$@" connections --count "$conns" --source-ips $(( conns / 20000 + 2 )) --hold 1
}

if [[ $eddy_only != 1 ]]; then
  deepstream_start "$scratch" "$tmp/deepstream.log"
  run_scenarios deepstream "ws://127.0.0.1:$DS_PORT/deepstream" "$DS_PID"
  deepstream_stop
fi

eddy_start "$build" "$tmp/data" "$tmp/eddy.log"
run_scenarios eddy "ws://127.0.0.1:$EDDY_PORT/deepstream" "$EDDY_PID"
eddy_stop || exit 1

# the cluster: publishers, writers and callers alternate between the brokers,
# so deliveries cross brokers; CPU and memory are the sum of the 5 processes
bash cluster-tests/cluster.sh up --dir "$tmp/cluster" --nodes 3 --brokers 2 --bin "$build/eddy" -- --message-rate 0 >/dev/null
urls=$(paste -sd, "$tmp/cluster/brokers")
cpids=$(cat "$tmp"/cluster/node*.pid "$tmp"/cluster/broker*.pid | paste -sd,)
bench eddy-cluster "$urls" "$cpids" events --rate 12500
bench eddy-cluster "$urls" "$cpids" events --rate 0
bench eddy-cluster "$urls" "$cpids" records --rate 2000
bench eddy-cluster "$urls" "$cpids" records --rate 0
bench eddy-cluster "$urls" "$cpids" rpc --inflight 10
bash cluster-tests/cluster.sh down --dir "$tmp/cluster" >/dev/null

cat "$tmp/runs.jsonl" >>"$out"
python3 - "$tmp/runs.jsonl" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]

def load(r):
    s = r["scenario"]
    if s in ("events", "records"):
        return f'{s} ' + ("max" if r["rate"] == 0 else f'{r["rate"] * r["subscribers"] // 1000}k/s')
    if s == "rpc":
        return f'rpc {r["inflight"]} in flight'
    return f'{s} {r["count"]}'

MEASURES = {
    "events": [("deliveries_per_s", "deliveries/s"), ("cpu_s_per_million", "CPU s per 1M deliveries"),
               ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("rss_kib", "RSS KiB")],
    "rpc": [("calls_per_s", "calls/s"), ("cpu_s_per_million", "CPU s per 1M calls"), ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms")],
    "connections": [("establish_s", "seconds to establish"), ("kib_per_conn", "KiB per connection"),
                    ("server_cpu_s", "server CPU s to establish"), ("p99_ms", "event p99 ms")],
}
MEASURES["records"] = MEASURES["events"]
by = {}
for r in runs:
    by.setdefault(load(r), {})[r["label"]] = r

def cell(v):
    return f'{v:.2f}' if isinstance(v, float) and v < 100 else f'{v:,.0f}' if isinstance(v, (int, float)) else str(v)

def table(title, left, right):
    print(f'\n{title:40} {left:>16} {right:>16} {"ratio":>10}')
    for name, pair in by.items():
        a, b = pair.get(left), pair.get(right)
        if not a or not b:
            continue
        for key, what in MEASURES[a["scenario"]]:
            if key not in a or key not in b:
                continue
            ratio = b[key] / a[key] if a[key] else float("nan")
            print(f'  {name + " " + what:38} {cell(a[key]):>16} {cell(b[key]):>16} {ratio:>9.2f}x')
        bad = lambda r: f'{r.get("lost", 0)}/{r.get("reordered", 0)}/{r.get("bad", 0)}'
        print(f'  {name + " lost/reordered/bad":38} {bad(a):>16} {bad(b):>16}')

table("eddy standalone against deepstream", "deepstream", "eddy")
table("eddy cluster (3 nodes, 2 brokers)", "deepstream", "eddy-cluster")
table("eddy cluster (3 nodes, 2 brokers) against eddy standalone", "eddy", "eddy-cluster")
faults = [r for r in runs if r["label"] != "deepstream" and (r.get("lost", 0) or r.get("reordered", 0) or r.get("bad", 0))]
for r in faults:
    print(f'\nLOST/REORDERED/BAD: {r["label"]} {load(r)}: {r.get("lost", 0)}/{r.get("reordered", 0)}/{r.get("bad", 0)}')
sys.exit(1 if faults else 0)
PY
echo "(one JSON line per run appended to $out)"
