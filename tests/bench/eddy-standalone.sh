# eddy-standalone.sh - sourced by the benchmark scripts: starts and stops one
# `eddy standalone` on free ports for a run, so every script starts it the same
# way (no message rate limit, the script's flags) and fails the same way when
# it does not come up. Not a test and not part of eddy's run time.
#
# eddy_start BUILD DATA LOG [FLAG...]: eddy standalone with the flags, once it
#   listens; sets EDDY_PORT (websocket/HTTP), EDDY_BACKENDS (the node's request
#   address for libeddy), EDDY_PID (also appended to the caller's pids array
#   when it has one). Exits the script with the log when it does not start.
# eddy_stop: stops it (SIGTERM); fails when it did not exit cleanly.
eddy_start() {
  local build=$1 data=$2 log=$3
  "$build/eddy" standalone --host 127.0.0.1 --port 0 --data "$data" --message-rate 0 "${@:4}" >/dev/null 2>"$log" &
  EDDY_PID=$!
  if declare -p pids >/dev/null 2>&1; then pids+=("$EDDY_PID"); fi
  for _ in $(seq 200); do grep -qs broker-listening "$log" && break; sleep 0.05; done
  EDDY_PORT=$(sed -n 's/.*broker-listening port=\([0-9]*\).*/\1/p' "$log")
  EDDY_BACKENDS=$(sed -n 's/.*backends-listening request=\([^ ]*\).*/\1/p' "$log")
  if [[ -z $EDDY_PORT ]]; then
    cat "$log" >&2
    echo "$(basename "$0"): eddy standalone did not start" >&2
    exit 1
  fi
}

eddy_stop() {
  kill -TERM "$EDDY_PID"
  wait "$EDDY_PID" || { echo "eddy did not stop cleanly" >&2; return 1; }
}
