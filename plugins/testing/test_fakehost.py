"""Tests of the fake host itself: it must behave like the real one."""

import textwrap
import tomllib

import pytest

import fakehost
from fakehost import (PLUGINS_DIR, BadResult, BindingsError, ContractError, Fail, FakeHost, GrantError, LoadError, Raw,
                      color_name, toml_value)


# ---------------------------------------------------------------- settings text

@pytest.mark.parametrize("value, text", [
    (28.0, "28.0"), (28.5, "28.5"), (-2.0, "-2.0"), (0.1, "0.1"), (1e20, "100000000000000000000.0"),
    (1.5e-7, "0.00000015"), (float("inf"), "inf"), (4, "4"), (-17, "-17"), (0x77, "119"),
    (True, "true"), (False, "false"),
    ("text", '"text"'), ("two words", '"two words"'), ("", '""'), ("é", '"é"'),
    ('say "hi"', "'say \"hi\"'"), ("C:\\dir", "'C:\\dir'"), ("it's", '"it\'s"'),
    ("tab\there", '"tab\\there"'),
    ([1, 2.5, "x"], '[1, 2.5, "x"]'), ([], "[]"), ({"b": 1, "a": "x y"}, '{ a = "x y", b = 1 }'),
    (Raw("not toml"), "not toml"),
])
def test_toml_text_like_the_host(value, text):
    assert toml_value(value) == text


@pytest.mark.parametrize("s", [
    "", "plain", 'a"b', "a'b", "a\\b", "a\nb", 'a"""b', "a'''b\n", "\x01ctl", "tab\t", "é ü",
    "mixed ' \" \\", "''' and \"\"\" \n", '"', "'", '""', "\x7f", "end\"", "line\r\nbreak"])
def test_toml_strings_parse_back(s):
    assert tomllib.loads("v = " + toml_value(s))["v"] == s


@pytest.mark.parametrize("x", [0.1, 28.0, 1e300, 5e-324, 123456789.125, -0.0, 3.4028234663852886e38])
def test_toml_floats_parse_back(x):
    text = toml_value(x)
    assert "e" not in text and "." in text
    assert tomllib.loads("v = " + text)["v"] == x


def test_toml_rejects_what_toml_cannot_hold():
    with pytest.raises(ValueError):
        toml_value(2 ** 63)
    with pytest.raises(TypeError):
        toml_value(None)


def test_settings_keys_and_get(host):
    host.settings.update(b=1, a="x")
    host.load("dashboard")
    s = host.wit.imports.settings
    assert s.keys() == ["a", "b"]
    assert s.get("a") == '"x"' and s.get("b") == "1" and s.get("zzz") is None


def test_from_config_uses_host_toml():
    host = FakeHost.from_config("bme680")
    assert host.grants["i2c_addresses"] == [0x77] and host.state_quota_bytes == 4096
    host.load()
    assert host.wit.imports.settings.get("address") == "119"
    host.close()


# ---------------------------------------------------------------- errors

def test_err_is_the_bindings_exception(host):
    host.load("dht22")
    import componentize_py_types
    assert fakehost.Err is componentize_py_types.Err is host.Err
    with pytest.raises(componentize_py_types.Err) as e:
        host.wit.imports.gpio_provider.read_dht22(4)
    assert "nothing scripted" in e.value.value and "host.dht22(4).set" in e.value.value


def test_sensor_scripts(host):
    host.load("dht22")
    read = host.wit.imports.gpio_provider.read_dht22
    s = host.dht22(4).set(20.0, 50.0).queue((21.0, 51.0), Fail("timeout"), (22.0, 52.0))
    assert read(4) == (21.0, 51.0)
    with pytest.raises(host.Err) as e:
        read(4)
    assert e.value.value == "DHT22 on GPIO 4: timeout"
    assert read(4) == (22.0, 52.0)
    assert read(4) == (20.0, 50.0) and read(4) == (20.0, 50.0)
    s.fail("gone")
    for _ in range(2):
        with pytest.raises(host.Err):
            read(4)
    s.set(23.0, 40.0)
    assert read(4) == (23.0, 40.0)
    assert s.reads == 8
    assert read(4)[0] == 23.0
    host.dht22(4).set(21.3, 40.0)
    assert read(4)[0] != 21.3 and abs(read(4)[0] - 21.3) < 1e-5, "an f32, as from the host"


