# Shared helpers of the acceptance scripts: a fresh database per script on $BACKEND (sqlite or postgres),
# the built `portal` binary, a server process on a free loopback port. Sourced, not run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PORTAL_BIN="$ROOT/.build/debug/portal"
BACKEND=${BACKEND:-sqlite}
WORK=$(mktemp -d /tmp/portal-acceptance.XXXXXX)
SERVER_PID=""
PG_DB=""

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "  ok: $*"; }

cleanup() {
  if [ -n "${UPSTREAM_PID:-}" ]; then kill "$UPSTREAM_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$PG_DB" ]; then psql "$PORTAL_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true; fi
  if [ -n "${KEEP_WORK:-}" ]; then echo "work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# A new empty database URL for this script.
case "$BACKEND" in
  sqlite) export PORTAL_DATABASE_URL="sqlite://$WORK/portal.sqlite" ;;
  postgres)
    [ -n "${PORTAL_TEST_POSTGRES_URL:-}" ] || fail "BACKEND=postgres needs PORTAL_TEST_POSTGRES_URL"
    PG_DB="portal_a_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    psql "$PORTAL_TEST_POSTGRES_URL" -qc "CREATE DATABASE $PG_DB" >/dev/null
    export PORTAL_DATABASE_URL="${PORTAL_TEST_POSTGRES_URL%%/portal_test*}/$PG_DB?sslmode=disable"
    ;;
  *) fail "unknown BACKEND $BACKEND" ;;
esac

# The scripts call out through integrations they just made; approvals (issue 21) have their own tests.
export PORTAL_APPROVALS=${PORTAL_APPROVALS:-off}

