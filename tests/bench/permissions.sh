#!/usr/bin/env bash
# permissions.sh - what a permission rule costs: eddy-bench's events and
# record updates against eddy standalone with permissions off, with a simple
# `user.id === $userId` rule on every name, and with a rule that reads `data`
# (for records: the record as the write leaves it, at the node), back to back
# in one run. Prints the server's CPU per message for each, and the cost of the
# rule over "off" in microseconds per message (a benchmark, not a test).
#
# usage: tests/bench/permissions.sh [BUILD_DIR] [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-5}
tmp=$(mktemp -d)
source tests/bench/eddy-standalone.sh
EDDY_PID=""
cleanup() { [[ -n $EDDY_PID ]] && kill -TERM "$EDDY_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

sections() { # the sections deepstream requires, everything allowed, then $1 under record and event
  cat <<EOF
presence:
  "*":
    allow: true
rpc:
  "*":
    provide: true
    request: true
record:
  "*":
    create: true
    write: true
    read: true
    delete: true
    listen: true
    notify: true
$2
event:
  "*":
    publish: true
    subscribe: true
    listen: true
$1
EOF
}
sections '' '' >"$tmp/off.yml" # (unused: "off" runs without permission.type config)
sections '  "bench/$userId/*":
    publish: "user.id === $userId"
    subscribe: "user.id === $userId"' '  "bench/$userId/*":
    write: "user.id === $userId"
    read: "user.id === $userId"' >"$tmp/userid.yml"
sections '  "bench/$userId/*":
    publish: "data !== null && user.id === $userId"
    subscribe: "user.id === $userId"' '  "bench/$userId/*":
    write: "data !== null && user.id === $userId"
    read: "user.id === $userId"' >"$tmp/data.yml"

run() { # RULES SCENARIO USER [eddy-bench options]
  local rules=$1 scenario=$2 user=$3; shift 3
  local perm=()
  [[ $rules != off ]] && perm=(--permission config --permissions "$tmp/$rules.yml")
  rm -rf "$tmp/data"
  eddy_start "$build" "$tmp/data" "$tmp/server.log" --request none "${perm[@]}"
  "$build/eddy-bench" "$scenario" "$@" --url "ws://127.0.0.1:$EDDY_PORT/deepstream" --pid "$EDDY_PID" --seconds "$secs" \
    --user "$user" --label "$rules" --json "$tmp/runs.jsonl" >/dev/null
  eddy_stop || true; EDDY_PID=""
}

for rules in off userid data; do
  run "$rules" events ev --rate 12500
  run "$rules" records rec --rate 2000
done

python3 - "$tmp/runs.jsonl" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def per_message(r):
    # the rule runs once per message sent; each is delivered to several subscribers
    sent = r.get("emitted") or (r.get("writes", 0) + r.get("patches", 0))
    return r["cpu_s_per_million"] * r["delivered"] / sent if sent else float("nan")
print("%-8s %-8s %12s %14s %12s %6s" % ("rules", "scenario", "deliveries/s", "CPU us/message", "vs off (us)", "lost"))
base = {}
for r in runs:
    us = per_message(r)
    if r["label"] == "off":
        base[r["scenario"]] = us
    extra = us - base.get(r["scenario"], us)
    print("%-8s %-8s %12.0f %14.2f %+12.2f %6d" % (r["label"], r["scenario"], r["deliveries_per_s"], us, extra, r.get("lost", 0)))
PY
