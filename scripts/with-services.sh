#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL (embedded, from the pgserver wheel) and Redis on
# loopback ports, each in a temporary data directory, and stops both whatever the outcome.
# Exports DATABASE_URL and REDIS_URL.
#   scripts/with-services.sh COMMAND [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

PG_PORT=${TEST_PG_PORT:-54329}
REDIS_PORT=${TEST_REDIS_PORT:-63799}
PYTHON=${PYTHON:-.venv/bin/python}

tmp=$(mktemp -d /tmp/reviewplatform-services.XXXXXX)
chmod 755 "$tmp"
export TEST_PGDATA="$tmp/pg"

cleanup() {
  "$PYTHON" scripts/embedded_postgres.py stop "$TEST_PGDATA" --immediate >/dev/null 2>&1 || true
  [[ -n "${redis_pid:-}" ]] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

DATABASE_URL=$("$PYTHON" scripts/embedded_postgres.py start "$TEST_PGDATA" "$PG_PORT" --fast)
export DATABASE_URL

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$tmp" --logfile "$tmp/redis.log" &
redis_pid=$!
for _ in $(seq 50); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done

export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
echo "PostgreSQL (embedded) on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT"
set +e
"$@"
status=$?
exit $status
