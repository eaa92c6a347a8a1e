#!/bin/sh
# Runs on the Pi as root: `sudo sh install.sh` from the folder scripts/deploy.sh
# staged on the Pi's disk (/var/tmp/wasi-python-host-deploy.XXXXXX). POSIX sh
# plus what every Debian/Raspberry Pi OS has (coreutils, systemd, bash for
# its /dev/tcp), so it needs nothing installed.
#
# MODE=full (deploy.env): checks the machine, creates the service user,
# checks the new config with the new binary, then, with the service stopped,
# installs binary, artifacts, plugins, config and unit, starts it and waits
# until /healthz answers 200. When it does not come up, it prints the
# journal, puts the previous binary, config and plugins back and starts
# those, and exits 1.
#
# MODE=plugins: pushes plugins into the running host (hot reload, no
# restart): artifacts first, then each plugin's files by rename, and waits
# for the host's verdict on each new version in the journal.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC1091
. "$here/deploy.env"
trap 'cd / && rm -rf "$here"' EXIT

bin=/usr/local/bin/wasi-python-host
lib=/usr/local/lib/wasi-python-host
etc=/etc/wasi-python-host
state=/var/lib/wasi-python-host
cache=$state/cache
unit=/etc/systemd/system/wasi-python-host.service
user=wasi-python-host
token_cmd="sudo -u $user wasi-python-host token --config $etc/host.toml"

say() { echo "deploy: $*"; }
fail() {
    echo "deploy: FAILED: $*" >&2
    exit 1
}
loud() { # lines...
    echo "deploy: ************************************************************************"
    for line in "$@"; do echo "deploy: *** $line"; done
    echo "deploy: ************************************************************************"
}

# ---- 1. The machine --------------------------------------------------------
arch=$(dpkg --print-architecture)
[ "$arch" = "$MACHINE" ] ||
    fail "this system's userland is $arch, the build is for $MACHINE; deploy with --target aarch64 for arm64, --target armv7 for armhf"
cpu=$(uname -m)
case "$cpu" in
    armv6*) fail "this CPU is ARMv6 (uname -m: $cpu: a Raspberry Pi 1 or Pi Zero W v1). wasi-python-host needs ARMv7 or newer (Pi 2, 3, 4, 5, Zero 2 W); the armv7 build would stop with \"Illegal instruction\" here." ;;
esac
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | cut -d' ' -f2)
case "$glibc" in
    2.[0-9] | 2.[0-9].* | 2.[12][0-9] | 2.[12][0-9].* | 2.3[0-3] | 2.3[0-3].*)
        fail "glibc $glibc is too old: the binary needs 2.34 or newer (Raspberry Pi OS bookworm or newer; bullseye has 2.31)" ;;
esac
model=$(tr -d '\000' </proc/device-tree/model 2>/dev/null || echo "unknown machine")
case "$model" in *"Raspberry Pi"*) on_pi=1 ;; *) on_pi=0 ;; esac

# ---- 2. The service user and its device groups ------------------------------
if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir "$state" \
        --shell /usr/sbin/nologin "$user"
    say "created the system user $user"
fi
# Only groups that exist: Raspberry Pi OS has gpio, i2c and spi; minimal
# images have none (the unit names no groups, so it starts either way).
have= missing=
for g in gpio i2c spi; do
    if getent group "$g" >/dev/null; then
        usermod --append --groups "$g" "$user"
        have="$have $g"
    else
        missing="$missing $g"
    fi
done
[ -z "$have" ] || say "$user is in the groups:$have"
if [ -n "$missing" ]; then
    if [ "$on_pi" = 1 ]; then
        say "WARNING: no group$missing on this Pi: the host cannot open those devices unless it runs with access to them (Raspberry Pi OS creates gpio, i2c and spi; on another image add the groups and udev rules, then deploy again)"
    else
        say "no group$missing here (not needed: this is not a Raspberry Pi)"
    fi
fi
install -d -m 0700 -o "$user" -g "$user" "$state" "$cache"

