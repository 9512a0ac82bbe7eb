# deepstream-scratch.sh - sourced by the benchmarks that compare eddy with
# @deepstream/server 7.0.2: installs it in a scratch folder under the build
# directory (never part of eddy) and gives it a fresh copy of its shipped
# config, and starts and stops it and eddy standalone for a comparison. Not
# a benchmark itself.
#
# deepstream_scratch BUILD_DIR: installs when missing, prints the scratch folder;
#   the config to start it with is conf/config.yml in that folder; returns
#   non-zero when any step failed (so `scratch=$(deepstream_scratch b)` fails under set -e).

deepstream_scratch() {
  local scratch=$1/deepstream-scratch
  # deepstream 7.0.2 from npm; its optional uWebSockets.js points outside the
  # registry, so it is overridden with an empty package (DEPENDENCIES.md)
  if [[ ! -d $scratch/node_modules/@deepstream/server ]]; then
    mkdir -p "$scratch/stub-uws"
    echo '{"name":"uWebSockets.js","version":"0.0.0"}' >"$scratch/stub-uws/package.json"
    echo '{"name":"ds-scratch","private":true,"dependencies":{"@deepstream/server":"7.0.2"},"overrides":{"uWebSockets.js":"file:./stub-uws"}}' >"$scratch/package.json"
    (cd "$scratch" && npm install --no-audit --no-fund >/dev/null) || return
  fi
  rm -rf "$scratch/conf" && cp -r "$scratch/node_modules/@deepstream/server/conf" "$scratch/conf" || return
  # its shipped config logs at debug level unless the logger is told otherwise: unfair to it
  python3 - "$scratch/conf/config.yml" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
s = s.replace("  options:\n    colors: true", "  options:\n    colors: false\n    logLevel: INFO", 1)
open(p, 'w').write(s)
PY
  [[ $? == 0 ]] || return
  echo "$scratch"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listener_pid() { ss -ltnp 2>/dev/null | grep ":$1 " | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }

# deepstream_start SCRATCH LOG: starts deepstream from the scratch folder on a
#   free port and waits until it listens; sets DS_PORT, DS_PID (the process that
#   listens, whose CPU counts) and appends the shell's child to the caller's pids.
deepstream_start() {
  DS_PORT=$(free_port)
  (cd "$1" && exec node node_modules/@deepstream/server/dist/bin/deepstream start -c conf/config.yml \
    --host 127.0.0.1 --port "$DS_PORT" >"$2" 2>&1 </dev/null) &
  pids+=($!)
  for _ in $(seq 200); do [[ -n $(listener_pid "$DS_PORT") ]] && break; sleep 0.1; done
  DS_PID=$(listener_pid "$DS_PORT")
}

# deepstream_stop: stops what deepstream_start started (the first of pids).
deepstream_stop() {
  kill -TERM "$DS_PID" "${pids[0]}" 2>/dev/null || true
  wait "${pids[0]}" 2>/dev/null || true
}

# eddy_start / eddy_stop: tests/bench/eddy-standalone.sh
source "$(dirname "${BASH_SOURCE[0]}")/eddy-standalone.sh"
