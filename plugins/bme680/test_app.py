"""Tests of the bme680 plugin against the fake host (no WebAssembly).

Defaults under test (app.py's docstring, common/iaq.py): BME680 at 0x77, LED
2, IAQ warn 150 / alarm 250 with 20 points of hysteresis, temperature warn
28 / alarm 32 °C with 1 °C of hysteresis, a learnt clean-air gas baseline.
IAQ = (100 - humidity points (25 at 40 %RH) - gas points (75 * gas /
baseline)) * 5; the expected scores below are worked out by hand from that.
"""

import pytest

from fakehost import FakeHost, color_name

CLEAN = 50_000.0   # ohm; the first reading sets the baseline to it


@pytest.fixture
def bme(host):
    plugin = host.load("bme680")
    host.bme680(0x77).set(temperature_c=22.0, humidity_pct=40.0, pressure_hpa=1013.27,
                          gas_resistance_ohm=CLEAN, gas_valid=True)
    return plugin


def poll(plugin):
    [reading] = plugin.poll()
    return reading


def read(host, plugin, addr=0x77, **fields):
    host.bme680(addr).set(**fields)
    return poll(plugin)


def test_first_reading(host, bme):
    r = poll(bme)
    assert r.sensor_id == "bme680-i2c-0x77"
    assert (r.temperature, r.humidity) == (22.0, 40.0)
    assert r.pressure == pytest.approx(1013.3)
    assert r.gas_resistance == pytest.approx(50.0), "kilo-ohm"
    assert r.timestamp_ms == host.now_ms
    assert r.iaq_score == 0, "clean air (the baseline) at the ideal humidity"
    assert r.alert.name == "OK" and "excellent" in r.message
    assert color_name(host.leds[2]) == "green" and list(host.leds.shown) == [2]
    assert host.buzzer.calls == []


@pytest.mark.parametrize("gas, humidity, score, band", [
    (CLEAN, 40.0, 0, "excellent"),
    (CLEAN, 80.0, 83, "good"),              # (100 - 8.33 - 75) * 5
    (CLEAN, 10.0, 94, "good"),              # (100 - 6.25 - 75) * 5 = 93.75
    (CLEAN / 2, 40.0, 188, "moderately polluted"),   # (100 - 25 - 37.5) * 5 = 187.5
    (CLEAN / 4, 40.0, 281, "severely polluted"),     # (100 - 25 - 18.75) * 5
    (CLEAN / 2, 70.0, 250, "heavily polluted"),      # (100 - 12.5 - 37.5) * 5
])
def test_iaq_score_and_band(host, bme, gas, humidity, score, band):
    poll(bme)                                   # learns the baseline
    r = read(host, bme, gas_resistance_ohm=gas, humidity_pct=humidity)
    assert abs(r.iaq_score - score) <= 1
    assert band in r.message


@pytest.mark.parametrize("gas, expected, color", [
    (CLEAN, "ok", "green"), (CLEAN / 2, "warn", "amber"), (CLEAN / 4, "alarm", "red")])
def test_iaq_levels_and_led(host, bme, gas, expected, color):
    poll(bme)
    r = read(host, bme, gas_resistance_ohm=gas)
    assert r.alert.name.lower() == expected
    assert color_name(host.leds[2]) == color
    assert len(host.buzzer.calls) == (1 if expected == "alarm" else 0)


def test_humidity_term_raises_the_score(host, bme):
    poll(bme)
    scores = [read(host, bme, humidity_pct=h).iaq_score for h in (40.0, 55.0, 70.0, 85.0, 100.0)]
    assert scores == sorted(scores) and scores[0] < scores[-1]
    assert scores[-1] == 125, "humidity alone costs at most 25 points = 125 IAQ"


def test_baseline_learns_cleaner_air(host, bme):
    assert poll(bme).iaq_score == 0
    assert read(host, bme, gas_resistance_ohm=CLEAN * 2).iaq_score == 0   # new, higher baseline
    r = read(host, bme, gas_resistance_ohm=CLEAN)                      # now half the baseline
    assert abs(r.iaq_score - 188) <= 1


def test_fixed_baseline_setting(host):
    host.settings["gas_baseline_ohm"] = 100_000.0
    plugin = host.load("bme680")
    r = read(host, plugin, gas_resistance_ohm=50_000.0, humidity_pct=40.0)
    assert abs(r.iaq_score - 188) <= 1, "not learnt from the first reading"
    r = read(host, plugin, gas_resistance_ohm=200_000.0)
    assert r.iaq_score == 0
    r = read(host, plugin, gas_resistance_ohm=50_000.0)
    assert abs(r.iaq_score - 188) <= 1, "a fixed baseline does not move"


def test_baseline_survives_a_reload(host, bme):
    read(host, bme, gas_resistance_ohm=CLEAN * 2)
    plugin = host.reload()
    r = read(host, plugin, gas_resistance_ohm=CLEAN)
    assert abs(r.iaq_score - 188) <= 1, "a fresh learner would have scored 0"


def test_baseline_follows_slow_drift(host, bme):
    # The baseline is the highest resistance seen, "decaying slowly so that
    # sensor drift is followed" (iaq.py): after a long time at a lower
    # resistance, the same reading scores better than right after the drop.
    read(host, bme, gas_resistance_ohm=100_000.0)
    first = read(host, bme, gas_resistance_ohm=50_000.0).iaq_score
    for _ in range(1500):
        last = poll(bme).iaq_score
    # baseline ~ 50k + 50k * 0.9999^1500 = 93k: (100 - 25 - 75 * 50/93) * 5 = 173.5
    assert first - last >= 10, (first, last)
    assert host.state_json("alert")["baseline"] < 98_000, "the drift is saved too"


