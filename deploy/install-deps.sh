#!/usr/bin/env bash
# Installs the Debian 12 packages eddy builds, runs and is tested with, if any is
# missing. As root it runs apt-get; as another user it runs apt-get through sudo
# when sudo exists (sudo may ask for a password); otherwise it prints the exact
# command to run as root and fails.
#
# node and npm: Debian 12's nodejs (18.x) and npm run every test suite. A node
# and npm from elsewhere (nodesource, nvm) found on PATH are used instead.
# clang-14 and libclang-rt-14-dev (libFuzzer, ASan, UBSan runtimes) build the
# fuzzers (make fuzz); gcc's ThreadSanitizer runtime (libtsan2) comes with
# build-essential (make tsan). libraft-dev (canonical raft 0.15, LGPL-3 with a
# linking exception) runs the metadata group on libuv (libuv1-dev, named here
# because eddy includes uv.h itself, not only through libwebsockets-dev).
set -euo pipefail
pkgs=(build-essential pkg-config libnng-dev libmsgpack-dev libwebsockets-dev libwebsockets-evlib-uv librocksdb-dev
      libprotobuf-c-dev protobuf-c-compiler libjansson-dev libyaml-dev libsodium-dev libcmocka-dev
      libpcre2-dev libcurl4-openssl-dev libjwt-dev libssl-dev libraft-dev libuv1-dev openssl haproxy curl python3-yaml
      clang-14 libclang-rt-14-dev
      nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]}")
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  [[ $major -ge 18 ]] || echo "warning: $(command -v node) is node $(node --version 2>/dev/null); the tests need node 18 or newer (Debian 12's nodejs)" >&2
fi
[ ${#missing[@]} -eq 0 ] && exit 0

as_root="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  run=()
elif command -v sudo >/dev/null; then
  run=(sudo)
  echo "not root: installing with sudo (it may ask for your password)" >&2
else
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "run as root (su -), then run make again:" >&2
  echo "  $as_root" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
if ! "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
   ! "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  echo "installing the packages failed; as root, run:" >&2
  echo "  $as_root" >&2
  exit 1
fi
