//! "Write your first plugin", followed step by step as plugins/README.md
//! tells it: scaffold with `new --add` while the host runs, test the logic
//! without WebAssembly, build, and see the reading in /api — no restart.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{base_config, reading, table, temp_dir, wait_until, TestHost, BIN, ROOT};

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

/// A state folder with an empty `plugins/` of its own, and a config whose
/// `plugins_dir` points there.
fn own_plugins_dir(label: &str) -> (std::path::PathBuf, std::path::PathBuf, toml::Table) {
    let dir = temp_dir(label);
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let mut config = base_config(&dir);
    table(&mut config, &["host"])
        .insert("plugins_dir".into(), plugins.display().to_string().into());
    (dir, plugins, config)
}

#[test]
fn scaffold_test_build_and_see_it_in_the_api_without_a_restart() {
    // The new plugin goes to this host's own plugins folder; the shipped
    // ones keep running from the repository.
    let (dir, plugins, mut config) = own_plugins_dir("first-plugin");
    for name in ["dht22", "bme680", "pi_monitor", "dashboard"] {
        let file = Path::new(ROOT)
            .join("plugins")
            .join(name)
            .join(format!("{name}.wasm"));
        table(&mut config, &["plugins", name])
            .insert("file".into(), file.display().to_string().into());
    }
    let host = TestHost::start_in(&dir, config);

    // 1. Scaffold, adding the config entry to the running host's config.
    let out = run(Command::new(BIN)
        .args(["new", "greenhouse", "--kind", "sensor", "--add", "--config"])
        .arg(&host.config_path));
    assert!(out.contains("added [plugins.greenhouse]"), "{out}");
    let app = plugins.join("greenhouse/app.py");
    assert!(app.exists() && plugins.join("greenhouse/test_app.py").exists());
    // The host saw the new entry; the plugin is not built yet.
    wait_until(
        "the host to notice the new entry",
        Duration::from_secs(20),
        || {
            host.log()
                .contains("config change: plugin `greenhouse` enabled")
                .then_some(())
        },
    );

    // 2. Its own tests pass without WebAssembly.
    let out = run(
        Command::new(Path::new(ROOT).join("scripts/test-plugins.sh"))
            .arg(plugins.join("greenhouse")),
    );
    assert!(out.contains("2 passed"), "{out}");

    // 3. Build it; the running host loads it by itself.
    run(
        Command::new(Path::new(ROOT).join("scripts/build-plugins.sh"))
            .arg("--dir")
            .arg(&plugins)
            .arg("greenhouse"),
    );
    let api = host.wait_api("the greenhouse reading", Duration::from_secs(90), |a| {
        reading(a, "greenhouse").is_some()
    });
    let r = reading(&api, "greenhouse").unwrap();
    assert_eq!(r["plugin"], "greenhouse");
    assert!(r["temperature"].as_f64().unwrap() > 10.0, "{r}");
    // Its LED (the first free one, 3) shows its level.
    assert_eq!(api["leds"][3]["g"], 255, "{}", api["leds"]);
}

#[test]
fn dev_mode_rebuilds_on_save_shows_a_syntax_error_and_keeps_the_last_good_version() {
    let (dir, plugins, mut config) = own_plugins_dir("dev-mode");
    for name in ["dht22", "bme680", "pi_monitor", "dashboard"] {
        table(&mut config, &["plugins", name]).insert("enabled".into(), false.into());
    }
    let config_path = dir.join("host.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    run(Command::new(BIN)
        .args(["new", "devplug", "--kind", "sensor", "--add", "--config"])
        .arg(&config_path));
    run(
        Command::new(Path::new(ROOT).join("scripts/build-plugins.sh"))
            .arg("--dir")
            .arg(&plugins)
            .arg("devplug"),
    );
    let config: toml::Table = std::fs::read_to_string(&config_path)
        .unwrap()
        .parse()
        .unwrap();
    let host = TestHost::start_dev_in(&dir, config);
    host.wait_api("the first version", Duration::from_secs(30), |a| {
        reading(a, "devplug").is_some()
    });

    // Save a syntax error: the build fails, the error (with its line) shows
    // in the plugin's status, the last good version keeps running.
    let app = plugins.join("devplug/app.py");
    let good = std::fs::read_to_string(&app).unwrap();
    let broken = good.replacen(
        "        pin = setting(\"pin\", 4)",
        "        pin = setting(\"pin\", 4\n        oops = )",
        1,
    );
    assert_ne!(broken, good);
    std::fs::write(&app, &broken).unwrap();
    let p = wait_until(
        "the build error in the status",
        Duration::from_secs(90),
        || {
            let all = host.get("/api/plugins").json();
            let p = all["plugins"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == "devplug")?
                .clone();
            (p["last_error_kind"] == "build").then_some(p)
        },
    );
    let error = p["last_error"].as_str().unwrap();
    let line = broken.lines().position(|l| l.contains("oops = )")).unwrap();
    assert!(
        error.contains("SyntaxError")
            && (error.contains(&format!("line {line})"))
                || error.contains(&format!("line {})", line + 1))),
        "the error names the line ({line} or {}): {error}",
        line + 1
    );
    assert_eq!(
        p["status"], "running",
        "the last good version keeps running: {p}"
    );
    let page = host.get("/view");
    assert!(
        page.body.contains("SyntaxError"),
        "the dashboard shows it on the plugin card"
    );

    // Fix it with a visible change: the new version is built and swapped in.
    std::fs::write(
        &app,
        good.replace("sensor_id=\"devplug\"", "sensor_id=\"devplug-v2\""),
    )
    .unwrap();
    host.wait_api("the fixed version", Duration::from_secs(90), |a| {
        reading(a, "devplug-v2").is_some()
    });
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
        .insert("file".into(), out.display().to_string().into());
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
    let host = TestHost::start_in(&dir, config);
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
