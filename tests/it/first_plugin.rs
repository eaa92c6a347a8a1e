//! "Write your first plugin", followed step by step as plugins/README.md
//! tells it: scaffold with `new --add` while the host runs, test the logic
//! without WebAssembly, and see it work in the real host — no build, no
//! restart; then edit and save, a syntax error included. Every kind `new`
//! makes is covered: a sensor (its reading in /api), an automation (its LED
//! and the buzzer in /api) and a dashboard (its page at /view).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{base_config, reading, run_ok as run, table, temp_dir, TestHost, BIN, ROOT};

/// `new NAME --kind KIND --add` against the running host's config; the
/// plugin's files are in its plugins folder.
fn scaffold(host: &TestHost, plugins: &Path, name: &str, kind: &str) -> String {
    let out = run(Command::new(BIN)
        .args(["new", name, "--kind", kind, "--add", "--config"])
        .arg(&host.config_path));
    assert!(out.contains(&format!("added [plugins.{name}]")), "{out}");
    for file in ["app.py", "test_app.py", "README.md"] {
        assert!(
            plugins.join(name).join(file).exists(),
            "{name}/{file}: {out}"
        );
    }
    out
}

/// The scaffolded plugin's own tests, as the user runs them.
fn test_plugin(plugins: &Path, name: &str) -> String {
    run(Command::new(Path::new(ROOT).join("scripts/test-plugins.sh")).arg(plugins.join(name)))
}

fn led(api: &serde_json::Value, index: usize) -> (u64, u64, u64) {
    let l = &api["leds"][index];
    (
        l["r"].as_u64().unwrap_or(999),
        l["g"].as_u64().unwrap_or(999),
        l["b"].as_u64().unwrap_or(999),
    )
}

#[test]
fn scaffold_test_and_see_it_in_the_api_without_a_restart_or_a_build() {
    // A host with the shipped plugins (its own copy of plugins/).
    let dir = temp_dir("first-plugin");
    let config = base_config(&dir);
    let plugins = dir.join("plugins");
    let host = TestHost::builder().dir(&dir).base(config).start();

    // 1. Scaffold, adding the config entry to the running host's config.
    scaffold(&host, &plugins, "greenhouse", "sensor");
    let app = plugins.join("greenhouse/app.py");

    // 2. Its own tests pass without WebAssembly.
    let out = test_plugin(&plugins, "greenhouse");
    assert!(out.contains("3 passed"), "{out}");

    // 3. Nothing to build: the host saw the new entry and loaded app.py,
    // which derives its value from the dht22 plugin's reading.
    let api = host.wait_api("the greenhouse reading", Duration::from_secs(30), |a| {
        reading(a, "greenhouse").is_some()
    });
    let r = reading(&api, "greenhouse").unwrap();
    assert_eq!(r["plugin"], "greenhouse");
    let feels_like = r["feels_like"].as_f64().unwrap();
    let temperature = reading(&api, "dht22-gpio-4").unwrap()["temperature"]
        .as_f64()
        .unwrap();
    assert!((feels_like - temperature).abs() < 5.0, "{r}");
    assert_eq!(r["units"]["feels_like"], "°C", "{r}");
    assert_eq!(r["alert"], "ok", "{r}");
    // Its LED (the first free one, 3) shows its level.
    assert_eq!(led(&api, 3), (0, 255, 0), "{}", api["leds"]);
    assert!(host
        .log()
        .contains("config change: plugin `greenhouse` enabled"));

    // 4. Edit, save, see: a syntax error shows with its line while the
    // last good version runs; the fix goes live.
    let good = std::fs::read_to_string(&app).unwrap();
    let line =
        "        source = find_reading(readings.latest(), has=(\"temperature\", \"humidity\"))";
    assert!(good.contains(line), "the template has changed:\n{good}");
    let broken = good.replacen(line, &format!("{line}\n        oops = )"), 1);
    std::fs::write(&app, &broken).unwrap();
    let p = host.wait_plugin(
        "greenhouse",
        "the syntax error",
        Duration::from_secs(30),
        |p| p["last_error_kind"] == "reload",
    );
    let error = p["last_error"].as_str().unwrap();
    let line = broken.lines().position(|l| l.contains("oops = )")).unwrap() + 1;
    assert!(
        error.contains("SyntaxError")
            && error.contains(&format!("(greenhouse/app.py, line {line})")),
        "the error names the file and line {line}: {error}"
    );
    assert_eq!(
        p["status"], "running",
        "the last good version keeps running: {p}"
    );
    // The dashboard shows it on the plugin card at its next render.
    crate::support::wait_until(
        "the error on the dashboard",
        Duration::from_secs(15),
        || host.get("/view").body.contains("SyntaxError").then_some(()),
    );
    std::fs::write(
        &app,
        good.replace(
            "SENSOR_ID = \"greenhouse\"",
            "SENSOR_ID = \"greenhouse-v2\"",
        ),
    )
    .unwrap();
    host.wait_api("the fixed version", Duration::from_secs(30), |a| {
        reading(a, "greenhouse-v2").is_some()
    });
    assert_eq!(host.plugin("greenhouse")["last_error"], "");
}

