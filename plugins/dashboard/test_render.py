"""Plain-CPython tests for the dashboard plugin's render().

Runs without WebAssembly on the fake host (plugins/testing/fakehost):
scripts/test-plugins.sh, or `.venv/bin/python -m pytest plugins/dashboard`.
"""

import re

import pytest

from fakehost import Raw

NOW = 1_737_073_200_000


def sample(host, **over):
    """A snapshot like the host's, with one reading per sensor."""
    t, d = host.types, host.wit.exports.dashboard
    data = dict(
        readings=[],
        dht22=[t.Dht22Reading("dht22-gpio-4", 21.5, 40.9, NOW - 3000, t.AlertLevel.OK, "")],
        bme680=[t.Bme680Reading("bme680-i2c-0x77", 22.1, 38.5, 1013.2, 150.5, 35,
                                NOW - 1000, t.AlertLevel.OK, "")],
        system=t.PiStats(48.2, 210, 512, 3600, 0.3, NOW, t.AlertLevel.OK, ""),
        leds=[t.Rgb(0, 255, 0), t.Rgb(255, 176, 0), t.Rgb(0, 0, 0), t.Rgb(255, 0, 0)],
        buzzer_active=False,
        plugins=[d.PluginInfo("dht22", "running", "", 12, 0),
                 d.PluginInfo("bme680", "failed", "trap: unreachable", 7, 3)],
        hardware="sim",
        last_update_ms=NOW,
    )
    data.update(over)
    return d.Snapshot(**data)


@pytest.fixture
def dash(host):
    """The dashboard plugin loaded on a fresh fake host (settings, log)."""
    host.load("dashboard")
    return host


def render(host, data=None):
    return host.plugin.render(data if data is not None else sample(host))


def reading(host, sensor_id, temperature, humidity, ts, level="OK", message=""):
    t = host.types
    return t.Dht22Reading(sensor_id, temperature, humidity, ts, t.AlertLevel[level], message)


def test_values_are_server_side(dash):
    page = render(dash)
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
    # The page never makes requests itself (its frame forbids them): it
    # talks to the host's page by postMessage.
    assert "fetch(" not in page and "XMLHttpRequest" not in page
    assert "postMessage({type:'buzzer'" in page and "m.type=='api'" in page
    # Sparkline placeholders for the history the host's page sends.
    for field in ("temperature", "humidity", "pressure", "iaq_score", "cpu_temp_c"):
        assert "<div data-c=%s></div>" % field in page, field
    assert "pattern:p" in page and "bz('beep')" in page and "bz('long')" in page
    assert "HOST UNREACHABLE" in page
    assert "minmax(260px,1fr)" in page
    assert "url('/assets/terminal.woff2')" in page
    assert not re.search(r"(src|href)=\"?(https?:)?//", page), "no external resources"


def test_ids_and_keys_for_the_script(dash):
    page = render(dash)
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
        assert "'%s'" % field in dash.app._JS or "%s:" % field in dash.app._JS, field
    for cid in ("dht", "bme", "sys", "leds", "plugins", "bz", "bzmsg", "hw", "lu", "live", "down"):
        assert 'id="%s"' % cid in page and "'%s'" % cid in dash.app._JS, cid


def test_hostile_strings_are_escaped(dash):
    evil = "<script>alert(1)</script>"
    dash.settings["title"] = "<b>x</b>"
    data = sample(
        dash,
        dht22=[reading(dash, evil, 20.0, 50.0, NOW, "WARN", evil)],
        plugins=[dash.wit.exports.dashboard.PluginInfo(evil, evil, evil, 1, 1)],
        hardware='"><img src=x onerror=alert(1)>',
    )
    page = render(dash, data)
    assert evil not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-k="&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert "<img" not in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    # exactly one real script element: the page's own
    assert page.count("<script>") == 1


