#!/usr/bin/env bash
# The API contract: schemathesis generates requests from the server's own /openapi.json (examples, coverage,
# fuzzing and the stateful phase, which follows the document's links from each creating operation to the
# operations that use its ids) and checks every answer against the document: no 5xx, documented statuses,
# content types and bodies, schema-violating requests refused, a method a path does not have a 405 with Allow.
#
# The server runs in a network namespace of its own with only loopback (unshare -rn): the integrations
# schemathesis creates name hosts it makes up, and the operations that call a provider (requests, proxy,
# tests, syncs, erasure, alert receivers) are exercised without any call leaving this machine.
if [ -z "${PORTAL_CONTRACT_NETNS:-}" ] && [ "${BACKEND:-sqlite}" = sqlite ] \
  && command -v unshare >/dev/null && command -v ip >/dev/null && unshare -rn true 2>/dev/null; then
  exec env PORTAL_CONTRACT_NETNS=1 unshare -rn bash -c 'ip link set lo up && exec bash "$0"' "$0"
fi
source "$(dirname "$0")/lib.bash"
if [ "$BACKEND" != sqlite ]; then
  # The contract is the HTTP layer's; storage is shared code, tested on both backends by the Swift suites.
  ok "SQLite only (the same HTTP contract on every backend; the Swift suites cover PostgreSQL's storage)"
  exit 0
fi
if [ -z "${PORTAL_CONTRACT_NETNS:-}" ]; then
  # Without a namespace the server would call whatever hosts the generated integrations name.
  ok "SKIPPED: no network namespace (needs unshare -rn and ip) to keep the server's outbound calls on loopback"
  exit 0
fi
[ -x "$ROOT/.venv/bin/schemathesis" ] || fail "schemathesis is not installed: make venv"
cd "$WORK"

"$PORTAL_BIN" keys generate-master --out master.key 2>/dev/null
start_server master.key
ADMIN=$(grep -o 'ptk_[A-Za-z0-9_-]\{43\}' "$WORK/server.out" | head -n 1)
[ -n "$ADMIN" ] || fail "the first start printed no admin token: $(cat "$WORK/server.out")"

# Bounded and reproducible: a fixed seed, at most 20 examples per operation and phase, no example database.
start=$SECONDS
if ! "$ROOT/.venv/bin/schemathesis" --no-color run "$PORTAL/openapi.json" --url "$PORTAL" \
  -H "Authorization: Bearer $ADMIN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,unsupported_method \
  --max-examples 20 --seed 20261204 --generation-database none --workers 2 --request-timeout 20 \
  >schemathesis.txt 2>&1; then
  cat schemathesis.txt
  grep -q '"level":"error"' "$WORK/server.log" && grep '"level":"error"' "$WORK/server.log" | tail -n 20
  fail "schemathesis found contract failures (above)"
fi
tail -n 25 schemathesis.txt
ok "schemathesis: no failures of the six checks in $((SECONDS - start)) s"
