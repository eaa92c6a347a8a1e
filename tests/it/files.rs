//! What bad luck leaves on disk (issue 16): an empty, truncated, half
//! written or deleted config file under a running host, a config edited
//! while the host starts, and the state files a `kill -9` or a corruption
//! leaves behind. Each test does it to a real file under a real host.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::{add_hostile, base_config, table, temp_dir, wait_until, TestHost};

const WAIT: Duration = Duration::from_secs(60);

/// Writes `text` over the config in place, as a save that is cut short
/// leaves it (one write, then close: what inotify reports as finished).
fn overwrite(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .expect("the host's config is writable");
    file.write_all(text.as_bytes()).unwrap();
}

/// `/healthz` once `f` accepts it.
fn wait_health(host: &TestHost, what: &str, f: impl Fn(u16, &Value) -> bool) -> Value {
    wait_until(what, WAIT, || {
        let r = host.get("/healthz");
        let body = r.json();
        f(r.status, &body).then_some(body)
    })
}

/// Calls of every shipped plugin, to see them keep running.
fn calls(host: &TestHost) -> Vec<u64> {
    ["dht22", "bme680", "pi_monitor", "dashboard"]
        .iter()
        .map(|name| host.plugin(name)["calls"].as_u64().unwrap_or(0))
        .collect()
}

/// Waits until the sensor plugins have all been called again since
/// `before`, and checks that every shipped plugin is still running.
fn still_running(host: &TestHost, before: &[u64]) {
    wait_until("the sensor plugins to keep polling", WAIT, || {
        let now = calls(host);
        (now[..3].iter().zip(&before[..3]).all(|(n, b)| n > b)).then_some(())
    });
    for name in ["dht22", "bme680", "pi_monitor", "dashboard"] {
        assert_eq!(host.plugin(name)["status"], "running", "{name}");
    }
}

/// Issue 16, item 3 (config side): an empty file, and one cut short where
/// it is still valid TOML, are refused like invalid TOML: the last good
/// config keeps running and `/healthz` says why, naming the file.
#[test]
fn an_empty_or_cut_short_config_is_refused_and_the_plugins_keep_running() {
    let host = TestHost::start();
    let good = std::fs::read_to_string(&host.config_path).unwrap();
    let path = host.config_path.display().to_string();
    // Cut before the first plugin: what a full disk leaves of a save.
    let cut = &good[..good.find("\n[plugins.").expect("the config has plugins") + 1];
    for (text, says) in [
        ("", "the file is empty"),
        ("\n   \n", "the file is empty"),
        (cut, "no plugin is configured"),
    ] {
        let before = calls(&host);
        overwrite(&host.config_path, text);
        let health = wait_health(&host, says, |status, h| {
            status == 503 && h.to_string().contains(says)
        });
        assert!(
            health.to_string().contains(&path),
            "names the file: {health}"
        );
        still_running(&host, &before);
        // Back to the good config: healthy again.
        overwrite(&host.config_path, &good);
        wait_health(&host, "the good config back", |status, _| status == 200);
    }
    assert!(
        host.log().contains("config change ignored"),
        "{}",
        host.log()
    );
}

/// Issue 16, low item (state): what `kill -9` mid-write leaves (temporary
/// files) is removed when the state is opened, and a corrupt state file is
/// kept as a backup (and logged) instead of being overwritten.
#[test]
fn state_files_left_by_a_crash_are_cleaned_and_a_corrupt_one_kept() {
    let dir = temp_dir("state-files");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join(".dht22.json.tmp4242"), b"{\"level\": \"61").unwrap();
    std::fs::write(state.join(".dht22.json.tmp77"), b"").unwrap();
    std::fs::write(state.join("bme680.json"), b"{\"level\": \"61\", trunc").unwrap();
    let host = TestHost::builder().dir(&dir).start();
    wait_until("bme680 to save its state afresh", WAIT, || {
        state.join("bme680.json").exists().then_some(())
    });
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".dht22.json.tmp")),
        "temporary files removed: {names:?}"
    );
    let backup = names
        .iter()
        .find(|n| n.starts_with("bme680.json.corrupt-"))
        .unwrap_or_else(|| panic!("no backup of the corrupt file in {names:?}"));
    assert_eq!(
        std::fs::read(state.join(backup)).unwrap(),
        b"{\"level\": \"61\", trunc"
    );
    let log = host.log();
    assert!(
        log.contains(backup.as_str()) && log.contains("unreadable"),
        "the log names the backup: {log}"
    );
}

/// Issue 16, low item (log): a plugin's log lines and prints cannot carry
/// a carriage return, a newline or an escape sequence into the host's log
/// (to overwrite a line on a terminal, or forge one).
#[test]
fn plugin_log_lines_cannot_carry_control_characters() {
    let host = TestHost::builder()
        .config(|c| add_hostile(c, "hostile", "forge-log", 500, &[]))
        .start();
    host.wait_plugin("hostile", "a call", WAIT, |p| {
        p["calls"].as_u64() >= Some(1)
    });
    let log = wait_until("the forged lines in the log", WAIT, || {
        let log = host.log();
        log.contains("FORGED-STDOUT").then_some(log)
    });
    assert!(
        log.contains(r"[hostile] ok\rFORGED: all good\n[host] forged line \u{1b}[2Jwiped"),
        "{log}"
    );
    assert!(
        log.contains(r"out\rFORGED-STDOUT \u{1b}[31mred\u{202e}"),
        "{log}"
    );
    for c in ['\r', '\x1b', '\u{202e}'] {
        assert!(!log.contains(c), "{c:?} reached the log");
    }
    assert!(
        !log.lines().any(|l| l.starts_with("[host] forged")),
        "a forged line of its own"
    );
}

