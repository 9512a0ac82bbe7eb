#!/usr/bin/env bash
# fresh-build.sh - the build as on a fresh machine, and rebuilds when package
# flags change, in a scratch BUILD dir (this checkout's sources, nothing installed).
#
# A fake pkg-config fails, as on a machine without the packages, until a fake
# apt-get "installs" them; fake dpkg-query and sudo complete the picture, so
# `make deps` runs the real deploy/install-deps.sh. The checks:
#   1. plain `make` before the install fails, says what is missing and to run
#      `make deps`, and links nothing (no build with empty package flags);
#   2. `make -j2 deps all`, one make that installs and then builds (what `make
#      run` did): libeddy.so, eddy.pc, the example and eddy carry the packages
#      (eddy also libcurl, libjwt and libcrypto, for the http and jwt logins);
#   3. when pkg-config's --libs change, everything linked with them is rebuilt
#      (libeddy.so, eddy.pc, the example, eddy), objects are not;
#   4. when its --cflags change, every object is rebuilt;
#   5. with nothing changed, nothing is rebuilt.
#
# usage: tests/build-check/fresh-build.sh [MAKEFILE]   (default: this checkout's Makefile)
set -uo pipefail
cd "$(dirname "$0")/../.."
mk=$(realpath "${1:-Makefile}")
# a make of its own: nothing from a calling make (make test BUILD=..., -n, -k)
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
real_pc=$(command -v pkg-config) || { echo "fresh-build: needs pkg-config (make deps)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
b=$tmp/build
failures=0
ok() { echo "ok: $*"; }
fail() { echo "not ok: $*"; failures=$((failures + 1)); }

mkdir -p "$tmp/bin"
# pkg-config: unknown packages until $tmp/installed exists; then the real one,
# with $tmp/extra-libs / $tmp/extra-cflags appended to --libs / --cflags
cat >"$tmp/bin/pkg-config" <<EOF
#!/bin/sh
if [ ! -e "$tmp/installed" ]; then
  for a; do case \$a in -*) ;; *) echo "Package \$a was not found in the pkg-config search path." >&2 ;; esac; done
  exit 1
fi
out=\$("$real_pc" "\$@") || exit \$?
case " \$* " in *" --libs "*) out="\$out \$(cat "$tmp/extra-libs" 2>/dev/null)" ;; esac
case " \$* " in *" --cflags "*) out="\$out \$(cat "$tmp/extra-cflags" 2>/dev/null)" ;; esac
[ -z "\$out" ] || printf '%s\n' "\$out"
EOF
cat >"$tmp/bin/dpkg-query" <<EOF
#!/bin/sh
[ -e "$tmp/installed" ] || { echo "dpkg-query: no packages found matching \$*" >&2; exit 1; }
printf 'install ok installed'
EOF
cat >"$tmp/bin/apt-get" <<EOF
#!/bin/sh
echo "apt-get \$*" >>"$tmp/apt.log"
[ "\$1" != install ] || touch "$tmp/installed"
EOF
printf '#!/bin/sh\nexec "$@"\n' >"$tmp/bin/sudo"
chmod +x "$tmp/bin/"*
export PATH="$tmp/bin:$PATH"

