#!/usr/bin/env bash
# Inbound TLS (issue 21): `portal serve --tls-cert --tls-key` serves HTTPS with TLS 1.2 and 1.3 only, Chromium
# negotiates X25519MLKEM768 (read from its DevTools protocol), every answer carries HSTS, and SIGHUP reloads
# the certificate (a pair that does not load is refused and the previous one keeps serving). Test keys are
# made here with openssl; none is committed.
source "$(dirname "$0")/lib.bash"
cd "$WORK"
command -v chromium >/dev/null && command -v chromedriver >/dev/null || fail "chromium and chromium-driver are needed (scripts/install-deps.sh test)"
"$PORTAL_BIN" keys generate-master --out master.key 2>/dev/null

make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=$1" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$1.key" -out "$1.pem" 2>/dev/null || fail "openssl req"
}
make_cert portal-first
make_cert portal-second
cp portal-first.pem cert.pem && cp portal-first.key key.pem

# Both files or neither.
if "$PORTAL_BIN" serve --port "$(free_port)" --master-key-file master.key --tls-cert cert.pem >half.out 2>&1; then fail "serve started with a certificate and no key"; fi
grep -q "tls-key" half.out || fail "the refusal does not name the missing key: $(cat half.out)"

PORT=$(free_port)
PORTAL="https://127.0.0.1:$PORT"
"$PORTAL_BIN" serve --port "$PORT" --master-key-file master.key --tls-cert cert.pem --tls-key key.pem >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
wait_until 180 curl -ksf "$PORTAL/healthz" -o /dev/null || { cat "$WORK/server.log" >&2; fail "no HTTPS answer from /healthz"; }
ok "portal serve --tls-cert --tls-key answers over HTTPS"

subject() { openssl s_client -connect "127.0.0.1:$PORT" -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -subject 2>/dev/null; }
curl -ks --tlsv1.3 "$PORTAL/healthz" -o /dev/null || fail "TLS 1.3 refused"
curl -ks --tlsv1.2 --tls-max 1.2 "$PORTAL/healthz" -o /dev/null || fail "TLS 1.2 refused"
if openssl s_client -connect "127.0.0.1:$PORT" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' </dev/null >tls11.out 2>&1 && grep -q "Cipher is [A-Z]" tls11.out; then
  fail "a TLS 1.1 handshake completed: $(grep -i 'protocol\|cipher' tls11.out | head -3)"
fi
if curl -s "http://127.0.0.1:$PORT/healthz" -o /dev/null --max-time 10; then fail "plain HTTP answered on the TLS port"; fi
ok "TLS 1.3 and 1.2 accepted; TLS 1.1 and plain HTTP refused"
hsts=$(curl -ksD - "$PORTAL/console/sign-in" -o /dev/null | tr -d '\r' | grep -i '^strict-transport-security:' || true)
[[ "$hsts" == *"max-age=31536000"* ]] || fail "no HSTS on the console: $hsts"
curl -ksD - "$PORTAL/healthz" -o /dev/null | grep -qi '^strict-transport-security:' || fail "no HSTS on the API"
ok "HSTS on the console and the API"

PORTAL="$PORTAL" "$ROOT/.venv/bin/python" "$ROOT/Tests/console/tls_check.py" || fail "Chromium's view of the TLS"
ok "Chromium negotiates TLS 1.3 with X25519MLKEM768 (DevTools securityDetails.keyExchangeGroup)"

[[ "$(subject)" == *portal-first* ]] || fail "served certificate: $(subject)"
cp portal-second.pem cert.pem && cp portal-second.key key.pem
kill -HUP "$SERVER_PID"
wait_until 60 bash -c "[[ \"\$(openssl s_client -connect 127.0.0.1:$PORT -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -subject 2>/dev/null)\" == *portal-second* ]]" \
  || fail "SIGHUP did not reload the certificate: $(subject)"
echo "not a certificate" >cert.pem
kill -HUP "$SERVER_PID"
wait_until 60 grep -q "TLS certificate not reloaded" "$WORK/server.log" || fail "a broken certificate was not refused on reload"
[[ "$(subject)" == *portal-second* ]] || fail "after a refused reload the server serves: $(subject)"
curl -ksf "$PORTAL/healthz" -o /dev/null || fail "no answer after a refused reload"
ok "SIGHUP reloads the certificate; a pair that does not load is refused and the previous one keeps serving"

stop_server
echo "tls ($BACKEND): all checks passed"
