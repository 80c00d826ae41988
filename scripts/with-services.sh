#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL and Redis on loopback ports, each in a temporary
# data directory, and stops both whatever the outcome. Exports DATABASE_URL and REDIS_URL.
#   scripts/with-services.sh COMMAND [ARGS...]
set -euo pipefail

PG_PORT=${TEST_PG_PORT:-54329}
REDIS_PORT=${TEST_REDIS_PORT:-63799}
if [[ -z "${PG_BIN:-}" ]]; then
  PG_BIN=/usr/lib/postgresql/15/bin
  [[ -x "$PG_BIN/initdb" ]] || PG_BIN=$(dirname "$(readlink -f "$(command -v initdb)")")
fi

tmp=$(mktemp -d /tmp/reviewplatform-services.XXXXXX)
chmod 755 "$tmp"
pgdata="$tmp/pg"
as_pg() {
  # initdb and postgres refuse to run as root: run them as the postgres user there.
  if [[ $(id -u) -eq 0 ]]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

cleanup() {
  as_pg "'$PG_BIN/pg_ctl' -D '$pgdata' -m immediate stop" >/dev/null 2>&1 || true
  [[ -n "${redis_pid:-}" ]] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

pglogs="$tmp/pglogs"
mkdir -p "$pgdata" "$pglogs"
if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$pgdata" "$pglogs"; fi
as_pg "'$PG_BIN/initdb' -D '$pgdata' -U postgres -A trust --no-sync -E UTF8 >'$pglogs/initdb.log' 2>&1" \
  || { cat "$pglogs/initdb.log"; exit 1; }
as_pg "'$PG_BIN/pg_ctl' -D '$pgdata' -l '$pglogs/server.log' -w -o \"-p $PG_PORT -k '$pgdata' \
  -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c max_connections=200\" start" >/dev/null

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$tmp" --logfile "$tmp/redis.log" &
redis_pid=$!
for _ in $(seq 50); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done

export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/reviewplatform"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
echo "PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT"
set +e
"$@"
status=$?
exit $status
