#!/usr/bin/env bash
# Runs the README's tour, block by block, against a fresh server: every command the README shows must work
# as written (blocks after a "not run" comment are skipped; PORTAL and TOKEN are set as the README says).
# The tour is what a new user meets: approvals as `make run` has them (required).
export PORTAL_APPROVALS=required
source "$(dirname "$0")/lib.bash"
cd "$ROOT"

python3 - "$ROOT/README.md" >"$WORK/tour.sh" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
tour = text.split("<!-- tour:start -->", 1)[1].split("<!-- tour:end -->", 1)[0]
skip = False
for line_block in re.split(r"(```bash\n.*?```)", tour, flags=re.S):
    if line_block.startswith("```bash"):
        if not skip:
            print(line_block[len("```bash\n"):-3])
        skip = False
    elif "<!-- not run" in line_block:
        skip = True
PY
[ "$(grep -c curl "$WORK/tour.sh")" -ge 10 ] || fail "the tour extracted from README.md looks empty"

"$PORTAL_BIN" keys generate-master --out "$WORK/master.key" 2>/dev/null
start_server "$WORK/master.key"
export TOKEN=$(grep -o 'ptk_[A-Za-z0-9_-]\{43\}' "$WORK/server.out" | head -n 1)
export PORTAL
[ -n "$TOKEN" ] || fail "no admin token printed"

bash -euo pipefail "$WORK/tour.sh" >"$WORK/tour.out" 2>&1 || { cat "$WORK/tour.out"; fail "a tour command failed"; }
out=$(cat "$WORK/tour.out")
for expected in '{"status":"ok"}' '"role": "admin"' 'created integration ' '"clientSecret": "••••0042"' \
                '"testEndpoint": "/services/data/v59.0/limits"' '"code": "validation_failed"' '"pointer": "/color"' '403' '204' '"status": "inactive"' \
                '"state": "approved"' '"status": "active"'; do
  grep -qF "$expected" <<<"$out" || { echo "$out"; fail "the tour output lacks $expected"; }
done
grep -q 'ptk_' <<<"$out" || fail "portal token create printed no token"
stop_server
echo "readme-tour.sh ($BACKEND): all checks passed"
