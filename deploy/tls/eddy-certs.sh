#!/usr/bin/env bash
# eddy-certs.sh - a development CA and the certificates of an eddy cluster's
# links (cluster.tls.cert, key, ca), with the openssl command line.
#
#   eddy-certs.sh DIR ca                         DIR/ca.crt, DIR/ca.key: a new CA (kept if it exists)
#   eddy-certs.sh DIR node NAME [HOST ...]       DIR/NAME.crt, NAME.key: OU=eddy-node, CN=NAME
#   eddy-certs.sh DIR broker NAME                OU=eddy-broker
#   eddy-certs.sh DIR backend NAME               OU=eddy-backend (libeddy, eddy ctl)
#   eddy-certs.sh DIR dev [NODES] [BROKERS]      all of a development cluster: the CA, node1..NODES
#                                                (3), broker1..BROKERS (2) and backend
#
# Options before the command: --days N (validity, default 365; negative: already expired,
# for tests), --ca-name NAME (the CA files DIR/NAME.crt and .key, default ca: a second CA
# makes certificates a cluster's nodes refuse).
#
# The convention eddy checks: the subject's organizational unit names the role, exactly
# one of OU=eddy-node, OU=eddy-broker, OU=eddy-backend; the CN is free (it names the
# process in log lines). Nodes get serverAuth and clientAuth, the others clientAuth. Host
# names are not checked (a node certificate is good for any node address): the CA and
# the role are what is trusted, so keep the CA for this cluster alone. Keys are EC P-256,
# unencrypted, mode 600. The CA key signs every certificate: in production keep it off the
# cluster's machines (or use your own PKI with the same OU convention).
set -euo pipefail

days=365 ca=ca
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --days) days=$2; shift 2 ;;
    --ca-name) ca=$2; shift 2 ;;
    *) echo "eddy-certs.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $# -ge 2 ]] || { sed -n '2,23p' "$0" >&2; exit 2; }
dir=$1 cmd=$2
shift 2
mkdir -p "$dir"
umask 077

make_ca() {
  [[ -f $dir/$ca.crt && -f $dir/$ca.key ]] && return 0
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
    -keyout "$dir/$ca.key" -out "$dir/$ca.crt" -days 3650 -subj "/O=eddy/CN=eddy cluster CA ($ca)" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  chmod 644 "$dir/$ca.crt"
}

# issue ROLE NAME [HOST ...]
issue() {
  local role=$1 name=$2; shift 2
  [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || { echo "eddy-certs.sh: bad name '$name'" >&2; exit 2; }
  [[ -f $dir/$ca.crt && -f $dir/$ca.key ]] || { echo "eddy-certs.sh: no CA in $dir (run: eddy-certs.sh $dir ca)" >&2; exit 2; }
  local ext eku=clientAuth san=""
  [[ $role == node ]] && eku=serverAuth,clientAuth
  for h in "$@"; do
    if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san+="${san:+,}IP:$h"; else san+="${san:+,}DNS:$h"; fi
  done
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyAgreement"
    echo "extendedKeyUsage=$eku"
    [[ -z $san ]] || echo "subjectAltName=$san"
  } >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/O=eddy/OU=eddy-$role/CN=$name" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" -sha256 \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr" "$ext"
  chmod 644 "$dir/$name.crt"
}

case $cmd in
  ca) make_ca ;;
  node) [[ $# -ge 1 ]] || { echo "eddy-certs.sh: node NAME [HOST ...]" >&2; exit 2; }; issue node "$@" ;;
  broker|backend) [[ $# -eq 1 ]] || { echo "eddy-certs.sh: $cmd NAME" >&2; exit 2; }; issue "$cmd" "$1" ;;
  dev)
    make_ca
    for i in $(seq "${1:-3}"); do issue node "node$i" "node$i" "eddy-node-$((i - 1))" localhost 127.0.0.1; done
    for i in $(seq "${2:-2}"); do issue broker "broker$i"; done
    issue backend backend
    ;;
  *) echo "eddy-certs.sh: unknown command $cmd" >&2; exit 2 ;;
esac
