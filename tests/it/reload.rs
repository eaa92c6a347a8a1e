//! Hot reload of Python-source plugins through the real binary, the real
//! runtime and real files: every way people and tools replace `app.py`,
//! half-written and broken sources, changes in `common/`, rollback and
//! quarantine, state and the bytecode cache across reloads and restarts,
//! the live config, and a hundred reloads under HTTP load.
//!
//! Most tests run `tests/plugins/counter` (see its docstring): its reading
//! says which variant of its source is running (`message`), how many polls
//! its state store has counted (`temperature`) and how many calls the
//! current instance served (`humidity`). No test sleeps to prove that
//! nothing happened: each waits for something the host reports.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use wasi_python_host::plugins::files::read_sources;

use crate::support::{
    add_plugin, base_config, plugin_dir, reading, table, temp_dir, test_plugin, wait_until,
    TestHost, SENSOR_INTERFACES,
};

const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------
// The counter plugin and its variants
// ---------------------------------------------------------------------

/// tests/plugins/counter/app.py with its knobs (`NAME = value` lines) set:
/// `TAG` to `tag` (a Python string) and the others as given.
fn counter_source(tag: &str, knobs: &[(&str, &str)]) -> String {
    let text = std::fs::read_to_string(test_plugin("counter").join("app.py"))
        .expect("tests/plugins/counter/app.py is readable");
    let tag = format!("{tag:?}");
    let knobs: Vec<(&str, &str)> = std::iter::once(("TAG", tag.as_str()))
        .chain(knobs.iter().copied())
        .collect();
    let mut out = String::new();
    let mut set = 0;
    for line in text.lines() {
        match knobs
            .iter()
            .find(|(name, _)| line.starts_with(&format!("{name} = ")))
        {
            Some((name, value)) => {
                out.push_str(&format!("{name} = {value}"));
                set += 1;
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    assert_eq!(set, knobs.len(), "every knob is a line of counter/app.py");
    out
}

/// Adds plugin `name` running the counter plugin (its reading is `name`).
fn add_counter(config: &mut toml::Table, name: &str, interval_ms: i64) {
    add_plugin(
        config,
        name,
        &test_plugin("counter"),
        "dht22",
        interval_ms,
        SENSOR_INTERFACES,
    );
    table(config, &["plugins", name, "settings"]).insert("sensor_id".into(), name.into());
}

/// The config the host runs with, as a table.
fn host_config(host: &TestHost) -> toml::Table {
    std::fs::read_to_string(&host.config_path)
        .expect("the host's config is readable")
        .parse()
        .expect("the host's config is TOML")
}

/// The `app.py` of plugin `name` of a running host.
fn app_py(host: &TestHost, name: &str) -> PathBuf {
    plugin_dir(&host_config(host), name).join("app.py")
}

/// The version of plugin `name`'s sources on disk, as the host computes it.
fn version_on_disk(host: &TestHost, name: &str) -> String {
    let dir = plugin_dir(&host_config(host), name);
    let common = dir.parent().expect("plugins folder").join("common");
    read_sources(name, &dir, &common)
        .expect("the plugin's sources are readable")
        .version
}

/// Waits until plugin `name` runs `version`.
fn wait_version(host: &TestHost, name: &str, version: &str) -> Value {
    host.wait_plugin(name, &format!("version {version} running"), WAIT, |p| {
        p["version"] == version && p["status"] == "running"
    })
}

/// Waits for a reading of `sensor_id` that `f` accepts.
fn wait_reading(host: &TestHost, sensor_id: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let api = host.wait_api(&format!("{sensor_id}: {what}"), WAIT, |a| {
        reading(a, sensor_id).is_some_and(&f)
    });
    reading(&api, sensor_id).expect("accepted above").clone()
}

/// The count (kept in the state store) of a counter reading.
fn count(r: &Value) -> u64 {
    r["temperature"].as_f64().expect("a number") as u64
}

/// Calls served by the counter instance that made the reading.
fn instance_calls(r: &Value) -> u64 {
    r["humidity"].as_f64().expect("a number") as u64
}

/// Waits for a reading of counter `name` from variant `tag` counting past
/// `after`: proof that this variant is serving.
fn wait_serving(host: &TestHost, name: &str, tag: &str, after: u64) -> Value {
    wait_reading(
        host,
        name,
        &format!("variant {tag} counting past {after}"),
        |r| r["message"] == tag && count(r) > after,
    )
}

/// The host's log after its first `from` bytes.
fn log_since(host: &TestHost, from: usize) -> String {
    host.log().get(from..).unwrap_or_default().to_string()
}

/// Waits until the host's log after `from` contains `needle`.
fn wait_log(host: &TestHost, from: usize, needle: &str) -> String {
    wait_until(&format!("`{needle}` in the log"), WAIT, || {
        let log = log_since(host, from);
        log.contains(needle).then_some(log)
    })
}

/// Something unique to this test run, so sources and their bytecode are new
/// to the shared cache.
fn nonce() -> String {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{}_{ns}", std::process::id())
}

// ---------------------------------------------------------------------
// How files get replaced
// ---------------------------------------------------------------------

/// `open(path, "w")` and write: what editors with `backupcopy=yes` do.
fn write_in_place(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .expect("app.py is writable");
    f.write_all(text.as_bytes()).expect("app.py is written");
}

/// Write a temporary file, rename it over: what atomic savers and `scp`
/// to a temp name do.
fn write_then_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("py.part");
    std::fs::write(&tmp, text).expect("temp file is writable");
    std::fs::rename(&tmp, path).expect("rename over app.py");
}

/// Move the original to a backup name, write a new file, delete the
/// backup: vim with `backupcopy=no`.
fn backup_and_rename(path: &Path, text: &str) {
    let backup = path.with_extension("py~");
    std::fs::rename(path, &backup).expect("app.py can be moved");
    std::fs::write(path, text).expect("a new app.py");
    std::fs::remove_file(&backup).expect("the backup goes");
}

/// `cp NEW app.py`.
fn cp_over(path: &Path, text: &str) {
    let new = path
        .parent()
        .and_then(Path::parent)
        .expect("plugins folder")
        .join("new-app.py.txt");
    std::fs::write(&new, text).expect("source of the copy");
    let status = std::process::Command::new("cp")
        .arg(&new)
        .arg(path)
        .status()
        .expect("cp runs");
    assert!(status.success(), "cp failed");
}

type Replace = fn(&Path, &str);

const WAYS: &[(&str, Replace)] = &[
    ("written in place", write_in_place),
    ("written to a temp name and renamed", write_then_rename),
    ("backed up, renamed and written", backup_and_rename),
    ("copied over with cp", cp_over),
];

/// Starts a host with the counter plugin (`counter`, polled every
/// `interval_ms`) running its first variant, `a`.
fn host_with_counter(interval_ms: i64) -> TestHost {
    let host = TestHost::builder()
        .config(|c| add_counter(c, "counter", interval_ms))
        .start();
    wait_serving(&host, "counter", "a", 0);
    host
}

#[test]
fn every_way_of_replacing_app_py_reloads_it_once() {
    let host = host_with_counter(200);
    let app = app_py(&host, "counter");
    let mut tag = "a".to_string();
    for (i, (how, replace)) in WAYS.iter().enumerate() {
        let before = count(&wait_serving(&host, "counter", &tag, 0));
        let from = host.log().len();
        tag = format!("way{i}");
        replace(&app, &counter_source(&tag, &[]));
        let version = version_on_disk(&host, "counter");
        let p = wait_version(&host, "counter", &version);
        assert_eq!(p["last_error"], "", "{how}: no error left behind: {p}");
        wait_serving(&host, "counter", &tag, before);
        let log = log_since(&host, from);
        let loads = log
            .matches(&format!(
                "plugin `counter`: changed, loading version {version}"
            ))
            .count();
        assert_eq!(loads, 1, "{how}: loaded once:\n{log}");
    }
}

#[test]
fn a_half_written_app_py_is_refused_and_the_rest_is_picked_up() {
    let host = host_with_counter(200);
    let app = app_py(&host, "counter");
    let old = version_on_disk(&host, "counter");
    wait_version(&host, "counter", &old);
    let text = counter_source("b", &[]);
    // Cut inside the poll's `return [Dht22Reading(...)]`: what a reader of
    // a file still being copied sees. The `[` opened there is never closed.
    let cut = text
        .find("alert=AlertLevel.OK")
        .expect("counter/app.py returns a reading");
    let open_line = text[..cut]
        .lines()
        .collect::<Vec<_>>()
        .iter()
        .rposition(|l| l.contains("return [Dht22Reading("))
        .expect("the return line is before the cut")
        + 1;
    std::fs::write(&app, &text[..cut]).expect("app.py is writable");
    let p = host.wait_plugin("counter", "the refused half", WAIT, |p| {
        p["last_error_kind"] == "reload"
    });
    let error = p["last_error"].as_str().expect("a string");
    assert!(
        error.contains("reload failed, the running version stays")
            && error.contains("SyntaxError")
            && error.contains(&format!("(counter/app.py, line {open_line})")),
        "{p}"
    );
    assert_eq!(p["version"], old.as_str(), "{p}");
    assert_eq!(p["status"], "running", "{p}");
    // The old version goes on serving.
    let now = count(reading(&host.api(), "counter").expect("the counter's reading"));
    wait_serving(&host, "counter", "a", now);

    // The rest arrives.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&app)
        .expect("app.py is writable");
    f.write_all(&text.as_bytes()[cut..])
        .expect("the rest is written");
    drop(f);
    let new = version_on_disk(&host, "counter");
    assert_ne!(new, old);
    let p = wait_version(&host, "counter", &new);
    assert_eq!(p["last_error"], "", "{p}");
    assert!(p["last_error_kind"].is_null(), "{p}");
    wait_serving(&host, "counter", "b", now);
}

#[test]
fn a_syntax_error_is_reported_with_its_line_while_the_old_version_serves_until_fixed() {
    let host = host_with_counter(200);
    let app = app_py(&host, "counter");
    let running = std::fs::read_to_string(&app).expect("app.py is readable");
    let v0 = version_on_disk(&host, "counter");
    let reloads = wait_version(&host, "counter", &v0)["reloads"].clone();
    let broken = format!("{running}\ndef broken(:\n    pass\n");
    let line = running.lines().count() + 2;

    let break_it = |tag: &str| {
        write_in_place(&app, &broken);
        let p = host.wait_plugin("counter", "the SyntaxError", WAIT, |p| {
            p["last_error_kind"] == "reload"
        });
        let error = p["last_error"].as_str().expect("a string");
        assert!(
            error.contains("SyntaxError")
                && error.contains(&format!("(counter/app.py, line {line})")),
            "names the file and line: {p}"
        );
        assert_eq!(p["status"], "running", "{p}");
        // /api keeps the running version's readings, and they go on.
        let now = count(reading(&host.api(), "counter").expect("the counter's reading"));
        wait_serving(&host, "counter", tag, now);
    };

    // Fixed by restoring exactly the running text: nothing is reloaded,
    // the error goes.
    break_it("a");
    let from = host.log().len();
    write_in_place(&app, &running);
    let p = host.wait_plugin("counter", "the error cleared", WAIT, |p| {
        p["last_error"] == ""
    });
    assert!(p["last_error_kind"].is_null(), "{p}");
    assert_eq!(p["version"], v0.as_str(), "{p}");
    assert_eq!(p["reloads"], reloads, "no reload for the running text: {p}");
    assert!(
        log_since(&host, from).contains("plugin `counter`: the running version's source is back"),
        "{}",
        log_since(&host, from)
    );

    // Fixed by a new version.
    break_it("a");
    write_in_place(&app, &counter_source("b", &[]));
    let v1 = version_on_disk(&host, "counter");
    let p = wait_version(&host, "counter", &v1);
    assert_eq!(p["last_error"], "", "{p}");
    wait_serving(&host, "counter", "b", 0);
}

/// The standard-library modules of runtime/allowlist.py, in its order.
fn allow_list() -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(crate::support::ROOT).join("runtime/allowlist.py"))
            .expect("runtime/allowlist.py is readable");
    let list = text
        .split("STDLIB = (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("allowlist.py has STDLIB = (...)");
    list.split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn an_import_outside_the_allow_list_or_the_grants_is_refused_saying_what_to_do() {
    let host = host_with_counter(200);
    let app = app_py(&host, "counter");
    let running = std::fs::read_to_string(&app).expect("app.py is readable");
    let v0 = version_on_disk(&host, "counter");
    wait_version(&host, "counter", &v0);
    let grants: Vec<String> = SENSOR_INTERFACES
        .iter()
        .chain(&["system"])
        .map(|i| format!("\"{i}\""))
        .collect();
    let cases = [
        (
            "import time\n",
            "import time\nimport socket\n",
            vec![
                "No module named 'socket'".to_string(),
                format!("standard-library modules: {}", allow_list().join(", ")),
            ],
        ),
        (
            "from wit_world.imports import gpio_provider, settings, state\n",
            "from wit_world.imports import gpio_provider, settings, state, system\n",
            vec![format!(
                "plugin `counter` imports system but its config does not grant it; to allow it, \
                 set in [plugins.counter.grants]: interfaces = [{}]",
                grants.join(", ")
            )],
        ),
    ];
    for (line, with_import, says) in cases {
        assert!(running.contains(line), "counter/app.py has `{line}`");
        write_in_place(&app, &running.replacen(line, with_import, 1));
        let p = host.wait_plugin("counter", "the refused import", WAIT, |p| {
            p["last_error_kind"] == "reload"
        });
        for words in &says {
            assert!(
                p["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains(words.as_str())),
                "`{words}` in: {p}"
            );
        }
        assert_eq!(p["version"], v0.as_str(), "{p}");
        let now = count(reading(&host.api(), "counter").expect("the counter's reading"));
        wait_serving(&host, "counter", "a", now);
        write_in_place(&app, &running);
        host.wait_plugin("counter", "the error cleared", WAIT, |p| {
            p["last_error"] == ""
        });
    }
}

#[test]
fn a_version_failing_on_its_first_calls_is_rolled_back_keeping_its_traceback() {
    let host = host_with_counter(200);
    let app = app_py(&host, "counter");
    let v0 = version_on_disk(&host, "counter");
    wait_version(&host, "counter", &v0);
    let bad = counter_source("b", &[("RAISE_FROM_CALL", "1")]);
    let raise_line = bad
        .lines()
        .position(|l| l.contains("raise RuntimeError"))
        .expect("counter/app.py raises somewhere")
        + 1;
    write_then_rename(&app, &bad);
    let v1 = version_on_disk(&host, "counter");
    let p = host.wait_plugin("counter", "the rollback", WAIT, |p| {
        p["last_error_kind"] == "rollback"
    });
    assert_eq!(p["version"], v0.as_str(), "back on the old version: {p}");
    assert_eq!(p["status"], "running", "{p}");
    let error = p["last_error"].as_str().expect("a string");
    assert!(
        error.contains(&format!("version {v1} failed on its first calls"))
            && error.contains("RuntimeError: variant b fails on call 1")
            && error.contains(&format!("rolled back to version {v0}")),
        "{p}"
    );
    let detail = p["last_error_detail"].as_str().expect("a string");
    assert!(
        detail.contains("Traceback (most recent call last)")
            && detail.contains(&format!("File \"counter/app.py\", line {raise_line}"))
            && detail.contains("RuntimeError: variant b fails on call 1"),
        "the failing version's traceback is kept: {detail}"
    );
    // The old version serves, and the note stays while it does.
    let now = count(reading(&host.api(), "counter").expect("the counter's reading"));
    wait_serving(&host, "counter", "a", now);
    let p = host.plugin("counter");
    assert_eq!(p["last_error_kind"], "rollback", "{p}");
    assert_eq!(p["last_error_detail"], detail, "{p}");
}

#[test]
fn a_trial_never_rolls_back_to_a_quarantined_version() {
    // Variant a fails on every call: five failures (backoff 1+2+4+8 s) and
    // it is quarantined.
    let host = TestHost::builder()
        .config(|c| {
            add_counter(c, "counter", 200);
            let app = plugin_dir(c, "counter").join("app.py");
            std::fs::write(app, counter_source("a", &[("RAISE_FROM_CALL", "1")])).unwrap();
        })
        .start();
    let quarantined = version_on_disk(&host, "counter");
    host.wait_plugin("counter", "quarantined", Duration::from_secs(90), |p| {
        p["status"] == "quarantined"
    });
    // Variant b fails too: it must not hand the slot back to a.
    let app = app_py(&host, "counter");
    let from = host.log().len();
    write_then_rename(&app, &counter_source("b", &[("RAISE_FROM_CALL", "1")]));
    let b = version_on_disk(&host, "counter");
    let log = wait_log(
        &host,
        from,
        &format!("version {quarantined} stays released (it was quarantined)"),
    );
    assert!(!log.contains("rolled back"), "{log}");
    let p = host.plugin("counter");
    assert_eq!(p["version"], b.as_str(), "{p}");
    assert_ne!(p["last_error_kind"], "rollback", "{p}");
    assert!(
        p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("variant b fails")),
        "b's own failure is shown: {p}"
    );
    // A working variant takes over.
    write_then_rename(&app, &counter_source("c", &[]));
    let c = version_on_disk(&host, "counter");
    wait_version(&host, "counter", &c);
    wait_serving(&host, "counter", "c", 0);
}

#[test]
fn a_change_in_common_reloads_every_source_plugin() {
    let host = host_with_counter(200);
    let names = ["bme680", "counter", "dashboard", "dht22", "pi_monitor"];
    let common = plugin_dir(&host_config(&host), "common");
    let label = common.join("label.py");
    // The whole folder swapped: a new one moved in, the old one moved aside.
    fn swap_common(label: &Path, text: &str) {
        let common = label.parent().expect("common/");
        let staged = common.with_file_name("common.new");
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(common)
            .arg(&staged)
            .status()
            .expect("cp runs");
        assert!(status.success());
        std::fs::write(staged.join("label.py"), text).unwrap();
        let old = common.with_file_name("common.old");
        std::fs::rename(common, &old).unwrap();
        std::fs::rename(&staged, common).unwrap();
        std::fs::remove_dir_all(&old).unwrap();
    }
    let replaces: [(&str, Replace); 4] = [
        ("-one", write_then_rename),
        ("-two", write_in_place),
        ("-three", swap_common),
        // An edit in the folder that was moved in.
        ("-four", write_in_place),
    ];
    for (text, replace) in replaces {
        let before: Vec<Value> = names
            .iter()
            .map(|n| host.plugin(n)["version"].clone())
            .collect();
        let from = host.log().len();
        replace(&label, &format!("LABEL = {text:?}\n"));
        for (name, old) in names.iter().zip(&before) {
            let version = version_on_disk(&host, name);
            assert_ne!(*old, version, "{name}: common/ is part of its version");
            wait_version(&host, name, &version);
        }
        let log = log_since(&host, from);
        for name in names {
            assert!(
                log.contains(&format!("plugin `{name}`: changed, loading version")),
                "{name} reloaded:\n{log}"
            );
        }
        wait_serving(&host, "counter", &format!("a{text}"), 0);
    }
}

#[test]
fn state_is_kept_across_a_reload_and_a_restart() {
    let dir = temp_dir("state");
    let mut config = base_config(&dir);
    add_counter(&mut config, "counter", 200);
    let host = TestHost::builder().dir(&dir).base(config.clone()).start();
    let before = count(&wait_reading(&host, "counter", "three polls", |r| {
        count(r) >= 3
    }));

    // A reload: a fresh instance (its Python globals start at zero), the
    // same state store (the count goes on from where it was).
    write_then_rename(&app_py(&host, "counter"), &counter_source("b", &[]));
    let r = wait_serving(&host, "counter", "b", 0);
    assert!(
        count(&r) >= before + instance_calls(&r),
        "the count went on across the reload ({before} before, then {r})"
    );
    assert!(instance_calls(&r) < count(&r), "a new instance: {r}");
    assert!(
        dir.join("state/counter.json").exists(),
        "the state is on disk"
    );
    let before = count(&wait_serving(&host, "counter", "b", count(&r)));
    assert_eq!(host.stop().code(), Some(0), "a clean stop");

    // A restart on the same state folder.
    let host = TestHost::builder().dir(&dir).base(config).start();
    let r = wait_serving(&host, "counter", "b", 0);
    assert!(
        count(&r) >= before + instance_calls(&r),
        "the count went on across the restart ({before} before, then {r})"
    );
}

#[test]
fn the_bytecode_cache_serves_restarts_and_new_instances() {
    let dir = temp_dir("bytecode");
    let mut config = base_config(&dir);
    let nonce = nonce();
    // A shared module nobody imports: it is never compiled, so it must not
    // be counted as compiled either.
    std::fs::write(
        plugin_dir(&config, "common").join(format!("unused_{nonce}.py")),
        "UNUSED = 1\n",
    )
    .unwrap();
    // Three counters whose sources (with a comment unique to this run)
    // have never been compiled: one restarted, one failing on the second
    // call of each instance, one with a fresh instance for every call.
    for (name, knobs) in [
        ("counter", &[][..]),
        ("flaky", &[("RAISE_FROM_CALL", "2")][..]),
        ("recycled", &[][..]),
    ] {
        add_counter(&mut config, name, 200);
        let text = format!("{}# {name} {nonce}\n", counter_source("a", knobs));
        std::fs::write(plugin_dir(&config, name).join("app.py"), text).unwrap();
    }
    table(&mut config, &["plugins", "recycled", "limits"]).insert("recycle".into(), true.into());
    let loaded = |log: &str, name: &str| -> String {
        log.lines()
            .find(|l| l.contains(&format!("plugin `{name}` loaded:")))
            .unwrap_or_else(|| panic!("no load line for {name} in:\n{log}"))
            .to_string()
    };

    let host = TestHost::builder().dir(&dir).base(config.clone()).start();
    let log = host.log();
    for name in ["counter", "flaky", "recycled"] {
        let line = loaded(&log, name);
        assert!(line.contains("(1 modules compiled, "), "{line}");
        assert_eq!(host.plugin(name)["python_compiles"], 1, "{name}");
    }
    // A failure throws the instance away; the next one loads the bytecode.
    let p = host.wait_plugin("flaky", "a failure and a good call after it", WAIT, |p| {
        p["failures"].as_u64() >= Some(1) && p["status"] == "running"
    });
    wait_log(&host, 0, "plugin `flaky` recovered");
    assert_eq!(
        p["python_compiles"], 1,
        "no compile for a new instance: {p}"
    );
    // recycle = true: a new instance for every call, none compiles.
    let p = host.wait_plugin("recycled", "five calls", WAIT, |p| {
        p["calls"].as_u64() >= Some(5)
    });
    assert_eq!(p["python_compiles"], 1, "no compile per call: {p}");
    wait_reading(&host, "recycled", "five polls counted", |r| {
        count(r) >= 5 && instance_calls(r) == 1
    });
    assert_eq!(host.stop().code(), Some(0));

    let host = TestHost::builder().dir(&dir).base(config).start();
    let log = host.log();
    for name in ["counter", "flaky", "recycled"] {
        let line = loaded(&log, name);
        assert!(line.contains("(bytecode cached, "), "{line}");
        assert_eq!(host.plugin(name)["python_compiles"], 0, "{name}");
    }
}

// ---------------------------------------------------------------------
// The config file
// ---------------------------------------------------------------------

/// Replaces the host's config with `config`, the way a careful tool does
/// (a temporary file renamed over it).
fn write_config(host: &TestHost, config: &toml::Table) {
    write_then_rename_file(
        &host.config_path,
        &toml::to_string(config).expect("config serialises"),
    );
}

fn write_then_rename_file(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).expect("temp file is writable");
    std::fs::rename(&tmp, path).expect("rename over the config");
}

/// Plugin `name`'s entry in `/api/plugins`, if it has one.
fn find_plugin(host: &TestHost, name: &str) -> Option<Value> {
    host.get("/api/plugins").json()["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

/// Waits for `/healthz` with `status` and a body that `f` accepts.
fn wait_health(host: &TestHost, what: &str, status: u16, f: impl Fn(&str) -> bool) -> String {
    wait_until(what, WAIT, || {
        let r = host.get("/healthz");
        (r.status == status && f(&r.body)).then_some(r.body)
    })
}

/// Waits until every plugin of `names` has been called again and still runs.
fn keep_running(host: &TestHost, names: &[&str]) {
    let before: Vec<u64> = names
        .iter()
        .map(|n| host.plugin(n)["calls"].as_u64().unwrap_or(0))
        .collect();
    for (name, calls) in names.iter().zip(before) {
        host.wait_plugin(name, "another call", WAIT, |p| {
            p["calls"].as_u64() > Some(calls) && p["status"] == "running"
        });
    }
}

#[test]
fn live_config_disables_removes_reconfigures_and_enables_plugins() {
    let host = TestHost::start();
    let original = host_config(&host);
    host.wait_api("the BME680 and the Pi monitor", WAIT, |a| {
        reading(a, "bme680-i2c-0x77").is_some() && !a["system"].is_null()
    });

    let mut config = original.clone();
    table(&mut config, &["plugins", "bme680"]).insert("enabled".into(), false.into());
    table(&mut config, &["plugins"]).remove("pi_monitor");
    table(&mut config, &["plugins", "dht22"]).insert("interval_ms".into(), 500.into());
    let from = host.log().len();
    write_config(&host, &config);
    for line in [
        "config change: plugin `bme680` disabled (enabled = false)",
        "config change: plugin `pi_monitor` removed (no [plugins.pi_monitor] any more)",
        "config change: plugin `dht22` reconfigured",
    ] {
        wait_log(&host, from, line);
    }
    host.wait_plugin("bme680", "disabled", WAIT, |p| p["status"] == "disabled");
    let api = host.wait_api("the BME680's reading gone, its LED off", WAIT, |a| {
        reading(a, "bme680-i2c-0x77").is_none()
            && a["leds"][2]["r"] == 0
            && a["leds"][2]["g"] == 0
            && a["leds"][2]["b"] == 0
    });
    assert!(api["system"].is_null(), "the Pi monitor's stats are gone");
    wait_until("pi_monitor gone from /api/plugins", WAIT, || {
        find_plugin(&host, "pi_monitor").is_none().then_some(())
    });
    host.wait_plugin("dht22", "the new interval", WAIT, |p| {
        p["interval_ms"] == 500 && p["status"] == "running"
    });
    wait_reading(&host, "dht22-gpio-4", "a reading", |_| true);

    // Back: bme680 enabled, pi_monitor added again, dht22 as it was.
    let from = host.log().len();
    write_config(&host, &original);
    for line in [
        "config change: plugin `bme680` enabled",
        "config change: plugin `pi_monitor` enabled",
        "config change: plugin `dht22` reconfigured",
    ] {
        wait_log(&host, from, line);
    }
    for name in ["bme680", "pi_monitor"] {
        host.wait_plugin(name, "running again", WAIT, |p| p["status"] == "running");
    }
    host.wait_api("the BME680 and the Pi monitor back", WAIT, |a| {
        reading(a, "bme680-i2c-0x77").is_some() && !a["system"].is_null()
    });
    assert_eq!(host.plugin("dht22")["interval_ms"], 2000);
    assert_eq!(host.get("/healthz").status, 200);
}

#[test]
fn an_invalid_or_deleted_config_keeps_the_running_one_and_healthz_says_why() {
    let host = TestHost::start();
    let good = std::fs::read_to_string(&host.config_path).expect("config is readable");
    let path = host.config_path.display().to_string();
    let all = ["dht22", "bme680", "pi_monitor", "dashboard"];

    // Invalid: the error names the file, the line and the key.
    let mut config = host_config(&host);
    table(&mut config, &["plugins", "dht22"]).insert("interval_ms".into(), "often".into());
    let text = toml::to_string(&config).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("\"often\""))
        .expect("the bad value is in the file")
        + 1;
    write_then_rename_file(&host.config_path, &text);
    let body = wait_health(&host, "the config error in /healthz", 503, |b| {
        b.contains("the config file is invalid")
    });
    assert!(
        body.contains(&format!("{path}:{line}: `plugins.dht22.interval_ms`")),
        "{body}"
    );
    keep_running(&host, &all[..3]);
    assert_eq!(
        host.plugin("dht22")["interval_ms"],
        2000,
        "the old config runs"
    );
    write_then_rename_file(&host.config_path, &good);
    wait_health(&host, "healthy again", 200, |_| true);

    // Deleted: reported, naming the file; the plugins go on.
    let from = host.log().len();
    std::fs::remove_file(&host.config_path).unwrap();
    let body = wait_health(&host, "the deleted config in /healthz", 503, |b| {
        b.contains("was deleted")
    });
    assert!(body.contains(&path), "{body}");
    assert!(
        log_since(&host, from).contains(&format!("{path} was deleted")),
        "logged: {}",
        log_since(&host, from)
    );
    keep_running(&host, &all[..3]);
    write_then_rename_file(&host.config_path, &good);
    wait_health(&host, "healthy once the file is back", 200, |_| true);
    for name in all {
        assert_eq!(host.plugin(name)["status"], "running", "{name}");
    }
}

/// Passes with the required-sections check of branch `hostile` (commit
/// 97cbb5f, tried on this branch); on its own this branch applies an empty
/// file as "no plugins" and stops them all.
#[test]
fn an_empty_or_truncated_config_is_refused() {
    let host = TestHost::start();
    let good = std::fs::read_to_string(&host.config_path).expect("config is readable");
    // Cut before the first plugin: valid TOML, what a full disk leaves.
    let cut = good[..good.find("[plugins.").expect("the config has plugins")].to_string();
    for (what, text) in [("empty", String::new()), ("truncated", cut)] {
        write_in_place(&host.config_path, &text);
        let body = wait_health(&host, &format!("the {what} config refused"), 503, |b| {
            b.contains("the config file is invalid")
        });
        assert!(
            body.contains(&host.config_path.display().to_string()),
            "{what}: {body}"
        );
        keep_running(&host, &["dht22", "bme680", "pi_monitor"]);
        assert!(
            !host.log().contains("removed (no [plugins."),
            "{what}: no plugin removed:\n{}",
            host.log()
        );
        write_in_place(&host.config_path, &good);
        wait_health(&host, "healthy again", 200, |_| true);
    }
}

#[test]
fn a_config_edit_made_while_the_host_starts_is_applied() {
    let dir = temp_dir("edit-at-start");
    let mut config = base_config(&dir);
    // A plugin that takes seconds to load keeps the host starting.
    add_counter(&mut config, "slow", 500);
    std::fs::write(
        plugin_dir(&config, "slow").join("app.py"),
        counter_source("a", &[("SLEEP_AT_IMPORT_S", "4")]),
    )
    .unwrap();
    let host = TestHost::builder()
        .dir(&dir)
        .base(config.clone())
        .no_wait()
        .start();
    add_counter(&mut config, "late", 500);
    write_config(&host, &config);
    let health = host.get("/healthz").json();
    assert_eq!(
        health["plugins_loaded"], false,
        "the edit was made while the host was starting: {health}"
    );
    let p = wait_until("the plugin added while starting to run", WAIT, || {
        find_plugin(&host, "late").filter(|p| p["status"] == "running")
    });
    assert_eq!(p["version"].as_str().map(str::len), Some(12), "{p}");
    wait_serving(&host, "late", "a", 0);
    assert!(
        host.log().contains("config change: plugin `late` enabled"),
        "{}",
        host.log()
    );
    host.wait_plugin("slow", "running", WAIT, |p| p["status"] == "running");
}

// ---------------------------------------------------------------------
// Under load
// ---------------------------------------------------------------------

/// One GET over a fresh connection; the status and body, or why there is
/// no complete response.
fn try_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .map_err(|e| format!("send: {e}"))?;
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .map_err(|e| format!("receive: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete head: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {head:?}"))?;
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if let Some(n) = length {
        if body.len() != n {
            return Err(format!("{} of {n} body bytes", body.len()));
        }
    }
    Ok((status, body.to_string()))
}

#[test]
fn a_hundred_reloads_under_http_load_fail_no_request() {
    let host = host_with_counter(100);
    let app = app_py(&host, "counter");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = ["/api", "/api", "/"]
        .into_iter()
        .map(|path| {
            let (stop, served, failures, addr) =
                (stop.clone(), served.clone(), failures.clone(), host.addr);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let outcome = try_get(addr, path).and_then(|(status, body)| {
                        if status != 200 {
                            return Err(format!("status {status}: {body:.200}"));
                        }
                        if path == "/api" {
                            let api: Value = serde_json::from_str(&body)
                                .map_err(|e| format!("not JSON: {e}"))?;
                            if reading(&api, "counter").is_none() {
                                return Err("the counter's reading is missing".into());
                            }
                        }
                        Ok(())
                    });
                    match outcome {
                        Ok(()) => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.lock().unwrap().push(format!("GET {path}: {e}")),
                    }
                }
            })
        })
        .collect();

    let started = Instant::now();
    let sources = [counter_source("a", &[]), counter_source("b", &[])];
    let mut versions = Vec::new();
    for i in 0..100 {
        write_then_rename(&app, &sources[(i + 1) % 2]);
        if versions.len() < 2 {
            versions.push(version_on_disk(&host, "counter"));
        }
        wait_version(&host, "counter", &versions[i % 2]);
    }
    let reloaded_in = started.elapsed();
    // The last version serves.
    wait_serving(&host, "counter", "a", 0);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("an HTTP client thread panicked");
    }
    let served = served.load(Ordering::Relaxed);
    let failures = failures.lock().unwrap();
    eprintln!(
        "100 reloads in {reloaded_in:?} under load: {served} requests served, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
    assert!(served >= 200, "the load ran: {served} requests");
    let p = host.plugin("counter");
    assert_eq!(p["failures"], 0, "{p}");
    assert!(p["reloads"].as_u64() >= Some(100), "{p}");
}

