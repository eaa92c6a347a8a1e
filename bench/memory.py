#!/usr/bin/env python3
"""Memory benchmark, side by side in one run: the host's steady-state memory
with the four shipped plugins -- persistent instances, persistent with at
most two malloc arenas (glibc's MALLOC_ARENA_MAX, what mallopt(M_ARENA_MAX)
sets at startup), and instance recycling (`[limits] recycle = true`) --
against the same four plugins' Python logic run natively by CPython 3: as
four separate python3 processes (the isolation-equivalent alternative) and
as one python3 process running all four.

Every contender runs at the same time for --seconds (default 600, the
issue's 10 minutes), so one run takes that long and machine noise hits all
alike. The hosts serve / and /api every second meanwhile. Then RSS, PSS
(shared pages split fairly between processes; each host maps its own
copy of the artifacts, as a lone host on a device would) and USS (private pages only)
are read from /proc, and the host's memory is broken down by mapping.

The native runs use plugins/testing/fakehost as the thin shim that stands in
for the generated bindings, with a simulated sensor feed, at the same poll
intervals as config/host.toml.

    python3 bench/memory.py [--seconds N] [--json FILE]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import BINARY, ROOT, start_host, write_config

PY = os.path.join(ROOT, ".venv", "bin", "python")

NATIVE = r'''
import math, sys, time
sys.path[:0] = [sys.argv[1] + "/plugins/testing", sys.argv[1] + "/plugins/common"]
from fakehost import FakeHost
names = sys.argv[2].split(",")
intervals = {"dht22": 2.0, "bme680": 3.0, "pi_monitor": 5.0, "dashboard": 2.0}
hosts = {}
for n in names:
    h = FakeHost(echo_logs=False)
    p = h.load(n)
    hosts[n] = (h, p)
due = {n: 0.0 for n in names}
t0 = time.monotonic()
while True:
    now = time.monotonic()
    for n in names:
        if now >= due[n]:
            h, p = hosts[n]
            t = now - t0
            h.dht22(pin=4).set(21.5 + math.sin(t / 60), 45.0)
            h.bme680(0x77).set(temperature_c=22.0 + math.sin(t / 60), gas_resistance_ohm=150000.0)
            h.cpu_temp.set(47.0)
            h.system.set()
            h.logs.clear()
            if n == "dashboard":
                d = h.wit.exports.dashboard
                p.render(d.Snapshot(dht22=[], bme680=[], system=None, leds=[], buzzer_active=False,
                                    plugins=[], hardware="sim", last_update_ms=0))
            else:
                p.poll()
            due[n] = now + intervals[n]
    time.sleep(0.05)
'''


def mem(pid):
    """RSS, PSS and USS (private clean + dirty) in KiB."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss": rss, "pss": fields.get("Pss", 0), "uss": uss}


def breakdown(pid):
    """The host's RSS and PSS (KiB) by kind of mapping, from /proc/PID/smaps."""
    out = {}
    kind = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                start, end = (int(x, 16) for x in head[0].split("-"))
                path = head[5] if len(head) > 5 else ""
                if path.endswith(".cwasm"):
                    kind = "compiled plugin artifacts (mapped .cwasm)"
                elif path == os.path.realpath(BINARY) or path.endswith("/wasi-python-host"):
                    kind = "host binary"
                elif ".so" in path:
                    kind = "shared libraries"
                elif path == "[heap]":
                    kind = "malloc main heap ([heap])"
                elif path.startswith("[stack") or path in ("[vdso]", "[vvar]", "[vsyscall]"):
                    kind = "stacks and kernel pages"
                elif path == "":
                    # wasmtime reserves GiBs of address space per linear
                    # memory; malloc arenas are 64 MiB regions.
                    kind = ("linear memories (anonymous, > 1 GiB reservations)" if end - start > (1 << 30)
                            else "other anonymous (malloc arenas, thread stacks, wasmtime metadata)")
                else:
                    kind = "other files"
                out.setdefault(kind, {"rss": 0, "pss": 0, "dirty": 0, "mappings": 0})
                out[kind]["mappings"] += 1
            elif head[0] == "Rss:" and kind:
                out[kind]["rss"] += int(head[1])
            elif head[0] == "Pss:" and kind:
                out[kind]["pss"] += int(head[1])
            elif head[0] in ("Private_Dirty:", "Shared_Dirty:") and kind:
                out[kind]["dirty"] += int(head[1])
    return out


