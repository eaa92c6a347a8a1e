/*
 * /init of the emulated Pi's initramfs: loads the kernel modules listed in
 * /modules (one path a line, dependencies first; Debian's arm64 kernel has
 * virtio and ext4 as modules), mounts /dev/vda and hands over to systemd.
 * A program of its own instead of initramfs-tools, because running
 * mkinitramfs under qemu-user costs minutes and needs a shell, busybox and
 * kmod inside the initramfs; this is ~60 lines and statically linked.
 * Built by scripts/device-vm/build-image.sh with aarch64-linux-gnu-gcc.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void say(const char *what, const char *arg) {
    fprintf(stderr, "init: %s %s: %s\n", what, arg, strerror(errno));
}

int main(void) {
    char line[512];
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    mount("proc", "/proc", "proc", 0, NULL);
    FILE *list = fopen("/modules", "r");
    while (list && fgets(line, sizeof line, list)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0])
            continue;
        int fd = open(line, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            say("cannot open", line);
            continue;
        }
        if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
            say("cannot load", line);
        close(fd);
        unlink(line);
    }
    if (list)
        fclose(list);
    /* The disk appears asynchronously once virtio_blk has probed it. */
    for (int i = 0; i < 600 && access("/dev/vda", F_OK) != 0; i++)
        usleep(50000);
    if (mount("/dev/vda", "/root", "ext4", 0, NULL) != 0) {
        say("cannot mount", "/dev/vda on /root");
        return 1;
    }
    umount("/proc");
    mount("/dev", "/root/dev", NULL, MS_MOVE, NULL);
    if (chdir("/root") != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 ||
        chdir("/") != 0) {
        say("cannot switch to", "/dev/vda");
        return 1;
    }
    execl("/sbin/init", "/sbin/init", (char *)NULL);
    say("cannot run", "/sbin/init");
    return 1;
}
