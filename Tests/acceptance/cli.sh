#!/usr/bin/env bash
# The `portal` CLI beside a running server: migrate, first-start token, token create/list/revoke, master key
# rotation without downtime for readers, graceful shutdown on SIGTERM and SIGINT, clear configuration errors.
source "$(dirname "$0")/lib.bash"
cd "$WORK"

# migrate is idempotent.
"$PORTAL_BIN" migrate | grep -q "applied migrations" || fail "first migrate applied nothing"
"$PORTAL_BIN" migrate | grep -q "schema is up to date" || fail "second migrate was not a no-op"
ok "migrate"

# No master key: a clear error and a non-zero exit.
if "$PORTAL_BIN" serve --port 0 >out.txt 2>err.txt; then fail "serve started without a master key"; fi
grep -q "no master key" err.txt || fail "no clear message without a master key: $(cat err.txt)"
ok "serve refuses to start without a master key"

"$PORTAL_BIN" keys generate-master --out keys/master.key 2>/dev/null
[ "$(stat -c %a keys/master.key)" = 600 ] || fail "key file is not mode 0600"
if "$PORTAL_BIN" keys generate-master --out keys/master.key 2>/dev/null; then fail "generate-master overwrote a key file"; fi

start_server keys/master.key
ADMIN=$(grep -o 'ptk_[A-Za-z0-9_-]\{43\}' "$WORK/server.out" | head -n 1)
[ -n "$ADMIN" ] || fail "the first start printed no admin token: $(cat "$WORK/server.out")"
r=$(api GET /portal/whoami "$ADMIN"); [ "$(status_of "$r")" = 200 ] || fail "bootstrap token rejected"
body_of "$r" | jq -e '.organization == "default" and .role == "admin"' >/dev/null || fail "bootstrap token is not default/admin"
ok "first start created organization default and printed one admin token"

# token create prints exactly the token on stdout, while the server runs on the same database.
"$PORTAL_BIN" token create --org acme --role operator --owner "Dana Ops" --expires-in 30d >token.out 2>token.err
[ "$(wc -l <token.out)" -eq 1 ] && grep -qx 'ptk_[A-Za-z0-9_-]\{43\}' token.out || fail "token create printed more than the token: $(cat token.out)"
grep -q "created organization 'acme'" token.err || fail "token create did not say it created the organization"
OPERATOR=$(cat token.out)
r=$(api GET /portal/whoami "$OPERATOR"); body_of "$r" | jq -e '.organization == "acme" and .role == "operator" and .owner == "Dana Ops"' >/dev/null || fail "CLI token not accepted by the server: $r"
if "$PORTAL_BIN" token create --org acme --role root >/dev/null 2>err.txt; then fail "bad role accepted"; fi
if "$PORTAL_BIN" token create --org ACME --role admin >/dev/null 2>err.txt; then fail "bad slug accepted"; fi
ok "token create (CLI) works against a running server"

# token list shows it, never the value; token revoke stops it at once (the server keeps a verified token for
# at most 100 ms, and the commands above took longer than that).
"$PORTAL_BIN" token list --org acme >list.txt
grep -q "operator" list.txt && ! grep -q "$OPERATOR" list.txt || fail "token list is wrong: $(cat list.txt)"
TOKEN_ID=$("$PORTAL_BIN" token list --org acme --json | jq -r '.[0].id')
"$PORTAL_BIN" token revoke "$TOKEN_ID" | grep -q revoked || fail "revoke said nothing"
r=$(api GET /portal/whoami "$OPERATOR"); [ "$(status_of "$r")" = 401 ] || fail "revoked token still works"
"$PORTAL_BIN" token revoke "$TOKEN_ID" | grep -q "already revoked" || fail "second revoke is not idempotent"
ok "token list and revoke"

# An integration with secrets, then master key rotation while the server keeps serving it.
r=$(api POST /portal/integrations "$ADMIN" '{"name":"Okta","type":"identity_provider","baseUrl":"https://acme.okta.com","authMethod":"api_key","credentials":{"apiKey":"00okta-api-key-value-1234"}}')
[ "$(status_of "$r")" = 201 ] || fail "create integration: $r"
ID=$(body_of "$r" | jq -r .id)
cp keys/master.key keys/old-only.key
"$PORTAL_BIN" keys rotate-master --master-key-file keys/master.key 2>rotate.err || fail "rotate-master failed: $(cat rotate.err)"
NEW_ID=$(grep -o 'under master key [0-9a-f]\{16\}' rotate.err | awk '{print $4}')
OLD_ID=$(grep -o 'old key ([0-9a-f]\{16\})' rotate.err | tr -d '()' | awk '{print $3}')
[ -n "$NEW_ID" ] && [ -n "$OLD_ID" ] || fail "rotate-master did not name the keys: $(cat rotate.err)"
[ "$(grep -vc '^#' keys/master.key)" = 2 ] || fail "the key file does not hold the new and the old key"
r=$(api GET "/portal/integrations/$ID" "$ADMIN"); [ "$(status_of "$r")" = 200 ] || fail "the running server lost its secrets after rotation: $r"
ok "rotate-master: the running server keeps reading"

