//! Compile tiers: a component with no cached optimized artifact is served
//! from a quick Winch build first and swapped for the Cranelift build when
//! that is ready; every limit holds on the Winch tier; a bad cached Winch
//! artifact is recompiled, never run.
//!
//! Each test makes "never seen" components by appending a custom section
//! with a nonce to a shipped one (same program, new SHA-256), and removes
//! their artifacts from the shared cache afterwards.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use wasi_python_host::runtime::cache_digest;

use crate::support::{
    add_hostile, base_config, hostile_wasm, shared_cache_dir, table, temp_dir, TestHost, ROOT,
};

const WAIT: Duration = Duration::from_secs(60);
/// A Winch compile takes ~2-3 s on an idle 2-core machine; other builders
/// and parallel tests share it.
const QUICK_WAIT: Duration = Duration::from_secs(240);
/// The background Cranelift compile runs at low priority: on a busy
/// machine it waits for everyone else.
const OPTIMIZED_WAIT: Duration = Duration::from_secs(900);

/// Set in a host's environment, it makes the background optimized build
/// fail (a debug-build test hook), so a plugin stays on Winch.
const FAIL_OPTIMIZE: (&str, &str) = ("WHP_TEST_FAIL_OPTIMIZE", "1");

fn leb(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n == 0 { b } else { b | 0x80 });
        if n == 0 {
            return out;
        }
    }
}

/// Writes a copy of component `src` with a custom section appended (a
/// never-seen file with the same behaviour) to `dst`; returns its digest.
fn variant(src: &Path, dst: &Path, label: &str) -> String {
    let nonce = format!(
        "{label}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    let name = b"test-nonce";
    let mut body = leb(name.len());
    body.extend_from_slice(name);
    body.extend_from_slice(nonce.as_bytes());
    let mut data = std::fs::read(src).unwrap();
    data.push(0);
    data.extend(leb(body.len()));
    data.extend(body);
    std::fs::write(dst, &data).unwrap();
    cache_digest(&data)
}

/// Cache entries (`.cwasm`) of the component with `digest`.
fn entries(digest: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(shared_cache_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&digest[..32]) && n.ends_with(".cwasm")
        })
        .collect();
    found.sort();
    found
}

/// Removes a test component's artifacts from the shared cache when the
/// test ends, however it ends.
struct Forget(String);

impl Drop for Forget {
    fn drop(&mut self) {
        for cwasm in entries(&self.0) {
            let _ = std::fs::remove_file(cwasm.with_extension("sha256"));
            let _ = std::fs::remove_file(cwasm);
        }
    }
}

