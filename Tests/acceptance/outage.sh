#!/usr/bin/env bash
# A PostgreSQL outage under load, with real processes: a server of its own on a PostgreSQL cluster of its own
# is restarted with `pg_ctl restart -m immediate` three times while four clients create integrations: every
# request is answered (201, or 503 with Retry-After), none hangs, nothing acknowledged is lost and the ledger
# verifies. With the database down the API answers 503 `unavailable` with Retry-After within its deadline,
# the CLI names the database it cannot reach, and SIGTERM ends the server within its grace period.
source "$(dirname "$0")/lib.bash"
if [ "$BACKEND" != postgres ]; then
  ok "PostgreSQL only (an outage of the server process; SQLite has none)"
  exit 0
fi
cd "$WORK"

# A cluster of this script's own, so restarting it disturbs no other test.
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
PGDIR=$(mktemp -d /tmp/portal-outage-pg.XXXXXX)
chmod 755 "$PGDIR"
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "cd / && $1"; else sh -c "$1"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDIR"
PGPORT=$(free_port)
pg() { as_pg "$BIN/pg_ctl -D $PGDIR/data -l $PGDIR/log -w $* -o '-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off'" >/dev/null; }
outage_cleanup() { as_pg "$BIN/pg_ctl -D $PGDIR/data -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$PGDIR"; cleanup; }
trap outage_cleanup EXIT
as_pg "$BIN/initdb -D $PGDIR/data -U postgres -A trust --no-sync" >/dev/null
pg start
psql -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "CREATE DATABASE outage" >/dev/null
export PORTAL_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/outage?sslmode=disable"
# A request waits at most this long for a connection before it is answered 503 (the default is 30 s).
export PORTAL_DATABASE_WAIT=10s
# 1,200 creates: past the default bound of 500 integrations per organization.
export PORTAL_MAX_INTEGRATIONS=5000
# The sync of section 1b reads a provider on loopback.
export PORTAL_OUTBOUND_ALLOW=127.0.0.1

"$PORTAL_BIN" keys generate-master --out master.key 2>/dev/null
start_server master.key
ADMIN=$(grep -o 'ptk_[A-Za-z0-9_-]\{43\}' "$WORK/server.out" | head -n 1)

# 1. Four clients create integrations while the database restarts three times.
client() { # NAME: each answer as "status seconds id"
  for i in $(seq 1 300); do
    curl -sS -o "body-$1" -w '%{http_code} %{time_total}\n' --max-time 60 -X POST -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
      -d "{\"name\":\"$1 $i\",\"type\":\"analytics\",\"baseUrl\":\"https://api.example.com\",\"authMethod\":\"api_key\",\"credentials\":{\"apiKey\":\"key-$i-0123456789\"}}" \
      "$PORTAL/portal/integrations" >"line-$1" 2>/dev/null || echo "000 60" >"line-$1"
    echo "$(cat "line-$1") $(jq -r '.id // "-"' "body-$1" 2>/dev/null || echo -)" >>"answers-$1"
  done
}
CLIENTS=()
for c in a b c d; do client "$c" & CLIENTS+=($!); done
answered() { [ "$(cat answers-? 2>/dev/null | wc -l)" -ge "$1" ]; }
for n in 100 300 500; do
  wait_until 180 answered "$n" || fail "fewer than $n answers before a restart"
  pg "-m immediate restart"
done
wait "${CLIENTS[@]}"
cat answers-? >answers.txt
TOTAL=$(wc -l <answers.txt)
[ "$TOTAL" = 1200 ] || fail "$TOTAL answers for 1200 requests"
HUNG=$(awk '$1 == "000"' answers.txt | wc -l)
[ "$HUNG" = 0 ] || fail "$HUNG requests were never answered (curl's 60 s limit)"
OTHER=$(awk '$1 != "201" && $1 != "503"' answers.txt | wc -l)
[ "$OTHER" = 0 ] || fail "answers other than 201 and 503: $(awk '$1 != "201" && $1 != "503"' answers.txt | head -3)"
SLOW=$(awk '$2 > 15' answers.txt | wc -l)
[ "$SLOW" = 0 ] || fail "$SLOW answers took longer than 15 s"
ok "1200 creates across three immediate restarts: $(awk '$1 == "201"' answers.txt | wc -l) created, $(awk '$1 == "503"' answers.txt | wc -l) answered 503, none hung"

