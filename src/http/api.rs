//! JSON endpoints.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AppState, Request, Response};
use crate::clock::unix_time_ms;
use crate::control::{ControlError, Pattern};
use crate::hardware::{ActuatorStatus, HwError, SimDevice, SimFault, SimOverride};
use crate::plugins::{Health, PluginStatus};
use crate::scheduler::{Readings, SensorReading, SystemReading};

/// The scheduler is considered stuck when its loop has not turned for this long.
const HEARTBEAT_STALE_MS: u64 = 5_000;

/// `GET /api`: the user's documented shape (`readings[]`, `last_update`),
/// plus system stats, LEDs, buzzer, plugins and the backend, served from
/// [`ApiCache`].
pub fn readings(state: &AppState) -> Response {
    Response::new(
        200,
        "application/json",
        state.api_cache.body(state).to_vec(),
    )
}

/// `/api`'s body, made once per change of what it shows rather than once
/// per request: under load most requests of a second see the same data,
/// and building the body (cloning the readings and the plugin registry,
/// serialising) costs far more than checking that nothing changed.
///
/// The body is a pure function of [`Inputs`], and a cached body is served
/// only when every input still equals what it was made from, compared by
/// value under the same locks the builder reads. The readings' `generation`
/// alone would not do: plugin status and counters, the LEDs and buzzer,
/// and the MQTT status change without a bump, and the scheduler stores a
/// plugin's readings before it bumps the generation at the end of its
/// round. The generation is compared first, so the usual miss (new
/// readings) is found without comparing them.
#[derive(Default)]
pub struct ApiCache {
    last: RwLock<Option<Arc<Cached>>>,
}

struct Cached {
    inputs: Inputs,
    body: Arc<[u8]>,
}

/// Everything `/api` shows, owned. `hardware` (the backend's name) never
/// changes while the host runs, so it is not an input.
struct Inputs {
    readings: Readings,
    plugins: Vec<PluginSummary>,
    actuators: ActuatorStatus,
    mqtt: Option<crate::mqtt::StatusView>,
}

/// What `/api` shows of a plugin (`/api/plugins` has the rest).
#[derive(Serialize, PartialEq)]
struct PluginSummary {
    name: String,
    status: Health,
    version: String,
    calls: u64,
    failures: u64,
    last_error: String,
    loaded_at_ms: u64,
}

impl PluginSummary {
    fn of(p: &PluginStatus) -> PluginSummary {
        PluginSummary {
            name: p.name.clone(),
            status: p.status,
            version: p.version.clone(),
            calls: p.calls,
            failures: p.failures,
            last_error: p.last_error.clone(),
            loaded_at_ms: p.loaded_at_ms,
        }
    }

    /// Equal to what [`PluginSummary::of`] would make of `p`, without
    /// copying it.
    fn is(&self, p: &PluginStatus) -> bool {
        self.name == p.name
            && self.status == p.status
            && self.version == p.version
            && self.calls == p.calls
            && self.failures == p.failures
            && self.last_error == p.last_error
            && self.loaded_at_ms == p.loaded_at_ms
    }
}

impl ApiCache {
    /// The body for the current state: the cached one when nothing it
    /// shows has changed, else a new one (which is then cached).
    pub fn body(&self, state: &AppState) -> Arc<[u8]> {
        let last = self.last.read().expect("/api cache lock").clone();
        if let Some(cached) = last {
            if cached.inputs.are_current(state) {
                return cached.body.clone();
            }
        }
        let inputs = Inputs::now(state);
        let body: Arc<[u8]> = inputs.render(&state.hardware_name).into();
        *self.last.write().expect("/api cache lock") = Some(Arc::new(Cached {
            inputs,
            body: body.clone(),
        }));
        body
    }
}

impl Inputs {
    fn now(state: &AppState) -> Inputs {
        Inputs {
            readings: state.shared.readings(),
            plugins: state
                .shared
                .registry
                .read(|r| r.values().map(PluginSummary::of).collect()),
            actuators: state.hardware.status(),
            mqtt: state.mqtt.as_ref().and_then(|m| m.view()),
        }
    }

