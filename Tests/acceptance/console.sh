#!/usr/bin/env bash
# The web console in a real browser (Debian's chromium driven by selenium) against a real `portal serve`
# with a stand-in provider: the journeys, the refusals, axe-core on every page and a screenshot of each
# (Tests/console/console_test.py; screenshots under var/console/<backend>/).
source "$(dirname "$0")/lib.bash"
cd "$WORK"
trap 'kill -KILL "${PROVIDER_PID:-}" "${IDP_PID:-}" 2>/dev/null || true; cleanup' EXIT

command -v chromium >/dev/null && command -v chromedriver >/dev/null || fail "chromium and chromium-driver are needed (scripts/install-deps.sh test)"
"$PORTAL_BIN" keys generate-master --out master.key 2>/dev/null
start_upstream
export PORTAL_REPORTS_DIR="$ROOT/reports"
# An integration failing three calls in a row fires within seconds, and resolves once a call succeeds.
cat >rules.yml <<'YML'
evaluationInterval: 1s
rules:
  - alert: IntegrationFailing
    kind: integration_failure
    consecutiveFailures: 3
    for: 0s
    labels: {severity: critical}
    annotations: {summary: "Integration {{ $labels.integration_name }} is failing"}
YML
start_server master.key --outbound-allow 127.0.0.1 --alert-rules "$WORK/rules.yml"
ADMIN=$(grep -o 'ptk_[A-Za-z0-9_-]\{43\}' "$WORK/server.out" | head -n 1)
[ -n "$ADMIN" ] || fail "no first admin token"

# Two integrations with traffic in the default organization; another organization with its own admin.
for name in CRM Analytics; do
  type=$([ "$name" = CRM ] && echo enterprise || echo analytics)
  r=$(api POST /portal/integrations "$ADMIN" "{\"name\":\"$name\",\"type\":\"$type\",\"baseUrl\":\"$UPSTREAM\",\"authMethod\":\"api_key\",\"credentials\":{\"apiKey\":\"k-console-$name-123456\"},\"config\":{\"retry\":{\"maxAttempts\":1}}}")
  [ "$(status_of "$r")" = 201 ] || fail "creating $name: $r"
  id=$(body_of "$r" | jq -r .id)
  for i in 1 2 3; do api POST "/portal/integrations/$id/requests" "$ADMIN" '{"method":"GET","endpoint":"/ok"}' >/dev/null; done
  api POST "/portal/integrations/$id/requests" "$ADMIN" '{"method":"GET","endpoint":"/fail"}' >/dev/null
  [ "$name" = CRM ] && CRM_ID=$id
done
# A directory to sync (250 users, pages of 100), its conflicts left for review.
start_provider 250
r=$(api POST /portal/integrations "$ADMIN" "{\"name\":\"Directory\",\"type\":\"identity_provider\",\"baseUrl\":\"$PROVIDER\",\"authMethod\":\"api_key\",
  \"credentials\":{\"apiKey\":\"k-0123456789\"},\"syncConfig\":{\"conflictResolution\":{\"strategy\":\"manual\"},\"entities\":{\"users\":{\"endpoint\":\"/users\",\"itemsPath\":\"/data\",
  \"pagination\":{\"style\":\"cursor\",\"cursorParam\":\"after\",\"nextCursorPath\":\"/meta/next\",\"pageSizeParam\":\"limit\",\"pageSize\":100}}}}}")
[ "$(status_of "$r")" = 201 ] || fail "creating the directory: $r"
DIRECTORY_ID=$(body_of "$r" | jq -r .id)
# nanoidp (a real OAuth 2.0 provider) for Connect: authorization code with PKCE, back into the console.
IDP_DIR="$WORK/nanoidp"
"$ROOT/.venv/bin/nanoidp" init "$IDP_DIR" >/dev/null
IDP_PORT=$(free_port)
sed -i -e "s/port: 8000/port: $IDP_PORT/" -e "s|issuer: \"http://localhost:8000\"|issuer: \"http://127.0.0.1:$IDP_PORT\"|" \
  -e 's/client_id: "demo-client"/client_id: "portal-client"/' -e 's/client_secret: "demo-secret"/client_secret: "portal-secret-123456"/' "$IDP_DIR/settings.yaml"
