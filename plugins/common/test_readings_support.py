"""Tests of readings_support.py: building readings the host accepts, and
finding values in followed readings."""

import pytest

from fakehost import FakeHost

SENSOR = """
from wit_world import exports
from readings_support import field, reading

class Sensor(exports.Sensor):
    def poll(self):
        return [reading("probe", [field("co2", 612, "ppm", "carbon_dioxide"), field("ok", 1)],
                        1_700_000_000_000, level=1, message="stuffy")]
"""


@pytest.fixture
def rs(host):
    host.load("dht22")  # any plugin: the module needs no grant
    return host.module("readings_support")


def test_a_reading_as_the_host_takes_it(tmp_path):
    d = tmp_path / "probe"
    d.mkdir()
    (d / "app.py").write_text(SENSOR)
    with FakeHost(grants={"interfaces": []}) as host:     # no grant at all
        [r] = host.load(d).poll()                        # and the host's checks pass
    assert (r.sensor_id, r.alert.name, r.message) == ("probe", "WARN", "stuffy")
    assert [(f.name, f.value, f.unit, f.device_class) for f in r.fields] == [
        ("co2", 612.0, "ppm", "carbon_dioxide"), ("ok", 1.0, "", None)]
    assert isinstance(r.fields[0].value, float)


def test_finding_values_in_followed_readings(host, rs):
    host.readings.set("dht22", temperature=20.5, humidity=41.0)
    host.readings.set("weather", "weather-roof", wind=(3.0, "m/s"))
    host.readings.set("weather", "weather-garden", wind=(1.0, "m/s"), temperature=(18.0, "°C"))
    followed = host.readings.latest()
    assert rs.find_reading(followed).plugin == "dht22"
    assert rs.find_reading(followed, plugin="weather").reading.sensor_id == "weather-roof"
    garden = rs.find_reading(followed, plugin="weather", has=("temperature",))
    assert garden.reading.sensor_id == "weather-garden"
    assert rs.find_reading(followed, sensor_id="weather-garden") is garden
    assert rs.find_reading(followed, has=("pressure",)) is None
    assert rs.field_value(garden, "wind") == 1.0
    assert rs.field_value(garden.reading, "temperature") == 18.0
    assert rs.field_value(garden, "pressure", default=-1) == -1
    assert rs.field_value(None, "wind") is None
    assert rs.values(followed[0]) == {"temperature": 20.5, "humidity": 41.0}
    assert rs.values(None) == {}


def test_alert_levels(host, rs):
    assert [rs.alert_level(i).name for i in (0, 1, 2)] == ["OK", "WARN", "ALARM"]
