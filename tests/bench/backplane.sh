#!/usr/bin/env bash
# backplane.sh - what one emitted event costs the cluster's links, with 1, 2
# and 4 brokers: a 3-node cluster (cluster.sh, eddy's defaults), publishers
# and subscribers all on broker1, the other brokers connected but with no
# subscriber. Reads every node's eddy_node_link_messages_total and
# eddy_node_link_bytes_total (request batches in, replies out, delivery
# batches out, each delivery counted once per connection the node writes it
# to) before and after an open-loop run, and divides by the events the nodes
# applied. Interest routing says the figure must not grow with brokers that
# have no subscriber; this script shows whether the wire agrees. A benchmark:
# it prints figures and fails only when a run delivered nothing.
#
# usage: tests/bench/backplane.sh [BUILD_DIR] [seconds per run] [emits per second]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; secs=${2:-5}; rate=${3:-2000}
tmp=$(mktemp -d)
cleanup() {
  [[ -f $tmp/cluster/cluster.yml ]] && bash cluster-tests/cluster.sh down --dir "$tmp/cluster" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

scrape() { # OUT: every node's /metrics, then the wire: TCP data segments and bytes, both ways,
  # of every connection on the nodes' request and delivery ports (ss; any eddy build)
  local url filter
  : >"$1"
  while read -r url; do curl -sf "$url" >>"$1" || true; done <"$tmp/cluster/node-metrics"
  filter=$(sed -n 's/.*--request [a-z+]*:\/\/[^:]*:\([0-9]*\) --delivery [a-z+]*:\/\/[^:]*:\([0-9]*\).*/sport = :\1 or sport = :\2/p' \
    "$tmp"/cluster/node*.cmd | paste -sd'|' | sed 's/|/ or /g')
  ss -tinH state established "( $filter )" | awk '
    { for (i = 1; i <= NF; i++) { split($i, kv, ":")
        if (kv[1] == "bytes_sent" || kv[1] == "bytes_received") b += kv[2]
        if (kv[1] == "data_segs_out" || kv[1] == "data_segs_in") g += kv[2] } }
    END { printf "wire_segments %.0f\nwire_bytes %.0f\n", g, b }' >>"$1"
}

sum() { # FILE PATTERN: the sum of the samples whose line starts with PATTERN
  awk -v p="$2" 'index($0, p) == 1 { s += $NF } END { printf "%.0f", s }' "$1"
}

printf '%-8s %9s %11s %11s %11s %11s %11s %12s %12s %11s\n' brokers events "msgs/ev" "req/ev" "reply/ev" \
  "pull/ev" "deliv/ev" "bytes/ev" "tcp-segs/ev" "tcp-B/ev"
for brokers in 1 2 4; do
  bash cluster-tests/cluster.sh up --dir "$tmp/cluster" --nodes 3 --brokers "$brokers" --bin "$build/eddy" \
    -- --message-rate 0 >/dev/null
  url=$(head -1 "$tmp/cluster/brokers")
  scrape "$tmp/before"
  "$build/eddy-bench" events --rate "$rate" --subscribers 4 --publishers 2 --url "$url" --seconds "$secs" \
    --label "backplane-$brokers" >"$tmp/bench.out" || { cat "$tmp/bench.out" >&2; exit 1; }
  scrape "$tmp/after"
  bash cluster-tests/cluster.sh down --dir "$tmp/cluster" >/dev/null
  d() { echo $(( $(sum "$tmp/after" "$1") - $(sum "$tmp/before" "$1") )); }
  events=$(d 'eddy_node_operations_total{kind="EVENT_EMIT"}')
  req=$(d 'eddy_node_link_messages_total{direction="request_in"}')
  rep=$(d 'eddy_node_link_messages_total{direction="reply_out"}')
  pul=$(d 'eddy_node_link_messages_total{direction="pull_in"}')
  del=$(d 'eddy_node_link_messages_total{direction="delivery_out"}')
  bytes=$(d 'eddy_node_link_bytes_total{')
  segs=$(d 'wire_segments') wire=$(d 'wire_bytes')
  if [[ $events -le 0 ]]; then echo "backplane: no event applied with $brokers brokers" >&2; exit 1; fi
  awk -v b="$brokers" -v e="$events" -v q="$req" -v r="$rep" -v p="$pul" -v d="$del" -v y="$bytes" -v s="$segs" -v w="$wire" \
    'BEGIN { printf "%-8s %9d %11.3f %11.3f %11.3f %11.3f %11.3f %12.1f %12.3f %11.1f\n", b, e, (q + r + p + d) / e, q / e, r / e, p / e, d / e, y / e, s / e, w / e }'
  rm -rf "$tmp/cluster"
done
echo "(one 3-node cluster per row; the load on broker1 only: 4 subscribers, 2 publishers, $rate emits/s, ${secs} s;"
echo " every message on the nodes' links, heartbeats included, divided by the events applied; msgs..bytes from the"
echo " nodes' eddy_node_link_* counters (0 for builds without them), tcp-* from ss on the nodes' ports)"
