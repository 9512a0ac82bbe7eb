#!/usr/bin/env bash
# ctl.sh - `eddy ctl` from a shell against a running server or cluster
# (tests/backend/run.sh starts it): every command, its output and its exit code.
#
# environment: EDDY_CLUSTER (a node's request address), EDDY_BIN (build/eddy)
set -uo pipefail
bin=${EDDY_BIN:-build/eddy}
ctl() { "$bin" ctl --cluster "$EDDY_CLUSTER" --timeout 3000 "$@"; }
failures=0
pids=()
tmp=$(mktemp -d)
trap 'for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT

# expect CODE EXPECTED_STDOUT -- COMMAND...
expect() {
  local code=$1 want=$2; shift 3
  local out rc
  out=$("$@" 2>"$tmp/err"); rc=$?
  if [[ $rc != "$code" || ( $want != "*" && $out != "$want" ) ]]; then
    echo "not ok: $* -> exit $rc (want $code), stdout '$out' (want '$want'), stderr: $(cat "$tmp/err")"
    failures=$((failures + 1))
  else
    echo "ok: $*"
  fi
}
# waits until FILE contains TEXT
wait_for() {
  for _ in $(seq 100); do grep -qF -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "not ok: $1 never contained $2: $(cat "$1")"; failures=$((failures + 1))
}

key="ctl/$$"
expect 0 '*' -- ctl status
# every node answers with its counters (the peer table and its bound)
status=$(ctl status)
if [[ $status != *'"stats":{"peers":'*'"maxPeers":1024,"peersRefused":0,'* || $status == *'"stats":null'* ]]; then
  echo "not ok: ctl status has no counters from every node: $status"; failures=$((failures + 1))
else
  echo "ok: ctl status shows each node's counters"
fi
expect 2 '*' -- ctl
expect 2 '*' -- ctl frobnicate x
expect 2 '*' -- ctl set "$key" '{not json'
expect 0 '*' -- "$bin" ctl --help
expect 0 1 -- ctl set "$key" '{"a":1}'
expect 0 2 -- ctl set "$key" b '"two"'
expect 0 '{"a":1,"b":"two"}' -- ctl get "$key"
expect 0 '{"version":2,"data":{"a":1,"b":"two"}}' -- ctl get "$key" --with-version
expect 4 '' -- ctl set "$key" '{"a":9}' --expect 1
expect 0 3 -- ctl set "$key" '{"a":9}' --expect 2
expect 0 '' -- ctl delete "$key"
expect 3 '' -- ctl get "$key"
expect 5 '' -- ctl call "ctl/nobody/$$" '{}'
expect 1 '' -- "$bin" ctl --cluster "${EDDY_CLUSTER%%://*}://127.0.0.1:1" --timeout 300 get x # (nothing listens there)

# subscribe prints deliveries as JSON lines until interrupted
# (the binary itself in the background, not the ctl function's subshell, so the signal reaches it)
"$bin" ctl --cluster "$EDDY_CLUSTER" subscribe "$key/ev" >"$tmp/sub" 2>&1 & pids+=($!); sub=$!
"$bin" ctl --cluster "$EDDY_CLUSTER" watch "$key/rec" >"$tmp/watch" 2>&1 & pids+=($!); watch=$!
wait_for "$tmp/watch" '"version":-1'
sleep 0.3
expect 0 '' -- ctl emit "$key/ev" '{"p":1}'
expect 0 '' -- ctl emit "$key/ev"
wait_for "$tmp/sub" "{\"name\":\"$key/ev\",\"data\":{\"p\":1}}"
wait_for "$tmp/sub" "{\"name\":\"$key/ev\",\"data\":null}"
expect 0 1 -- ctl set "$key/rec" '{"n":1}'
wait_for "$tmp/watch" "{\"name\":\"$key/rec\",\"version\":1,\"data\":{\"n\":1}}"
kill -TERM "$sub" "$watch"
wait "$sub"; [[ $? == 0 ]] || { echo "not ok: subscribe did not end cleanly on SIGTERM"; failures=$((failures + 1)); }
wait "$watch"; [[ $? == 0 ]] || { echo "not ok: watch did not end cleanly on SIGTERM"; failures=$((failures + 1)); }

