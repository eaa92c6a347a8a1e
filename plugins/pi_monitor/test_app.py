"""Tests of the pi_monitor plugin against the fake host (no WebAssembly).

Defaults under test (app.py's docstring): LED 0, CPU warn 70 / alarm 80 °C
with 3 °C hysteresis, RAM use warn 85 / alarm 95 % with 3 % hysteresis.
"""

import pytest

from fakehost import FakeHost, color_name

MIB = 1024 * 1024


@pytest.fixture
def pi(host):
    plugin = host.load("pi_monitor")
    host.cpu_temp.set(48.0)
    host.system.set(ram_used_bytes=256 * MIB, ram_total_bytes=1024 * MIB, uptime_s=7200,
                    load_1m=0.456)
    return plugin


def level(plugin):
    return plugin.poll().alert.name.lower()


def test_ok_stats(host, pi):
    s = pi.poll()
    assert s.cpu_temp_c == 48.0
    assert (s.ram_used_mb, s.ram_total_mb, s.uptime_s) == (256, 1024, 7200)
    assert s.load_1m == pytest.approx(0.46)
    assert s.timestamp_ms == host.now_ms
    assert s.alert.name == "OK" and s.message == ""
    assert color_name(host.leds[0]) == "green" and list(host.leds.shown) == [0]
    assert host.buzzer.calls == []


@pytest.mark.parametrize("cpu, used_pct, expected, color", [
    (69.9, 25, "ok", "green"), (70.0, 25, "warn", "amber"), (80.0, 25, "alarm", "red"),
    (48.0, 85, "warn", "amber"), (48.0, 95, "alarm", "red"), (75.0, 96, "alarm", "red")])
def test_levels_and_led(host, pi, cpu, used_pct, expected, color):
    host.cpu_temp.set(cpu)
    host.system.set(ram_used_bytes=used_pct * 1000 * MIB // 100, ram_total_bytes=1000 * MIB)
    s = pi.poll()
    assert s.alert.name.lower() == expected
    assert color_name(host.leds[0]) == color
    if expected != "ok":
        assert ("CPU" in s.message) or ("RAM" in s.message)


def test_beeps_once_per_alarm(host, pi):
    host.cpu_temp.set(85.0)
    assert level(pi) == "alarm"
    assert level(pi) == "alarm"
    assert len(host.buzzer.calls) == 1
    host.cpu_temp.set(60.0)
    assert level(pi) == "ok"
    host.cpu_temp.set(81.0)
    assert level(pi) == "alarm"
    assert len(host.buzzer.calls) == 2


def test_cpu_hysteresis(host, pi):
    seq = [(80.0, "alarm"), (78.0, "alarm"), (77.0, "alarm"), (76.9, "warn"), (79.9, "warn"),
           (67.0, "warn"), (66.9, "ok"), (69.9, "ok")]
    got = []
    for t, _ in seq:
        host.cpu_temp.set(t)
        got.append((t, level(pi)))
    assert got == seq


def test_ram_hysteresis(host, pi):
    total = 1000 * MIB
    got = []
    seq = [(95.0, "alarm"), (92.5, "alarm"), (91.5, "warn"), (82.5, "warn"), (81.5, "ok")]
    for pct, _ in seq:
        host.system.set(ram_used_bytes=int(pct * total / 100), ram_total_bytes=total)
        got.append((pct, level(pi)))
    assert got == seq


def test_alarm_survives_a_reload(host, pi):
    host.cpu_temp.set(85.0)
    assert level(pi) == "alarm"
    plugin = host.reload()
    assert level(plugin) == "alarm" and color_name(host.leds[0]) == "red"
    assert len(host.buzzer.calls) == 1


def test_cpu_temperature_error(host, pi):
    host.cpu_temp.fail("no thermal zone")
    s = pi.poll()
    assert "CPU temperature unavailable" in s.message and "no thermal zone" in s.message
    assert (s.ram_used_mb, s.ram_total_mb) == (256, 1024), "the rest is still reported"
    assert any("no thermal zone" in line for line in host.log_lines("warn"))


def test_a_cpu_read_error_keeps_the_alarm(host, pi):
    host.cpu_temp.set(85.0)
    assert level(pi) == "alarm"
    host.cpu_temp.fail("busy")
    s = pi.poll()
    assert s.alert.name == "ALARM" and color_name(host.leds[0]) == "red"
    host.cpu_temp.set(85.0)
    assert level(pi) == "alarm"
    assert len(host.buzzer.calls) == 1, "the same alarm must not beep again"


def test_system_stats_error(host, pi):
    host.system.fail("/proc unreadable")
    s = pi.poll()
    assert s.cpu_temp_c == 48.0 and s.alert.name == "OK"
    assert "system stats unavailable" in s.message and "/proc unreadable" in s.message
    assert (s.ram_used_mb, s.ram_total_mb, s.uptime_s) == (0, 0, 0)


def test_both_errors(host, pi):
    host.cpu_temp.fail("a")
    host.system.fail("b")
    s = pi.poll()
    assert s.alert.name == "OK" and "CPU" in s.message and "system" in s.message


def test_settings(host):
    host.settings.update(led=2, cpu_warn_c=50.0, cpu_alarm_c=60.0, cpu_hysteresis_c=1.0,
                         ram_warn_pct=40.0, ram_alarm_pct=50.0, beep_count=4, beep_ms=100)
    plugin = host.load("pi_monitor")
    host.cpu_temp.set(55.0)
    host.system.set(ram_used_bytes=300 * MIB, ram_total_bytes=1000 * MIB)
    s = plugin.poll()
    assert s.alert.name == "WARN" and color_name(host.leds[2]) == "amber"
    host.system.set(ram_used_bytes=500 * MIB)
    assert level(plugin) == "alarm"
    assert [c[:2] for c in host.buzzer.calls] == [(4, 100)]
    assert host.log_lines("warn") == []


def test_works_within_the_shipped_grants():
    with FakeHost.from_config("pi_monitor") as host:
        plugin = host.load()
        host.cpu_temp.set(50.0)
        host.system.set()
        assert level(plugin) == "ok" and list(host.leds.shown) == [0]
