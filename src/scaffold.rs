//! `wasi-python-host new NAME --kind sensor|automation|dashboard`: a plugin
//! folder that already runs and passes its own tests, plus the config entry
//! it needs. There is nothing to build: a running host loads `app.py` as
//! soon as it is saved.
//!
//! The sensor and the automation react to other plugins' readings (they
//! follow the config's DHT22 and BME680 plugins) rather than reading a
//! device: a device granted to two plugins is neither's (see
//! `config::ownership`), so a second plugin reading the DHT22 would take its
//! sensor id away from the `dht22` plugin.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::config::rules::check_plugin_name;

/// What a new plugin starts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A derived sensor: the feels-like temperature from the DHT22
    /// plugin's reading, with an alert shown on an LED.
    Sensor,
    /// Follows the BME680 plugin's humidity and drives an LED and the
    /// buzzer; reports nothing.
    Automation,
    /// Renders the dashboard page.
    Dashboard,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "sensor" => Ok(Kind::Sensor),
            "automation" => Ok(Kind::Automation),
            "dashboard" => Ok(Kind::Dashboard),
            "actuator" => Err(
                "--kind actuator is now --kind automation: a plugin that drives LEDs or the \
                 buzzer reacts to the readings of the plugins it follows, with no sensor grant \
                 of its own"
                    .into(),
            ),
            other => Err(format!(
                "unknown kind `{other}`: expected sensor, automation or dashboard"
            )),
        }
    }
}

impl Kind {
    /// The value of `kind` in the config entry.
    pub fn config_kind(self) -> &'static str {
        match self {
            Kind::Sensor => "sensor",
            Kind::Automation => "automation",
            Kind::Dashboard => "dashboard",
        }
    }

    /// Whether it drives an LED (and so needs one granted).
    pub fn uses_led(self) -> bool {
        self != Kind::Dashboard
    }

    /// The kind of plugin whose readings it follows, if it follows one:
    /// the sensor derives from the DHT22's, the automation reacts to the
    /// BME680's.
    pub fn follows_kind(self) -> Option<crate::config::PluginKind> {
        match self {
            Kind::Sensor => Some(crate::config::PluginKind::Dht22),
            Kind::Automation => Some(crate::config::PluginKind::Bme680),
            Kind::Dashboard => None,
        }
    }
}

/// What goes into the new plugin's files and config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The LED it shows its state on (ignored for a dashboard).
    pub led: u8,
    /// The plugin whose readings it follows (ignored for a dashboard).
    pub follows: String,
    /// False writes `enabled = false`: a second dashboard, while the
    /// config's own is on (the host serves one).
    pub enabled: bool,
}

/// The first LED of the strip no plugin of `config` is granted.
pub fn first_free_led(config: &crate::config::Config) -> Option<u8> {
    (0..config.hardware.leds.count)
        .find(|i| !config.plugins.values().any(|p| p.grants.leds.contains(i)))
}

/// The plugin a new plugin of `kind` follows in `config`: the first
/// enabled one of the kind it derives from (None for a dashboard, or when
/// there is none).
pub fn followed(config: &crate::config::Config, kind: Kind) -> Option<String> {
    let wanted = kind.follows_kind()?;
    config
        .plugins
        .iter()
        .find(|(_, p)| p.enabled && p.kind() == wanted)
        .map(|(name, _)| name.clone())
}

/// The folder and the files written (the config entry is
/// [`config_entry`]'s).
pub struct Scaffold {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Writes `plugins_dir/NAME/` for `kind`. Refuses to overwrite anything.
pub fn create(
    plugins_dir: &Path,
    name: &str,
    kind: Kind,
    options: &Options,
) -> anyhow::Result<Scaffold> {
    check_plugin_name(name).map_err(anyhow::Error::msg)?;
    let dir = plugins_dir.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; pick another name or remove it",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = [
        ("app.py", app_py(kind)),
        ("test_app.py", test_py(kind)),
        ("README.md", readme(kind)),
    ];
    let mut written = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, fill(text, name, options))
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(Scaffold {
        dir,
        files: written,
    })
}

/// A template with its placeholders filled in.
fn fill(template: &str, name: &str, options: &Options) -> String {
    template
        .replace("{NAME}", name)
        .replace("{LED}", &options.led.to_string())
        .replace("{FOLLOWS}", &options.follows)
}

