#!/usr/bin/env bash
# An emulated Raspberry Pi Zero 2 W for the device tests: Debian bookworm
# arm64 (the base of Raspberry Pi OS) with systemd and ssh, on
# qemu-system-aarch64 with the Zero 2 W's core and memory (-M virt -cpu
# cortex-a53 -smp 4 -m 512). No GPIO, I2C or SPI: the host runs on its
# simulated hardware there.
#
#   scripts/device-vm.sh build      build the disk image unless it is cached
#   scripts/device-vm.sh start      boot a throwaway copy, wait for ssh, print the ports
#   scripts/device-vm.sh ssh [CMD]  ssh into it as `pi` (passwordless sudo)
#   scripts/device-vm.sh wait-ssh   wait until ssh answers again (after a reboot)
#   scripts/device-vm.sh env        the ports and files of the running VM, as shell variables
#   scripts/device-vm.sh stop       power it off (and throw its disk away)
#
# The image is built once from Debian packages (scripts/device-vm/build-image.sh,
# ~5-7 minutes) and cached in ${XDG_CACHE_HOME:-~/.cache}/wasi-python-host/device-vm/<hash>/,
# keyed by a hash of the build recipe, so a changed recipe rebuilds. Each
# start boots a fresh qcow2 overlay over it: nothing a test does survives a
# stop. The ssh key is generated with the image and lives only in the
# cache. Networking is QEMU's user mode, restricted (the VM reaches nothing
# outside), with ssh and the host's HTTP port forwarded to 127.0.0.1 on
# free ports.
#
# Environment: DEVICE_VM_CACHE (the cache folder), DEVICE_VM_RUN (the
# running VM's folder, default $DEVICE_VM_CACHE/run), DEVICE_VM_BOOT_TIMEOUT_S
# (default 600), DEVICE_VM_MIRROR (Debian mirror for the build).
# Needs root for the build (debootstrap); installs its tools with apt-get.
# One block, read whole before it runs (a long `start` survives an edit).
{
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
recipe_dir="$root/scripts/device-vm"
cache=${DEVICE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasi-python-host/device-vm}
run=${DEVICE_VM_RUN:-$cache/run}
boot_timeout_s=${DEVICE_VM_BOOT_TIMEOUT_S:-600}
guest_http_port=3000

say() { echo "device-vm: $*"; }
die() { echo "device-vm: $*" >&2; exit 1; }

# Tools, installed only when missing. qemu-user-static (not qemu-user's
# binfmt registration) runs the image's arm64 programs during the build.
ensure_tools() {
    local -A need=(
        [qemu-system-aarch64]=qemu-system-arm [qemu-aarch64-static]=qemu-user-static
        [debootstrap]=debootstrap [mkfs.ext4]=e2fsprogs [ssh]=openssh-client
        [ssh-keygen]=openssh-client [aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu
        [cpio]=cpio [depmod]=kmod [curl]=curl [xz]=xz-utils [python3]=python3
    )
    local missing=() tool
    for tool in "${!need[@]}"; do
        command -v "$tool" >/dev/null || missing+=("${need[$tool]}")
    done
    # The static libc for /init.
    [ -e /usr/aarch64-linux-gnu/lib/libc.a ] || missing+=(libc6-dev-arm64-cross)
    if [ "${#missing[@]}" -gt 0 ]; then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        say "installing ${missing[*]} (apt-get)"
        apt_get update -qq
        apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # Separately: on a machine with a newer qemu-utils from backports,
    # installing it together with qemu-system-arm can be refused.
    if ! command -v qemu-img >/dev/null; then
        say "installing qemu-utils (apt-get)"
        apt_get install -y -qq --no-install-recommends qemu-utils >/dev/null
    fi
}
apt_get() {
    if [ "$(id -u)" -ne 0 ]; then sudo apt-get "$@"; else apt-get "$@"; fi
}

image_key() {
    cat "$recipe_dir/build-image.sh" "$recipe_dir/init.c" | sha256sum | cut -c1-16
}

# The cached image folder for the current recipe, built when missing.
ensure_image() {
    local key dir
    key=$(image_key)
    dir="$cache/$key"
    if [ -f "$dir/base.qcow2" ]; then
        echo "$dir"
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "building the image needs root (debootstrap creates device nodes); run as root or with sudo"
    ensure_tools
    mkdir -p "$cache"
    exec 9>"$cache/build.lock"
    flock 9
    if [ ! -f "$dir/base.qcow2" ]; then
        local started=$SECONDS
        say "building the image $key (cold: ~5-7 minutes; cached afterwards in $cache)" >&2
        rm -rf "$dir.tmp"
        if ! "$recipe_dir/build-image.sh" "$dir.tmp" >&2; then
            die "the image build failed (output above)"
        fi
        mv "$dir.tmp" "$dir"
        say "image $key built in $(( SECONDS - started )) s" >&2
        # Images of older recipes: ~600 MiB each, never used again.
        find "$cache" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{16}(\.tmp)?' \
            ! -name "$key" -exec rm -rf {} +
    fi
    exec 9>&-
    echo "$dir"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running_pid() {
    local pid
    pid=$(cat "$run/qemu.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

load_env() {
    [ -f "$run/env" ] && running_pid >/dev/null || die "no VM is running (scripts/device-vm.sh start)"
    # shellcheck disable=SC1091
    . "$run/env"
}

vm_ssh() {
    ssh -F "$run/ssh_config" pizero2w "$@"
}

wait_ssh() { # timeout_s
    local deadline=$(( SECONDS + $1 )) pid
    pid=$(running_pid) || die "qemu is not running; console: $run/console.log"
    while [ "$SECONDS" -lt "$deadline" ]; do
        if vm_ssh -o ConnectTimeout=5 true 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || {
            tail -n 30 "$run/console.log" >&2
            die "qemu exited while booting (console above, all of it in $run/console.log)"
        }
        sleep 2
    done
    tail -n 30 "$run/console.log" >&2
    die "no ssh within $1 s (console above, all of it in $run/console.log)"
}

cmd_start() {
    local image pid ssh_port http_port started=$SECONDS
    if pid=$(running_pid); then
        die "a VM is already running (pid $pid); scripts/device-vm.sh stop first"
    fi
    image=$(ensure_image)
    ensure_tools
    rm -rf "$run"
    mkdir -p "$run"
    qemu-img create -q -f qcow2 -F qcow2 -b "$image/base.qcow2" "$run/overlay.qcow2"
    ssh_port=$(free_port)
    http_port=$(free_port)
    while [ "$http_port" = "$ssh_port" ]; do http_port=$(free_port); done
    cat >"$run/ssh_config" <<EOF
Host pizero2w
  HostName 127.0.0.1
  Port $ssh_port
  User pi
Host *
  IdentityFile $image/id_ed25519
  IdentitiesOnly yes
  HostKeyAlias wasi-python-host-device-vm
  UserKnownHostsFile $run/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 30
  ServerAliveInterval 15
  LogLevel ERROR
EOF
    echo "wasi-python-host-device-vm $(cut -d' ' -f1-2 "$image/known_host.pub")" >"$run/known_hosts"
    cat >"$run/env" <<EOF
DEVICE_VM_SSH_PORT=$ssh_port
DEVICE_VM_HTTP_PORT=$http_port
DEVICE_VM_SSH_CONFIG=$run/ssh_config
DEVICE_VM_KEY=$image/id_ed25519
DEVICE_VM_CONSOLE=$run/console.log
DEVICE_VM_IMAGE=$image
EOF
    # restrict=on: the guest reaches nothing beyond the forwarded ports.
    # cache=unsafe: the overlay is thrown away anyway; a guest reboot keeps it.
    qemu-system-aarch64 -M virt -cpu cortex-a53 -smp 4 -m 512 -accel tcg,thread=multi \
        -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
        -append "console=ttyAMA0 root=/dev/vda rw quiet" \
        -drive "file=$run/overlay.qcow2,if=none,id=hd,format=qcow2,cache=unsafe" \
        -device virtio-blk-pci,drive=hd \
        -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$ssh_port-:22,hostfwd=tcp:127.0.0.1:$http_port-:$guest_http_port" \
        -device virtio-net-pci,netdev=net0,romfile= -device virtio-rng-pci \
        -display none -monitor none -serial "file:$run/console.log" \
        -daemonize -pidfile "$run/qemu.pid"
    say "booting (qemu pid $(cat "$run/qemu.pid")), waiting for ssh on 127.0.0.1:$ssh_port"
    wait_ssh "$boot_timeout_s"
    say "up in $(( SECONDS - started )) s: ssh port $ssh_port, http port $http_port (guest $guest_http_port)"
    say "ssh: scripts/device-vm.sh ssh, or ssh -F $run/ssh_config pizero2w"
    cat "$run/env"
}

cmd_stop() {
    local pid deadline
    pid=$(running_pid) || { say "not running"; return 0; }
    vm_ssh -o ConnectTimeout=5 sudo systemctl poweroff >/dev/null 2>&1 || true
    deadline=$(( SECONDS + 120 ))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
        say "no power-off within 120 s; stopping qemu"
        kill "$pid"
    fi
    rm -f "$run/overlay.qcow2" "$run/qemu.pid"
    say "stopped"
}

case "${1:-}" in
    build) shift; ensure_tools; dir=$(ensure_image); say "image: $dir"; cat "$dir/image.txt" ;;
    start) shift; cmd_start ;;
    ssh) shift; load_env; vm_ssh "$@" ;;
    wait-ssh) shift; load_env; wait_ssh "${1:-$boot_timeout_s}" ;;
    env) shift; load_env; cat "$run/env" ;;
    stop) shift; cmd_stop ;;
    -h|--help|help) sed -n '2,27p' "$0" ;;
    *) echo "usage: scripts/device-vm.sh build|start|ssh [CMD...]|wait-ssh [TIMEOUT_S]|env|stop" >&2; exit 2 ;;
esac
exit
}
