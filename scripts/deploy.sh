#!/usr/bin/env bash
# Builds wasi-python-host for a Raspberry Pi and installs it there as a
# hardened systemd service, over ssh.
#
#   scripts/deploy.sh [USER@]HOST [options]
#
#   --port N            ssh port (default: ssh's, 22)
#   -i, --identity FILE ssh key;  -F, --ssh-config FILE  ssh config file
#   --target T          aarch64 (64-bit Pi OS, default) or armv7 (32-bit);
#                       `dpkg --print-architecture` on the Pi: arm64 or armhf
#                       (the Pi gets the runtime-only build: no compiler,
#                       about a third of the size; it runs what this script
#                       precompiled, and never compiles)
#   --no-build          deploy what is already built, build nothing (fails,
#                       naming the command, when something is missing)
#   --precompiler FILE  the native host that precompiles the Python runtime
#                       for the Pi (built with --features precompile-all-targets;
#                       default target/release/wasi-python-host, built here)
#   --plugins-only      push only the plugins' Python files into the running
#                       host: it hot-reloads them, no restart, no compile;
#                       waits for the host's verdict on each new version
#   --config FILE       where the plugins' config comes from (default
#                       config/host.toml: the one `new --add` and run.sh use)
#   --device-config F   the device settings (default deploy/host.toml)
#   --replace-config    replace the Pi's config even if it was edited there
#                       (the old one is kept as host.toml.previous)
#   --dry-run           print the commands, run nothing
#
# What goes to the Pi: the binary, the shared Python runtime precompiled for
# the Pi (~40 MB, copied once: a redeploy sends it only when it changed),
# every plugin in plugins/ (each folder with an app.py, your own included:
# its Python files, tests left out) and plugins/common, any component
# plugin with its artifact, the unit, and a config made of
# deploy/host.toml's device settings ([host],
# [hardware], [limits], ...) plus the [plugins.*] tables of config/host.toml.
# Everything is staged in dist/deploy-<triple>/, streamed to a folder on the
# Pi's disk (/var/tmp, not the RAM-backed /tmp) and installed by
# deploy/install.sh with sudo: it refuses ARMv6 and old glibc, checks the new
# config with the new binary, stops the service, installs, starts it, waits
# for /healthz, and rolls back to the previous binary, plugins and config
# (with the journal's last lines) when it does not come up. A config edited
# on the Pi is kept; the new one goes next to it as host.toml.new, loudly.
# Idempotent: run it again after every change.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

dest= port= identity= ssh_config= arch=aarch64 dry=0 runtime_only=--runtime-only build=1
mode=full replace_config=0 precompiler=
plugin_config=config/host.toml device_config=deploy/host.toml
wait_s=${DEPLOY_WAIT_S:-180}
usage="usage: scripts/deploy.sh [USER@]HOST [--port N] [-i KEY] [-F SSH_CONFIG] [--target aarch64|armv7] [--no-build] [--precompiler FILE] [--plugins-only] [--config FILE] [--device-config FILE] [--replace-config] [--dry-run]"
die() { echo "deploy: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port=${2:?--port needs a number}; shift ;;
        --port=*) port=${1#--port=} ;;
        -i|--identity) identity=${2:?$1 needs a file}; shift ;;
        -F|--ssh-config) ssh_config=${2:?$1 needs a file}; shift ;;
        --target) arch=${2:?--target needs aarch64 or armv7}; shift ;;
        --target=*) arch=${1#--target=} ;;
        --runtime-only) ;; # the default (and only) device build
        --no-build) build=0 ;;
        --precompiler) precompiler=${2:?--precompiler needs a file}; shift ;;
        --plugins-only) mode=plugins ;;
        --config) plugin_config=${2:?--config needs a file}; shift ;;
        --device-config) device_config=${2:?--device-config needs a file}; shift ;;
        --replace-config) replace_config=1 ;;
        --dry-run) dry=1 ;;
        -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
        -*) die "unknown option $1
$usage" ;;
        *) [ -z "$dest" ] || die "two destinations: $dest and $1"; dest=$1 ;;
    esac
    shift
done
[ -n "$dest" ] || die "$usage"
case "$dest" in
    *:*) die "\`$dest\`: give the ssh port with --port, not HOST:PORT" ;;