/// The `[plugins.NAME]` entry a new plugin of `kind` needs.
pub fn config_entry(name: &str, kind: Kind, options: &Options) -> String {
    let text = match kind {
        Kind::Sensor => {
            r#"[plugins.{NAME}]
kind = "sensor"
interval_ms = 2000
[plugins.{NAME}.grants]
interfaces = ["readings", "led-controller", "buzzer-controller", "state", "log", "settings"]
follows = ["{FOLLOWS}"]
leds = [{LED}]
state_quota_bytes = 4096
[plugins.{NAME}.settings]
led = {LED}
warn_c = 27.0
alarm_c = 32.0
hysteresis_c = 1.0
"#
        }
        Kind::Automation => {
            r#"[plugins.{NAME}]
kind = "automation"
interval_ms = 10000
[plugins.{NAME}.grants]
interfaces = ["led-controller", "buzzer-controller", "state", "log", "settings"]
follows = ["{FOLLOWS}"]
leds = [{LED}]
state_quota_bytes = 1024
[plugins.{NAME}.settings]
led = {LED}
damp_pct = 60.0
hysteresis_pct = 3.0
"#
        }
        Kind::Dashboard => {
            r#"[plugins.{NAME}]
kind = "dashboard"
[plugins.{NAME}.grants]
interfaces = ["log", "settings"]
[plugins.{NAME}.settings]
title = "{TITLE}"
"#
        }
    };
    let entry = fill(text, name, options).replace("{TITLE}", &name.to_uppercase());
    if options.enabled {
        entry
    } else {
        entry.replacen('\n', "\nenabled = false\n", 1)
    }
}

fn app_py(kind: Kind) -> &'static str {
    match kind {
        Kind::Sensor => {
            r#""""{NAME}: a sensor plugin. It reports how warm the air feels: the
apparent temperature from the temperature and humidity of the plugin it
follows ({FOLLOWS}), as field `feels_like` of its own sensor `{NAME}`. It
raises an alert above `warn_c` / `alarm_c` (with `hysteresis_c`), shows the
level on LED `led` (green, amber, red) and beeps on entering alarm.

It reads no device: it derives its value from another plugin's reading (the
`readings` interface), which is what most new sensors do.

Edit freely: a running host loads each saved version by itself (and keeps
the last good one if this one fails). Test without WebAssembly:
`scripts/test-plugins.sh plugins/{NAME}`. Reference: docs/plugin-sdk.md.
"""

import math

from wit_world import exports
from wit_world.imports import readings
from wit_world.imports.types import Reading

import alerts
from plugin_support import best_effort, load_alert_state, save_state, setting, signal_level
from readings_support import field, field_value, find_reading, reading

SENSOR_ID = "{NAME}"


def feels_like_c(temperature_c, humidity_pct):
    """Steadman's apparent temperature in still air (as the Australian
    Bureau of Meteorology computes it): humid air feels warmer."""
    vapour_hpa = humidity_pct / 100.0 * 6.105 * math.exp(17.27 * temperature_c / (237.7 + temperature_c))
    return temperature_c + 0.33 * vapour_hpa - 4.0


class Sensor(exports.Sensor):
    def poll(self) -> list[Reading]:
        source = find_reading(readings.latest(), has=("temperature", "humidity"))
        if source is None:
            return []  # nothing measured yet
        value = round(feels_like_c(field_value(source, "temperature"), field_value(source, "humidity")), 1)
        check = alerts.Check("feels_like", "feels like", " °C", setting("warn_c", 27.0),
                             setting("alarm_c", 32.0), setting("hysteresis_c", 1.0))
        saved = load_alert_state()
        level, levels, message = alerts.evaluate([check], {"feels_like": value}, saved["levels"])
        if level != saved["level"] or levels != saved["levels"]:
            best_effort("saving the alert state", save_state, "alert", {"level": level, "levels": levels})
        signal_level(setting("led", {LED}), alerts.COLORS[level],
                     level == alerts.ALARM and saved["level"] < alerts.ALARM, 2, 200, 150)
        return [reading(SENSOR_ID, [field("feels_like", value, "°C", "temperature")],
                        source.reading.timestamp_ms, level, message)]
"#
        }
        Kind::Automation => {
            r#""""{NAME}: an automation. It follows the humidity the {FOLLOWS} plugin