def test_empty_lists_say_no_reading_yet(dash):
    page = render(dash, sample(dash, dht22=[], bme680=[], system=None, leds=[], plugins=[],
                               last_update_ms=0))
    assert page.count("no reading yet") >= 5
    for cid in ("dht", "bme", "sys", "leds", "plugins"):
        assert re.search(r'id="%s"[^>]*data-keys=""><p class="empty">no reading yet</p>' % cid,
                         page), cid
    assert "\u2014" in page  # last update unknown


def test_alert_levels_are_classed(dash):
    data = sample(dash, dht22=[
        reading(dash, "a", 35.0, 80.0, NOW, "ALARM", "too hot"),
        reading(dash, "w", 28.0, 60.0, NOW, "WARN", "warm"),
    ], buzzer_active=True)
    page = render(dash, data)
    assert 'class="rd alarm" data-k="a"' in page
    assert 'class="rd warn" data-k="w"' in page
    assert ">ALARM<" in page and ">WARN<" in page and "too hot" in page
    assert ".alarm .lv,.on{animation:bl" in page  # alarms blink
    assert 'id="bz" class="alarm on">ACTIVE<' in page
    assert 'class="alarm">failed<' in page  # failed plugin status
    assert ".stale .age:after{content:\" STALE\"" in page


def test_stale_readings_are_marked(dash):
    data = sample(dash, dht22=[reading(dash, "old", 20.0, 50.0, NOW - 60_000)])
    page = render(dash, data)
    assert 'class="rd ok stale" data-k="old"' in page and "1 m ago" in page
    # 10 s floor at the default 2 s refresh; 3 x refresh above that
    data = sample(dash, dht22=[reading(dash, "x", 20.0, 50.0, NOW - 9_000)])
    assert 'class="rd ok" data-k="x"' in render(dash, data)
    dash.settings["refresh_ms"] = 5000
    data = sample(dash, dht22=[reading(dash, "x", 20.0, 50.0, NOW - 14_000)])
    assert 'class="rd ok" data-k="x"' in render(dash, data)


def test_iaq_bands(dash):
    cases = {0: "excellent", 50: "excellent", 51: "good", 100: "good",
             101: "lightly polluted", 151: "moderately polluted", 201: "heavily polluted",
             250: "heavily polluted", 251: "severely polluted", 350: "severely polluted",
             351: "extremely polluted", 500: "extremely polluted"}
    for score, band in cases.items():
        assert dash.app.iaq_band(score)[0] == band, score


def test_no_iaq_score_is_shown_as_none_not_excellent(dash):
    t = dash.types
    unscored = t.Bme680Reading("bme680-i2c-0x77", 22.1, 38.5, 1013.2, 0.0, 0xFFFF,
                               NOW - 1000, t.AlertLevel.OK, "no IAQ score: gas heater not stable yet")
    page = render(dash, sample(dash, bme680=[unscored]))
    assert "<b data-f=iaq>\u2014</b>" in page and "no gas reading yet" in page
    assert "excellent" not in page.split('id="bme"')[1].split("</section>")[0]


def test_settings(dash):
    conf, lines = dash.settings, dash.logs
    conf.update(title="GREENHOUSE", refresh_ms=5000)
    page = render(dash)
    assert "<title>GREENHOUSE</title>" in page and 'data-r="5000"' in page
    conf.update(title=42, refresh_ms="fast")
    page = render(dash)
    assert "<title>WASI PYTHON HOST</title>" in page and 'data-r="2000"' in page
    assert len(lines) == 2 and all(lvl == "warn" for lvl, _ in lines)
    render(dash)
    assert len(lines) == 2, "each bad value is logged once"
    conf.update(title=Raw("not toml at all"), refresh_ms=10)
    page = render(dash)
    assert "<title>WASI PYTHON HOST</title>" in page and 'data-r="250"' in page
    assert len(lines) == 4 and "clamped" in lines[-1][1]


def test_title_with_quotes(dash):
    # The host sends text with a double quote as a TOML literal string.
    dash.settings["title"] = 'THE "LAB"'
    assert "<title>THE &quot;LAB&quot;</title>" in render(dash)
    assert dash.logs == []