def test_bme680_and_system_samples(host):
    host.load("pi_monitor")
    host.system.set(ram_used_bytes=5, uptime_s=9)
    stats = host.wit.imports.system.get_stats()
    assert (stats.ram_used_bytes, stats.uptime_s) == (5, 9) and stats.ram_total_bytes > 5
    host.load("bme680")
    host.bme680().set(gas_valid=False)
    sample = host.wit.imports.gpio_provider.read_bme680(0x77)
    assert sample.gas_valid is False and sample.temperature_c == 22.0
    with pytest.raises(host.Err) as e:
        host.wit.imports.gpio_provider.read_bme680(0x76)
    assert e.value.value.startswith("BME680 at 0x76: ")
    with pytest.raises(TypeError):
        host.bme680().set(gas=1.0)


def test_arguments_outside_the_contract(host):
    host.load("dht22")
    g, leds = host.wit.imports.gpio_provider, host.wit.imports.led_controller
    Rgb = host.types.Rgb
    with pytest.raises(ContractError):
        g.read_dht22(4.0)
    with pytest.raises(ContractError):
        g.read_dht22(256)
    with pytest.raises(ContractError):
        leds.set_led(1, Rgb(256, 0, 0))
    with pytest.raises(ContractError):
        leds.set_led(1, (255, 0, 0))
    with pytest.raises(ContractError):
        host.wit.imports.state.set("k", "not bytes")
    with pytest.raises(ContractError):
        host.wit.imports.log.write("info", "x")


# ---------------------------------------------------------------- state

def test_state_limits_like_the_host():
    host = FakeHost(state_quota_bytes=32)
    host.load("dht22")
    state = host.wit.imports.state
    state.set("level", b"alarm")
    assert state.get("level") == b"alarm" and host.state == {"level": b"alarm"}
    with pytest.raises(host.Err) as e:
        state.set("big", bytes(40))             # 10 stored + 3 + 40
    assert e.value.value == "state quota exceeded: 53 bytes > 32 (grants.state_quota_bytes)"
    with pytest.raises(host.Err) as e:
        state.set("", b"x")
    assert e.value.value == "state keys must be 1–256 bytes"
    with pytest.raises(host.Err):
        state.set("k" * 257, b"")
    writes = len(host.state_writes)
    state.set("level", b"alarm")                # unchanged: no write
    assert len(host.state_writes) == writes
    state.set("level", bytes(27))               # 5 + 27 = 32: exactly the quota
    state.delete("level")
    state.delete("never")
    assert state.get("level") is None and host.state == {}
    host.close()


# ---------------------------------------------------------------- actuators

def test_leds_buffer_until_sync(host):
    host.load("dht22")
    leds, Rgb = host.wit.imports.led_controller, host.types.Rgb
    leds.set_led(1, Rgb(1, 2, 3))
    assert host.leds.buffer == {1: (1, 2, 3)} and host.leds[1] is None
    leds.set_two(0, Rgb(0, 0, 9), 2, Rgb(9, 0, 0))
    leds.sync_leds()
    assert host.leds.shown == {0: (0, 0, 9), 1: (1, 2, 3), 2: (9, 0, 0)}
    assert host.leds.syncs == [{0: (0, 0, 9), 1: (1, 2, 3), 2: (9, 0, 0)}] and host.leds.buffer == {}
    leds.sync_leds()
    assert host.leds.syncs[-1] == {}
    host.leds.error = "SPI write failed"
    leds.sync_leds()                            # nothing to show: fine
    leds.set_led(1, Rgb(0, 0, 0))
    with pytest.raises(host.Err) as e:
        leds.sync_leds()
    assert e.value.value == "LED strip: SPI write failed"


def test_led_grants():
    host = FakeHost(grants={"interfaces": ["gpio-provider", "led-controller", "buzzer-controller",
                                           "state", "log", "settings"], "leds": [1]})
    host.load("dht22")
    leds, Rgb = host.wit.imports.led_controller, host.types.Rgb
    with pytest.raises(host.Err) as e:
        leds.set_led(2, Rgb(1, 1, 1))
    assert e.value.value == ("LED 2 is not granted: add it to `leds` in [plugins.dht22.grants] "
                             "(granted: [1])")
    with pytest.raises(host.Err):
        leds.set_two(1, Rgb(1, 1, 1), 2, Rgb(1, 1, 1))
    assert host.leds.buffer == {}, "a refused pair changes nothing"
    with pytest.raises(host.Err) as e:
        host.wit.imports.gpio_provider.read_dht22(5)
    assert "GPIO 5 is not granted" in e.value.value
    host.close()


