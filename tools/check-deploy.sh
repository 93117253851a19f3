#!/usr/bin/env bash
# Check the deploy files offline, and fail on the first broken one (`make deploy-check`):
#   deploy/kubernetes.yaml         Kubernetes schemas (kubernetes-validate) + KEDA's ScaledObject
#   docker-compose.yml             the Compose specification's JSON schema (check-jsonschema)
#   deploy/prometheus-rules.yaml   promtool check rules + promtool test rules
# The IAM policy is checked by tests/services/test_iam_policy.py (make test).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$root/.deploy-venv/bin  # make deploy-check creates it (tools/deploy-requirements.txt)
step() { printf '== %s\n' "$*"; }

step "deploy/kubernetes.yaml against the Kubernetes and KEDA schemas (offline, strict)"
"$venv/python" tools/validate_manifests.py deploy/kubernetes.yaml

step "docker-compose.yml against the Compose specification (check-jsonschema's vendored copy)"
"$venv/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

step "deploy/prometheus-rules.yaml: promtool check rules, then its unit tests"
if ! command -v promtool >/dev/null; then
  # Debian's prometheus package carries promtool; its service is not started (policy-rc.d
  # in containers, and nothing here asks for it).
  echo "promtool is missing: installing Debian's prometheus package"
  as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo -n)
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version | head -n 1
promtool check rules deploy/prometheus-rules.yaml
promtool test rules deploy/prometheus-rules.test.yaml
echo "deploy-check: ok"
