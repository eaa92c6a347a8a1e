#!/usr/bin/env bash
# Proof that the Pi builds work, under emulation: cross-builds the device
# binaries (aarch64 and armv7, runtime-only: no compiler), precompiles the
# shared Python runtime for each with the native host, runs each cross
# binary under qemu-user with --hardware sim, the precompiled folder as its
# cache_dir and no runtime component on disk (as on a device), and waits
# until /api shows fresh DHT22, BME680 and pi-monitor readings from the
# shipped plugins' Python source. Then it edits a plugin's app.py and waits
# for the new version in /api (hot reload with no compiler on the machine),
# and reports the swap time. The device must not compile anything (its log
# has no "compiled ... KiB of WebAssembly" line). Also checks that a foreign
# artifact is refused with a clear reason (and a host with a compiler
# compiles instead), and verifies the systemd unit.
#
#   scripts/test-cross.sh [aarch64|armv7|all]
#
# Ends with `cross: N passed, M failed`; exits non-zero when anything failed.
# Needs the runtime (scripts/build-runtime.sh; built here when missing).
# Respects CARGO_TARGET_DIR. TEST_CROSS_TIMEOUT_S overrides the wait per
# target (default 600 s: Pulley under qemu is slow).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$(date +%s)
step() { echo "==> cross [$(( $(date +%s) - started ))s] $*"; }
which_targets=${1:-all}
timeout_s=${TEST_CROSS_TIMEOUT_S:-600}
target_dir=${CARGO_TARGET_DIR:-$root/target}
work="$target_dir/test-cross"
rm -rf "$work"
mkdir -p "$work"

passed=0
failed=0
pass() { echo "cross: PASS $*"; passed=$((passed + 1)); }
fail() { echo "cross: FAIL $*"; failed=$((failed + 1)); }
finish() {
    echo "cross: $passed passed, $failed failed (in $(( $(date +%s) - started )) s)"
    [ "$failed" -eq 0 ]
    exit
}

case "$which_targets" in
    aarch64) arches=(aarch64) ;;
    armv7) arches=(armv7) ;;
    all) arches=(aarch64 armv7) ;;
    *) echo "usage: scripts/test-cross.sh [aarch64|armv7|all]" >&2; exit 2 ;;
esac

# From here on a failing step is counted and reported, not fatal, so the
# summary line always comes.
set +e
if [ ! -f runtime/python-runtime.wasm ]; then
    step "runtime missing: scripts/build-runtime.sh"
    scripts/build-runtime.sh || { fail "the Python runtime does not build"; finish; }
fi

step "native precompiler (cargo feature precompile-all-targets)"
if ! cargo build --locked --features precompile-all-targets --bin wasi-python-host; then
    fail "native precompiler does not build"
    finish
fi
# A copy: the test build (default features) writes the same path.
native="$work/wasi-python-host-precompiler"
cp "$target_dir/debug/wasi-python-host" "$native"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A copy of config/host.toml for a device run: the given plugins folder,
# private state, the given cache_dir, and a runtime path that does not
# exist (a device has only the precompiled runtime). Only [host] keys at
# the start of a line are rewritten.
device_config() { # out cache_dir state_dir plugins_dir
    sed -e "s|^plugins_dir = .*|plugins_dir = \"$4\"|" \
        -e "s|^runtime = .*|runtime = \"$3/no-runtime-here.wasm\"|" \
        -e "s|^state_dir = .*|state_dir = \"$3\"\ncache_dir = \"$2\"|" \
        config/host.toml >"$1"
    grep -q "^cache_dir = \"$2\"" "$1" && grep -q "no-runtime-here" "$1"
}

