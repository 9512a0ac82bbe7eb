#!/usr/bin/env bash
# Validates what can be validated here of deploy/ (docker and Kubernetes do not
# run on this machine): haproxy's config check, YAML syntax of every manifest,
# that the example cluster maps load in eddy's own configuration loader (with
# the development certificates of deploy/tls/eddy-certs.sh: their links are TLS),
# that the compose file gives each process its role's certificate, that the Raft
# addresses are the pinned (compose) or per-pod Service (Kubernetes) ones, and systemd
# unit syntax where systemd-analyze exists.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${EDDY_BIN:-build/eddy}
# haproxy -c resolves server names: use a copy pointing at localhost
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed 's/eddy-broker-[0-9]:6020/127.0.0.1:6020/' deploy/haproxy.cfg >"$tmp/haproxy.cfg"
haproxy -c -q -f "$tmp/haproxy.cfg"
echo "ok haproxy.cfg"
for f in deploy/docker-compose.yml deploy/docker/cluster.yml deploy/k8s/*.yaml; do
  /usr/bin/python3 -c 'import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))' "$f"
  echo "ok $f"
done
# the cluster maps must load in eddy itself (a broker refuses a bad one with exit 2)
/usr/bin/python3 - "$tmp" <<'PY'
import sys, yaml
cm = next(d for d in yaml.safe_load_all(open('deploy/k8s/eddy.yaml')) if d['kind'] == 'ConfigMap')
open(sys.argv[1] + '/k8s-cluster.yml', 'w').write(cm['data']['cluster.yml'])
PY
# the maps' links are tls+tcp://: they load with a node certificate (made here as the
# compose file's certs service makes them), and the compose file names a certificate of
# the right role for each process
bash deploy/tls/eddy-certs.sh "$tmp/certs" dev 3 2
tls=(--cluster-tls-cert "$tmp/certs/node1.crt" --cluster-tls-key "$tmp/certs/node1.key" --cluster-tls-ca "$tmp/certs/ca.crt")
/usr/bin/python3 - "$tmp/certs" <<'PY'
import subprocess, sys, yaml
compose = yaml.safe_load(open('deploy/docker-compose.yml'))
for name, svc in compose['services'].items():
    cmd = svc.get('command') or []
    if not cmd or cmd[0] not in ('node', 'broker'):
        continue
    files = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith('--cluster-tls-')}
    assert set(files) == {'--cluster-tls-cert', '--cluster-tls-key', '--cluster-tls-ca'}, f'{name}: TLS flags {files}'
    cert = files['--cluster-tls-cert'].replace('/certs', sys.argv[1])
    subject = subprocess.run(['openssl', 'x509', '-in', cert, '-noout', '-subject'], capture_output=True, text=True, check=True).stdout
    assert f'OU = eddy-{cmd[0]}' in subject, f'{name}: {cert} is not a {cmd[0]} certificate: {subject}'
    assert all(a.startswith('tls+tcp://') for a in cmd if '://' in a), f'{name}: a link address without TLS'
print('ok docker-compose.yml: every node and broker has its role\'s certificate from the certs service')
PY
# the Raft addresses (IPv4 only) are where each node can be reached: the compose
# file's pinned addresses, Kubernetes' per-pod Services' ClusterIPs
/usr/bin/python3 - <<'PY'
import yaml
nodes = yaml.safe_load(open('deploy/docker/cluster.yml'))['cluster']['nodes']
compose = yaml.safe_load(open('deploy/docker-compose.yml'))
for i, n in enumerate(nodes, 1):
    pinned = compose['services'][f'eddy-node-{i}']['networks']['eddy']['ipv4_address']
    assert n['raft'] == f'{pinned}:6024', f"{n['id']}: raft {n['raft']} but the compose file pins {pinned}"
docs = list(yaml.safe_load_all(open('deploy/k8s/eddy.yaml')))
cm = next(d for d in docs if d['kind'] == 'ConfigMap')
ips = {d['spec']['selector'].get('statefulset.kubernetes.io/pod-name'): d['spec'].get('clusterIP')
       for d in docs if d['kind'] == 'Service'}
for n in yaml.safe_load(cm['data']['cluster.yml'])['cluster']['nodes']:
    assert n['raft'] == f"{ips.get(n['id'])}:6024", f"{n['id']}: raft {n['raft']}, its Service's ClusterIP {ips.get(n['id'])}"
print('ok raft addresses: the compose network\'s pinned addresses, the per-pod Services\' ClusterIPs')
PY
for map in deploy/docker/cluster.yml "$tmp/k8s-cluster.yml"; do
  out=$("$bin" node --config "$map" --node-id nosuchnode --data "$tmp/d" "${tls[@]}" 2>&1 || true)
  grep -q "node.id (--node-id): 'nosuchnode' is not in cluster.nodes" <<<"$out" || { echo "bad cluster map $map: $out" >&2; exit 1; }
  echo "ok $map loads"
done
if command -v systemd-analyze >/dev/null 2>&1; then
  for u in deploy/systemd/*.service; do systemd-analyze verify "$u" 2>&1 | grep -v "eddy: No such file\|Failed to resolve\|not executable\|Unknown group\|Unknown user" || true; done
fi
echo "deploy check: ok"
