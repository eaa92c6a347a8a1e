#!/usr/bin/env bash
# Builds and installs wasi-python-host on a Raspberry Pi as a systemd service.
#
#   scripts/deploy.sh user@pi [--target aarch64|armv7] [--runtime-only] [--dry-run]
#
#   --target        aarch64 (64-bit Pi OS, default) or armv7 (32-bit Pi OS);
#                   `dpkg --print-architecture` on the Pi says which: arm64 or armhf
#   --runtime-only  install the binary without a compiler (about a third of
#                   the size); it runs only the precompiled plugins deployed
#                   here, so every plugin update goes through this script
#   --dry-run       print the commands, run nothing
#
# Steps: cross-build (scripts/cross-build.sh), precompile the four plugins for
# the target with a native host, stage binary + plugins + artifacts + config
# + unit in dist/deploy-<triple>/, copy it with scp, and install over ssh
# with sudo: the `wasi-python-host` system user, /usr/local/bin,
# /usr/local/lib/wasi-python-host/plugins, /etc/wasi-python-host/host.toml
# (kept if it exists; the new one goes next to it as host.toml.new), the
# artifacts into /var/lib/wasi-python-host/cache, the unit, then enable and
# (re)start. Idempotent: run it again after every change.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

dest=
arch=aarch64
dry=0
runtime_only=
while [ $# -gt 0 ]; do
    case "$1" in
        --target) arch=${2:?--target needs aarch64 or armv7}; shift ;;
        --target=*) arch=${1#--target=} ;;
        --runtime-only) runtime_only=--runtime-only ;;
        --dry-run) dry=1 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        -*) echo "deploy: unknown option $1" >&2; exit 2 ;;
        *) dest=$1 ;;
    esac
    shift
done
[ -n "$dest" ] || { echo "usage: scripts/deploy.sh user@pi [--target aarch64|armv7] [--runtime-only] [--dry-run]" >&2; exit 2; }
case "$arch" in
    aarch64) triple=aarch64-unknown-linux-gnu machine=arm64 ;;
    armv7) triple=armv7-unknown-linux-gnueabihf machine=armhf ;;
    *) echo "deploy: --target must be aarch64 or armv7, not $arch" >&2; exit 2 ;;
esac
target_dir=${CARGO_TARGET_DIR:-$root/target}
suffix=${runtime_only:+-runtime-only}
stage="dist/deploy-$triple$suffix"
plugins=(dht22 bme680 pi_monitor dashboard)

run() {
    printf '+ %s\n' "$*"
    [ "$dry" -eq 1 ] || "$@"
}

# 1. Build: the Pi binary, and a native host that can compile for the Pi.
run scripts/cross-build.sh "$arch" $runtime_only
run scripts/build-plugins.sh
run cargo build --locked --release --features precompile-all-targets --bin wasi-python-host

# 2. Stage.
run rm -rf "$stage"
run mkdir -p "$stage/plugins" "$stage/cache"
run cp "dist/$triple$suffix/wasi-python-host" "$stage/wasi-python-host"
for p in "${plugins[@]}"; do
    run mkdir -p "$stage/plugins/$p"
    run cp "plugins/$p/$p.wasm" "$stage/plugins/$p/$p.wasm"
done
run "$target_dir/release/wasi-python-host" precompile --config config/host.toml \
    --target "$triple" --out "$stage/cache" "${plugins[@]}"
run cp deploy/host.toml deploy/wasi-python-host.service "$stage/"

# 3. Install on the Pi (as root through sudo). Runs from the staged folder.
install_script='set -eu
cd /tmp/wasi-python-host-deploy
# The userland decides, not the kernel: 32-bit Pi OS often runs a 64-bit
# kernel (uname -m says aarch64 there).
m=$(dpkg --print-architecture)
if [ "$m" != "'"$machine"'" ]; then
    echo "deploy: this Pi OS is $m, the build is for '"$machine"' (--target aarch64 is arm64, armv7 is armhf)" >&2
    exit 1
fi
groups=
for g in gpio i2c spi; do getent group "$g" >/dev/null && groups="$groups${groups:+,}$g"; done
if ! id wasi-python-host >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /var/lib/wasi-python-host \
        --shell /usr/sbin/nologin ${groups:+--groups "$groups"} wasi-python-host
elif [ -n "$groups" ]; then
    usermod --append --groups "$groups" wasi-python-host
fi
install -m 0755 wasi-python-host /usr/local/bin/wasi-python-host.new
mv /usr/local/bin/wasi-python-host.new /usr/local/bin/wasi-python-host
install -d -m 0755 /usr/local/lib/wasi-python-host/plugins
for d in plugins/*/; do
    n=$(basename "$d")
    install -d -m 0755 "/usr/local/lib/wasi-python-host/plugins/$n"
    # Write then rename: the running host hot-reloads on the rename.
    install -m 0644 "$d$n.wasm" "/usr/local/lib/wasi-python-host/plugins/$n/.$n.wasm.new"
    mv "/usr/local/lib/wasi-python-host/plugins/$n/.$n.wasm.new" "/usr/local/lib/wasi-python-host/plugins/$n/$n.wasm"
done
install -d -m 0755 /etc/wasi-python-host
if [ -e /etc/wasi-python-host/host.toml ]; then
    cmp -s host.toml /etc/wasi-python-host/host.toml || install -m 0644 host.toml /etc/wasi-python-host/host.toml.new
else
    install -m 0644 host.toml /etc/wasi-python-host/host.toml
fi
install -d -m 0700 -o wasi-python-host -g wasi-python-host /var/lib/wasi-python-host /var/lib/wasi-python-host/cache
install -m 0600 -o wasi-python-host -g wasi-python-host cache/* /var/lib/wasi-python-host/cache/
install -m 0644 wasi-python-host.service /etc/systemd/system/wasi-python-host.service
systemctl daemon-reload
systemctl enable wasi-python-host.service
systemctl restart wasi-python-host.service
sleep 2
systemctl --no-pager --lines=15 status wasi-python-host.service || true
cd / && rm -rf /tmp/wasi-python-host-deploy
echo "deploy: done; dashboard on http://$(hostname -I | cut -d" " -f1):3000/"'

if [ "$dry" -eq 1 ]; then
    printf '+ cat > %s/install.sh <<EOF\n%s\nEOF\n' "$stage" "$install_script"
else
    printf '%s\n' "$install_script" >"$stage/install.sh"
fi
run ssh "$dest" 'rm -rf /tmp/wasi-python-host-deploy && mkdir -p /tmp/wasi-python-host-deploy'
run scp -r "$stage/." "$dest:/tmp/wasi-python-host-deploy/"
# -t: sudo may ask for the password.
run ssh -t "$dest" sudo sh /tmp/wasi-python-host-deploy/install.sh
