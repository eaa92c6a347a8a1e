"""What the benchmark scripts share: the binaries, a config derived from the
shipped one, starting the real host, reading /api, extra plugins made by
copying the shipped ones, and reading memory the way the kernel counts it
(PSS from /proc, a memory cgroup's charge)."""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Measure what is deployed: the release build (scripts/run.sh and the Pi
# build both use it). CARGO_TARGET_DIR is honoured like cargo does.
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
PROFILE = os.environ.get("WHP_BENCH_PROFILE", "release")
BINARY = os.path.join(TARGET_DIR, PROFILE, "wasi-python-host")
EXAMPLES = os.path.join(TARGET_DIR, PROFILE, "examples")
PY = os.path.join(ROOT, ".venv", "bin", "python")
# The plain python3 the memory baseline runs: the system's, as on a Pi.
SYSTEM_PYTHON = "/usr/bin/python3"
SHIPPED = ["dht22", "bme680", "pi_monitor", "dashboard"]


def cargo_build_args():
    """`cargo build` arguments for the profile the benchmarks measure."""
    return ["--release"] if PROFILE == "release" else ([] if PROFILE == "debug" else ["--profile", PROFILE])


def write_config(path, state_dir, cache_dir, extra="", plugins_dir=None, runtime=None, sim=None, **replace):
    """config/host.toml pointed at this run's folders, on a free port, with
    simulated hardware; `replace` sets other top-level keys of a table
    (e.g. recycle="true"), `extra` is appended. `runtime` replaces the
    runtime component's path (a path that does not exist makes the host
    load the precompiled runtime the cache's pointer names, as a device
    does)."""
    text = open(os.path.join(ROOT, "config", "host.toml")).read()
    text = re.sub(r'(?m)^plugins_dir = .*$', f'plugins_dir = "{plugins_dir or ROOT + "/plugins"}"', text)
    text = re.sub(r'(?m)^runtime = .*$', f'runtime = "{runtime or ROOT + "/runtime/python-runtime.wasm"}"', text)
    text = re.sub(r'(?m)^state_dir = .*$', f'state_dir = "{state_dir}"\ncache_dir = "{cache_dir}"', text)
    text = re.sub(r'(?m)^listen = .*$', 'listen = "127.0.0.1:0"', text)
    text = re.sub(r'(?m)^hardware = .*$', 'hardware = "sim"', text)
    if sim:
        # More simulated sensors: (DHT22 pins, BME680 addresses) for the
        # `[hardware.sim]` table, e.g. for `copies_of_shipped`'s copies.
        pins, addresses = sim
        text, n = re.subn(r'(?m)^(\[hardware\.sim\]\n(?:.*\n)*?)dht22_pins = .*\nbme680_addresses = .*$',
                          lambda m: m.group(1) + f"dht22_pins = [{', '.join(map(str, pins))}]\n"
                          f"bme680_addresses = [{', '.join(hex(a) for a in addresses)}]", text)
        assert n == 1, "config/host.toml's [hardware.sim] lists dht22_pins then bme680_addresses"
    for key, value in replace.items():
        text, n = re.subn(rf'(?m)^{key} = .*$', f'{key} = {value}', text)
        assert n == 1, f"config/host.toml has one `{key}`"
    with open(path, "w") as f:
        f.write(text + extra)
    return path


def plugin_section(name):
    """The shipped config's `[plugins.NAME]` tables (with their sub-tables)."""
    lines = open(os.path.join(ROOT, "config", "host.toml")).read().splitlines()
    out, inside = [], False
    for line in lines:
        if line.startswith("["):
            inside = line.startswith(f"[plugins.{name}]") or line.startswith(f"[plugins.{name}.")
        if inside:
            out.append(line)
    return "\n".join(out).strip()


def copies_of_shipped(work, extra_count):
    """A plugins folder with the shipped plugins plus `extra_count` copies of
    the sensor plugins under other names (`dht22_2`, `bme680_2`, ...), and
    the config tables for the copies. Each copy of a sensor reads a
    simulated device of its own (sensor ids are owned: two plugins cannot
    report one device's id), so the config needs the devices it returns.
    Returns (plugins_dir, extra_toml, names of all plugins, sim), `sim`
    being write_config's `sim=`. Only sensor plugins are copied: the host
    serves one dashboard."""
    plugins_dir = os.path.join(work, "plugins")
    os.makedirs(plugins_dir, exist_ok=True)
    for name in SHIPPED + ["common"]:
        dst = os.path.join(plugins_dir, name)
        if not os.path.exists(dst):
            shutil.copytree(os.path.join(ROOT, "plugins", name), dst,
                            ignore=shutil.ignore_patterns("test_*", "__pycache__", "*.pyc"))
    extra, names = [], list(SHIPPED)
    pins, addresses = [4], [0x77]
    free_pins = iter([5, 6, 12, 13, 16, 19, 20, 21, 22, 23, 24, 25, 26, 27])
    free_addresses = iter(range(0x76, 0x08, -1))
    sensors = ["dht22", "bme680", "pi_monitor"]
    for i in range(extra_count):
        src = sensors[i % len(sensors)]
        dst = f"{src}_{i // len(sensors) + 2}"
        shutil.copytree(os.path.join(plugins_dir, src), os.path.join(plugins_dir, dst), dirs_exist_ok=True)
        section = plugin_section(src).replace(f"[plugins.{src}", f"[plugins.{dst}")
        if src == "dht22":
            pin = next(free_pins)
            pins.append(pin)
            section = re.sub(r"(?m)^dht22_pins = .*$", f"dht22_pins = [{pin}]", section)
            section = re.sub(r"(?m)^pin = .*$", f"pin = {pin}", section)
        elif src == "bme680":
            address = next(free_addresses)
            addresses.append(address)
            section = re.sub(r"(?m)^i2c_addresses = .*$", f"i2c_addresses = [{address:#04x}]", section)
            section = re.sub(r"(?m)^address = .*$", f"address = {address:#04x}", section)
        extra.append(section)
        names.append(dst)
    return plugins_dir, "\n\n" + "\n\n".join(extra) + "\n", names, (pins, addresses)


def start_host(config, log="warn,wasi_python_host::app=info", env=None, preexec_fn=None, binary=None):
    """Starts the host; returns (process, "ADDR:PORT") once it listens. `log`
    is RUST_LOG; the line that says where it listens is always let through."""
    log = f"{log},wasi_python_host::app=info"
    proc = subprocess.Popen([binary or BINARY, "--config", config], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RUST_LOG": log, **(env or {})}, preexec_fn=preexec_fn)
    for line in proc.stderr:
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            return proc, m.group(1)
    raise SystemExit("the host did not start: " + " ".join(proc.args))


def drain(proc):
    """Reads a process's stderr in the background so it never blocks on a
    full pipe; returns the list the lines go to."""
    import threading
    lines = []

    def pump():
        for line in proc.stderr:
            lines.append(line)
    threading.Thread(target=pump, daemon=True).start()
    return lines


def get_json(addr, path, timeout=2):
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=timeout) as r:
            return json.load(r)
    except (OSError, ValueError):
        return None


def api(addr):
    """GET /api as JSON, or None when the host does not answer."""
    return get_json(addr, "/api")


def probe(addr, timeout):
    """(outcome, seconds): one GET /api on a fresh connection, `timeout`
    seconds at most from connect() to the last byte."""
    host, port = addr.rsplit(":", 1)
    t0 = time.monotonic()
    try:
        s = socket.create_connection((host, int(port)), timeout=timeout)
    except socket.timeout:
        return "hung", time.monotonic() - t0
    except OSError:
        return "refused", time.monotonic() - t0
    data = b""
    try:
        s.sendall(f"GET /api HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode())
        while True:
            s.settimeout(max(timeout - (time.monotonic() - t0), 0.01))
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return "hung", time.monotonic() - t0
    except OSError:
        if not data:
            return "refused", time.monotonic() - t0
    finally:
        s.close()
    elapsed = time.monotonic() - t0
    try:
        status = int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return "refused", elapsed
    return {200: "served", 503: "503"}.get(status, f"status {status}"), elapsed


def fmt_ms(xs):
    """`median ms (min–max, n=N)`."""
    return (f"{statistics.median(xs) * 1000:.1f} ms ({min(xs) * 1000:.1f}–{max(xs) * 1000:.1f}, n={len(xs)})"
            if xs else "—")


# ---------------------------------------------------------------- memory

def smaps_rollup(pid):
    """RSS, PSS and USS (private clean + dirty) of a process, KiB."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0),
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


def vmas(pid):
    """Every mapping of a process with its smaps counters (KiB)."""
    out = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and ":" not in head[0]:
                start, end = (int(x, 16) for x in head[0].split("-"))
                out.append({"start": start, "end": end, "perms": head[1],
                            "path": head[5] if len(head) > 5 else "", "counters": {}})
            elif head and head[0].endswith(":") and len(head) >= 2 and head[1].isdigit() and out:
                out[-1]["counters"][head[0][:-1]] = int(head[1])
    return out


def breakdown(pid, binary_path):
    """A host's memory by kind of mapping: {kind: {mappings, rss, pss,
    private_dirty}} in KiB, plus the number of linear memories.

    wasmtime reserves GiBs of address space per linear memory; the mappings
    inside one reservation are contiguous, so contiguous runs of mappings
    that add up to more than 1 GiB are linear memories. Inside them, pages
    mapped from the runtime's artifact are the pre-initialised snapshot
    (shared, copy-on-write) and its private dirty pages are what an
    instance wrote; anonymous pages there are heap the instance grew."""
    maps = vmas(pid)
    regions, run = [], []
    for v in maps:
        if run and v["start"] != run[-1]["end"]:
            regions.append(run)
            run = []
        run.append(v)
    if run:
        regions.append(run)
    linear = set()
    for r in regions:
        if r[-1]["end"] - r[0]["start"] > (1 << 30) and all(v["path"] in ("",) or v["path"].endswith(".cwasm")
                                                            for v in r):
            linear.update(id(v) for v in r)
    # One writable copy-on-write mapping of the artifact per memory image.
    memories = sum(1 for v in maps if id(v) in linear and v["path"].endswith(".cwasm") and "w" in v["perms"])
    binary_real = os.path.realpath(binary_path)
    out = {}

    def add(kind, v, rss=None, pss=None, dirty=None):
        c = v["counters"]
        e = out.setdefault(kind, {"mappings": 0, "rss": 0, "pss": 0, "private_dirty": 0})
        e["mappings"] += 1
        e["rss"] += c.get("Rss", 0) if rss is None else rss
        e["pss"] += c.get("Pss", 0) if pss is None else pss
        e["private_dirty"] += c.get("Private_Dirty", 0) if dirty is None else dirty

    for v in maps:
        path, c = v["path"], v["counters"]
        if id(v) in linear:
            if path.endswith(".cwasm"):
                # Split the image mapping: pages still shared with the
                # artifact, and pages this instance copied on write.
                dirty = c.get("Private_Dirty", 0)
                add("linear memories: snapshot pages still shared (file-backed)", v,
                    rss=c.get("Rss", 0) - dirty, pss=c.get("Pss", 0) - c.get("Pss_Dirty", dirty), dirty=0)
                add("linear memories: pages each instance wrote (private)", v,
                    rss=dirty, pss=c.get("Pss_Dirty", dirty), dirty=dirty)
            else:
                add("linear memories: pages each instance wrote (private)", v)
        elif path.endswith(".cwasm"):
            add("runtime artifact: compiled code (r-x)" if "x" in v["perms"]
                else "runtime artifact: other sections (read-only)", v)
        elif path == binary_real or path.endswith("/wasi-python-host"):
            add("host binary", v)
        elif ".so" in path:
            add("shared libraries", v)
        elif path == "[heap]" or path == "":
            add("host heap and other anonymous (malloc, thread stacks, wasmtime metadata)", v)
        elif path.startswith("[stack") or path in ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"):
            add("stacks and kernel pages", v)
        else:
            add("other files", v)
    return out, memories


class MemCgroup:
    """A memory cgroup of our own for one process, to read its charge the
    way a systemd unit's MemoryMax counts it: anonymous memory, page cache
    (file pages it read or mapped first) and kernel memory.

    cgroup v2 (`memory.current`) when the unified hierarchy has the memory
    controller; otherwise the v1 memory controller (`memory.usage_in_bytes`,
    the same charge). Created as a child of the cgroup this script runs in,
    removed on close."""

    def __init__(self, name):
        self.path = None
        self.version = None
        self.why_not = ""
        own = {}
        for line in open("/proc/self/cgroup"):
            hid, controllers, path = line.rstrip("\n").split(":", 2)
            own[controllers] = path
        candidates = []
        for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
            controllers = os.path.join(root, "cgroup.controllers")
            if os.path.exists(controllers) and "memory" in open(controllers).read().split():
                candidates.append((2, os.path.join(root + own.get("", "/"), name), "memory.current"))
        if "memory" in own and os.path.isdir("/sys/fs/cgroup/memory"):
            candidates.append((1, os.path.join("/sys/fs/cgroup/memory" + own["memory"], name),
                               "memory.usage_in_bytes"))
        for version, path, counter in candidates:
            try:
                os.makedirs(path, exist_ok=True)
                if version == 2:
                    parent = os.path.dirname(path)
                    try:
                        with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                            f.write("+memory")
                    except OSError:
                        pass
                if os.path.exists(os.path.join(path, counter)):
                    self.path, self.version, self.counter = path, version, counter
                    return
                os.rmdir(path)
            except OSError as e:
                self.why_not = f"{path}: {e}"
        if not candidates:
            self.why_not = "no cgroup hierarchy here has the memory controller"

    def preexec(self):
        """For Popen(preexec_fn=...): puts the child in the cgroup before
        it runs, so every page it touches is charged here."""
        procs = os.path.join(self.path, "cgroup.procs")

        def enter():
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        return enter if self.path else None

    def current(self):
        """The charge in KiB, None without a cgroup."""
        if not self.path:
            return None
        return int(open(os.path.join(self.path, self.counter)).read()) // 1024

    def stat(self):
        """memory.stat, values in KiB where they are bytes."""
        if not self.path:
            return {}
        out = {}
        for line in open(os.path.join(self.path, "memory.stat")):
            k, v = line.split()
            out[k] = int(v) // 1024
        return out

    def page_cache_kib(self):
        s = self.stat()
        return s.get("file") if self.version == 2 else s.get("total_cache", s.get("cache"))

    def anon_kib(self):
        s = self.stat()
        return s.get("anon") if self.version == 2 else s.get("total_rss", s.get("rss"))

    def describe(self):
        if self.version == 2:
            return "cgroup v2 `memory.current`"
        if self.version == 1:
            return ("cgroup v1 `memory.usage_in_bytes` (this machine mounts the memory controller on the "
                    "v1 hierarchy, so v2's `memory.current` does not exist here; v1 charges the same "
                    "pages: anonymous memory, page cache and kernel memory)")
        return f"no memory cgroup could be made ({self.why_not})"

    def close(self):
        if self.path:
            try:
                os.rmdir(self.path)
            except OSError:
                pass


def drop_page_cache(folder):
    """Evicts a folder's files from the page cache (written back first), so
    the next reader starts cold, as after a device's boot, and its page
    cache is charged to its own cgroup."""
    for dirpath, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(dirpath, f)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def own_copy_of_binary(binary, dest_dir):
    """A private copy of an executable, evicted from the page cache: a
    process started from it shares none of its pages with other processes
    (so its PSS is what it would be alone on a device, after a boot)."""
    os.makedirs(dest_dir, exist_ok=True)
    dst = os.path.join(dest_dir, os.path.basename(binary))
    shutil.copy2(binary, dst)
    drop_page_cache(dest_dir)
    return dst


def own_python(dest, probe_args):
    """A private copy of the system's python3 for one group of processes:
    the interpreter, its standard library (with the extension modules) and
    the shared libraries those load, other than the C library (which every
    process, the host included, shares). Processes of the group share these
    pages with each other, as on a device that runs only them, and with
    nothing else on this machine. Returns (executable, environment).

    `probe_args` is what to run once to see which files it maps."""
    exe = os.path.realpath(SYSTEM_PYTHON)
    version = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    stdlib = os.path.join(os.path.dirname(os.path.dirname(exe)), "lib", f"python{version}")
    os.makedirs(os.path.join(dest, "bin"), exist_ok=True)
    shutil.copy2(exe, os.path.join(dest, "bin", "python3"))
    shutil.copytree(stdlib, os.path.join(dest, "lib", f"python{version}"), symlinks=True,
                    ignore=shutil.ignore_patterns("site-packages", "dist-packages", "test", "idlelib"))
    # Which shared libraries the work loads (extension modules pull in
    # libcrypto, liblzma, ...): copy them too, found first via LD_LIBRARY_PATH.
    probe = subprocess.Popen([exe, "-c", PROBE, *probe_args], stdout=subprocess.PIPE, text=True)
    mapped = probe.communicate(timeout=120)[0].split()
    libs = os.path.join(dest, "libs")
    os.makedirs(libs, exist_ok=True)
    for path in mapped:
        name = os.path.basename(path)
        if ".so" in name and not path.startswith(stdlib) and not re.match(r"(libc|ld-linux|libm)\b", name):
            soname = re.match(r"(lib[^.]+\.so\.\d+(\.\d+)?)", name)
            shutil.copy2(path, os.path.join(libs, soname.group(1) if soname else name))
            if soname and soname.group(1) != name:
                # Both the soname and the major-only name resolve.
                major = re.match(r"(lib[^.]+\.so\.\d+)", name).group(1)
                if not os.path.exists(os.path.join(libs, major)):
                    shutil.copy2(path, os.path.join(libs, major))
    drop_page_cache(dest)
    return os.path.join(dest, "bin", "python3"), {"LD_LIBRARY_PATH": libs, "PYTHONDONTWRITEBYTECODE": "1"}


# Runs a script with its arguments, then prints the files it maps.
PROBE = """
import os, sys, threading
script, sys.argv = sys.argv[1], sys.argv[1:]
def dump():
    seen = set()
    for line in open(f"/proc/{os.getpid()}/maps"):
        f = line.split()
        if len(f) > 5 and f[5].startswith("/") and f[5] not in seen:
            seen.add(f[5]); print(f[5])
    sys.stdout.flush(); os._exit(0)
threading.Timer(float(os.environ.get("WHP_PROBE_SECONDS", "3")), dump).start()
exec(compile(script, "<native>", "exec"), {"__name__": "__main__"})
"""
