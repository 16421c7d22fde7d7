#!/usr/bin/env bash
# A sync killed mid-way resumes without duplicates or gaps: a provider process serves 3,000 users in cursor
# pages of 100; `portal serve` starts a full sync and is killed with SIGKILL after some pages; after a restart
# the job finishes from its last committed page: every user stored once, each page counted once, the provider
# asked again for at most the page that was in flight, and the ledger verifies.
source "$(dirname "$0")/lib.bash"
cd "$WORK"
trap 'kill -KILL "${PROVIDER_PID:-}" 2>/dev/null || true; cleanup' EXIT
start_provider 3000
curl -fsS "$PROVIDER/stats" >/dev/null || fail "the fake provider did not start"

export PORTAL_OUTBOUND_ALLOW=127.0.0.1
"$PORTAL_BIN" keys generate-master --out master.key 2>/dev/null
start_server master.key
ADMIN=$(grep -o 'ptk_[A-Za-z0-9_-]\{43\}' "$WORK/server.out" | head -n 1)
start_directory_sync "$ADMIN"
ID=$SYNC_ID

# SIGKILL once some pages are committed.
midway() { processed=$(job | jq .recordsProcessed); [ "$processed" -ge 500 ]; }
WAIT_EVERY=0.05 wait_until 180 midway || true
[ "$processed" -ge 500 ] && [ "$processed" -lt 3000 ] || fail "the job was not mid-way ($processed records) when the server was to be killed"
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
ok "SIGKILL after $processed of 3000 records"

# Restarted, the server resumes the job (on PostgreSQL once its 30 s lease has run out).
start_server master.key
expect_sync_resumed "a SIGKILL"
# Every user is stored, once.
ids=$( cursor=""; for _ in $(seq 1 40); do
    page=$(curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/portal/integrations/$ID/records/users?limit=1000${cursor:+&cursor=$cursor}")
    jq -r '.items[].recordId' <<<"$page"
    cursor=$(jq -r '.nextCursor // empty' <<<"$page")
    [ -z "$cursor" ] && break
  done )
[ "$(sort <<<"$ids" | uniq | wc -l)" = 3000 ] && [ "$(wc -l <<<"$ids")" = 3000 ] || fail "records after the resume: $(wc -l <<<"$ids") listed"
ok "resumed from its last committed page: 3000 records, each page counted once ($REPEATS pages asked for again)"
COMPLETED=$(curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/ledger/default/entries?from=0&limit=1000" | jq --arg job "$JOB" '[.entries[] | select(.entry.type == "sync.completed" and .entry.data.jobId == $job)] | length')
[ "$COMPLETED" = 1 ] || fail "sync.completed entries for the job: $COMPLETED"
stop_server
"$PORTAL_BIN" ledger verify --org default --master-key-file master.key >verify.txt 2>&1 || fail "ledger verify: $(cat verify.txt)"
ok "one sync.completed entry; portal ledger verify passes"
echo "sync.sh ($BACKEND): all checks passed"
