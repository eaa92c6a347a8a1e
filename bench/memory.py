#!/usr/bin/env python3
"""Memory benchmark, side by side in one run: the host's steady-state RSS
with the four shipped plugins, with persistent instances and with instance
recycling (`[limits] recycle = true`), against the same four plugins' Python
logic run natively by CPython 3 -- as four separate python3 processes (the
isolation-equivalent alternative) and as one python3 process running all four.

The native runs use plugins/testing/fakehost as the thin shim that stands in
for the generated bindings, with a simulated sensor feed, at the same poll
intervals as config/host.toml. Each contender runs for --seconds (default 60;
the issue's figure is 600) with dashboard and /api traffic every second for
the host, then RSS (and PSS, which counts shared pages fairly) is read from
/proc.

    python3 bench/memory.py [--seconds N]
"""

import argparse
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
    h = FakeHost()
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
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def host(work, recycle, seconds):
    config = write_config(os.path.join(work, f"host-{recycle}.toml"), f"{work}/state-{recycle}", f"{work}/cache",
                          recycle="true" if recycle else "false")
    proc, addr = start_host(config)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for p in ("/api", "/"):
            try:
                urllib.request.urlopen(f"http://{addr}{p}", timeout=5).read()
            except OSError:
                pass
        time.sleep(1)
    result = mem(proc.pid)
    proc.terminate()
    proc.wait(timeout=30)
    return result


def native(groups, seconds):
    procs = [subprocess.Popen([PY, "-c", NATIVE, ROOT, ",".join(g)], env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
             for g in groups]
    time.sleep(seconds)
    total = [0, 0]
    for p in procs:
        if p.poll() is not None:
            raise SystemExit(f"native run {p.args} died")
        r, s = mem(p.pid)
        total[0] += r
        total[1] += s
        p.terminate()
        p.wait()
    return tuple(total)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    args = ap.parse_args()
    names = ["dht22", "bme680", "pi_monitor", "dashboard"]
    work = tempfile.mkdtemp(prefix="whp-mem-")
    try:
        # Fill the artifact cache first: a host that compiles while being
        # measured holds Cranelift's working set, not its steady state.
        config = write_config(os.path.join(work, "warm.toml"), f"{work}/state-warm", f"{work}/cache")
        subprocess.run([BINARY, "precompile", "--config", config], check=True, stdout=subprocess.DEVNULL)
        rows = [
            ("host, persistent instances", host(work, False, args.seconds)),
            ("host, recycled instances (`limits.recycle = true`)", host(work, True, args.seconds)),
            ("four python3 processes (one plugin each)", native([[n] for n in names], args.seconds)),
            ("one python3 process (all four plugins)", native([names], args.seconds)),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[2][1][0]
    print(f"\nafter {args.seconds} s of polling (the host also served / and /api every second):\n")
    print("| contender | RSS | PSS | RSS ratio to four python3 processes |")
    print("|---|---|---|---|")
    for name, (rss, pss) in rows:
        print(f"| {name} | {rss / 1024:.1f} MiB | {pss / 1024:.1f} MiB | {rss / base:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
