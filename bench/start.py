#!/usr/bin/env python3
"""Start-up benchmark, side by side in one run: cold start (empty artifact
cache: the shared Python runtime is compiled with Cranelift, once per
runtime build) against warm starts (the runtime's artifact cached), with
and without the plugins' bytecode cached.

Measures the time from spawning the host (release build, the four shipped
plugins, simulated hardware) to the first `/api` response that has readings
from every sensor plugin and system stats (a "full /api").

    python3 bench/start.py [--runs N] [--cold-runs N]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from common import api, drain, start_host, write_config


def full_api(addr):
    a = api(addr)
    if a is None:
        return False
    ids = {r["sensor_id"] for r in a["readings"]}
    return "dht22-gpio-4" in ids and "bme680-i2c-0x77" in ids and a["system"] is not None


def start_once(config):
    t0 = time.monotonic()
    proc, addr = start_host(config, log="warn")
    drain(proc)
    while not full_api(addr):
        if time.monotonic() - t0 > 900:
            raise SystemExit("no full /api within 15 minutes")
        time.sleep(0.005)
    elapsed = time.monotonic() - t0
    proc.terminate()
    proc.wait(timeout=30)
    return elapsed


def fmt(xs):
    return f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="warm starts of each kind to measure")
    ap.add_argument("--cold-runs", type=int, default=1, help="cold starts to measure")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="whp-bench-")
    try:
        cold = []
        for i in range(args.cold_runs):
            state, cache = os.path.join(work, f"cold{i}"), os.path.join(work, f"cache{i}")
            os.makedirs(state)
            cold.append(start_once(write_config(os.path.join(state, "host.toml"), state, cache)))
            print(f"cold start {i + 1}: {cold[-1]:.2f} s", flush=True)
        warm, no_bytecode = [], []
        for i in range(args.runs):
            # Alternate the two warm kinds so both see the same machine.
            state = os.path.join(work, f"warm{i}")
            os.makedirs(state)
            warm.append(start_once(write_config(os.path.join(state, "host.toml"), state,
                                                os.path.join(work, "cache0"))))
            state = os.path.join(work, f"nobc{i}")
            cache = os.path.join(work, f"nobc-cache{i}")
            shutil.copytree(os.path.join(work, "cache0"), cache, ignore=shutil.ignore_patterns("bytecode"))
            os.makedirs(state)
            no_bytecode.append(start_once(write_config(os.path.join(state, "host.toml"), state, cache)))
            print(f"warm start {i + 1}: {warm[-1]:.3f} s; without bytecode {no_bytecode[-1]:.3f} s", flush=True)
        c = statistics.median(cold)
        print()
        print("| start | median to a full /api | ratio to cold |")
        print("|---|---|---|")
        print(f"| cold (empty cache: the runtime is compiled, {args.cold_runs} run(s)) | {c:.2f} s | 1.00 |")
        print(f"| warm: runtime artifact cached, plugins' bytecode not ({args.runs} runs) | {fmt(no_bytecode)} "
              f"| {statistics.median(no_bytecode) / c:.3f} |")
        print(f"| warm: artifact and bytecode cached ({args.runs} runs) | {fmt(warm)} "
              f"| {statistics.median(warm) / c:.3f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
