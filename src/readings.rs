//! Readings: what sensor plugins report, checked and in the shape `/api`
//! serves. One model for every sensor: a reading is a sensor id, named
//! fields with units, a time, an alert level and a message. The DHT22 and
//! BME680 entry points (the seed's) become readings with the seed's fields;
//! a `sensor` plugin reports them directly.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::contract::types::{AlertLevel, Bme680Reading, Dht22Reading, PiStats, Reading};

/// Fields one reading may have (and so telemetry names one plugin may
/// publish: they are the fields of its own reading).
pub const MAX_FIELDS: usize = 16;

/// One value of a reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub value: f64,
    /// As shown to people (`°C`); empty for none.
    pub unit: String,
    /// Home Assistant's sensor device class, if any.
    pub device_class: Option<String>,
}

impl Field {
    fn of(name: &str, value: f64, unit: &str, device_class: Option<&str>) -> Field {
        Field {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            device_class: device_class.map(str::to_string),
        }
    }
}

/// A value from an `f32` the way it prints (21.3, not 21.299999237060547):
/// what the plugin meant, and what the seed's `/api` showed.
pub fn from_f32(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// The highest IAQ score; a plugin reports anything above for "no score".
pub const IAQ_MAX: u16 = 500;
/// What a plugin's `iaq-score` carries when there is no score (see
/// `plugins/common/iaq.py`, `NO_SCORE`).
pub const NO_IAQ: u16 = u16::MAX;

/// Which entry point a reading came from; the dashboard's typed lists
/// (the seed's) hold only DHT22 and BME680 ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Dht22,
    Bme680,
    /// A `sensor` plugin, or the values a plugin published.
    Generic,
}

/// One reading of any sensor. In `/api` its fields are keys of their own
/// (`"temperature": 21.5`), so the DHT22 and BME680 readings keep the
/// seed's shape, and every other sensor looks the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorReading {
    pub sensor_id: String,
    pub fields: Vec<Field>,
    pub timestamp_ms: u64,
    /// ok, warn or alarm
    pub alert: &'static str,
    pub message: String,
    /// The plugin that produced it.
    pub plugin: String,
    pub origin: Origin,
}

/// Keys of a reading in `/api` that a field may not take.
pub const RESERVED_KEYS: &[&str] = &[
    "sensor_id",
    "timestamp_ms",
    "alert",
    "message",
    "plugin",
    "units",
    "kind",
];

impl Origin {
    /// What `/api` calls it: the entry point the reading came from.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Dht22 => "dht22",
            Origin::Bme680 => "bme680",
            Origin::Generic => "sensor",
        }
    }
}

impl serde::Serialize for SensorReading {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("sensor_id", &self.sensor_id)?;
        for f in &self.fields {
            map.serialize_entry(&f.name, &Number(f.value))?;
        }
        map.serialize_entry("timestamp_ms", &self.timestamp_ms)?;
        map.serialize_entry("alert", self.alert)?;
        map.serialize_entry("message", &self.message)?;
        map.serialize_entry("plugin", &self.plugin)?;
        map.serialize_entry("kind", self.origin.name())?;
        let units: BTreeMap<&str, &str> = self
            .fields
            .iter()
            .filter(|f| !f.unit.is_empty())
            .map(|f| (f.name.as_str(), f.unit.as_str()))
            .collect();
        map.serialize_entry("units", &units)?;
        map.end()
    }
}

/// A field's value in JSON: whole numbers as integers (`"iaq_score": 35`,
/// as the seed has it), the rest as they are; `null` when not finite.
pub fn json_number(x: f64) -> serde_json::Value {
    serde_json::to_value(Number(x)).unwrap_or(serde_json::Value::Null)
}

struct Number(f64);

