//! The example plugins in examples/plugins, installed as the SDK page says
//! (their `.py` files into the plugins folder, their config.toml entry into
//! the host's config) and run by the real host: their readings and LEDs in
//! /api, /metrics, Home Assistant discovery on a real Mosquitto broker and
//! the dashboard.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::mqtt::{free_port, mqtt_host, Broker, Subscriber, STATE};
use crate::support::{copy_sources, plugin_dir, reading, temp_dir, TestHost, ROOT};

const WAIT: Duration = Duration::from_secs(30);

/// Installs example `name`: its modules and its config.toml entry.
fn install(config: &mut toml::Table, name: &str) {
    let source = Path::new(ROOT).join("examples/plugins").join(name);
    copy_sources(&source, &plugin_dir(config, name));
    let text = std::fs::read_to_string(source.join("config.toml")).expect("its config.toml");
    let entry: toml::Table = text.parse().expect("its config.toml is TOML");
    let plugins = config["plugins"].as_table_mut().expect("[plugins]");
    plugins.insert(name.into(), entry["plugins"][name].clone());
}

/// The dew point (°C) by the Magnus formula with Sonntag's coefficients,
/// computed here independently of the plugin.
fn magnus(t: f64, rh: f64) -> f64 {
    let gamma = (rh / 100.0).ln() + 17.62 * t / (243.12 + t);
    243.12 * gamma / (17.62 - gamma)
}

fn dew_point(api: &Value) -> Option<f64> {
    reading(api, "dew_point")?["dew_point"].as_f64()
}

