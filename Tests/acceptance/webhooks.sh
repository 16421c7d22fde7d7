#!/usr/bin/env bash
# Inbound webhooks end to end, with real processes and the providers' own signing libraries (PyPI:
# standardwebhooks, stripe, githubkit, slack_sdk): each signed delivery is accepted and an altered one refused;
# then a stream of signed events is posted while the server is killed with SIGKILL, and after a restart every
# event that got a 2xx is stored, processed exactly once and in the ledger, which verifies; on PostgreSQL two
# server processes then share the queue and never process an event twice.
source "$(dirname "$0")/lib.bash"
cd "$WORK"
PY="$ROOT/.venv/bin/python"
SIGN="$ROOT/Tests/acceptance/tools/sign_webhook.py"
[ -x "$PY" ] || fail "no project venv (make venv)"

"$PORTAL_BIN" keys generate-master --out master.key 2>/dev/null
start_server master.key
ADMIN=$(grep -o 'ptk_[A-Za-z0-9_-]\{43\}' "$WORK/server.out" | head -n 1)
SLUG=default
r=$(api POST /portal/integrations "$ADMIN" '{"name":"Providers","type":"enterprise","baseUrl":"https://api.example.com","authMethod":"api_key","credentials":{"apiKey":"k-0123456789"}}')
[ "$(status_of "$r")" = 201 ] || fail "create integration: $r"
INTEGRATION=$(body_of "$r" | jq -r .id)

register() { # NAME SCHEME SECRET [EXTRA_JSON_MEMBERS]
  local r
  r=$(api POST "/portal/integrations/$INTEGRATION/webhooks" "$ADMIN" "{\"endpoint\":\"/webhooks/$1\",\"scheme\":\"$2\",\"secret\":\"$3\"${4:-}}")
  [ "$(status_of "$r")" = 201 ] || fail "register $1: $r"
  [ "$(body_of "$r" | jq -r .path)" = "/webhooks/$SLUG/$1" ] || fail "register $1: wrong path: $r"
}

# post NAME BODY_FILE HEADERS_FILE: prints the status.
post() {
  local args=()
  while IFS= read -r line; do [ -n "$line" ] && args+=(-H "$line"); done <"$3"
  curl -sS -o "$WORK/post.out" -w '%{http_code}' -X POST "$PORTAL/webhooks/$SLUG/$1" -H 'Content-Type: application/json' "${args[@]}" --data-binary "@$2"
}

# 1. Real signers: accepted; a one-byte change refused.
STD_SECRET="whsec_$("$PY" -c 'import base64,os; print(base64.b64encode(os.urandom(24)).decode())')"
register std standard-webhooks "$STD_SECRET"
register stripe stripe "whsec_stripe_acceptance_0123456789"
register github github "github-acceptance-secret"
register slack slack "slack-acceptance-signing-secret"
for pair in "std:$STD_SECRET:standard-webhooks" "stripe:whsec_stripe_acceptance_0123456789:stripe" "github:github-acceptance-secret:github" "slack:slack-acceptance-signing-secret:slack"; do
  IFS=: read -r name secret scheme <<<"$pair"
  printf '{"id":"evt_%s_1","type":"user.created","data":{"id":"%s-user","email":"%s@example.test"}}' "$name" "$name" "$name" >body.json
  "$PY" "$SIGN" "$scheme" "$secret" body.json "msg_${name}_1" >headers.txt
  status=$(post "$name" body.json headers.txt); [ "$status" = 200 ] || fail "$scheme signed by its library was refused ($status): $(cat post.out)"
  sed 's/"user.created"/"user.createe"/' body.json >altered.json
  status=$(post "$name" altered.json headers.txt); [ "$status" = 401 ] || fail "$scheme: an altered body got $status"
  status=$(post "$name" body.json headers.txt); [ "$status" = 200 ] && jq -e '.duplicate == true' post.out >/dev/null || fail "$scheme: the replay was not acknowledged as a duplicate"
done
ok "standardwebhooks, stripe, githubkit and slack_sdk signatures accepted; altered bodies refused (401); replays acknowledged once"

