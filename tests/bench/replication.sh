#!/usr/bin/env bash
# replication.sh - the cost of replicated writes (issue 18): acknowledged
# record writes/s and the p50/p99 acknowledgement time on a 3-node cluster
# (cluster-tests/cluster.sh, 1 broker) with cluster.replicas 1, then 2, back
# to back, each on a fresh cluster; prints both, the throughput ratio and the
# CPU the cluster's processes (nodes and broker) spent per acknowledged write.
# The nodes run eddy's default, cluster.raft auto: on with 3 nodes, so they
# replicate by the metadata group's committed map (in-sync sets, per-shard
# epochs); --no-raft measures a static map instead (--raft is accepted too).
# usage: tests/bench/replication.sh [--raft|--no-raft] [BUILD_DIR] [writers] [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
raft=()
if [[ ${1:-} == --raft || ${1:-} == --no-raft ]]; then raft=("$1"); shift; fi
build=${1:-build}; writers=${2:-32}; seconds=${3:-8}
[[ -x $build/eddy ]] || make -s BUILD="$build" "$build/eddy" >/dev/null
declare -A result
for replicas in 1 2; do
  dir=$(mktemp -d)
  bash cluster-tests/cluster.sh up --dir "$dir" --nodes 3 --brokers 1 --bin "$build/eddy" "${raft[@]}" -- --replicas "$replicas" >/dev/null
  pids=$(cat "$dir"/node*.pid "$dir"/broker*.pid | paste -sd,)
  result[$replicas]=$(node tests/bench/replication.mjs "$(cat "$dir/brokers")" "$writers" "$seconds" "$pids" || true)
  bash cluster-tests/cluster.sh down --dir "$dir" >/dev/null
  rm -rf "$dir"
  echo "replicas $replicas: ${result[$replicas]}"
done
node -e '
const a = JSON.parse(process.argv[1]), b = JSON.parse(process.argv[2])
console.log(`ratio (replicas 2 / replicas 1): throughput ${(b.perSecond / a.perSecond).toFixed(2)}, p50 +${(b.p50 - a.p50).toFixed(2)} ms, p99 +${(b.p99 - a.p99).toFixed(2)} ms, cluster CPU per write ${(b.cpuPer1000 / a.cpuPer1000).toFixed(2)}x`)
' "${result[1]}" "${result[2]}"
