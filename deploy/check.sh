#!/usr/bin/env bash
# Validates what can be validated here of deploy/ (docker and Kubernetes do not
# run on this machine): haproxy's config check, YAML syntax of every manifest,
# that the example cluster maps load in eddy's own configuration loader, and
# systemd unit syntax where systemd-analyze exists.
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
for map in deploy/docker/cluster.yml "$tmp/k8s-cluster.yml"; do
  out=$("$bin" node --config "$map" --node-id nosuchnode --data "$tmp/d" 2>&1 || true)
  echo "$out" | grep -q "node.id (--node-id): 'nosuchnode' is not in cluster.nodes" || { echo "bad cluster map $map: $out" >&2; exit 1; }
  echo "ok $map loads"
done
if command -v systemd-analyze >/dev/null 2>&1; then
  for u in deploy/systemd/*.service; do systemd-analyze verify "$u" 2>&1 | grep -v "eddy: No such file\|Failed to resolve\|not executable\|Unknown group\|Unknown user" || true; done
fi
echo "deploy check: ok"
