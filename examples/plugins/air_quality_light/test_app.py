"""Tests of the air_quality_light example without WebAssembly:
scripts/test-plugins.sh examples/plugins/air_quality_light"""

from pathlib import Path

import pytest

from fakehost import FakeHost, GrantError, color_name

HERE = Path(__file__).parent
LED = 4


@pytest.fixture
def host():
    """The plugin with the grants and settings of its config entry (config.toml)."""
    with FakeHost.from_config("air_quality_light", config=HERE / "config.toml") as h:
        h.load(HERE)
        yield h


def light(host, iaq):
    """The bme680 plugin reports `iaq`; the host runs the automation."""
    host.readings.set("bme680", iaq_score=iaq)
    host.run()
    return color_name(host.leds[LED])


@pytest.mark.parametrize("iaq, color", [
    (0, "green"), (35, "green"), (99, "green"),
    (100, "yellow"), (150, "yellow"), (199, "yellow"),
    (200, "red"), (420, "red"),
])
def test_colour_from_the_bme680_plugins_iaq(host, iaq, color):
    assert light(host, iaq) == color


def test_one_beep_on_turning_red_and_none_while_red(host):
    assert light(host, 180) == "yellow" and host.buzzer.calls == []
    assert light(host, 230) == "red"
    assert host.buzzer.calls == [(1, 300, 0)]
    for iaq in (260, 240, 300):
        light(host, iaq)
    assert len(host.buzzer.calls) == 1


def test_hysteresis_keeps_it_from_flapping(host):
    assert light(host, 205) == "red"
    assert light(host, 195) == "red"        # below 200, not 15 below it
    assert light(host, 202) == "red"
    assert light(host, 185) == "red"        # 200 - 15: still held
    assert light(host, 184) == "yellow"
    assert light(host, 199) == "yellow"
    assert light(host, 200) == "red"        # up again at once, with a beep
    assert len(host.buzzer.calls) == 2
    assert light(host, 90) == "yellow"
    assert light(host, 85) == "yellow"
    assert light(host, 84) == "green"


def test_the_level_survives_a_reload_without_a_second_beep(host):
    assert light(host, 250) == "red" and len(host.buzzer.calls) == 1
    host.reload()
    assert light(host, 240) == "red"
    assert len(host.buzzer.calls) == 1
    assert light(host, 190) == "red", "hysteresis held across the reload"


def test_no_reading_keeps_the_known_colour(host):
    host.run()                              # nothing reported yet: nothing shown
    assert host.leds[LED] is None and host.leds.syncs == []
    light(host, 120)
    host.reload()                           # a new instance, and no reading yet
    host.readings.clear()
    host.run()
    assert color_name(host.leds[LED]) == "yellow"


def test_thresholds_come_from_its_settings(host):
    host.settings.update(yellow_iaq=50.0, red_iaq=80.0, led=5)
    host.grants["leds"] = [5]
    host.readings.set("bme680", iaq_score=85)
    host.run()
    assert color_name(host.leds[5]) == "red"


def test_it_needs_no_sensor_grant():
    host = FakeHost.from_config("air_quality_light", config=HERE / "config.toml")
    grants = host.grants
    assert "gpio-provider" not in grants["interfaces"]
    assert not grants.get("dht22_pins") and not grants.get("i2c_addresses")
    assert grants["follows"] == ["bme680"] and host.kind == "automation"
    host.close()


def test_an_led_it_is_not_granted_is_refused(host):
    host.settings["led"] = 1                # the dht22 plugin's
    host.readings.set("bme680", iaq_score=30)
    host.run()
    assert host.leds[1] is None
    assert host.log_lines("warn") == [
        "LED 1 failed: LED 1 is not granted: add it to `leds` in "
        "[plugins.air_quality_light.grants] (granted: [4])"]


def test_importing_a_sensor_interface_is_refused(tmp_path):
    # The same plugin, reading the BME680 itself: its config does not allow it.
    d = tmp_path / "air_quality_light"
    d.mkdir()
    (d / "app.py").write_text("from wit_world.imports import gpio_provider\n"
                              + (HERE / "app.py").read_text())
    with FakeHost.from_config("air_quality_light", config=HERE / "config.toml") as host:
        with pytest.raises(GrantError) as e:
            host.load(d)
    assert "imports gpio-provider but its config does not grant it" in e.value.message
