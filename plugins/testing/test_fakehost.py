"""Tests of the fake host itself: it must behave like the real one."""

import textwrap
import tomllib

import pytest

import fakehost
from fakehost import (PLUGINS_DIR, BindingsError, ContractError, Fail, FakeHost, GrantError, LoadError, Raw,
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
                return [Dht22Reading("mine", t, h, gpio_provider.get_timestamp_ms(),
                                     AlertLevel.OK, "")]
        """)
    host.settings["pin"] = 7
    plugin = host.load(d)
    host.dht22(7).set(20.0, 30.0)
    [r] = plugin.poll()
    assert (r.sensor_id, r.temperature) == ("mine", 20.0) and host.name == "myplugin"


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
