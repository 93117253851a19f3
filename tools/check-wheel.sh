#!/usr/bin/env bash
# Build the sdist and wheel, install the wheel into a fresh virtualenv with no source tree on
# the path, and run the job from it against real services: the machine's PostgreSQL (a
# throwaway database, dropped at the end) and a LocalStack of our own (stopped at the end).
# What a container image or `pipx install` does; `make wheel-check` and .ci/run call it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=$root/.venv/bin/python
work=$(mktemp -d /tmp/loginetl-wheel.XXXXXX)
database=loginetl_wheel_$(date +%s)_$$
admin_url=""
localstack_state=$work/localstack

cleanup() {
  status=$?
  "$py" "$root/tools/localstack.py" stop --state-dir "$localstack_state" >/dev/null 2>&1 || true
  if [ -n "$admin_url" ]; then
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null || true
  fi
  rm -rf "$work"
  [ "$status" = 0 ] && echo "wheel-check: ok" || echo "wheel-check: FAILED" >&2
  exit "$status"
}
trap cleanup EXIT
fail() { echo "wheel-check: $*" >&2; exit 1; }
step() { printf '== %s\n' "$*"; }

step "build the sdist, then the wheel from the sdist (python -m build)"
# From a copy of what git would commit: a stale loginetl.egg-info/SOURCES.txt left in the
# work tree by `pip install -e` would otherwise add files the build config forgot.
mkdir "$work/src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
  | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$work/src"
"$py" -m build --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 || {
  tail -n 30 "$work/build.log" >&2
  fail "the build failed"
}
wheel=$(ls "$work"/dist/loginetl-*.whl)
sdist=$(ls "$work"/dist/loginetl-*.tar.gz)
"$py" -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' \
  "$wheel" >"$work/wheel.txt"
tar -tzf "$sdist" | sed 's|^[^/]*/||' >"$work/sdist.txt"
for revision in "$root"/migrations/versions/*.py; do
  name=$(basename "$revision")
  grep -qx "loginetl/_migrations/versions/$name" "$work/wheel.txt" || fail "$name is not in the wheel"
  grep -qx "migrations/versions/$name" "$work/sdist.txt" || fail "$name is not in the sdist"
done
grep -qx "loginetl/_migrations/env.py" "$work/wheel.txt" || fail "env.py is not in the wheel"
# The baseline runs the schema's SQL files from the package: every one must ship.
(cd "$root" && find loginetl/sql -name '*.sql') | while read -r sql; do
  grep -qx "$sql" "$work/wheel.txt" || fail "$sql is not in the wheel"
  grep -qx "$sql" "$work/sdist.txt" || fail "$sql is not in the sdist"
done
echo "$(basename "$wheel") and $(basename "$sdist") carry env.py," \
  "$(ls "$root"/migrations/versions/*.py | wc -l) revision(s) and" \
  "$(cd "$root" && find loginetl/sql -name '*.sql' | wc -l) SQL files"

step "install the wheel into a fresh virtualenv"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check -c "$root/tools/constraints.txt" \
  "$wheel" >"$work/pip.log" 2>&1 || { tail -n 30 "$work/pip.log" >&2; fail "pip install failed"; }
loginetl=$work/venv/bin/loginetl
[ -x "$loginetl" ] || fail "the wheel installed no loginetl script"

# From here on: no source tree anywhere on the path, only the installed package.
cd "$work"
unset PYTHONPATH VIRTUAL_ENV
export PYTHONSAFEPATH=1
located=$("$work/venv/bin/python" -c 'import loginetl; print(loginetl.__file__)')
case $located in
  "$work"/venv/*) ;;
  *) fail "loginetl was imported from $located, not from the fresh virtualenv" ;;
esac

expected=$("$py" -c 'import tomllib; print(tomllib.load(open("'"$root"'/pyproject.toml","rb"))["project"]["version"])')
[ "$("$loginetl" --version)" = "loginetl $expected" ] || fail "--version is not loginetl $expected"
echo "loginetl --version: loginetl $expected"

step "start PostgreSQL (if needed) and a LocalStack of our own"
base_url=$("$root/tools/ensure-postgres.sh")
admin_url="${base_url/postgresql+psycopg2:/postgresql:}/postgres"
port=$("$py" -c 'import sys; sys.path.insert(0, "'"$root"'/tools"); import localstack; print(localstack.free_port())')
"$py" "$root/tools/localstack.py" start --port "$port" --state-dir "$localstack_state"

export LOGINETL_DATABASE_URL=$base_url/$database
export LOGINETL_KEYS_DIR=$work/keys
export LOGINETL_QUEUE=wheel-check-$$ LOGINETL_DLQ=wheel-check-$$-dlq
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_DEFAULT_REGION=us-east-1

step "keys init, migrate upgrade, migrate check"
"$loginetl" keys init
"$loginetl" migrate upgrade | tee "$work/upgrade.out"
grep -q "created database" "$work/upgrade.out" || fail "migrate upgrade did not create $database"
"$loginetl" migrate check

sample=$root/tests/fixtures/fetch_sample_messages.json
[ -f "$sample" ] || sample=$root/../shared/fixtures/fetch_sample_messages.json
[ -f "$sample" ] || fail "no public sample (tests/fixtures/ or ../shared/fixtures/)"
step "seed the public sample, consume it, stats"
"$loginetl" seed --from-file "$sample" --create-queues
"$loginetl" consume --create-queues --idle-exit 2 --json >"$work/consume.json"
"$loginetl" stats --json >"$work/stats.json"
"$work/venv/bin/python" - "$work/consume.json" "$work/stats.json" "$expected" <<'EOF'
import json
import sys

consume = json.load(open(sys.argv[1]))
stats = json.load(open(sys.argv[2]))
version = sys.argv[3]
got = (consume["received"], consume["loaded"], consume["dead_lettered"])
assert got == (100, 99, 1), f"consume: received, loaded, dead-lettered = {got}, not (100, 99, 1)"
assert stats["table"]["rows"] == 99, f"stats: {stats['table']['rows']} rows, not 99"
dead = stats["queues"]["dead_letter"]["visible"]
assert dead == 1, f"stats: {dead} messages in the DLQ, not 1"
assert consume["loginetl_version"] == stats["loginetl_version"] == version, "version in --json"
print("consume: 100 received, 99 loaded, 1 dead-lettered; stats: 99 rows, 1 in the DLQ")
EOF
