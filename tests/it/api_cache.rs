//! `/api` is served from a cache that is rebuilt only when something it
//! shows changed. These tests change each input behind the server's back
//! (as the scheduler, the plugins, the hardware thread and the MQTT thread
//! do) and read `/api` through a real socket: it must never answer with
//! what was true before the change.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wasi_python_host::config::MqttSection;
use wasi_python_host::contract::types::{AlertLevel, Dht22Reading};
use wasi_python_host::failure::{FailureKind, PluginFailure};
use wasi_python_host::hardware::{BuzzPattern, Hardware};
use wasi_python_host::http::{AppState, HttpServer, Limits};
use wasi_python_host::plugins::registry::{Call, Configured, Problem, Version};
use wasi_python_host::scheduler::{SensorReading, Shared, SystemReading};

use crate::support::{http, wait_until};

/// A server on a free port with simulated hardware and nothing else: the
/// test plays the scheduler.
struct Served {
    state: Arc<AppState>,
    server: Option<HttpServer>,
    _hardware: Hardware,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

impl Served {
    fn start(configure: impl FnOnce(&mut AppState)) -> Served {
        let (hardware, mut state) = crate::httpd::sim_state();
        configure(&mut state);
        let state = Arc::new(state);
        let server = HttpServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Limits::default(),
            state.clone(),
        )
        .expect("server starts");
        Served {
            state,
            server: Some(server),
            _hardware: hardware,
        }
    }

    /// `GET /api` through the socket.
    fn api(&self) -> Value {
        let addr = self.server.as_ref().expect("server running").addr;
        let r = http(addr, "GET", "/api", None, "");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    fn shared(&self) -> &Shared {
        &self.state.shared
    }
}

fn reading(sensor_id: &str, temperature: f32) -> SensorReading {
    SensorReading::from_dht22(
        Dht22Reading {
            sensor_id: sensor_id.into(),
            temperature,
            humidity: 40.0,
            timestamp_ms: 1_700_000_000_000,
            alert: AlertLevel::Ok,
            message: String::new(),
        },
        "p",
    )
}

fn temperature(api: &Value, sensor_id: &str) -> Option<f64> {
    api["readings"]
        .as_array()?
        .iter()
        .find(|r| r["sensor_id"] == sensor_id)?["temperature"]
        .as_f64()
}

fn plugin<'a>(api: &'a Value, name: &str) -> &'a Value {
    api["plugins"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no plugin {name} in {api}"))
}

#[test]
fn readings_changed_without_a_generation_bump_are_served() {
    let s = Served::start(|_| {});
    let before = s.api();
    assert_eq!(s.api(), before, "nothing changed: the same answer");
    // The scheduler stores a plugin's readings first and bumps the
    // generation at the end of its round: in between, /api must already
    // show them.
    let generation = s.shared().readings.read().unwrap().generation;
    s.shared()
        .readings
        .write()
        .unwrap()
        .sensors
        .insert("p".into(), vec![reading("s1", 21.5)]);
    assert_eq!(temperature(&s.api(), "s1"), Some(21.5));
    s.shared()
        .readings
        .write()
        .unwrap()
        .sensors
        .insert("p".into(), vec![reading("s1", 22.0)]);
    assert_eq!(temperature(&s.api(), "s1"), Some(22.0));
    s.shared().readings.write().unwrap().system = Some(SystemReading {
        cpu_temp_c: 51.0,
        ram_used_mb: 100,
        ram_total_mb: 400,
        uptime_s: 10,
        load_1m: 0.5,
        timestamp_ms: 1_700_000_000_000,
        alert: "ok",
        message: String::new(),
    });
    assert_eq!(s.api()["system"]["cpu_temp_c"], 51.0);
    s.shared().readings.write().unwrap().last_update_ms = 1_700_000_000_123;
    assert_eq!(s.api()["last_update"], 1_700_000_000_123u64);
    assert_eq!(
        s.shared().readings.read().unwrap().generation,
        generation,
        "the test changed the readings without a generation bump"
    );
    // And a generation bump alone gives the same (current) answer.
    let now = s.api();
    s.shared().readings.write().unwrap().generation += 1;
    assert_eq!(s.api(), now);
}

