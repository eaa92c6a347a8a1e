"""Tests of the dew_point example without WebAssembly:
scripts/test-plugins.sh examples/plugins/dew_point"""

from pathlib import Path

import pytest

from fakehost import BadResult, FakeHost, LoadError

HERE = Path(__file__).parent


@pytest.fixture
def host():
    """The plugin with the grants of its config entry (config.toml)."""
    with FakeHost.from_config("dew_point", config=HERE / "config.toml") as h:
        h.load(HERE)
        yield h


@pytest.mark.parametrize("temperature, humidity, dew_point", [
    (20.0, 50.0, 9.3),      # the textbook value
    (25.0, 60.0, 16.7),
    (21.5, 40.0, 7.3),
    (30.0, 90.0, 28.2),
    (-10.0, 80.0, -12.8),   # below freezing (over water)
    (20.0, 100.0, 20.0),    # saturated air: the dew point is the temperature
])
def test_dew_point_of_the_dht22_reading(host, temperature, humidity, dew_point):
    host.readings.set("dht22", temperature=temperature, humidity=humidity)
    [r] = host.poll()
    assert r.sensor_id == "dew_point" and r.alert.name == "OK"
    [f] = r.fields
    assert (f.name, f.value, f.unit, f.device_class) == ("dew_point", dew_point, "°C", "temperature")


def test_nothing_before_the_dht22_has_reported(host):
    assert host.poll() == []


def test_the_reading_has_the_time_and_id_of_its_source(host):
    source = host.readings.set("dht22", temperature=22.0, humidity=55.0)
    host.advance(seconds=5)
    [r] = host.poll()
    assert r.timestamp_ms == source.timestamp_ms == host.now_ms - 5000
    assert r.message == "from dht22-gpio-4: 22.0 °C, 55 %"


def test_follows_the_new_value(host):
    host.readings.set("dht22", temperature=20.0, humidity=50.0)
    assert host.poll()[0].fields[0].value == 9.3
    host.readings.set("dht22", temperature=20.0, humidity=70.0)
    assert host.poll()[0].fields[0].value == 14.4


def test_bone_dry_air_has_no_dew_point(host):
    host.readings.set("dht22", temperature=20.0, humidity=0.0)
    assert host.poll() == []


def test_its_grants_are_the_config_entry():
    host = FakeHost.from_config("dew_point", config=HERE / "config.toml")
    assert host.kind == "sensor"
    assert host.grants == {"interfaces": ["readings"], "follows": ["dht22"]}
    with pytest.raises(ValueError) as e:
        host.readings.set("bme680", iaq_score=30)   # not followed: it would never see it
    assert 'follows = ["dht22", "bme680"]' in str(e.value)
    host.close()


def test_another_id_would_be_refused_by_the_host(host):
    host.app.SENSOR_ID = "kitchen"     # an id the plugin does not own
    host.readings.set("dht22", temperature=20.0, humidity=50.0)
    with pytest.raises(BadResult) as e:
        host.poll()
    assert e.value.message.startswith("sensor id `kitchen` is not this plugin's: it may report "
                                      "`dew_point`, `dew_point-…`")


def test_without_the_readings_grant_it_does_not_load():
    with FakeHost(kind="sensor", grants={"interfaces": [], "follows": ["dht22"]}) as host:
        with pytest.raises(LoadError) as e:
            host.load(HERE)
    assert e.value.message.endswith('interfaces = ["readings"]')