#[test]
fn dew_point_reaches_the_api_metrics_home_assistant_and_the_dashboard() {
    let dir = temp_dir("example-dew-point");
    let broker = Broker::start(&dir, free_port(), None);
    let sub = Subscriber::start(broker.port);
    let host = mqtt_host(broker.port, |c| install(c, "dew_point"));

    host.force(json!({"device": "dht22", "pin": 4, "temperature": 20.0, "humidity": 50.0}));
    let expected = (magnus(20.0, 50.0) * 10.0).round() / 10.0;
    let api = host.wait_api("the dew point of 20 °C at 50 %", WAIT, |a| {
        dew_point(a) == Some(expected)
    });
    let r = reading(&api, "dew_point").unwrap();
    assert_eq!(r["plugin"], "dew_point", "{r}");
    assert_eq!(r["units"]["dew_point"], "°C", "{r}");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("from dht22-gpio-4: 20.0 °C, 50 %")),
        "{r}"
    );
    // Its time is the DHT22 reading's it comes from.
    let dht = reading(&api, "dht22-gpio-4").unwrap();
    assert!(
        r["timestamp_ms"].as_u64() <= dht["timestamp_ms"].as_u64(),
        "{r} {dht}"
    );

    // It follows the DHT22: other air, another dew point.
    host.force(json!({"device": "dht22", "pin": 4, "temperature": 30.0, "humidity": 80.0}));
    let expected = (magnus(30.0, 80.0) * 10.0).round() / 10.0;
    host.wait_api("the dew point of 30 °C at 80 %", WAIT, |a| {
        dew_point(a) == Some(expected)
    });

    let metrics = host.get("/metrics").body;
    let sample = format!(
        "whp_reading{{sensor_id=\"dew_point\",field=\"dew_point\",unit=\"°C\",plugin=\"dew_point\"}} {expected}"
    );
    assert!(
        metrics.lines().any(|l| l == sample),
        "no `{sample}` in\n{metrics}"
    );

    // Home Assistant: a temperature entity in °C, its value in the state.
    let discovery = sub.json("homeassistant/sensor/test/dew_point_dew_point/config");
    assert_eq!(discovery["device_class"], "temperature", "{discovery}");
    assert_eq!(discovery["unit_of_measurement"], "°C", "{discovery}");
    assert_eq!(discovery["state_topic"], STATE, "{discovery}");
    let key = discovery["value_template"]
        .as_str()
        .expect("a value template");
    assert!(key.contains("dew_point_dew_point"), "{discovery}");
    sub.wait(STATE, |_, p| {
        serde_json::from_str::<Value>(p)
            .is_ok_and(|s| s["dew_point_dew_point"].as_f64() == Some(expected))
    });

    // The dashboard has a card for it, with the value.
    let card = format!("<b data-f=x_dew_point>{expected:.1}</b>");
    let deadline = std::time::Instant::now() + WAIT;
    let page = loop {
        let last = host.get("/view").body;
        if last.contains(&card) {
            break last;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `{card}` on the dashboard after {WAIT:?}:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(page.contains(r#"data-k="dew_point""#), "{page}");
}

fn led(api: &Value, index: usize) -> (u64, u64, u64) {
    let l = &api["leds"][index];
    let c = |k: &str| l[k].as_u64().unwrap_or(999);
    (c("r"), c("g"), c("b"))
}

const GREEN: (u64, u64, u64) = (0, 255, 0);
const RED: (u64, u64, u64) = (255, 0, 0);

fn beeps(api: &Value) -> u64 {
    api["buzzer"]["beeps_total"].as_u64().expect("beeps_total")
}

fn runs(host: &TestHost) -> u64 {
    host.plugin("air_quality_light")["calls"]
        .as_u64()
        .expect("calls")
}

/// Waits until the light has run `n` more times than now.
fn runs_more(host: &TestHost, n: u64) {
    let start = runs(host);
    host.wait_plugin("air_quality_light", "more runs", WAIT, |p| {
        p["calls"].as_u64() >= Some(start + n)
    });
}

#[test]
fn air_quality_light_turns_red_with_one_beep_keeps_it_over_a_reload_and_turns_back() {
    let host = TestHost::builder()
        .config(|c| install(c, "air_quality_light"))
        .start();
    let api = host.wait_api("LED 4 green for the simulated clean air", WAIT, |a| {
        led(a, 4) == GREEN
    });
    let iaq = reading(&api, "bme680-i2c-0x77").unwrap()["iaq_score"]
        .as_f64()
        .unwrap();
    assert!(iaq < 100.0, "the simulated air is clean: IAQ {iaq}");

    // Bad air: IAQ between red_iaq (200) and the bme680 plugin's own
    // alarm (250, where it would beep itself).
    host.force(json!({"device": "bme680", "gas_resistance_ohm": 60000.0}));
    let api = host.wait_api("LED 4 red", WAIT, |a| led(a, 4) == RED);
    let iaq = reading(&api, "bme680-i2c-0x77").unwrap()["iaq_score"]
        .as_f64()
        .unwrap();
    assert!((200.0..250.0).contains(&iaq), "IAQ {iaq}");
    let before = host.wait_api("its one beep", WAIT, |a| beeps(a) >= 1);
    assert_eq!(beeps(&before), 1, "{}", before["buzzer"]);
    // Red stays red without beeping again at every run.
    runs_more(&host, 2);
    let api = host.api();
    assert_eq!((led(&api, 4), beeps(&api)), (RED, 1), "{}", api["buzzer"]);

    // A new version (saved app.py) loads with the level from the state
    // store: still red, no second beep for the same red.
    let app = host
        .config_path
        .parent()
        .expect("the host's folder")
        .join("plugins/air_quality_light/app.py");
    let source = std::fs::read_to_string(&app).unwrap();
    let version = host.plugin("air_quality_light")["version"].clone();
    std::fs::write(&app, format!("{source}\n# edited\n")).unwrap();
    host.wait_plugin("air_quality_light", "the edited version", WAIT, |p| {
        p["version"] != version && p["status"] == "running"
    });
    runs_more(&host, 2);
    let api = host.api();
    assert_eq!((led(&api, 4), beeps(&api)), (RED, 1), "{}", api["buzzer"]);

    // Clean air again: green, silently.
    host.force(json!({"device": "bme680", "gas_resistance_ohm": 150000.0}));
    let api = host.wait_api("LED 4 green again", WAIT, |a| led(a, 4) == GREEN);
    assert_eq!(beeps(&api), 1, "{}", api["buzzer"]);
    assert_eq!(host.plugin("air_quality_light")["failures"], 0);
}