/// The lines of the host's log written after `from` bytes.
fn log_since(host: &TestHost, from: usize) -> String {
    host.log().get(from..).unwrap_or_default().to_string()
}

/// Issue 16, item 3 (reload side): a config written in two steps, the
/// first of which is valid but incomplete (two plugins missing), is applied
/// only once it has been stable for the debounce period; the plugins the
/// first part lacks are never stopped. Assumes that period is longer than
/// the 300 ms between the steps (the mission's "a second or two").
#[test]
fn a_config_being_written_is_applied_only_once_stable() {
    let host = TestHost::start();
    let good = std::fs::read_to_string(&host.config_path).unwrap();
    let mut config: toml::Table = good.parse().unwrap();
    // The marker: a change at the end of the file, in pi_monitor's table.
    table(&mut config, &["plugins", "pi_monitor", "settings"])
        .insert("cpu_warn_c".into(), 71.0.into());
    let full = toml::to_string(&config).unwrap();
    let cut_at = full
        .find("[plugins.dht22]")
        .expect("dht22 after bme680 and dashboard");
    let (head, tail) = full.split_at(cut_at);
    let from = host.log().len();
    overwrite(&host.config_path, head);
    std::thread::sleep(Duration::from_millis(300));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&host.config_path)
        .unwrap();
    file.write_all(tail.as_bytes()).unwrap();
    drop(file);
    let log = wait_until("the whole config to be applied", WAIT, || {
        let log = log_since(&host, from);
        (log.contains("plugin `pi_monitor` reconfigured")
            || log.contains("plugin `pi_monitor` enabled"))
        .then_some(log)
    });
    for name in ["dht22", "pi_monitor"] {
        assert!(
            !log.contains(&format!("plugin `{name}` disabled"))
                && !log.contains(&format!("plugin `{name}` removed")),
            "{name} was stopped by the half-written config:\n{log}"
        );
    }
    assert!(
        log.contains("plugin `pi_monitor` reconfigured"),
        "applied once, whole:\n{log}"
    );
}

/// Issue 16, item 3 (reload side): each plugin a reload removes or
/// disables is logged by name, saying which.
#[test]
fn a_reload_logs_each_plugin_it_removes_or_disables() {
    let host = TestHost::start();
    let mut config: toml::Table = std::fs::read_to_string(&host.config_path)
        .unwrap()
        .parse()
        .unwrap();
    table(&mut config, &["plugins"]).remove("pi_monitor");
    table(&mut config, &["plugins", "bme680"]).insert("enabled".into(), false.into());
    let from = host.log().len();
    let tmp = host.config_path.with_extension("toml.tmp");
    std::fs::write(&tmp, toml::to_string(&config).unwrap()).unwrap();
    std::fs::rename(&tmp, &host.config_path).unwrap();
    let log = wait_until("both changes in the log", WAIT, || {
        let log = log_since(&host, from);
        (log.contains("`pi_monitor`") && log.contains("`bme680`")).then_some(log)
    });
    let line = |name: &str| {
        log.lines()
            .find(|l| l.contains(&format!("`{name}`")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("pi_monitor").contains("removed"), "{log}");
    assert!(line("bme680").contains("disabled"), "{log}");
}

/// Issue 16, item 3 (reload side): deleting the config file is logged and
/// reported in `/healthz` (naming the file); the plugins keep running, and
/// the file coming back clears it.
#[test]
fn a_deleted_config_file_is_logged_and_reported() {
    let host = TestHost::start();
    let good = std::fs::read_to_string(&host.config_path).unwrap();
    let path = host.config_path.display().to_string();
    let before = calls(&host);
    let from = host.log().len();
    std::fs::remove_file(&host.config_path).unwrap();
    wait_health(
        &host,
        "/healthz to report the deleted config",
        |status, h| status == 503 && h.to_string().contains(&path),
    );
    assert!(
        log_since(&host, from).contains(&path),
        "the log names the deleted file:\n{}",
        log_since(&host, from)
    );
    still_running(&host, &before);
    std::fs::write(&host.config_path, good).unwrap();
    wait_health(&host, "the config back", |status, _| status == 200);
}

/// Issue 16, item 13: a config edit made while the host is still loading
/// its plugins (here: compiling one with an empty artifact cache) is not
/// lost: it is applied once loading is done.
#[test]
fn a_config_edit_while_the_host_starts_is_not_lost() {
    let dir = temp_dir("edit-at-start");
    let mut config = base_config(&dir);
    // Only the hostile plugin, compiled from scratch: loading takes
    // seconds, and the edit lands between reading the config and watching
    // it.
    table(&mut config, &["plugins"]).clear();
    add_hostile(&mut config, "first", "ok", 500, &[]);
    table(&mut config, &["host"]).insert(
        "cache_dir".into(),
        dir.join("own-cache").display().to_string().into(),
    );
    let host = TestHost::builder()
        .dir(&dir)
        .base(config.clone())
        .no_wait()
        .start();
    add_hostile(&mut config, "late", "ok", 500, &[]);
    let tmp = host.config_path.with_extension("toml.tmp");
    std::fs::write(&tmp, toml::to_string(&config).unwrap()).unwrap();
    std::fs::rename(&tmp, &host.config_path).unwrap();
    let deadline = std::time::Instant::now() + WAIT * 2;
    let plugin = loop {
        let all = host.get("/api/plugins").json();
        let late = all["plugins"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "late").cloned());
        match late {
            Some(p) if p["status"] == "running" => break p,
            _ if std::time::Instant::now() > deadline => panic!(
                "the plugin added during start never ran ({late:?}); plugins: {all}\nlog:\n{}",
                host.log()
            ),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert!(plugin["calls"].as_u64() >= Some(1), "{plugin}");
    assert!(host.log().contains("config change"), "{}", host.log());
}