#[test]
fn revoking_a_grant_the_running_source_needs_stops_it_and_says_what_to_add() {
    let host = host_with_counter(200);
    let mut config = host_config(&host);
    let without_state: Vec<toml::Value> = SENSOR_INTERFACES
        .iter()
        .filter(|i| **i != "state")
        .map(|i| toml::Value::from(*i))
        .collect();
    table(&mut config, &["plugins", "counter", "grants"])
        .insert("interfaces".into(), toml::Value::Array(without_state));
    write_config(&host, &config);
    let p = host.wait_plugin("counter", "refused under its new grants", WAIT, |p| {
        p["status"] == "load_failed"
    });
    assert!(
        p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("imports state but its config does not grant it")),
        "{p}"
    );
    // The version loaded under the old grants is not left running with
    // them: its reading goes, like any unloaded plugin's.
    host.wait_api("the counter's reading gone", WAIT, |a| {
        reading(a, "counter").is_none()
    });
    assert_eq!(host.plugin("counter")["status"], "load_failed");
    // Granted again, it runs again.
    table(&mut config, &["plugins", "counter", "grants"]).insert(
        "interfaces".into(),
        toml::Value::Array(SENSOR_INTERFACES.iter().map(|i| (*i).into()).collect()),
    );
    write_config(&host, &config);
    let p = host.wait_plugin("counter", "running again", WAIT, |p| {
        p["status"] == "running"
    });
    assert_eq!(p["last_error"], "", "{p}");
    wait_serving(&host, "counter", "a", 0);
}

