//! The hostile suite: a real componentize-py plugin (tests/plugins/hostile)
//! attacks the host in every way we know, next to the shipped plugins.
//! For each attack: the host stays up, the others keep their schedule, the
//! failure is named, and the attacker gets nothing it was not granted.

use std::time::Duration;

use serde_json::json;

use crate::support::{add_hostile, reading, table, TestHost};

fn well_behaved_are_running(host: &TestHost) {
    for name in ["dht22", "bme680", "pi_monitor", "dashboard"] {
        let p = host.plugin(name);
        assert_eq!(p["status"], "running", "{name} keeps running: {p}");
        assert_eq!(p["failures"], 0, "{name} never failed: {p}");
    }
    let h = host.get("/healthz");
    assert!(
        h.status == 200 || h.status == 503,
        "healthz answers: {}",
        h.status
    );
    let page = host.get("/view");
    assert_eq!(page.status, 200, "the dashboard is still served");
}

/// An attack (a hostile mode), the limits it runs under, the failure kinds
/// the host must name, and words the user-visible error must contain.
type Attack = (
    &'static str,
    &'static [(&'static str, i64)],
    &'static [&'static str],
    &'static str,
);

/// Every attack of the suite.
const ATTACKS: &[Attack] = &[
    (
        "spin",
        &[("deadline_ms", 200), ("fuel", 1 << 50)],
        &["timeout"],
        "deadline",
    ),
    (
        "fuel",
        &[("fuel", 20_000_000), ("deadline_ms", 20_000)],
        &["out_of_fuel"],
        "fuel",
    ),
    ("memory", &[("memory_mb", 24)], &["out_of_memory"], "memory"),
    // CPython 3.14 guards its C stack itself; either way the cause is named.
    // Python-to-Python calls do not use the C stack in CPython 3.11+, so
    // deep recursion ends when frames fill memory, the stack or the
    // recursion limit; any of them is a named, contained failure.
    (
        "recursion",
        &[("fuel", 1 << 50), ("deadline_ms", 3_000)],
        &["stack_overflow", "python_exception", "out_of_memory"],
        "",
    ),
    (
        "raise",
        &[],
        &["python_exception"],
        "RuntimeError: boom from the hostile plugin",
    ),
    ("huge", &[], &["bad_result"], "result too large"),
    (
        "many",
        &[("fuel", 1 << 50), ("deadline_ms", 3_000)],
        &["bad_result"],
        "at most 32 per poll",
    ),
    (
        "flood",
        &[("fuel", 1 << 50), ("deadline_ms", 3_000)],
        &["output_flood"],
        "printed more than",
    ),
];

#[test]
fn every_attack_fails_by_name_and_the_rest_keep_running() {
    let host = TestHost::builder()
        .config(|c| {
            for (mode, limits, _, _) in ATTACKS {
                add_hostile(c, &format!("hostile-{mode}"), mode, 300, limits);
            }
        })
        .start();
    for (mode, _, kinds, words) in ATTACKS {
        let name = format!("hostile-{mode}");
        let p = host.wait_plugin(&name, "a failure", Duration::from_secs(60), |p| {
            p["failures"].as_u64() > Some(0)
        });
        let kind = p["last_error_kind"].as_str().unwrap_or("");
        assert!(
            kinds.contains(&kind),
            "{name}: kind {kind} not in {kinds:?}: {p}"
        );
        let error = format!("{} {}", p["last_error"], p["last_error_detail"]);
        assert!(
            error.contains(words),
            "{name}: error names the cause ({words}): {error}"
        );
        assert!(
            host.log().contains(&format!("plugin `{name}` failed")),
            "{name}: the log names the plugin"
        );
    }
    // A Python exception arrives with its traceback.
    let raised = host.plugin("hostile-raise");
    assert!(
        raised["last_error_detail"]
            .as_str()
            .unwrap()
            .contains("Traceback"),
        "{raised}"
    );

    // Failing every call gets a plugin quarantined (5 failures in 2 minutes,
    // with backoff 1+2+4+8 s in between), and /healthz says so.
    host.wait_plugin(
        "hostile-raise",
        "quarantine",
        Duration::from_secs(40),
        |p| p["status"] == "quarantined",
    );
    let h = host.get("/healthz");
    assert_eq!(h.status, 503);
    assert!(
        h.body.contains("hostile-raise") && h.body.contains("quarantined"),
        "{}",
        h.body
    );

    well_behaved_are_running(&host);
    let m = host.get("/metrics").body;
    assert!(
        m.contains("whp_plugin_failures_total{plugin=\"hostile-spin\",kind=\"timeout\"}"),
        "{m}"
    );
}

