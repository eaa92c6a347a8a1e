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
# Runs one of the suite's scripts that prints `NAME: P passed, F failed`
# last, and adds its counts (no summary line counts as one failure).
run_part() { # name script skip-variable
    local name=$1 script=$2 skip=$3 log rc p f
    if [ "${!skip:-1}" = 0 ]; then
        echo "$name: skipped ($skip=0)"
        return
    fi
    log=$(mktemp)
    set +e
    "$script" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    read -r p f < <(sed -nE "s/^$name: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/p" "$log" | tail -n 1) || true
    rm -f "$log"
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-1}))
    if [ "$status" -eq 0 ]; then status=$rc; fi
}
step "cross builds for the Pi, run under qemu (scripts/test-cross.sh; TEST_CROSS=0 skips)"
run_part cross scripts/test-cross.sh TEST_CROSS
step "the device path on an emulated Pi Zero 2 W (scripts/test-device.sh; TEST_DEVICE=0 skips)"
run_part device scripts/test-device.sh TEST_DEVICE
step "done"
echo "summary: $((passed + ${py_passed:-0})) passed, $((failed + ${py_failed:-0})) failed"
[ "$pystatus" -eq 0 ] || exit "$pystatus"
exit "$status"
