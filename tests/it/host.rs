//! The whole product path: the real binary, the real componentize-py
//! plugins, simulated hardware, HTTP over a real socket.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::{reading, TestHost};

const DHT: &str = "dht22-gpio-4";
const BME: &str = "bme680-i2c-0x77";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

#[test]
fn api_has_the_seed_shape_with_plausible_values() {
    let host = TestHost::start();
    let api = host.wait_api(
        "both sensors and system stats",
        Duration::from_secs(20),
        |a| reading(a, DHT).is_some() && reading(a, BME).is_some() && a["system"].is_object(),
    );

    let dht = reading(&api, DHT).unwrap();
    assert!((10.0..35.0).contains(&f(&dht["temperature"])), "{dht}");
    assert!((0.0..=100.0).contains(&f(&dht["humidity"])), "{dht}");
    assert!(
        dht.get("pressure").is_none(),
        "a DHT22 reading has no pressure: {dht}"
    );
    let age = now_ms() as i64 - dht["timestamp_ms"].as_i64().unwrap();
    assert!((0..60_000).contains(&age), "timestamp_ms is now-ish: {dht}");
    assert_eq!(dht["alert"], "ok");

    let bme = reading(&api, BME).unwrap();
    assert!(
        (950.0..1050.0).contains(&f(&bme["pressure"])),
        "pressure in hPa: {bme}"
    );
    assert!(
        (1.0..2000.0).contains(&f(&bme["gas_resistance"])),
        "gas in kΩ: {bme}"
    );
    assert!(
        (0..=500).contains(&bme["iaq_score"].as_i64().unwrap()),
        "{bme}"
    );
    assert!((10.0..35.0).contains(&f(&bme["temperature"])), "{bme}");

    // Seed values are given to one decimal, not as widened f32 noise.
    let text = host.get("/api").body;
    assert!(
        !text.contains("0000000"),
        "floats are printed shortest-form: {text}"
    );

    assert!(api["last_update"].as_u64().unwrap() >= dht["timestamp_ms"].as_u64().unwrap());
    let sys = &api["system"];
    assert!(
        f(&sys["cpu_temp_c"]) > 20.0 && sys["ram_total_mb"].as_u64().unwrap() > 0,
        "{sys}"
    );
    assert_eq!(api["leds"].as_array().unwrap().len(), 8);
    assert_eq!(api["hardware"], "sim");
    let plugins = api["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 4, "{plugins:?}");
    assert!(
        plugins.iter().all(|p| p["status"] == "running"),
        "{plugins:?}"
    );
    // Each sensor plugin shows its level on its own LED: green when ok.
    for i in 0..3 {
        assert_eq!(api["leds"][i]["g"], 255, "LED {i} green: {}", api["leds"]);
    }
}

#[test]
fn readings_update_over_time() {
    let host = TestHost::start();
    let first = host.wait_api("a DHT22 reading", Duration::from_secs(20), |a| {
        reading(a, DHT).is_some()
    });
    let t0 = reading(&first, DHT).unwrap()["timestamp_ms"]
        .as_u64()
        .unwrap();
    let later = host.wait_api("a newer DHT22 reading", Duration::from_secs(10), |a| {
        reading(a, DHT).is_some_and(|r| r["timestamp_ms"].as_u64().unwrap() > t0)
    });
    assert!(later["last_update"].as_u64().unwrap() > t0);
}

#[test]
fn dashboard_shows_the_readings_and_buttons() {
    let host = TestHost::start();
    host.force(json!({"device": "dht22", "pin": 4, "temperature": 23.4, "humidity": 41.2}));
    host.force(
        json!({"device": "bme680", "temperature": 22.7, "humidity": 38.9, "pressure": 1009.6}),
    );
    let page = crate::support::wait_until(
        "the dashboard to show the pinned values",
        Duration::from_secs(20),
        || {
            let r = host.get("/view");
            (r.status == 200
                && r.body.contains("23.4")
                && r.body.contains("41.2")
                && r.body.contains("1009.6"))
            .then_some(r)
        },
    );
    assert!(page
        .header("Content-Type")
        .unwrap()
        .starts_with("text/html"));
    assert!(
        page.body.contains("WASI PYTHON HOST"),
        "the configured title"
    );
    assert!(
        page.body.contains("Long Beep") || page.body.contains("LONG BEEP"),
        "buzzer buttons"
    );
    assert!(
        page.body.contains("postMessage"),
        "the page takes live data from the host page"
    );
}

#[test]
fn beep_button_drives_the_simulated_buzzer() {
    let host = TestHost::start();
    let before = host.api()["buzzer"]["beeps_total"].as_u64().unwrap();
    let r = host.post_json("/api/buzzer", &json!({"pattern": "beep"}));
    assert_eq!(r.status, 202, "{}", r.body);
    host.wait_api("one more beep", Duration::from_secs(5), |a| {
        a["buzzer"]["beeps_total"].as_u64() == Some(before + 1)
    });
    let r = host.post_json("/api/buzzer", &json!({"pattern": "long"}));
    assert_eq!(r.status, 202, "{}", r.body);
    host.wait_api("the long beep to be playing", Duration::from_secs(5), |a| {
        a["buzzer"]["beeps_total"].as_u64() == Some(before + 2)
    });

    let r = host.post_json("/api/buzzer", &json!({"pattern": "siren"}));
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("siren") && r.body.contains("beep"),
        "{}",
        r.body
    );
    let r = host.get("/api/buzzer");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow").as_deref(), Some("POST"));
}

