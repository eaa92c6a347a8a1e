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
