#!/usr/bin/env bash
# failover.sh - failover time (issue 18): kill -> first successful write,
# over KILLS kills of a 3-node raft cluster (cluster-tests/cluster.sh --raft
# --replicas 2, cluster.nodeTimeout 2000 ms, 2 brokers) while official
# clients write records of every node with setWithAck; each kill takes the
# node that is primary of the most shards, which is started again (and
# re-replicated to: every shard back at 2 copies in sync) before the next.
# Prints each kill's time and the median and maximum. Not a timed test.
# usage: tests/bench/failover.sh [BUILD_DIR] [kills]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}; kills=${2:-10}
[[ -x $build/eddy ]] || make -s BUILD="$build" "$build/eddy" >/dev/null
dir=$(mktemp -d)
trap 'bash cluster-tests/cluster.sh down --dir "$dir" >/dev/null 2>&1 || true; if [[ -n ${EDDY_KEEP:-} ]]; then echo "kept $dir"; else rm -rf "$dir"; fi' EXIT
bash cluster-tests/cluster.sh up --dir "$dir" --nodes 3 --brokers 2 --bin "$build/eddy" --raft --replicas 2 \
  -- --node-timeout 2000 --rereplicate true >/dev/null
EDDY_BIN="$build/eddy" node tests/bench/failover.mjs "$dir" "$kills"