/// The host's log lines about failed calls and swaps, for assertion messages.
fn failures(host: &TestHost) -> String {
    host.log()
        .lines()
        .filter(|l| l.contains("plugin `x") && (l.contains("fail") || l.contains("replaces")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is(p: &Value, version: &str, tier: &str) -> bool {
    p["version"] == version && p["tier"] == tier && p["status"] == "running"
}

fn shows(host: &TestHost, plugin: &str, sensor_id: &str) {
    host.wait_api(&format!("{plugin} to report {sensor_id}"), WAIT, |a| {
        a["readings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["plugin"] == plugin && r["sensor_id"] == sensor_id)
    });
}

/// Plugin `name` running component `file` with the hostile plugin's grants.
fn add(config: &mut toml::Table, name: &str, file: &Path, mode: &str, limits: &[(&str, i64)]) {
    add_hostile(config, name, mode, 200, limits);
    table(config, &["plugins", name]).insert("file".into(), file.display().to_string().into());
    // When it runs the dht22 plugin, it shows its level on its own LED.
    table(config, &["plugins", name, "settings"]).insert("led".into(), 3.into());
}

#[test]
fn a_changed_plugin_is_served_by_winch_first_then_by_cranelift() {
    let dir = temp_dir("tiers");
    let file = dir.join("x.wasm");
    std::fs::copy(hostile_wasm(), &file).unwrap();
    let mut config = base_config(&dir);
    // The machine is shared with other builders: a call starved past the
    // usual 1 s deadline must not read as a failed swap.
    add(&mut config, "x", &file, "ok", &[("deadline_ms", 10_000)]);
    let host = TestHost::start_in(&dir, config.clone());
    let old = cache_digest(&std::fs::read(hostile_wasm()).unwrap());
    host.wait_plugin("x", "the cached optimized build", WAIT, |p| {
        is(p, &old[..12], "cranelift")
    });

    // A file never compiled before, with the dht22 plugin's behaviour,
    // renamed into place.
    let fresh = dir.join("fresh.wasm.part");
    let digest = variant(
        &Path::new(ROOT).join("plugins/dht22/dht22.wasm"),
        &fresh,
        "tiers",
    );
    let _forget = Forget(digest.clone());
    let v = &digest[..12];
    std::fs::rename(&fresh, &file).unwrap();
    host.wait_plugin("x", "the winch build of the new version", QUICK_WAIT, |p| {
        is(p, v, "winch")
    });
    shows(&host, "x", "dht22-gpio-4");

    let p = host.wait_plugin("x", "the cranelift build", OPTIMIZED_WAIT, |p| {
        is(p, v, "cranelift")
    });
    assert_eq!(
        p["failures"],
        0,
        "no call failed across both swaps: {p}\n{}",
        failures(&host)
    );
    let calls = p["calls"].as_u64().unwrap();
    host.wait_plugin("x", "calls on the cranelift build", WAIT, |p| {
        p["calls"].as_u64().unwrap() > calls + 2
    });
    shows(&host, "x", "dht22-gpio-4");
    let p = host.plugin("x");
    assert_eq!(p["failures"], 0, "{p}\n{}", failures(&host));
    assert_eq!(p["tier"], "cranelift", "{p}");
    let log = host.log();
    assert!(
        log.contains(&format!(
            "plugin `x`: the optimized (cranelift) build of version {v} replaces the quick (winch) build"
        )),
        "the log says when the optimized build takes over:\n{log}"
    );
    // Only the optimized artifact is kept.
    let cached = entries(&digest);
    assert_eq!(cached.len(), 1, "the winch artifact is deleted: {cached:?}");
    host.stop();

    // A restart takes the cached optimized build straight away.
    let host = TestHost::start_in(&dir, config);
    let p = host.wait_plugin("x", "the new version", WAIT, |p| p["version"] == v);
    assert_eq!(p["tier"], "cranelift", "{p}");
    let log = host.log();
    assert!(
        !log.contains("with winch") && !log.contains("with cranelift"),
        "nothing is compiled at the restart:\n{log}"
    );
    shows(&host, "x", "dht22-gpio-4");
}

#[test]
fn on_the_winch_tier_every_limit_holds_and_a_failed_optimized_build_keeps_it_serving() {
    let dir = temp_dir("tiers-limits");
    let file = dir.join("hostile-variant.wasm");
    let digest = variant(&hostile_wasm(), &file, "limits");
    let _forget = Forget(digest.clone());
    let v = &digest[..12];
    let mut config = base_config(&dir);
    add(&mut config, "ok", &file, "ok", &[]);
    add(
        &mut config,
        "spin",
        &file,
        "spin",
        &[("deadline_ms", 200), ("fuel", 1 << 50)],
    );
    add(
        &mut config,
        "fuel",
        &file,
        "fuel",
        &[("fuel", 5_000_000), ("deadline_ms", 20_000)],
    );
    add(&mut config, "memory", &file, "memory", &[("memory_mb", 24)]);
    let host = TestHost::start_in_with_env(&dir, config, &[FAIL_OPTIMIZE]);

    for (name, kind) in [
        ("spin", "timeout"),
        ("fuel", "out_of_fuel"),
        ("memory", "out_of_memory"),
    ] {
        let p = host.wait_plugin(name, &format!("a {kind} failure on winch"), WAIT, |p| {
            p["tier"] == "winch" && p["failures_by_kind"][kind].as_u64().unwrap_or(0) >= 1
        });
        assert_eq!(p["version"], v, "{p}");
        assert_eq!(
            p["failures"], p["failures_by_kind"][kind],
            "{name} fails only by {kind}: {p}"
        );
    }

    // The well-behaved one keeps serving its Winch build and says why.
    let p = host.wait_plugin("ok", "the failed optimized build noted", WAIT, |p| {
        p["last_error_kind"] == "optimize"
    });
    assert!(is(&p, v, "winch"), "{p}");
    assert_eq!(p["failures"], 0, "{p}");
    assert!(
        p["last_error"]
            .as_str()
            .unwrap()
            .contains("failed, so the quick (winch) build keeps running"),
        "{p}"
    );
    shows(&host, "ok", "hostile-ok");
    let log = host.log();
    assert!(
        log.contains("plugin `ok`: the optimized (cranelift) build of version")
            && log.contains("WHP_TEST_FAIL_OPTIMIZE"),
        "the log says the optimized build failed and why:\n{log}"
    );
    // One quick compile served all four plugins (same component).
    assert_eq!(log.matches("with winch in").count(), 1, "{log}");
}

#[test]
fn a_corrupt_or_foreign_cached_winch_artifact_is_recompiled_never_run() {
    let dir = temp_dir("tiers-corrupt");
    let file = dir.join("x.wasm");
    let digest = variant(&hostile_wasm(), &file, "corrupt");
    let _forget = Forget(digest.clone());
    let v = &digest[..12];
    let mut config = base_config(&dir);
    add(&mut config, "x", &file, "ok", &[]);
    // Kept on Winch throughout, so the cache holds only a Winch artifact.
    let env = [FAIL_OPTIMIZE];
    let serves_winch = |host: &TestHost| {
        host.wait_plugin("x", "the winch build", QUICK_WAIT, |p| is(p, v, "winch"));
        shows(host, "x", "hostile-ok");
        assert_eq!(host.plugin("x")["failures"], 0);
    };

    let host = TestHost::start_in_with_env(&dir, config.clone(), &env);
    serves_winch(&host);
    host.stop();
    let cached = entries(&digest);
    assert_eq!(cached.len(), 1, "one winch artifact: {cached:?}");
    let winch = cached[0].clone();

    // Bit rot: same length, 64 bytes flipped in the middle.
    let mut bytes = std::fs::read(&winch).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&winch, &bytes).unwrap();
    let host = TestHost::start_in_with_env(&dir, config.clone(), &env);
    serves_winch(&host);
    let log = host.log();
    assert!(
        log.contains("discarding cached winch artifact") && log.contains("checksum mismatch"),
        "the corrupt artifact is refused:\n{log}"
    );
    assert!(log.contains("with winch in"), "and recompiled:\n{log}");
    host.stop();

    // A foreign artifact with a valid checksum: the Cranelift build of
    // another component, put under the Winch entry's name.
    let hostile = cache_digest(&std::fs::read(hostile_wasm()).unwrap());
    let foreign = entries(&hostile)
        .into_iter()
        .next()
        .expect("the hostile plugin's optimized artifact is in the shared cache");
    let foreign_bytes = std::fs::read(&foreign).unwrap();
    std::fs::write(&winch, &foreign_bytes).unwrap();
    std::fs::write(winch.with_extension("sha256"), cache_digest(&foreign_bytes)).unwrap();
    let host = TestHost::start_in_with_env(&dir, config, &env);
    serves_winch(&host);
    let log = host.log();
    assert!(
        log.contains("discarding cached winch artifact") && log.contains("rejected by wasmtime"),
        "wasmtime refuses an artifact of another engine:\n{log}"
    );
    assert!(
        log.contains("with winch in"),
        "and it is recompiled:\n{log}"
    );
}