reports and shows it on LED `led`: green while the air is fine, blue while
it is damp (humidity at or above `damp_pct`, until it falls more than
`hysteresis_pct` below), with one beep when it turns damp. It reads no
sensor and reports nothing; its state survives reloads, so a reload does not
beep again.

The host calls run() with the latest readings of the plugins it follows
when one of them changes, and at least every `interval_ms`.

Edit freely: a running host loads each saved version by itself (and keeps
the last good one if this one fails). Test without WebAssembly:
`scripts/test-plugins.sh plugins/{NAME}`. Reference: docs/plugin-sdk.md.
"""

from wit_world import exports
from wit_world.imports.types import FollowedReading

import alerts
from plugin_support import best_effort, load_state, save_state, setting, signal_level
from readings_support import field_value, find_reading

GREEN, BLUE = (0, 255, 0), (0, 0, 255)


class Automation(exports.Automation):
    def run(self, readings: list[FollowedReading]) -> None:
        source = find_reading(readings, has=("humidity",))
        if source is None:
            return  # nothing measured yet
        was_damp = load_state("damp", False) is True
        # A level with hysteresis: damp from damp_pct up, dry again only
        # once more than hysteresis_pct below it.
        damp_pct = setting("damp_pct", 60.0)
        level = alerts.next_level(field_value(source, "humidity"), alerts.ALARM if was_damp else alerts.OK,
                                  damp_pct, damp_pct, setting("hysteresis_pct", 3.0))
        damp = level == alerts.ALARM
        if damp != was_damp:
            best_effort("saving the state", save_state, "damp", damp)
        signal_level(setting("led", {LED}), BLUE if damp else GREEN, damp and not was_damp, 1, 300, 0)
"#
        }
        Kind::Dashboard => {
            r#""""{NAME}: a minimal dashboard page: one row per reading, every field with
its unit. The host calls render() when its data changes and serves the page
at /view (framed by its own page at /).

Edit freely: a running host loads each saved version by itself. Test without
WebAssembly: `scripts/test-plugins.sh plugins/{NAME}`. Reference:
docs/plugin-sdk.md.
"""

import html
import json

from wit_world import exports
from wit_world.imports import settings


def title():
    raw = settings.get("title")
    try:
        return json.loads(raw) if raw else "{NAME}"
    except ValueError:
        return "{NAME}"


def row(followed):
    r = followed.reading
    values = ", ".join(f"{f.name} {f.value:g}{' ' + f.unit if f.unit else ''}" for f in r.fields)
    return (f"<tr><td>{html.escape(r.sensor_id)}</td><td>{html.escape(values)}</td>"
            f"<td>{r.alert.name.lower()}</td><td>{html.escape(r.message)}</td></tr>")


class Dashboard(exports.Dashboard):
    def render(self, data) -> str:
        name = html.escape(title())
        rows = "".join(row(r) for r in data.readings)
        return ("<!doctype html><html><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                f"<title>{name}</title></head><body><h1>{name}</h1>"
                f"<table>{rows}</table></body></html>")
"#
        }
    }
}

fn test_py(kind: Kind) -> &'static str {
    match kind {
        Kind::Sensor => {
            r#""""Tests of {NAME} without WebAssembly: scripts/test-plugins.sh plugins/{NAME}"""

import pytest

from fakehost import FakeHost, color_name

# As in its config entry: what the host grants it.
GRANTS = {"interfaces": ["readings", "led-controller", "buzzer-controller", "state", "log", "settings"],
          "follows": ["{FOLLOWS}"], "leds": [{LED}]}


@pytest.fixture
def host():
    with FakeHost(grants=GRANTS, settings={"warn_c": 27.0, "alarm_c": 32.0}) as h:
        h.load(__file__)
        yield h


def measured(host, temperature, humidity):
    """The {FOLLOWS} plugin reports; the host polls {NAME}."""
    host.readings.set("{FOLLOWS}", kind="dht22", temperature=temperature, humidity=humidity)
    return host.poll()


def test_comfortable_air_is_ok_and_green(host):
    [r] = measured(host, 21.0, 45.0)
    assert (r.sensor_id, r.alert.name) == ("{NAME}", "OK")
    [f] = r.fields
    assert (f.name, f.unit, f.device_class) == ("feels_like", "°C", "temperature")
    assert f.value == 20.7                  # still air at 45 % feels a little cooler
    assert color_name(host.leds[{LED}]) == "green"