def test_settings_get_failing(dash, monkeypatch):
    def boom(key):
        raise RuntimeError("no settings")
    monkeypatch.setattr(dash.wit.imports.settings, "get", boom)
    page = render(dash)
    assert "<title>WASI PYTHON HOST</title>" in page and 'data-r="2000"' in page


def test_toml_fallback_parser(dash, monkeypatch):
    monkeypatch.setattr(dash.app, "tomllib", None)
    p = dash.app.parse_toml_scalar
    assert p('"WASI \\"PI\\""') == 'WASI "PI"'
    assert p("'lit'") == "lit"
    assert p("2000") == 2000 and p("1_500") == 1500 and p("0x10") == 16
    assert p("2.5") == 2.5 and p("true") is True
    with pytest.raises(ValueError):
        p("fast")


def test_render_never_raises(dash):
    page = render(dash, sample(dash, dht22=[object()]))
    assert "DASHBOARD RENDER ERROR" in page and "AttributeError" in page
    assert [lvl for lvl, _ in dash.logs] == ["error"]
    render(dash, sample(dash, dht22=[object()]))
    assert len(dash.logs) == 1, "a repeated error is logged once"


def test_non_finite_values(dash):
    page = render(dash, sample(dash, dht22=[reading(dash, "n", float("nan"), float("inf"), NOW)]))
    assert "data-f=temp>\u2014<" in page and "data-f=hum>\u2014<" in page
    assert "nan<" not in page and "inf<" not in page


def test_page_is_small(dash):
    page = render(dash)
    assert len(page.encode()) < 16 * 1024, len(page.encode())


def test_humanise(dash):
    app = dash.app
    assert app.uptime(59) == "59s" and app.uptime(61) == "1m 1s"
    assert app.uptime(3600) == "1h 0m" and app.uptime(90061) == "1d 1h 1m"
    assert app.ago(3000) == "3 s ago" and app.ago(-5) == "0 s ago"
    assert app.ago(7_200_000) == "2 h ago"


def generic(host, plugin, sensor_id, fields, level="OK", message="", ts=NOW):
    """A followed reading of any sensor: fields as (name, value, unit, class)."""
    t = host.types
    return t.FollowedReading(plugin, t.Reading(
        sensor_id, [t.Field(n, v, u, c) for n, v, u, c in fields], ts, t.AlertLevel[level],
        message))


def test_any_sensor_gets_a_card_with_its_fields_units_and_sparklines(dash):
    gen = [generic(dash, "dew", "dew", [("dew_point", 9.25, "\u00b0C", "temperature")],
                   message="dry"),
           generic(dash, "air_light", "air_light", [("iaq_seen", 35.0, "", None),
                                                     ("switches", 3.0, "", None)], level="WARN")]
    # The DHT22 reading is in `readings` too: it keeps its own card only.
    t = dash.types
    seed = t.FollowedReading("dht22", t.Reading(
        "dht22-gpio-4", [t.Field("temperature", 21.5, "\u00b0C", "temperature")], NOW,
        t.AlertLevel.OK, ""))
    page = render(dash, sample(dash, readings=[seed] + gen))
    assert '<div id="gen" class="gen" data-keys="dew|air_light">' in page
    assert page.count('<section class="ok" data-k="dew"') == 1
    assert 'data-k="air_light"' in page and 'class="warn" data-k="air_light"' in page
    assert "<b data-f=x_dew_point>9.25</b> <span class=\"u\">\u00b0C</span>" in page
    assert "<b data-f=x_iaq_seen>35</b>" in page
    assert "<div data-c=dew_point></div>" in page and "<div data-c=switches></div>" in page
    assert ">dry<" in page
    assert page.count('data-k="dht22-gpio-4"') == 1, "the DHT22 is not shown twice"


def test_a_sensor_card_is_escaped(dash):
    gen = [generic(dash, "x", "x-<b>", [("v", 1.5, "<u>", None)], message="<script>")]
    page = render(dash, sample(dash, readings=gen))
    assert "x-&lt;b&gt;" in page and "&lt;u&gt;" in page and "&lt;script&gt;" in page
    assert "x-<b>" not in page and "<u>" not in page