# Waits until /api has a reading with sensor id $2; prints the ms waited.
wait_for_sensor() { # port sensor_id deadline_s
    local t0 deadline=$(( $(date +%s) + $3 ))
    t0=$(date +%s%N)
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if curl -fsS --max-time 5 "http://127.0.0.1:$1/api" 2>/dev/null | grep -q "\"sensor_id\":\"$2\""; then
            echo $(( ($(date +%s%N) - t0) / 1000000 ))
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Waits until /api has DHT22, BME680 and system readings younger than 60 s.
# Returns 1 when the host died, 2 on timeout.
wait_for_readings() { # port pid log deadline_s
    local port=$1 pid=$2 log=$3 deadline=$(( $(date +%s) + $4 )) last=0
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        body=$(curl -fsS --max-time 10 "http://127.0.0.1:$port/api" 2>/dev/null || true)
        if [ -n "$body" ] && python3 - "$body" <<'PY'
import json, sys, time
api = json.loads(sys.argv[1])
now = time.time() * 1000
fresh = lambda ts: ts is not None and 0 <= now - ts < 60_000
ids = {r["sensor_id"]: r for r in api.get("readings", [])}
ok = (fresh(ids.get("dht22-gpio-4", {}).get("timestamp_ms"))
      and fresh(ids.get("bme680-i2c-0x77", {}).get("timestamp_ms"))
      and ids["bme680-i2c-0x77"].get("iaq_score") is not None
      and fresh((api.get("system") or {}).get("timestamp_ms")))
sys.exit(0 if ok else 1)
PY
        then
            return 0
        fi
        if [ $(( $(date +%s) - last )) -ge 30 ]; then
            last=$(date +%s)
            echo "    waiting for readings ($(( deadline - $(date +%s) )) s left): $(tail -n 1 "$log" | cut -c1-160)"
        fi
        sleep 3
    done
    return 2
}

run_target() { # arch
    local arch=$1 triple qemu sysroot expect
    case "$arch" in
        aarch64) triple=aarch64-unknown-linux-gnu qemu=qemu-aarch64 sysroot=/usr/aarch64-linux-gnu
                 expect="Cranelift native code (aarch64-linux)" ;;
        armv7) triple=armv7-unknown-linux-gnueabihf qemu=qemu-arm sysroot=/usr/arm-linux-gnueabihf
               expect="Pulley interpreter (pulley32" ;;
    esac
    step "$arch: cross build (runtime-only: the device build)"
    local t0=$(date +%s)
    if ! scripts/cross-build.sh "$arch" --runtime-only; then
        fail "$arch: cross build failed"
        return
    fi
    echo "    $arch cross build: $(( $(date +%s) - t0 )) s"
    local bin="$root/dist/$triple-runtime-only/wasi-python-host"
    local pre="$work/precompiled/$triple"
    step "$arch: precompile the Python runtime for $triple"
    if ! "$native" precompile --config config/host.toml --target "$triple" --out "$pre"; then
        fail "$arch: precompile --target $triple failed"
        return
    fi
    local n
    n=$(find "$pre" -name '*.cwasm' | wc -l)
    if [ "$n" -ne 1 ] || [ -z "$(find "$pre" -name 'python-runtime-*.digest')" ]; then
        fail "$arch: expected the runtime's artifact and its pointer in $pre, found $n artifacts"
        return
    fi
    # The device gets a copy, as after deploy, and the plugins' sources.
    local cache="$work/$arch/cache" state="$work/$arch/state" plugins="$work/$arch/plugins"
    mkdir -p "$work/$arch" "$state" "$plugins"
    cp -r "$pre" "$cache"
    for d in plugins/*/; do
        mkdir -p "$plugins/$(basename "$d")"
        cp "$d"*.py "$plugins/$(basename "$d")/" 2>/dev/null || true
    done
    if ! device_config "$work/$arch/host.toml" "$cache" "$state" "$plugins"; then
        fail "$arch: could not write the device config"
        return
    fi
    local port log="$work/$arch/host.log"
    port=$(free_port)
    step "$arch: $qemu $bin --hardware sim --listen 127.0.0.1:$port (timeout ${timeout_s} s)"
    RUST_LOG=info "$qemu" -L "$sysroot" "$bin" --config "$work/$arch/host.toml" \
        --hardware sim --listen "127.0.0.1:$port" >"$log" 2>&1 &
    local pid=$!
    local t1=$(date +%s) rc=0 swap_ms=""
    wait_for_readings "$port" "$pid" "$log" "$timeout_s" || rc=$?
    local waited=$(( $(date +%s) - t1 ))
    if [ "$rc" -eq 0 ]; then
        # Hot reload with no compiler anywhere near: a new sensor id in app.py.
        sed -i 's/sensor_id = setting("sensor_id", f"dht22-gpio-{pin}")/sensor_id = setting("sensor_id", f"dht22-gpio-{pin}") + "-edited"/' "$plugins/dht22/app.py"
        grep -q -- '-edited' "$plugins/dht22/app.py" || echo "    (the edit did not apply: plugins/dht22/app.py changed shape)"
        swap_ms=$(wait_for_sensor "$port" "dht22-gpio-4-edited" 120) || rc=4
    fi
    if kill -0 "$pid" 2>/dev/null; then
        ps -o rss= -p "$pid" | awk -v a="$arch" '{ printf "    %s: host RSS under qemu %.0f MiB\n", a, $1 / 1024 }'
        kill -TERM "$pid"
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "    $arch: no exit 60 s after SIGTERM"
            kill -KILL "$pid"
            [ "$rc" -eq 0 ] && rc=3
        fi
    fi
    wait "$pid" 2>/dev/null || true
    echo "    --- $arch host log (first 15 lines) ---"
    head -n 15 "$log" | sed 's/^/    /'
    if [ "$rc" -eq 1 ]; then
        echo "    --- last lines ---"; tail -n 20 "$log" | sed 's/^/    /'
        fail "$arch: the host exited before serving fresh readings"
    elif [ "$rc" -eq 2 ]; then
        echo "    --- last lines ---"; tail -n 20 "$log" | sed 's/^/    /'
        fail "$arch: no fresh DHT22/BME680/pi-monitor readings in /api within ${timeout_s} s"
    elif [ "$rc" -eq 3 ]; then
        fail "$arch: the host did not stop on SIGTERM"
    elif [ "$rc" -eq 4 ]; then
        echo "    --- last lines ---"; tail -n 20 "$log" | sed 's/^/    /'
        fail "$arch: an edited app.py did not go live within 120 s"
    elif grep -qE 'compiled [0-9]+ KiB of WebAssembly' "$log"; then
        fail "$arch: the device compiled plugins instead of loading the precompiled artifacts"
    elif ! grep -qF "$expect" "$log"; then
        fail "$arch: the log does not say the engine runs \"$expect\""
    elif grep -q "discarding cached artifact" "$log"; then
        fail "$arch: a precompiled artifact was discarded"
    else
        pass "$arch: Python plugins on the precompiled runtime under $qemu without compiling; fresh readings after ${waited} s"
        pass "$arch: an edited app.py went live in ${swap_ms} ms (edit -> visible in /api, under $qemu)"
        grep -E "plugin \`dht22\` loaded" "$log" | tail -n 1 | sed 's/^/    /'
    fi
}

for arch in "${arches[@]}"; do
    run_target "$arch"
done

# A foreign artifact under the right name must be refused by wasmtime with a
# clear reason, and a host with a compiler then compiles instead. The
# native host first compiles the runtime into a folder (which names the
# entry), then that entry's content is swapped for the aarch64 one.
step "foreign artifact: refused, then compiled natively"
foreign_triple=aarch64-unknown-linux-gnu
[ "$(uname -m)" = aarch64 ] && foreign_triple=pulley32
foreign="$work/precompiled/$foreign_triple"
refuse="$work/refuse"
if [ -d "$foreign" ] || "$native" precompile --config config/host.toml --target "$foreign_triple" --out "$foreign" >/dev/null; then
  if "$native" precompile --config config/host.toml --out "$refuse" >/dev/null 2>&1; then
    entry=$(ls "$refuse"/*.cwasm)
    prefix=$(basename "$entry")
    src=$(ls "$foreign/${prefix%%-*}"-*.cwasm)
    cp "$src" "$entry"
    cp "${src%.cwasm}.sha256" "${entry%.cwasm}.sha256"
    out=$(RUST_LOG=info "$native" precompile --config config/host.toml --out "$refuse" 2>&1)
    if grep -q "artifact rejected by wasmtime" <<<"$out" &&
       grep -qE "compiled for (architecture|a different)" <<<"$out" &&
       grep -q "compiling the Python runtime" <<<"$out"; then
        pass "foreign artifact refused ($(grep -oE 'Module was compiled[^:]*' <<<"$out" | head -n 1)) and recompiled"
    else
        echo "$out" | sed 's/^/    /'
        fail "foreign artifact: not refused clearly, or not recompiled"
    fi
  else
    fail "foreign artifact: native precompile failed"
  fi
else
    fail "foreign artifact: precompile for $foreign_triple failed"
fi

step "deploy/host.toml"
if out=$("$native" probe --config deploy/host.toml --hardware sim 2>&1); then
    pass "deploy/host.toml is a valid config ($(tail -n 1 <<<"$out"))"
else
    echo "$out" | sed 's/^/    /'
    fail "deploy/host.toml is not a valid config"
fi

step "systemd unit"
if ! command -v systemd-analyze >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq && $sudo apt-get install -y -qq systemd >/dev/null || true
fi
if command -v systemd-analyze >/dev/null; then
    # verify wants the ExecStart binary to exist: point it at a stand-in.
    unit_dir="$work/unit"
    mkdir -p "$unit_dir"
    sed "s|/usr/local/bin/wasi-python-host|$native|" deploy/wasi-python-host.service >"$unit_dir/wasi-python-host.service"
    if out=$(systemd-analyze verify --man=no "$unit_dir/wasi-python-host.service" 2>&1) && [ -z "$out" ]; then
        pass "deploy/wasi-python-host.service: systemd-analyze verify is clean"
    else
        echo "$out" | sed 's/^/    /'
        fail "deploy/wasi-python-host.service: systemd-analyze verify reported problems"
    fi
else
    fail "systemd-analyze is not available to verify the unit"
fi

finish