def test_iaq_hysteresis(host, bme):
    poll(bme)
    seq = [(CLEAN / 4, "alarm"),        # 281
           (CLEAN * 0.36, "alarm"),     # 240: inside 250 - 20
           (CLEAN * 0.40, "warn"),      # 225
           (CLEAN * 0.62, "warn"),      # 142.5: inside 150 - 20
           (CLEAN * 0.66, "ok")]        # 127.5
    got = [(g, read(host, bme, gas_resistance_ohm=g).alert.name.lower()) for g, _ in seq]
    assert got == seq
    assert len(host.buzzer.calls) == 1


def test_temperature_alarm(host, bme):
    r = read(host, bme, temperature_c=33.0)
    assert r.alert.name == "ALARM" and "temperature" in r.message and r.iaq_score == 0
    assert len(host.buzzer.calls) == 1 and host.buzzer.calls[0][0] == 3
    r = read(host, bme, temperature_c=31.5)
    assert r.alert.name == "ALARM"
    r = read(host, bme, temperature_c=30.0)
    assert r.alert.name == "WARN"


def test_beeps_once_per_alarm(host, bme):
    poll(bme)
    for _ in range(3):
        read(host, bme, gas_resistance_ohm=CLEAN / 4)
    assert len(host.buzzer.calls) == 1
    read(host, bme, gas_resistance_ohm=CLEAN)
    read(host, bme, gas_resistance_ohm=CLEAN / 4)
    assert len(host.buzzer.calls) == 2


def test_alarm_survives_a_reload_without_beeping(host, bme):
    poll(bme)
    read(host, bme, gas_resistance_ohm=CLEAN / 4)
    assert len(host.buzzer.calls) == 1
    plugin = host.reload()
    r = poll(plugin)
    assert r.alert.name == "ALARM" and color_name(host.leds[2]) == "red"
    assert len(host.buzzer.calls) == 1


def test_gas_not_valid_yet(host, bme):
    r = read(host, bme, gas_valid=False, gas_resistance_ohm=0.0)
    assert "not stable" in r.message and "no IAQ score" in r.message
    assert r.iaq_score == 0xFFFF, "no score, never 0 (\"excellent\") for an invalid gas value"
    assert "excellent" not in r.message
    assert r.alert.name == "OK", "no IAQ alert without a gas value"
    assert "baseline" not in host.state_json("alert") or host.state_json("alert")["baseline"] is None
    r = read(host, bme, gas_valid=True, gas_resistance_ohm=CLEAN)
    assert r.iaq_score == 0, "the invalid 0 ohm did not become the baseline"


def test_gas_not_valid_keeps_an_iaq_alarm(host, bme):
    poll(bme)
    read(host, bme, gas_resistance_ohm=CLEAN / 4)
    r = read(host, bme, gas_valid=False)
    assert r.alert.name == "ALARM" and color_name(host.leds[2]) == "red"
    r = read(host, bme, gas_valid=True, gas_resistance_ohm=CLEAN / 4)
    assert r.alert.name == "ALARM"
    assert len(host.buzzer.calls) == 1, "no second beep for the same alarm"


def test_sensor_error(host, bme):
    host.bme680(0x77).fail("I2C NACK")
    assert bme.poll() == []
    assert any("I2C NACK" in line for line in host.log_lines("warn"))
    host.bme680(0x77).set(gas_resistance_ohm=CLEAN)
    good = poll(bme)
    host.advance(seconds=6)
    host.bme680(0x77).fail("I2C NACK")
    r = poll(bme)
    assert (r.temperature, r.humidity, r.pressure, r.gas_resistance, r.iaq_score) == (
        good.temperature, good.humidity, good.pressure, good.gas_resistance, good.iaq_score)
    assert r.timestamp_ms == good.timestamp_ms and r.alert.name == good.alert.name
    assert "sensor error" in r.message and "I2C NACK" in r.message and "6 s" in r.message


def test_settings(host):
    host.settings.update(address=0x76, led=0, iaq_warn=50.0, iaq_alarm=100.0, iaq_hysteresis=5.0,
                         beep_count=1, beep_ms=500)
    plugin = host.load("bme680")
    host.bme680(0x76).set()
    r = poll(plugin)
    assert r.sensor_id == "bme680-i2c-0x76" and host.bme680(0x77).reads == 0
    r = read(host, plugin, 0x76, humidity_pct=85.0)   # (100 - 6.25 - 75) * 5 = 93.75: warn at 50
    assert r.alert.name == "WARN" and color_name(host.leds[0]) == "amber"
    r = read(host, plugin, 0x76, humidity_pct=40.0, gas_resistance_ohm=CLEAN / 2)  # 188
    assert r.alert.name == "ALARM" and host.buzzer.calls == [(1, 500, 150)]
    assert host.log_lines("warn") == []


def test_works_within_the_shipped_grants():
    with FakeHost.from_config("bme680") as host:
        plugin = host.load()
        host.bme680(0x77).set()
        assert poll(plugin).alert.name == "OK"
        assert list(host.leds.shown) == [2]