#[test]
fn a_plugin_folder_made_after_its_config_entry_is_loaded() {
    let host = TestHost::builder()
        .config(|c| {
            add_counter(c, "later", 200);
            let dir = plugin_dir(c, "later");
            std::fs::remove_dir_all(&dir).expect("the folder add_counter made");
        })
        .start();
    let p = host.plugin("later");
    assert_eq!(p["status"], "load_failed", "{p}");
    assert!(
        p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("app.py does not exist")),
        "{p}"
    );
    // The folder arrives the way `scp -r` or `new NAME` makes it: the
    // folder first, then its file.
    let dir = plugin_dir(&host_config(&host), "later");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("app.py"), counter_source("a", &[])).unwrap();
    let version = version_on_disk(&host, "later");
    let p = wait_version(&host, "later", &version);
    assert_eq!(p["last_error"], "", "{p}");
    wait_serving(&host, "later", "a", 0);
}

/// Replaces plugin folder `.0` with folder `.1`.
type Swap = fn(&Path, &Path);

#[test]
fn replacing_the_whole_plugin_folder_reloads_it_and_later_edits_too() {
    let host = host_with_counter(200);
    let dir = plugin_dir(&host_config(&host), "counter");
    let staged = dir.with_file_name("counter.new");
    // Each way a deploy swaps a folder: the old one removed, or moved
    // aside, and the new one copied or moved in.
    let swaps: [(&str, Swap); 2] = [
        ("rm -rf, then cp -r", |dir, staged| {
            std::fs::remove_dir_all(dir).unwrap();
            let status = std::process::Command::new("cp")
                .arg("-r")
                .arg(staged)
                .arg(dir)
                .status()
                .expect("cp runs");
            assert!(status.success());
        }),
        ("mv aside, then mv in", |dir, staged| {
            let old = dir.with_file_name("counter.old");
            std::fs::rename(dir, &old).unwrap();
            std::fs::rename(staged, dir).unwrap();
            std::fs::remove_dir_all(&old).unwrap();
        }),
    ];
    for (i, (how, swap)) in swaps.iter().enumerate() {
        std::fs::create_dir_all(&staged).unwrap();
        let tag = format!("swap{i}");
        std::fs::write(staged.join("app.py"), counter_source(&tag, &[])).unwrap();
        swap(&dir, &staged);
        let _ = std::fs::remove_dir_all(&staged);
        let version = version_on_disk(&host, "counter");
        wait_version(&host, "counter", &version);
        wait_serving(&host, "counter", &tag, 0);
        // The new folder is watched: an edit in it reloads.
        let tag = format!("swap{i}-edited");
        write_in_place(&dir.join("app.py"), &counter_source(&tag, &[]));
        let version = version_on_disk(&host, "counter");
        host.wait_plugin(
            "counter",
            &format!("{how}: the edit in the new folder"),
            WAIT,
            |p| p["version"] == version.as_str() && p["status"] == "running",
        );
        wait_serving(&host, "counter", &tag, 0);
    }
}
