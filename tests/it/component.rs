//! The escape hatch: a plugin that is a componentize-py component of its
//! own (`component = "FILE.wasm"` in its config entry) instead of Python
//! source on the shared runtime. It loads, polls, obeys the same grants and
//! limits, takes its kind from the config (a file exporting something else
//! is refused, naming what it exports), and hot-reloads when its file is
//! replaced.
//!
//! Two components are built once per test run (and kept in
//! `CARGO_TARGET_TMPDIR` while their inputs do not change): the hostile
//! plugin (`dht22-plugin` world) and `tests/plugins/intruder`, a dashboard.
//! A third file is the hostile one with a custom section added: another
//! version of the same plugin without another componentize-py build. All
//! three are compiled into the shared artifact cache once, up front.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use wasi_python_host::runtime::cache_digest;

use crate::support::{
    base_config, grant, reading, require_runtime, run_ok, table, temp_dir, test_plugin, wait_until,
    warm_cache, write_config, TestHost, ROOT, SENSOR_INTERFACES,
};

const WAIT: Duration = Duration::from_secs(60);

/// The component files the tests run.
struct Components {
    /// tests/plugins/hostile, exporting `dht22-logic`.
    hostile: PathBuf,
    /// The same with a custom section added: another version.
    hostile_v2: PathBuf,
    /// tests/plugins/intruder, exporting `dashboard`.
    intruder: PathBuf,
}

/// Builds (or finds) the components and compiles them into the shared
/// artifact cache, once per test run.
fn components() -> &'static Components {
    static COMPONENTS: OnceLock<Components> = OnceLock::new();
    COMPONENTS.get_or_init(|| {
        require_runtime();
        warm_cache();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("components");
        std::fs::create_dir_all(&dir).expect("CARGO_TARGET_TMPDIR is writable");
        let hostile = componentize(&dir, "hostile");
        let intruder = componentize(&dir, "intruder");
        let hostile_v2 = with_custom_section(&hostile, "whp-test-version", b"2");
        precompile(&[&hostile, &hostile_v2, &intruder]);
        Components {
            hostile,
            hostile_v2,
            intruder,
        }
    })
}