#[test]
fn a_stuck_plugin_delays_the_others_by_at_most_its_deadline() {
    const DEADLINE_MS: u64 = 200;
    let host = TestHost::builder()
        .alone()
        .config(|c| {
            add_hostile(
                c,
                "hostile",
                "spin",
                250,
                &[("deadline_ms", DEADLINE_MS as i64), ("fuel", 1 << 50)],
            );
            // Poll the well-behaved plugins often so many polls meet the attack.
            table(c, &["plugins", "pi_monitor"]).insert("interval_ms".into(), 100.into());
            table(c, &["plugins", "bme680"]).insert("interval_ms".into(), 150.into());
        })
        .start();
    const OTHERS: [&str; 3] = ["pi_monitor", "bme680", "dht22"];
    let calls = |host: &TestHost| OTHERS.map(|name| host.plugin(name)["calls"].as_u64().unwrap());
    // Backoff spaces the attacks (1, 2, 4, 8 s): watch the first four.
    host.wait_plugin("hostile", "a timeout", Duration::from_secs(30), |p| {
        p["failures"].as_u64() >= Some(1)
    });
    let before = calls(&host);
    let p = host.wait_plugin("hostile", "four timeouts", Duration::from_secs(30), |p| {
        p["failures"].as_u64() >= Some(4)
    });
    // Every attack was cut by its deadline, and the others were called
    // between the attacks.
    assert_eq!(p["failures_by_kind"]["timeout"], p["failures"], "{p}");
    let after = calls(&host);
    for (i, name) in OTHERS.iter().enumerate() {
        assert!(
            after[i] > before[i],
            "{name} was not called during the attack"
        );
    }
    // The worst start delay each suffered, as the host measured it. The
    // figure (deadline + epoch tick + trap handling: ~200 ms) is a
    // benchmark's (BENCHMARKS.md, "Sandbox"); a deadline a few per cent
    // late shows there. The test holds a bound with a wide margin: less
    // than two deadlines. It fails if a stuck call is not cut (a spin with
    // 2^50 fuel runs for hours) or if two ever stand in a row before a
    // plugin's due time, and a busy machine does not reach it.
    let mut worst = 0;
    for name in OTHERS {
        let delay_us = host.plugin(name)["max_start_delay_us"].as_u64().unwrap();
        eprintln!(
            "worst start delay of {name} during the attack: {} ms",
            delay_us / 1000
        );
        worst = worst.max(delay_us);
    }
    let bound_us = 2 * DEADLINE_MS * 1000;
    assert!(
        worst < bound_us,
        "worst delay {worst} µs: more than one stuck call's deadline ({bound_us} µs for two)"
    );
    well_behaved_are_running(&host);
}

#[test]
fn wasi_grants_nothing_from_inside_python() {
    let marker = std::path::Path::new("/tmp/whp-hostile-was-here");
    let _ = std::fs::remove_file(marker);
    let host = TestHost::builder()
        .config(|c| add_hostile(c, "hostile", "escape", 500, &[]))
        .start();
    let api = host.wait_api("the escape report", Duration::from_secs(20), |a| {
        reading(a, "hostile-escape-spawn").is_some()
    });
    let cases = [
        "read-passwd",
        "list-root",
        "write-file",
        "env",
        "tcp",
        "udp",
        "dns",
        "spawn",
        "args",
    ];
    for case in cases {
        let r = reading(&api, &format!("hostile-escape-{case}"))
            .unwrap_or_else(|| panic!("no report for {case}: {api}"));
        let msg = r["message"].as_str().unwrap();
        assert!(
            msg.starts_with("blocked: "),
            "{case} must fail inside the plugin: {msg}"
        );
    }
    assert!(!marker.exists(), "the plugin wrote a file on the host");
    assert_eq!(
        host.plugin("hostile")["failures"],
        0,
        "every attempt failed inside Python, not the host"
    );
    well_behaved_are_running(&host);
}