def test_interface_grants_are_checked_at_load():
    host = FakeHost(grants={"interfaces": ["log", "settings", "state"]})
    with pytest.raises(GrantError) as e:
        host.load("dht22")
    assert "buzzer-controller" in str(e.value) and "gpio-provider" in str(e.value)
    host.close()


def test_buzzer(host):
    host.load("dht22")
    b = host.wit.imports.buzzer_controller
    b.beep(3, 200, 150)
    b.buzz(500)
    assert host.buzzer.calls == [(3, 200, 150), (1, 500, 0)]
    for bad in (0, 11):
        with pytest.raises(host.Err) as e:
            b.beep(bad, 100, 100)
        assert e.value.value == f"beep count must be 1–10, not {bad}"
    host.buzzer.error = "busy"
    with pytest.raises(host.Err):
        b.buzz(1)
    assert len(host.buzzer) == 2


def test_log_and_clock(host):
    host.load("dashboard")
    log = host.wit.imports.log
    log.write(log.Level.WARN, "careful")
    log.write(log.Level.DEBUG, "detail")
    assert host.logs == [("warn", "careful"), ("debug", "detail")]
    assert host.log_lines("warn") == ["careful"]
    host.load("dht22")
    clock = host.wit.imports.gpio_provider.get_timestamp_ms
    t = clock()
    host.advance(2.5)
    host.advance(ms=10)
    assert clock() == t + 2510


# ---------------------------------------------------------------- loading

def test_reload_drops_globals_and_keeps_state(host):
    plugin = host.load("dht22")
    first_app = host.app
    host.dht22(4).set(20.0, 40.0)
    plugin.poll()
    host.wit.imports.led_controller.set_led(1, host.types.Rgb(9, 9, 9))   # never synced
    state = dict(host.state)
    again = host.reload()
    assert host.app is not first_app and host.app._last is None
    assert type(again).__name__ == "Dht22Logic" and again is not plugin
    assert host.state == state and host.leds.buffer == {} and host.leds[1] is not None


def test_load_by_path(host):
    assert type(host.load(PLUGINS_DIR / "pi_monitor")).__name__ == "PiMonitorLogic"
    assert type(host.load(str(PLUGINS_DIR / "dht22" / "app.py"))).__name__ == "Dht22Logic"
    assert type(host.load(__file__.replace("testing/test_fakehost.py", "bme680/test_app.py"))
                ).__name__ == "Bme680Logic"
    assert host.name == "bme680"


def test_unknown_plugin(host):
    with pytest.raises(FileNotFoundError) as e:
        host.load("nope")
    assert "dht22" in str(e.value)


def author_plugin(tmp_path, body):
    d = tmp_path / "myplugin"
    d.mkdir()
    (d / "app.py").write_text(textwrap.dedent(body))
    return d


def test_a_new_plugin_outside_the_tree(host, tmp_path):
    d = author_plugin(tmp_path, """
        from wit_world import exports
        from wit_world.imports import gpio_provider
        from wit_world.imports.types import AlertLevel, Dht22Reading
        from plugin_support import setting

        class Dht22Logic(exports.Dht22Logic):
            def poll(self):
                pin = setting("pin", 4)
                t, h = gpio_provider.read_dht22(pin)
                return [Dht22Reading("myplugin-mine", t, h, gpio_provider.get_timestamp_ms(),
                                     AlertLevel.OK, "")]
        """)
    host.settings["pin"] = 7
    plugin = host.load(d)
    host.dht22(7).set(20.0, 30.0)
    [r] = plugin.poll()
    assert (r.sensor_id, r.temperature) == ("myplugin-mine", 20.0) and host.name == "myplugin"


def test_export_class_name_is_checked(tmp_path):
    d = author_plugin(tmp_path, """
        class Dht22(object):
            pass
        """)
    host = FakeHost(kind="dht22")
    with pytest.raises(LoadError) as e:
        host.load(d)
    assert e.value.failure == "no-entry-point"
    assert "class Dht22Logic(exports.Dht22Logic)" in str(e.value)
    host.close()


