#!/usr/bin/env bash
# Monitoring against a real `portal serve`: the /metrics token generated and printed once on first start,
# /metrics refused without it, both expositions clean under `promtool check metrics`, an organization's
# /portal/metrics without other organizations' series, the rule file override, and the metric window of
# calls made through the gateway.
source "$(dirname "$0")/lib.bash"
cd "$WORK"

"$PORTAL_BIN" keys generate-master --out master.key 2>/dev/null
start_upstream

cat >rules.yml <<'YML'
evaluationInterval: 1h
rules:
  - alert: QuotaLow
    kind: quota_exhaustion
    threshold: 0.1
    labels: {severity: page}
    annotations: {summary: "quota low for {{ $labels.integration_name }}"}
YML
start_server master.key --outbound-allow 127.0.0.1 --alert-rules "$WORK/rules.yml"
ADMIN=$(grep -o 'ptk_[A-Za-z0-9_-]\{43\}' "$WORK/server.out" | head -n 1)
METRICS=$(grep -o 'pmt_[A-Za-z0-9_-]\{43\}' "$WORK/server.out" | head -n 1)
[ -n "$METRICS" ] || fail "the first start printed no /metrics token: $(cat "$WORK/server.out")"
ok "first start printed the /metrics token once"

[ "$(curl -s -o /dev/null -w '%{http_code}' "$PORTAL/metrics")" = 401 ] || fail "/metrics answered without a token"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$PORTAL/metrics")" = 401 ] || fail "/metrics took an organization token"
ok "/metrics needs the metrics token"

r=$(api POST /portal/integrations "$ADMIN" "{\"name\":\"Quota\",\"type\":\"analytics\",\"baseUrl\":\"$UPSTREAM\",\"authMethod\":\"api_key\",\"credentials\":{\"apiKey\":\"k-accept-123456\"},\"config\":{\"retry\":{\"maxAttempts\":1}}}")
[ "$(status_of "$r")" = 201 ] || fail "creating an integration: $r"
ID=$(body_of "$r" | jq -r .id)
for i in 1 2 3 4; do api POST "/portal/integrations/$ID/requests" "$ADMIN" '{"method":"GET","endpoint":"/ok"}' >/dev/null; done
api POST "/portal/integrations/$ID/requests" "$ADMIN" '{"method":"GET","endpoint":"/fail"}' >/dev/null

curl -fsS -H "Authorization: Bearer $METRICS" "$PORTAL/metrics" >platform.prom
grep -q "portal_integration_requests_total{organization=\"default\",integration=\"$ID\",outcome=\"success\"} 4" platform.prom || fail "no success count in /metrics: $(grep requests_total platform.prom | head)"
grep -q "portal_integration_quota_remaining_ratio{organization=\"default\",integration=\"$ID\"} 0.05" platform.prom || fail "the provider's quota headers were not read"
grep -q 'portal_alerts{alertname="QuotaLow",organization="default",state="firing"} 0' platform.prom || fail "the rule file override is not in force"
promtool check metrics <platform.prom >promtool.out 2>&1 || fail "promtool check metrics on /metrics: $(cat promtool.out)"
[ ! -s promtool.out ] || fail "promtool reported findings on /metrics: $(cat promtool.out)"
curl -fsS -H "Authorization: Bearer $ADMIN" "$PORTAL/portal/metrics" >org.prom
promtool check metrics <org.prom >promtool.out 2>&1 || fail "promtool check metrics on /portal/metrics: $(cat promtool.out)"
[ ! -s promtool.out ] || fail "promtool reported findings on /portal/metrics: $(cat promtool.out)"
ok "both expositions pass promtool check metrics"

"$PORTAL_BIN" token create --org other --role auditor --owner "Olga" >other.token 2>/dev/null
OTHER=$(cat other.token)
curl -fsS -H "Authorization: Bearer $OTHER" "$PORTAL/portal/metrics" >other.prom
if grep -q "$ID" other.prom || grep -q 'organization="default"' other.prom; then fail "another organization sees default's series"; fi
grep -q 'organization="other"' other.prom || fail "the other organization sees no series of its own"
ok "an organization token reads only its organization's series"

r=$(api GET "/portal/integrations/$ID/metrics?window=5m" "$ADMIN")
body_of "$r" | jq -e '.totalRequests == 5 and .failedRequests == 1 and .byOutcome.server_error == 1 and .quotaRemaining == 0.05 and .health == "degraded"' >/dev/null \
  || fail "metric window: $r"
r=$(api GET "/portal/alerts/rules" "$ADMIN")
body_of "$r" | jq -e '.rules | length == 1 and .[0].alert == "QuotaLow"' >/dev/null || fail "rules in force: $r"
ok "metric window and rules in force over HTTP"

stop_server TERM
start_server master.key --outbound-allow 127.0.0.1
if grep -q 'pmt_' "$WORK/server.out"; then fail "the /metrics token was printed again on the second start"; fi
curl -fsS -o /dev/null -H "Authorization: Bearer $METRICS" "$PORTAL/metrics" || fail "the generated /metrics token no longer works after a restart"
ok "the generated token survives a restart and is not printed again"
r=$(api GET "/portal/integrations/$ID/metrics?window=1h" "$ADMIN")
body_of "$r" | jq -e '.totalRequests == 5 and .failedRequests == 1' >/dev/null || fail "the metric window after a graceful restart: $r"
ok "a graceful restart keeps every call's metrics (the minute in progress is written at shutdown)"
stop_server TERM
echo "monitoring: all checks passed ($BACKEND)"