stop_server TERM
ok "SIGTERM: graceful shutdown, exit 0"

# Restarted with the new key file (new key first), it reads and writes.
start_server keys/master.key
r=$(api PATCH "/portal/integrations/$ID" "$ADMIN" '{"credentials":{"apiKey":"00okta-api-key-value-5678"}}')
[ "$(status_of "$r")" = 200 ] && body_of "$r" | jq -e '.credentials.apiKey == "••••5678"' >/dev/null || fail "patch after rotation: $r"
stop_server INT
ok "SIGINT: graceful shutdown, exit 0"

# Retire the old key; a server that knows only the old key can no longer read secrets, the new one can.
"$PORTAL_BIN" keys retire-master --master-key-file keys/master.key --key-id "$OLD_ID" | grep -q "removed" || fail "retire-master"
start_server keys/old-only.key
r=$(api GET "/portal/integrations/$ID" "$ADMIN"); [ "$(status_of "$r")" = 500 ] || fail "old key still opens secrets after retirement: $r"
stop_server
grep -v '^#' keys/master.key | head -n 1 >keys/new-only.key
start_server keys/new-only.key
r=$(api GET "/portal/integrations/$ID" "$ADMIN"); [ "$(status_of "$r")" = 200 ] || fail "new key cannot read after retirement: $r"
stop_server
ok "retire-master: old wraps gone, new key serves"

# Key rotation and retirement are in the platform ledger; token events in the organizations' ledgers.
"$PORTAL_BIN" ledger entries --org _platform >platform.jsonl
[ "$(jq -r 'select(.entry.type == "key.rotated") | .entry.data.key' platform.jsonl | sort | uniq -c | awk '{print $1}')" = 2 ] || fail "key.rotated entries missing: $(cat platform.jsonl)"
"$PORTAL_BIN" ledger entries --org acme | jq -r .entry.type >acme-types.txt
grep -qx apitoken.created acme-types.txt && grep -qx apitoken.revoked acme-types.txt || fail "CLI token events missing from acme's ledger"
"$PORTAL_BIN" ledger verify --master-key-file keys/new-only.key >verify.txt || { cat verify.txt; fail "ledger verify"; }
ok "key and token events are ledgered; every ledger verifies"

# Logs are JSON lines with request ids and route templates, and hold no secret.
grep -q '"portal.route":"/portal/integrations/{id}"' "$WORK/server.log" || fail "no route template in the logs"
! grep -q "okta-api-key-value" "$WORK/server.log" || fail "a secret reached the logs"
ok "structured logs, no secrets"
# Data-subject requests from the CLI: an export as JSON, then an erasure, both ledgered with the CLI as actor.
"$PORTAL_BIN" dsar export --org acme --subject "Pat@Example.test" --master-key-file keys/new-only.key --out dsar.json 2>/dev/null || fail "dsar export"
[ "$(stat -c %a dsar.json)" = 600 ] || fail "the export file is not mode 0600"
jq -e '.subject.id == "Pat@Example.test" and (.records | length) == 0 and (.disclosures | length) == 0 and .subject.erased == false' dsar.json >/dev/null || fail "dsar export: $(cat dsar.json)"
"$PORTAL_BIN" dsar erase --org acme --subject "Pat@Example.test" --master-key-file keys/new-only.key >erase.json || fail "dsar erase"
jq -e '.recordsDeleted == 0 and (.recipients | length) == 0' erase.json >/dev/null || fail "dsar erase: $(cat erase.json)"
"$PORTAL_BIN" dsar export --org acme --subject "pat@example.test" --master-key-file keys/new-only.key | jq -e '.subject.erased == true' >/dev/null || fail "the subject is not marked erased"
"$PORTAL_BIN" ledger entries --org acme | jq -r 'select(.entry.type | startswith("subject.")) | "\(.entry.type) \(.entry.actor)"' >subject-entries.txt
[ "$(grep -c 'system:cli' subject-entries.txt)" = 6 ] || fail "subject requests not ledgered with the CLI as actor: $(cat subject-entries.txt)"
! grep -qi "pat@example" subject-entries.txt || fail "a subject id reached the ledger"
if "$PORTAL_BIN" dsar export --org nosuch --subject x --master-key-file keys/new-only.key >/dev/null 2>err.txt; then fail "dsar export of an unknown organization succeeded"; fi
ok "dsar export and erase from the CLI, ledgered without the subject's id"