# provide answers each call with a command's output (the request on stdin)
"$bin" ctl --cluster "$EDDY_CLUSTER" provide "$key/double" -- python3 -c 'import sys, json; print(json.dumps(json.load(sys.stdin) * 2))' 2>"$tmp/prov" & pids+=($!); prov=$!
"$bin" ctl --cluster "$EDDY_CLUSTER" provide "$key/text" -- sh -c 'echo plain words' 2>/dev/null & pids+=($!)
"$bin" ctl --cluster "$EDDY_CLUSTER" provide "$key/fails" -- sh -c 'echo broken; exit 3' 2>/dev/null & pids+=($!)
wait_for "$tmp/prov" "providing"
sleep 0.3
expect 0 42 -- ctl call "$key/double" 21
expect 0 '"plain words"' -- ctl call "$key/text"
expect 5 '' -- ctl call "$key/fails"
kill -TERM "$prov"; wait "$prov"
expect 5 '' -- ctl call "$key/double" 1   # the provider left with its process: no provider
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
wait 2>/dev/null

# txn: a changeset on stdin, applied all or none (records of one shard: a {tag})
txn() { printf '%s' "$1" | ctl txn; }
t="{txn-$$}"
expect 0 '{"ok":true,"results":[{"ok":true,"version":1},{"ok":true,"version":1}]}' -- \
  txn "[{\"op\":\"set\",\"name\":\"$t/a\",\"data\":{\"n\":1}},{\"op\":\"set\",\"name\":\"$t/b\",\"path\":\"x\",\"data\":2}]"
# a conflict on one operation fails all, and says which
expect 4 '{"ok":false,"failed":1,"error":"VERSION_EXISTS","reason":"version conflict","results":[{"ok":false,"error":"ABORTED","reason":"operation 1 failed"},{"ok":false,"version":1,"error":"VERSION_EXISTS","reason":"version conflict"}]}' -- \
  txn "[{\"op\":\"set\",\"name\":\"$t/a\",\"data\":{\"n\":2},\"version\":2},{\"op\":\"delete\",\"name\":\"$t/b\",\"version\":7}]"
expect 0 '{"version":1,"data":{"n":1}}' -- ctl get "$t/a" --with-version
# records of different shards: refused before anything is sent, naming the shards
expect 6 '*' -- txn "[{\"op\":\"set\",\"name\":\"$t/a\",\"data\":{}},{\"op\":\"delete\",\"name\":\"{other-$$}/b\"}]"
out=$(txn "[{\"op\":\"set\",\"name\":\"$t/a\",\"data\":{}},{\"op\":\"delete\",\"name\":\"{other-$$}/b\"}]" 2>/dev/null)
grep -Eq '"error":"CROSS_SHARD","reason":"CROSSSHARD: \\"\{txn-[0-9]+\}/a\\" is in shard [0-9]+, \\"\{other-[0-9]+\}/b\\" is in shard [0-9]+"' <<<"$out" \
  && echo "ok: txn across shards names them" || { echo "not ok: txn across shards: $out"; failures=$((failures + 1)); }
expect 2 '' -- txn '[{"op":"set","name":"x"}]'
expect 2 '' -- txn 'not json'
expect 0 '{"ok":true,"results":[{"ok":true,"version":-1},{"ok":true,"version":2}]}' -- \
  txn "[{\"op\":\"delete\",\"name\":\"$t/a\",\"version\":1},{\"op\":\"erase\",\"name\":\"$t/b\",\"path\":\"x\"}]"
expect 3 '' -- ctl get "$t/a"

[[ $failures == 0 ]] || { echo "ctl.sh: $failures failure(s)"; exit 1; }
echo "ctl.sh: ok"
