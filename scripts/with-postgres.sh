#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster on 127.0.0.1 and PORTAL_TEST_POSTGRES_URL pointing at it,
# then stops the cluster and removes its files, whatever the command's outcome.
#   scripts/with-postgres.sh swift test
# PORT (default 55432) picks the port; PG_FSYNC=on (benchmarks) keeps PostgreSQL's default durability,
# tests run with fsync off. Needs root (the server runs as the 'postgres' user) or a postgres user.
set -euo pipefail

PORT=${PORT:-55432}
PG_FSYNC=${PG_FSYNC:-off}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  echo "with-postgres: no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 2
fi

DIR=$(mktemp -d /tmp/portal-pg.XXXXXX)
chmod 755 "$DIR"
as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}
[ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"

cleanup() {
  as_pg "$BIN/pg_ctl -D $DIR/data -m fast stop" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

as_pg "$BIN/initdb -D $DIR/data -U postgres -A trust --no-sync" >/dev/null
# max_connections 1000: Swift Testing runs every test at once, each PostgreSQL test with its own database and
# pools of up to 16 connections (300 ran out once the suite grew).
as_pg "$BIN/pg_ctl -D $DIR/data -l $DIR/log -w -o '-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=$PG_FSYNC -c max_connections=1000' start" >/dev/null
psql -h 127.0.0.1 -p "$PORT" -U postgres -qc 'CREATE DATABASE portal_test' >/dev/null

export PORTAL_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PORT/portal_test?sslmode=disable"
echo "with-postgres: PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2
set +e
"$@"
status=$?
set -e
exit $status