#[test]
fn arguments_outside_the_grant_are_refused_and_counted() {
    let host = TestHost::builder()
        .config(|c| add_hostile(c, "hostile", "ungranted", 500, &[]))
        .start();
    let api = host.wait_api("the ungranted report", Duration::from_secs(20), |a| {
        reading(a, "hostile-ungranted").is_some()
    });
    let msg = reading(&api, "hostile-ungranted").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!msg.contains("ALLOWED"), "{msg}");
    assert!(msg.contains("pin17: refused: GPIO 17 is not granted: add it to `dht22_pins` in [plugins.hostile.grants]"), "{msg}");
    assert!(
        msg.contains("bme76: refused: I2C address 0x76 is not granted"),
        "{msg}"
    );
    assert!(msg.contains("led2: refused: LED 2 is not granted"), "{msg}");
    assert_eq!(
        api["leds"][2]["r"], 0,
        "LED 2 (the BME680's) was not touched: {}",
        api["leds"]
    );
    let p = host.plugin("hostile");
    assert!(p["denied_calls"].as_u64() >= Some(3), "{p}");
    assert!(
        host.log()
            .contains("plugin `hostile`: GPIO 17 is not granted"),
        "refusals are logged"
    );
}

#[test]
fn an_ungranted_interface_is_refused_at_load() {
    let host = TestHost::builder()
        .config(|c| {
            add_hostile(c, "hostile", "ok", 500, &[]);
            table(c, &["plugins", "hostile", "grants"]).insert(
                "interfaces".into(),
                toml::Value::Array(vec![
                    "gpio-provider".into(),
                    "log".into(),
                    "settings".into(),
                ]),
            );
        })
        .start();
    let p = host.plugin("hostile");
    assert_eq!(p["status"], "load_failed", "{p}");
    let err = p["last_error"].as_str().unwrap();
    // Every ungranted interface the source imports, in the order it
    // imports them, refused before the first call, with the line to add.
    assert!(
        err.contains(
            "plugin `hostile` imports buzzer-controller, led-controller, state but its config does not grant them"
        ),
        "{err}"
    );
    assert!(
        err.contains("[plugins.hostile.grants]: interfaces = [\"gpio-provider\", \"log\", \"settings\", \"buzzer-controller\", \"led-controller\", \"state\"]"),
        "{err}"
    );
    assert_eq!(p["last_error_kind"], "load", "{p}");
    well_behaved_are_running(&host);
}

#[test]
fn actuator_spam_is_rate_limited() {
    let host = TestHost::builder()
        .config(|c| add_hostile(c, "hostile", "spam", 1000, &[]))
        .start();
    let api = host.wait_api("the spam report", Duration::from_secs(20), |a| {
        reading(a, "hostile-spam").is_some()
    });
    let msg = reading(&api, "hostile-spam").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    let count = |key: &str| -> u64 {
        msg.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {msg}"))
    };
    assert!(
        count("beeps") <= 3,
        "at most 3 buzzer patterns at once: {msg}"
    );
    assert!(
        count("syncs") <= 11,
        "at most ~10 strip updates per second: {msg}"
    );
    assert!(count("refused") >= 380, "the rest were refused: {msg}");
    assert!(host.plugin("hostile")["denied_calls"].as_u64() >= Some(380));
}

#[test]
fn a_failing_plugin_leaves_its_actuators_safe() {
    let host = TestHost::builder()
        .config(|c| {
            add_hostile(c, "led", "led-then-raise", 700, &[]);
            add_hostile(
                c,
                "buzz",
                "buzz-then-spin",
                5000,
                &[("deadline_ms", 200), ("fuel", 1 << 50)],
            );
        })
        .start();
    host.wait_plugin(
        "led",
        "a failure after lighting LED 3",
        Duration::from_secs(20),
        |p| p["failures"].as_u64() > Some(0),
    );
    host.wait_api("LED 3 off after the failure", Duration::from_secs(5), |a| {
        a["leds"][3] == json!({"index": 3, "r": 0, "g": 0, "b": 0})
    });
    host.wait_plugin("buzz", "a timeout", Duration::from_secs(20), |p| {
        p["failures"].as_u64() > Some(0)
    });
    // The plugin asked for a 2 s tone; the host silences it at the failure
    // rather than letting it end, and the hardware thread says it cut it.
    crate::support::wait_until(
        "the tone cut short by the safe state",
        Duration::from_secs(20),
        || host.log().contains("buzzer silenced with").then_some(()),
    );
    assert_eq!(host.api()["buzzer"]["on"], false);
}