    /// Whether every input still equals this one. Comparisons only: a hit
    /// must cost much less than building the body.
    fn are_current(&self, state: &AppState) -> bool {
        let same_readings = {
            let r = state.shared.readings.read().expect("readings lock");
            // The generation first: the usual miss is found without
            // comparing the readings.
            r.generation == self.readings.generation && *r == self.readings
        };
        let same_plugins = || {
            state.shared.registry.read(|r| {
                r.len() == self.plugins.len() && r.values().zip(&self.plugins).all(|(p, s)| s.is(p))
            })
        };
        same_readings
            && same_plugins()
            && state.hardware.status_is(&self.actuators)
            && state.mqtt.as_ref().and_then(|m| m.view()) == self.mqtt
    }

    /// Serialised from typed structs, not `json!`: a `serde_json::Value`
    /// widens `f32` to `f64`, and 21.5 °C would read 21.500000953674316.
    fn render(&self, hardware: &str) -> Vec<u8> {
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
            plugins: &'a [PluginSummary],
            #[serde(skip_serializing_if = "Option::is_none")]
            mqtt: Option<&'a crate::mqtt::StatusView>,
            hardware: &'a str,
        }
        let actuators = &self.actuators;
        let body = Api {
            readings: self.readings.all(),
            last_update: self.readings.last_update_ms,
            system: self.readings.system.as_ref(),
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
            plugins: &self.plugins,
            mqtt: self.mqtt.as_ref(),
            hardware,
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
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
                    crate::text::truncate(key, 40)
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
                    crate::text::truncate(other, 40)
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
    let series = state
        .shared
        .history
        .lock()
        .expect("reading history lock")
        .view(tier, sensor.as_deref(), since);
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
/// quarantined or failed to load; 503 otherwise, with the reasons (only
/// the panic, once a thread the host needs died of one).
pub fn healthz(state: &AppState) -> Response {
    if let Some(fatal) = state.shared.fatal.get() {
        // The host is stopping. Nothing else is looked at: the panic may
        // have poisoned the locks behind the other checks.
        return health(
            state,
            vec![format!("{fatal}; the host is stopping (see its log)")],
        );
    }
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
        .expect("config error lock")
        .clone()
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
    health(state, problems)
}

/// The `/healthz` answer for `problems`.
fn health(state: &AppState, problems: Vec<String>) -> Response {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::hardware::{Hardware, HardwareOptions, SimBackend};
    use crate::http::AppState;
    use crate::scheduler::Shared;

    fn state() -> (Hardware, AppState) {
        let hardware = Hardware::start(
            Box::new(SimBackend::new(1, vec![4], vec![0x77])),
            HardwareOptions {
                request_timeout: Duration::from_secs(5),
                ..HardwareOptions::default()
            },
        )
        .expect("hardware thread starts");
        let hw = hardware.handle();
        let state = AppState::new(
            Shared::new(),
            hw.clone(),
            Arc::new(crate::control::Control::new(hw)),
            "sim".into(),
            crate::http::auth::Auth::with_token("t0k3n-for-the-api-cache-test", "test"),
        );
        (hardware, state)
    }

    #[test]
    fn an_unchanged_state_is_served_from_the_cache_and_a_change_is_not() {
        let (_hw, state) = state();
        let first = state.api_cache.body(&state);
        assert!(
            Arc::ptr_eq(&first, &state.api_cache.body(&state)),
            "nothing changed: the cached body"
        );
        state.shared.readings.write().unwrap().last_update_ms = 7;
        let second = state.api_cache.body(&state);
        assert!(!Arc::ptr_eq(&first, &second), "a change: a new body");
        assert!(String::from_utf8_lossy(&second).contains("\"last_update\":7"));
        assert!(Arc::ptr_eq(&second, &state.api_cache.body(&state)));
    }

    #[test]
    fn a_panicking_host_thread_fails_healthz_with_its_message() {
        let (_hw, state) = state();
        assert_eq!(super::healthz(&state).status, 200);
        // The thread dies holding a lock /healthz otherwise reads.
        let shared = state.shared.clone();
        let died = std::thread::spawn(move || {
            crate::scheduler::watched(&shared, "scheduler", || {
                let _held = shared.config_error.write().unwrap();
                panic!("a bug");
            })
        })
        .join();
        assert!(died.is_err(), "the panic goes on to the thread's join");
        assert!(state.shared.config_error.is_poisoned());
        let answer = super::healthz(&state);
        assert_eq!(answer.status, 503);
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(
            body["problems"][0],
            "the scheduler thread panicked: a bug; the host is stopping (see its log)"
        );
    }
}