HOSTS = [
    ("host, persistent instances", {"recycle": "false"}, {}),
    ("host, persistent instances, MALLOC_ARENA_MAX=2", {"recycle": "false"}, {"MALLOC_ARENA_MAX": "2"}),
    ("host, recycled instances (`limits.recycle = true`)", {"recycle": "true"}, {}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--cache", help="artifact cache to fill and use (default: a fresh one)")
    args = ap.parse_args()
    names = ["dht22", "bme680", "pi_monitor", "dashboard"]
    work = tempfile.mkdtemp(prefix="whp-mem-")
    hosts, natives = [], []
    cache = args.cache or f"{work}/cache"
    try:
        # Fill the artifact cache first: a host that compiles while being
        # measured holds Cranelift's working set, not its steady state.
        config = write_config(os.path.join(work, "warm.toml"), f"{work}/state-warm", cache)
        subprocess.run([BINARY, "precompile", "--config", config], check=True, stdout=subprocess.DEVNULL)
        for i, (label, replace, env) in enumerate(HOSTS):
            # A copy of the artifacts per host: hosts mapping the same files
            # would share those pages and each show a fraction as PSS.
            own_cache = f"{work}/cache-{i}"
            shutil.copytree(cache, own_cache)
            config = write_config(os.path.join(work, f"host-{i}.toml"), f"{work}/state-{i}", own_cache,
                                  **replace)
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                proc, addr = start_host(config)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            hosts.append((label, proc, addr))
        native_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        for label, groups in (("four python3 processes (one plugin each)", [[n] for n in names]),
                              ("one python3 process (all four plugins)", [names])):
            natives.append((label, [subprocess.Popen([PY, "-c", NATIVE, ROOT, ",".join(g)], env=native_env)
                                    for g in groups]))
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            for _, _, addr in hosts:
                for p in ("/api", "/"):
                    try:
                        urllib.request.urlopen(f"http://{addr}{p}", timeout=5).read()
                    except OSError:
                        pass
            time.sleep(1)
        rows = []
        for label, proc, _ in hosts:
            if proc.poll() is not None:
                raise SystemExit(f"{label}: the host died")
            rows.append({"contender": label, **mem(proc.pid), "breakdown": breakdown(proc.pid)})
        for label, procs in natives:
            total = {"rss": 0, "pss": 0, "uss": 0}
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"native run {p.args} died")
                for k, v in mem(p.pid).items():
                    total[k] += v
            rows.append({"contender": label, **total})
    finally:
        for _, proc, _ in hosts:
            proc.terminate()
            proc.wait(timeout=30)
        for _, procs in natives:
            for p in procs:
                p.terminate()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)
    base = next(r for r in rows if r["contender"].startswith("four python3"))
    print(f"\nafter {args.seconds} s of polling, all contenders side by side "
          "(the hosts also served / and /api every second):\n")
    print("| contender | RSS | PSS | USS | RSS ratio to four python3 | PSS ratio to four python3 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['contender']} | {r['rss'] / 1024:.1f} MiB | {r['pss'] / 1024:.1f} MiB | "
              f"{r['uss'] / 1024:.1f} MiB | {r['rss'] / base['rss']:.2f} | {r['pss'] / base['pss']:.2f} |")
    for r in rows:
        if "breakdown" not in r:
            continue
        print(f"\nwhere the RSS of \"{r['contender']}\" is:\n")
        print("| mappings | count | RSS | of which dirty | PSS |")
        print("|---|---|---|---|---|")
        for kind, v in sorted(r["breakdown"].items(), key=lambda kv: -kv[1]["rss"]):
            if v["rss"] == 0:
                continue
            print(f"| {kind} | {v['mappings']} | {v['rss'] / 1024:.1f} MiB | {v['dirty'] / 1024:.1f} MiB "
                  f"| {v['pss'] / 1024:.1f} MiB |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
