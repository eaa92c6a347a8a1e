"""Tests of the dht22 plugin against the fake host (no WebAssembly).

Defaults under test (app.py's docstring, README): DHT22 on GPIO 4, LED 1,
temperature warn 28 / alarm 32 °C with 1 °C hysteresis, humidity warn 70 /
alarm 85 % with 3 % hysteresis, three beeps on entering alarm.
"""

import pytest

from fakehost import Fail, FakeHost, color_name


@pytest.fixture
def dht(host):
    plugin = host.load("dht22")
    host.dht22(pin=4).set(21.0, 45.0)
    return plugin


def poll(plugin):
    [reading] = plugin.poll()
    return reading


def level(plugin):
    return poll(plugin).alert.name.lower()


def test_ok_reading(host, dht):
    host.dht22(4).set(21.46, 45.04)
    r = poll(dht)
    assert r.sensor_id == "dht22-gpio-4"
    assert (r.temperature, r.humidity) == (21.5, 45.0)   # one decimal
    assert r.timestamp_ms == host.now_ms
    assert r.alert.name == "OK" and r.message == ""
    assert color_name(host.leds[1]) == "green"
    assert host.leds.syncs and host.leds.buffer == {}     # shown, not just buffered
    assert host.buzzer.calls == []


@pytest.mark.parametrize("temperature, humidity, expected, color", [
    (27.9, 45.0, "ok", "green"),
    (28.0, 45.0, "warn", "amber"),
    (31.9, 45.0, "warn", "amber"),
    (32.0, 45.0, "alarm", "red"),
    (21.0, 70.0, "warn", "amber"),
    (21.0, 85.0, "alarm", "red"),
    (29.0, 86.0, "alarm", "red"),   # the worse of the two
])
def test_levels_and_led_colours(host, dht, temperature, humidity, expected, color):
    host.dht22(4).set(temperature, humidity)
    r = poll(dht)
    assert r.alert.name.lower() == expected
    assert color_name(host.leds[1]) == color
    assert list(host.leds.shown) == [1], "only its own LED"
    if expected != "ok":
        assert r.message and ("temperature" in r.message or "humidity" in r.message)


def test_beeps_once_on_entering_alarm(host, dht):
    host.dht22(4).set(33.0, 45.0)
    assert level(dht) == "alarm"
    assert len(host.buzzer.calls) == 1 and host.buzzer.calls[0][0] == 3
    for t in (33.5, 34.0, 32.0, 31.2):
        host.dht22(4).set(t, 45.0)
        assert level(dht) == "alarm"
    assert len(host.buzzer.calls) == 1, "no beep while already in alarm"
    host.dht22(4).set(30.0, 45.0)
    assert level(dht) == "warn"
    host.dht22(4).set(32.5, 45.0)
    assert level(dht) == "alarm"
    assert len(host.buzzer.calls) == 2, "beeps again after leaving and re-entering"


def test_warn_does_not_beep(host, dht):
    host.dht22(4).set(30.0, 75.0)
    assert level(dht) == "warn"
    assert host.buzzer.calls == []


def test_hysteresis_temperature(host, dht):
    seq = [(32.0, "alarm"), (31.5, "alarm"), (31.0, "alarm"), (30.9, "warn"), (31.9, "warn"),
           (27.5, "warn"), (27.0, "warn"), (26.9, "ok"), (27.9, "ok"), (28.0, "warn")]
    got = []
    for t, _ in seq:
        host.dht22(4).set(t, 45.0)
        got.append((t, level(dht)))
    assert got == seq


def test_hysteresis_humidity(host, dht):
    seq = [(85.0, "alarm"), (83.0, "alarm"), (82.0, "alarm"), (81.9, "warn"), (67.5, "warn"),
           (66.9, "ok")]
    got = []
    for h, _ in seq:
        host.dht22(4).set(21.0, h)
        got.append((h, level(dht)))
    assert got == seq


def test_no_flapping_while_hovering_at_the_threshold(host, dht):
    colours = []
    for t in (31.9, 32.1, 31.8, 32.0, 31.4, 32.3, 31.1, 32.0):
        host.dht22(4).set(t, 45.0)
        dht.poll()
        colours.append(color_name(host.leds[1]))
    assert colours == ["amber"] + ["red"] * 7
    assert len(host.buzzer.calls) == 1


def test_held_alarm_message_is_not_a_false_crossing(host, dht):
    host.dht22(4).set(33.0, 45.0)
    assert "at or above" in poll(dht).message
    host.dht22(4).set(31.5, 45.0)
    r = poll(dht)
    assert r.alert.name == "ALARM" and "31.5" in r.message and "at or above" not in r.message


