#!/usr/bin/env bash
# cluster.sh - run an eddy cluster on this machine: N nodes and M brokers as
# separate processes on 127.0.0.1 (free ports), optionally behind haproxy.
#
#   cluster.sh up     --dir DIR [--nodes N] [--brokers M] [--replicas N] [--raft|--no-raft] [--lb] [--lb-tls PEM] [--tls]
#                     [--bin PATH] [-- extra eddy flags]
#   cluster.sh down   --dir DIR
#   cluster.sh status --dir DIR
#   cluster.sh kill   NAME --dir DIR     (SIGKILL; NAME as in status: node1.., broker1.., lb)
#   cluster.sh start  NAME --dir DIR     (again, same ports and data)
#   cluster.sh pause  NAME --dir DIR     (SIGSTOP: frozen, its sockets open; a stuck primary)
#   cluster.sh resume NAME --dir DIR     (SIGCONT: it goes on where it stopped)
#   cluster.sh settle --dir DIR          (with the metadata group on: until every node has
#                                        a leader, a lease and every shard assigned, 30 s)
#
# `up` returns once every node and broker answers /health-check; it writes DIR/brokers (one
# websocket URL per line), DIR/nodes (each node's request address, for backends:
# eddy ctl --cluster), DIR/node-metrics (each node's /metrics URL, its own HTTP
# port: node.metrics), DIR/lb with --lb (haproxy's websocket URL; wss:// with --lb-tls PEM,
# haproxy terminating TLS with PEM, a certificate chain and its key in one file) and
# DIR/cluster.yml (the shared cluster map). Each process logs to DIR/NAME.log.
#
# --replicas N: cluster.replicas (copies of each shard; eddy's default is 2 with 2 or more
# nodes). cluster.raft is eddy's default, auto: with 3 or more nodes the nodes run the
# metadata group (failure detection and failover); --raft turns it on for fewer, --no-raft
# off (a static map: a node that is down takes its shards with it). Each node gets a free
# port for its Raft transport either way (the raft field of its cluster.yml entry), kept by
# `start NAME`. All of it goes into DIR/cluster.yml.
#
# --tls: the nng links are tls+tcp:// with certificates made in DIR/tls by
# deploy/tls/eddy-certs.sh (a CA, nodeN, brokerN, backend); DIR/backend.env holds
# the EDDY_CLUSTER_TLS_* lines a backend (eddy ctl, libeddy) needs (source it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../build/eddy"
all_args=("$@")
cmd=${1:-}; shift || true
name=""
if [[ $cmd == kill || $cmd == start || $cmd == pause || $cmd == resume ]]; then name=${1:-}; shift || true; fi
dir="" nodes=3 brokers=2 lb=0 lb_tls="" tls=0 replicas="" raft=auto extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --brokers) brokers=$2; shift 2 ;;
    --lb) lb=1; shift ;;
    --lb-tls) lb=1; lb_tls=$2; shift 2 ;;
    --tls) tls=1; shift ;;
    --replicas) replicas=$2; shift 2 ;;
    --raft) raft=true; shift ;;
    --no-raft) raft=false; shift ;;
    --bin) bin=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $dir ]] || { echo "cluster.sh: --dir DIR is required" >&2; exit 2; }

# VAR: sets VAR to a free port below the ephemeral range (32768+) that no
# earlier call gave out. Not called as $(free_port): in a subshell the list of
# ports given out is lost, and two processes of one cluster got the same port
# (nothing listens on any of them before they all start), 1% of clusters.
used_ports=""
free_port() {
  local _fp # (not the caller's VAR's name)
  while :; do
    _fp=$((20000 + RANDOM % 12000))
    [[ " $used_ports " == *" $_fp "* ]] && continue
    if ! (exec 3<>/dev/tcp/127.0.0.1/$_fp) 2>/dev/null; then used_ports+=" $_fp"; printf -v "$1" '%s' "$_fp"; return; fi
  done
}

launch() { # NAME: start the process recorded in DIR/NAME.cmd, in the background
  local n=$1
  # shellcheck disable=SC2046
  nohup bash -c "exec $(cat "$dir/$n.cmd")" >>"$dir/$n.log" 2>&1 &
  echo $! >"$dir/$n.pid"
}

