# deepstream-scratch.sh - sourced by the benchmarks that compare eddy with
# @deepstream/server 7.0.2: installs it in a scratch folder under the build
# directory (never part of eddy) and gives it a fresh copy of its shipped
# config. Not a benchmark; starting and stopping it is the caller's.
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
