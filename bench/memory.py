#!/usr/bin/env python3
"""Memory benchmark, side by side in one run: the host (release build) with
the four shipped plugins and with twelve (the four plus eight copies of the
sensor plugins under other names), against the same plugins' Python logic
run by plain CPython 3 as one process per plugin (four and twelve), all at
the same time for --seconds, so machine noise and page-cache pressure hit
every contender alike. Also the four-plugin host with `limits.recycle =
true`, and one python3 process running all four plugins, for context.

Every host runs as a device does: its own copy of the precompiled runtime
artifact (pages of one file mapped by two hosts would be split between
them in PSS), evicted from the page cache before it starts (as after a
boot), and no runtime component file (it loads the precompiled runtime the
cache's pointer names). Each host runs in a memory cgroup of its own, whose
charge (anonymous memory + the page cache it brought in + kernel memory) is
what a systemd unit's MemoryMax counts.

Figures: PSS from /proc/PID/smaps_rollup (shared pages split fairly between
the processes mapping them; RSS would count the runtime's shared snapshot
once per instance and libpython once per python3 process), sampled every
10 s; the table shows the last sample and the range over the second half
of the run. Then the hosts' PSS by kind of mapping, and what each
additional plugin adds.

The native runs are the system's plain python3 running each plugin's
app.py with plugins/testing/fakehost (the runtime's own loader and the
generated bindings with in-memory fakes behind them) at the shipped poll
intervals. Each group of python3 processes gets its own copy of the
interpreter, its standard library and the shared libraries it loads
(bench/common.py, own_python), and each host its own copy of the binary:
PSS splits a page between the processes mapping it, so processes of
another contender (or this script) sharing a file would make a contender
look smaller than it would be alone on a device.

Before the run, the artifact cache gets the plugins' bytecode (a host runs
until every plugin has made a call), as on a device after its first start.

    python3 bench/memory.py [--seconds N] [--json FILE] [--cache DIR]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import (BINARY, ROOT, SHIPPED, MemCgroup, breakdown, copies_of_shipped, drain, drop_page_cache,
                    own_copy_of_binary, own_python, smaps_rollup, start_host, write_config)

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
                p.render(h.snapshot())  # as the host makes one (plugins/testing/fakehost)
            else:
                p.poll()
            due[n] = now + intervals[n]
    time.sleep(0.05)
'''

MIB = 1024.0


def warm_bytecode(config_path):
    """Runs a host on the cache until every plugin of the config has made a
    call, so their bytecode is cached."""
    proc, addr = start_host(config_path)
    drain(proc)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300:
            try:
                with urllib.request.urlopen(f"http://{addr}/api/plugins", timeout=5) as r:
                    plugins = json.load(r)["plugins"]
                if plugins and all(p["status"] == "running" and p["calls"] > 0 for p in plugins):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise SystemExit("the plugins did not all make a call within 5 minutes")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--cache", help="artifact cache to fill and copy from (default: a fresh one)")
    ap.add_argument("--extra", type=int, default=8, help="plugin copies in the larger host (default 8: 12 plugins)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="whp-mem-")
    cache = args.cache or f"{work}/cache"
    plugins_dir, extra_toml, many, sim = copies_of_shipped(work, args.extra)
    n_many = len(many)
    hosts, natives, cgroups = [], [], []
    samples = {}
    try:
        # Fill the artifact cache first: a host that compiles while being
        # measured holds Cranelift's working set, not its steady state.
        config = write_config(os.path.join(work, "warm.toml"), f"{work}/state-warm", cache,
                              extra=extra_toml, plugins_dir=plugins_dir, sim=sim)
        subprocess.run([BINARY, "precompile", "--config", config], check=True, stdout=subprocess.DEVNULL)
        # And the plugins' bytecode, as after a device's first start: every
        # later start loads it instead of compiling Python.
        warm_bytecode(config)
        contenders = [
            (f"host, {len(SHIPPED)} plugins", {}, "", "host4"),
            (f"host, {n_many} plugins", {}, extra_toml, "host12"),
            (f"host, {len(SHIPPED)} plugins, `limits.recycle = true`", {"recycle": "true"}, "", "recycle"),
        ]
        for i, (label, replace, extra, key) in enumerate(contenders):
            own_cache = f"{work}/cache-{i}"
            shutil.copytree(cache, own_cache)
            drop_page_cache(own_cache)
            config = write_config(os.path.join(work, f"host-{i}.toml"), f"{work}/state-{i}", own_cache,
                                  extra=extra, plugins_dir=plugins_dir, sim=sim,
                                  runtime=f"{work}/no-runtime-file/python-runtime.wasm", **replace)
            cg = MemCgroup(f"whp-bench-mem-{os.getpid()}-{i}")
            cgroups.append(cg)
            binary = own_copy_of_binary(BINARY, f"{work}/bin-{i}")
            proc, addr = start_host(config, preexec_fn=cg.preexec(), binary=binary)
            drain(proc)
            hosts.append((label, key, proc, addr, cg, binary))
        base_names = [n.rsplit("_", 1)[0] if n.rsplit("_", 1)[-1].isdigit() else n for n in many]
        for label, key, groups in (
                (f"{len(SHIPPED)} python3 processes (one plugin each)", "py4", [[n] for n in SHIPPED]),
                (f"{n_many} python3 processes (one plugin each)", "py12", [[n] for n in base_names]),
                (f"one python3 process (all {len(SHIPPED)} plugins)", "py1", [SHIPPED])):
            # Each group its own copy of python3 and its libraries: no
            # sharing of pages with the other groups or this script.
            python, env = own_python(f"{work}/{key}", [NATIVE, ROOT, ",".join(SHIPPED)])
            natives.append((label, key, [subprocess.Popen([python, "-c", NATIVE, ROOT, ",".join(g)],
                                                          env={**os.environ, **env})
                                         for g in groups]))
        t0 = time.monotonic()
        next_sample = 10.0
        while True:
            elapsed = time.monotonic() - t0
            for _, _, _, addr, _, _ in hosts:
                for p in ("/api", "/view"):
                    try:
                        urllib.request.urlopen(f"http://{addr}{p}", timeout=5).read()
                    except OSError:
                        pass
            if elapsed >= next_sample or elapsed >= args.seconds:
                for label, key, proc, _, cg, _ in hosts:
                    if proc.poll() is not None:
                        raise SystemExit(f"{label}: the host died")
                    s = smaps_rollup(proc.pid)
                    s["cgroup"] = cg.current()
                    samples.setdefault(key, []).append((elapsed, s))
                for label, key, procs in natives:
                    total = {"rss": 0, "pss": 0, "uss": 0}
                    for p in procs:
                        if p.poll() is not None:
                            raise SystemExit(f"native run {p.args} died")
                        for k, v in smaps_rollup(p.pid).items():
                            total[k] += v
                    samples.setdefault(key, []).append((elapsed, total))
                next_sample += 10.0
            if elapsed >= args.seconds:
                break
            time.sleep(1)
        details = {}
        for label, key, proc, _, cg, binary in hosts:
            parts, memories = breakdown(proc.pid, binary)
            details[key] = {"breakdown": parts, "linear_memories": memories, "cgroup": cg.current(),
                            "cgroup_page_cache": cg.page_cache_kib(), "cgroup_anon": cg.anon_kib(),
                            "cgroup_how": cg.describe()}
    finally:
        for _, _, proc, _, _, _ in hosts:
            proc.terminate()
            proc.wait(timeout=30)
        for _, _, procs in natives:
            for p in procs:
                p.terminate()
                p.wait()
        for cg in cgroups:
            cg.close()
        shutil.rmtree(work, ignore_errors=True)
    report(args, samples, details, hosts, natives, n_many)


def spread(series, field):
    """(last, min, max) of the second half of the samples, MiB."""
    half = [s[field] for t, s in series if t >= series[-1][0] / 2] or [series[-1][1][field]]
    return series[-1][1][field] / MIB, min(half) / MIB, max(half) / MIB


def report(args, samples, details, hosts, natives, n_many):
    labels = {key: label for label, key, *_ in hosts} | {key: label for label, key, _ in natives}
    order = ["host4", "host12", "recycle", "py4", "py12", "py1"]
    base = spread(samples["py4"], "pss")[0]
    print(f"\nafter {args.seconds} s, all contenders running side by side (the hosts also served /api and "
          "/view every second); PSS is the last sample, with the range over the second half of the run:\n")
    print("| contender | PSS | PSS range | USS | RSS | PSS ratio to four python3 | cgroup charge |")
    print("|---|---|---|---|---|---|---|")
    out_rows = []
    for key in order:
        if key not in samples:
            continue
        last = samples[key][-1][1]
        pss, lo, hi = spread(samples[key], "pss")
        cg = last.get("cgroup")
        print(f"| {labels[key]} | {pss:.1f} MiB | {lo:.1f}–{hi:.1f} | {last['uss'] / MIB:.1f} MiB | "
              f"{last['rss'] / MIB:.1f} MiB | {pss / base:.2f} | {f'{cg / MIB:.1f} MiB' if cg else '—'} |")
        out_rows.append({"contender": labels[key], "key": key, **last, "pss_range": [lo, hi]})
    h4, h12 = spread(samples["host4"], "pss")[0], spread(samples["host12"], "pss")[0]
    p4, p12 = spread(samples["py4"], "pss")[0], spread(samples["py12"], "pss")[0]
    extra = n_many - len(SHIPPED)
    per_host, per_py = (h12 - h4) / extra, (p12 - p4) / extra
    print()
    print("| | host | python3 processes |")
    print("|---|---|---|")
    print(f"| PSS, {len(SHIPPED)} plugins | {h4:.1f} MiB | {p4:.1f} MiB |")
    print(f"| PSS, {n_many} plugins | {h12:.1f} MiB | {p12:.1f} MiB |")
    print(f"| each additional plugin ({n_many} − {len(SHIPPED)}) / {extra} | {per_host:.2f} MiB | {per_py:.2f} MiB |")
    print()
    ok4 = h4 <= 40 and h4 < p4
    print(f"Goals: {len(SHIPPED)} plugins ≤ 40 MiB PSS and below {len(SHIPPED)} python3 processes — "
          f"{h4:.1f} MiB against {p4:.1f} MiB: **{'met' if ok4 else 'not met'}**. Each additional plugin "
          f"≤ 5 MiB PSS — {per_host:.2f} MiB: **{'met' if per_host <= 5 else 'not met'}**.")
    d4, d12 = details["host4"], details["host12"]
    print(f"\nWhere the hosts' memory is (PSS by kind of mapping; the {len(SHIPPED)}-plugin host has "
          f"{d4['linear_memories']} linear memories, the {n_many}-plugin host {d12['linear_memories']}):\n")
    print(f"| mappings | {len(SHIPPED)} plugins: RSS | {len(SHIPPED)} plugins: PSS | of which private dirty "
          f"| {n_many} plugins: PSS | per additional plugin |")
    print("|---|---|---|---|---|---|")
    kinds = sorted(set(d4["breakdown"]) | set(d12["breakdown"]),
                   key=lambda k: -max(d4["breakdown"].get(k, {}).get("pss", 0), d12["breakdown"].get(k, {}).get("pss", 0)))
    zero = {"rss": 0, "pss": 0, "private_dirty": 0, "mappings": 0}
    for k in kinds:
        a, b = d4["breakdown"].get(k, zero), d12["breakdown"].get(k, zero)
        if max(a["rss"], b["rss"]) < 64:
            continue
        print(f"| {k} | {a['rss'] / MIB:.1f} MiB | {a['pss'] / MIB:.1f} MiB | {a['private_dirty'] / MIB:.1f} MiB "
              f"| {b['pss'] / MIB:.1f} MiB | {(b['pss'] - a['pss']) / MIB / extra:+.2f} MiB |")
    print(f"\nMemory cgroup charge ({d4['cgroup_how']}), at the end:\n")
    print("| host | charge | of which page cache | of which anonymous | PSS |")
    print("|---|---|---|---|---|")
    for key in ("host4", "host12", "recycle"):
        d = details.get(key)
        if not d or d["cgroup"] is None:
            continue
        fmt = lambda v: "—" if v is None else f"{v / MIB:.1f} MiB"  # noqa: E731
        print(f"| {labels[key]} | {fmt(d['cgroup'])} | {fmt(d['cgroup_page_cache'])} | {fmt(d['cgroup_anon'])} "
              f"| {spread(samples[key], 'pss')[0]:.1f} MiB |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "rows": out_rows, "details": details,
                       "samples": samples}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
