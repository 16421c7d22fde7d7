#!/usr/bin/env bash
# The audit ledger end to end, with real processes: every change leaves its entry; the CLI appends to a
# running server's ledger; a server killed with SIGKILL loses no acknowledged event; on PostgreSQL two server
# instances append to one chain; `portal ledger verify` passes; and an independent tlog client (aics-tlog,
# PyPI) verifies the checkpoint signature, every tile and entry bundle, and our inclusion and consistency
# proofs from the bytes the HTTP API serves.
source "$(dirname "$0")/lib.bash"
cd "$WORK"
PY312="$ROOT/.venv312/bin/python"
[ -x "$PY312" ] || fail "no Python 3.12 venv with aics-tlog (make venv)"

"$PORTAL_BIN" keys generate-master --out master.key 2>/dev/null
mkdir -p published

create_integrations() { # PREFIX COUNT TOKEN [IDS_FILE]
  local prefix=$1 count=$2 token=$3 ids=${4:-/dev/null}
  for i in $(seq 1 "$count"); do
    r=$(curl -sS -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -w '\n%{http_code}' "$PORTAL/portal/integrations" \
      -d "{\"name\":\"$prefix $i\",\"type\":\"analytics\",\"baseUrl\":\"https://api.example.com\",\"authMethod\":\"api_key\",\"credentials\":{\"apiKey\":\"key-$i-0123456789\"}}" 2>/dev/null) || return 0
    [ "$(status_of "$r")" = 201 ] && body_of "$r" | jq -r .id >>"$ids"
  done
  return 0
}

ledger_size() { curl -sS -H "Authorization: Bearer $1" "$PORTAL/ledger/default/entries?from=0&limit=1" >/dev/null; "$PORTAL_BIN" ledger verify --org default --master-key-file master.key | grep -o 'size [0-9]*' | awk '{print $2}'; }

# 1. Changes leave entries; the CLI appends to the running server's ledger.
start_server master.key --checkpoint-dir published
ADMIN=$(grep -o 'ptk_[A-Za-z0-9_-]\{43\}' "$WORK/server.out" | head -n 1)
create_integrations "Batch" 140 "$ADMIN" ids.txt &
CREATOR=$!
for i in 1 2 3 4 5; do "$PORTAL_BIN" token create --org default --role auditor --owner "cli $i" >/dev/null 2>&1 || fail "CLI token create beside the server"; done
wait $CREATOR
[ "$(wc -l <ids.txt)" = 140 ] || fail "not every create succeeded"
for id in $(head -n 120 ids.txt); do
  r=$(api PATCH "/portal/integrations/$id" "$ADMIN" '{"config":{"testEndpoint":"/gold"}}'); [ "$(status_of "$r")" = 200 ] || fail "patch: $r"