impl serde::Serialize for Number {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.0.is_finite() {
            s.serialize_none()
        } else if self.0.fract() == 0.0 && self.0.abs() < 9.0e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

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
            fields: vec![
                Field::of(
                    "temperature",
                    from_f32(r.temperature),
                    "°C",
                    Some("temperature"),
                ),
                Field::of("humidity", from_f32(r.humidity), "%", Some("humidity")),
            ],
            timestamp_ms: r.timestamp_ms,
            alert: alert_name(r.alert),
            message: r.message,
            plugin: plugin.to_string(),
            origin: Origin::Dht22,
        }
    }

    pub fn from_bme680(r: Bme680Reading, plugin: &str) -> SensorReading {
        let mut fields = vec![
            Field::of(
                "temperature",
                from_f32(r.temperature),
                "°C",
                Some("temperature"),
            ),
            Field::of("humidity", from_f32(r.humidity), "%", Some("humidity")),
            Field::of(
                "pressure",
                from_f32(r.pressure),
                "hPa",
                Some("atmospheric_pressure"),
            ),
            Field::of("gas_resistance", from_f32(r.gas_resistance), "kΩ", None),
        ];
        // Above 500 is the plugin saying "no score" (no valid gas reading):
        // published as no field, never as a number.
        if r.iaq_score <= IAQ_MAX {
            fields.push(Field::of(
                "iaq_score",
                f64::from(r.iaq_score),
                "",
                Some("aqi"),
            ));
        }
        SensorReading {
            sensor_id: r.sensor_id,
            fields,
            timestamp_ms: r.timestamp_ms,
            alert: alert_name(r.alert),
            message: r.message,
            plugin: plugin.to_string(),
            origin: Origin::Bme680,
        }
    }

    /// A reading a `sensor` plugin returned (checked already).
    pub fn from_generic(r: Reading, plugin: &str) -> SensorReading {
        SensorReading {
            sensor_id: r.sensor_id,
            fields: r
                .fields
                .into_iter()
                .map(|f| Field {
                    name: f.name,
                    value: f.value,
                    unit: f.unit,
                    device_class: f.device_class,
                })
                .collect(),
            timestamp_ms: r.timestamp_ms,
            alert: alert_name(r.alert),
            message: r.message,
            plugin: plugin.to_string(),
            origin: Origin::Generic,
        }
    }

    /// The value of field `name`, if the reading has it.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.fields.iter().find(|f| f.name == name).map(|f| f.value)
    }

    fn value_f32(&self, name: &str) -> f32 {
        self.value(name).unwrap_or_default() as f32
    }

    /// As the contract's generic record (for dashboards and automations).
    pub fn to_generic(&self) -> Reading {
        Reading {
            sensor_id: self.sensor_id.clone(),
            fields: self
                .fields
                .iter()
                .map(|f| crate::contract::types::Field {
                    name: f.name.clone(),
                    value: f.value,
                    unit: f.unit.clone(),
                    device_class: f.device_class.clone(),
                })
                .collect(),
            timestamp_ms: self.timestamp_ms,
            alert: alert_level(self.alert),
            message: self.message.clone(),
        }
    }

    pub fn to_dht22(&self) -> Dht22Reading {
        Dht22Reading {
            sensor_id: self.sensor_id.clone(),
            temperature: self.value_f32("temperature"),
            humidity: self.value_f32("humidity"),
            timestamp_ms: self.timestamp_ms,
            alert: alert_level(self.alert),
            message: self.message.clone(),
        }
    }

    pub fn to_bme680(&self) -> Bme680Reading {
        Bme680Reading {
            sensor_id: self.sensor_id.clone(),
            temperature: self.value_f32("temperature"),
            humidity: self.value_f32("humidity"),
            pressure: self.value_f32("pressure"),
            gas_resistance: self.value_f32("gas_resistance"),
            iaq_score: self.value("iaq_score").map_or(NO_IAQ, |v| v as u16),
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

/// One value a plugin published with `telemetry.publish`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetryValue {
    pub value: f64,
    pub unit: String,
    pub timestamp_ms: u64,
}

/// Plugin name → value name → latest value.
pub type TelemetryMap = BTreeMap<String, BTreeMap<String, TelemetryValue>>;

impl SensorReading {
    /// The values plugin `plugin` published with `telemetry.publish`, as
    /// its own reading: sensor id = the plugin's name, one field per value.
    pub fn published(plugin: &str, values: &BTreeMap<String, TelemetryValue>) -> SensorReading {
        SensorReading {
            sensor_id: plugin.to_string(),
            fields: values
                .iter()
                .map(|(name, v)| Field::of(name, v.value, &v.unit, None))
                .collect(),
            timestamp_ms: values.values().map(|v| v.timestamp_ms).max().unwrap_or(0),
            alert: "ok",
            message: String::new(),
            plugin: plugin.to_string(),
            origin: Origin::Generic,
        }
    }
}

/// Everything the scheduler has learnt, by producing plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    /// Sensor readings by plugin name, in the order the plugin returned them.
    pub sensors: BTreeMap<String, Vec<SensorReading>>,
    pub system: Option<SystemReading>,
    /// The values each plugin published with `telemetry.publish`, as one
    /// reading per plugin.
    pub published: BTreeMap<String, SensorReading>,
    /// Unix ms of the newest reading.
    pub last_update_ms: u64,
    /// Bumped on every change, so the dashboard knows when to re-render.
    pub generation: u64,
}