m() { make -f "$mk" BUILD="$b" "$@" >>"$tmp/make.log" 2>&1; }
log_tail() { tail -n "${1:-15}" "$tmp/make.log" | sed 's/^/    /'; }
# artefacts linked with package flags
linked=("$b/eddy" "$b/libeddy.so" "$b/eddy.pc" "$b/examples/price_feed" "$b/eddy-bench")
objects() { find "$b/obj" "$b/pic" -name '*.o'; }
stamp() { sleep 1.1; touch "$tmp/stamp"; }
# newer/older FILE...: every FILE was (not) written since the stamp; lists up to 5 that were not (were)
newer() { local f bad=(); for f in "$@"; do [[ $f -nt $tmp/stamp ]] || bad+=("${f#"$tmp"/}"); done; report "not rebuilt" "${bad[@]}"; }
older() { local f bad=(); for f in "$@"; do [[ -e $f && ! $f -nt $tmp/stamp ]] || bad+=("${f#"$tmp"/}"); done; report "rebuilt" "${bad[@]}"; }
report() {
  local what=$1; shift
  [[ $# == 0 ]] && return 0
  echo "    $what: ${*:1:5}$([[ $# -gt 5 ]] && echo " and $(($# - 5)) more")"
  return 1
}
start=$(date +%s)

echo "# 1. make before the packages are installed"
: >"$tmp/make.log"
if m -j2 all; then
  fail "make succeeded without the packages"
elif ! grep -q "make deps" "$tmp/make.log" || ! grep -q "jansson" "$tmp/make.log" ||
     ! grep -q "libcurl" "$tmp/make.log" || ! grep -q "libjwt" "$tmp/make.log" || ! grep -q "libcrypto" "$tmp/make.log" ||
     ! grep -q "raft" "$tmp/make.log"; then
  log_tail; fail "make failed without naming the missing packages and 'make deps'"
else
  ok "make refuses to build without the packages, names them and says to run make deps"
fi
left=$(for f in "${linked[@]}" "$b/libeddy.a"; do [[ -e $f ]] && echo "${f#"$tmp"/}"; done)
[[ -z $left ]] && ok "nothing was linked" || fail "left in the build dir: $left"

echo "# 2. make deps all: installed and built by one make"
rm -rf "$b"; : >"$tmp/make.log"
if ! m -j2 deps all; then
  log_tail 30; fail "make deps all failed"
else
  grep -q "^apt-get install" "$tmp/apt.log" 2>/dev/null && ok "make deps ran apt-get install" || fail "make deps did not install"
  needed=$(readelf -d "$b/libeddy.so" | grep NEEDED)
  unlinked=""
  for l in libjansson libnng; do [[ $needed == *"$l"* ]] || unlinked+=" $l"; done
  [[ -z $unlinked ]] && ok "libeddy.so links jansson, nng" || fail "libeddy.so does not link$unlinked"
  [[ $needed != *libyaml* ]] && ok "libeddy.so does not link libyaml (the config loader is not in it)" \
    || fail "libeddy.so links libyaml"
  grep -q '^Libs.private:.*-lmsgpackc.*-ljansson' "$b/eddy.pc" && ok "eddy.pc lists the packages" \
    || fail "eddy.pc: $(grep Libs.private "$b/eddy.pc")"
  [[ -x $b/examples/price_feed ]] && ok "the example is linked" || fail "no examples/price_feed"
  eddy_needed=$(readelf -d "$b/eddy" | grep NEEDED)
  unlinked=""
  for l in libcurl libjwt libcrypto libsodium; do [[ $eddy_needed == *"$l"* ]] || unlinked+=" $l"; done
  [[ -z $unlinked ]] && ok "eddy links libcurl, libjwt, libcrypto, libsodium (logins)" || fail "eddy does not link$unlinked"
  grep -q "libcurl4-openssl-dev" deploy/install-deps.sh && grep -q "libjwt-dev" deploy/install-deps.sh &&
    grep -q "libssl-dev" deploy/install-deps.sh && ok "install-deps.sh installs their -dev packages" ||
    fail "install-deps.sh lacks libcurl4-openssl-dev, libjwt-dev or libssl-dev"
  # the metadata group (node/meta.c, cluster.raft) runs in eddy node
  [[ $eddy_needed == *libraft* && $eddy_needed == *libuv* ]] && ok "eddy links libraft and libuv (the metadata group)" ||
    fail "eddy does not link libraft or libuv"
  grep -q "libraft-dev" deploy/install-deps.sh && grep -q "libuv1-dev" deploy/install-deps.sh &&
    ok "install-deps.sh installs libraft-dev and libuv1-dev" || fail "install-deps.sh lacks libraft-dev or libuv1-dev"
  [[ $("$b/eddy" --version 2>&1) == eddy* ]] && ok "eddy runs" || fail "eddy --version: $("$b/eddy" --version 2>&1)"
fi

echo "# 3. pkg-config --libs changes: what links with it is rebuilt, objects are not"
stamp
echo "-L$tmp/flags-check-libdir" >"$tmp/extra-libs"
if ! m all; then
  log_tail; fail "make all failed"
else
  newer "${linked[@]}" && ok "eddy, libeddy.so, eddy.pc, the example, eddy-bench rebuilt" || fail "stale artefacts after a --libs change"
  grep -q "flags-check-libdir" "$b/eddy.pc" && ok "eddy.pc has the new flags" || fail "eddy.pc has the old flags"
  # shellcheck disable=SC2046
  older $(objects) "$b/libeddy.a" && ok "no object rebuilt" || fail "objects rebuilt for a --libs change"
fi

echo "# 4. pkg-config --cflags changes: every object is rebuilt"
stamp
echo "-DEDDY_FLAGS_CHECK=1" >"$tmp/extra-cflags"
if ! m -j2 all; then
  log_tail; fail "make all failed"
else
  # shellcheck disable=SC2046
  newer $(objects) "$b/libeddy.a" "$b/libeddy.so" "$b/eddy" && ok "every object rebuilt" || fail "stale objects after a --cflags change"
fi

echo "# 5. nothing changed: nothing rebuilt"
stamp
if ! m all; then
  log_tail; fail "make all failed"
else
  # shellcheck disable=SC2046
  older "${linked[@]}" "$b/libeddy.a" $(objects) && ok "nothing rebuilt" || fail "make rebuilt with nothing changed"
fi

echo "# fresh-build: $failures failed ($(( $(date +%s) - start ))s)"
[[ $failures == 0 ]]
