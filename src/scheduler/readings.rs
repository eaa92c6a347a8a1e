//! The latest readings the scheduler publishes, in the shape `/api` serves.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::contract::types::{AlertLevel, Bme680Reading, Dht22Reading, PiStats};

/// One sensor reading; BME680 readings add pressure, gas and IAQ. Field
/// names are the user's `/api` contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SensorReading {
    pub sensor_id: String,
    /// °C
    pub temperature: f32,
    /// %RH
    pub humidity: f32,
    /// hPa
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pressure: Option<f32>,
    /// kΩ
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gas_resistance: Option<f32>,
    /// 0 (excellent) – 500 (hazardous)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iaq_score: Option<u16>,
    pub timestamp_ms: u64,
    /// ok, warn or alarm
    pub alert: &'static str,
    pub message: String,
    /// The plugin that produced it.
    pub plugin: String,
}

/// The highest IAQ score; a plugin reports anything above for "no score".
pub const IAQ_MAX: u16 = 500;
/// What a plugin's `iaq-score` carries when there is no score (see
/// `plugins/common/iaq.py`, `NO_SCORE`).
pub const NO_IAQ: u16 = u16::MAX;

/// What the pi-monitor plugin reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemReading {
    pub cpu_temp_c: f32,
    pub ram_used_mb: u32,
    pub ram_total_mb: u32,
    pub uptime_s: u64,
    pub load_1m: f32,
    pub timestamp_ms: u64,
    pub alert: &'static str,
    pub message: String,
}

pub fn alert_name(level: AlertLevel) -> &'static str {
    match level {
        AlertLevel::Ok => "ok",
        AlertLevel::Warn => "warn",
        AlertLevel::Alarm => "alarm",
    }
}

pub fn alert_level(name: &str) -> AlertLevel {
    match name {
        "warn" => AlertLevel::Warn,
        "alarm" => AlertLevel::Alarm,
        _ => AlertLevel::Ok,
    }
}

impl SensorReading {
    pub fn from_dht22(r: Dht22Reading, plugin: &str) -> SensorReading {
        SensorReading {
            sensor_id: r.sensor_id,
            temperature: r.temperature,
            humidity: r.humidity,
            pressure: None,
            gas_resistance: None,
            iaq_score: None,
            timestamp_ms: r.timestamp_ms,
            alert: alert_name(r.alert),
            message: r.message,
            plugin: plugin.to_string(),
        }
    }

    pub fn from_bme680(r: Bme680Reading, plugin: &str) -> SensorReading {
        SensorReading {
            sensor_id: r.sensor_id,
            temperature: r.temperature,
            humidity: r.humidity,
            pressure: Some(r.pressure),
            gas_resistance: Some(r.gas_resistance),
            // Above 500 is the plugin saying "no score" (no valid gas
            // reading): published as none, never as a number.
            iaq_score: (r.iaq_score <= IAQ_MAX).then_some(r.iaq_score),
            timestamp_ms: r.timestamp_ms,
            alert: alert_name(r.alert),
            message: r.message,
            plugin: plugin.to_string(),
        }
    }

    pub fn is_bme680(&self) -> bool {
        self.pressure.is_some()
    }

    pub fn to_dht22(&self) -> Dht22Reading {
        Dht22Reading {
            sensor_id: self.sensor_id.clone(),
            temperature: self.temperature,
            humidity: self.humidity,
            timestamp_ms: self.timestamp_ms,
            alert: alert_level(self.alert),
            message: self.message.clone(),
        }
    }

    pub fn to_bme680(&self) -> Bme680Reading {
        Bme680Reading {
            sensor_id: self.sensor_id.clone(),
            temperature: self.temperature,
            humidity: self.humidity,
            pressure: self.pressure.unwrap_or_default(),
            gas_resistance: self.gas_resistance.unwrap_or_default(),
            iaq_score: self.iaq_score.unwrap_or(NO_IAQ),
            timestamp_ms: self.timestamp_ms,
            alert: alert_level(self.alert),
            message: self.message.clone(),
        }
    }
}

impl SystemReading {
    pub fn from_stats(s: PiStats) -> SystemReading {
        SystemReading {
            cpu_temp_c: s.cpu_temp_c,
            ram_used_mb: s.ram_used_mb,
            ram_total_mb: s.ram_total_mb,
            uptime_s: s.uptime_s,
            load_1m: s.load_1m,
            timestamp_ms: s.timestamp_ms,
            alert: alert_name(s.alert),
            message: s.message,
        }
    }

    pub fn to_stats(&self) -> PiStats {
        PiStats {
            cpu_temp_c: self.cpu_temp_c,
            ram_used_mb: self.ram_used_mb,
            ram_total_mb: self.ram_total_mb,
            uptime_s: self.uptime_s,
            load_1m: self.load_1m,
            timestamp_ms: self.timestamp_ms,
            alert: alert_level(self.alert),
            message: self.message.clone(),
        }
    }
}

pub use crate::capabilities::telemetry::{TelemetryMap, TelemetryValue};

/// Everything the scheduler has learnt, by producing plugin.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// Sensor readings by plugin name, in the order the plugin returned them.
    pub sensors: BTreeMap<String, Vec<SensorReading>>,
    pub system: Option<SystemReading>,
    /// Values plugins published with `telemetry.publish`, by plugin and name.
    pub telemetry: TelemetryMap,
    /// Unix ms of the newest reading.
    pub last_update_ms: u64,
    /// Bumped on every change, so the dashboard knows when to re-render.
    pub generation: u64,
}

impl Readings {
    /// All sensor readings, DHT22s first, in plugin-name order.
    pub fn all(&self) -> Vec<&SensorReading> {
        let mut all: Vec<&SensorReading> = self.sensors.values().flatten().collect();
        all.sort_by_key(|r| r.is_bme680());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bme680(iaq_score: u16) -> Bme680Reading {
        Bme680Reading {
            sensor_id: "bme680-i2c-0x77".into(),
            temperature: 22.0,
            humidity: 40.0,
            pressure: 1013.0,
            gas_resistance: 0.0,
            iaq_score,
            timestamp_ms: 1,
            alert: AlertLevel::Ok,
            message: String::new(),
        }
    }

    /// A plugin's "no score" (no valid gas reading) is published as no
    /// score, never as a number: /api, metrics, MQTT and history skip it.
    #[test]
    fn an_iaq_score_above_500_is_published_as_none() {
        for (sent, published) in [(0, Some(0)), (500, Some(500)), (501, None), (NO_IAQ, None)] {
            let reading = SensorReading::from_bme680(bme680(sent), "bme680");
            assert_eq!(reading.iaq_score, published, "plugin sent {sent}");
        }
        let none = SensorReading::from_bme680(bme680(NO_IAQ), "bme680");
        let json = serde_json::to_string(&none).unwrap();
        assert!(!json.contains("iaq_score"), "{json}");
        assert_eq!(
            none.to_bme680().iaq_score,
            NO_IAQ,
            "the dashboard sees no score too"
        );
    }
}