#[test]
fn an_automation_and_a_dashboard_from_new_work_in_the_host() {
    // The shipped dashboard off: the host serves one dashboard, and the
    // new one is to be it.
    let dir = temp_dir("first-automation");
    let mut config = base_config(&dir);
    table(&mut config, &["plugins", "dashboard"]).insert("enabled".into(), false.into());
    let plugins = dir.join("plugins");
    let host = TestHost::builder().dir(&dir).base(config).start();

    // An automation: follows the bme680 plugin, drives LED 3 and the buzzer.
    let out = scaffold(&host, &plugins, "damp_light", "automation");
    assert!(!out.contains("note:"), "{out}");
    let out = test_plugin(&plugins, "damp_light");
    assert!(out.contains("3 passed"), "{out}");
    let text = std::fs::read_to_string(&host.config_path).unwrap();
    assert!(
        text.contains("follows = [\"bme680\"]") && text.contains("leds = [3]"),
        "{text}"
    );
    // The simulated air (45 %) is below damp_pct (60): green.
    let api = host.wait_api("LED 3 green", Duration::from_secs(30), |a| {
        led(a, 3) == (0, 255, 0)
    });
    let beeps = api["buzzer"]["beeps_total"].as_u64().unwrap();
    // Damp from 30 %: blue, and one beep. A config edit applies live.
    std::fs::write(
        &host.config_path,
        text.replace("damp_pct = 60.0", "damp_pct = 30.0"),
    )
    .unwrap();
    let api = host.wait_api("LED 3 blue and a beep", Duration::from_secs(30), |a| {
        led(a, 3) == (0, 0, 255) && a["buzzer"]["beeps_total"].as_u64() > Some(beeps)
    });
    assert_eq!(
        api["buzzer"]["beeps_total"].as_u64(),
        Some(beeps + 1),
        "{}",
        api["buzzer"]
    );
    assert_eq!(host.plugin("damp_light")["status"], "running");

    // A dashboard: its page at /view, with every reading.
    let out = scaffold(&host, &plugins, "panel", "dashboard");
    assert!(
        !out.contains("note:"),
        "the shipped dashboard is off: {out}"
    );
    let out = test_plugin(&plugins, "panel");
    assert!(out.contains("1 passed"), "{out}");
    let page = crate::support::wait_until(
        "the new dashboard at /view",
        Duration::from_secs(30),
        || {
            let page = host.get("/view").body;
            page.contains("<h1>PANEL</h1>").then_some(page)
        },
    );
    assert!(
        page.contains("dht22-gpio-4") && page.contains("iaq_score"),
        "{page}"
    );
    assert!(page.contains("humidity"), "{page}");
}

#[test]
fn a_plugin_built_against_another_contract_version_is_refused_with_both_versions() {
    let dir = temp_dir("old-contract");
    // The same contract, as an older release would have it.
    let wit = dir.join("wit");
    std::fs::create_dir_all(&wit).unwrap();
    let text = std::fs::read_to_string(Path::new(ROOT).join("wit/plugin.wit")).unwrap();
    std::fs::write(
        wit.join("plugin.wit"),
        text.replace(
            "package wasi-python-host:plugin@0.1.0;",
            "package wasi-python-host:plugin@0.0.9;",
        ),
    )
    .unwrap();
    let out = dir.join("old.wasm");
    let stage = dir.join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    for f in [
        "plugins/dht22/app.py",
        "plugins/common/alerts.py",
        "plugins/common/plugin_support.py",
    ] {
        std::fs::copy(
            Path::new(ROOT).join(f),
            stage.join(Path::new(f).file_name().unwrap()),
        )
        .unwrap();
    }
    run(
        Command::new(Path::new(ROOT).join(".venv/bin/componentize-py"))
            .current_dir(&stage)
            .arg("-d")
            .arg(&wit)
            .args(["-w", "dht22-plugin", "componentize", "app", "-o"])
            .arg(&out),
    );
    let mut config = base_config(&dir);
    table(&mut config, &["plugins", "dht22"])
        .insert("component".into(), out.display().to_string().into());
    let config_path = crate::support::write_config(&dir, &config);
    let check = Command::new(BIN)
        .args(["check", "--name", "dht22", "--config"])
        .arg(&config_path)
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(
        text.contains("built against contract wasi-python-host:plugin@0.0.9, this host implements wasi-python-host:plugin@0.1.0"),
        "{text}"
    );
    // And the host refuses to load it with the same words.
    let host = TestHost::builder().dir(&dir).base(config).start();
    let plugins = host.get("/api/plugins").json();
    let p = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "dht22")
        .unwrap()
        .clone();
    assert_eq!(p["status"], "load_failed", "{p}");
    assert!(
        p["last_error"].as_str().unwrap().contains("@0.0.9")
            && p["last_error"].as_str().unwrap().contains("@0.1.0"),
        "{p}"
    );
}

#[test]
fn a_second_dashboard_from_new_is_added_switched_off_with_how_to_serve_it() {
    // The shipped dashboard is on and the host serves one: `new --add`
    // still succeeds, and leaves a config the host accepts.
    let dir = temp_dir("second-dashboard");
    let config_path = crate::support::write_config(&dir, &base_config(&dir));
    let out = run(Command::new(BIN)
        .args(["new", "panel", "--kind", "dashboard", "--add", "--config"])
        .arg(&config_path));
    assert!(
        out.contains("has `dashboard` on, so [plugins.panel] has enabled = false")
            && out.contains("set enabled = false in [plugins.dashboard]"),
        "{out}"
    );
    let text = std::fs::read_to_string(&config_path).unwrap();
    let entry = &text[text.find("[plugins.panel]").expect(&text)..];
    assert!(entry.contains("enabled = false"), "{entry}");
    run(Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&config_path));
}