done
r=$(api DELETE "/portal/integrations/$(head -n 1 ids.txt)" "$ADMIN"); [ "$(status_of "$r")" = 204 ] || fail "delete"
AUDITOR=$(api POST /portal/tokens "$ADMIN" '{"role":"auditor","owner":"eve@example.com"}' | sed '$d' | jq -r .token)
r=$(api DELETE "/portal/integrations/$(sed -n 2p ids.txt)" "$AUDITOR"); [ "$(status_of "$r")" = 403 ] || fail "auditor delete was not 403"
# The sequencer chains the last changes within milliseconds: wait for the deletion's entry.
deleted_chained() { curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/ledger/default/entries?from=0&limit=1000" | jq -e '[.entries[].entry | select(.type == "integration.deleted" or .type == "access.denied")] | length == 2' >/dev/null; }
wait_until 180 deleted_chained || fail "the deletion and the denial never reached the ledger"
r=$(api POST /ledger/default/checkpoints "$ADMIN"); [ "$(status_of "$r")" = 201 ] || fail "cut checkpoint: $r"
ENTRIES=$(curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/ledger/default/entries?from=0&limit=1000")
count_type() { jq "[.entries[].entry | select(.type == \"$1\")] | length" <<<"$ENTRIES"; }
[ "$(count_type integration.created)" = 140 ] || fail "integration.created entries: $(count_type integration.created)"
[ "$(count_type integration.updated)" = 120 ] || fail "integration.updated entries: $(count_type integration.updated)"
[ "$(count_type integration.deleted)" = 1 ] || fail "integration.deleted entries"
[ "$(count_type apitoken.created)" = 7 ] || fail "apitoken.created entries: $(count_type apitoken.created) (bootstrap, 5 CLI, 1 HTTP)"
[ "$(count_type access.denied)" = 1 ] || fail "access.denied entries"
jq -e '[.entries[].entry | select(.type == "integration.updated")][0].data | (.changed == ["config"]) and (.before != .after)' <<<"$ENTRIES" >/dev/null || fail "integration.updated lacks changed fields or digests"
! grep -q "key-1-0123456789" <<<"$ENTRIES" || fail "a credential reached the ledger"
ok "every change left its entry ($(jq '.entries | length' <<<"$ENTRIES") entries), CLI events included, no secrets"

# 2. An independent tlog client verifies what the HTTP API serves.
curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/ledger/default/checkpoint" >checkpoint.txt
curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/ledger/default/keys" >keys.txt
"$PY312" - "$PORTAL" "$ADMIN" <<'PY' || fail "aics-tlog rejected the ledger"
import base64, json, os, sys, urllib.request
import aics_tlog
portal, token = sys.argv[1], sys.argv[2]
def get(path):
    req = urllib.request.Request(portal + path, headers={"Authorization": "Bearer " + token})
    return urllib.request.urlopen(req).read()
note_text = open("checkpoint.txt").read()
vkeys = [l for l in open("keys.txt").read().splitlines() if l]
ed = aics_tlog.parse_vkey(vkeys[0])
note = aics_tlog.parse_note(note_text)
origin = note_text.split("\n", 1)[0]
result = aics_tlog.verify_checkpoint(note, ed, expected_origin=origin)
lines = note_text.split("\n")
size, root = int(lines[1]), base64.b64decode(lines[2])
# Mirror the tiles and entry bundles the API serves into a folder and audit them all.
os.makedirs("mirror", exist_ok=True)
def fetch(rel):
    path = os.path.join("mirror", rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").write(get("/ledger/default/" + rel))
from aics_tlog import tiles as T
level, count = 0, size
while count:
    for index in range((count + 255) // 256):
        width = min(256, count - index * 256)
        fetch(T.tile_path(level, index, None if width == 256 else width))
        if level == 0:
            fetch(T.entry_bundle_path(index, None if width == 256 else width))
    count //= 256
    level += 1
reader = aics_tlog.FileSystemTileReader("mirror")
report = aics_tlog.audit_tiles(reader, size, root, entries=True)
assert aics_tlog.tree_root_from_tiles(reader, size) == root
# Our inclusion proof for a sampled entry, checked with the entry's bytes from the bundle.
seq = size // 2
proof = json.loads(get(f"/ledger/default/entries/{seq}"))
leaf = aics_tlog.read_entry(reader, seq, size)
assert aics_tlog.verify_leaf_inclusion(leaf, seq, proof["treeSize"], [base64.b64decode(p) for p in proof["inclusionProof"]], base64.b64decode(proof["checkpoint"].split("\n")[2]))
# Our consistency proof between an earlier size and this checkpoint.
old = size // 3
cons = json.loads(get(f"/ledger/default/proofs/consistency?from={old}&to={size}"))
old_root = aics_tlog.tree_root_from_tiles(reader, old)
assert aics_tlog.verify_consistency(old, size, old_root, root, [base64.b64decode(p) for p in cons["proof"]])
print(f"aics-tlog: checkpoint signature ok, {report.tiles} tiles and {report.bundles} bundles audited at size {size}, inclusion and consistency proofs ok")
PY
ok "aics-tlog verified signature, tiles, bundles and proofs"

"$PORTAL_BIN" ledger verify --master-key-file master.key --checkpoint-dir published >verify.txt || { cat verify.txt; fail "ledger verify failed"; }
grep -q "verified default: size" verify.txt && grep -q "verified _platform" verify.txt || fail "verify did not cover every ledger: $(cat verify.txt)"
VK=$("$PORTAL_BIN" ledger keys --org default --master-key-file master.key | head -n 1)
"$PORTAL_BIN" ledger verify --org default --vkey "$VK" --master-key-file master.key >/dev/null || fail "verify with a given vkey"
OTHER_VK=$("$PORTAL_BIN" keys generate-master >/dev/null; echo "localhost:8080/ledger/default+00000000+AaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaA")
if "$PORTAL_BIN" ledger verify --org default --vkey "$OTHER_VK" --master-key-file master.key >/dev/null 2>&1; then fail "verify passed with a wrong key"; fi
ok "portal ledger verify (every ledger, published checkpoints, given vkey; a wrong key fails)"

# Offline: export, verify the bundle with no database, check it with zstd, tar and aics-tlog, prove one entry.
cp checkpoint.txt kept-checkpoint.txt
"$PORTAL_BIN" ledger keys --org default --master-key-file master.key >vkeys.txt
VK1=$(sed -n 1p vkeys.txt); VK2=$(sed -n 2p vkeys.txt)
"$PORTAL_BIN" ledger export --org default --out bundle.tar.zst --master-key-file master.key --checkpoint-dir published >/dev/null 2>export.err || fail "export: $(cat export.err)"
curl -sS -H "Authorization: Bearer $ADMIN" -o http-bundle.tar.zst "$PORTAL/ledger/default/export"
cmp -s bundle.tar.zst http-bundle.tar.zst || fail "the HTTP export differs from the CLI export of the same checkpoint"
zstd -q -t bundle.tar.zst || fail "zstd -t rejects the bundle"
mkdir unpacked && tar --zstd -xf bundle.tar.zst -C unpacked || fail "tar cannot unpack the bundle"
"$PY312" - <<'PY' || fail "aics-tlog rejected the exported folder"
import base64, aics_tlog
text = open("unpacked/checkpoint").read()
lines = text.split("\n")
size, root = int(lines[1]), base64.b64decode(lines[2])
aics_tlog.verify_checkpoint(aics_tlog.parse_note(text), aics_tlog.parse_vkey(open("unpacked/keys/ed25519.vkey").read().strip()))
report = aics_tlog.audit_tiles(aics_tlog.FileSystemTileReader("unpacked"), size, root, entries=True)
print(f"aics-tlog: exported folder audited offline, {report.tiles} tiles and {report.bundles} bundles at size {size}")
PY
(cd /tmp && "$PORTAL_BIN" ledger verify --bundle "$WORK/bundle.tar.zst" --vkey "$VK1" --vkey "$VK2" --since "$WORK/kept-checkpoint.txt") >offline.txt || { cat offline.txt; fail "offline verification failed"; }
grep -q "verified bundle default: size" offline.txt || fail "offline verify said: $(cat offline.txt)"
if "$PORTAL_BIN" ledger verify --bundle bundle.tar.zst --vkey "localhost/ledger/default+00000000+AaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaA" >/dev/null 2>&1; then fail "a wrong vkey passed offline"; fi
python3 - <<'PY'
data = bytearray(open("bundle.tar.zst", "rb").read())
data[len(data) // 2] ^= 0x20
open("tampered.tar.zst", "wb").write(bytes(data))
PY
if "$PORTAL_BIN" ledger verify --bundle tampered.tar.zst --vkey "$VK1" >/dev/null 2>&1; then fail "a tampered bundle passed"; fi
"$PORTAL_BIN" ledger prove --org default --seq 42 --out entry42.tlog-proof --master-key-file master.key >/dev/null || fail "prove"
head -n 1 entry42.tlog-proof | grep -qx "c2sp.org/tlog-proof@v1" || fail "not a tlog-proof file"
"$PORTAL_BIN" ledger verify --proof entry42.tlog-proof --vkey "$VK2" | grep -q "verified proof: entry 42" || fail "proof file did not verify"
sed 's/^index 42$/index 43/' entry42.tlog-proof >bad.tlog-proof
if "$PORTAL_BIN" ledger verify --proof bad.tlog-proof --vkey "$VK1" >/dev/null 2>&1; then fail "an altered proof file passed"; fi
ok "export (CLI = HTTP bytes), zstd/tar/aics-tlog offline, verify --bundle --since, proof files; tampering and wrong keys fail"
stop_server

# 3. SIGKILL mid-stream: every acknowledged change is in the chain after restart.
start_server master.key --checkpoint-dir published
: >killed-ids.txt
create_integrations "Stream" 400 "$ADMIN" killed-ids.txt &
STREAM=$!
# SIGKILL once some creates are acknowledged, while the stream goes on.
wait_until 180 test -s killed-ids.txt || fail "no create was acknowledged"
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
wait $STREAM || true
ACKED=$(wc -l <killed-ids.txt)
[ "$ACKED" -gt 0 ] || fail "no create was acknowledged before the kill"
start_server master.key --checkpoint-dir published
# The restarted sequencer drains the outbox the killed one left: wait until every acknowledged create is chained.
all_chained() {
  curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/ledger/default/entries?from=0&limit=1000" >chained0.json
  curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/ledger/default/entries?from=1000&limit=1000" >chained1.json
  [ "$(jq -s --rawfile ids killed-ids.txt '[.[].entries[].entry | select(.type == "integration.created") | .integration] as $have | [$ids | split("\n")[] | select(length > 0) | select(. as $i | $have | index($i) | not)] | length' chained0.json chained1.json)" = 0 ]
}
wait_until 180 all_chained || true
ENTRIES=$(for from in 0 1000; do curl -sS -H "Authorization: Bearer $ADMIN" "$PORTAL/ledger/default/entries?from=$from&limit=1000"; done | jq -s '[.[].entries[]]')
for id in $(cat killed-ids.txt); do
  jq -e --arg id "$id" 'any(.[]; .entry.type == "integration.created" and .entry.integration == $id)' <<<"$ENTRIES" >/dev/null || fail "acknowledged integration $id has no ledger entry after SIGKILL"
done
"$PORTAL_BIN" ledger verify --master-key-file master.key --checkpoint-dir published >/dev/null || fail "the ledger does not verify after SIGKILL"
stop_server
ok "SIGKILL after $ACKED acknowledged creates: every one is in the chain, which verifies"

# 4. PostgreSQL: two server instances append to one organization's ledger concurrently.
if [ "$BACKEND" = postgres ]; then
  start_server master.key
  FIRST_PID=$SERVER_PID; FIRST=$PORTAL
  start_server master.key
  SECOND=$PORTAL
  PORTAL=$FIRST create_integrations "One" 60 "$ADMIN" &
  A=$!
  PORTAL=$SECOND create_integrations "Two" 60 "$ADMIN" &
  B=$!
  wait $A $B
  two_chained() { [ "$(curl -sS -H "Authorization: Bearer $ADMIN" "$SECOND/ledger/default/entries?from=0&limit=1000" | jq '[.entries[].entry | select(.type == "integration.created" and (.data.name | test("^(One|Two) ")))] | length')" = 120 ]; }
  wait_until 180 two_chained || true
  "$PORTAL_BIN" ledger verify --org default --master-key-file master.key >verify2.txt || { cat verify2.txt; fail "two instances broke the chain"; }
  N=$(curl -sS -H "Authorization: Bearer $ADMIN" "$SECOND/ledger/default/entries?from=0&limit=1000" | jq '[.entries[].entry | select(.type == "integration.created" and (.data.name | test("^(One|Two) ")))] | length')
  [ "$N" = 120 ] || fail "expected 120 entries from the two instances, found $N"
  stop_server
  SERVER_PID=$FIRST_PID; stop_server
  ok "two instances on PostgreSQL: one chain with all 120 events, verified"
fi
echo "ledger.sh ($BACKEND): all checks passed"
