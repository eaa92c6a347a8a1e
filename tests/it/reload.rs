//! Hot reload: every way people and tools replace a plugin file, invalid
//! files, rollback, state across reloads and restarts, live config, and
//! reloads under HTTP load.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wasi_python_host::plugins::version_of;

use crate::support::{
    add_hostile, hostile_wasm, http, reading, table, temp_dir, wait_until, TestHost, ROOT,
};

const WAIT: Duration = Duration::from_secs(30);

fn dht22_wasm() -> PathBuf {
    Path::new(ROOT).join("plugins/dht22/dht22.wasm")
}

fn version(path: &Path) -> String {
    version_of(&std::fs::read(path).unwrap())
}

/// A host with plugin `x` loaded from `<dir>/x/x.wasm`, a copy of the
/// hostile plugin in mode "ok" (its reading is `hostile-ok`).
fn host_with_x(interval_ms: i64) -> (TestHost, PathBuf) {
    let mut file = PathBuf::new();
    let host = TestHost::start_with(|c| {
        let dir = PathBuf::from(c["host"]["state_dir"].as_str().unwrap()).join("x");
        std::fs::create_dir_all(&dir).unwrap();
        file = dir.join("x.wasm");
        std::fs::copy(hostile_wasm(), &file).unwrap();
        add_hostile(c, "x", "ok", interval_ms, &[]);
        table(c, &["plugins", "x"]).insert("file".into(), file.display().to_string().into());
        // When x runs the dht22 plugin, it shows its level on its own LED.
        table(c, &["plugins", "x", "settings"]).insert("led".into(), 3.into());
    });
    host.wait_plugin("x", "the first version", WAIT, |p| {
        p["version"] == version(&hostile_wasm()).as_str()
    });
    (host, file)
}

fn wait_version(host: &TestHost, file_content: &Path) -> Value {
    let v = version(file_content);
    host.wait_plugin("x", &format!("version {v}"), WAIT, |p| {
        p["version"] == v.as_str() && p["status"] == "running"
    })
}

