//! `/metrics`: valid Prometheus text (checked by `promtool`, from Debian's
//! `prometheus` package, see scripts/setup.sh) with every family the
//! dashboards and alerts rely on.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{reading, TestHost};

/// Runs `promtool check metrics` on `text`; panics with its findings.
fn promtool_check(text: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool is needed to validate /metrics but could not be run ({e}): \
             install Debian's `prometheus` package (scripts/setup.sh does)"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- /metrics ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_pass_promtool_and_have_every_family() {
    let host = TestHost::start();
    host.wait_api(
        "readings from every sensor plugin",
        Duration::from_secs(30),
        |a| {
            reading(a, "dht22-gpio-4").is_some()
                && reading(a, "bme680-i2c-0x77").is_some()
                && !a["system"].is_null()
        },
    );
    host.wait_plugin("dashboard", "a render", Duration::from_secs(30), |p| {
        p["calls"].as_u64() > Some(0)
    });
    // Polls scheduled after the first have a start delay on record.
    host.wait_plugin("pi_monitor", "two polls", Duration::from_secs(30), |p| {
        p["calls"].as_u64() >= Some(2)
    });
    assert_eq!(host.get("/nope").status, 404);
    let m = host.get("/metrics");
    assert_eq!(m.status, 200);
    promtool_check(&m.body);

    for (family, kind) in [
        ("whp_temperature_celsius", "gauge"),
        ("whp_humidity_percent", "gauge"),
        ("whp_iaq_score", "gauge"),
        ("whp_cpu_temperature_celsius", "gauge"),
        ("whp_plugin_calls_total", "counter"),
        ("whp_plugin_failures_total", "counter"),
        ("whp_plugin_fuel_used_total", "counter"),
        ("whp_plugin_reloads_total", "counter"),
        ("whp_plugin_python_compiles_total", "counter"),
        ("whp_plugin_instance_memory_bytes", "gauge"),
        ("whp_plugin_call_duration_seconds", "histogram"),
        ("whp_plugin_poll_start_delay_seconds", "histogram"),
        ("whp_http_requests_total", "counter"),
    ] {
        let type_line = format!("# TYPE {family} {kind}\n");
        assert!(
            m.body.contains(&type_line),
            "no `{type_line}` in\n{}",
            m.body
        );
        assert!(
            m.body.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
    }
    let has = |needle: &str| {
        assert!(m.body.contains(needle), "no `{needle}` in\n{}", m.body);
    };
    has("whp_temperature_celsius{sensor_id=\"dht22-gpio-4\"}");
    for plugin in ["dht22", "bme680", "pi_monitor"] {
        has(&format!(
            "whp_plugin_call_duration_seconds_bucket{{plugin=\"{plugin}\",call=\"poll\",le=\"+Inf\"}}"
        ));
        has(&format!(
            "whp_plugin_poll_start_delay_seconds_count{{plugin=\"{plugin}\"}}"
        ));
        has(&format!(
            "whp_plugin_reloads_total{{plugin=\"{plugin}\"}} 0"
        ));
    }
    has("whp_plugin_call_duration_seconds_sum{plugin=\"dashboard\",call=\"render\"}");
    has("whp_http_requests_total{route=\"/api\",status=\"200\"}");
    has("status=\"404\"");

    // Buckets are cumulative and end at the count; a persistent instance
    // holds at least the 12.4 MiB a componentize-py plugin starts with.
    let value = |prefix: &str| -> f64 {
        m.body
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample `{prefix}`"))
    };
    let inf = value(
        "whp_plugin_call_duration_seconds_bucket{plugin=\"pi_monitor\",call=\"poll\",le=\"+Inf\"}",
    );
    let count =
        value("whp_plugin_call_duration_seconds_count{plugin=\"pi_monitor\",call=\"poll\"}");
    assert_eq!(inf, count);
    assert!(count >= 2.0, "pi_monitor polls counted: {count}");
    let memory = value("whp_plugin_instance_memory_bytes{plugin=\"pi_monitor\"}");
    assert!(memory >= 12.0 * 1024.0 * 1024.0, "instance memory {memory}");
    assert!(value("whp_plugin_fuel_used_total{plugin=\"pi_monitor\"}") > 0.0);
}
