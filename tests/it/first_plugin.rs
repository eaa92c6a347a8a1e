//! "Write your first plugin", followed step by step as plugins/README.md
//! tells it: scaffold with `new --add` while the host runs, test the logic
//! without WebAssembly, and see the reading in /api — no build, no restart;
//! then edit and save, a syntax error included.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{base_config, reading, table, temp_dir, TestHost, BIN, ROOT};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn scaffold_test_and_see_it_in_the_api_without_a_restart_or_a_build() {
    // A host with the shipped plugins (its own copy of plugins/).
    let dir = temp_dir("first-plugin");
    let config = base_config(&dir);
    let plugins = dir.join("plugins");
    let host = TestHost::builder().dir(&dir).base(config).start();

    // 1. Scaffold, adding the config entry to the running host's config.
    let out = run(Command::new(BIN)
        .args(["new", "greenhouse", "--kind", "sensor", "--add", "--config"])
        .arg(&host.config_path));
    assert!(out.contains("added [plugins.greenhouse]"), "{out}");
    let app = plugins.join("greenhouse/app.py");
    assert!(app.exists() && plugins.join("greenhouse/test_app.py").exists());

    // 2. Its own tests pass without WebAssembly.
    let out = run(
        Command::new(Path::new(ROOT).join("scripts/test-plugins.sh"))
            .arg(plugins.join("greenhouse")),
    );
    assert!(out.contains("2 passed"), "{out}");

    // 3. Nothing to build: the host saw the new entry and loaded app.py.
    let api = host.wait_api("the greenhouse reading", Duration::from_secs(30), |a| {
        reading(a, "greenhouse").is_some()
    });
    let r = reading(&api, "greenhouse").unwrap();
    assert_eq!(r["plugin"], "greenhouse");
    assert!(r["temperature"].as_f64().unwrap() > 10.0, "{r}");
    // Its LED (the first free one, 3) shows its level.
    assert_eq!(api["leds"][3]["g"], 255, "{}", api["leds"]);
    assert!(host
        .log()
        .contains("config change: plugin `greenhouse` enabled"));

    // 4. Edit, save, see: a syntax error shows with its line while the
    // last good version runs; the fix goes live.
    let good = std::fs::read_to_string(&app).unwrap();
    let broken = good.replacen(
        "        pin = setting(\"pin\", 4)",
        "        pin = setting(\"pin\", 4\n        oops = )",
        1,
    );
    assert_ne!(broken, good);
    std::fs::write(&app, &broken).unwrap();
    let p = host.wait_plugin(
        "greenhouse",
        "the syntax error",
        Duration::from_secs(30),
        |p| p["last_error_kind"] == "reload",
    );
    let error = p["last_error"].as_str().unwrap();
    // Python points at the line it gave up on or at the unclosed call.
    let line = broken.lines().position(|l| l.contains("oops = )")).unwrap() + 1;
    assert!(
        error.contains("SyntaxError")
            && (error.contains(&format!("(greenhouse/app.py, line {line})"))
                || error.contains(&format!("(greenhouse/app.py, line {})", line - 1))),
        "the error names the file and line {line} (or the one before): {error}"
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
        good.replace("sensor_id=\"greenhouse\"", "sensor_id=\"greenhouse-v2\""),
    )
    .unwrap();
    host.wait_api("the fixed version", Duration::from_secs(30), |a| {
        reading(a, "greenhouse-v2").is_some()
    });
    assert_eq!(host.plugin("greenhouse")["last_error"], "");
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
