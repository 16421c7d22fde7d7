#!/usr/bin/env bash
# Installs the system packages a target needs, only those missing, with apt-get (as root).
#   scripts/install-deps.sh run    build and run the service
#   scripts/install-deps.sh test   also what the tests drive: PostgreSQL, curl, jq, Python for the venv
#   scripts/install-deps.sh bench  the tests' packages plus what the benchmark measures with (openssl, time, nginx, wrk)
set -euo pipefail

want=(libzstd-dev pkg-config curl)
if [ "${1:-run}" = test ] || [ "${1:-run}" = bench ]; then
  # prometheus: promtool checks the /metrics exposition and the dashboards' alerting rules; chromium and
  # chromium-driver: the console's browser tests; iproute2: the
  # contract test's loopback-only network namespace.
  want+=(postgresql jq python3-venv zstd prometheus iproute2 chromium chromium-driver)
fi
if [ "${1:-run}" = bench ]; then
  want+=(openssl time nginx wrk)
fi

missing=()
for package in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing system packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