# The host's answer on its own HTTP port: the status code of GET path.
listen_port() {
    sed -n 's/^listen *= *"\(.*\):\([0-9][0-9]*\)".*/\2/p' "$1" | head -n 1
}
listen_addr() {
    a=$(sed -n 's/^listen *= *"\(.*\):\([0-9][0-9]*\)".*/\1/p' "$1" | head -n 1)
    case "$a" in 0.0.0.0 | "" | "[::]") echo 127.0.0.1 ;; \[*\]) echo "$a" | tr -d '[]' ;; *) echo "$a" ;; esac
}
http_get() { # config path: the response, head and body
    timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$3" >&3 && head -c 1048576 <&3' \
        _ "$(listen_addr "$1")" "$(listen_port "$1")" "$2" 2>/dev/null
}
http_status() { # config path
    http_get "$1" "$2" | sed -n '1s/^HTTP\/[0-9.]* \([0-9][0-9]*\).*/\1/p'
}
# Every plugin in /api/plugins is running (or disabled): loaded from its
# artifact and past its first call.
plugins_running() { # config
    body=$(http_get "$1" /api/plugins) || return 1
    printf '%s' "$body" | grep -q '"status":"running"' || return 1
    ! printf '%s' "$body" | grep -o '"status":"[a-z_]*"' | grep -qv '"status":"\(running\|disabled\)"'
}

journal_tail() {
    echo "deploy: --- journalctl -u wasi-python-host (last 30 lines) ---" >&2
    journalctl -u wasi-python-host -n 30 --no-pager -o short-precise >&2 || true
    echo "deploy: ---" >&2
}

# Waits until the service answers /healthz with 200 and runs every plugin.
# Returns 1 when it failed or restarted, 2 on timeout.
wait_healthy() { # config timeout_s
    restarts0=$(systemctl show -p NRestarts --value wasi-python-host)
    deadline=$(($(date +%s) + $2))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        active=$(systemctl show -p ActiveState --value wasi-python-host)
        restarts=$(systemctl show -p NRestarts --value wasi-python-host)
        if [ "$active" = failed ] || [ "$restarts" != "$restarts0" ]; then
            return 1
        fi
        if [ "$active" = active ] && [ "$(http_status "$1" /healthz)" = 200 ] && plugins_running "$1"; then
            return 0
        fi
        sleep 2
    done
    return 2
}

