#!/usr/bin/env bash
# Checks dashboards/: Prometheus rules (promtool check rules + unit tests), the example Prometheus
# configuration, and the Grafana dashboards (structure, datasource variable, PromQL syntax, metric names).
# Needs promtool (Debian/Ubuntu: apt-get install prometheus) and python3 (stdlib only).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "check-dashboards: promtool not found (apt-get install prometheus)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every check runs even if an earlier one fails; the exit status says whether all passed.
passed=()
failed=()
check() {
  local name=$1
  shift
  echo "== $name"
  if "$@"; then passed+=("$name"); else failed+=("$name"); fi
}

check_config() {
  # promtool requires credentials_file to exist: check a copy that points at a temporary token file.
  cp dashboards/prometheus/rules.yml "$tmp/"
  printf 'token\n' >"$tmp/portal-metrics-token"
  sed "s#/etc/prometheus/portal-metrics-token#$tmp/portal-metrics-token#" \
    dashboards/prometheus/prometheus.yml >"$tmp/prometheus.yml"
  promtool check config "$tmp/prometheus.yml"
}

check "promtool check rules" promtool check rules dashboards/prometheus/rules.yml
check "promtool test rules" bash -c 'cd dashboards/prometheus && promtool test rules rules_test.yml'
check "promtool check config" check_config
check "grafana dashboards and metric names" python3 - "$tmp" <<'PY'
import glob, json, os, re, subprocess, sys

tmp = sys.argv[1]
KNOWN = {
    "portal_integration_requests_total", "portal_integration_errors_total",
    "portal_integration_request_duration_seconds", "portal_integration_response_time_p95_seconds",
    "portal_integration_error_ratio", "portal_integration_quota_remaining_ratio",
    "portal_token_refreshes_total", "portal_webhook_events_total", "portal_webhook_queue_depth",
    "portal_webhook_oldest_pending_age_seconds", "portal_webhook_dead_letters",
    "portal_sync_records_total", "portal_sync_jobs", "portal_ledger_entries",
    "portal_ledger_last_checkpoint_timestamp_seconds", "portal_ledger_last_verification_success",
    "portal_ledger_last_verification_timestamp_seconds", "portal_alerts",
    "portal_integration_slo_objective", "portal_integration_slo_latency_threshold_seconds", "portal_integration_slo_latency_good_total",
}
METRIC = re.compile(r"\bportal_[a-z0-9_]*[a-z0-9]\b")
errors = []
checked_names = set()

def check_names(text, where):
    for name in METRIC.findall(text):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        checked_names.add(base)
        if base not in KNOWN:
            errors.append(f"{where}: unknown metric {name}")

# Rules and their tests: every portal_* identifier (expressions, annotation queries, test series).
for path in ("dashboards/prometheus/rules.yml", "dashboards/prometheus/rules_test.yml"):
    with open(path) as f:
        check_names(f.read(), path)

def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))  # collapsed rows

dashboards = sorted(glob.glob("dashboards/grafana/*.json"))
if not dashboards:
    errors.append("no dashboards/grafana/*.json")
exprs = []  # (where, expr)
panel_total = 0
for path in dashboards:
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        errors.append(f"{path}: does not parse: {e}")
        continue
    panels = d.get("panels")
    if not isinstance(panels, list):
        errors.append(f"{path}: no top-level panels list")
        continue
    real = [p for p in walk_panels(panels) if p.get("type") != "row"]
    panel_total += len(real)
    if len(real) < 10:
        errors.append(f"{path}: {len(real)} panels, expected at least 10")
    ids = [p.get("id") for p in walk_panels(panels)]
    if len(ids) != len(set(ids)):
        errors.append(f"{path}: duplicate panel ids")
    for p in real:
        where = f"{path}: panel {p.get('id')} {p.get('title')!r}"
        ds = p.get("datasource")
        if not isinstance(ds, dict) or ds.get("uid") != "${datasource}":
            errors.append(f"{where}: datasource is not ${{datasource}}")
        if not isinstance(p.get("gridPos"), dict):
            errors.append(f"{where}: no gridPos")
        targets = p.get("targets") or []
        if not targets:
            errors.append(f"{where}: no targets")
        for t in targets:
            tds = t.get("datasource")
            if tds is not None and (not isinstance(tds, dict) or tds.get("uid") != "${datasource}"):
                errors.append(f"{where}: target {t.get('refId')} datasource is not ${{datasource}}")
            if not t.get("expr"):
                errors.append(f"{where}: target {t.get('refId')} has no expr")
            else:
                exprs.append((f"{where} target {t.get('refId')}", t["expr"]))
    variables = {v.get("name"): v for v in (d.get("templating") or {}).get("list", [])}
    for name in ("datasource", "integration"):
        if name not in variables:
            errors.append(f"{path}: no templating variable {name!r}")
    if "datasource" in variables and (variables["datasource"].get("type") != "datasource"
                                       or variables["datasource"].get("query") != "prometheus"):
        errors.append(f"{path}: variable 'datasource' is not a prometheus datasource variable")
    for name, v in variables.items():
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            check_names(q + " " + v.get("definition", ""), f"{path}: variable {name}")

for where, expr in exprs:
    check_names(expr, where)

# PromQL syntax of the dashboard expressions: substitute the Grafana variables and let promtool parse
# them as recording rules.
def substitute(expr):
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)

if exprs:
    rules_path = os.path.join(tmp, "dashboard_exprs.yml")
    with open(rules_path, "w") as f:
        f.write("groups:\n  - name: dashboard_exprs\n    rules:\n")
        for i, (_, expr) in enumerate(exprs):
            f.write(f"      - record: dashboard:expr_{i}\n        expr: {json.dumps(substitute(expr))}\n")
    r = subprocess.run(["promtool", "check", "rules", rules_path], capture_output=True, text=True)
    if r.returncode != 0:
        errors.append("dashboard expressions do not parse:\n" + r.stdout + r.stderr)

if errors:
    for e in errors:
        print("FAIL:", e)
    sys.exit(1)
print(f"grafana: {len(dashboards)} dashboard(s), {panel_total} panels, {len(exprs)} expressions parse; "
      f"{len(checked_names)} metric families referenced, all known")
PY

if [ "${#failed[@]}" -eq 0 ]; then
  echo "check-dashboards: OK, ${#passed[@]}/${#passed[@]} checks passed (rules valid, rule unit tests pass, prometheus.yml valid, dashboards valid, metric names known)"
else
  list=$(printf ', %s' "${failed[@]}")
  echo "check-dashboards: FAILED ${#failed[@]} of $((${#passed[@]} + ${#failed[@]})) checks: ${list#, }"
  exit 1
fi
