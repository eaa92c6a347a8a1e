# wit-world: dht22-plugin
"""A deliberately hostile plugin for the sandbox tests.

Its `mode` setting picks the attack; every mode is one thing an untrusted
plugin might do. Modes that "succeed" report what happened in the reading's
message so the test can check it from /api.
"""

import os
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import buzzer_controller, gpio_provider, led_controller, log, settings
from wit_world.imports.types import AlertLevel, Dht22Reading, Rgb

_calls = 0


def mode():
    raw = settings.get("mode") or '"ok"'
    return raw.strip('"')


def prefix():
    """The plugin's name (setting `name`), which its sensor ids start with:
    a plugin may only report ids it owns."""
    raw = settings.get("name")
    return raw.strip('"') if raw else "hostile"


def reading(suffix, message=""):
    return Dht22Reading(sensor_id=f"{prefix()}-{suffix}", temperature=20.0, humidity=50.0,
                        timestamp_ms=gpio_provider.get_timestamp_ms(), alert=AlertLevel.OK,
                        message=message)


def attempt(name, action):
    """Runs one escape attempt; reports BLOCKED or ESCAPED."""
    try:
        result = action()
    except BaseException as e:  # noqa: BLE001 - every failure is a success here
        return reading(f"escape-{name}", f"blocked: {type(e).__name__}: {e}")
    return reading(f"escape-{name}", f"ESCAPED: {result!r}"[:300])


def escapes():
    # Each attempt imports what it needs itself: componentize-py's CPython
    # has no `_socket` or `_posixsubprocess`, and a missing module is one of
    # the ways an escape is blocked.

    def read_passwd():
        with open("/etc/passwd") as f:
            return f.read(100)

    def write_file():
        with open("/tmp/whp-hostile-was-here", "w") as f:
            f.write("pwned")
        return "wrote /tmp/whp-hostile-was-here"

    def env():
        # A sandbox with no environment has nothing here; anything the host
        # process has (PATH, HOME) would be a leak.
        leaked = {k: v for k, v in os.environ.items()}
        if not leaked:
            raise PermissionError("environment is empty")
        return leaked

    def tcp():
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.2)
        s.connect(("127.0.0.1", 22))
        return "connected"

    def udp():
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"hello", ("127.0.0.1", 53))
        return "sent"

    def dns():
        import socket
        return socket.getaddrinfo("localhost", 80)

    def spawn():
        import subprocess
        return subprocess.run(["/bin/sh", "-c", "id"], capture_output=True).stdout

    def list_root():
        return os.listdir("/")

    def args():
        if len(sys.argv) <= 1 and not any(sys.argv):
            raise PermissionError("no arguments")
        return sys.argv

    return [attempt(n, f) for n, f in [
        ("read-passwd", read_passwd), ("list-root", list_root), ("write-file", write_file),
        ("env", env), ("tcp", tcp), ("udp", udp), ("dns", dns), ("spawn", spawn), ("args", args),
    ]]


def spin_forever():
    while True:
        pass


def deep(n):
    return deep(n + 1) + 1


class Dht22Logic(exports.Dht22Logic):
    def poll(self) -> list[Dht22Reading]:
        global _calls
        _calls += 1
        m = mode()
        if m == "ok":
            return [reading("ok", f"call {_calls}")]
        if m == "spin":
            spin_forever()
        if m == "fuel":
            total = 0
            for i in range(10**9):
                total += i
            return [reading("fuel", str(total))]
        if m == "memory":
            hog = []
            while True:
                hog.append(bytearray(1 << 20))
        if m == "recursion":
            sys.setrecursionlimit(10**7)
            deep(0)
        if m == "raise":
            raise RuntimeError("boom from the hostile plugin")
        if m == "huge":
            return [reading("x" * (4 << 20))]
        if m == "many":
            return [reading(f"r{i}") for i in range(10_000)]
        if m == "flood":
            for _ in range(100_000):
                print("flood " * 20)
            return [reading("flood")]
        if m == "ungranted":
            results = []
            for name, action in [
                ("pin17", lambda: gpio_provider.read_dht22(17)),
                ("bme76", lambda: gpio_provider.read_bme680(0x76)),
                ("led2", lambda: led_controller.set_led(2, Rgb(r=255, g=0, b=0))),
            ]:
                try:
                    action()
                    results.append(f"{name}: ALLOWED")
                except Err as e:
                    results.append(f"{name}: refused: {e.value}")
            return [reading("ungranted", " | ".join(results))]
        if m == "spam":
            beeps = syncs = refused = 0
            for i in range(200):
                try:
                    buzzer_controller.buzz(2000)
                    beeps += 1
                except Err:
                    refused += 1
                try:
                    led_controller.set_led(3, Rgb(r=i % 256, g=0, b=0))
                    led_controller.sync_leds()
                    syncs += 1
                except Err:
                    refused += 1
            return [reading("spam", f"beeps={beeps} syncs={syncs} refused={refused}")]
        if m == "escape":
            return escapes()
        if m == "led-then-raise":
            led_controller.set_led(3, Rgb(r=255, g=0, b=0))
            led_controller.sync_leds()
            if _calls > 1:
                raise RuntimeError("failing with LED 3 on")
            return [reading("led", "LED 3 is red")]
        if m == "buzz-then-spin":
            buzzer_controller.buzz(2000)
            spin_forever()
        if m == "churn":
            # A fresh set of 32 sensor ids on every poll (issue 16, item 12).
            return [reading(f"churn-{_calls}-{i}") for i in range(32)]
        if m == "forge-log":
            # Control characters that would rewrite or forge log lines
            # (issue 16, low item): through the log interface and stdout.
            log.write(log.Level.WARN, "ok\rFORGED: all good\n[host] forged line \x1b[2Jwiped")
            print("out\rFORGED-STDOUT \x1b[31mred\u202e")
            return [reading("forge-log", f"call {_calls}")]
        if m == "slow10":
            if _calls % 10 == 0:
                spin_forever()
            return [reading("slow10", f"call {_calls}")]
        if m == "sleep":
            # A WASI clock wait is a host call the epoch cannot interrupt.
            import time
            time.sleep(100_000)
            return [reading("slept")]
        if m == "nap":
            # A wait that fits in the call's deadline is allowed.
            import time
            time.sleep(0.05)
            return [reading("napped", f"call {_calls}")]
        if m == "forge":
            # Another plugin's sensor id, with an alarming value.
            return [Dht22Reading(sensor_id="dht22-gpio-4", temperature=99.0, humidity=50.0,
                                 timestamp_ms=gpio_provider.get_timestamp_ms(),
                                 alert=AlertLevel.ALARM, message="forged")]
        if m == "future":
            r = reading("future")
            r.timestamp_ms = 2**64 - 1
            return [r]
        if m == "ids":
            # Eight new sensor ids on every poll.
            return [reading(f"churn-{_calls}-{i}") for i in range(8)]
        if m == "state-spam":
            # 200 writes in one call (each a full, fsynced file rewrite once).
            from wit_world.imports import state
            for i in range(200):
                state.set("counter", str(_calls * 1000 + i).encode())
            return [reading("state", f"call {_calls}")]
        raise ValueError(f"unknown mode {m}")
