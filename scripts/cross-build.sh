#!/usr/bin/env bash
# Docker-free cross build for the Raspberry Pi with Debian/Ubuntu's cross
# toolchains. Installs what it needs (idempotent: only what is missing), then
# builds the release binary and prints its size.
#
#   scripts/cross-build.sh [aarch64|armv7|all] [--runtime-only]
#
#   aarch64        64-bit Pi OS (Pi 3, 4, 5, Zero 2 W): Cranelift native code
#   armv7          32-bit Pi OS (Pi 2, 3, 4, Zero 2 W): Pulley interpreter
#   --runtime-only build without the compiler: a much smaller binary that only
#                  loads artifacts precompiled for it (`precompile --target`)
#
# Linker, qemu runner and bindgen sysroot come from .cargo/config.toml, so a
# plain `cargo build --release --target <triple>` works too once the packages
# are installed. The binary is copied to dist/<triple>[-runtime-only]/.
# Respects CARGO_TARGET_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

which_targets=all
features=()
suffix=
for arg in "$@"; do
    case "$arg" in
        aarch64|armv7|all) which_targets=$arg ;;
        --runtime-only) features=(--no-default-features); suffix=-runtime-only ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "cross-build: unknown argument \`$arg\` (aarch64|armv7|all [--runtime-only])" >&2; exit 2 ;;
    esac
done
case "$which_targets" in
    aarch64) targets=(aarch64-unknown-linux-gnu) ;;
    armv7) targets=(armv7-unknown-linux-gnueabihf) ;;
    all) targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf) ;;
esac

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "$@"
}

# Cross gcc (linker and rs_ws281x's C code), the target's libc headers and
# libraries, qemu-user (tests), clang/libclang (bindgen), git (rs_ws281x's
# build script calls it).
packages=(gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross
          libc6-dev-armhf-cross qemu-user libclang-dev clang git)
missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "cross-build: installing ${missing[*]} (apt-get)"
    apt_install "${missing[@]}"
fi
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

target_dir=${CARGO_TARGET_DIR:-$root/target}
for t in "${targets[@]}"; do
    echo "cross-build: $t${suffix} (release)"
    started=$(date +%s)
    cargo build --locked --release --target "$t" --bin wasi-python-host "${features[@]}"
    out="$root/dist/$t$suffix"
    mkdir -p "$out"
    cp "$target_dir/$t/release/wasi-python-host" "$out/wasi-python-host"
    bytes=$(stat -c %s "$out/wasi-python-host")
    echo "cross-build: $t$suffix: dist/$t$suffix/wasi-python-host, stripped," \
         "$bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB)," \
         "built in $(( $(date +%s) - started )) s"
done