# Every acknowledged create is stored and chained; the ledger verifies.
awk '$1 == "201" {print $3}' answers.txt | sort >acked.txt
chained() {
  local from=0 n
  : >chained.txt
  while :; do
    page=$(curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/ledger/default/entries?from=$from&limit=1000") || return 1
    jq -r '.entries[].entry | select(.type == "integration.created") | .integration' <<<"$page" >>chained.txt
    n=$(jq -r '.nextFrom // empty' <<<"$page")
    [ -n "$n" ] || break
    from=$n
  done
  [ -z "$(comm -23 acked.txt <(sort chained.txt))" ]
}
wait_until 180 chained || fail "acknowledged creates missing from the ledger: $(comm -23 acked.txt <(sort chained.txt) | head -3)"
"$PORTAL_BIN" ledger verify --org default --master-key-file master.key >verify.txt || { cat verify.txt; fail "the ledger does not verify after the restarts"; }
ok "$(wc -l <acked.txt) acknowledged creates all chained; the ledger verifies"

# 1b. A sync through an immediate restart: the page in flight is not committed, the job is not failed for it,
# and once its lease (30 s) runs out it resumes from its last committed page, counting nothing twice.
trap 'kill -KILL "${PROVIDER_PID:-}" 2>/dev/null || true; outage_cleanup' EXIT
start_provider 3000
start_directory_sync "$ADMIN"
midway() { processed=$(job | jq .recordsProcessed 2>/dev/null); [ "${processed:-0}" -ge 500 ]; }
WAIT_EVERY=0.05 wait_until 180 midway || true
[ "${processed:-0}" -ge 500 ] && [ "$processed" -lt 3000 ] || fail "the job was not mid-way ($processed records) when the database was to restart"
pg "-m immediate restart"
expect_sync_resumed "an immediate restart"
kill -KILL "$PROVIDER_PID" 2>/dev/null || true
ok "a sync through an immediate restart after $processed records: completed with 3000 records, each page counted once ($REPEATS asked for again)"

# 2. The database down: 503 with Retry-After within the deadline, and a CLI that names the database.
pg "-m immediate stop"
r=$(curl -sS -D headers.txt -o problem.json -w '%{http_code} %{time_total}' --max-time 60 -H "Authorization: Bearer $ADMIN" "$PORTAL/portal/integrations")
[ "${r%% *}" = 503 ] || fail "with the database down: $r $(cat problem.json)"
awk -v t="${r##* }" 'BEGIN { exit !(t < 15) }' || fail "the 503 took ${r##* } s"
grep -qi '^retry-after: [0-9]' headers.txt || fail "no Retry-After on the 503"
[ "$(jq -r .code problem.json)" = unavailable ] || fail "problem code $(jq -r .code problem.json)"
! grep -q "$PGPORT" problem.json || fail "the problem names the database's address to an API client"
set +e
"$PORTAL_BIN" ledger verify --org default --master-key-file master.key >cli.out 2>cli.err
status=$?
set -e
[ "$status" = 1 ] || fail "the CLI exited $status with the database down"
grep -q "127.0.0.1:$PGPORT/outage" cli.err || fail "the CLI does not say which database: $(cat cli.err)"
grep -q "cannot be reached" cli.err || fail "the CLI does not say why: $(cat cli.err)"
! grep -q "ConnectionPoolError" cli.err || fail "the CLI shows the driver's error type: $(cat cli.err)"
ok "database down: 503 unavailable with Retry-After in ${r##* } s; the CLI says: $(head -c 160 cli.err)"

# 3. SIGTERM with the database still down ends the server within its grace period (30 s, then cancellation).
START=$SECONDS
kill -TERM "$SERVER_PID"
stopped() { ! kill -0 "$SERVER_PID" 2>/dev/null; }
wait_until 60 stopped || fail "the server did not end within 60 s of SIGTERM with the database down"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
ok "SIGTERM with the database down: exited after $((SECONDS - START)) s"
