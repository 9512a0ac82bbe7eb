#!/usr/bin/env bash
# links-tls.sh - what TLS on the cluster's links costs: the same eddy-bench
# scenarios through a cluster (3 nodes, 2 brokers, the load split over both
# brokers, so deliveries cross the links) with plain tcp:// links and with
# tls+tcp:// links (cluster-tests/cluster.sh --tls), back to back, ROUNDS times
# alternating (plain, tls, plain, tls, ...) so that the machine's noise shows
# as the spread between rounds. Prints, per scenario, the median of each
# measure for both and the ratio; every run also goes, as one JSON line, to
# BUILD/bench-results.jsonl (labels eddy-cluster-tcp, eddy-cluster-tls).
#
# usage: tests/bench/links-tls.sh [BUILD_DIR] [seconds per run] [rounds]
# Exits 1 when a run lost, reordered or refused anything.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-5}; rounds=${3:-2}
out=$build/bench-results.jsonl
tmp=$(mktemp -d)
cleanup() {
  [[ -f $tmp/cluster/cluster.yml ]] && bash cluster-tests/cluster.sh down --dir "$tmp/cluster" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

bench() { # LABEL URLS PIDS SCENARIO [options]: one run; a failed run is reported, not fatal
  local label=$1 urls=$2 ps=$3; shift 3
  "$build/eddy-bench" "$@" --url "$urls" --pid "$ps" --seconds "$secs" --label "$label" --json "$tmp/runs.jsonl" \
    >/dev/null || echo "links-tls: eddy-bench $* against $label exited $?" >&2
}

cluster_round() { # LABEL [--tls]
  local label=$1; shift
  rm -rf "$tmp/cluster"
  bash cluster-tests/cluster.sh up --dir "$tmp/cluster" --nodes 3 --brokers 2 "$@" --bin "$build/eddy" -- --message-rate 0 >/dev/null
  local urls cpids
  urls=$(paste -sd, "$tmp/cluster/brokers")
  cpids=$(cat "$tmp"/cluster/node*.pid "$tmp"/cluster/broker*.pid | paste -sd,)
  bench "$label" "$urls" "$cpids" events --rate 12500   # 50k deliveries/s: CPU per delivery at a fixed load
  bench "$label" "$urls" "$cpids" events --rate 0       # as fast as delivered
  bench "$label" "$urls" "$cpids" records --rate 2000   # 8k updates delivered/s
  bench "$label" "$urls" "$cpids" records --rate 0
  bash cluster-tests/cluster.sh down --dir "$tmp/cluster" >/dev/null
}

for r in $(seq "$rounds"); do
  echo "links-tls: round $r of $rounds (plain, then TLS)" >&2
  cluster_round eddy-cluster-tcp
  cluster_round eddy-cluster-tls --tls
done

cat "$tmp/runs.jsonl" >>"$out"
python3 - "$tmp/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]

def load(r):
    return f'{r["scenario"]} ' + ("max" if r["rate"] == 0 else f'{r["rate"] * r["subscribers"] // 1000}k/s')

by = {}
for r in runs:
    by.setdefault(load(r), {}).setdefault(r["label"], []).append(r)
MEASURES = [("deliveries_per_s", "deliveries/s"), ("cpu_s_per_million", "CPU s per 1M deliveries"),
            ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")]
print(f'\n{"cluster, 3 nodes + 2 brokers":38} {"tcp:// links":>22} {"tls+tcp:// links":>22} {"tls/tcp":>8}')
for name, pair in by.items():
    a, b = pair.get("eddy-cluster-tcp", []), pair.get("eddy-cluster-tls", [])
    if not a or not b:
        continue
    for key, what in MEASURES:
        va, vb = [r[key] for r in a if key in r], [r[key] for r in b if key in r]
        if not va or not vb:
            continue
        ma, mb = statistics.median(va), statistics.median(vb)
        spread = lambda v: f'{min(v):,.2f}-{max(v):,.2f}' if max(v) < 100 else f'{min(v):,.0f}-{max(v):,.0f}'
        cell = lambda m, v: (f'{m:,.2f}' if m < 100 else f'{m:,.0f}') + f' ({spread(v)})'
        print(f'  {name + " " + what:36} {cell(ma, va):>22} {cell(mb, vb):>22} {mb / ma if ma else float("nan"):>7.2f}x')
faults = [r for r in runs if r.get("lost", 0) or r.get("reordered", 0) or r.get("bad", 0)]
for r in faults:
    print(f'LOST/REORDERED/BAD: {r["label"]} {load(r)}: {r.get("lost", 0)}/{r.get("reordered", 0)}/{r.get("bad", 0)}')
print('(median of the rounds, their range in brackets)')
sys.exit(1 if faults else 0)
PY
echo "(one JSON line per run appended to $out)"
