#!/usr/bin/env python3
"""The native side of the call-overhead comparison: the shipped plugins'
app.py run in-process by this CPython, with plugins/testing/fakehost as the
thin shim standing in for the generated bindings (it checks arguments like
the bindings and answers like the host, from memory: no hardware thread, no
channel). Same calls and snapshot as examples/callbench.rs.

    python3 bench/native_calls.py [--iters N] [--plugins dht22,bme680,...]

Prints one JSON object per plugin: median, p99 and mean per call in µs.
"""

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "plugins", "testing")]

from fakehost import FakeHost  # noqa: E402


def snapshot(host):
    d = host.wit.exports.dashboard
    t = host.types
    ts, ok = 1_737_073_200_000, t.AlertLevel.OK

    def reading(sensor_id, fields, message=""):
        return t.Reading(sensor_id=sensor_id, timestamp_ms=ts, alert=ok, message=message,
                         fields=[t.Field(name=n, value=float(v), unit=u, device_class=c)
                                 for n, v, u, c in fields])
    # Every reading again as the generic record, as the scheduler sends it
    # (examples/callbench.rs builds the same snapshot).
    readings = [
        t.FollowedReading(plugin="dht22", reading=reading("dht22-gpio-4", [
            ("temperature", 21.5, "°C", "temperature"), ("humidity", 40.9, "%", "humidity")])),
        t.FollowedReading(plugin="bme680", reading=reading("bme680-i2c-0x77", [
            ("temperature", 22.1, "°C", "temperature"), ("humidity", 38.5, "%", "humidity"),
            ("pressure", 1013.2, "hPa", "atmospheric_pressure"), ("gas_resistance", 150.5, "kΩ", None),
            ("iaq_score", 35, "", "aqi")], "air excellent")),
    ]
    return d.Snapshot(
        readings=readings,
        dht22=[t.Dht22Reading(sensor_id="dht22-gpio-4", temperature=21.5, humidity=40.9,
                              timestamp_ms=1_737_073_200_000, alert=t.AlertLevel.OK, message="")],
        bme680=[t.Bme680Reading(sensor_id="bme680-i2c-0x77", temperature=22.1, humidity=38.5,
                                pressure=1013.2, gas_resistance=150.5, iaq_score=35,
                                timestamp_ms=1_737_073_200_000, alert=t.AlertLevel.OK,
                                message="air excellent")],
        system=t.PiStats(cpu_temp_c=48.2, ram_used_mb=210, ram_total_mb=427, uptime_s=3600,
                         load_1m=0.3, timestamp_ms=1_737_073_200_000, alert=t.AlertLevel.OK,
                         message=""),
        leds=[t.Rgb(r=0, g=255, b=0)] * 3,
        buzzer_active=False,
        plugins=[d.PluginInfo(name=n, status="running", last_error="", calls=12, failures=0)
                 for n in ("dht22", "bme680", "pi_monitor", "dashboard")],
        hardware="sim",
        last_update_ms=1_737_073_200_000,
    )


def bench(name, iters):
    host = FakeHost.from_config(name, echo_logs=False)
    plugin = host.load(name)
    host.dht22(4).set(21.5, 40.9)
    host.bme680(0x77).set(temperature_c=22.1, gas_resistance_ohm=150500.0)
    host.cpu_temp.set(48.2)
    host.system.set()
    if name == "dashboard":
        snap = snapshot(host)
        call = lambda: plugin.render(snap)  # noqa: E731
    else:
        call = plugin.poll
    for _ in range(20):
        call()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
        host.logs.clear()
    times.sort()
    pick = lambda p: times[round((len(times) - 1) * p)] * 1e6  # noqa: E731
    return {"plugin": name, "call": "render" if name == "dashboard" else "poll", "mode": "cpython",
            "n": iters, "median_us": round(pick(0.5), 2), "p99_us": round(pick(0.99), 2),
            "mean_us": round(statistics.fmean(times) * 1e6, 2),
            "python": sys.version.split()[0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--plugins", default="dht22,bme680,pi_monitor,dashboard")
    args = ap.parse_args()
    for name in args.plugins.split(","):
        print(json.dumps(bench(name, args.iters)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