# Each file of a staged plugin folder into the live one by rename, so the
# running host sees only whole files; the entry file (app.py, or a component
# plugin's .wasm) last, so it never sees a new entry with old helpers.
push_plugin() { # name [source folder, default: the staged one]
    src=${2:-$here/plugins/$1} dst="$lib/plugins/$1" entry=app.py
    [ -e "$src/$entry" ] || entry=$(cd "$src" && ls ./*.wasm 2>/dev/null | head -n 1 | cut -c3-)
    if [ ! -d "$dst" ]; then
        rm -rf "$lib/plugins/.$1.new"
        cp -R "$src" "$lib/plugins/.$1.new"
        chmod -R a+rX,go-w "$lib/plugins/.$1.new"
        mv "$lib/plugins/.$1.new" "$dst"
        return
    fi
    (cd "$src" && find . -type f ! -name "${entry:-.none}") | while read -r f; do
        install -D -m 0644 "$src/$f" "$dst/$(dirname "$f")/.$(basename "$f").new"
        mv "$dst/$(dirname "$f")/.$(basename "$f").new" "$dst/$f"
    done
    if [ -n "$entry" ] && [ -e "$src/$entry" ]; then
        install -m 0644 "$src/$entry" "$dst/.$entry.new"
        mv "$dst/.$entry.new" "$dst/$entry"
    fi
}

install_artifacts() {
    n=0
    for f in "$here"/cache/*; do
        [ -f "$f" ] || continue
        name=$(basename "$f")
        [ -f "$cache/$name" ] && cmp -s "$f" "$cache/$name" && continue
        install -m 0600 -o "$user" -g "$user" "$f" "$cache/.$name.new"
        mv "$cache/.$name.new" "$cache/$name"
        case "$name" in *.cwasm) n=$((n + 1)) ;; esac
    done
    say "artifacts: $n new in $cache ($(find "$here/cache" -type f -name '*.cwasm' | wc -l) shipped)"
}

# ---- Plugin push (hot reload) -----------------------------------------------
if [ "$MODE" = plugins ]; then
    [ -x "$bin" ] && [ -e "$unit" ] || fail "the host is not installed here yet; run a full deploy first (without --plugins-only)"
    systemctl is-active --quiet wasi-python-host ||
        fail "the service is not running, so nothing would hot-reload; start it (sudo systemctl start wasi-python-host) or run a full deploy"
    since=$(date '+%Y-%m-%d %H:%M:%S')
    # Artifacts first: the host looks an arriving plugin's artifact up at
    # once, and a miss would mean a compile on the device.
    install_artifacts
    install -d -m 0755 "$lib/plugins"
    changed=
    for p in $PLUGINS; do
        if [ -d "$lib/plugins/$p" ] && diff -r "$here/plugins/$p" "$lib/plugins/$p" >/dev/null 2>&1; then
            continue
        fi
        # The files being replaced, to put back if the host refuses the new
        # version: it rolls back in memory only, and a restart would load
        # whatever is on disk.
        rm -rf "$lib/plugins/.$p.previous"
        [ ! -d "$lib/plugins/$p" ] || cp -a "$lib/plugins/$p" "$lib/plugins/.$p.previous"
        push_plugin "$p"
        changed="$changed $p"
    done
    if [ -z "$changed" ]; then
        say "done: no plugin changed ($PLUGINS), nothing pushed"
        exit 0
    fi
    # A change of the shared modules reloads every plugin that runs here.
    pending=$changed
    case " $changed " in *" common "*)
        pending=$(cd "$lib/plugins" && for d in */; do d=${d%/}; [ "$d" = common ] || [ ! -e "$d/app.py" ] || printf '%s ' "$d"; done) ;;
    esac
    say "pushed:$changed; waiting for the host's verdict on$( [ "$pending" = "$changed" ] || printf ' every plugin using it:') $pending (up to ${WAIT_S} s)"
    deadline=$(($(date +%s) + WAIT_S))
    failed=0
    restore() { # name: the files that made its new version back on disk
        case " $changed " in *" $1 "*) restore_one "$1" ;; esac
        case " $changed " in *" common "*) [ "$1" = common ] || restore_one common ;; esac
    }
    restore_one() { # name: the replaced files back on disk (the host keeps running that version)
        [ -d "$lib/plugins/.$1.restored" ] && return
        if [ -d "$lib/plugins/.$1.previous" ]; then
            mkdir -p "$lib/plugins/.$1.restored"
            push_plugin "$1" "$lib/plugins/.$1.previous"
            say "plugin $1: its previous files are back in $lib/plugins/$1, so a restart runs the version that is serving now"
        else
            say "plugin $1: it is new here, so there is no previous version to fall back to; fix it and push again"
        fi
    }
    while [ -n "$pending" ] && [ "$(date +%s)" -lt "$deadline" ]; do
        sleep 2
        log=$(journalctl -u wasi-python-host --since "$since" --no-pager -o cat 2>/dev/null || true)
        still=
        for p in $pending; do
            # The version the host is loading: it names it when it sees the
            # new files ("changed, loading version V").
            v=$(printf '%s\n' "$log" | sed -n "s/.*plugin \`$p\`: changed, loading version \([0-9a-f]*\).*/\1/p" | tail -n 1)
            if printf '%s\n' "$log" | grep -q "plugin \`$p\`: reload failed, the running version stays"; then
                say "plugin $p: the host refused the new version; the running version stays:"
                printf '%s\n' "$log" | grep "plugin \`$p\`" | tail -n 5 | sed 's/^/deploy:     /'
                restore "$p"
                failed=1
            elif [ -z "$v" ]; then
                still="$still $p"
            elif printf '%s\n' "$log" | grep -q "plugin \`$p\`: version $v passed its trial"; then
                say "plugin $p: version $v is live"
            elif printf '%s\n' "$log" | grep -q "plugin \`$p\`: version $v failed on its first calls"; then
                say "plugin $p: version $v FAILED on its first calls; the host rolled back and the previous version keeps serving:"
                printf '%s\n' "$log" | grep "plugin \`$p\`" | tail -n 5 | sed 's/^/deploy:     /'
                restore "$p"
                failed=1
            else
                still="$still $p"
            fi
        done
        pending=$still
    done
    if [ -n "$pending" ]; then
        journal_tail
        for p in $pending; do restore "$p"; done
        fail "no verdict from the host within ${WAIT_S} s for:$pending (is it in [plugins.*] of $etc/host.toml and enabled?)"
    fi
    for p in $changed; do rm -rf "$lib/plugins/.$p.previous" "$lib/plugins/.$p.restored"; done
    [ "$failed" = 0 ] || fail "a pushed plugin did not go live (above); the running versions keep serving"
    say "done: every pushed plugin is live, without a restart"
    exit 0