/// tests/plugins/NAME built with componentize-py for the world its
/// `# wit-world:` line names, as `<dir>/NAME-<inputs digest>.wasm`.
fn componentize(dir: &Path, name: &str) -> PathBuf {
    let app = std::fs::read_to_string(test_plugin(name).join("app.py"))
        .unwrap_or_else(|e| panic!("tests/plugins/{name}/app.py: {e}"));
    let world = app
        .lines()
        .find_map(|l| l.strip_prefix("# wit-world:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("tests/plugins/{name}/app.py has no `# wit-world:` line"));
    let tool = Path::new(ROOT).join(".venv/bin/componentize-py");
    assert!(
        tool.exists(),
        "{} is missing: run scripts/setup.sh (scripts/build-runtime.sh does)",
        tool.display()
    );
    let version = Command::new(&tool)
        .arg("--version")
        .output()
        .expect("componentize-py runs")
        .stdout;
    let mut inputs = Sha256::new();
    inputs.update(&version);
    inputs.update(world.as_bytes());
    inputs.update(app.as_bytes());
    let mut wits: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("wit"))
        .expect("wit/ is readable")
        .map(|e| e.expect("a wit/ entry").path())
        .collect();
    wits.sort();
    for wit in wits {
        inputs.update(wit.file_name().unwrap().as_encoded_bytes());
        inputs.update(std::fs::read(&wit).expect("a readable .wit file"));
    }
    let digest: String = inputs.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = dir.join(format!("{name}-{digest}.wasm"));
    if out.exists() {
        return out;
    }
    // Only the plugin's module: componentize-py bundles its whole path.
    let stage = temp_dir(&format!("componentize-{name}"));
    std::fs::write(stage.join("app.py"), &app).unwrap();
    run_ok(
        Command::new(&tool)
            .current_dir(&stage)
            .env("RUST_BACKTRACE", "0")
            .arg("-d")
            .arg(Path::new(ROOT).join("wit"))
            .args(["-w", world, "componentize", "app", "-o", "out.wasm"]),
    );
    std::fs::rename(stage.join("out.wasm"), &out).expect("the component moves into place");
    out
}

/// A copy of component `file` with a custom section appended: the same
/// code, another file, another version.
fn with_custom_section(file: &Path, name: &str, data: &[u8]) -> PathBuf {
    let out = file.with_extension("v2.wasm");
    if out.exists() {
        return out;
    }
    fn leb128(mut n: usize, to: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                to.push(byte);
                return;
            }
            to.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb128(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    let mut bytes = std::fs::read(file).expect("the component is readable");
    bytes.push(0); // custom section
    leb128(payload.len(), &mut bytes);
    bytes.extend_from_slice(&payload);
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// Compiles `files` into the shared artifact cache with `precompile`, so
/// the hosts of the tests load them without compiling (and no two hosts
/// compile the same file at once).
fn precompile(files: &[&Path]) {
    let dir = temp_dir("precompile-components");
    let mut config = base_config(&dir);
    for (i, file) in files.iter().enumerate() {
        let name = format!("c{i}");
        grant(&mut config, &name, "dht22", 1000, SENSOR_INTERFACES);
        table(&mut config, &["plugins", &name])
            .insert("component".into(), file.display().to_string().into());
    }
    crate::support::precompile(&write_config(&dir, &config));
}

/// The version the host gives a component file.
fn version(file: &Path) -> String {
    cache_digest(&std::fs::read(file).expect("the component is readable"))[..12].to_string()
}

/// Adds plugin `name` of `kind` running component `file`, as the hostile
/// plugin's grants (GPIO 4, LED 3) and in `mode`, with `limits`.
fn add_component(
    config: &mut toml::Table,
    name: &str,
    file: &Path,
    kind: &str,
    mode: &str,
    limits: &[(&str, i64)],
) {
    grant(config, name, kind, 300, SENSOR_INTERFACES);
    table(config, &["plugins", name]).insert("component".into(), file.display().to_string().into());
    let settings = table(config, &["plugins", name, "settings"]);
    settings.insert("mode".into(), mode.into());
    // The hostile plugin's sensor ids start with this: a plugin reports
    // only ids it owns.
    settings.insert("name".into(), name.into());
    let l = table(config, &["plugins", name, "limits"]);
    for (k, v) in limits {
        l.insert(k.to_string(), (*v).into());
    }
}

/// Waits until plugin `name` has a `last_error` containing `words`.
fn wait_error(host: &TestHost, name: &str, words: &str) -> Value {
    host.wait_plugin(name, &format!("an error saying `{words}`"), WAIT, |p| {
        p["last_error"].as_str().is_some_and(|e| e.contains(words))
    })
}

#[test]
fn a_component_plugin_polls_under_the_same_grants_and_limits() {
    let c = components();
    let host = TestHost::builder()
        .config(|config| {
            add_component(config, "comp", &c.hostile, "dht22", "ungranted", &[]);
            add_component(
                config,
                "comp_fuel",
                &c.hostile,
                "dht22",
                "fuel",
                &[("fuel", 20_000_000), ("deadline_ms", 20_000)],
            );
            add_component(
                config,
                "comp_spin",
                &c.hostile,
                "dht22",
                "spin",
                &[("deadline_ms", 200), ("fuel", 1 << 50)],
            );
            // Granted everything its world imports but `state`.
            add_component(config, "comp_no_state", &c.hostile, "dht22", "ok", &[]);
            table(config, &["plugins", "comp_no_state", "grants"]).insert(
                "interfaces".into(),
                toml::Value::Array(
                    SENSOR_INTERFACES
                        .iter()
                        .filter(|i| **i != "state")
                        .map(|i| (*i).into())
                        .collect(),
                ),
            );
        })
        .start();

    // It loads and polls, as a component.
    let p = host.plugin("comp");
    assert_eq!(p["status"], "running", "{p}");
    assert_eq!(p["source"], "component", "{p}");
    assert_eq!(p["kind"], "dht22-logic", "{p}");
    assert_eq!(p["version"], version(&c.hostile).as_str(), "{p}");
    // Argument-level grants: pin 17, address 0x76 and LED 2 are not its.
    let api = host.wait_api("the component's report", WAIT, |a| {
        reading(a, "comp-ungranted").is_some()
    });
    let message = reading(&api, "comp-ungranted").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!message.contains("ALLOWED"), "{message}");
    for refusal in [
        "pin17: refused: GPIO 17 is not granted: add it to `dht22_pins` in [plugins.comp.grants]",
        "bme76: refused: I2C address 0x76 is not granted",
        "led2: refused: LED 2 is not granted",
    ] {
        assert!(message.contains(refusal), "`{refusal}` in {message}");
    }
    assert_eq!(api["leds"][2]["r"], 0, "LED 2 untouched: {}", api["leds"]);
    let p = host.wait_plugin("comp", "its refusals counted", WAIT, |p| {
        p["denied_calls"].as_u64() >= Some(3)
    });
    assert_eq!(p["failures"], 0, "{p}");

    // Limits: fuel and deadline failures, named.
    let p = wait_error(&host, "comp_fuel", "out of fuel");
    assert!(
        p["failures_by_kind"]["out_of_fuel"].as_u64() >= Some(1),
        "{p}"
    );
    assert!(
        p["last_error"].as_str().unwrap().contains("limits.fuel"),
        "{p}"
    );
    let p = wait_error(&host, "comp_spin", "deadline");
    assert!(p["failures_by_kind"]["timeout"].as_u64() >= Some(1), "{p}");
    assert!(p["last_error"].as_str().unwrap().contains("200 ms"), "{p}");

    // Interface-level grants: refused at load, with the line to add.
    let p = host.plugin("comp_no_state");
    assert_eq!(p["status"], "load_failed", "{p}");
    let mut wanted: Vec<String> = SENSOR_INTERFACES
        .iter()
        .filter(|i| **i != "state")
        .map(|i| format!("\"{i}\""))
        .collect();
    wanted.push("\"state\"".into());
    let line = format!(
        "set in [plugins.comp_no_state.grants]: interfaces = [{}]",
        wanted.join(", ")
    );
    let error = p["last_error"].as_str().unwrap();
    assert!(
        error.contains("plugin `comp_no_state` imports state but its config does not grant it"),
        "names the interface: {p}"
    );
    assert!(error.contains(&line), "`{line}` in {p}");

    // The source plugins next to them are unaffected.
    for name in ["dht22", "bme680", "pi_monitor", "dashboard"] {
        assert_eq!(host.plugin(name)["failures"], 0, "{name}");
    }
}

#[test]
fn a_component_is_refused_where_the_config_says_it_is_something_it_does_not_export() {
    let c = components();
    let host = TestHost::builder()
        .config(|config| {
            // A dashboard dropped into a sensor's slot.
            add_component(config, "intruder", &c.intruder, "dht22", "ok", &[]);
            // A DHT22 plugin configured as a BME680 one.
            add_component(config, "misfiled", &c.hostile, "bme680", "ok", &[]);
        })
        .start();
    let p = host.plugin("intruder");
    assert_eq!(p["status"], "load_failed", "{p}");
    let error = p["last_error"].as_str().unwrap();
    assert!(
        error.contains(
            "the component does not export `dht22-logic`, the entry point of kind = \"dht22\" in \
             its config; its exports are: "
        ) && error.contains("wasi-python-host:plugin/dashboard@"),
        "names its exports: {p}"
    );
    let p = host.plugin("misfiled");
    assert_eq!(p["status"], "load_failed", "{p}");
    let error = p["last_error"].as_str().unwrap();
    assert!(
        error.contains("does not export `bme680-logic`")
            && error.contains("wasi-python-host:plugin/dht22-logic@"),
        "names its exports: {p}"
    );
    // The real dashboard keeps the page.
    let before = host.plugin("dashboard")["calls"].as_u64().unwrap();
    host.wait_plugin("dashboard", "another render", WAIT, |p| {
        p["calls"].as_u64() > Some(before)
    });
    let page = host.get("/view");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("INTRUDER"), "{}", page.body);
    assert!(
        host.get("/healthz")
            .body
            .contains("plugin `intruder` is load_failed"),
        "/healthz names it"
    );
}

#[test]
fn replacing_the_component_file_hot_reloads_it() {
    let c = components();
    let mut file = PathBuf::new();
    let host = TestHost::builder()
        .config(|config| {
            let dir = Path::new(config["host"]["state_dir"].as_str().unwrap()).join("components");
            std::fs::create_dir_all(&dir).unwrap();
            file = dir.join("comp.wasm");
            std::fs::copy(&c.hostile, &file).unwrap();
            add_component(config, "comp", &file, "dht22", "ok", &[]);
        })
        .start();
    let v1 = version(&c.hostile);
    host.wait_plugin("comp", "running", WAIT, |p| {
        p["version"] == v1.as_str() && p["status"] == "running"
    });
    let calls = |api: &Value| -> u64 {
        reading(api, "comp-ok")
            .and_then(|r| r["message"].as_str()?.strip_prefix("call ")?.parse().ok())
            .unwrap_or(0)
    };
    host.wait_api("its readings", WAIT, |a| calls(a) > 0);

    // The dashboard component copied over it: refused, the running
    // version serves on, and the page stays the real dashboard's.
    let copy_over = |from: &Path| {
        let tmp = file.with_extension("wasm.part");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    copy_over(&c.intruder);
    let p = host.wait_plugin("comp", "the refused reload", WAIT, |p| {
        p["last_error_kind"] == "reload"
    });
    let error = p["last_error"].as_str().unwrap();
    assert!(
        error.contains("reload failed, the running version stays")
            && error.contains("does not export `dht22-logic`")
            && error.contains("wasi-python-host:plugin/dashboard@"),
        "{p}"
    );
    assert_eq!(p["version"], v1.as_str(), "{p}");
    assert_eq!(p["status"], "running", "{p}");
    let now = calls(&host.api());
    host.wait_api("the running version polling on", WAIT, |a| calls(a) > now);
    let before = host.plugin("dashboard")["calls"].as_u64().unwrap();
    host.wait_plugin("dashboard", "another render", WAIT, |p| {
        p["calls"].as_u64() > Some(before)
    });
    assert!(!host.get("/view").body.contains("INTRUDER"));

    // The running file back: the error goes, nothing is reloaded.
    let reloads = host.plugin("comp")["reloads"].clone();
    copy_over(&c.hostile);
    let p = host.wait_plugin("comp", "the error cleared", WAIT, |p| p["last_error"] == "");
    assert_eq!(p["version"], v1.as_str(), "{p}");
    assert_eq!(p["reloads"], reloads, "{p}");

    // A new version of the component: swapped in.
    let from = host.log().len();
    copy_over(&c.hostile_v2);
    let v2 = version(&c.hostile_v2);
    assert_ne!(v1, v2);
    let p = host.wait_plugin("comp", "the new version", WAIT, |p| {
        p["version"] == v2.as_str() && p["status"] == "running"
    });
    assert_eq!(p["last_error"], "", "{p}");
    assert_eq!(p["source"], "component", "{p}");
    // It serves: its first calls pass the trial.
    let log = wait_until("the new version's trial passed", WAIT, || {
        let log = host.log()[from..].to_string();
        log.contains(&format!("plugin `comp`: version {v2} passed its trial"))
            .then_some(log)
    });
    assert!(
        log.contains(&format!("plugin `comp`: changed, loading version {v2}")),
        "{log}"
    );
    assert_eq!(host.plugin("comp")["failures"], 0);
}
