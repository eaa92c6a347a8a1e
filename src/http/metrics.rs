//! `GET /metrics`: Prometheus text exposition format.

use std::fmt::Write as _;

use super::{AppState, Response};
use crate::plugins::histogram::Histogram;
use crate::plugins::Health;

/// Escapes a label value per the exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
        }
    }
    /// One histogram's `_bucket` (cumulative, `le` label), `_sum` and
    /// `_count` samples.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        for (bound, n) in h.cumulative() {
            let le = if bound.is_infinite() {
                "+Inf".to_string()
            } else {
                bound.to_string()
            };
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, n);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum());
        self.sample(&format!("{name}_count"), labels, h.count());
    }
}

pub fn render(state: &AppState) -> Response {
    let mut out = String::new();
    let mut m = Family { out: &mut out };
    let readings = state.shared.readings();
    let all = readings.all();

    m.header(
        "whp_reading",
        "gauge",
        "Every field of every reading, by sensor id and field name (unit as a label).",
    );
    for r in &all {
        for f in &r.fields {
            m.sample(
                "whp_reading",
                &[
                    ("sensor_id", &r.sensor_id),
                    ("field", &f.name),
                    ("unit", &f.unit),
                    ("plugin", &r.plugin),
                ],
                f.value,
            );
        }
    }
    // The seed's fields also under names of their own, as before generic
    // readings (dashboards and alert rules in use rely on them).
    let gauges: [(&str, &str, &str); 5] = [
        (
            "whp_temperature_celsius",
            "Temperature reported by a sensor plugin.",
            "temperature",
        ),
        (
            "whp_humidity_percent",
            "Relative humidity reported by a sensor plugin.",
            "humidity",
        ),
        (
            "whp_pressure_hpa",
            "Air pressure reported by a sensor plugin.",
            "pressure",
        ),
        (
            "whp_gas_resistance_kohm",
            "BME680 gas resistance.",
            "gas_resistance",
        ),
        (
            "whp_iaq_score",
            "Indoor air quality score, 0 (excellent) to 500.",
            "iaq_score",
        ),
    ];
    for (name, help, field) in gauges {
        m.header(name, "gauge", help);
        for r in &all {
            if let Some(v) = r.value(field) {
                m.sample(name, &[("sensor_id", &r.sensor_id)], v);
            }
        }
    }
    m.header(
        "whp_alert_level",
        "gauge",
        "Alert level per sensor: 0 ok, 1 warn, 2 alarm.",
    );
    for r in &all {
        let level = match r.alert {
            "warn" => 1,
            "alarm" => 2,
            _ => 0,
        };
        m.sample("whp_alert_level", &[("sensor_id", &r.sensor_id)], level);
    }
    if let Some(s) = &readings.system {
        m.header("whp_cpu_temperature_celsius", "gauge", "SoC temperature.");
        m.sample("whp_cpu_temperature_celsius", &[], s.cpu_temp_c);
        m.header(
            "whp_ram_used_bytes",
            "gauge",
            "Memory in use on the device.",
        );
        m.sample(
            "whp_ram_used_bytes",
            &[],
            u64::from(s.ram_used_mb) * 1024 * 1024,
        );
        m.header("whp_device_uptime_seconds", "gauge", "Device uptime.");
        m.sample("whp_device_uptime_seconds", &[], s.uptime_s);
    }

    let plugins = state.shared.plugins();
    m.header(
        "whp_plugin_up",
        "gauge",
        "1 when the plugin is running normally.",
    );
    for p in &plugins {
        m.sample(
            "whp_plugin_up",
            &[("plugin", &p.name)],
            u8::from(p.status == Health::Running),
        );
    }
    m.header(
        "whp_plugin_calls_total",
        "counter",
        "Calls made into the plugin.",
    );
    for p in &plugins {
        m.sample("whp_plugin_calls_total", &[("plugin", &p.name)], p.calls);
    }
    m.header(
        "whp_plugin_failures_total",
        "counter",
        "Failed plugin calls by kind.",
    );
    for p in &plugins {
        for (kind, n) in &p.failures_by_kind {
            m.sample(
                "whp_plugin_failures_total",
                &[("plugin", &p.name), ("kind", kind)],
                n,
            );
        }
    }
    m.header(
        "whp_plugin_denied_calls_total",
        "counter",
        "Calls refused because they were outside the plugin's grants.",
    );
    for p in &plugins {
        m.sample(
            "whp_plugin_denied_calls_total",
            &[("plugin", &p.name)],
            p.denied_calls,
        );
    }
    m.header(
        "whp_plugin_last_call_fuel",
        "gauge",
        "Fuel the plugin's last call used.",
    );
    for p in &plugins {
        m.sample(
            "whp_plugin_last_call_fuel",
            &[("plugin", &p.name)],
            p.last_call_fuel,
        );
    }
    m.header(
        "whp_plugin_last_call_seconds",
        "gauge",
        "Duration of the plugin's last call.",
    );
    for p in &plugins {
        m.sample(
            "whp_plugin_last_call_seconds",
            &[("plugin", &p.name)],
            p.last_call_duration_us as f64 / 1e6,
        );
    }

    m.header(
        "whp_plugin_fuel_used_total",
        "counter",
        "Fuel (roughly WebAssembly instructions) used by all the plugin's calls.",
    );
    for p in &plugins {
        m.sample(
            "whp_plugin_fuel_used_total",
            &[("plugin", &p.name)],
            p.fuel_used_total,
        );
    }
    m.header(
        "whp_plugin_reloads_total",
        "counter",
        "New versions of the plugin swapped in after the first (hot reloads, rollbacks).",
    );
    for p in &plugins {
        m.sample(
            "whp_plugin_reloads_total",
            &[("plugin", &p.name)],
            p.reloads,
        );
    }
    m.header(
        "whp_plugin_python_compiles_total",
        "counter",
        "Python modules compiled from source by the plugin's loads (cached bytecode adds none).",
    );
    for p in &plugins {
        m.sample(
            "whp_plugin_python_compiles_total",
            &[("plugin", &p.name)],
            p.python_compiles,
        );
    }
    m.header(
        "whp_plugin_instance_memory_bytes",
        "gauge",
        "Linear memory of the plugin's live instance (0 when none is kept).",
    );
    for p in &plugins {
        m.sample(
            "whp_plugin_instance_memory_bytes",
            &[("plugin", &p.name)],
            p.instance_memory_bytes,
        );
    }
    m.header(
        "whp_plugin_call_duration_seconds",
        "histogram",
        "Duration of plugin calls, by plugin and call (poll or render).",
    );
    for p in &plugins {
        for (call, h) in &p.call_seconds {
            m.histogram(
                "whp_plugin_call_duration_seconds",
                &[("plugin", &p.name), ("call", call)],
                h,
            );
        }
    }
    m.header(
        "whp_plugin_poll_start_delay_seconds",
        "histogram",
        "How late scheduled polls started after their due time.",
    );
    for p in &plugins {
        if p.kind != Some("dashboard") {
            m.histogram(
                "whp_plugin_poll_start_delay_seconds",
                &[("plugin", &p.name)],
                &p.start_delay_seconds,
            );
        }
    }

    let actuators = state.hardware.status();
    m.header("whp_buzzer_beeps_total", "counter", "Buzzer tones started.");
    m.sample("whp_buzzer_beeps_total", &[], actuators.beeps_total);

    m.header(
        "whp_http_requests_total",
        "counter",
        "HTTP requests answered, by route and status.",
    );
    for ((route, status), n) in state
        .requests
        .lock()
        .expect("http request counters lock")
        .iter()
    {
        m.sample(
            "whp_http_requests_total",
            &[("route", route), ("status", &status.to_string())],
            n,
        );
    }
    m.header(
        "whp_http_auth_failures_total",
        "counter",
        "Wrong control tokens refused (bearer and login form).",
    );
    m.sample(
        "whp_http_auth_failures_total",
        &[],
        state.auth.failures_total(),
    );
    m.header(
        "whp_uptime_seconds",
        "gauge",
        "Seconds since the host started.",
    );
    m.sample("whp_uptime_seconds", &[], state.started.elapsed().as_secs());
    Response::new(200, "text/plain; version=0.0.4; charset=utf-8", out)
}
