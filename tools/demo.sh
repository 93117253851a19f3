#!/usr/bin/env bash
# The demo: a local SQS endpoint, PostgreSQL, keys, schema, 5,000 demo messages, consume,
# fold, stats.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
loginetl=.venv/bin/loginetl
port=${SQS_PORT:-4566}

if ! $py tools/localstack.py status --port "$port" >/dev/null; then
  $py tools/localstack.py start --port "$port"
  trap '$py tools/localstack.py stop >/dev/null' EXIT
fi
if [ -z "${LOGINETL_DATABASE_URL:-}" ]; then
  LOGINETL_DATABASE_URL="$(tools/ensure-postgres.sh)/loginetl"
  export LOGINETL_DATABASE_URL
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "keys (privacy staff's full set in $LOGINETL_KEYS_DIR; the consumer gets only its own)"
$loginetl keys init
consumer_keys="$(dirname "$LOGINETL_KEYS_DIR")/consumer-keys"
[ -e "$consumer_keys/hmac-keys.json" ] || $loginetl keys export-consumer --to "$consumer_keys"
step "schema"
$loginetl migrate upgrade
step "seed 5,000 demo messages (1% malformed)"
$loginetl seed --count 5000 --seed "$(date +%s)" --create-queues
step "consume"
LOGINETL_KEYS_DIR="$consumer_keys" $loginetl consume --create-queues --idle-exit 3
step "fold (the vault inbox into the vault, the loaded rows into the rollups: not the writer's job)"
$loginetl fold
step "stats"
$loginetl stats
echo
echo "Done. LocalStack stops now unless it was already running (make sqs-up keeps one up)."
