#!/usr/bin/env bash
# run.sh - the backend library's tests (test_backend, ctl.sh) against a real
# standalone server, then against a cluster of 3 nodes and 2 brokers
# (cluster-tests/cluster.sh --tls: its links over TLS, the backends with a backend
# certificate). Servers run with --broker-timeout 2000 so a
# killed backend's providers are dropped within the test's patience. Every
# server must stop cleanly and without a sanitizer report.
#
# test_streams starts, stops and kills eddy processes of its own.
#
# usage: tests/backend/run.sh BUILD_DIR   (build or build-asan)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
bin=$build/eddy
tmp=$(mktemp -d)
pid=""
cleanup() {
  [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
  [[ -d $tmp/c ]] && bash cluster-tests/cluster.sh down --dir "$tmp/c" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
sanitizer='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer|WARNING: ThreadSanitizer'

echo "# make install into a scratch PREFIX; a program built with its pkg-config file runs"
make -s BUILD="$build" install PREFIX="$tmp/prefix" >/dev/null
cflags=$(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --cflags eddy)
libs=$(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --libs eddy)
static_libs=$(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --libs --static eddy)
printf '#include <eddy.h>\n#include <stdio.h>\nint main(void) { puts(eddy_strerror(EDDY_ERR_VERSION)); return 0; }\n' >"$tmp/app.c"
san=""  # the sanitizer build's library needs the sanitizer runtime in the program too
nm "$build/libeddy.a" 2>/dev/null | grep __asan_ >/dev/null && san="-fsanitize=address,undefined"  # (no -q: nm must not get SIGPIPE under pipefail)
cc $san -o "$tmp/app-shared" "$tmp/app.c" $cflags $libs
if [[ -z $san ]]; then # (a sanitized shared library wants its runtime preloaded: the static run covers it)
  [[ $(LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/app-shared") == "version conflict" ]] || { echo "shared libeddy app failed" >&2; exit 1; }
fi
cc $san -o "$tmp/app-static" "$tmp/app.c" $cflags ${static_libs/-leddy/-Wl,-Bstatic -leddy -Wl,-Bdynamic}
[[ $("$tmp/app-static") == "version conflict" ]] || { echo "static libeddy app failed" >&2; exit 1; }
[[ -x $tmp/prefix/bin/eddy ]] || { echo "eddy not installed" >&2; exit 1; }
echo "ok: make install PREFIX=...: eddy.h, libeddy.a, libeddy.so, eddy.pc, bin/eddy"

echo "# event streams: eddy_subscribe_from and eddy ctl subscribe --from (eddy processes of their own)"
EDDY_BIN=$bin "$build/tests/test_streams"

echo "# backend tests: standalone"
"$bin" standalone --host 127.0.0.1 --port 0 --data "$tmp/data" --broker-timeout 2000 2>"$tmp/standalone.log" &
pid=$!
for _ in $(seq 200); do grep -q broker-listening "$tmp/standalone.log" && break; sleep 0.05; done
port=$(sed -n 's/.*broker-listening port=\([0-9]*\).*/\1/p' "$tmp/standalone.log")
backends=$(sed -n 's/.*backends-listening request=\([^ ]*\).*/\1/p' "$tmp/standalone.log")
[[ -n $port && -n $backends ]] || { cat "$tmp/standalone.log"; echo "standalone did not start" >&2; exit 1; }
EDDY_CLUSTER=$backends EDDY_WS="ws://127.0.0.1:$port/deepstream" EDDY_BIN=$bin "$build/tests/test_backend"
EDDY_CLUSTER=$backends EDDY_BIN=$bin bash tests/backend/ctl.sh
# the example backend: an RPC, and prices published while someone listens
"$build/examples/price_feed" "$backends" >"$tmp/feed.out" 2>&1 &
feed=$!
for _ in $(seq 100); do grep -q "ready" "$tmp/feed.out" && break; sleep 0.05; done
quote=$("$bin" ctl --cluster "$backends" call prices/quote '{"symbol":"TST"}')
[[ $quote =~ ^\{\"symbol\":\"TST\",\"price\":[0-9.]+\}$ ]] || { echo "price_feed quote: '$quote'" >&2; exit 1; }
timeout 10 "$bin" ctl --cluster "$backends" subscribe prices/TST >"$tmp/prices" 2>&1 &
sub=$!
for _ in $(seq 100); do grep -q '"price"' "$tmp/prices" && break; sleep 0.05; done
kill -TERM "$sub"; wait "$sub" || true
grep -q '"name":"prices/TST","data":{"symbol":"TST","price":' "$tmp/prices" || { cat "$tmp/prices" "$tmp/feed.out" >&2; echo "price_feed published nothing" >&2; exit 1; }
kill -TERM "$feed"; wait "$feed" || { echo "price_feed did not stop cleanly" >&2; exit 1; }
echo "ok: example price_feed"
# the example validator: refuses a bad order with its reason, corrects qty given as text
"$build/examples/order_validator" "$backends" >"$tmp/validator.out" 2>&1 &
validator=$!
for _ in $(seq 100); do grep -q "ready" "$tmp/validator.out" && break; sleep 0.05; done
"$bin" ctl --cluster "$backends" set orders/1 '{"item":"tea","qty":2}' >/dev/null
rc=0; err=$("$bin" ctl --cluster "$backends" set orders/1 qty -1 2>&1) || rc=$?
[[ $rc == 6 && $err == *"refused by a validator: qty must be at least 1"* ]] || { echo "order_validator: rc=$rc '$err'" >&2; exit 1; }
"$bin" ctl --cluster "$backends" set orders/1 qty '"5"' >/dev/null
[[ $("$bin" ctl --cluster "$backends" get orders/1) == '{"item":"tea","qty":5}' ]] || { echo "order_validator did not correct qty" >&2; exit 1; }
kill -TERM "$validator"; wait "$validator" || { echo "order_validator did not stop cleanly" >&2; exit 1; }
echo "ok: example order_validator"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?; pid=""
if [[ $rc != 0 ]] || grep -Eq "$sanitizer" "$tmp/standalone.log"; then
  cat "$tmp/standalone.log"; echo "standalone exited $rc or reported a sanitizer error" >&2; exit 1
fi

echo "# a backend follows the cluster to a new map epoch"
read -r wsp rq dl < <(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
start_epoch() {
  "$bin" standalone --host 127.0.0.1 --port "$wsp" --request "tcp://127.0.0.1:$rq" --delivery "tcp://127.0.0.1:$dl" \
    --data "$tmp/epochdata" --epoch "$1" 2>>"$tmp/epoch.log" &
  pid=$!
  for _ in $(seq 200); do [[ $(grep -c broker-listening "$tmp/epoch.log") -ge $2 ]] && break; sleep 0.05; done
}
start_epoch 1 1
"$bin" ctl --cluster "tcp://127.0.0.1:$rq" subscribe follow/ev >"$tmp/follow.out" 2>"$tmp/follow.err" &
follower=$!
sleep 0.5
kill -TERM "$pid"; wait "$pid"
start_epoch 2 2
got=""
for _ in $(seq 60); do
  "$bin" ctl --cluster "tcp://127.0.0.1:$rq" emit follow/ev '{"epoch":2}' 2>/dev/null || true
  grep -q '"epoch":2' "$tmp/follow.out" && { got=1; break; }
  sleep 0.25
done
kill -TERM "$follower"; wait "$follower" || true
kill -TERM "$pid"; wait "$pid" || true; pid=""
if [[ -z $got ]] || ! grep -q "cluster-map-changed epoch=1->2" "$tmp/follow.err"; then
  cat "$tmp/follow.err" "$tmp/epoch.log"; echo "the backend did not follow the new epoch" >&2; exit 1
fi
echo "ok: a subscribed backend followed the cluster from epoch 1 to 2"

echo "# backend tests: 3 nodes, 2 brokers, links over TLS (libeddy and eddy ctl with a backend certificate)"
bash cluster-tests/cluster.sh up --dir "$tmp/c" --nodes 3 --brokers 2 --tls --bin "$bin" -- --broker-timeout 2000 >/dev/null
(
  set -a; . "$tmp/c/backend.env"; set +a # EDDY_CLUSTER_TLS_CERT, _KEY, _CA
  EDDY_CLUSTER=$(sed -n 2p "$tmp/c/nodes") EDDY_WS="$(tr '\n' ' ' <"$tmp/c/brokers")" EDDY_BIN=$bin "$build/tests/test_backend"
  EDDY_CLUSTER=$(sed -n 3p "$tmp/c/nodes") EDDY_BIN=$bin bash tests/backend/ctl.sh
)
# without the certificate the same backend is refused, and says why
out=$("$bin" ctl --cluster "$(sed -n 1p "$tmp/c/nodes")" --timeout 1000 get x 2>&1) && { echo "ctl without a certificate got in: $out" >&2; exit 1; }
[[ $out == *"no certificate is set"* ]] || { echo "ctl without a certificate: $out" >&2; exit 1; }
echo "ok: a backend without a certificate is refused by the TLS cluster"
bash cluster-tests/cluster.sh down --dir "$tmp/c" >/dev/null
for f in "$tmp"/c/*.log; do
  if grep -Eq "$sanitizer" "$f"; then cat "$f"; echo "sanitizer report in $f" >&2; exit 1; fi
  [[ $(basename "$f") == lb.log ]] || tail -1 "$f" | grep -q "stopped role=.* exit=0" || { tail -20 "$f"; echo "$f: no clean stop" >&2; exit 1; }
done
echo "# backend tests: ok"
