#!/usr/bin/env bash
# Storage owns the SQL (issue 18): no SQL text and no import of SQLKit or a database driver in any source
# target but Storage, and no such dependency in Package.swift for one. Benchmarks (whose baselines are plain
# INSERTs) and tests (which tamper with rows on purpose) may use SQL.
#   scripts/check-sql-ownership.sh          checks this repository, then checks that it catches violations
#   scripts/check-sql-ownership.sh ROOT     checks the tree at ROOT only
set -euo pipefail
cd "$(dirname "$0")/.."

drivers='SQLKit|SQLiteKit|SQLiteNIO|PostgresKit|PostgresNIO'
# SQL as the code writes it: statements, schema changes, savepoints and advisory locks.
sql='\b(SELECT [A-Za-z0-9_*(]|INSERT INTO|UPDATE [a-z_]+ SET|DELETE FROM|CREATE (TABLE|INDEX|UNIQUE INDEX)|ALTER TABLE|DROP (TABLE|INDEX)|SAVEPOINT|pg_advisory|pg_try_advisory)'

check() {
  local root=$1 found=0
  local imports statements packages
  imports=$(grep -rnE "^\s*(@[A-Za-z_]+\s+)?((public|package|internal|private|fileprivate)\s+)?import\s+($drivers)\b" "$root/Sources" --include='*.swift' | grep -v "^$root/Sources/Storage/" || true)
  statements=$(grep -rnE "$sql" "$root/Sources" --include='*.swift' | grep -v "^$root/Sources/Storage/" || true)
  packages=$(python3 - "$root/Package.swift" "$drivers" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
drivers = sys.argv[2].split("|")
# Each target declaration up to the next one: a source target other than Storage, the benchmarks and the
# test support must not depend on SQLKit or a driver.
for m in re.finditer(r'\.(target|executableTarget)\(\s*name:\s*"([^"]+)"(.*?)(?=\.(?:target|executableTarget|testTarget|systemLibrary)\(|\Z)', text, re.S):
    kind, name, body = m.groups()
    if name in ("Storage", "PortalBench", "PortalTestSupport"):
        continue
    for d in drivers:
        if re.search(r'name:\s*"%s"' % d, body):
            print(f"Package.swift: target {name} depends on {d}")
PY
)
  if [ -n "$imports" ]; then echo "import of SQLKit or a driver outside Storage:"; echo "$imports"; found=1; fi
  if [ -n "$statements" ]; then echo "SQL outside Storage (make it a named method of a store):"; echo "$statements"; found=1; fi
  if [ -n "$packages" ]; then echo "$packages"; found=1; fi
  return $found
}

if [ $# -gt 0 ]; then check "$1"; exit; fi

check .
echo "sql ownership: no SQL, no SQLKit import and no driver dependency outside Storage"

# The check must catch what it is for: a tree with each kind of violation fails, and names each.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/Sources/Gateway" "$tmp/Sources/Storage"
printf 'import SQLKit\nlet q = "SELECT id FROM integrations"\n' > "$tmp/Sources/Gateway/Bad.swift"
printf 'import SQLKit\nlet q = "SELECT id FROM integrations"\n' > "$tmp/Sources/Storage/Good.swift"
printf '.target(\n name: "Gateway",\n dependencies: [.product(name: "SQLKit", package: "sql-kit")]\n),\n.target(name: "Storage", dependencies: [.product(name: "SQLKit", package: "sql-kit")])\n' > "$tmp/Package.swift"
if out=$(check "$tmp"); then echo "sql ownership: the check missed planted violations" >&2; exit 1; fi
for expected in "Gateway/Bad.swift:1:import SQLKit" "Gateway/Bad.swift:2:" "target Gateway depends on SQLKit"; do
  grep -qF "$expected" <<<"$out" || { echo "sql ownership: the check did not report $expected" >&2; echo "$out" >&2; exit 1; }
done
if grep -q "Storage/Good.swift\|target Storage" <<<"$out"; then echo "sql ownership: the check reported Storage itself" >&2; exit 1; fi
echo "sql ownership: the check reports planted violations (and not Storage's own SQL)"