def test_an_ungranted_import_fails_with_the_hosts_words(tmp_path):
    d = author_plugin(tmp_path, """
        from wit_world import exports
        from wit_world.imports import log, system
        class Dashboard(exports.Dashboard):
            def render(self, data):
                return ""
        """)
    host = FakeHost(kind="dashboard", grants={"interfaces": ["log", "settings"]})
    with pytest.raises(GrantError) as e:
        host.load(d)
    assert e.value.message == (
        'plugin `myplugin` imports system but its config does not grant it; to allow it, set in '
        '[plugins.myplugin.grants]: interfaces = ["log", "settings", "system"]')
    host.close()


def test_only_the_allow_listed_standard_library(host, tmp_path):
    d = author_plugin(tmp_path, """
        import json
        import sqlite3
        """)
    host.kind = "dht22"
    with pytest.raises(LoadError) as e:
        host.load(d)
    assert e.value.failure == "unknown-module"
    assert "No module named 'sqlite3'" in e.value.message and "json" in e.value.message


def test_a_syntax_error_names_the_file_and_line(host, tmp_path):
    d = author_plugin(tmp_path, """
        x = 1
        def broken(:
            pass
        """)
    host.kind = "dht22"
    with pytest.raises(LoadError) as e:
        host.load(d)
    assert e.value.failure == "syntax"
    assert e.value.message == "SyntaxError: invalid syntax (myplugin/app.py, line 3)"


def test_a_plugin_whose_kind_cannot_be_told_needs_one(host, tmp_path):
    d = tmp_path / "nokind"
    d.mkdir()
    (d / "app.py").write_text("class X: pass\n")
    with pytest.raises(LoadError) as e:
        host.load(d)
    assert "FakeHost(kind=...)" in str(e.value)


