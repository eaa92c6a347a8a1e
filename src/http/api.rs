//! JSON endpoints.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AppState, Request, Response};
use crate::control::{ControlError, Pattern};
use crate::hardware::{unix_time_ms, HwError, SimDevice, SimFault, SimOverride};
use crate::plugins::Health;
use crate::scheduler::{SensorReading, SystemReading};

/// The scheduler is considered stuck when its loop has not turned for this long.
const HEARTBEAT_STALE_MS: u64 = 5_000;

/// `GET /api`: the user's documented shape (`readings[]`, `last_update`),
/// plus system stats, LEDs, buzzer, plugins and the backend.
///
/// Serialised from typed structs, not `json!`: a `serde_json::Value` widens
/// `f32` to `f64`, and 21.5 °C would read 21.500000953674316.
pub fn readings(state: &AppState) -> Response {
    #[derive(Serialize)]
    struct Led {
        index: usize,
        r: u8,
        g: u8,
        b: u8,
    }
    #[derive(Serialize)]
    struct Buzzer {
        active: bool,
        on: bool,
        beeps_total: u64,
    }
    #[derive(Serialize)]
    struct Api<'a> {
        readings: Vec<std::borrow::Cow<'a, SensorReading>>,
        last_update: u64,
        system: Option<&'a SystemReading>,
        leds: Vec<Led>,
        buzzer: Buzzer,
        plugins: Vec<serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mqtt: Option<crate::mqtt::StatusView>,
        hardware: &'a str,
    }
    let readings = state.shared.readings();
    let actuators = state.hardware.status();
    let body = Api {
        readings: readings.all(),
        last_update: readings.last_update_ms,
        system: readings.system.as_ref(),
        leds: actuators
            .leds
            .iter()
            .enumerate()
            .map(|(index, &[r, g, b])| Led { index, r, g, b })
            .collect(),
        buzzer: Buzzer {
            active: actuators.buzzer_on || actuators.buzzer_pattern_active,
            on: actuators.buzzer_on,
            beeps_total: actuators.beeps_total,
        },
        plugins: plugin_summaries(state),
        mqtt: state.mqtt.as_ref().and_then(|m| m.view()),
        hardware: &state.hardware_name,
    };
    Response::new(
        200,
        "application/json",
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

fn plugin_summaries(state: &AppState) -> Vec<serde_json::Value> {
    state
        .shared
        .plugins()
        .into_iter()
        .map(|p| {
            json!({
                "name": p.name,
                "status": p.status,
                "version": p.version,
                "calls": p.calls,
                "failures": p.failures,
                "last_error": p.last_error,
                "loaded_at_ms": p.loaded_at_ms,
            })
        })
        .collect()
}

/// `GET /api/history?range=1h|24h&sensor=ID&since=MS`: the bucketed
/// history of every reading (see `scheduler::history`).
pub fn history(request: &Request, state: &AppState) -> Response {
    use crate::scheduler::history::{COARSE, FINE};
    let query = request.query.as_bytes();
    for pair in request.query.split('&').filter(|p| !p.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !matches!(key, "range" | "sensor" | "since") {
            return Response::error(
                400,
                format!(
                    "unknown query parameter `{}`; use range (1h or 24h), sensor and since (Unix ms)",
                    crate::capabilities::log::truncate(key, 40)
                ),
            );
        }
    }
    let tier = match super::wire::form_field(query, "range").as_deref() {
        None | Some("1h") => FINE,
        Some("24h") => COARSE,
        Some(other) => {
            return Response::error(
                400,
                format!(
                    "range must be 1h (10 s buckets) or 24h (5 min buckets), not `{}`",
                    crate::capabilities::log::truncate(other, 40)
                ),
            )
        }
    };
    let since = match super::wire::form_field(query, "since") {
        None => 0,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) => ms,
            Err(_) => return Response::error(400, "since must be a Unix time in milliseconds"),
        },
    };
    let sensor = super::wire::form_field(query, "sensor");
    let series = match state.shared.history.lock() {
        Ok(h) => h.view(tier, sensor.as_deref(), since),
        Err(_) => Vec::new(),
    };
    #[derive(Serialize)]
    struct Body {
        range: &'static str,
        resolution_s: u64,
        now_ms: u64,
        series: Vec<crate::scheduler::history::SeriesView>,
    }
    let body = Body {
        range: tier.name,
        resolution_s: tier.width_ms / 1000,
        now_ms: unix_time_ms(),
        series,
    };
    Response::new(
        200,
        "application/json",
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// `GET /api/plugins`: everything the host knows about each plugin.
pub fn plugins(state: &AppState) -> Response {
    Response::json(200, &json!({ "plugins": state.shared.plugins() }))
}

/// `GET /healthz`: 200 when the scheduler is turning and no plugin is
/// quarantined or failed to load; 503 otherwise, with the reasons.
pub fn healthz(state: &AppState) -> Response {
    let heartbeat = state.shared.heartbeat_ms.load(Ordering::Relaxed);
    let age_ms = unix_time_ms().saturating_sub(heartbeat);
    let mut problems = Vec::new();
    if age_ms > HEARTBEAT_STALE_MS {
        problems.push(format!("scheduler has not run for {age_ms} ms"));
    }
    if let Some(e) = state
        .shared
        .config_error
        .read()
        .ok()
        .and_then(|e| e.clone())
    {
        problems.push(format!(
            "the config file is invalid, the last good config is running: {e}"
        ));
    }
    for p in state.shared.plugins() {
        if matches!(p.status, Health::Quarantined | Health::LoadFailed) {
            problems.push(format!(
                "plugin `{}` is {}: {}",
                p.name,
                serde_json::to_value(p.status)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or(""),
                p.last_error
            ));
        }
    }
    let status = if problems.is_empty() { 200 } else { 503 };
    Response::json(
        status,
        &json!({
            "status": if problems.is_empty() { "ok" } else { "degraded" },
            "problems": problems,
            "uptime_s": state.started.elapsed().as_secs(),
            "plugins_loaded": state.shared.loaded.load(Ordering::Relaxed),
            "hardware": state.hardware_name,
        }),
    )
}

fn parse_json<'a, T: Deserialize<'a>>(request: &'a Request) -> Result<T, Response> {
    if let Some(ct) = &request.content_type {
        if !ct.starts_with("application/json") {
            return Err(Response::error(
                415,
                format!("expected Content-Type: application/json, got {ct}"),
            ));
        }
    }
    serde_json::from_slice(&request.body)
        .map_err(|e| Response::error(400, format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuzzerRequest {
    /// `beep` (one short tone) or `long` (one long tone).
    pattern: String,
}

/// `POST /api/buzzer` with `{"pattern": "beep" | "long"}`: the dashboard's
/// Beep and Long Beep buttons.
pub fn buzzer(request: &Request, state: &AppState) -> Response {
    let body: BuzzerRequest = match parse_json(request) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(pattern) = Pattern::parse(&body.pattern) else {
        return Response::error(
            400,
            format!(
                "unknown pattern `{}`: expected \"beep\" or \"long\"",
                body.pattern
            ),
        );
    };
    match state.control.buzz(pattern, "http") {
        Ok(()) => Response::json(202, &json!({ "ok": true, "pattern": pattern.name() })),
        Err(ControlError::RateLimited(refusal)) => Response::rate_limited(&refusal),
        Err(e) => Response::error(503, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimRequest {
    /// `dht22`, `bme680` or `cpu`.
    device: String,
    pin: Option<u8>,
    addr: Option<u8>,
    temperature: Option<f32>,
    humidity: Option<f32>,
    pressure: Option<f32>,
    gas_resistance_ohm: Option<f32>,
    /// Release the device back to the simulation (values and fault).
    #[serde(default)]
    clear: bool,
    /// Inject a fault (`"checksum"`, `"missing_edge"`, `"no_response"`,
    /// `"i2c_error"`, `"wrong_chip_id"`, `"absent"`); `null` clears it.
    /// Absent: leave the fault as it is.
    #[serde(default, deserialize_with = "present")]
    fault: Option<Option<String>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `POST /api/sim`: pin simulated sensor values (sim backend only), e.g.
/// `{"device": "dht22", "pin": 4, "temperature": 35.0}`; `"clear": true`
/// releases them. `{"device": "dht22", "pin": 4, "fault": "checksum"}`
/// injects a fault until `"fault": null` (or `"clear": true`).
pub fn sim(request: &Request, state: &AppState) -> Response {
    let body: SimRequest = match parse_json(request) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let device = match body.device.as_str() {
        "dht22" => SimDevice::Dht22 {
            pin: body.pin.unwrap_or(4),
        },
        "bme680" => SimDevice::Bme680 {
            addr: body.addr.unwrap_or(0x77),
        },
        "cpu" => SimDevice::Cpu,
        other => {
            return Response::error(
                400,
                format!("unknown device `{other}`: expected dht22, bme680 or cpu"),
            )
        }
    };
    let values = (!body.clear).then_some(SimOverride {
        temperature_c: body.temperature,
        humidity_pct: body.humidity,
        pressure_hpa: body.pressure,
        gas_resistance_ohm: body.gas_resistance_ohm,
    });
    for (name, v) in [
        ("temperature", body.temperature),
        ("humidity", body.humidity),
        ("pressure", body.pressure),
        ("gas_resistance_ohm", body.gas_resistance_ohm),
    ] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Response::error(400, format!("`{name}` must be a finite number"));
        }
    }
    let fault = match &body.fault {
        None => None,
        Some(None) => Some(None),
        Some(Some(name)) => match name.parse::<SimFault>() {
            Ok(f) if f.applies_to(device) => Some(Some(f)),
            Ok(f) => {
                let valid: Vec<&str> = SimFault::ALL
                    .into_iter()
                    .filter(|f| f.applies_to(device))
                    .map(SimFault::name)
                    .collect();
                return Response::error(
                    400,
                    format!(
                        "fault `{f}` does not apply to {device}: expected one of {}",
                        valid.join(", ")
                    ),
                );
            }
            Err(e) => return Response::error(400, e),
        },
    };
    let has_values = [
        body.temperature,
        body.humidity,
        body.pressure,
        body.gas_resistance_ohm,
    ]
    .iter()
    .any(Option::is_some);
    // A request that only sets a fault leaves pinned values alone.
    let result = if fault.is_none() || has_values || body.clear {
        state.hardware.set_override(device, values)
    } else {
        Ok(())
    };
    let fault = if body.clear { Some(None) } else { fault };
    let result = result.and_then(|()| match fault {
        Some(f) => state.hardware.set_fault(device, f),
        None => Ok(()),
    });
    match result {
        Ok(()) => Response::json(200, &json!({ "ok": true })),
        Err(HwError::Unsupported(m)) => Response::error(409, m),
        Err(e) => Response::error(503, e.to_string()),
    }
}
