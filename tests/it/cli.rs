//! Command line and config errors: exit non-zero with one line naming the
//! file, the key and the line.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{temp_dir, BIN};

/// Runs the host with `config` as its config file; returns (exit code, stderr).
fn run_with_config(config: &str) -> (i32, String, String) {
    let dir = temp_dir("cli");
    let path = dir.join("host.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // A config the host accepts would run for ever: a bad one must end it
    // well within this.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child
        .try_wait()
        .expect("the host can be waited for")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("the host's output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.code().unwrap_or(-1),
        stderr,
        path.display().to_string(),
    )
}

/// Each bad config with the key and line its error must name.
const BAD_CONFIGS: &[(&str, &str, &str, usize)] = &[
    (
        "unknown key",
        "[host]\nlisten = \"127.0.0.1:0\"\nlisten_port = 3\n",
        "host.listen_port",
        3,
    ),
    (
        "wrong type",
        "[host]\n\nhttp_workers = \"four\"\n",
        "host.http_workers",
        3,
    ),
    (
        "bad address",
        "[host]\nlisten = \"localhost\"\n",
        "host.listen",
        2,
    ),
    (
        "bad enum",
        "[host]\nhardware = \"arduino\"\n",
        "host.hardware",
        2,
    ),
    (
        "control token too short",
        "[host]\ncontrol_token = \"secret\"\n",
        "host.control_token",
        2,
    ),
    (
        "bad control mode",
        "[host]\n\ncontrol = \"open\"\n",
        "host.control",
        3,
    ),
    (
        "unknown mqtt key",
        "[mqtt]\nenabled = true\nbroker = \"x\"\n",
        "mqtt.broker",
        3,
    ),
    (
        "mqtt device id unsafe in topics",
        "[mqtt]\nenabled = true\n\ndevice_id = \"living room/1\"\n",
        "mqtt.device_id",
        4,
    ),
    (
        "mqtt password without user",
        "[mqtt]\nenabled = true\npassword = \"p\"\n",
        "mqtt.password",
        3,
    ),
    (
        "mqtt CA file missing",
        "[mqtt]\nenabled = true\ntls = true\nca_file = \"missing-ca.pem\"\n",
        "mqtt.ca_file",
        4,
    ),
    (
        "mqtt CA file without TLS",
        "[mqtt]\nenabled = true\n\nca_file = \"ca.pem\"\n",
        "mqtt.ca_file",
        4,
    ),
    (
        "mqtt TLS host that no certificate can name",
        "[mqtt]\nenabled = true\ntls = true\nhost = \"my broker\"\n",
        "mqtt.host",
        4,
    ),
    (
        "interval too short",
        "[plugins.dht22]\nkind = \"dht22\"\ninterval_ms = 10\n",
        "plugins.dht22.interval_ms",
        3,
    ),
    (
        "LED outside the strip",
        "[hardware.leds]\ncount = 3\n[plugins.dht22]\nkind = \"dht22\"\n[plugins.dht22.grants]\nleds = [7]\n",
        "plugins.dht22.grants.leds",
        6,
    ),
    (
        "unknown interface",
        "[plugins.x]\nkind = \"sensor\"\n[plugins.x.grants]\ninterfaces = [\"sockets\"]\n",
        "plugins.x.grants.interfaces",
        4,
    ),
    (
        "no kind",
        "[host]\n[plugins.x]\ninterval_ms = 500\n",
        "plugins.x.kind",
        2,
    ),
    (
        "unknown kind",
        "[plugins.x]\nkind = \"thermostat\"\n",
        "plugins.x.kind",
        2,
    ),
    (
        "an automation that follows no one",
        "[plugins.x]\nkind = \"automation\"\n",
        "plugins.x.grants.follows",
        1,
    ),
    (
        "following a plugin that is not there",
        "[plugins.x]\nkind = \"automation\"\n[plugins.x.grants]\nfollows = [\"bme680\"]\n",
        "plugins.x.grants.follows",
        4,
    ),
    (
        "a sensor id with two owners",
        "[plugins.a]\nkind = \"sensor\"\n[plugins.a.grants]\nsensor_ids = [\"b-x\"]\n[plugins.b]\nkind = \"sensor\"\n",
        "plugins.a.grants.sensor_ids",
        4,
    ),
    (
        "memory below a Python plugin",
        "[limits]\nmemory_mb = 4\n",
        "limits.memory_mb",
        2,
    ),
    (
        "two dashboards (the page at / is one plugin's)",
        "[plugins.a]\nkind = \"dashboard\"\n\n[plugins.b]\nkind = \"dashboard\"\n",
        "plugins.b.kind",
        5,
    ),
    ("syntax error", "[host\nlisten = 1\n", "", 1),
];

#[test]
fn bad_configs_exit_with_one_line_naming_file_key_and_line() {
    for (what, config, key, line) in BAD_CONFIGS {
        let (code, stderr, path) = run_with_config(config);
        assert_ne!(code, 0, "{what}: must fail");
        let msg = stderr.trim_end();
        assert_eq!(msg.lines().count(), 1, "{what}: one line, got:\n{msg}");
        assert!(
            msg.contains(&format!("{path}:{line}:")),
            "{what}: names file and line {line}: {msg}"
        );
        assert!(msg.contains(key), "{what}: names `{key}`: {msg}");
    }
}

#[test]
fn bad_ca_files_say_what_is_wrong() {
    // Missing: the resolved path and the OS's reason.
    let (code, stderr, path) =
        run_with_config("[mqtt]\nenabled = true\ntls = true\nca_file = \"missing-ca.pem\"\n");
    assert_ne!(code, 0);
    let dir = std::path::Path::new(&path).parent().unwrap();
    assert!(
        stderr.contains(&format!(
            "cannot read CA file {}",
            dir.join("missing-ca.pem").display()
        )) && stderr.contains("No such file"),
        "{stderr}"
    );
    // Not PEM (here: the config file itself).
    let (code, stderr, _) =
        run_with_config("[mqtt]\nenabled = true\ntls = true\nca_file = \"host.toml\"\n");
    assert_ne!(code, 0);
    assert!(
        stderr.contains("holds no certificate") && stderr.contains("BEGIN CERTIFICATE"),
        "{stderr}"
    );
}

#[test]
fn missing_config_file_is_named() {
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/host.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/host.toml") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    for args in [
        &["--listen", "nowhere"][..],
        &["--hardware", "arduino"],
        &["--frobnicate"],
        &["--config"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.contains("usage:"),
            "{args:?}: {err}"
        );
    }
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--hardware"));
}