(cd "$IDP_DIR" && exec "$ROOT/.venv/bin/nanoidp" --config "$IDP_DIR" --host 127.0.0.1 --port "$IDP_PORT" >"$WORK/nanoidp.log" 2>&1) &
IDP_PID=$!
IDP="http://127.0.0.1:$IDP_PORT"
wait_until 120 curl -fsS "$IDP/.well-known/openid-configuration" -o /dev/null || fail "nanoidp did not start: $(tail -5 "$WORK/nanoidp.log")"
r=$(api POST /portal/integrations "$ADMIN" "{\"name\":\"Identity\",\"type\":\"identity_provider\",\"baseUrl\":\"$UPSTREAM\",\"authMethod\":\"oauth2\",
  \"credentials\":{\"clientId\":\"portal-client\",\"clientSecret\":\"portal-secret-123456\"},
  \"config\":{\"oauth\":{\"tokenUrl\":\"$IDP/token\",\"authorizationUrl\":\"$IDP/authorize\",\"redirectUri\":\"$PORTAL/portal/oauth/callback\",\"scopes\":[\"openid\"],\"grantType\":\"authorization_code\"}}}")
[ "$(status_of "$r")" = 201 ] || fail "creating the OAuth integration: $r"
OAUTH_ID=$(body_of "$r" | jq -r .id)
OTHER=$("$PORTAL_BIN" token create --org globex --role admin --owner "Gil Globex" --expires-in 1d 2>/dev/null)
AUDITOR=$("$PORTAL_BIN" token create --org default --role auditor --owner "Ann Auditor" --expires-in 1d 2>/dev/null)
COMPLIANCE=$("$PORTAL_BIN" token create --org default --role compliance --owner "Cora Compliance" --expires-in 1d 2>/dev/null)
[ -n "$OTHER" ] && [ -n "$AUDITOR" ] && [ -n "$COMPLIANCE" ] || fail "token create for the console test"

mkdir -p "$ROOT/var/console/$BACKEND"
PORTAL="$PORTAL" ADMIN="$ADMIN" OTHER="$OTHER" AUDITOR="$AUDITOR" COMPLIANCE="$COMPLIANCE" CRM_ID="$CRM_ID" DIRECTORY_ID="$DIRECTORY_ID" OAUTH_ID="$OAUTH_ID" UPSTREAM="$UPSTREAM" PORTAL_BIN="$PORTAL_BIN" WORK="$WORK" SHOTS="$ROOT/var/console/$BACKEND" \
  "$ROOT/.venv/bin/python" "$ROOT/Tests/console/console_test.py" || fail "the console's browser test"

# Sign-ins and sign-outs are in the ledger, like the API's token events.
entries=$(curl -fsS -H "Authorization: Bearer $ADMIN" "$PORTAL/ledger/default/entries?limit=1000")
started=$(jq '[.entries[] | select(.entry.type == "session.started")] | length' <<<"$entries")
ended=$(jq '[.entries[] | select(.entry.type == "session.ended")] | length' <<<"$entries")
# default: the admin, the compliance officer (approvals), the admin again and the auditor signed in, the admin
# signed out (globex's sign-in is in its own ledger).
[ "$started" = 4 ] && [ "$ended" = 1 ] || fail "session entries in the ledger: $started started, $ended ended"
ok "console sign-ins ($started) and sign-outs ($ended) are ledgered"
"$PORTAL_BIN" ledger verify --master-key-file master.key >verify.txt 2>&1 || fail "the ledger does not verify after the console test: $(cat verify.txt)"
ok "the ledger verifies"
stop_server