fn x_shows_dht22(host: &TestHost) {
    host.wait_api("x to report as the dht22 plugin", WAIT, |a| {
        a["readings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["plugin"] == "x" && r["sensor_id"] == "dht22-gpio-4")
            .count()
            == 1
    });
}

#[test]
fn cp_over_the_file_reloads() {
    let (host, file) = host_with_x(200);
    std::fs::copy(dht22_wasm(), &file).unwrap();
    wait_version(&host, &dht22_wasm());
    x_shows_dht22(&host);
    assert!(host.log().contains("plugin `x`:") && host.log().contains("changed, reloading"));
}

#[test]
fn write_then_rename_reloads() {
    let (host, file) = host_with_x(200);
    let tmp = file.with_extension("wasm.part");
    std::fs::copy(dht22_wasm(), &tmp).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_version(&host, &dht22_wasm());
    x_shows_dht22(&host);
}

#[test]
fn editor_backup_and_rename_reloads() {
    let (host, file) = host_with_x(200);
    // What vim and friends do with `backupcopy=no`: move the original to a
    // backup name, then write a new file under the real name.
    std::fs::rename(&file, file.with_extension("wasm~")).unwrap();
    std::fs::copy(dht22_wasm(), &file).unwrap();
    wait_version(&host, &dht22_wasm());
}

#[test]
fn a_half_written_file_is_never_loaded_and_the_rest_is_picked_up() {
    let (host, file) = host_with_x(200);
    let old = version(&hostile_wasm());
    let bytes = std::fs::read(dht22_wasm()).unwrap();
    // First half, closed: what `cat part1 > f; cat part2 >> f` produces.
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let p = host.wait_plugin("x", "the failed reload", WAIT, |p| {
        p["last_error_kind"] == "reload"
    });
    assert_eq!(p["version"], old.as_str(), "the running version stays: {p}");
    assert_eq!(p["status"], "running");
    assert!(
        p["last_error"]
            .as_str()
            .unwrap()
            .contains("reload failed, the running version stays"),
        "{p}"
    );
    assert!(host.api()["readings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["sensor_id"] == "hostile-ok"));
    // The rest arrives.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(f);
    wait_version(&host, &dht22_wasm());
}

#[test]
fn garbage_keeps_the_running_version_and_says_why() {
    let (host, file) = host_with_x(200);
    for (what, bytes, words) in [
        ("empty", &b""[..], "empty or still being written"),
        ("text", &b"#!/bin/sh\nrm -rf /\n"[..], "not WebAssembly"),
        (
            "core module",
            &[0, b'a', b's', b'm', 1, 0, 0, 0][..],
            "not a component",
        ),
    ] {
        std::fs::write(&file, bytes).unwrap();
        let p = host.wait_plugin("x", what, WAIT, |p| {
            p["last_error"].as_str().is_some_and(|e| e.contains(words))
        });
        assert_eq!(
            p["version"],
            version(&hostile_wasm()).as_str(),
            "{what}: {p}"
        );
        assert_eq!(p["status"], "running", "{what}: {p}");
    }
    std::fs::copy(dht22_wasm(), &file).unwrap();
    wait_version(&host, &dht22_wasm());
}

#[test]
fn a_new_version_that_fails_at_once_is_rolled_back() {
    let (host, file) = host_with_x(200);
    // Start from the dht22 plugin (it ignores the `mode` setting) …
    std::fs::copy(dht22_wasm(), &file).unwrap();
    wait_version(&host, &dht22_wasm());
    x_shows_dht22(&host);
    // … then "upgrade" to one that raises on every call.
    table_setting_mode(&host, "raise");
    std::fs::copy(hostile_wasm(), &file).unwrap();
    let p = host.wait_plugin("x", "the rollback", WAIT, |p| {
        p["last_error_kind"] == "rollback"
    });
    assert_eq!(
        p["version"],
        version(&dht22_wasm()).as_str(),
        "back on the old version: {p}"
    );
    assert!(
        p["last_error"]
            .as_str()
            .unwrap()
            .contains("rolled back to version"),
        "{p}"
    );
    assert!(
        host.log()
            .contains("failed on its first calls; rolled back"),
        "the log says so"
    );
    x_shows_dht22(&host);
}

/// Rewrites the config so plugin `x` runs in `mode` (a config change that
/// reloads x with the new setting).
fn table_setting_mode(host: &TestHost, mode: &str) {
    let path = config_path(host);
    let mut config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    table(&mut config, &["plugins", "x", "settings"]).insert("mode".into(), mode.into());
    write_config_atomically(&path, &config);
    wait_until("the config change to apply", WAIT, || {
        host.log()
            .contains("config change: plugin `x` reconfigured")
            .then_some(())
    });
}

fn config_path(host: &TestHost) -> PathBuf {
    host.config_path.clone()
}

fn write_config_atomically(path: &Path, config: &toml::Table) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, toml::to_string(config).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn alarm_state_survives_a_reload_and_a_restart_without_beeping_again() {
    // Thresholds below room temperature: the simulated DHT22 (~20–23 °C)
    // is in alarm from the first poll, in this host and the next.
    let dir = temp_dir("state");
    let mut config = crate::support::base_config(&dir);
    let settings = table(&mut config, &["plugins", "dht22", "settings"]);
    settings.insert("temp_warn_c".into(), 10.0.into());
    settings.insert("temp_alarm_c".into(), 15.0.into());
    let host = TestHost::start_in(&dir, config.clone());
    host.wait_api("alarm", WAIT, |a| {
        reading(a, "dht22-gpio-4").is_some_and(|r| r["alert"] == "alarm")
    });
    let beeps = host.wait_api("the alarm's three tones", Duration::from_secs(5), |a| {
        a["buzzer"]["beeps_total"] == 3
    })["buzzer"]["beeps_total"]
        .as_u64()
        .unwrap();

    // Reload: a settings change makes a fresh instance (Python globals gone).
    let path = config_path(&host);
    table(&mut config, &["plugins", "dht22", "settings"]).insert("temp_warn_c".into(), 11.0.into());
    write_config_atomically(&path, &config);
    wait_until("the dht22 reload", WAIT, || {
        host.log()
            .contains("config change: plugin `dht22` reconfigured")
            .then_some(())
    });
    let t0 = reading(&host.api(), "dht22-gpio-4").unwrap()["timestamp_ms"]
        .as_u64()
        .unwrap();
    let after = host.wait_api("a reading from the reloaded plugin", WAIT, |a| {
        reading(a, "dht22-gpio-4").is_some_and(|r| r["timestamp_ms"].as_u64().unwrap() > t0 + 1000)
    });
    assert_eq!(reading(&after, "dht22-gpio-4").unwrap()["alert"], "alarm");
    assert_eq!(
        after["buzzer"]["beeps_total"].as_u64(),
        Some(beeps),
        "no beep after the reload"
    );
    assert!(dir.join("state/dht22.json").exists(), "state is on disk");
    assert_eq!(host.stop().code(), Some(0));

    // Restart with the same state folder.
    let host = TestHost::start_in(&dir, config);
    let again = host.wait_api("a reading after the restart", WAIT, |a| {
        reading(a, "dht22-gpio-4").is_some()
    });
    assert_eq!(reading(&again, "dht22-gpio-4").unwrap()["alert"], "alarm");
    std::thread::sleep(Duration::from_millis(600));
    let api = host.api();
    assert_eq!(
        api["buzzer"]["beeps_total"], 0,
        "a restarted host does not beep for a known alarm"
    );
    assert_eq!(api["leds"][1]["r"], 255, "and still shows it");
}

#[test]
fn live_config_enables_disables_and_rejects_bad_edits() {
    let dir = temp_dir("live");
    let mut config = crate::support::base_config(&dir);
    let host = TestHost::start_in(&dir, config.clone());
    let path = config_path(&host);
    host.wait_api("the BME680", WAIT, |a| {
        reading(a, "bme680-i2c-0x77").is_some() && a["leds"][2]["g"] == 255
    });

    table(&mut config, &["plugins", "bme680"]).insert("enabled".into(), false.into());
    table(&mut config, &["plugins", "dht22"]).insert("interval_ms".into(), 500.into());
    write_config_atomically(&path, &config);
    host.wait_plugin("bme680", "disabled", WAIT, |p| p["status"] == "disabled");
    let api = host.wait_api("the BME680 gone, its LED off", WAIT, |a| {
        reading(a, "bme680-i2c-0x77").is_none()
            && a["leds"][2] == json!({"index": 2, "r": 0, "g": 0, "b": 0})
    });
    assert!(reading(&api, "dht22-gpio-4").is_some());
    host.wait_plugin("dht22", "the new interval", WAIT, |p| {
        p["interval_ms"] == 500
    });

    // An invalid edit: the running config stays, the error names the line.
    std::fs::write(
        &path,
        "[host]\nlisten = \"127.0.0.1:0\"\n\n[plugins.dht22]\ninterval_ms = \"often\"\n",
    )
    .unwrap();
    wait_until("the config error", WAIT, || {
        host.log().contains("config change ignored").then_some(())
    });
    let log = host.log();
    assert!(
        log.contains(&format!(
            "{}:5: `plugins.dht22.interval_ms`",
            path.display()
        )),
        "{log}"
    );
    let h = host.get("/healthz");
    assert_eq!(h.status, 503);
    assert!(h.body.contains("the config file is invalid"), "{}", h.body);
    assert_eq!(host.plugin("dht22")["status"], "running");
    assert_eq!(host.plugin("pi_monitor")["status"], "running");

    table(&mut config, &["plugins", "bme680"]).insert("enabled".into(), true.into());
    write_config_atomically(&path, &config);
    host.wait_plugin("bme680", "enabled again", WAIT, |p| {
        p["status"] == "running"
    });
    host.wait_api("the BME680 back", WAIT, |a| {
        reading(a, "bme680-i2c-0x77").is_some()
    });
    wait_until("healthz ok again", WAIT, || {
        (host.get("/healthz").status == 200).then_some(())
    });
}

#[test]
fn a_hundred_reloads_under_http_load_fail_no_request() {
    let (host, file) = host_with_x(100);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load: Vec<_> = ["/api", "/", "/api", "/healthz"]
        .into_iter()
        .map(|path| {
            let (stop, ok, failed, addr) = (stop.clone(), ok.clone(), failed.clone(), host.addr);
            let failures = failures.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = http(addr, "GET", path, None, "");
                    // /healthz may say 503 while x is between versions; any
                    // answer at all is a served request.
                    if r.status == 200 || (path == "/healthz" && r.status == 503) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut f = failures.lock().unwrap();
                        if f.len() < 5 {
                            f.push(format!("{path}: {} {}", r.status, r.body));
                        }
                    }
                }
            })
        })
        .collect();
    let versions = [dht22_wasm(), hostile_wasm()];
    for i in 0..100 {
        let next = &versions[i % 2];
        let tmp = file.with_extension("wasm.part");
        std::fs::copy(next, &tmp).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        wait_version(&host, next);
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join()
            .expect("load thread panicked (a request failed to connect or parse)");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("100 reloads under load: {ok} requests served, {failed} failed");
    assert_eq!(failed, 0, "failed: {:?}", failures.lock().unwrap());
    assert!(ok > 200, "the load really ran: {ok}");
    assert_eq!(host.plugin("x")["failures"], 0);
}