def test_hot_humid_air_alarms_and_beeps_once(host):
    [r] = measured(host, 30.0, 70.0)        # feels like 35.8 °C
    assert r.alert.name == "ALARM" and "feels like 35.8 °C" in r.message
    assert color_name(host.leds[{LED}]) == "red"
    measured(host, 30.0, 70.0)
    assert len(host.buzzer.calls) == 1
    host.reload()                           # the alarm is remembered: no second beep
    measured(host, 30.0, 70.0)
    assert len(host.buzzer.calls) == 1


def test_nothing_before_the_first_reading(host):
    assert host.poll() == []
"#
        }
        Kind::Automation => {
            r#""""Tests of {NAME} without WebAssembly: scripts/test-plugins.sh plugins/{NAME}"""

import pytest

from fakehost import FakeHost, color_name

# As in its config entry: what the host grants it (no sensor).
GRANTS = {"interfaces": ["led-controller", "buzzer-controller", "state", "log", "settings"],
          "follows": ["{FOLLOWS}"], "leds": [{LED}]}


@pytest.fixture
def host():
    with FakeHost(kind="automation", grants=GRANTS, settings={"damp_pct": 60.0}) as h:
        h.load(__file__)
        yield h


def air(host, humidity):
    """The {FOLLOWS} plugin reports `humidity`; the host runs {NAME}."""
    host.readings.set("{FOLLOWS}", kind="bme680", humidity=humidity)
    host.run()
    return color_name(host.leds[{LED}])


def test_damp_air_turns_the_led_blue_and_beeps_once(host):
    assert air(host, 45.0) == "green" and host.buzzer.calls == []
    assert air(host, 70.0) == "blue"
    assert air(host, 65.0) == "blue"
    assert len(host.buzzer.calls) == 1


def test_hysteresis_and_state_across_a_reload(host):
    assert air(host, 61.0) == "blue"
    host.reload()
    assert air(host, 58.0) == "blue"        # within 3 % of 60: still damp, no second beep
    assert len(host.buzzer.calls) == 1
    assert air(host, 56.0) == "green"


def test_nothing_before_the_first_reading(host):
    host.run()
    assert host.leds[{LED}] is None and host.buzzer.calls == []
"#
        }
        Kind::Dashboard => {
            r#""""Tests of {NAME} without WebAssembly: scripts/test-plugins.sh plugins/{NAME}"""

from fakehost import FakeHost


def test_every_reading_is_on_the_page_escaped():
    with FakeHost(kind="dashboard", settings={"title": "My <Pi>"}) as host:
        plugin = host.load(__file__)
        host.readings.set("dht22", temperature=21.5, humidity=40.0)
        host.readings.set("dew_point", dew_point=(9.5, "°C", "temperature"), message="<from dht22>")
        page = plugin.render(host.snapshot())
    assert "<title>My &lt;Pi&gt;</title>" in page
    assert "temperature 21.5 °C, humidity 40 %" in page
    assert "dew_point 9.5 °C" in page and "&lt;from dht22&gt;" in page
"#
        }
    }
}

