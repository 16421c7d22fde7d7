#!/usr/bin/env bash
# Everything `make test` runs, with PORTAL_TEST_POSTGRES_URL set by scripts/with-postgres.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# The suites run in parallel against one PostgreSQL server, each with its own pools: on a busy 2-core machine
# a pool can wait long for a connection slot. That is contention, not an outage; the outage test sets its own.
export PORTAL_DATABASE_WAIT=${PORTAL_DATABASE_WAIT:-5m}

echo "== swift test (SQLite${PORTAL_TEST_POSTGRES_URL:+ and PostgreSQL})"
swift test --skip-build

echo "== SQL ownership (no SQL and no SQLKit outside Storage)"
scripts/check-sql-ownership.sh

echo "== module graph (docs/architecture.md against Package.swift and the imports)"
python3 scripts/check-architecture.py --self-test

echo "== OpenAPI document"
.venv/bin/python -c "
import json
from openapi_spec_validator import validate
validate(json.load(open('Sources/PortalServer/Resources/openapi.json')))
print('openapi.json: valid OpenAPI 3.1')
"

echo "== dashboards (promtool check rules, promtool test rules, Grafana JSON)"
scripts/check-dashboards.sh

passed=0
failed=0
for backend in sqlite ${PORTAL_TEST_POSTGRES_URL:+postgres}; do
  for script in Tests/acceptance/*.sh; do
    echo "== $script ($backend)"
    if BACKEND=$backend bash "$script"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $script ($backend)"; fi
  done
done
# The soak harness (`make soak`) for one minute per backend on the debug build: every capability at once,
# faults injected, every invariant checked (Tests/soak/soak.py; the report goes to var/soak/make-test.md).
echo "== soak (one minute per backend)"
if .venv/bin/python Tests/soak/soak.py --minutes 1 --backend "$([ -n "${PORTAL_TEST_POSTGRES_URL:-}" ] && echo both || echo sqlite)" \
  --portal .build/debug/portal --out var/soak/make-test.md; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: soak"; fi
echo "acceptance: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