fi

# Plugins the workstation found unchanged here come from the live folder.
KEEP_PLUGINS=${KEEP_PLUGINS:-}
for p in $KEEP_PLUGINS; do
    [ -d "$lib/plugins/$p" ] ||
        fail "plugin $p was not sent because it looked unchanged, but $lib/plugins/$p is gone; deploy again"
done

# ---- 3. Which config will run, checked with the new binary -------------------
new_cfg="$here/host.toml"
cur_cfg="$etc/host.toml"
deployed="$etc/.host.toml.deployed" # what the last deploy installed
if [ ! -e "$cur_cfg" ]; then
    config_action=install
elif cmp -s "$new_cfg" "$cur_cfg"; then
    config_action=same
elif [ "$REPLACE_CONFIG" = 1 ]; then
    config_action=replace
elif [ -e "$deployed" ] && cmp -s "$cur_cfg" "$deployed"; then
    config_action=update # nobody edited it since the last deploy
else
    config_action=keep # edited on the Pi: the user's wins
fi
check_cfg=$new_cfg
[ "$config_action" = keep ] && check_cfg=$cur_cfg
install -m 0755 "$here/wasi-python-host" "$bin.new"
if ! out=$("$bin.new" check --config "$check_cfg" 2>&1); then
    rm -f "$bin.new"
    echo "$out" | sed 's/^/deploy:     /' >&2
    [ "$config_action" = keep ] &&
        echo "deploy:     (that is YOUR edited $cur_cfg, kept by this deploy; compare it with the new default, or deploy with --replace-config)" >&2
    fail "the new binary refuses the config (above); nothing was changed, the running service is untouched"
fi
say "$(echo "$out" | tail -n 1)"

# ---- 4. Install, with the service stopped -----------------------------------
# Stopped, so the running host never sees a half-installed set (a plugin
# whose artifact is not there yet would be compiled: ~400 MiB, OOM-killed).
if systemctl is-active --quiet wasi-python-host; then
    systemctl stop wasi-python-host
    say "stopped the running service"
fi
rollback_bin=0
if [ -e "$bin" ] && cmp -s "$bin" "$bin.new"; then
    rm -f "$bin.new"
    say "binary unchanged"
else
    if [ -e "$bin" ]; then
        cp -p "$bin" "$bin.previous"
        rollback_bin=1
    fi
    mv "$bin.new" "$bin"
    say "installed $bin ($(stat -c %s "$bin") bytes)"
fi
install_artifacts
# Plugins: a complete new folder, swapped in by rename.
install -d -m 0755 "$lib"
rm -rf "$lib/plugins.new"
cp -R "$here/plugins" "$lib/plugins.new"
for p in $KEEP_PLUGINS; do cp -a "$lib/plugins/$p" "$lib/plugins.new/$p"; done
chmod -R a+rX,go-w "$lib/plugins.new"
rollback_plugins=0
if [ -d "$lib/plugins" ]; then
    rm -rf "$lib/plugins.previous"
    mv "$lib/plugins" "$lib/plugins.previous"
    rollback_plugins=1
fi
mv "$lib/plugins.new" "$lib/plugins"
say "plugins: $PLUGINS${KEEP_PLUGINS:+ (unchanged, taken from the live folder:$(printf ' %s' $KEEP_PLUGINS))}"
# Config.
install -d -m 0755 "$etc"
install_config() {
    install -m 0640 -o root -g "$user" "$new_cfg" "$cur_cfg"
    install -m 0640 -o root -g "$user" "$new_cfg" "$deployed"
}
rollback_config=0
case "$config_action" in
    install) install_config; say "config: installed $cur_cfg" ;;
    same) install -m 0640 -o root -g "$user" "$new_cfg" "$deployed"; say "config: $cur_cfg unchanged" ;;
    update | replace)
        cp -p "$cur_cfg" "$cur_cfg.previous"
        rollback_config=1
        install_config
        if [ "$config_action" = update ]; then
            say "config: $cur_cfg updated to the new version (it had not been edited since the last deploy; the old one is $cur_cfg.previous)"
        else
            loud "CONFIG REPLACED (--replace-config): $cur_cfg is the new version;" \
                "your previous one is $cur_cfg.previous"
        fi
        ;;
    keep)
        install -m 0640 -o root -g "$user" "$new_cfg" "$cur_cfg.new"
        loud "CONFIG KEPT: $cur_cfg was edited on this device, so this deploy did NOT replace it." \
            "The new version is $cur_cfg.new. Compare:  diff $cur_cfg $cur_cfg.new" \
            "Take it:  deploy again with --replace-config  (your file is kept as host.toml.previous)"
        for p in $PLUGINS; do
            grep -q "^\[plugins\.$p\]" "$cur_cfg" ||
                say "WARNING: plugin $p was installed but your kept $cur_cfg has no [plugins.$p], so it will not run; its entry is in $cur_cfg.new"
        done
        ;;
