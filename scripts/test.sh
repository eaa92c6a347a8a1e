#!/usr/bin/env bash
# Runs the whole test suite: installs what it needs, builds the plugins and
# the host, then runs every test. Ends with one summary line.
#
#   scripts/test.sh [extra cargo test args, e.g. a test name filter]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$(date +%s)
step() { echo "==> [$(( $(date +%s) - started ))s] $*"; }

step "setup (virtualenv, componentize-py, test tools)"
scripts/setup-tests.sh
step "build the shared Python runtime"
scripts/build-runtime.sh
step "plugin logic tests (pytest, no WebAssembly)"
pylog=$(mktemp)
set +e
scripts/test-plugins.sh 2>&1 | tee "$pylog"
pystatus=${PIPESTATUS[0]}
set -e
py_passed=$(grep -oE '[0-9]+ passed' "$pylog" | tail -n 1 | cut -d' ' -f1 || true)
py_failed=$(grep -oE '[0-9]+ failed' "$pylog" | tail -n 1 | cut -d' ' -f1 || true)
rm -f "$pylog"
step "build host and tests"
cargo build --locked --lib --bins --tests
step "run tests"
log=$(mktemp)
set +e
cargo test --locked --lib --bins --tests -- "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
read -r passed failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } } END { print p + 0, f + 0 }' "$log")
rm -f "$log"
step "cross builds for the Pi, run under qemu (scripts/test-cross.sh; TEST_CROSS=0 skips)"
if [ "${TEST_CROSS:-1}" != 0 ]; then
    crosslog=$(mktemp)
    set +e
    scripts/test-cross.sh 2>&1 | tee "$crosslog"
    crossstatus=${PIPESTATUS[0]}
    set -e
    read -r cross_passed cross_failed < <(sed -nE 's/^cross: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/p' "$crosslog" | tail -n 1) || true
    rm -f "$crosslog"
    # No summary line from it counts as one failure.
    passed=$((passed + ${cross_passed:-0}))
    failed=$((failed + ${cross_failed:-1}))
    if [ "$status" -eq 0 ]; then status=$crossstatus; fi
else
    echo "cross: skipped (TEST_CROSS=0)"
fi
step "the device path on an emulated Pi Zero 2 W (scripts/test-device.sh; TEST_DEVICE=0 skips)"
if [ "${TEST_DEVICE:-1}" != 0 ]; then
    devicelog=$(mktemp)
    set +e
    scripts/test-device.sh 2>&1 | tee "$devicelog"
    devicestatus=${PIPESTATUS[0]}
    set -e
    read -r device_passed device_failed < <(sed -nE 's/^device: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/p' "$devicelog" | tail -n 1) || true
    rm -f "$devicelog"
    # No summary line from it counts as one failure.
    passed=$((passed + ${device_passed:-0}))
    failed=$((failed + ${device_failed:-1}))
    if [ "$status" -eq 0 ]; then status=$devicestatus; fi
else
    echo "device: skipped (TEST_DEVICE=0)"
fi
step "done"
echo "summary: $((passed + ${py_passed:-0})) passed, $((failed + ${py_failed:-0})) failed"
[ "$pystatus" -eq 0 ] || exit "$pystatus"
exit "$status"