impl Readings {
    /// All sensor readings: DHT22s, then BME680s, then the others, each
    /// in plugin-name order. A plugin's published values are its reading
    /// with its own name as sensor id: added as fields to the reading it
    /// reports under that id, if it reports one, else a reading of their own.
    pub fn all(&self) -> Vec<Cow<'_, SensorReading>> {
        let mut all: Vec<Cow<'_, SensorReading>> = self
            .sensors
            .keys()
            .chain(
                self.published
                    .keys()
                    .filter(|p| !self.sensors.contains_key(*p)),
            )
            .flat_map(|plugin| self.of_plugin(plugin))
            .collect();
        all.sort_by_key(|r| match r.origin {
            Origin::Dht22 => 0,
            Origin::Bme680 => 1,
            Origin::Generic => 2,
        });
        all
    }

    /// Everything plugin `plugin` reports: its readings and its published
    /// values (see [`Readings::all`]).
    pub fn of_plugin(&self, plugin: &str) -> Vec<Cow<'_, SensorReading>> {
        let polled = self
            .sensors
            .get(plugin)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let published = self.published.get(plugin);
        let mut out: Vec<Cow<'_, SensorReading>> = polled
            .iter()
            .map(|r| match published {
                Some(p) if r.sensor_id == plugin => {
                    let mut merged = r.clone();
                    for f in &p.fields {
                        if !merged.fields.iter().any(|g| g.name == f.name) {
                            merged.fields.push(f.clone());
                        }
                    }
                    Cow::Owned(merged)
                }
                _ => Cow::Borrowed(r),
            })
            .collect();
        if let Some(p) = published {
            if !polled.iter().any(|r| r.sensor_id == plugin) {
                out.push(Cow::Borrowed(p));
            }
        }
        out
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
        for (sent, published) in [
            (0, Some(0.0)),
            (500, Some(500.0)),
            (501, None),
            (NO_IAQ, None),
        ] {
            let reading = SensorReading::from_bme680(bme680(sent), "bme680");
            assert_eq!(reading.value("iaq_score"), published, "plugin sent {sent}");
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

    #[test]
    fn a_reading_in_api_has_its_fields_as_keys_whole_numbers_as_integers() {
        let r = SensorReading::from_bme680(bme680(35), "bme680");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["temperature"], 22);
        assert_eq!(v["iaq_score"], 35);
        assert_eq!(v["kind"], "bme680");
        assert_eq!(v["units"]["pressure"], "hPa");
        assert!(v["units"].get("iaq_score").is_none(), "no unit, no entry");
        let mut dht = SensorReading::from_dht22(
            crate::contract::types::Dht22Reading {
                sensor_id: "d".into(),
                temperature: 21.3,
                humidity: 40.9,
                timestamp_ms: 1,
                alert: AlertLevel::Warn,
                message: "m".into(),
            },
            "dht22",
        );
        let v = serde_json::to_value(&dht).unwrap();
        assert_eq!(
            v["temperature"], 21.3,
            "the f32 as it prints, not 21.29999…"
        );
        assert_eq!(v["alert"], "warn");
        dht.fields[0].value = f64::NAN;
        assert_eq!(
            serde_json::to_value(&dht).unwrap()["temperature"],
            serde_json::Value::Null
        );
    }
}