def test_no_componentize_py_says_run_setup(monkeypatch, tmp_path):
    from fakehost import _bindings
    monkeypatch.setattr(_bindings, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(_bindings, "_componentize_py", lambda: None)
    with pytest.raises(BindingsError) as e:
        _bindings.ensure("dht22-plugin")
    assert "scripts/setup.sh" in str(e.value)


def test_bindings_are_cached_and_regenerated(monkeypatch, tmp_path):
    from fakehost import _bindings
    monkeypatch.setattr(_bindings, "CACHE_DIR", tmp_path / "cache")
    out = _bindings.ensure("dashboard-plugin")
    assert (out / "wit_world" / "exports" / "dashboard.py").is_file()
    stamp = (out / ".stamp").read_text()
    (out / "marker").write_text("")
    assert _bindings.ensure("dashboard-plugin") == out and (out / "marker").exists()
    (out / ".stamp").write_text("stale")
    assert _bindings.ensure("dashboard-plugin") == out
    assert not (out / "marker").exists() and (out / ".stamp").read_text() == stamp
    # Without componentize-py, an up-to-date cache still serves.
    monkeypatch.setattr(_bindings, "_componentize_py", lambda: None)
    assert _bindings.ensure("dashboard-plugin") == out


def test_color_names():
    assert [color_name(c) for c in [(0, 255, 0), (255, 140, 0), (255, 176, 0), (255, 0, 0),
                                    (0, 0, 0), None, (255, 255, 255), (0, 0, 255)]] == [
        "green", "amber", "amber", "red", "off", "off", "white", "blue"]


def test_two_hosts_side_by_side():
    a, b = FakeHost(), FakeHost()
    plugin_a, plugin_b = a.load("dht22"), b.load("dht22")
    a.dht22(4).set(33.0, 40.0)
    b.dht22(4).set(20.0, 40.0)
    assert plugin_a.poll()[0].alert.name == "ALARM" and plugin_b.poll()[0].alert.name == "OK"
    assert (len(a.buzzer), len(b.buzzer)) == (1, 0) and b.state_json("alert")["level"] == 0
    assert a.types is not b.types and a.module("plugin_support") is not b.module("plugin_support")
    a.close()
    b.close()


# ---------------------------------------------------------------- telemetry

def test_telemetry_is_recorded_and_bad_names_refused_like_the_host():
    host = FakeHost()
    plugin = host.load(PLUGINS_DIR.parent / "tests" / "plugins" / "telemetry")
    [reading] = plugin.poll()
    assert host.telemetry == {"answer": (42.0, "units")}
    assert "a-z, 0-9 and _" in reading.message


# ---------------------------------------------------------------- sensor and automation kinds

SENSOR_SOURCE = """
from wit_world import exports

RESULT = []   # what the next poll returns: the test sets it

class Sensor(exports.Sensor):
    def poll(self):
        return RESULT
"""

AUTOMATION_SOURCE = """
from wit_world import exports
from wit_world.imports import readings

SEEN = []     # what each run got, and what readings.latest() said meanwhile

class Automation(exports.Automation):
    def run(self, given):
        SEEN.append((given, readings.latest()))
"""


def plugin_dir(tmp_path, name, source):
    d = tmp_path / name
    d.mkdir()
    (d / "app.py").write_text(textwrap.dedent(source))
    return d


def test_the_kind_is_inferred_from_the_export_class(tmp_path):
    for name, source, kind in [("s", SENSOR_SOURCE, "sensor"), ("a", AUTOMATION_SOURCE, "automation")]:
        with FakeHost() as host:
            plugin = host.load(plugin_dir(tmp_path, name, source))
            assert host._loaded_kind == kind and type(plugin).__name__ == kind.capitalize()
    assert fakehost.KINDS["sensor"] == "sensor" and fakehost.KINDS["automation"] == "automation"


def test_from_config_takes_the_new_kinds_and_grants(tmp_path):
    config = tmp_path / "host.toml"
    config.write_text(textwrap.dedent("""
        [plugins.dew]
        kind = "sensor"
        [plugins.dew.grants]
        interfaces = ["readings"]
        follows = ["temp"]
        sensor_ids = ["hall"]
        [plugins.light]
        kind = "automation"
        [plugins.light.grants]
        interfaces = ["led-controller"]
        follows = ["air"]
        [plugins.temp]
        kind = "dht22"
        [plugins.air]
        kind = "bme680"
        """))
    dew = FakeHost.from_config("dew", config)
    assert dew.kind == "sensor" and dew.grants["follows"] == ["temp"]
    r = dew.readings.set("temp", temperature=20.0)         # a dht22 plugin by its config
    assert r.sensor_id == "dht22-gpio-4" and [f[0] for f in r.fields] == ["temperature", "humidity"]
    assert dew.owned().owns("hall") and not dew.owned().owns("temp")
    light = FakeHost.from_config("light", config)
    assert light.kind == "automation" and light._kind_of_plugin("air") == "bme680"
    dew.close()
    light.close()


def test_an_automation_needs_follows_like_the_config():
    with pytest.raises(ValueError) as e:
        FakeHost(kind="automation", grants={"interfaces": ["led-controller"]})
    assert 'follows = ["bme680"]' in str(e.value)
    FakeHost(kind="automation").close()   # no grants: everything allowed


def test_followed_readings_reach_run_and_the_readings_import(tmp_path):
    host = FakeHost(grants={"interfaces": ["readings"], "follows": ["bme680", "dht22"]})
    host.load(plugin_dir(tmp_path, "a", AUTOMATION_SOURCE))
    host.readings.set("dht22", temperature=21.3, humidity=40.0)
    host.readings.set("bme680", iaq_score=180, message="air moderately polluted")
    host.run()
    [(given, latest)] = host.app.SEEN
    # In the order of follows, as the host's board gives them.
    assert [(r.plugin, r.reading.sensor_id) for r in given] == [
        ("bme680", "bme680-i2c-0x77"), ("dht22", "dht22-gpio-4")]
    assert [(r.plugin, r.reading.sensor_id) for r in latest] == [
        ("bme680", "bme680-i2c-0x77"), ("dht22", "dht22-gpio-4")]
    bme = {f.name: (f.value, f.unit, f.device_class) for f in given[0].reading.fields}
    assert bme == {"temperature": (22.0, "°C", "temperature"), "humidity": (40.0, "%", "humidity"),
                   "pressure": (1013.25, "hPa", "atmospheric_pressure"),
                   "gas_resistance": (50.0, "kΩ", None), "iaq_score": (180.0, "", "aqi")}
    assert given[0].reading.message == "air moderately polluted"
    assert given[0].reading.alert == host.types.AlertLevel.OK
    assert given[1].reading.fields[0].value == 21.3, "an f32 field as the host passes it on"
    assert given[0].reading.timestamp_ms == host.now_ms
    # Each call is a fresh copy: what the plugin does to it changes nothing.
    given[0].reading.fields.clear()
    assert len(host.readings.latest()[0].reading.fields) == 5
    host.close()


def test_scripted_readings_keep_their_other_values_and_follow_the_host(tmp_path):
    host = FakeHost()
    host.load(plugin_dir(tmp_path, "a", AUTOMATION_SOURCE))
    host.readings.set("bme680", iaq_score=50, humidity=55.5)
    r = host.readings.set("bme680", iaq_score=60)
    assert (r.value("iaq_score"), r.value("humidity")) == (60.0, 55.5)
    assert host.readings.set("dht22", temperature=21.123456789).value("temperature") == 21.123457
    w = host.readings.set("weather", "weather-roof", wind=(3.2, "m/s"), rain=0, uv=(5, "", "uv_index"),
                          alert="warn", timestamp_ms=5)
    assert w.fields == [("wind", 3.2, "m/s", None), ("rain", 0.0, "", None), ("uv", 5.0, "", "uv_index")]
    assert host.readings.set("weather", t=1).sensor_id == "weather"   # a sensor's default id: its name
    with pytest.raises(TypeError) as e:
        host.readings.set("bme680", co2=400)
    assert "temperature, humidity, pressure, gas_resistance, iaq_score" in str(e.value)
    with pytest.raises(TypeError):
        host.readings.set("bme680", iaq_score=12.5)          # a WIT u16
    for bad, words in [(dict(Temp=1), "field name `Temp` is not allowed"),
                       (dict(kind=None, units=1), "field name `units`"),
                       (dict(x=float("nan")), "field `x` is NaN, not a finite number"),
                       (dict(x=(1, "a very long unit name")), "at most 16 printable characters"),
                       (dict(), "has 0 fields")]:
        with pytest.raises(ValueError) as e:
            host.readings.set("weather", **bad)
        assert words in str(e.value), str(e.value)
    host.run()
    [(given, _)] = host.app.SEEN
    assert [r.reading.sensor_id for r in given] == ["bme680-i2c-0x77", "dht22-gpio-4", "weather-roof",
                                                    "weather"]
    assert given[2].reading.alert.name == "WARN"
    host.readings.remove("weather", "weather")
    host.readings.remove("dht22")
    assert [r.sensor_id for r in host.readings.seen()] == ["bme680-i2c-0x77", "weather-roof"]
    host.readings.clear()
    assert host.readings.latest() == []
    host.close()


def test_the_readings_import_needs_its_grant(tmp_path):
    host = FakeHost(kind="automation", grants={"interfaces": ["log"], "follows": ["bme680"]})
    with pytest.raises(GrantError) as e:
        host.load(plugin_dir(tmp_path, "a", AUTOMATION_SOURCE))
    assert e.value.message.endswith('interfaces = ["log", "readings"]')
    host.close()


def test_a_host_left_open_does_not_stop_the_next_one(tmp_path):
    left_open = FakeHost(kind="automation", grants={"interfaces": ["readings"], "follows": ["x"]})
    left_open.load(plugin_dir(tmp_path, "a", AUTOMATION_SOURCE))
    with FakeHost() as host:
        host.load("dht22")
        host.dht22(4).set(20.0, 40.0)
        host.poll()
        assert len(host.leds.syncs) == 1
    left_open.close()


def test_run_and_poll_are_for_their_kinds(tmp_path):
    host = FakeHost()
    host.load(plugin_dir(tmp_path, "a", AUTOMATION_SOURCE))
    with pytest.raises(RuntimeError) as e:
        host.poll()
    assert "host.run()" in str(e.value)
    host.load(plugin_dir(tmp_path, "s", SENSOR_SOURCE))
    with pytest.raises(RuntimeError) as e:
        host.run()
    assert "host.poll()" in str(e.value)
    host.close()


# The host's rules for a poll (src/plugins/checks.rs), with its words.

NOW = 1_800_000_000_000


@pytest.fixture
def sensor(tmp_path):
    """A sensor plugin `dew` granted the DHT22 on GPIO 4, whose next poll
    returns `sensor.app.RESULT`; `sensor.r(id, fields)` makes a reading."""
    host = FakeHost(grants={"interfaces": [], "dht22_pins": [4]}, now_ms=NOW)
    host.load(plugin_dir(tmp_path, "dew", SENSOR_SOURCE))

    def r(sensor_id, fields=(("x", 1.0, ""),), timestamp_ms=NOW, device_class=None):
        t = host.types
        return t.Reading(sensor_id, [t.Field(n, v, u, device_class) for n, v, u in fields],
                         timestamp_ms, t.AlertLevel.OK, "")

    host.r = r
    yield host
    host.close()


def refusal(host, readings):
    host.app.RESULT = readings
    with pytest.raises(BadResult) as e:
        host.plugin.poll()
    return e.value.message


def test_good_readings_pass(sensor):
    for sensor_id in ("dew", "dew-east", "dht22-gpio-4"):
        sensor.app.RESULT = [sensor.r(sensor_id, [("dew_point", 9.5, "°C")])]
        assert sensor.plugin.poll() == sensor.app.RESULT
    sensor.app.RESULT = []
    assert sensor.poll() == []


@pytest.mark.parametrize("make, message", [
    (lambda r: [r("dht22-gpio-5")],
     "sensor id `dht22-gpio-5` is not this plugin's: it may report `dew`, `dew-…`, `dht22-gpio-4` "
     "(more with grants.sensor_ids in its config)"),
    (lambda r: [r("a b")],
     "sensor id `a b` is not allowed: use 1–64 letters, digits, `_`, `-`, `.` or `:`"),
    (lambda r: [r("dew\n")],
     "sensor id `dew\\n` is not allowed: use 1–64 letters, digits, `_`, `-`, `.` or `:`"),
    (lambda r: [r("dew"), r("dew")], "sensor id `dew` appears twice in one poll"),
    (lambda r: [r("dew", timestamp_ms=NOW + 60_001)],
     f"reading `dew` has timestamp_ms {NOW + 60_001}, too far from the host's clock ({NOW}): at most "
     "60 s ahead and 24 h behind (use get_timestamp_ms())"),
    (lambda r: [r("dew", timestamp_ms=NOW - 24 * 3_600_000 - 1)], "too far from the host's clock"),
    (lambda r: [r("dew", timestamp_ms=0)], "too far from the host's clock"),
    (lambda r: [r("dew", [])], "reading `dew` has 0 fields: a reading has 1–16"),
    (lambda r: [r("dew", [(f"f{i}", 1.0, "") for i in range(17)])], "reading `dew` has 17 fields"),
    (lambda r: [r("dew", [("Temp", 1.0, "")])],
     "reading `dew`: field name `Temp` is not allowed: use 1–32 of a-z, 0-9 and _, not one of "
     "sensor_id, timestamp_ms, alert, message, plugin, units, kind"),
    (lambda r: [r("dew", [("plugin", 1.0, "")])], "field name `plugin` is not allowed"),
    (lambda r: [r("dew", [("kind", 1.0, "")])], "field name `kind` is not allowed"),
    (lambda r: [r("dew", [("x" * 33, 1.0, "")])], "is not allowed"),
    (lambda r: [r("dew", [("x", 1.0, ""), ("x", 2.0, "")])], "reading `dew`: field `x` appears twice"),
    (lambda r: [r("dew", [("x", float("nan"), "")])], "reading `dew`: field `x` is NaN, not a finite number"),
    (lambda r: [r("dew", [("x", float("-inf"), "")])], "field `x` is -inf, not a finite number"),
    (lambda r: [r("dew", [("x", 1.0, "a very long unit name")])],
     "reading `dew`: the unit of `x` must be at most 16 printable characters"),
    (lambda r: [r("dew", [("x", 1.0, "°C\r")])], "at most 16 printable characters"),
    (lambda r: [r("dew", device_class="Temperature!")],
     "reading `dew`: device class `Temperature!` of `x` is not one (a Home Assistant sensor device "
     "class such as temperature, humidity, pressure, aqi)"),
    (lambda r: [r(f"dew-{i}") for i in range(33)],
     "result too large: 33 readings, at most 32 per poll"),
])
def test_each_rule_refuses_the_poll_with_the_hosts_words(sensor, make, message):
    got = refusal(sensor, make(sensor.r))
    assert message in got, got


def test_a_plugin_cannot_invent_ids_without_end(sensor):
    for i in range(16):
        sensor.app.RESULT = [sensor.r(f"dew-{i}")]
        sensor.plugin.poll()
    sensor.app.RESULT = [sensor.r("dew-0")]
    sensor.plugin.poll()                          # the same ones again are fine
    assert refusal(sensor, [sensor.r("dew-new")]) == (
        "more than 16 different sensor ids from one plugin (new: dew-new): report the same "
        "sensors every poll")
    sensor.reload()                               # a new version starts counting afresh
    sensor.app.RESULT = [sensor.r("dew-new")]
    sensor.plugin.poll()


def test_a_device_granted_to_two_plugins_is_owned_by_claim_only(tmp_path):
    config = tmp_path / "host.toml"
    config.write_text(textwrap.dedent("""
        [plugins.a]
        kind = "sensor"
        [plugins.a.grants]
        dht22_pins = [4]
        [plugins.b]
        kind = "dht22"
        [plugins.b.grants]
        dht22_pins = [4]
        [plugins.c]
        enabled = false
        kind = "sensor"
        [plugins.c.grants]
        i2c_addresses = [0x77]
        """))
    host = FakeHost.from_config("a", config, now_ms=NOW)
    host.load(plugin_dir(tmp_path, "a", SENSOR_SOURCE))
    t = host.types
    host.app.RESULT = [t.Reading("dht22-gpio-4", [t.Field("x", 1.0, "", None)], NOW, t.AlertLevel.OK, "")]
    with pytest.raises(BadResult) as e:
        host.plugin.poll()
    assert "it may report `a`, `a-…` (more with" in e.value.message
    host.grants["i2c_addresses"] = [0x77]         # granted to a disabled plugin too: still a's alone
    host.app.RESULT = [t.Reading("bme680-i2c-0x77", [t.Field("x", 1.0, "", None)], NOW, t.AlertLevel.OK, "")]
    host.plugin.poll()
    host.close()


def test_the_seed_sensor_kinds_are_checked_too(host):
    plugin = host.load("dht22")
    host.dht22(4).set(21.0, 40.0)
    plugin.poll()
    host.settings["sensor_id"] = "bme680-i2c-0x77"    # a device's id: a FakeHost without grants lets it
    host.reload().poll()
    host.settings["sensor_id"] = "greenhouse"          # not the plugin's
    with pytest.raises(BadResult) as e:
        host.reload().poll()
    assert e.value.message.startswith("sensor id `greenhouse` is not this plugin's")
    host.settings["sensor_id"] = "dht22-gpio-4"
    plugin = host.reload()
    host.dht22(4).set(float("nan"), 40.0)
    with pytest.raises(BadResult) as e:
        host.poll()
    assert e.value.message == "reading `dht22-gpio-4`: field `temperature` is NaN, not a finite number"


def test_a_poll_of_the_wrong_types_is_a_contract_error(sensor):
    t = sensor.types
    for bad, words in [({"sensor_id": "dew"}, "must return a list"),
                       ([("dew", [], 0)], "poll()[0] must be a Reading"),
                       ([t.Reading("dew", [("x", 1.0)], NOW, t.AlertLevel.OK, "")], "fields[0] must be a Field"),
                       ([t.Reading("dew", [t.Field("x", "1", "", None)], NOW, t.AlertLevel.OK, "")],
                        "fields[0].value must be a float"),
                       ([t.Reading("dew", [t.Field("x", 1.0, "", None)], -1, t.AlertLevel.OK, "")],
                        "timestamp_ms = -1 is out of range"),
                       ([t.Reading("dew", [t.Field("x", 1.0, "", None)], NOW, "ok", "")],
                        "alert must be an AlertLevel")]:
        sensor.app.RESULT = bad
        with pytest.raises(ContractError) as e:
            sensor.plugin.poll()
        assert words in str(e.value), str(e.value)


def test_a_dashboard_snapshot_of_the_scripted_readings(host):
    host.load("dashboard")
    host.readings.set("dht22", temperature=21.5, humidity=40.9)
    host.readings.set("bme680", iaq_score=35, alert="warn")
    host.readings.set("dew_point", dew_point=(9.5, "°C", "temperature"))
    host.leds.shown[1] = (0, 255, 0)
    snap = host.snapshot(hardware="pi")
    assert [(r.plugin, r.reading.sensor_id) for r in snap.readings] == [
        ("dht22", "dht22-gpio-4"), ("bme680", "bme680-i2c-0x77"), ("dew_point", "dew_point")]
    assert [(r.temperature, r.humidity) for r in snap.dht22] == [(21.5, 40.9)]
    assert snap.bme680[0].iaq_score == 35 and snap.bme680[0].alert.name == "WARN"
    assert len(snap.leds) == 8 and (snap.leds[1].g, snap.leds[0].g) == (255, 0)
    assert snap.hardware == "pi" and snap.last_update_ms == host.now_ms
    page = host.plugin.render(snap)
    assert "9.5" in page and "dew_point" in page
    with pytest.raises(TypeError):
        host.snapshot(dht=[])