esac
case "$port" in
    ''|[0-9]|[0-9][0-9]|[0-9][0-9][0-9]|[0-9][0-9][0-9][0-9]|[0-9][0-9][0-9][0-9][0-9]) ;;
    *) die "--port: \`$port\` is not a port number" ;;
esac
case "$arch" in
    aarch64) triple=aarch64-unknown-linux-gnu machine=arm64 ;;
    armv7) triple=armv7-unknown-linux-gnueabihf machine=armhf ;;
    *) die "--target must be aarch64 or armv7, not $arch" ;;
esac
target_dir=${CARGO_TARGET_DIR:-$root/target}
suffix=${runtime_only:+-runtime-only}
stage="dist/deploy-$triple$suffix"
device_bin="dist/$triple$suffix/wasi-python-host"
precompiler=${precompiler:-$target_dir/release/wasi-python-host}
# One ssh connection for the whole deploy, shared by every ssh call below
# (ControlMaster): one login, one banner exchange. A Pi Zero under load can
# take seconds to answer each new connection, and every extra one is a
# chance to time out.
ssh_control=$(mktemp -d "${TMPDIR:-/tmp}/whp-deploy-ssh.XXXXXX")
close_ssh() {
    ssh "${ssh_opts[@]}" -O exit "$dest" >/dev/null 2>&1 || true
    rm -rf "$ssh_control"
}
trap close_ssh EXIT
ssh_opts=(-o ServerAliveInterval=15 -o ConnectTimeout=60
    -o ControlMaster=auto -o "ControlPath=$ssh_control/%C" -o ControlPersist=300)
[ -z "$port" ] || ssh_opts+=(-p "$port")
[ -z "$identity" ] || ssh_opts+=(-i "$identity")
[ -z "$ssh_config" ] || ssh_opts+=(-F "$ssh_config")
started=$(date +%s)

run() {
    printf '+ %s\n' "$*"
    [ "$dry" -eq 1 ] || "$@"
}
step() { echo "deploy: [$(( $(date +%s) - started ))s] $*"; }

# The plugins: every folder of plugins/ with an app.py (plugins/common and
# plugins/testing are shared code, not plugins).
mapfile -t plugins < <(find plugins -mindepth 2 -maxdepth 2 -name app.py -printf '%h\n' | xargs -rn1 basename | sort)
[ "${#plugins[@]}" -gt 0 ] || die "no plugins in plugins/ (folders with an app.py)"

# ---- 1. Build ---------------------------------------------------------------
if [ "$build" -eq 1 ]; then
    step "build: the Pi binary, the Python runtime, a native precompiler"
    [ "$mode" = plugins ] || run scripts/cross-build.sh "$arch" $runtime_only
    run scripts/build-runtime.sh
    run cargo build --locked --release --features precompile-all-targets --bin wasi-python-host
    precompiler=$target_dir/release/wasi-python-host
else
    missing=()
    [ "$mode" = plugins ] || [ -x "$device_bin" ] ||
        missing+=("the Pi binary $device_bin (scripts/cross-build.sh $arch $runtime_only)")
    [ -x "$precompiler" ] ||
        missing+=("the precompiler $precompiler (cargo build --release --features precompile-all-targets --bin wasi-python-host, or --precompiler FILE)")
    [ -f runtime/python-runtime.wasm ] ||
        missing+=("the Python runtime runtime/python-runtime.wasm (scripts/build-runtime.sh)")
    if [ "${#missing[@]}" -gt 0 ] && [ "$dry" -eq 0 ]; then
        printf 'deploy: --no-build, but this is not built:\n' >&2
        printf 'deploy:   %s\n' "${missing[@]}" >&2
        exit 1
    fi
fi

# ---- 2. The device config -----------------------------------------------------
# deploy/host.toml up to its first [plugins.*] table (the device's own
# settings), then every [plugins.*] table of config/host.toml (the plugins
# as developed, the user's own included).
compose_config() { # out
    {
        echo "# Written by scripts/deploy.sh from $device_config (device settings) and the"
        echo "# [plugins.*] tables of $plugin_config. Edit it here if you like: the next"
        echo "# deploy keeps an edited file and writes its own next to it as host.toml.new."
        awk '/^\[plugins\./ { exit } { print }' "$device_config"
        awk '/^\[/ { keep = ($0 ~ /^\[plugins\./) } keep { print }' "$plugin_config"
    } >"$1"
}