/// `check` without a plugin validates the config alone, the deploy's
/// pre-restart check: the shipped device config passes and says what it
/// runs; a bad one fails naming the file, key and line; nothing is written
/// next to the config (no state folder, no cache, no token).
#[test]
fn check_without_a_plugin_validates_the_config_only() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(format!("{root}/deploy/host.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("config ok: ")
            && stdout.contains("dht22, ")
            && stdout.contains("plugin(s) enabled"),
        "{stdout}"
    );

    let dir = temp_dir("check-config");
    let path = dir.join("host.toml");
    std::fs::write(&path, "[host]\nstate_dir = \"state\"\n\nhttp_workers = 0\n").unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("host.toml:4") && err.contains("host.http_workers"),
        "{err}"
    );
    let written: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(written.len(), 1, "check wrote files: {written:?}");
}

/// What `token` writes to stderr the first time (it generates the token and
/// logs that at info) with this `RUST_LOG`, or without one.
fn first_token_log(rust_log: Option<&str>) -> String {
    let dir = temp_dir("rust-log");
    let mut config = crate::support::base_config(&dir);
    crate::support::table(&mut config, &["host"]).remove("control_token");
    let path = crate::support::write_config(&dir, &config);
    let mut command = Command::new(BIN);
    command.arg("token").arg("--config").arg(&path);
    command.env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let out = command.output().expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    // The command did its work either way: the filter only hides lines.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim().len(), 64);
    stderr
}

#[test]
fn rust_log_filters_by_level_and_by_module_in_the_usual_format() {
    const LINE: &str = "generated a control token";
    // The default level is info, each line `[<UTC time, ms> LEVEL target] message`.
    let default = first_token_log(None);
    let line = default
        .lines()
        .find(|l| l.contains(LINE))
        .unwrap_or_else(|| panic!("no info line without RUST_LOG: {default}"));
    let (stamp, rest) = line
        .strip_prefix('[')
        .and_then(|l| l.split_once(' '))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        stamp.len() == "2024-01-01T00:00:00.000Z".len()
            && stamp.ends_with('Z')
            && stamp.as_bytes()[10] == b'T',
        "timestamp {stamp:?} in {line}"
    );
    assert!(
        rest.starts_with("INFO  wasi_python_host::http::auth] "),
        "{line}"
    );
    // A level filters it out ...
    let warn = first_token_log(Some("warn"));
    assert!(
        !warn.contains(LINE),
        "RUST_LOG=warn let info through: {warn}"
    );
    // ... and a module directive lets that module's through again.
    let module = first_token_log(Some("warn,wasi_python_host::http::auth=info"));
    assert!(module.contains(LINE), "{module}");
    let other = first_token_log(Some("warn,wasi_python_host::config=info"));
    assert!(!other.contains(LINE), "{other}");
}