#[test]
fn published_values_are_served_fresh() {
    let s = Served::start(|_| {});
    s.api();
    let values = [(
        "dew_point".to_string(),
        wasi_python_host::readings::TelemetryValue {
            value: 9.5,
            unit: "°C".into(),
            timestamp_ms: 1,
        },
    )]
    .into();
    s.shared()
        .readings
        .write()
        .unwrap()
        .published
        .insert("p".into(), SensorReading::published("p", &values));
    let api = s.api();
    let p = api["readings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["sensor_id"] == "p")
        .unwrap_or_else(|| panic!("no reading of p in {api}"));
    assert_eq!(p["dew_point"], 9.5);
}

#[test]
fn plugin_status_and_counters_are_served_fresh() {
    let s = Served::start(|_| {});
    let registry = &s.shared().registry;
    let version = |v: &str| Version {
        kind: "sensor",
        version: v.into(),
        source: "python",
        file: "plugins/p".into(),
        interval_ms: 1000,
    };
    registry.configured(&[Configured {
        name: "p".into(),
        file: "plugins/p".into(),
        enabled: true,
        interval_ms: 1000,
    }]);
    assert_eq!(plugin(&s.api(), "p")["status"], "loading");
    registry.installed("p", version("abcdef123456"));
    let api = s.api();
    assert_eq!(plugin(&api, "p")["status"], "running");
    assert_eq!(plugin(&api, "p")["version"], "abcdef123456");
    assert!(plugin(&api, "p")["loaded_at_ms"].as_u64().unwrap() > 0);
    for calls in 1..=3 {
        registry.called(
            "p",
            Call {
                kind: "poll",
                duration: Duration::from_micros(100),
                fuel: 1,
                memory_bytes: 0,
                denied: 0,
                state_writes: 0,
            },
        );
        assert_eq!(plugin(&s.api(), "p")["calls"], calls);
    }
    registry.call_failed(
        "p",
        &PluginFailure {
            kind: FailureKind::Trap,
            message: "ZeroDivisionError (p/app.py, line 3)".into(),
            detail: String::new(),
        },
    );
    let api = s.api();
    assert_eq!(plugin(&api, "p")["failures"], 1);
    assert_eq!(plugin(&api, "p")["status"], "failed");
    assert!(plugin(&api, "p")["last_error"]
        .as_str()
        .unwrap()
        .contains("line 3"));
    registry.reload_failed(
        "p",
        Problem {
            kind: "reload",
            message: "reload failed: SyntaxError (p/app.py, line 4)".into(),
            detail: String::new(),
        },
    );
    assert!(plugin(&s.api(), "p")["last_error"]
        .as_str()
        .unwrap()
        .contains("line 4"));
    registry.installed("p", version("123456abcdef"));
    let api = s.api();
    assert_eq!(plugin(&api, "p")["version"], "123456abcdef");
    assert_eq!(plugin(&api, "p")["last_error"], "");
    registry.configured(&[]);
    assert!(s.api()["plugins"].as_array().unwrap().is_empty());
}

#[test]
fn leds_and_buzzer_are_served_fresh() {
    let s = Served::start(|_| {});
    assert_eq!(s.api()["leds"][2]["r"], 0);
    s.state.hardware.set_leds(vec![(2, [10, 20, 30])]).unwrap();
    let api = s.api();
    assert_eq!(
        (
            &api["leds"][2]["r"],
            &api["leds"][2]["g"],
            &api["leds"][2]["b"]
        ),
        (&Value::from(10), &Value::from(20), &Value::from(30))
    );
    s.state.hardware.leds_off(&[2]);
    wait_until("the LED is off in /api", Duration::from_secs(5), || {
        (s.api()["leds"][2]["r"] == 0).then_some(())
    });
    let beeps = s.api()["buzzer"]["beeps_total"].as_u64().unwrap();
    s.state
        .hardware
        .buzz(BuzzPattern {
            count: 1,
            on: Duration::from_millis(300),
            off: Duration::from_millis(10),
        })
        .unwrap();
    let api = s.api();
    assert_eq!(api["buzzer"]["beeps_total"].as_u64(), Some(beeps + 1));
    assert_eq!(api["buzzer"]["on"], true);
    wait_until(
        "the buzzer is off again in /api",
        Duration::from_secs(5),
        || (s.api()["buzzer"]["on"] == false).then_some(()),
    );
}

#[test]
fn mqtt_status_is_served_fresh() {
    // A broker that refuses connections: the MQTT thread's status changes
    // (connect attempts, the error) while nothing else does.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut service = None;
    let s = Served::start(|state| {
        let mqtt = wasi_python_host::mqtt::Service::new(
            state.shared.clone(),
            state.control.clone(),
            "sim".into(),
        );
        state.mqtt = Some(mqtt.clone());
        service = Some(mqtt);
    });
    let service = service.unwrap();
    assert!(s.api().get("mqtt").is_none(), "MQTT off: no mqtt field");
    service
        .apply(&MqttSection {
            enabled: true,
            host: "127.0.0.1".into(),
            port: Some(port),
            ..MqttSection::default()
        })
        .unwrap();
    let api = s.api();
    assert_eq!(api["mqtt"]["broker"], format!("127.0.0.1:{port}"));
    wait_until(
        "/api shows the failed connection",
        Duration::from_secs(20),
        || {
            let api = s.api();
            (api["mqtt"]["last_error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()))
            .then_some(())
        },
    );
    service.shutdown();
    wait_until("/api shows MQTT off", Duration::from_secs(10), || {
        s.api().get("mqtt").is_none().then_some(())
    });
}
