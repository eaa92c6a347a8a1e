#!/usr/bin/env python3
"""Hot-reload benchmark, side by side in one run:

  * reload with a cached artifact  (the new file was compiled before)
  * reload needing a fresh compile (a never-seen file), per compile tier:
      - winch:     the quick build serves the new behaviour
      - cranelift: the optimized build has replaced it (/api/plugins shows
                   tier "cranelift" for the new version)
  * restarting the whole host      (what a user would otherwise do; warm cache)
  * a Cranelift-only compile of a never-seen file (`precompile`, normal
    priority): what the first serving of a fresh reload cost before tiers

Each figure is the time from the new file landing (rename into place) -- or
from the restart command -- to the first /api response that shows the new
behaviour (or, for the cranelift tier, the first /api/plugins response that
shows the optimized build live): plugin `x` switches between the dht22 plugin
(reading `dht22-gpio-4`) and the hostile test plugin in mode "ok" (reading
`hostile-ok`), two components of the same world.

    python3 bench/reload.py [--runs N] [--compile-runs N]

Needs the plugins built (scripts/test.sh builds them, including
tests/plugins/hostile) and the host built (cargo build).
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import urllib.request

from common import BINARY, ROOT, api, start_host, write_config

DHT22 = os.path.join(ROOT, "plugins", "dht22", "dht22.wasm")
HOSTILE = os.path.join(ROOT, "tests", "plugins", "hostile", "hostile.wasm")
BEHAVIOUR = {DHT22: "dht22-gpio-4", HOSTILE: "hostile-ok"}


def leb(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def variant(src, dst, nonce):
    """A copy of component `src` with a custom section appended: the same
    program, a never-seen file (new hash), so it must be compiled."""
    name, payload = b"bench-nonce", str(nonce).encode()
    body = leb(len(name)) + name + payload
    with open(src, "rb") as f:
        data = f.read() + b"\x00" + leb(len(body)) + body
    with open(dst, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()[:12]


def all_optimized(addr):
    """Every loaded plugin runs its optimized build (no background compile
    left to disturb a measurement)."""
    try:
        with urllib.request.urlopen(f"http://{addr}/api/plugins", timeout=2) as r:
            plugins = json.load(r)["plugins"]
    except OSError:
        return False
    return all(p["tier"] in ("cranelift", "pulley") for p in plugins if p["status"] != "disabled")


def x_tier(addr, version):
    """Plugin x's tier while it runs `version`, else None."""
    try:
        with urllib.request.urlopen(f"http://{addr}/api/plugins", timeout=2) as r:
            plugins = json.load(r)["plugins"]
    except OSError:
        return None
    x = next((p for p in plugins if p["name"] == "x"), None)
    return x["tier"] if x and x["version"] == version else None


def x_config(work, x_file):
    extra = f'''
[plugins.x]
file = "{x_file}"
interval_ms = 100
[plugins.x.grants]
interfaces = ["gpio-provider", "led-controller", "buzzer-controller", "state", "log", "settings"]
dht22_pins = [4]
leds = [3]
[plugins.x.settings]
mode = "ok"
led = 3
'''
    return write_config(os.path.join(work, "host.toml"), f"{work}/state", f"{work}/cache", extra)


def x_shows(addr, sensor_id):
    a = api(addr)
    return a is not None and any(r["plugin"] == "x" and r["sensor_id"] == sensor_id for r in a["readings"])


def wait(pred, limit=600):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > limit:
            raise SystemExit("timed out")
        time.sleep(0.002)


def land(src, dst):
    tmp = dst + ".part"
    shutil.copyfile(src, tmp)
    t0 = time.monotonic()
    os.rename(tmp, dst)
    return t0


def fmt(xs):
    return f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f}, n={len(xs)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--compile-runs", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="whp-reload-")
    x = os.path.join(work, "x.wasm")
    shutil.copyfile(HOSTILE, x)
    config = x_config(work, x)
    proc, addr = start_host(config)
    try:
        wait(lambda: x_shows(addr, "hostile-ok"))
        # Compile the other version once so the next swaps hit the cache,
        # and let every background (optimized) compile finish first.
        land(DHT22, x)
        wait(lambda: x_shows(addr, "dht22-gpio-4"))
        wait(lambda: all_optimized(addr), limit=3600)
        cached, fresh = [], []
        current = DHT22
        for i in range(args.runs):
            nxt = HOSTILE if current == DHT22 else DHT22
            t0 = land(nxt, x)
            wait(lambda: x_shows(addr, BEHAVIOUR[nxt]))
            cached.append(time.monotonic() - t0)
            current = nxt
        print(f"reload, cached artifact: {fmt(cached)}", flush=True)
        optimized, first_tiers = [], []
        for i in range(args.compile_runs):
            nxt = HOSTILE if current == DHT22 else DHT22
            v = os.path.join(work, f"variant{i}.wasm")
            version = variant(nxt, v, f"{time.time()}-{i}")
            t0 = land(v, x)
            wait(lambda: x_shows(addr, BEHAVIOUR[nxt]))
            fresh.append(time.monotonic() - t0)
            first_tiers.append(x_tier(addr, version))
            wait(lambda: x_tier(addr, version) in ("cranelift", "pulley"), limit=1800)
            optimized.append(time.monotonic() - t0)
            current = nxt
        first = "/".join(sorted(set(t or "?" for t in first_tiers)))
        print(f"reload, fresh compile, first serving ({first}): {fmt(fresh)}", flush=True)
        print(f"reload, fresh compile, optimized build live:    {fmt(optimized)}", flush=True)
        restarts = []
        for i in range(max(3, args.runs // 2)):
            t0 = time.monotonic()
            proc.terminate()
            proc.wait(timeout=30)
            proc, addr = start_host(config)
            wait(lambda: x_shows(addr, BEHAVIOUR[current]))
            restarts.append(time.monotonic() - t0)
        print(f"restart the host:        {fmt(restarts)}", flush=True)
        cranelift_only = []
        for i in range(args.compile_runs):
            # Its own folder and cache: only this never-seen file compiles.
            own = os.path.join(work, f"precompile{i}")
            os.makedirs(own)
            v = os.path.join(own, "x.wasm")
            variant(HOSTILE, v, f"{time.time()}-p{i}")
            t0 = time.monotonic()
            subprocess.run([BINARY, "precompile", "--config", x_config(own, v), "x"],
                           check=True, capture_output=True)
            cranelift_only.append(time.monotonic() - t0)
        print(f"Cranelift-only compile:  {fmt(cranelift_only)}", flush=True)
        base = statistics.median(restarts)
        print()
        print("| way to get a new plugin version serving | time to new behaviour in /api | ratio to a restart |")
        print("|---|---|---|")
        print(f"| restart the host (warm cache) | {fmt(restarts)} | 1.00 |")
        print(f"| hot reload, cached artifact | {fmt(cached)} | {statistics.median(cached) / base:.2f} |")
        print(f"| hot reload, fresh compile: first serving ({first} build) | {fmt(fresh)} | {statistics.median(fresh) / base:.2f} |")
        print(f"| hot reload, fresh compile: optimized (cranelift) build live | {fmt(optimized)} | {statistics.median(optimized) / base:.2f} |")
        print(f"| (before tiers: a fresh reload waited for a Cranelift-only compile, `precompile` of a new file) | {fmt(cranelift_only)} | {statistics.median(cranelift_only) / base:.2f} |")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