# A process that has exited is dead even while it waits to be reaped (a zombie:
# here init reaps orphans only every few seconds), and so is one whose number
# the kernel has given to another program since (its command line is not the
# one NAME.cmd started: CI once saw a killed node "already running").
alive() {
  [[ -f $dir/$1.pid ]] || return 1
  local pid; pid=$(cat "$dir/$1.pid")
  kill -0 "$pid" 2>/dev/null && [[ $(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  local argv0 want
  argv0=$( { tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | head -1)
  # nothing read: reaped since kill -0 (a zombie reaped between the checks: CI
  # once saw a killed broker "already running"), or exiting (still there)
  [[ -n $argv0 || -e /proc/$pid/cmdline ]] || return 1
  want=$(sed -n '1s/ .*//p' "$dir/$1.cmd" 2>/dev/null)
  [[ -z $argv0 || -z $want || $argv0 == "$want" ]]
}

# Dead and done: a killed process's leader thread turns zombie while its
# other threads may still be exiting with its files (RocksDB's LOCK) open.
gone() {
  alive "$1" && return 1
  local pid; pid=$(cat "$dir/$1.pid" 2>/dev/null) || return 0
  [[ ! -d /proc/$pid/task ]] || (( $(ls /proc/$pid/task 2>/dev/null | wc -l) <= 1 ))
}

paused() { # NAME: stopped by SIGSTOP (cluster.sh pause)
  [[ $(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$(cat "$dir/$1.pid")/stat" 2>/dev/null) == T ]]
}

# A port picked free (nothing listened on it) that a process then could not
# bind: something took it in between, or holds it without listening. The
# holder is shown (ss) for the record.
port_taken() { # LOG
  grep -q "Address in use" "$1" 2>/dev/null || return 1
  local p
  for p in $(grep -o "127.0.0.1:[0-9]*[^0-9].*Address in use" "$1" | grep -o "127.0.0.1:[0-9]*" | cut -d: -f2 | sort -u); do
    echo "cluster.sh: port $p is taken:" >&2
    ss -tanp 2>/dev/null | grep ":$p " >&2 || true
  done
  return 0
}

unhealthy() { # NAME LOG: says so with the log's last lines (a caller may delete the folder), fails
  echo "cluster.sh: $1 did not become healthy; the end of $2:" >&2
  tail -n 20 "$2" >&2 2>/dev/null || true
  # up: a port taken meanwhile is no failure of the cluster's: everything again on other ports
  local attempt=${CLUSTER_SH_ATTEMPT:-1}
  if [[ $cmd == up ]] && port_taken "$2" && (( attempt < 3 )); then
    echo "cluster.sh: starting the cluster again on other ports (attempt $((attempt + 1)))" >&2
    CLUSTER_SH_ATTEMPT=$attempt bash "$0" down --dir "$dir" >/dev/null 2>&1 || true
    for f in "$dir"/*.log; do [[ -f $f ]] && mv "$f" "$f.attempt$attempt"; done
    rm -f "$dir"/*.cmd "$dir"/*.pid "$dir"/*.port "$dir"/*.metrics-port
    # and the nodes' data: their Raft logs were bootstrapped with this attempt's raft
    # addresses, which the next attempt changes (a node would keep dialling the old ones)
    for n in "$dir"/node[0-9]*; do if [[ -d $n ]]; then rm -rf "$n"; fi; done
    CLUSTER_SH_ATTEMPT=$((attempt + 1)) exec bash "$0" "${all_args[@]}"
  fi
  # up: what was started goes (no caller gets a folder to bring down)
  [[ $cmd == up ]] && bash "$0" down --dir "$dir" >/dev/null 2>&1
  exit 1
}

# NODE_INDEX: until the node answers `eddy ctl cluster status` with a Raft
# leader, a lease it may serve under and every shard assigned (30 s): the
# metadata group has bootstrapped the map, so writes are taken from the start.
wait_settled() {
  local addr status
  addr=$(sed -n "${1}p" "$dir/nodes")
  for _ in $(seq 150); do
    # shellcheck disable=SC2046
    status=$(env $(cat "$dir/backend.env") "$bin" ctl --cluster "$addr" --timeout 1000 cluster status --json 2>/dev/null) || true
    if [[ $status == *'"assignedShards":4096'* && $status == *'"leader":'[0-9]* && $status == *'"lease":{"valid":true'* ]]; then
      return 0
    fi
    sleep 0.2
  done
  echo "cluster.sh: node$1's metadata group did not settle; its last status: ${status:-none}" >&2
  return 1
}

wait_health() { # PORT [https]: until /health-check answers 200 (20 s)
  for _ in $(seq 200); do
    curl -kfs -o /dev/null "${2:-http}://127.0.0.1:$1/health-check" && return 0
    sleep 0.1
  done
  return 1
}

names() { ls "$dir"/*.cmd 2>/dev/null | xargs -n1 basename 2>/dev/null | sed 's/\.cmd$//' | sort -V; }

case $cmd in
up)
  [[ -x $bin ]] || { echo "cluster.sh: $bin not found (run make)" >&2; exit 2; }
  bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  {
    echo "cluster:"
    [[ -n $replicas ]] && echo "  replicas: $replicas"
    [[ $raft != auto ]] && echo "  raft: $raft"
    echo "  nodes:"
  } >"$dir/cluster.yml"
  : >"$dir/nodes"
  : >"$dir/node-metrics"
  scheme=tcp
  : >"$dir/backend.env"
  tls_flags() { :; }
  if [[ $tls == 1 ]]; then
    scheme=tls+tcp
    bash "$here/../deploy/tls/eddy-certs.sh" "$dir/tls" dev "$nodes" "$brokers"
    tls_flags() { echo "--cluster-tls-cert $dir/tls/$1.crt --cluster-tls-key $dir/tls/$1.key --cluster-tls-ca $dir/tls/ca.crt"; }
    printf 'EDDY_CLUSTER_TLS_CERT=%s\nEDDY_CLUSTER_TLS_KEY=%s\nEDDY_CLUSTER_TLS_CA=%s\n' \
      "$dir/tls/backend.crt" "$dir/tls/backend.key" "$dir/tls/ca.crt" >"$dir/backend.env"
  fi
  for i in $(seq "$nodes"); do
    free_port rq; free_port dl; free_port mt
    free_port rp; rf=", raft: \"127.0.0.1:$rp\""
    echo "$scheme://127.0.0.1:$rq" >>"$dir/nodes"
    echo "http://127.0.0.1:$mt/metrics" >>"$dir/node-metrics"
    echo "$mt" >"$dir/node$i.metrics-port"
    echo "    - { id: node$i, request: \"$scheme://127.0.0.1:$rq\", delivery: \"$scheme://127.0.0.1:$dl\"$rf }" >>"$dir/cluster.yml"
    echo "$bin node --config $dir/cluster.yml --node-id node$i --request $scheme://127.0.0.1:$rq --delivery $scheme://127.0.0.1:$dl --metrics 127.0.0.1:$mt --data $dir/node$i $(tls_flags "node$i") ${extra[*]:-}" >"$dir/node$i.cmd"
  done
  for i in $(seq "$nodes"); do launch "node$i"; done
  : >"$dir/brokers"
  for i in $(seq "$brokers"); do
    free_port p
    echo "$bin broker --config $dir/cluster.yml --host 127.0.0.1 --port $p $(tls_flags "broker$i") ${extra[*]:-}" >"$dir/broker$i.cmd"
    echo "$p" >"$dir/broker$i.port"
    echo "ws://127.0.0.1:$p/deepstream" >>"$dir/brokers"
    launch "broker$i"
  done
  if [[ $lb == 1 ]]; then
    free_port p
    {
      echo "global"; echo "  maxconn 4000"
      echo "defaults"; echo "  mode http"; echo "  timeout connect 2s"; echo "  timeout check 2s"; echo "  timeout client 90s"
      echo "  timeout server 90s"; echo "  timeout tunnel 1h"; echo "  option http-server-close"
      echo "frontend ws"; echo "  bind 127.0.0.1:$p${lb_tls:+ ssl crt $lb_tls alpn http/1.1}"; echo "  default_backend brokers"
      echo "backend brokers"; echo "  balance leastconn"
      echo "  option httpchk GET /health-check"; echo "  http-check expect status 200"
      for i in $(seq "$brokers"); do
        echo "  server broker$i 127.0.0.1:$(cat "$dir/broker$i.port") check inter 500 fall 3 rise 1"
      done
    } >"$dir/haproxy.cfg"
    haproxy -c -q -f "$dir/haproxy.cfg"
    echo "haproxy -db -f $dir/haproxy.cfg" >"$dir/lb.cmd"
    echo "$p" >"$dir/lb.port"
    echo "ws${lb_tls:+s}://127.0.0.1:$p/deepstream" >"$dir/lb"
    launch lb
  fi
  for i in $(seq "$nodes"); do
    wait_health "$(cat "$dir/node$i.metrics-port")" || unhealthy "node$i" "$dir/node$i.log"
  done
  if [[ $raft == true || ( $raft == auto && $nodes -ge 3 ) ]]; then
    for i in $(seq "$nodes"); do wait_settled "$i" || unhealthy "node$i" "$dir/node$i.log"; done
  fi
  for i in $(seq "$brokers"); do
    wait_health "$(cat "$dir/broker$i.port")" || unhealthy "broker$i" "$dir/broker$i.log"
  done
  if [[ $lb == 1 ]]; then
    wait_health "$(cat "$dir/lb.port")" "$(sed -n 's|^ws\(s*\)://.*|http\1|p' "$dir/lb")" || unhealthy haproxy "$dir/lb.log"
  fi
  echo "cluster up: $nodes nodes, $brokers brokers$([[ $lb == 1 ]] && echo ", haproxy $(cat "$dir/lb")")$([[ $tls == 1 ]] && echo ", links over TLS (backends: source $dir/backend.env)")"
  ;;
down)
  for n in $(names | grep -v '^node'; names | grep '^node'); do
    alive "$n" && kill -TERM "$(cat "$dir/$n.pid")" 2>/dev/null && kill -CONT "$(cat "$dir/$n.pid")" 2>/dev/null || true
    for _ in $(seq 100); do gone "$n" && break; sleep 0.1; done
    alive "$n" && kill -KILL "$(cat "$dir/$n.pid")" 2>/dev/null || true
  done
  ;;
status)
  for n in $(names); do
    printf '%-10s %-6s %s\n' "$n" "$(alive "$n" && { paused "$n" && echo paused || echo up; } || echo down)" "$(cut -d' ' -f2- "$dir/$n.cmd" | cut -c1-120)"
  done
  ;;
kill)
  [[ -f $dir/$name.cmd ]] || { echo "cluster.sh: no process $name in $dir" >&2; exit 2; }
  alive "$name" && kill -KILL "$(cat "$dir/$name.pid")"
  # A killed process dies once its threads leave the kernel: one inside a slow
  # fsync (D state) holds it there; CI saw more than 5 s on a loaded disk.
  for _ in $(seq 300); do gone "$name" && break; sleep 0.1; done
  if ! gone "$name"; then
    pid=$(cat "$dir/$name.pid")
    echo "cluster.sh: $name (pid $pid) still exists 30 s after SIGKILL: state $(sed -n 's/^.*) \(.\).*/\1/p' \
      "/proc/$pid/stat" 2>/dev/null), waiting in $(cat "/proc/$pid/wchan" 2>/dev/null)" >&2
    exit 1
  fi
  ;;
pause|resume)
  [[ -f $dir/$name.cmd ]] || { echo "cluster.sh: no process $name in $dir" >&2; exit 2; }
  alive "$name" || { echo "cluster.sh: $name is not running" >&2; exit 1; }
  pid=$(cat "$dir/$name.pid")
  kill "-$([[ $cmd == pause ]] && echo STOP || echo CONT)" "$pid"
  # until the kernel says so (T: stopped), so what follows runs against a frozen process
  for _ in $(seq 50); do
    if [[ $cmd == pause ]]; then paused "$name" && break; else paused "$name" || break; fi
    sleep 0.02
  done
  ;;
settle)
  # the metadata group runs as up wrote cluster.yml: raft true, or auto with 3 or more nodes
  count=$(wc -l <"$dir/nodes")
  mode=$(sed -n 's/^  raft: //p' "$dir/cluster.yml"); mode=${mode:-auto}
  bin=$(sed -n '1s/ .*//p' "$dir/node1.cmd")
  if [[ $mode == true || ( $mode == auto && $count -ge 3 ) ]]; then
    for i in $(seq "$count"); do wait_settled "$i" || exit 1; done
  fi
  ;;
start)
  [[ -f $dir/$name.cmd ]] || { echo "cluster.sh: no process $name in $dir" >&2; exit 2; }
  alive "$name" && { echo "cluster.sh: $name is already running" >&2; exit 1; }
  # its ports are its own (the others dial them): one taken for a moment is waited for
  for attempt in 1 2 3 4 5; do
    before=$(wc -l <"$dir/$name.log" 2>/dev/null || echo 0)
    launch "$name"
    ok=1
    if [[ -f $dir/$name.port ]]; then
      wait_health "$(cat "$dir/$name.port")" "$([[ $name == lb ]] && sed -n 's|^ws\(s*\)://.*|http\1|p' "$dir/lb")" || ok=0
    fi
    if [[ $ok == 1 && -f $dir/$name.metrics-port ]]; then wait_health "$(cat "$dir/$name.metrics-port")" || ok=0; fi
    [[ $ok == 1 ]] && break
    tail -n +"$((before + 1))" "$dir/$name.log" >"$dir/$name.last" 2>/dev/null || true
    # its ports, or its data folder's lock, held a moment longer by what went before
    if alive "$name" || ! { port_taken "$dir/$name.last" || grep -q "LOCK: Resource temporarily unavailable" \
        "$dir/$name.last"; } || (( attempt == 5 )); then
      unhealthy "$name" "$dir/$name.log"
    fi
    echo "cluster.sh: $name could not bind its ports; again in 1 s" >&2
    sleep 1
  done
  rm -f "$dir/$name.last"
  ;;
*)
  sed -n '2,27p' "$0" >&2; exit 2 ;;
esac
