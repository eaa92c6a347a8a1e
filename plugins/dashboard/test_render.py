"""Plain-CPython tests for the dashboard plugin's render().

Runs without WebAssembly: the componentize-py bindings are plain Python, so
the plugin module imports directly once they are on sys.path. Generate them
first (the directory is taken from $WIT_BINDINGS, default /tmp/dash-bind):

    componentize-py -d wit -w dashboard-plugin bindings /tmp/dash-bind
    python3 -m pytest plugins/dashboard/test_render.py

The generated modules do `from typing import Self`, which CPython < 3.11 does
not have; it is stubbed with typing.Any below so older interpreters work too
(the plugin itself runs on the CPython 3.14 that componentize-py embeds).
"""

import os
import re
import sys
import typing

if not hasattr(typing, "Self"):
    typing.Self = typing.Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_BINDINGS = os.environ.get("WIT_BINDINGS", "/tmp/dash-bind")
for _p in (_BINDINGS, _HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import pytest  # noqa: E402

from wit_world.exports.dashboard import PluginInfo, Snapshot  # noqa: E402
from wit_world.imports import log, settings  # noqa: E402
from wit_world.imports.types import (  # noqa: E402
    AlertLevel,
    Bme680Reading,
    Dht22Reading,
    PiStats,
    Rgb,
)

import app  # noqa: E402

NOW = 1_737_073_200_000


def sample(**over):
    """A snapshot like the host's, with one reading per sensor."""
    data = dict(
        dht22=[Dht22Reading("dht22-gpio-4", 21.5, 40.9, NOW - 3000, AlertLevel.OK, "")],
        bme680=[Bme680Reading("bme680-i2c-0x77", 22.1, 38.5, 1013.2, 150.5, 35,
                              NOW - 1000, AlertLevel.OK, "")],
        system=PiStats(48.2, 210, 512, 3600, 0.3, NOW, AlertLevel.OK, ""),
        leds=[Rgb(0, 255, 0), Rgb(255, 176, 0), Rgb(0, 0, 0), Rgb(255, 0, 0)],
        buzzer_active=False,
        plugins=[PluginInfo("dht22", "running", "", 12, 0),
                 PluginInfo("bme680", "failed", "trap: unreachable", 7, 3)],
        hardware="sim",
        last_update_ms=NOW,
    )
    data.update(over)
    return Snapshot(**data)


@pytest.fixture
def host(monkeypatch):
    """Fake `settings` and `log` imports; returns (settings dict, log lines)."""
    conf, lines = {}, []
    monkeypatch.setattr(settings, "get", lambda key: conf.get(key))
    monkeypatch.setattr(settings, "keys", lambda: list(conf))
    monkeypatch.setattr(log, "write", lambda level, msg: lines.append((level, msg)))
    app._warned.clear()
    return conf, lines


def render(data=None):
    return app.Dashboard().render(data if data is not None else sample())


def test_values_are_server_side(host):
    page = render()
    assert page.startswith("<!doctype html>")
    for text in ("21.5", "40.9",                      # DHT22
                 "22.1", "38.5", "1013.2", "150.5",   # BME680
                 ">35<", "excellent",
                 "48.2", "210 / 512 MB (41%)", "1h 0m", "0.30",  # system
                 "#00ff00", "#ffb000",                # LEDs
                 "dht22", "running", "trap: unreachable",
                 '<b id="hw">sim</b>', "2025-01-17 00:20:00 UTC",
                 "3 s ago", "1 s ago",
                 "<title>WASI PYTHON HOST</title>"):
        assert text in page, text
    assert 'data-r="2000"' in page
    assert 'id="bz" class="dim">IDLE<' in page
    assert '<i></i>2</div>' in page  # an LED that is off has no glow
    assert "fetch('/api'" in page and "fetch('/api/buzzer'" in page
    assert "pattern:p" in page and "bz('beep')" in page and "bz('long')" in page
    assert "HOST UNREACHABLE" in page
    assert "minmax(260px,1fr)" in page
    assert "url('/assets/vt323.woff2')" in page
    assert not re.search(r"(src|href)=\"?(https?:)?//", page), "no external resources"


def test_ids_and_keys_for_the_script(host):
    page = render()
    for attr in ('id="dht" data-keys="dht22-gpio-4"', 'id="bme" data-keys="bme680-i2c-0x77"',
                 'id="sys" data-keys="sys"', 'id="leds" class="leds" data-keys="0|1|2|3"',
                 'id="plugins" data-keys="dht22|bme680"', 'id="hw"', 'id="lu"', 'id="live"',
                 'id="down"', 'id="bzmsg"', 'id="bz"', 'data-ts="%d"' % (NOW - 3000),
                 '<div class="led" data-k="0"><i style="--c:#00ff00"></i>0</div>'):
        assert attr in page, attr
    for field in ("temp", "hum", "pres", "gas", "iaq", "band", "cpu", "ram", "up", "load",
                  "age", "alert", "msg", "st", "calls", "fails", "err"):
        attr = "data-f=%s>" % field
        assert attr in page or "data-f=%s " % field in page, field
        assert "'%s'" % field in app._JS or "%s:" % field in app._JS, field
    for cid in ("dht", "bme", "sys", "leds", "plugins", "bz", "bzmsg", "hw", "lu", "live", "down"):
        assert 'id="%s"' % cid in page and "'%s'" % cid in app._JS, cid


def test_hostile_strings_are_escaped(host):
    evil = "<script>alert(1)</script>"
    host[0]["title"] = '"<b>x</b>"'
    data = sample(
        dht22=[Dht22Reading(evil, 20.0, 50.0, NOW, AlertLevel.WARN, evil)],
        plugins=[PluginInfo(evil, evil, evil, 1, 1)],
        hardware='"><img src=x onerror=alert(1)>',
    )
    page = render(data)
    assert evil not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-k="&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert "<img" not in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    # exactly one real script element: the page's own
    assert page.count("<script>") == 1


def test_empty_lists_say_no_reading_yet(host):
    page = render(sample(dht22=[], bme680=[], system=None, leds=[], plugins=[],
                         last_update_ms=0))
    assert page.count("no reading yet") >= 5
    for cid in ("dht", "bme", "sys", "leds", "plugins"):
        assert re.search(r'id="%s"[^>]*data-keys=""><p class="empty">no reading yet</p>' % cid,
                         page), cid
    assert "\u2014" in page  # last update unknown


def test_alert_levels_are_classed(host):
    data = sample(dht22=[
        Dht22Reading("a", 35.0, 80.0, NOW, AlertLevel.ALARM, "too hot"),
        Dht22Reading("w", 28.0, 60.0, NOW, AlertLevel.WARN, "warm"),
    ], buzzer_active=True)
    page = render(data)
    assert 'class="rd alarm" data-k="a"' in page
    assert 'class="rd warn" data-k="w"' in page
    assert ">ALARM<" in page and ">WARN<" in page and "too hot" in page
    assert ".alarm .lv,.on{animation:bl" in page  # alarms blink
    assert 'id="bz" class="alarm on">ACTIVE<' in page
    assert 'class="alarm">failed<' in page  # failed plugin status
    assert ".stale .age:after{content:\" STALE\"" in page


def test_stale_readings_are_marked(host):
    data = sample(dht22=[Dht22Reading("old", 20.0, 50.0, NOW - 60_000, AlertLevel.OK, "")])
    page = render(data)
    assert 'class="rd ok stale" data-k="old"' in page and "1 m ago" in page
    # 10 s floor at the default 2 s refresh; 3 x refresh above that
    data = sample(dht22=[Dht22Reading("x", 20.0, 50.0, NOW - 9_000, AlertLevel.OK, "")])
    assert 'class="rd ok" data-k="x"' in render(data)
    host[0]["refresh_ms"] = "5000"
    data = sample(dht22=[Dht22Reading("x", 20.0, 50.0, NOW - 14_000, AlertLevel.OK, "")])
    assert 'class="rd ok" data-k="x"' in render(data)


def test_iaq_bands():
    cases = {0: "excellent", 50: "excellent", 51: "good", 100: "good",
             101: "lightly polluted", 151: "moderately polluted", 201: "heavily polluted",
             250: "heavily polluted", 251: "severely polluted", 350: "severely polluted",
             351: "extremely polluted", 500: "extremely polluted"}
    for score, band in cases.items():
        assert app.iaq_band(score)[0] == band, score


def test_settings(host):
    conf, lines = host
    conf.update(title='"GREENHOUSE"', refresh_ms="5_000")
    page = render()
    assert "<title>GREENHOUSE</title>" in page and 'data-r="5000"' in page
    conf.update(title="42", refresh_ms='"fast"')
    page = render()
    assert "<title>WASI PYTHON HOST</title>" in page and 'data-r="2000"' in page
    assert len(lines) == 2 and all(lvl == log.Level.WARN for lvl, _ in lines)
    render()
    assert len(lines) == 2, "each bad value is logged once"
    conf.update(title="not toml at all", refresh_ms="10")
    page = render()
    assert "<title>WASI PYTHON HOST</title>" in page and 'data-r="250"' in page
    assert len(lines) == 4 and "clamped" in lines[-1][1]


def test_settings_get_failing(host, monkeypatch):
    def boom(key):
        raise RuntimeError("no settings")
    monkeypatch.setattr(settings, "get", boom)
    page = render()
    assert "<title>WASI PYTHON HOST</title>" in page and 'data-r="2000"' in page


def test_toml_fallback_parser(monkeypatch):
    monkeypatch.setattr(app, "tomllib", None)
    p = app.parse_toml_scalar
    assert p('"WASI \\"PI\\""') == 'WASI "PI"'
    assert p("'lit'") == "lit"
    assert p("2000") == 2000 and p("1_500") == 1500 and p("0x10") == 16
    assert p("2.5") == 2.5 and p("true") is True
    with pytest.raises(ValueError):
        p("fast")


def test_render_never_raises(host):
    app._last_error[0] = None
    page = render(sample(dht22=[object()]))
    assert "DASHBOARD RENDER ERROR" in page and "AttributeError" in page
    assert host[1] and host[1][0][0] == log.Level.ERROR
    render(sample(dht22=[object()]))
    assert len(host[1]) == 1, "a repeated error is logged once"


def test_non_finite_values(host):
    page = render(sample(dht22=[Dht22Reading("n", float("nan"), float("inf"), NOW,
                                             AlertLevel.OK, "")]))
    assert "data-f=temp>\u2014<" in page and "data-f=hum>\u2014<" in page
    assert "nan<" not in page and "inf<" not in page


def test_page_is_small(host):
    page = render()
    assert len(page.encode()) < 12 * 1024, len(page.encode())


def test_humanise():
    assert app.uptime(59) == "59s" and app.uptime(61) == "1m 1s"
    assert app.uptime(3600) == "1h 0m" and app.uptime(90061) == "1d 1h 1m"
    assert app.ago(3000) == "3 s ago" and app.ago(-5) == "0 s ago"
    assert app.ago(7_200_000) == "2 h ago"