#[test]
fn alarm_turns_the_led_red_beeps_once_and_does_not_flap() {
    // Thresholds from config/host.toml: warn 28, alarm 32, hysteresis 1.
    let host = TestHost::start();
    let set = |t: f64| {
        host.force(json!({"device": "dht22", "pin": 4, "temperature": t, "humidity": 45.0}))
    };
    let dht = |a: &Value| reading(a, DHT).cloned();
    set(22.0);
    let calm = host.wait_api("an ok reading at 22 °C", Duration::from_secs(20), |a| {
        dht(a).is_some_and(|r| r["temperature"] == 22.0 && r["alert"] == "ok")
    });
    let beeps0 = calm["buzzer"]["beeps_total"].as_u64().unwrap();

    set(35.0);
    let alarm = host.wait_api("alarm at 35 °C", Duration::from_secs(20), |a| {
        dht(a).is_some_and(|r| r["alert"] == "alarm")
    });
    assert_eq!(
        alarm["leds"][1],
        json!({"index": 1, "r": 255, "g": 0, "b": 0}),
        "LED 1 red"
    );
    assert!(dht(&alarm).unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("alarm threshold 32"));
    // The plugin asks for three tones on entering alarm: one beep pattern.
    host.wait_api("the alarm beeps", Duration::from_secs(5), |a| {
        a["buzzer"]["beeps_total"].as_u64() == Some(beeps0 + 3)
    });

    // 31.5 is below the alarm threshold but inside the hysteresis band.
    set(31.5);
    let t = host.wait_api("a reading at 31.5 °C", Duration::from_secs(20), |a| {
        dht(a).is_some_and(|r| r["temperature"] == 31.5)
    });
    let t0 = dht(&t).unwrap()["timestamp_ms"].as_u64().unwrap();
    let still = host.wait_api(
        "a second reading at 31.5 °C",
        Duration::from_secs(20),
        |a| {
            dht(a).is_some_and(|r| {
                r["temperature"] == 31.5 && r["timestamp_ms"].as_u64().unwrap() > t0
            })
        },
    );
    assert_eq!(
        dht(&t).unwrap()["alert"],
        "alarm",
        "no flapping inside the band"
    );
    assert_eq!(
        dht(&still).unwrap()["alert"],
        "alarm",
        "no flapping inside the band"
    );
    assert_eq!(still["leds"][1]["r"], 255);
    assert_eq!(
        still["buzzer"]["beeps_total"].as_u64(),
        Some(beeps0 + 3),
        "no new beep while in alarm"
    );

    // Below threshold minus hysteresis: back to warn (still above 28).
    set(30.5);
    let warn = host.wait_api("warn at 30.5 °C", Duration::from_secs(20), |a| {
        dht(a).is_some_and(|r| r["alert"] == "warn")
    });
    assert_eq!(
        warn["leds"][1],
        json!({"index": 1, "r": 255, "g": 140, "b": 0}),
        "LED 1 amber"
    );

    // Entering alarm again beeps again.
    set(33.0);
    host.wait_api("alarm again", Duration::from_secs(20), |a| {
        dht(a).is_some_and(|r| r["alert"] == "alarm")
    });
    host.wait_api("a second alarm beep", Duration::from_secs(5), |a| {
        a["buzzer"]["beeps_total"].as_u64() == Some(beeps0 + 6)
    });
}