# 2. SIGKILL mid-stream: every acknowledged event is stored, processed once and chained.
register stream hmac "stream-acceptance-secret" ',"signatureHeader":"X-Stream-Signature","eventIdHeader":"X-Event-Id"'
stream() {
  for i in $(seq 1 600); do
    local body="{\"type\":\"user.created\",\"data\":{\"id\":\"s-$i\",\"email\":\"s$i@example.test\"}}"
    local sig
    sig="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac stream-acceptance-secret -r | cut -d' ' -f1)"
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$PORTAL/webhooks/$SLUG/stream" -H 'Content-Type: application/json' \
      -H "X-Stream-Signature: $sig" -H "X-Event-Id: stream-$i" --data-binary "$body" 2>/dev/null) || return 0
    [ "$code" = 200 ] && echo "stream-$i" >>acked.txt
  done
  return 0
}
: >acked.txt
stream &
STREAM=$!
wait_until 180 test -s acked.txt || fail "no event was acknowledged"
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
wait $STREAM || true
ACKED=$(wc -l <acked.txt)
[ "$ACKED" -gt 0 ] || fail "no event was acknowledged before the kill"
start_server master.key
# The workers finish the queue: wait until no event is pending or retrying (bounded: 60 s; on PostgreSQL an
# event the killed worker held waits for its 30 s lease to expire).
queue_done() { [ "$(curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/portal/integrations/$INTEGRATION/webhooks/logs?limit=1000" | jq '[.items[] | select(.status == "pending" or .status == "retrying")] | length')" = 0 ]; }
wait_until 300 queue_done || true
LOGS=$(curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/portal/integrations/$INTEGRATION/webhooks/logs?limit=1000")
# Every ledger entry of the organization, page by page.
all_entries() {
  local from=0 page n
  for _ in $(seq 1 20); do
    page=$(curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/ledger/$SLUG/entries?from=$from&limit=1000")
    n=$(jq '.entries | length' <<<"$page")
    echo "$page"
    [ "$n" -lt 1000 ] && break
    from=$((from + n))
  done | jq -s '[.[].entries[]]'
}
ENTRIES=$(all_entries)
for provider in $(cat acked.txt); do
  id=$(jq -r --arg p "$provider" '.items[] | select(.providerEventId == $p) | .id' <<<"$LOGS")
  [ -n "$id" ] || fail "acknowledged event $provider is not stored after SIGKILL"
  [ "$(jq -r --arg p "$provider" '.items[] | select(.providerEventId == $p) | .status' <<<"$LOGS")" = processed ] || fail "event $provider was not processed"
  [ "$(jq --arg id "$id" '[.[] | select(.entry.type == "webhook.received" and .entry.data.eventId == $id)] | length' <<<"$ENTRIES")" = 1 ] || fail "event $provider has no webhook.received entry"
done
DOUBLE=$(jq '[.[] | select(.entry.type == "webhook.processed") | .entry.data.eventId] | group_by(.) | map(select(length > 1)) | length' <<<"$ENTRIES")
[ "$DOUBLE" = 0 ] || fail "$DOUBLE events were processed more than once"
STORED=$(jq '[.items[] | select(.providerEventId // "" | startswith("stream-"))] | length' <<<"$LOGS")
PROCESSED=$(jq '[.[] | select(.entry.type == "webhook.processed")] | length' <<<"$ENTRIES")
ok "SIGKILL after $ACKED acknowledged events ($STORED stored): every acknowledged one is stored, processed once ($PROCESSED webhook.processed entries in all) and chained"

# 3. PostgreSQL: two server processes share the database and the queue; each receives half of a stream and
# their workers drain the queue together without processing any event twice.
if [ "$BACKEND" = postgres ]; then
  SECOND_PORT=$(free_port)
  SECOND="http://127.0.0.1:$SECOND_PORT"
  "$PORTAL_BIN" serve --port "$SECOND_PORT" --master-key-file master.key >"$WORK/second.out" 2>"$WORK/second.log" &
  SECOND_PID=$!
  trap 'kill -KILL "$SECOND_PID" 2>/dev/null || true; cleanup' EXIT
  wait_until 180 curl -fsS -o /dev/null "$SECOND/healthz" || fail "the second instance did not start"
  curl -fsS "$SECOND/healthz" >/dev/null || fail "the second instance did not start: $(cat "$WORK/second.log")"
  half() { # BASE PREFIX: 150 signed events, new ids
    for i in $(seq 1 150); do
      local body="{\"type\":\"user.created\",\"data\":{\"id\":\"$2-$i\"}}"
      local sig
      sig="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac stream-acceptance-secret -r | cut -d' ' -f1)"
      curl -sS -o /dev/null -w '%{http_code}\n' -X POST "$1/webhooks/$SLUG/stream" -H 'Content-Type: application/json' \
        -H "X-Stream-Signature: $sig" -H "X-Event-Id: $2-$i" --data-binary "$body" >>"$WORK/twin-$2.codes"
    done
  }
  half "$PORTAL" twin-a & A=$!
  half "$SECOND" twin-b & B=$!
  wait $A $B
  [ "$(grep -c '^200$' "$WORK/twin-twin-a.codes" "$WORK/twin-twin-b.codes" | awk -F: '{n += $2} END {print n}')" = 300 ] || fail "not every delivery to the two instances was acknowledged"
  wait_until 300 queue_done || true
  TWIN_IDS=$(curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/portal/integrations/$INTEGRATION/webhooks/logs?limit=1000" | jq '[.items[] | select(.providerEventId // "" | startswith("twin-")) | .id]')
  [ "$(jq length <<<"$TWIN_IDS")" = 300 ] || fail "the two instances stored $(jq length <<<"$TWIN_IDS") of 300 events"
  ENTRIES=$(all_entries)
  TWIN=$(jq --argjson ids "$TWIN_IDS" '[.[] | select(.entry.type == "webhook.processed" and (.entry.data.eventId as $e | $ids | index($e)))]' <<<"$ENTRIES")
  [ "$(jq length <<<"$TWIN")" = 300 ] || fail "$(jq length <<<"$TWIN") webhook.processed entries for 300 events (an event processed twice or not at all)"
  [ "$(jq '[.[].entry.data.eventId] | unique | length' <<<"$TWIN")" = 300 ] || fail "an event was processed twice by the two instances"
  WORKERS=$(jq '[.[].entry.data.worker] | unique | length' <<<"$TWIN")
  [ "$WORKERS" -ge 2 ] || fail "only $WORKERS worker processed the two instances' events"
  ok "two server processes on one PostgreSQL database: 300 events received through both, processed once each by $WORKERS workers"
  kill -TERM "$SECOND_PID"; wait "$SECOND_PID" 2>/dev/null || true
fi
stop_server
"$PORTAL_BIN" ledger verify --org "$SLUG" --master-key-file master.key >verify.txt 2>&1 || fail "ledger verify after the crash: $(cat verify.txt)"
ok "portal ledger verify passes after the crash"
echo "webhooks.sh ($BACKEND): all checks passed"
