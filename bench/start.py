#!/usr/bin/env python3
"""Start-up benchmark: cold start (empty artifact cache) against warm start
(every plugin cached), side by side in one run.

Measures the time from spawning the host to the first `/api` response that
has readings from every sensor plugin and system stats (a "full /api").

    python3 bench/start.py [--runs N]

Needs the plugins built (scripts/build-plugins.sh) and the host built.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from common import api, start_host, write_config


def full_api(addr):
    a = api(addr)
    if a is None:
        return False
    ids = {r["sensor_id"] for r in a["readings"]}
    return "dht22-gpio-4" in ids and "bme680-i2c-0x77" in ids and a["system"] is not None


def start_once(config):
    t0 = time.monotonic()
    proc, addr = start_host(config, log="info")
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
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="whp-bench-")
    try:
        cold = []
        for i in range(args.cold_runs):
            state, cache = os.path.join(work, f"cold{i}"), os.path.join(work, f"cache{i}")
            os.makedirs(state)
            cold.append(start_once(write_config(os.path.join(state, "host.toml"), state, cache)))
            print(f"cold start {i + 1}: {cold[-1]:.2f} s", flush=True)
        warm = []
        for i in range(args.runs):
            state = os.path.join(work, f"warm{i}")
            os.makedirs(state)
            warm.append(start_once(write_config(os.path.join(state, "host.toml"), state, os.path.join(work, "cache0"))))
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