#[test]
fn health_and_metrics_answer() {
    let host = TestHost::start();
    let h = host.get("/healthz");
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.json()["status"], "ok");
    host.wait_api("a reading", Duration::from_secs(20), |a| {
        reading(a, DHT).is_some()
    });
    let m = host.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.header("Content-Type").unwrap().starts_with("text/plain"));
    assert!(
        m.body
            .contains("whp_temperature_celsius{sensor_id=\"dht22-gpio-4\"}"),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("whp_plugin_up{plugin=\"dht22\"} 1"),
        "{}",
        m.body
    );
    let r = host.get("/nope");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("/api"));
}

#[test]
fn second_start_uses_the_artifact_cache_and_sigterm_stops_cleanly() {
    // warm_cache() (inside start) already compiled every plugin once.
    let host = TestHost::start();
    let log = host.log();
    assert!(
        !log.contains("compiled "),
        "a warm start compiles nothing:\n{log}"
    );
    host.wait_api("a reading", Duration::from_secs(20), |a| {
        reading(a, DHT).is_some()
    });
    let log_handle = host.log();
    let status = host.stop();
    assert!(
        status.success(),
        "SIGTERM is a clean exit: {status:?}\n{log_handle}"
    );
}

#[test]
fn a_corrupt_cache_entry_is_recompiled_not_trusted() {
    crate::support::warm_cache();
    let dir = crate::support::temp_dir("corrupt-cache");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    // Copy one good entry (artifact + checksum), then flip bytes in it.
    let shared = crate::support::shared_cache_dir();
    let entries: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert!(!entries.is_empty(), "the shared cache has artifacts");
    let mut copied = 0;
    for artifact in &entries {
        // Other tests share the cache: a quick-tier (Winch) entry is
        // deleted when its optimized build lands, so one may vanish here.
        let (Ok(mut bytes), Ok(sum)) = (
            std::fs::read(artifact),
            std::fs::read(artifact.with_extension("sha256")),
        ) else {
            continue;
        };
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        let name = artifact.file_name().unwrap();
        std::fs::write(cache.join(name), bytes).unwrap();
        std::fs::write(cache.join(name).with_extension("sha256"), sum).unwrap();
        copied += 1;
    }
    assert!(copied > 0, "at least one artifact was copied");
    let mut config = crate::support::base_config(&dir);
    crate::support::table(&mut config, &["host"])
        .insert("cache_dir".into(), cache.display().to_string().into());
    // Only the dashboard, to keep the recompile short.
    for name in ["dht22", "bme680", "pi_monitor"] {
        crate::support::table(&mut config, &["plugins", name])
            .insert("enabled".into(), false.into());
    }
    let host = TestHost::builder().dir(&dir).base(config).start();
    let log = host.log();
    assert!(
        log.contains("discarding cached") && log.contains("checksum mismatch"),
        "{log}"
    );
    assert!(log.contains("compiled "), "the entry is recompiled: {log}");
    let page = host.get("/");
    assert_eq!(page.status, 200);
}