#[test]
fn one_slow_call_in_ten_fails_alone_and_the_plugin_recovers() {
    let host = TestHost::builder()
        .config(|c| {
            add_hostile(
                c,
                "hostile",
                "slow10",
                100,
                &[("deadline_ms", 200), ("fuel", 1 << 50)],
            )
        })
        .start();
    let p = host.wait_plugin(
        "hostile",
        "a timeout then recovery",
        Duration::from_secs(30),
        |p| {
            p["failures"].as_u64() >= Some(1)
                && p["status"] == "running"
                && p["calls"].as_u64() >= Some(14)
        },
    );
    assert_eq!(p["failures_by_kind"]["timeout"], p["failures"], "{p}");
    assert!(host.log().contains("plugin `hostile` recovered"));
}

/// `time.sleep` is a host call the epoch deadline cannot interrupt: the host
/// serves the wait itself, refuses one that would outlive the call's
/// deadline at once (as a timeout), and lets one that fits go by.
#[test]
fn a_plugin_that_sleeps_forever_holds_up_no_one_and_not_the_shutdown() {
    let host = TestHost::builder()
        .config(|c| {
            add_hostile(c, "hostile", "sleep", 250, &[]);
            add_hostile(c, "napper", "nap", 250, &[]);
        })
        .start();
    let p = host.wait_plugin("hostile", "three failures", Duration::from_secs(30), |p| {
        p["failures"].as_u64() >= Some(3)
    });
    assert_eq!(p["last_error_kind"], "timeout", "{p}");
    let error = p["last_error"].as_str().unwrap();
    assert!(
        error.contains("asked to wait 99999") && error.contains("deadline"),
        "{error}"
    );
    // Refused at once, not served until the deadline: the host says how
    // much of the call's 1000 ms was left when it refused, so no other
    // plugin waited on this sleep.
    let left_ms: u64 = error
        .split("had only ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the time left in {error}"));
    assert!(
        left_ms >= 500,
        "refused only {left_ms} ms before the deadline"
    );
    // A short nap within the deadline works, every time.
    let nap = host.wait_api("the napper's readings", Duration::from_secs(20), |a| {
        reading(a, "napper-napped").is_some()
    });
    assert!(reading(&nap, "napper-napped").unwrap()["message"]
        .as_str()
        .unwrap()
        .starts_with("call "));
    assert_eq!(host.plugin("napper")["failures"], 0);
    // Failing on every call gets it quarantined, and /healthz names it.
    host.wait_plugin("hostile", "quarantine", Duration::from_secs(60), |p| {
        p["status"] == "quarantined"
    });
    let h = host.get("/healthz");
    assert_eq!(h.status, 503);
    assert!(
        h.body.contains("hostile") && h.body.contains("quarantined"),
        "{}",
        h.body
    );
    well_behaved_are_running(&host);
    assert!(host.stop().success(), "SIGTERM ends the host cleanly");
}

#[test]
fn shutdown_does_not_wait_for_a_plugin_in_a_long_call() {
    // A 60 s deadline (the most a config allows) on a plugin that spins:
    // SIGTERM must still end the host at once.
    // Not waiting for every plugin: the spin holds the scheduler (by design
    // of this test), so the ones installed after it wait.
    let host = TestHost::builder()
        .config(|c| {
            add_hostile(
                c,
                "hostile",
                "spin",
                200,
                &[("deadline_ms", 60_000), ("fuel", 1 << 50)],
            )
        })
        .no_wait()
        .start();
    crate::support::wait_until(
        "the scheduler held by the long call",
        Duration::from_secs(60),
        || {
            host.get("/healthz")
                .body
                .contains("scheduler has not run for")
                .then_some(())
        },
    );
    let started = std::time::Instant::now();
    let status = host.stop();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    // A bound kept on purpose: the guarantee is about time (SIGTERM does not
    // wait out the call's 60 s deadline), and 5 s leaves a twelvefold
    // margin; a busy machine does not stretch an exit to a minute.
    assert!(
        took <= Duration::from_secs(5),
        "SIGTERM took {took:?} with a plugin in a long call"
    );
}