fn readme(kind: Kind) -> &'static str {
    match kind {
        Kind::Sensor => {
            "# {NAME}\n\nA `sensor` plugin: it reports how warm the air feels (field `feels_like`, °C) \
             from the temperature and humidity the `{FOLLOWS}` plugin reports, alerts above `warn_c` / \
             `alarm_c` (with `hysteresis_c`), shows the level on LED `led` and beeps on entering alarm.\n\n\
             * Save `app.py` and a running host loads the new version by itself.\n\
             * Test without WebAssembly: `scripts/test-plugins.sh plugins/{NAME}`.\n\
             * Check that the host would load it, and what the config grants it: \
             `wasi-python-host check {NAME}`.\n\
             * Its config entry (grants, follows, settings) was printed, or added with `--add`, \
             by `wasi-python-host new`.\n\
             * The helpers and the test kit: docs/plugin-sdk.md.\n"
        }
        Kind::Automation => {
            "# {NAME}\n\nAn `automation` plugin: it follows the humidity the `{FOLLOWS}` plugin reports \
             and turns LED `led` blue while the air is damp (at or above `damp_pct`, with \
             `hysteresis_pct`), green otherwise, beeping once when it turns damp. It reads no sensor.\n\n\
             * Save `app.py` and a running host loads the new version by itself.\n\
             * Test without WebAssembly: `scripts/test-plugins.sh plugins/{NAME}`.\n\
             * Check that the host would load it, and what the config grants it: \
             `wasi-python-host check {NAME}`.\n\
             * Its config entry (grants, follows, settings) was printed, or added with `--add`, \
             by `wasi-python-host new`.\n\
             * The helpers and the test kit: docs/plugin-sdk.md.\n"
        }
        Kind::Dashboard => {
            "# {NAME}\n\nA `dashboard` plugin: a minimal page with one row per reading; setting \
             `title`. To make it the page at `/`, disable the shipped `dashboard` plugin (one \
             dashboard is served).\n\n\
             * Save `app.py` and a running host loads the new version by itself.\n\
             * Test without WebAssembly: `scripts/test-plugins.sh plugins/{NAME}`.\n\
             * The snapshot it renders, and the test kit: docs/plugin-sdk.md.\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            led: 3,
            follows: "dht22".into(),
            enabled: true,
        }
    }

    #[test]
    fn kinds_parse_and_actuator_points_to_automation() {
        assert_eq!("sensor".parse(), Ok(Kind::Sensor));
        assert_eq!("automation".parse(), Ok(Kind::Automation));
        assert_eq!("dashboard".parse(), Ok(Kind::Dashboard));
        let err = "actuator".parse::<Kind>().unwrap_err();
        assert!(err.contains("--kind automation"), "{err}");
        let err = "sensr".parse::<Kind>().unwrap_err();
        assert!(
            err.contains("`sensr`") && err.contains("sensor, automation or dashboard"),
            "{err}"
        );
    }

    /// Every shipped config takes every kind's entry as `new` makes it: a
    /// free LED on its strip, a plugin to follow.
    #[test]
    fn every_entry_fits_every_shipped_config() {
        for file in ["config/host.toml", "deploy/host.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let text = std::fs::read_to_string(&path).expect("a shipped config");
            let config = crate::config::Config::parse(&text, &path).expect("a valid config");
            for kind in [Kind::Sensor, Kind::Automation, Kind::Dashboard] {
                let led = first_free_led(&config)
                    .unwrap_or_else(|| panic!("{file}: no free LED for a new {kind:?}"));
                let follows = followed(&config, kind);
                assert_eq!(follows.is_some(), kind.follows_kind().is_some(), "{file}");
                let options = Options {
                    led,
                    follows: follows.unwrap_or_default(),
                    // The shipped configs have their dashboard on.
                    enabled: kind != Kind::Dashboard,
                };
                let full = format!("{text}\n{}", config_entry("mine", kind, &options));
                let config = crate::config::Config::parse(&full, &path)
                    .unwrap_or_else(|e| panic!("{file}, {kind:?}: {e}"));
                let plugin = &config.plugins["mine"];
                assert_eq!(plugin.kind().name(), kind.config_kind());
                assert_eq!(plugin.enabled, kind != Kind::Dashboard, "{file}: {kind:?}");
                assert_eq!(
                    plugin.grants.leds.clone(),
                    if kind.uses_led() { vec![led] } else { vec![] }
                );
                assert!(
                    config
                        .plugins
                        .iter()
                        .all(|(n, p)| n == "mine" || !p.grants.leds.contains(&led)),
                    "{file}: LED {led} is another plugin's"
                );
                // Neither reads a device: a device shared with the dht22
                // plugin would be neither's.
                assert!(
                    plugin.grants.dht22_pins.is_empty() && plugin.grants.i2c_addresses.is_empty()
                );
            }
        }
    }

    #[test]
    fn placeholders_are_all_filled() {
        for kind in [Kind::Sensor, Kind::Automation, Kind::Dashboard] {
            for text in [app_py(kind), test_py(kind), readme(kind)] {
                let filled = fill(text, "mine", &options());
                for token in ["{NAME}", "{LED}", "{FOLLOWS}"] {
                    assert!(!filled.contains(token), "{kind:?}: {token} left");
                }
            }
        }
    }
}
