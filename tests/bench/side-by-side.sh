#!/usr/bin/env bash
# side-by-side.sh - the same eddy-bench scenarios against @deepstream/server
# 7.0.2 (installed in a scratch folder, never part of eddy) and against eddy
# standalone, one after the other in one run, then a table with both and the
# ratio. Results also go, one JSON line per run, to BUILD/bench-results.jsonl.
#
# usage: tests/bench/side-by-side.sh [BUILD_DIR] [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-5}
out=$build/bench-results.jsonl
scratch=$build/deepstream-scratch
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT

# deepstream 7.0.2 from npm; its optional uWebSockets.js points outside the
# registry, so it is overridden with an empty package (DEPENDENCIES.md)
if [[ ! -d $scratch/node_modules/@deepstream/server ]]; then
  mkdir -p "$scratch/stub-uws"
  echo '{"name":"uWebSockets.js","version":"0.0.0"}' >"$scratch/stub-uws/package.json"
  echo '{"name":"ds-scratch","private":true,"dependencies":{"@deepstream/server":"7.0.2"},"overrides":{"uWebSockets.js":"file:./stub-uws"}}' >"$scratch/package.json"
  (cd "$scratch" && npm install --no-audit --no-fund >/dev/null)
fi
rm -rf "$scratch/conf" && cp -r "$scratch/node_modules/@deepstream/server/conf" "$scratch/conf"
# its shipped config logs at debug level unless the logger is told otherwise: unfair to it
python3 - "$scratch/conf/config.yml" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
s = s.replace("  options:\n    colors: true", "  options:\n    colors: false\n    logLevel: INFO", 1)
open(p, 'w').write(s)
PY
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listener_pid() { ss -ltnp 2>/dev/null | grep ":$1 " | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }

run_scenarios() { # LABEL URL PID
  for rate in 5000 10000 0; do
    "$build/eddy-bench" events --url "$2" --pid "$3" --seconds "$secs" --rate "$rate" --label "$1" --json "$tmp/runs.jsonl"
  done
}

port=$(free_port)
(cd "$scratch" && exec node node_modules/@deepstream/server/dist/bin/deepstream start -c conf/config.yml \
  --host 127.0.0.1 --port "$port" >"$tmp/deepstream.log" 2>&1 </dev/null) &
pids+=($!)
for _ in $(seq 200); do [[ -n $(listener_pid "$port") ]] && break; sleep 0.1; done
run_scenarios deepstream "ws://127.0.0.1:$port/deepstream" "$(listener_pid "$port")"
kill -TERM "$(listener_pid "$port")" "${pids[0]}" 2>/dev/null || true
wait "${pids[0]}" 2>/dev/null || true

"$build/eddy" standalone --host 127.0.0.1 --port 0 --data "$tmp/data" >/dev/null 2>"$tmp/eddy.log" &
pids+=($!)
for _ in $(seq 200); do grep -q broker-listening "$tmp/eddy.log" && break; sleep 0.05; done
run_scenarios eddy "ws://127.0.0.1:$(sed -n 's/.*broker-listening port=\([0-9]*\).*/\1/p' "$tmp/eddy.log")/deepstream" "${pids[1]}"
kill -TERM "${pids[1]}"
wait "${pids[1]}" || { echo "eddy did not stop cleanly" >&2; exit 1; }

cat "$tmp/runs.jsonl" >>"$out"
python3 - "$tmp/runs.jsonl" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault(("max" if r["rate"] == 0 else f'{r["rate"] * r["subscribers"]}/s'), {})[r["label"]] = r
print(f'\n{"events (2 pub, 4 sub, 8 topics)":34} {"deepstream":>22} {"eddy":>22} {"eddy/deepstream":>16}')
for load, pair in by.items():
    d, e = pair.get("deepstream"), pair.get("eddy")
    if not d or not e:
        continue
    for key, name, better in (("deliveries_per_s", "deliveries/s", "high"), ("cpu_s_per_million", "CPU s per 1M deliveries", "low"),
                              ("p50_ms", "p50 ms", "low"), ("p99_ms", "p99 ms", "low"), ("rss_kib", "RSS KiB", "low")):
        ratio = e[key] / d[key] if d[key] else float("nan")
        print(f'  {load + " " + name:32} {d[key]:>22.2f} {e[key]:>22.2f} {ratio:>15.2f}x')
    print(f'  {load + " lost/reordered":32} {str(d["lost"]) + "/" + str(d["reordered"]):>22} {str(e["lost"]) + "/" + str(e["reordered"]):>22}')
PY
echo "(one JSON line per run appended to $out)"