/// Readings are owned: a plugin cannot report another's sensor id, a
/// time far from the host's clock, or ever new ids.
#[test]
fn forged_ids_bad_times_and_id_churn_are_refused() {
    let host = TestHost::builder()
        .config(|c| {
            add_hostile(c, "forger", "forge", 300, &[]);
            add_hostile(c, "timetraveller", "future", 300, &[]);
            add_hostile(c, "churner", "ids", 300, &[]);
        })
        .start();
    for (name, words) in [
        ("forger", "sensor id `dht22-gpio-4` is not this plugin's"),
        ("timetraveller", "too far from the host's clock"),
        ("churner", "more than 16 different sensor ids"),
    ] {
        let p = host.wait_plugin(name, "a refused poll", Duration::from_secs(30), |p| {
            p["last_error_kind"] == "bad_result"
        });
        assert!(
            p["last_error"].as_str().unwrap().contains(words),
            "{name}: {p}"
        );
    }
    let api = host.api();
    let dht: Vec<&serde_json::Value> = api["readings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["sensor_id"] == "dht22-gpio-4")
        .collect();
    assert_eq!(dht.len(), 1, "one dht22-gpio-4 reading: {dht:?}");
    assert_eq!(dht[0]["plugin"], "dht22");
    assert!(dht[0]["temperature"].as_f64().unwrap() < 50.0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        api["last_update"].as_u64().unwrap() <= now_ms + 60_000,
        "{api}"
    );
    // The churner's first two polls (16 ids) were taken; nothing beyond.
    let churned = api["readings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["plugin"] == "churner")
        .count();
    assert!(
        (1..=8).contains(&churned),
        "{churned} churner readings: one poll's eight at most, and its first were taken"
    );
    // The real sensor's series (one per field) are there, so the check has
    // something to look at, and they are the only ones under its id.
    let history = host.get("/api/history").json();
    let owners: Vec<&serde_json::Value> = history["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["sensor_id"] == "dht22-gpio-4")
        .map(|s| &s["plugin"])
        .collect();
    assert!(
        !owners.is_empty() && owners.iter().all(|p| *p == "dht22"),
        "no forged history: {owners:?}"
    );
    let metrics = host.get("/metrics").body;
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("whp_temperature_celsius{sensor_id=\"dht22-gpio-4\"}"))
            .count(),
        1,
        "one series for the real sensor"
    );
}

/// Issue 16, item 8: a call's state writes are coalesced into at most one
/// durable write, the write rate is bounded, and nothing is lost when the
/// host stops.
#[test]
fn state_writes_are_coalesced_and_bounded() {
    let host = TestHost::builder()
        .config(|c| add_hostile(c, "hostile", "state-spam", 200, &[]))
        .start();
    let p = host.wait_plugin("hostile", "ten calls", Duration::from_secs(30), |p| {
        p["calls"].as_u64() >= Some(10)
    });
    let calls = p["calls"].as_u64().unwrap();
    let writes = p["state_writes"].as_u64().unwrap();
    // 2,000+ set() calls: one write at the first call, then at most one per
    // 5 s (ten calls at 200 ms take ~2 s).
    assert!(writes >= 1, "{p}");
    assert!(
        writes <= 2,
        "{writes} durable writes for {calls} calls: {p}"
    );
    assert_eq!(p["failures"], 0, "{p}");
    let state_file = std::path::Path::new(host.config_path.parent().unwrap())
        .join("state")
        .join("hostile.json");
    let last_call = host.plugin("hostile")["calls"].as_u64().unwrap();
    assert!(host.stop().success());
    // The last call's value is on disk after the stop (values are stored
    // as hex of their bytes).
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    let hex = saved["counter"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let value: u64 = String::from_utf8(bytes).unwrap().parse().unwrap();
    assert_eq!(
        value % 1000,
        199,
        "the call's last write is the one saved: {value}"
    );
    assert!(
        value / 1000 >= last_call,
        "the value of the last call ({last_call}) or a later one is saved, not an older one: {value}"
    );
}
