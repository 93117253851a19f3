#!/usr/bin/env bash
# Print a base URL (no database name) of a PostgreSQL server we may use.
# The machine's server on 127.0.0.1:5432 if it answers; otherwise a throwaway cluster
# started from the machine's PostgreSQL binaries in .run/pgdata on port 54329.
set -euo pipefail
host=${LOGINETL_PG_HOST:-127.0.0.1}
port=${LOGINETL_PG_PORT:-5432}
if pg_isready -q -h "$host" -p "$port" 2>/dev/null; then
  echo "postgresql+psycopg2://postgres@$host:$port"
  exit 0
fi
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "no PostgreSQL answers on $host:$port and no server binaries are installed;" >&2
  echo "install them (apt-get install postgresql) or set LOGINETL_DATABASE_URL" >&2
  exit 1
fi
root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/.run/pgdata"
local_port=54329
as_owner=()
if [ "$(id -u)" = 0 ]; then
  as_owner=(runuser -u postgres --)  # initdb refuses to run as root
fi
if [ ! -f "$data/PG_VERSION" ]; then
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres "$data" "$root/.run"
  "${as_owner[@]}" "$bindir/initdb" -D "$data" -U postgres --auth=trust >/dev/null
fi
if ! pg_isready -q -h 127.0.0.1 -p "$local_port" 2>/dev/null; then
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-h 127.0.0.1 -p $local_port -k /tmp" start >/dev/null
fi
echo "postgresql+psycopg2://postgres@127.0.0.1:$local_port"
