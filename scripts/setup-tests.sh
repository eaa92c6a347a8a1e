#!/usr/bin/env bash
# Installs what only the test suite needs, idempotently, on top of
# scripts/setup.sh: servers and tools the integration tests drive for real.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "$@"
}

missing=()
# The MQTT tests (tests/it/mqtt.rs) run a real Mosquitto broker and its
# command-line clients, and make the TLS tests' CA and broker certificates
# with `openssl`; one checks the system trust store (ca-certificates).
# The browser tests (tests/it/browser.rs) drive headless Chromium through
# chromedriver. The HTTP abuse test (tests/it/httpd.rs) and the benchmarks
# load the server with wrk; the /metrics test validates the output with
# promtool, which Debian ships in prometheus.
for pkg in mosquitto mosquitto-clients openssl ca-certificates chromium chromium-driver wrk prometheus; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup-tests: installing ${missing[*]} (apt-get)"
    apt_install "${missing[@]}"
fi

pytest_version=8.4.2
python="$root/.venv/bin/python"
have=$("$python" -m pip show pytest 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "$have" != "$pytest_version" ]; then
    echo "setup-tests: installing pytest $pytest_version into .venv"
    "$python" -m pip install -q --disable-pip-version-check "pytest==$pytest_version"
fi
