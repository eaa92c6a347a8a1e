#!/usr/bin/env bash
# Builds the emulated Pi Zero 2 W's disk image: Debian bookworm arm64 with
# systemd and openssh-server, from Debian packages only. Called by
# scripts/device-vm.sh build (which caches the result, keyed by a hash of
# this file and init.c: change the recipe and the next run rebuilds).
#
#   scripts/device-vm/build-image.sh OUT_DIR
#
# Writes OUT_DIR/{base.qcow2,vmlinuz,initrd.img,id_ed25519,id_ed25519.pub,
# known_host.pub,image.txt}. Needs root (debootstrap's first stage creates
# device nodes) and Linux >= 6.7 (see the second stage below).
#
# Shape, and why:
# 1. `debootstrap --foreign` on the host: downloads and unpacks, runs nothing
#    of arm64.
# 2. The second stage (the maintainer scripts, arm64 programs) runs in a
#    chroot under qemu-aarch64-static, inside a user namespace of its own
#    with a private binfmt_misc instance (Linux >= 6.7 gives each user
#    namespace one): the host's binfmt_misc table is never touched, and
#    there is no ptrace layer (proot) slowing every system call of dpkg.
#    Every uid is mapped to itself, so file owners come out as on a Pi.
# 3. No kernel package is installed: its postinst would run mkinitramfs
#    under emulation (minutes). The kernel .deb is unpacked instead, and a
#    tiny static /init (init.c) plus the nine modules it needs make the
#    initramfs.
# 4. `mkfs.ext4 -d` writes the file system from the folder (no loop mount),
#    `qemu-img convert` makes the qcow2 base that each run overlays.
# No gpio/i2c/spi groups: minimal Debian has none, and the deploy must
# cope with that, as on a minimal Pi image.
set -euo pipefail
out=${1:?usage: build-image.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
suite=bookworm
mirror=${DEVICE_VM_MIRROR:-http://deb.debian.org/debian}
# What a Pi OS Lite user has that the test needs: systemd, udev, ssh, sudo.
packages=systemd-sysv,udev,dbus,kmod,openssh-server,sudo,iproute2,procps
started=$(date +%s)
step() { echo "==> device-vm image [$(( $(date +%s) - started ))s] $*"; }

[ "$(id -u)" -eq 0 ] || { echo "build-image: needs root (debootstrap creates device nodes)" >&2; exit 1; }
mkdir -p "$out"
work="$out/work"
rm -rf "$work"
mkdir -p "$work"
rootfs="$work/rootfs"
# Kept on failure for a look (DEVICE_VM_KEEP_WORK=1 keeps it always).
trap 'rc=$?; if [ "$rc" -eq 0 ] && [ -z "${DEVICE_VM_KEEP_WORK:-}" ]; then rm -rf "$work"; elif [ "$rc" -ne 0 ]; then echo "build-image: work folder kept: $work" >&2; fi' EXIT

step "debootstrap --foreign $suite arm64 ($packages) from $mirror"
debootstrap --foreign --arch=arm64 --variant=minbase --components=main \
    --include="$packages" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log" >&2
    echo "build-image: debootstrap's first stage failed (log above); is $mirror reachable?" >&2
    exit 1
}

# The kernel: the .deb that linux-image-arm64 points at, from the same
# Packages index debootstrap verified.
index=$(ls "$rootfs"/var/lib/apt/lists/*_Packages | head -n 1)
pkg_field() { # package field
    awk -v p="$1" -v f="$2:" '$1 == "Package:" { cur = $2 } cur == p && $1 == f { print $2; exit }' "$index"
}
kpkg=$(pkg_field linux-image-arm64 Depends | cut -d' ' -f1 | tr -d ',')
kfile=$(pkg_field "$kpkg" Filename)
ksha=$(pkg_field "$kpkg" SHA256)
[ -n "$kfile" ] && [ -n "$ksha" ] || { echo "build-image: no $kpkg (linux-image-arm64) in $index" >&2; exit 1; }
step "kernel $kpkg"
curl -fsS --retry 3 -o "$work/kernel.deb" "$mirror/$kfile"
echo "$ksha  $work/kernel.deb" | sha256sum -c --quiet
# Unpacked beside the root, not into it: the package's ./lib would replace
# the merged-/usr symlink lib -> usr/lib.
dpkg-deb -x "$work/kernel.deb" "$work/kernel"
kver=${kpkg#linux-image-}
mkdir -p "$rootfs/usr/lib/modules"
mv "$work/kernel/lib/modules/$kver" "$rootfs/usr/lib/modules/"
# Drivers a virt machine never has: a smaller image, a faster mkfs.
rm -rf "$rootfs/lib/modules/$kver/kernel/drivers/"{gpu,media,infiniband,net/wireless,staging,scsi,md,iio} \
    "$rootfs/lib/modules/$kver/kernel/sound"
depmod -b "$rootfs" "$kver"

step "ssh keys for this image"
rm -f "$out/id_ed25519" "$out/id_ed25519.pub"
ssh-keygen -q -t ed25519 -N '' -C "wasi-python-host device-vm" -f "$out/id_ed25519"
mkdir -p "$rootfs/etc/ssh"
ssh-keygen -q -t ed25519 -N '' -C "" -f "$rootfs/etc/ssh/ssh_host_ed25519_key"
cp "$rootfs/etc/ssh/ssh_host_ed25519_key.pub" "$out/known_host.pub"

# Everything below runs arm64 programs: in a user namespace (every uid
# mapped to itself) with its own mount, pid and network namespaces (so
# proc and sysfs can be mounted for the chroot; the second stage needs no
# network, the packages are all downloaded) and its own binfmt_misc.
cat >"$work/stage2.sh" <<'STAGE2'
set -eu
rootfs=$1 work=$2
mkdir -p "$work/binfmt"
mount -t binfmt_misc binfmt_misc "$work/binfmt" || {
    echo "build-image: cannot mount a binfmt_misc of this user namespace: Linux >= 6.7 is needed ($(uname -r))" >&2
    exit 1
}
# Debian's qemu-user-static magic for aarch64 ELF; F: the interpreter is
# opened now, so it works inside the chroot.
printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
    >"$work/binfmt/register"
mount -t tmpfs tmpfs "$rootfs/tmp"
# Fewer fsyncs: this is an image being built, not a system being updated.
mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
echo force-unsafe-io >"$rootfs/etc/dpkg/dpkg.cfg.d/device-vm-unsafe-io"
# container=lxc: debootstrap then skips its mknod probe of the target, which
# a user namespace may not do (the first stage made the device nodes).
container=lxc chroot "$rootfs" /debootstrap/debootstrap --second-stage >"$work/second-stage.log" 2>&1 || {
    tail -n 30 "$work/second-stage.log" >&2
    tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2 || true
    echo "build-image: debootstrap's second stage failed (log above)" >&2
    exit 1
}
rm "$rootfs/etc/dpkg/dpkg.cfg.d/device-vm-unsafe-io"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" /bin/sh -eu <<'CHROOT'
# The Pi OS Lite shape: a sudo user `pi`, ssh with keys only.
useradd --create-home --shell /bin/bash --groups sudo pi
echo 'pi ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/010_pi-nopasswd
chmod 0440 /etc/sudoers.d/010_pi-nopasswd
install -d -m 0700 -o pi -g pi /home/pi/.ssh
printf 'PasswordAuthentication no\nUseDNS no\n' >/etc/ssh/sshd_config.d/device-vm.conf
echo pizero2w >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpizero2w\n' >/etc/hosts
echo '/dev/vda / ext4 defaults,noatime 0 1' >/etc/fstab
mkdir -p /etc/systemd/network
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' >/etc/systemd/network/10-wired.network
systemctl enable systemd-networkd.service >/dev/null 2>&1
# Timers that would start package or file-system jobs during a test.
for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    systemctl disable "$t" >/dev/null 2>&1 || true
done
# A fixed machine id: every run boots a fresh overlay, and an empty id
# would make each boot a "first boot".
systemd-machine-id-setup >/dev/null 2>&1
apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/*.log /var/cache/debconf/*-old
CHROOT
umount "$rootfs/proc" "$rootfs/tmp"
STAGE2

# A user namespace whose maps the parent writes (as real root it may map
# every uid; util-linux's --map-users would need newuidmap and /etc/subuid).
userns_run() { # command...
    local fifo="$work/userns.fifo" pid i
    mkfifo "$fifo"
    unshare --user --mount --pid --net --fork --kill-child -- \
        sh -c 'read -r _ <"$0"; exec "$@"' "$fifo" "$@" &
    pid=$!
    for i in $(seq 1 200); do
        [ "$(readlink "/proc/$pid/ns/user")" != "$(readlink /proc/self/ns/user)" ] && break
        sleep 0.05
    done
    echo '0 0 4294967295' >"/proc/$pid/uid_map"
    echo '0 0 4294967295' >"/proc/$pid/gid_map"
    echo go >"$fifo"
    wait "$pid"
}

step "second stage under qemu-aarch64-static (the slow part)"
userns_run sh "$work/stage2.sh" "$rootfs" "$work"
install -m 0600 -o 1000 -g 1000 "$out/id_ed25519.pub" "$rootfs/home/pi/.ssh/authorized_keys"
[ "$(stat -c %u "$rootfs/home/pi")" = 1000 ] || { echo "build-image: user pi is not uid 1000" >&2; exit 1; }

step "initramfs: /init and the modules for virtio disks and ext4"
aarch64-linux-gnu-gcc -static -Os -s -o "$work/init" "$here/init.c"
initrd="$work/initrd"
mkdir -p "$initrd/dev" "$initrd/proc" "$initrd/root" "$initrd/modules.d"
install -m 0755 "$work/init" "$initrd/init"
: >"$initrd/modules"
modprobe -a -d "$rootfs" -S "$kver" --show-depends virtio_pci virtio_blk crc32c_generic ext4 |
    awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++' | while read -r ko; do
        name=$(basename "$ko")
        case "$name" in
            *.ko.xz) xz -dc "$ko" >"$initrd/modules.d/${name%.xz}"; name=${name%.xz} ;;
            *) cp "$ko" "$initrd/modules.d/$name" ;;
        esac
        echo "/modules.d/$name" >>"$initrd/modules"
    done
(cd "$initrd" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/initrd.img"
cp "$work/kernel/boot/vmlinuz-$kver" "$out/vmlinuz"

step "ext4 file system and qcow2 base"
rm -rf "$rootfs/boot"/* "$rootfs/debootstrap"
# 4 GiB, sparse: room for deploys; the qcow2 holds only what is used.
mkfs.ext4 -q -F -L pizero2w -d "$rootfs" "$work/root.img" 4G
qemu-img convert -O qcow2 "$work/root.img" "$out/base.qcow2.tmp"
mv "$out/base.qcow2.tmp" "$out/base.qcow2"
{
    echo "debian $suite arm64, kernel $kver, packages $packages"
    echo "modules in the initramfs: $(tr '\n' ' ' <"$initrd/modules")"
    echo "built in $(( $(date +%s) - started )) s on $(date -u +%FT%TZ)"
} >"$out/image.txt"
step "done: $(du -h "$out/base.qcow2" | cut -f1) qcow2"
