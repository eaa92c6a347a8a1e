//! `wasi-python-host new NAME --kind sensor|actuator|dashboard`: a plugin
//! folder that already runs and has a test, plus the config entry it needs.
//! There is nothing to build: a running host loads `app.py` as soon as it
//! is saved.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// What a new plugin starts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads the DHT22, alerts with hysteresis, shows its level on an LED.
    Sensor,
    /// Reacts to a reading by driving an LED and the buzzer; reports nothing.
    Actuator,
    /// Renders the dashboard page.
    Dashboard,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "sensor" => Ok(Kind::Sensor),
            "actuator" => Ok(Kind::Actuator),
            "dashboard" => Ok(Kind::Dashboard),
            other => Err(format!(
                "unknown kind `{other}`: expected sensor, actuator or dashboard"
            )),
        }
    }
}

/// The files written, and the config entry to add.
pub struct Scaffold {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub config_entry: String,
}

/// Checks a plugin name: it becomes a folder, a file and a TOML key.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 40;
    if !ok {
        bail!("plugin names are 1–40 characters of a–z, 0–9 and `_`, starting with a letter: `{name}` is not");
    }
    if ["common", "testing"].contains(&name) {
        bail!("`{name}` is a reserved folder under plugins/");
    }
    Ok(())
}

/// Writes `plugins_dir/NAME/` for `kind`. Refuses to overwrite anything.
pub fn create(plugins_dir: &Path, name: &str, kind: Kind, led: u8) -> anyhow::Result<Scaffold> {
    check_name(name)?;
    let dir = plugins_dir.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; pick another name or remove it",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = [
        ("app.py", app_py(name, kind)),
        ("test_app.py", test_py(name, kind, led)),
        ("README.md", readme(name, kind)),
    ];
    let mut written = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(
            &path,
            text.replace("{NAME}", name)
                .replace("{LED}", &led.to_string()),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(Scaffold {
        dir,
        files: written,
        config_entry: config_entry(name, kind, led),
    })
}

/// The `[plugins.NAME]` entry a new plugin of `kind` needs.
pub fn config_entry(name: &str, kind: Kind, led: u8) -> String {
    match kind {
        Kind::Sensor | Kind::Actuator => format!(
            r#"[plugins.{name}]
kind = "dht22"
interval_ms = 2000
[plugins.{name}.grants]
interfaces = ["gpio-provider", "led-controller", "buzzer-controller", "state", "log", "settings"]
dht22_pins = [4]
leds = [{led}]
state_quota_bytes = 4096
[plugins.{name}.settings]
pin = 4
led = {led}
"#
        ),
        Kind::Dashboard => format!(
            r#"[plugins.{name}]
kind = "dashboard"
[plugins.{name}.grants]
interfaces = ["log", "settings"]
[plugins.{name}.settings]
title = "{}"
"#,
            name.to_uppercase()
        ),
    }
}

fn app_py(_name: &str, kind: Kind) -> String {
    match kind {
        Kind::Sensor => r#""""{NAME}: reads the DHT22 and raises an alert when it is too warm.

Edit freely: a running host loads each saved version by itself (and keeps
the last good one if this one fails). Test without WebAssembly:
`scripts/test-plugins.sh plugins/{NAME}`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import gpio_provider
from wit_world.imports.types import AlertLevel, Dht22Reading

import alerts
from plugin_support import best_effort, load_alert_state, save_state, setting, signal_level, warn

LEVELS = (AlertLevel.OK, AlertLevel.WARN, AlertLevel.ALARM)


class Dht22Logic(exports.Dht22Logic):
    def poll(self) -> list[Dht22Reading]:
        pin = setting("pin", 4)
        try:
            temperature, humidity = gpio_provider.read_dht22(pin)
        except Err as e:
            warn(f"DHT22 read failed: {e.value}")
            return []
        check = alerts.Check("temperature", "temperature", " °C",
                             setting("warn_c", 26.0), setting("alarm_c", 30.0), setting("hysteresis_c", 1.0))
        saved = load_alert_state()
        level, levels, message = alerts.evaluate([check], {"temperature": temperature}, saved["levels"])
        if level != saved["level"] or levels != saved["levels"]:
            best_effort("saving the alert state", save_state, "alert", {"level": level, "levels": levels})
        signal_level(setting("led", {LED}), alerts.COLORS[level],
                     level == alerts.ALARM and saved["level"] < alerts.ALARM, 2, 200, 150)
        return [Dht22Reading(sensor_id="{NAME}", temperature=round(temperature, 1),
                             humidity=round(humidity, 1), timestamp_ms=gpio_provider.get_timestamp_ms(),
                             alert=LEVELS[level], message=message)]
"#
        .to_string(),
        Kind::Actuator => r#""""{NAME}: drives LED {LED} from the humidity: blue when the air is damp, off
otherwise, and beeps once when it turns damp. Reports no readings of its own.

Edit freely: a running host loads each saved version by itself (and keeps
the last good one if this one fails). Test without WebAssembly:
`scripts/test-plugins.sh plugins/{NAME}`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import buzzer_controller, gpio_provider, led_controller
from wit_world.imports.types import Dht22Reading, Rgb

from plugin_support import best_effort, load_state, save_state, setting, warn


class Dht22Logic(exports.Dht22Logic):
    def poll(self) -> list[Dht22Reading]:
        try:
            _, humidity = gpio_provider.read_dht22(setting("pin", 4))
        except Err as e:
            warn(f"DHT22 read failed: {e.value}")
            return []
        damp = humidity >= setting("damp_pct", 60.0)
        was_damp = load_state("damp", False)
        color = Rgb(r=0, g=0, b=255) if damp else Rgb(r=0, g=0, b=0)
        if best_effort("LED", led_controller.set_led, setting("led", {LED}), color):
            best_effort("LED sync", led_controller.sync_leds)
        if damp != was_damp:
            best_effort("saving state", save_state, "damp", damp)
            if damp:
                best_effort("buzzer", buzzer_controller.beep, 1, 300, 0)
        return []
"#
        .to_string(),
        Kind::Dashboard => r#""""{NAME}: a minimal dashboard page. The host calls render() when its data
changes and serves the result at /.

Edit freely: a running host loads each saved version by itself.
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


class Dashboard(exports.Dashboard):
    def render(self, data) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(r.sensor_id)}</td><td>{r.temperature:.1f} °C</td>"
            f"<td>{r.humidity:.1f} %</td><td>{r.alert.name.lower()}</td></tr>"
            for r in list(data.dht22) + list(data.bme680)
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title())}</title></head><body>"
            f"<h1>{html.escape(title())}</h1><table>{rows}</table></body></html>"
        )
