#!/usr/bin/env python3
"""Start-up benchmark: cold start (empty artifact cache) against warm start
(every plugin cached), side by side in one run.

Measures the time from spawning the host to the first `/api` response that
has readings from every sensor plugin and system stats (a "full /api").

    python3 bench/start.py [--runs N] [--binary PATH]

Needs the plugins built (scripts/build-plugins.sh) and the host built.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_config(state_dir, cache_dir):
    with open(os.path.join(ROOT, "config", "host.toml"), "rb") as f:
        config = tomllib.load(f)
    text = open(os.path.join(ROOT, "config", "host.toml")).read()
    # Point the shipped config at this run's folders without rewriting it.
    text = re.sub(r'(?m)^plugins_dir = .*$', f'plugins_dir = "{ROOT}/plugins"', text)
    text = re.sub(r'(?m)^state_dir = .*$', f'state_dir = "{state_dir}"\ncache_dir = "{cache_dir}"', text)
    text = re.sub(r'(?m)^listen = .*$', 'listen = "127.0.0.1:0"', text)
    text = re.sub(r'(?m)^hardware = .*$', 'hardware = "sim"', text)
    assert config["plugins"], "config has plugins"
    path = os.path.join(state_dir, "host.toml")
    open(path, "w").write(text)
    return path


def full_api(addr):
    try:
        with urllib.request.urlopen(f"http://{addr}/api", timeout=2) as r:
            api = json.load(r)
    except OSError:
        return False
    ids = {r["sensor_id"] for r in api["readings"]}
    return "dht22-gpio-4" in ids and "bme680-i2c-0x77" in ids and api["system"] is not None


def start_once(binary, config):
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "--config", config], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RUST_LOG": "info"})
    addr = None
    for line in proc.stderr:
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            addr = m.group(1)
            break
    assert addr, "host printed its address"
    while not full_api(addr):
        if time.monotonic() - t0 > 600:
            raise SystemExit("no full /api within 10 minutes")
        time.sleep(0.005)
    elapsed = time.monotonic() - t0
    proc.terminate()
    proc.wait(timeout=30)
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="warm starts to measure")
    ap.add_argument("--cold-runs", type=int, default=1, help="cold starts to measure")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "wasi-python-host"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="whp-bench-")
    try:
        cold = []
        for i in range(args.cold_runs):
            state, cache = os.path.join(work, f"cold{i}"), os.path.join(work, f"cache{i}")
            os.makedirs(state)
            cold.append(start_once(args.binary, write_config(state, cache)))
            print(f"cold start {i + 1}: {cold[-1]:.2f} s", flush=True)
        warm = []
        for i in range(args.runs):
            state = os.path.join(work, f"warm{i}")
            os.makedirs(state)
            warm.append(start_once(args.binary, write_config(state, os.path.join(work, "cache0"))))
            print(f"warm start {i + 1}: {warm[-1]:.3f} s", flush=True)
        c, w = statistics.median(cold), statistics.median(warm)
        print()
        print("| start | median to a full /api | ratio |")
        print("|---|---|---|")
        print(f"| cold (empty artifact cache, {args.cold_runs} run(s)) | {c:.2f} s | 1.00 |")
        print(f"| warm (cached artifacts, {args.runs} runs) | {w * 1000:.0f} ms (min {min(warm) * 1000:.0f}, max {max(warm) * 1000:.0f}) | {w / c:.3f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