def test_settings_override_defaults(host):
    host.settings.update(pin=17, led=3, sensor_id="dht22-greenhouse", temp_warn_c=20.0,
                         temp_alarm_c=25, temp_hysteresis_c=0.5, beep_count=5, beep_ms=50)
    plugin = host.load("dht22")
    host.dht22(17).set(25.0, 40.0)
    r = poll(plugin)
    assert r.sensor_id == "dht22-greenhouse" and r.alert.name == "ALARM"
    assert host.dht22(17).reads == 1 and host.dht22(4).reads == 0
    assert color_name(host.leds[3]) == "red" and 1 not in host.leds.shown
    assert [c[:2] for c in host.buzzer.calls] == [(5, 50)]
    host.dht22(17).set(24.6, 40.0)
    assert level(plugin) == "alarm"       # 25 - 0.5
    host.dht22(17).set(24.4, 40.0)
    assert level(plugin) == "warn"
    assert host.log_lines("warn") == []


def test_settings_are_read_every_poll(host, dht):
    host.dht22(4).set(26.0, 45.0)
    assert level(dht) == "ok"
    host.settings["temp_warn_c"] = 25.0
    assert level(dht) == "warn"


def test_sensor_id_follows_the_pin(host):
    host.settings["pin"] = 22
    plugin = host.load("dht22")
    host.dht22(22).set(20.0, 40.0)
    assert poll(plugin).sensor_id == "dht22-gpio-22"


def test_a_malformed_setting_falls_back_with_a_warning(host):
    host.settings["temp_alarm_c"] = "hot"
    plugin = host.load("dht22")
    host.dht22(4).set(32.0, 40.0)
    assert level(plugin) == "alarm"       # the default 32 °C
    assert any("temp_alarm_c" in line for line in host.log_lines("warn"))


def test_state_survives_a_reload(host, dht):
    host.dht22(4).set(33.0, 45.0)
    assert level(dht) == "alarm"
    assert len(host.buzzer.calls) == 1
    plugin = host.reload()
    assert plugin is not dht
    r = poll(plugin)
    assert r.alert.name == "ALARM" and color_name(host.leds[1]) == "red"
    assert len(host.buzzer.calls) == 1, "a reload must not beep again for a known alarm"
    host.dht22(4).set(31.5, 45.0)           # inside the band: the persisted level holds
    assert level(plugin) == "alarm"


def test_reload_into_a_new_host_process_keeps_state(host, dht):
    # A restart: the state store is all that is carried over.
    host.dht22(4).set(33.0, 45.0)
    dht.poll()
    fresh = FakeHost()
    fresh.state = dict(host.state)
    plugin = fresh.load("dht22")
    fresh.dht22(4).set(33.0, 45.0)
    assert level(plugin) == "alarm" and fresh.buzzer.calls == []
    fresh.close()


def test_sensor_error_before_any_reading_returns_nothing(host, dht):
    host.dht22(4).fail("no response")
    assert dht.poll() == []
    assert any("no response" in line for line in host.log_lines("warn"))
    assert host.buzzer.calls == []


def test_sensor_error_returns_the_last_reading_marked(host, dht):
    host.dht22(4).set(29.04, 55.0)
    first = poll(dht)
    host.advance(seconds=10)
    host.dht22(4).fail("checksum mismatch")
    r = poll(dht)
    assert (r.sensor_id, r.temperature, r.humidity) == (first.sensor_id, 29.0, 55.0)
    assert r.timestamp_ms == first.timestamp_ms, "the time of the reading shown"
    assert r.alert.name == "WARN"
    assert "sensor error" in r.message and "checksum mismatch" in r.message and "10 s" in r.message
    host.dht22(4).set(21.0, 45.0)
    r = poll(dht)
    assert r.alert.name == "OK" and "sensor error" not in r.message


def test_a_failing_read_keeps_the_alarm(host, dht):
    host.dht22(4).queue((33.0, 45.0), Fail("timeout"), (33.0, 45.0))
    assert level(dht) == "alarm"
    r = poll(dht)
    assert r.alert.name == "ALARM" and "sensor error" in r.message
    assert level(dht) == "alarm"
    assert len(host.buzzer.calls) == 1


def test_sensor_error_after_a_reload_returns_nothing(host, dht):
    dht.poll()
    plugin = host.reload()              # the last reading was only in memory
    host.dht22(4).fail("timeout")
    assert plugin.poll() == []


def test_state_is_written_only_when_the_level_changes(host, dht):
    for _ in range(5):
        dht.poll()
    assert len(host.state_writes) <= 1
    host.dht22(4).set(29.0, 45.0)
    dht.poll()
    writes = len(host.state_writes)
    for _ in range(5):
        dht.poll()
    assert len(host.state_writes) == writes


def test_works_within_the_shipped_grants():
    with FakeHost.from_config("dht22") as host:
        plugin = host.load()
        host.dht22(4).set(33.0, 40.0)
        assert level(plugin) == "alarm"
        assert list(host.leds.shown) == [1] and len(host.buzzer.calls) == 1