# ---- 3. The payload -------------------------------------------------------------
# The one step that knows what a plugin is made of. Fills $1/plugins/<name>/
# with each plugin's Python modules as the device's plugins_dir holds them
# (tests left out: the device never loads them), $1/plugins/common/ with the
# shared ones, and $1/cache/ with the shared Python runtime (and any
# component plugin) precompiled for the Pi, named as its cache_dir expects,
# plus the pointer naming the current runtime.
is_module() { # file name: what the host loads (src/plugins/files.rs)
    case "$1" in test_*.py | conftest.py) return 1 ;; esac
    [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*\.py$ ]]
}
stage_payload() { # stage_dir plugin...
    local out=$1 p f artifacts=dist/precompiled/$triple list
    shift
    run mkdir -p "$out/plugins" "$out/cache"
    for p in "$@" common; do
        [ -d "plugins/$p" ] || continue
        run mkdir -p "$out/plugins/$p"
        for f in "plugins/$p"/*; do
            if is_module "$(basename "$f")"; then
                run cp "$f" "$out/plugins/$p/"
            elif [ -f "$f" ] && [[ "$f" == *.wasm ]] && grep -q "^component *= *\"$p/$(basename "$f")\"" "$plugin_config"; then
                run cp "$f" "$out/plugins/$p/" # a component plugin's file
            fi
        done
    done
    # Precompiled into a folder that outlives the stage (precompile skips
    # what is already there: a redeploy compiles only what changed), then
    # exactly this deploy's artifacts are linked into the stage.
    if ! run "$precompiler" precompile --config "$plugin_config" --target "$triple" --out "$artifacts" |
        tee "$out/precompile.log"; then
        echo "deploy: precompiling the Python runtime for $triple failed (above)" >&2
        exit 1
    fi
    [ "$dry" -eq 0 ] || return 0
    grep -q '^python runtime: ' "$out/precompile.log" ||
        { echo "deploy: precompile did not report the Python runtime" >&2; exit 1; }
    list=$(sed -n 's/.* -> \([0-9a-f-]*\)\.cwasm$/\1/p' "$out/precompile.log")
    for p in $list; do
        ln -f "$artifacts/$p.cwasm" "$artifacts/$p.sha256" "$out/cache/" 2>/dev/null ||
            cp "$artifacts/$p.cwasm" "$artifacts/$p.sha256" "$out/cache/"
    done
    cp "$artifacts"/python-runtime-*.digest "$out/cache/"
    rm "$out/precompile.log"
}

step "stage: dist/deploy-$triple$suffix (plugins: ${plugins[*]})"
run rm -rf "$stage"
run mkdir -p "$stage"
if [ "$mode" = full ]; then
    if [ "$dry" -eq 1 ]; then
        echo "+ compose $stage/host.toml from $device_config and the [plugins.*] of $plugin_config"
    else
        compose_config "$stage/host.toml"
        # Every plugin needs a config entry, or it would be shipped and never run.
        for p in "${plugins[@]}"; do
            grep -q "^\[plugins\.$p\]" "$stage/host.toml" || {
                echo "deploy: plugins/$p has no [plugins.$p] in $plugin_config, so it would never run on the Pi." >&2
                echo "deploy: add one (\`wasi-python-host new NAME --add\` writes it for a new plugin), or move the folder out of plugins/." >&2
                exit 1
            }
        done
        # Checked here too, to fail before copying anything.
        if ! out=$("$precompiler" check --config "$stage/host.toml" 2>&1); then
            echo "$out" | sed 's/^/deploy:   /' >&2
            echo "deploy: the device config made from $device_config and $plugin_config is invalid (above)" >&2
            exit 1
        fi
    fi
    run cp "$device_bin" "$stage/wasi-python-host"
    run cp deploy/wasi-python-host.service "$stage/"
fi
stage_payload "$stage" "${plugins[@]}"
keep=()
if [ "$dry" -eq 0 ]; then
    # What the Pi has already is not copied again: plugins whose files are
    # the same as its live ones (that folder is world-readable) and, where
    # sudo works without a password, artifacts its cache holds (their names
    # are content hashes). On a Pi over Wi-Fi that is most of a redeploy.
    remote_sums=$(ssh "${ssh_opts[@]}" "$dest" \
        'cd /usr/local/lib/wasi-python-host/plugins 2>/dev/null && find . -type f ! -path "*/.*" -exec sha256sum {} + | sort -k2' || true)
    changed=()
    for p in "${plugins[@]}" common; do
        [ -d "$stage/plugins/$p" ] || continue
        local_sums=$(cd "$stage/plugins" && find "./$p" -type f -exec sha256sum {} + | sort -k2)
        if [ "$local_sums" != "$(grep -F "  ./$p/" <<<"$remote_sums" || true)" ]; then
            changed+=("$p")
        else
            keep+=("$p")
        fi
    done
    if [ "$mode" = plugins ]; then
        if [ "${#changed[@]}" -eq 0 ]; then
            step "no plugin differs from the Pi's (${plugins[*]}): nothing to push"
            exit 0
        fi
        if [ "${#keep[@]}" -gt 0 ]; then
            step "changed on this side: ${changed[*]} (the others are the Pi's already)"
            plugins=("${changed[@]}")
            rm -rf "$stage"
            mkdir -p "$stage"
            stage_payload "$stage" "${plugins[@]}" >/dev/null
        fi
        keep=()
    else
        # install.sh copies these from the Pi's live folder into the new one.
        for p in "${keep[@]}"; do rm -rf "${stage:?}/plugins/$p"; done
    fi
    remote_cache=$(ssh "${ssh_opts[@]}" "$dest" 'sudo -n ls /var/lib/wasi-python-host/cache 2>/dev/null' || true)
    for f in "$stage"/cache/*; do
        [ -e "$f" ] || continue
        ! grep -qxF "$(basename "$f")" <<<"$remote_cache" || rm "$f"
    done
    [ "${#keep[@]}" -eq 0 ] || step "already on the Pi, not copied: ${keep[*]}"
fi
run cp deploy/install.sh "$stage/install.sh"
if [ "$dry" -eq 0 ]; then
    cat >"$stage/deploy.env" <<EOF
MODE=$mode
MACHINE=$machine
REPLACE_CONFIG=$replace_config
WAIT_S=$wait_s
PLUGINS="${plugins[*]}"
KEEP_PLUGINS="${keep[*]}"
EOF
    bytes=$(du -sb "$stage" | cut -f1)
    step "staged $(( bytes / 1048576 )) MiB"
fi

# ---- 4. Copy and install ----------------------------------------------------------
# One ssh connection streams the folder with tar (modes kept, no scp path
# quirks); it lands on the Pi's disk, and install.sh removes it.
remote=/var/tmp/wasi-python-host-deploy.XXXXXX
if [ "$dry" -eq 1 ]; then
    echo "+ ssh ${ssh_opts[*]} $dest mktemp -d $remote"
    echo "+ tar -C $stage -cf - . | ssh ${ssh_opts[*]} $dest tar -C $remote -xf -"
    echo "+ ssh ${ssh_opts[*]} $dest sudo sh $remote/install.sh"
    exit 0
fi
step "copy to $dest${port:+ (port $port)}"
remote=$(ssh "${ssh_opts[@]}" "$dest" "mktemp -d $remote") ||
    { echo "deploy: cannot reach $dest over ssh${port:+ on port $port} (ssh's message above)" >&2; exit 1; }
if ! tar -C "$stage" -cf - . | ssh "${ssh_opts[@]}" "$dest" "tar -C '$remote' -xf -"; then
    ssh "${ssh_opts[@]}" "$dest" "rm -rf '$remote'" || true
    echo "deploy: copying to $dest:$remote failed (above); is there room on the Pi's disk (df -h /var/tmp)?" >&2
    exit 1
fi
step "install on $dest (sudo)"
tty=()
[ -t 0 ] && tty=(-t) # sudo may ask for a password
set +e
ssh "${ssh_opts[@]}" "${tty[@]}" "$dest" "sudo sh '$remote/install.sh'"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
    echo "deploy: FAILED on $dest (exit $rc) after $(( $(date +%s) - started )) s; see above" >&2
    exit 1
fi
step "deployed to $dest in $(( $(date +%s) - started )) s"