"#
        .to_string(),
    }
}

fn test_py(_name: &str, kind: Kind, _led: u8) -> String {
    match kind {
        Kind::Sensor => {
            r#""""Tests of {NAME} without WebAssembly: scripts/test-plugins.sh plugins/{NAME}"""

from fakehost import FakeHost, color_name


def test_too_warm_turns_the_led_red_and_beeps_once():
    host = FakeHost(settings={"alarm_c": 30.0})
    plugin = host.load(__file__)
    host.dht22(pin=4).set(31.0, 40.0)
    [reading] = plugin.poll()
    assert reading.alert.name == "ALARM"
    assert color_name(host.leds[{LED}]) == "red"
    plugin.poll()
    assert len(host.buzzer.calls) == 1


def test_comfortable_is_ok_and_green():
    host = FakeHost()
    plugin = host.load(__file__)
    host.dht22(pin=4).set(21.0, 40.0)
    [reading] = plugin.poll()
    assert reading.alert.name == "OK" and reading.sensor_id == "{NAME}"
    assert color_name(host.leds[{LED}]) == "green"
"#
            .to_string()
        }
        Kind::Actuator => {
            r#""""Tests of {NAME} without WebAssembly: scripts/test-plugins.sh plugins/{NAME}"""

from fakehost import FakeHost


def test_damp_air_turns_the_led_blue_and_beeps_once():
    host = FakeHost()
    plugin = host.load(__file__)
    host.dht22(pin=4).set(21.0, 70.0)
    assert plugin.poll() == []
    assert host.leds[{LED}] == (0, 0, 255)
    plugin.poll()
    assert len(host.buzzer.calls) == 1
    host.dht22(pin=4).set(21.0, 40.0)
    plugin.poll()
    assert host.leds[{LED}] == (0, 0, 0)
"#
            .to_string()
        }
        Kind::Dashboard => {
            r#""""Tests of {NAME} without WebAssembly: scripts/test-plugins.sh plugins/{NAME}"""

from fakehost import FakeHost


def test_page_has_the_title_escaped():
    host = FakeHost(settings={"title": "My <Pi>"})
    plugin = host.load(__file__)
    d = host.wit.exports.dashboard
    page = plugin.render(d.Snapshot(dht22=[], bme680=[], system=None, leds=[], buzzer_active=False,
                                    plugins=[], hardware="sim", last_update_ms=0))
    assert "My &lt;Pi&gt;" in page
"#
            .to_string()
        }
    }
}

fn readme(_name: &str, kind: Kind) -> String {
    let what = match kind {
        Kind::Sensor => "reads the DHT22 on `pin`, alerts above `warn_c` / `alarm_c` (with `hysteresis_c`), shows the level on LED `led` and beeps on entering alarm",
        Kind::Actuator => "turns LED `led` blue while the humidity is at or above `damp_pct` and beeps once when it becomes damp",
        Kind::Dashboard => "renders a minimal page with the readings; setting `title`",
    };
    format!(
        "# {{NAME}}\n\nThis plugin {what}.\n\n\
         * Save `app.py` and a running host loads the new version by itself.\n\
         * Test without WebAssembly: `scripts/test-plugins.sh plugins/{{NAME}}`.\n\
         * Check that the host would load it, and what the config grants it: \
         `wasi-python-host check {{NAME}}`.\n\
         * Its config entry (grants, interval, settings) was printed by `wasi-python-host new`.\n"
    )
}