# Bulk operations from the CLI: export the default organization's integrations (no secret), import them into
# acme (pending, asking for their credentials), disable them, each a job with per-item results.
"$PORTAL_BIN" integrations export --org default --format yaml --out export.yaml --master-key-file keys/new-only.key 2>/dev/null || fail "integrations export"
grep -q 'name: "Okta"' export.yaml && ! grep -q "okta-api-key" export.yaml || fail "the export: $(cat export.yaml)"
"$PORTAL_BIN" integrations import --org acme export.yaml --master-key-file keys/new-only.key >import.json || fail "integrations import"
jq -e '.counts.imported == 1 and .items[0].needs == ["apiKey"]' import.json >/dev/null || fail "integrations import: $(cat import.json)"
"$PORTAL_BIN" integrations disable --org acme --type identity_provider --master-key-file keys/new-only.key >disable.json || fail "integrations disable"
jq -e '.counts.disabled == 1' disable.json >/dev/null || fail "integrations disable: $(cat disable.json)"
[ "$("$PORTAL_BIN" ledger entries --org acme | jq -r 'select(.entry.type == "bulk.completed") | .entry.data.action' | tr '\n' ' ')" = "import disable " ] || fail "bulk jobs not ledgered"
ok "integrations export, import and disable from the CLI: no secret exported, imported ones pending, ledgered"

# No key material in the arguments (visible to every user in ps): flags that would take a key are refused
# with the forms to use instead, without echoing the key; files, standard input and PORTAL_MASTER_KEY work.
SECRET=$(grep -v '^#' keys/new-only.key)
for args in "serve --port 0 --master-key $SECRET" "ledger verify --master-key=$SECRET" "keys rotate-master --master-key-file keys/master.key --new-key $SECRET"; do
  set -f
  # shellcheck disable=SC2086
  if "$PORTAL_BIN" $args >out.txt 2>err.txt; then set +f; fail "key material in the arguments was accepted (${args%% --*})"; fi
  set +f
  grep -q "is not accepted" err.txt && grep -q -- "-file" err.txt || fail "no clear refusal (${args%% --*}): $(cat err.txt)"
  ! grep -qF "$SECRET" err.txt out.txt || fail "the refusal repeated the key"
done
if "$PORTAL_BIN" keys rotate-master --master-key-stdin --new-key-file - <keys/new-only.key >/dev/null 2>err.txt; then fail "two keys from standard input"; fi
"$PORTAL_BIN" ledger verify --master-key-stdin <keys/new-only.key >verify.txt 2>&1 || fail "ledger verify --master-key-stdin: $(cat verify.txt)"
"$PORTAL_BIN" ledger verify --master-key-file - <keys/new-only.key >verify.txt 2>&1 || fail "ledger verify --master-key-file -: $(cat verify.txt)"
PORTAL_MASTER_KEY=$SECRET "$PORTAL_BIN" ledger verify >verify.txt 2>&1 || fail "ledger verify with PORTAL_MASTER_KEY: $(cat verify.txt)"
"$PORTAL_BIN" keys generate-master --out keys/chosen.key 2>gen.err
CHOSEN_ID=$(grep -o 'master key [0-9a-f]\{16\}' gen.err | awk '{print $3}')
"$PORTAL_BIN" keys rotate-master --master-key-stdin --new-key-file keys/chosen.key <keys/new-only.key >rotate2.out 2>rotate2.err || fail "rotate-master --new-key-file: $(cat rotate2.err)"
grep -q "under master key $CHOSEN_ID" rotate2.err || fail "rotate-master did not use the chosen key: $(cat rotate2.err)"
[ ! -s rotate2.out ] || fail "rotate-master printed a key it was given"
"$PORTAL_BIN" keys generate-master --out keys/third.key 2>/dev/null
"$PORTAL_BIN" keys rotate-master --master-key-file keys/chosen.key --new-key-file - <keys/third.key 2>rotate3.err || fail "rotate-master --new-key-file -: $(cat rotate3.err)"
[ "$(grep -vc '^#' keys/chosen.key)" = 2 ] || fail "the key from standard input was not added to the key file"
grep -v '^#' keys/chosen.key | head -n 1 | cmp -s - <(grep -v '^#' keys/third.key) || fail "the key file does not start with the new key"
"$PORTAL_BIN" ledger verify --master-key-stdin <keys/third.key >verify.txt 2>&1 || fail "the key read from standard input does not open the ledger keys: $(cat verify.txt)"
ok "no key material in the arguments: --master-key and --new-key refused; files, standard input and PORTAL_MASTER_KEY work"
# One-letter file names without a directory (NSString's deletingLastPathComponent trapped on them).
mkdir -p short && (cd short && "$PORTAL_BIN" keys generate-master --out k >/dev/null 2>&1 && "$PORTAL_BIN" migrate --database sqlite://d >/dev/null 2>&1) \
  || fail "a key file or database named by one letter crashed the CLI"
ok "a key file and a SQLite database named by one letter, in the current directory"
echo "cli.sh ($BACKEND): all checks passed"
