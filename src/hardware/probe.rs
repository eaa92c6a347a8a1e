//! `wasi-python-host probe`: checks every configured device once and says
//! what it found, or what is wrong and how to fix it.
//!
//! It drives a backend directly, on the calling thread, without the
//! hardware thread: it is a one-shot command, and nothing else runs.
//! Actuators are only put in their safe state (LEDs off, buzzer silent),
//! which proves the driver works without flashing or beeping at anyone.

use std::fmt;
use std::time::Duration;

use super::{Backend, HwError, DHT22_MIN_INTERVAL};

/// What to check.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbePlan {
    pub dht22_pins: Vec<u8>,
    pub bme680_addresses: Vec<u8>,
    pub led_count: u8,
    pub led_pin: u8,
    pub buzzer_pin: u8,
    /// A DHT22 read that failed on bad data (not on a missing sensor) is
    /// tried again this many times, [`ProbePlan::dht22_retry_interval`]
    /// apart: one checksum error should not fail a probe.
    pub dht22_retries: u32,
    /// [`DHT22_MIN_INTERVAL`], the sensor's own limit.
    pub dht22_retry_interval: Duration,
}

impl Default for ProbePlan {
    fn default() -> Self {
        ProbePlan {
            dht22_pins: Vec::new(),
            bme680_addresses: Vec::new(),
            led_count: 0,
            led_pin: 18,
            buzzer_pin: 17,
            dht22_retries: 2,
            dht22_retry_interval: DHT22_MIN_INTERVAL,
        }
    }
}

/// One device's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeLine {
    /// `DHT22`, `BME680`, `LED strip`, `buzzer`, `CPU`.
    pub device: &'static str,
    /// Where: `GPIO 4`, `0x77`, `thermal_zone0`.
    pub location: String,
    /// What was found, or why not.
    pub result: Result<String, HwError>,
}

/// Everything `probe` found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    pub backend: &'static str,
    pub lines: Vec<ProbeLine>,
    /// RAM, load and uptime, for information; not a device.
    pub system: Option<String>,
}

impl ProbeReport {
    /// Every configured device answered.
    pub fn all_found(&self) -> bool {
        self.lines.iter().all(|l| l.result.is_ok())
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "hardware backend: {}", self.backend)?;
        for line in &self.lines {
            let (status, text) = match &line.result {
                Ok(found) => ("ok", found.clone()),
                Err(HwError::NotPresent(_)) => ("MISSING", line_error(&line.result)),
                Err(_) => ("FAILED", line_error(&line.result)),
            };
            writeln!(
                f,
                "{:<10} {:<14} {:<8} {}",
                line.device, line.location, status, text
            )?;
        }
        if let Some(system) = &self.system {
            writeln!(f, "{:<10} {:<14} {:<8} {}", "system", "", "", system)?;
        }
        let found = self.lines.iter().filter(|l| l.result.is_ok()).count();
        writeln!(f, "{found} of {} devices found", self.lines.len())
    }
}

fn line_error(result: &Result<String, HwError>) -> String {
    result
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Checks every device in `plan` with `backend`.
pub fn probe(backend: &mut dyn Backend, plan: &ProbePlan) -> ProbeReport {
    let mut lines = Vec::new();
    for &pin in &plan.dht22_pins {
        let mut result = backend.read_dht22(pin);
        for _ in 0..plan.dht22_retries {
            if !matches!(result, Err(HwError::Sensor(_))) {
                break;
            }
            if let Err(e) = &result {
                log::info!("DHT22 on GPIO {pin}: {e}; trying again");
            }
            std::thread::sleep(plan.dht22_retry_interval);
            result = backend.read_dht22(pin);
        }
        lines.push(ProbeLine {
            device: "DHT22",
            location: format!("GPIO {pin}"),
            result: result.map(|s| format!("{:.1} °C, {:.1} %RH", s.temperature_c, s.humidity_pct)),
        });
    }
    for &addr in &plan.bme680_addresses {
        lines.push(ProbeLine {
            device: "BME680",
            location: format!("I2C {addr:#04x}"),
            // The driver checks the chip id before anything else.
            result: backend.read_bme680(addr).map(|s| {
                let gas = if s.gas_valid {
                    format!("gas {:.0} Ω", s.gas_resistance_ohm)
                } else {
                    "gas not valid yet (heater not stable)".into()
                };
                format!(
                    "{}, chip id {:#04x}, {:.2} °C, {:.1} %RH, {:.2} hPa, {gas}",
                    s.chip,
                    crate::drivers::bme680::CHIP_ID,
                    s.temperature_c,
                    s.humidity_pct,
                    s.pressure_hpa
                )
            }),
        });
    }
    if plan.led_count > 0 {
        let off = vec![[0, 0, 0]; usize::from(plan.led_count)];
        let result = backend
            .show_leds(&off)
            .map(|()| format!("{} LEDs, {}", plan.led_count, backend.leds_driver()));
        lines.push(ProbeLine {
            device: "LED strip",
            location: format!("GPIO {}", plan.led_pin),
            result,
        });
    }
    let result = backend.set_buzzer(false).map(|()| backend.buzzer_kind());
    lines.push(ProbeLine {
        device: "buzzer",
        location: format!("GPIO {}", plan.buzzer_pin),
        result,
    });
    lines.push(ProbeLine {
        device: "CPU",
        location: "thermal_zone0".into(),
        result: backend.cpu_temp_c().map(|t| format!("{t:.1} °C")),
    });
    let system = backend.system_stats().ok().map(|s| {
        const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
        format!(
            "RAM {:.2} of {:.2} GiB used, load {:.2}, up {} h {} min",
            s.ram_used_bytes as f64 / GIB,
            s.ram_total_bytes as f64 / GIB,
            s.load_1m,
            s.uptime_s / 3600,
            s.uptime_s % 3600 / 60
        )
    });
    ProbeReport {
        backend: backend.name(),
        lines,
        system,
    }
}