# The public URL names ledger origins (and so key names): server and CLI must agree on it.
export PORTAL_PUBLIC_URL=${PORTAL_PUBLIC_URL:-https://portal.example.test}

# wait_until SECONDS COMMAND...: runs COMMAND every WAIT_EVERY seconds (default 0.2) until it succeeds; fails after
# SECONDS. Scripts wait for conditions, never for a fixed time: the limit is a backstop for a broken feature,
# generous for a busy machine.
wait_until() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep "${WAIT_EVERY:-0.2}"
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_server KEYFILE [extra serve flags...]: starts `portal serve`, waits for /healthz, sets PORTAL and SERVER_PID.
start_server() {
  local keyfile=$1; shift
  PORT=$(free_port)
  PORTAL="http://127.0.0.1:$PORT"
  "$PORTAL_BIN" serve --port "$PORT" --master-key-file "$keyfile" "$@" >"$WORK/server.out" 2>"$WORK/server.log" &
  SERVER_PID=$!
  local deadline=$((SECONDS + 180))
  while [ "$SECONDS" -lt "$deadline" ]; do
    curl -fsS "$PORTAL/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; fail "the server exited during start"; }
    sleep 0.25
  done
  fail "the server did not answer /healthz within 180 s"
}

# stop_server [SIGNAL]: sends SIGTERM (or the given signal) and checks a clean exit within 15 s.
stop_server() {
  local signal=${1:-TERM}
  kill -"$signal" "$SERVER_PID"
  for _ in $(seq 1 60); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      local status=0
      wait "$SERVER_PID" || status=$?
      SERVER_PID=""
      [ "$status" -eq 0 ] || fail "the server exited with $status after SIG$signal"
      return 0
    fi
    sleep 0.25
  done
  fail "the server did not stop within 15 s of SIG$signal"
}

# api METHOD PATH TOKEN [JSON]: prints the body, then the status on its own last line.
api() {
  local method=$1 path=$2 token=$3 body=${4:-}
  if [ -n "$body" ]; then
    curl -sS -X "$method" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$body" -w '\n%{http_code}' "$PORTAL$path"
  else
    curl -sS -X "$method" -H "Authorization: Bearer $token" -w '\n%{http_code}' "$PORTAL$path"
  fi
}
status_of() { tail -n 1 <<<"$1"; }
body_of() { sed '$d' <<<"$1"; }

# start_upstream: a stand-in provider on a free loopback port (for 5 minutes at most), in UPSTREAM. GET and
# POST answer 200 with {"ok":true} and rate-limit headers (limit 100, remaining 5); paths starting /fail 500.
start_upstream() {
  python3 - <<'PY' >"$WORK/upstream.port" &
import http.server, threading
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        code = 500 if self.path.startswith("/fail") else 200
        body = b'{"ok":true}'
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("X-RateLimit-Limit", "100"); self.send_header("X-RateLimit-Remaining", "5")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    do_GET = do_POST = answer
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
threading.Timer(300, s.shutdown).start()
s.serve_forever()
PY
  UPSTREAM_PID=$!
  for _ in $(seq 1 40); do [ -s "$WORK/upstream.port" ] && break; sleep 0.1; done
  [ -s "$WORK/upstream.port" ] || fail "the stand-in provider did not start"
  UPSTREAM="http://127.0.0.1:$(cat "$WORK/upstream.port")"
}

# A fake identity provider (Tests/acceptance/tools/fake_provider.py) with $1 users in cursor pages of 100:
# sets PROVIDER (its URL) and PROVIDER_PID. The caller's EXIT trap kills it.
start_provider() {
  local py="$ROOT/.venv/bin/python"
  [ -x "$py" ] || py=python3
  "$py" "$ROOT/Tests/acceptance/tools/fake_provider.py" --users "$1" --delay-ms 40 >provider.out 2>provider.log &
  PROVIDER_PID=$!
  disown "$PROVIDER_PID"
  wait_until 180 test -s provider.out || fail "the provider did not start"
  PROVIDER="http://127.0.0.1:$(head -n 1 provider.out)"
}

# An identity-provider integration reading $PROVIDER's users, and a full sync of it started with token $1:
# sets SYNC_ID (the integration) and JOB; job prints the job.
start_directory_sync() {
  local r
  r=$(api POST /portal/integrations "$1" "{\"name\":\"Directory\",\"type\":\"identity_provider\",\"baseUrl\":\"$PROVIDER\",\"authMethod\":\"api_key\",
    \"credentials\":{\"apiKey\":\"k-0123456789\"},\"syncConfig\":{\"entities\":{\"users\":{\"endpoint\":\"/users\",\"itemsPath\":\"/data\",
    \"pagination\":{\"style\":\"cursor\",\"cursorParam\":\"after\",\"nextCursorPath\":\"/meta/next\",\"pageSizeParam\":\"limit\",\"pageSize\":100}}}}}")
  [ "$(status_of "$r")" = 201 ] || fail "create the sync's integration: $r"
  SYNC_ID=$(body_of "$r" | jq -r .id)
  r=$(api POST "/portal/integrations/$SYNC_ID/sync" "$1" '{"syncType":"full"}')
  [ "$(status_of "$r")" = 202 ] || fail "start sync: $r"
  JOB=$(body_of "$r" | jq -r '.jobs[0].id')
  SYNC_TOKEN=$1
}
job() { curl -sS -H "Authorization: Bearer $SYNC_TOKEN" "$PORTAL/portal/integrations/$SYNC_ID/sync/jobs/$JOB"; }

# After an interruption ($1 names it), the sync of start_directory_sync ends completed with its 3,000 users
# each counted once, the provider served every page and at most two twice (those in flight: the page being
# committed and the next one, fetched while it commits): sets REPEATS.
expect_sync_resumed() {
  local J STATS
  ended() { local status; status=$(job | jq -r .status 2>/dev/null); [ -n "$status" ] && [ "$status" != running ]; }
  wait_until 300 ended || true
  J=$(job)
  [ "$(jq -r .status <<<"$J")" = completed ] || fail "the job did not complete after $1: $J"
  [ "$(jq .recordsProcessed <<<"$J")" = 3000 ] && [ "$(jq .counts.fetched <<<"$J")" = 3000 ] && [ "$(jq .counts.created <<<"$J")" = 3000 ] \
    || fail "pages counted twice or skipped across $1: $J"
  STATS=$(curl -fsS "$PROVIDER/stats")
  [ "$(jq '.pages | length' <<<"$STATS")" = 30 ] || fail "the provider did not serve every page: $STATS"
  REPEATS=$(jq '[.pages[] | select(. > 1)] | length' <<<"$STATS")
  [ "$REPEATS" -le 2 ] || fail "the provider served $REPEATS pages more than once: $STATS"
}