esac
install -m 0644 "$here/wasi-python-host.service" "$unit"
systemctl daemon-reload
systemctl enable --quiet wasi-python-host.service

# ---- 5. What the hardware needs ---------------------------------------------
active_cfg=$cur_cfg
if [ "$on_pi" = 1 ]; then
    say "machine: $model"
    if grep -q '^i2c_addresses *= *\[ *[0-9]' "$active_cfg" && [ ! -e /dev/i2c-1 ]; then
        loud "I2C is off, so the BME680 cannot be read. Turn it on, then reboot:" \
            "  sudo raspi-config nonint do_i2c 0 && sudo reboot"
    fi
    if grep -q '^driver *= *"spi"' "$active_cfg" && [ ! -e /dev/spidev0.0 ]; then
        loud "SPI is off, so the LED strip (driver = \"spi\") cannot be driven. Turn it on, then reboot:" \
            "  sudo raspi-config nonint do_spi 0 && sudo reboot"
    fi
    case "$model" in *"Pi 4"* | *"Pi 400"*)
        if grep -q '^driver *= *"spi"' "$active_cfg" &&
            ! grep -qs '^core_freq_min=500' /boot/firmware/config.txt /boot/config.txt; then
            say "Pi 4: the SPI LED driver needs a fixed core clock; add to /boot/firmware/config.txt: core_freq=500 and core_freq_min=500 (then reboot)"
        fi ;;
    esac
else
    say "machine: $model, not a Raspberry Pi: with hardware = \"auto\" the host runs on simulated hardware (its log says so)"
fi

# ---- 6. Start, and roll back when it does not come up -----------------------
say "starting the service (waiting up to ${WAIT_S} s for /healthz and every plugin running)"
started=$(date +%s)
systemctl restart wasi-python-host
rc=0
wait_healthy "$active_cfg" "$WAIT_S" || rc=$?
if [ "$rc" -ne 0 ]; then
    if [ "$rc" -eq 1 ]; then
        why="the service failed or restarted"
    else
        why="not every plugin running, or no 200 from /healthz, within ${WAIT_S} s"
        echo "deploy: /healthz: $(http_get "$active_cfg" /healthz | tail -n 1 | cut -c1-300)" >&2
    fi
    journal_tail
    if [ "$rollback_bin" = 1 ] || [ "$rollback_plugins" = 1 ] || [ "$rollback_config" = 1 ]; then
        say "rolling back to the previous binary, plugins and config"
        systemctl stop wasi-python-host || true
        [ "$rollback_bin" = 0 ] || mv "$bin.previous" "$bin"
        if [ "$rollback_plugins" = 1 ]; then
            rm -rf "$lib/plugins.failed"
            mv "$lib/plugins" "$lib/plugins.failed"
            mv "$lib/plugins.previous" "$lib/plugins"
        fi
        if [ "$rollback_config" = 1 ]; then
            mv "$cur_cfg.previous" "$cur_cfg"
            cp -p "$cur_cfg" "$deployed"
        fi
        systemctl restart wasi-python-host
        if wait_healthy "$cur_cfg" "$WAIT_S"; then
            fail "$why; rolled back: the previous version is serving again (the new plugins are kept in $lib/plugins.failed for a look)"
        fi
        journal_tail
        fail "$why; rolled back, but the previous version does not come up either (journal above)"
    fi
    systemctl stop wasi-python-host || true
    fail "$why (journal above); nothing to roll back to, the service is stopped"
fi
say "the service is up: /healthz 200 and every plugin running after $(($(date +%s) - started)) s"
say "done. Dashboard: http://$(hostname -I 2>/dev/null | cut -d' ' -f1):$(listen_port "$active_cfg")/"
say "control token (the dashboard's Beep buttons, /login): $token_cmd"
say "logs: journalctl -u wasi-python-host -f"
