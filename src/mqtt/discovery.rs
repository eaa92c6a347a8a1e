//! Home Assistant MQTT discovery: which entities the published readings
//! make, their config payloads, and the state documents their
//! `value_template`s read. Pure, so it is tested without a broker.
//!
//! Every reading becomes a key in one JSON state document on
//! `<prefix>/state`; each entity picks its key with
//! `{{ value_json['key'] }}`. Plugin health is a second document on
//! `<prefix>/plugins`, read by one diagnostic sensor per plugin.

use serde_json::{json, Map, Value};

use crate::plugins::PluginStatus;
use crate::readings::Origin;
use crate::scheduler::Readings;

/// The topics and names of one host, from `[mqtt]`.
#[derive(Debug, Clone)]
pub struct Naming {
    pub prefix: String,
    pub discovery_prefix: String,
    pub device_id: String,
    pub device_name: String,
    /// `sim` or `pi`, shown as the model.
    pub hardware: String,
}

impl Naming {
    pub fn availability(&self) -> String {
        format!("{}/availability", self.prefix)
    }
    pub fn state(&self) -> String {
        format!("{}/state", self.prefix)
    }
    pub fn plugins(&self) -> String {
        format!("{}/plugins", self.prefix)
    }
    /// Where the buzzer buttons' presses arrive (`beep` or `long`).
    pub fn buzzer_command(&self) -> String {
        format!("{}/buzzer/set", self.prefix)
    }

    fn device(&self) -> Value {
        json!({
            "identifiers": [format!("wasi-python-host-{}", self.device_id)],
            "name": self.device_name,
            "manufacturer": "wasi-python-host",
            "model": format!("wasi-python-host ({})", self.hardware),
            "sw_version": env!("CARGO_PKG_VERSION"),
        })
    }

    fn config_topic(&self, component: &str, object: &str) -> String {
        format!(
            "{}/{component}/{}/{object}/config",
            self.discovery_prefix, self.device_id
        )
    }
}

/// One sensor entity: what HA needs to show a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// The key in the state document, also the object id.
    pub key: String,
    pub name: String,
    pub device_class: Option<String>,
    pub unit: Option<String>,
    pub state_class: &'static str,
    pub icon: Option<&'static str>,
    /// The plugin whose readings make it; `None` for the host's own.
    pub owner: Option<String>,
}

/// `[a-z0-9_]` only, so any sensor id is safe in a topic and a unique_id.
pub fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(48);
    if out.is_empty() {
        out.push('x');
    }
    out
}

/// A float as HA should see it: f32's shortest form (21.3, not 21.2999…).
fn num(x: f32) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    format!("{x}")
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn measurement(
    key: String,
    name: String,
    device_class: Option<&str>,
    unit: Option<&str>,
    owner: Option<&str>,
) -> Entity {
    Entity {
        key,
        name,
        device_class: device_class.map(str::to_string),
        unit: unit.map(str::to_string),
        state_class: "measurement",
        icon: None,
        owner: owner.map(str::to_string),
    }
}

/// The entities and the state document for `readings`.
pub fn sensors(readings: &Readings) -> (Vec<Entity>, Map<String, Value>) {
    let mut entities = Vec::new();
    let mut state = Map::new();
    for r in readings.all() {
        let id = slug(&r.sensor_id);
        for f in &r.fields {
            // The BME680's IAQ keeps the key it had before generic readings,
            // so Home Assistant keeps its entity (and history).
            let (what, label) = match (r.origin, f.name.as_str()) {
                (Origin::Bme680, "iaq_score") => ("iaq".to_string(), "IAQ".to_string()),
                _ => (slug(&f.name), f.name.replace('_', " ")),
            };
            let key = format!("{id}_{what}");
            entities.push(measurement(
                key.clone(),
                format!("{} {label}", r.sensor_id),
                f.device_class.as_deref(),
                (!f.unit.is_empty()).then_some(f.unit.as_str()),
                Some(&r.plugin),
            ));
            state.insert(key, crate::readings::json_number(f.value));
        }
    }
    if let Some(s) = &readings.system {
        entities.push(measurement(
            "cpu_temperature".into(),
            "CPU temperature".into(),
            Some("temperature"),
            Some("°C"),
            None,
        ));
        state.insert("cpu_temperature".into(), num(s.cpu_temp_c));
        entities.push(measurement(
            "ram_used".into(),
            "RAM used".into(),
            Some("data_size"),
            Some("MB"),
            None,
        ));
        state.insert("ram_used".into(), json!(s.ram_used_mb));
        entities.push(Entity {
            key: "uptime".into(),
            name: "Uptime".into(),
            device_class: Some("duration".into()),
            unit: Some("s".into()),
            state_class: "total_increasing",
            icon: None,
            owner: None,
        });
        state.insert("uptime".into(), json!(s.uptime_s));
    }
    (entities, state)
}

/// Discovery config for a sensor entity: `(topic, payload)`.
pub fn sensor_config(n: &Naming, e: &Entity) -> (String, Value) {
    let mut c = json!({
        "name": e.name,
        "unique_id": format!("{}_{}", n.device_id, e.key),
        "object_id": format!("{}_{}", n.device_id, e.key),
        "state_topic": n.state(),
        "value_template": format!("{{{{ value_json['{}'] }}}}", e.key),
        "state_class": e.state_class,
        "availability_topic": n.availability(),
        "device": n.device(),
    });
    if let Some(class) = &e.device_class {
        c["device_class"] = json!(class);
    }
    if let Some(unit) = &e.unit {
        c["unit_of_measurement"] = json!(unit);
    }
    if let Some(icon) = e.icon {
        c["icon"] = json!(icon);
    }
    (n.config_topic("sensor", &e.key), c)
}

/// A diagnostic sensor showing plugin `name`'s status.
pub fn plugin_config(n: &Naming, name: &str) -> (String, Value) {
    let key = format!("plugin_{}_status", slug(name));
    let c = json!({
        "name": format!("Plugin {name}"),
        "unique_id": format!("{}_{key}", n.device_id),
        "object_id": format!("{}_{key}", n.device_id),
        "state_topic": n.plugins(),
        "value_template": format!("{{{{ value_json['{}'] }}}}", name.replace(['\'', '\\'], "")),
        "entity_category": "diagnostic",
        "icon": "mdi:puzzle",
        "availability_topic": n.availability(),
        "device": n.device(),
    });
    (n.config_topic("sensor", &key), c)
}

/// Plugin name → status word, for `<prefix>/plugins`.
pub fn plugin_states(plugins: &[PluginStatus]) -> Map<String, Value> {
    plugins
        .iter()
        .map(|p| {
            let status = serde_json::to_value(p.status).unwrap_or(Value::Null);
            (p.name.clone(), status)
        })
        .collect()
}

/// The buzzer buttons: `beep` and `long` on the command topic.
pub fn button_configs(n: &Naming) -> Vec<(String, Value)> {
    [
        ("buzzer_beep", "Beep", "beep"),
        ("buzzer_long", "Long beep", "long"),
    ]
    .into_iter()
    .map(|(key, name, press)| {
        let c = json!({
            "name": name,
            "unique_id": format!("{}_{key}", n.device_id),
            "object_id": format!("{}_{key}", n.device_id),
            "command_topic": n.buzzer_command(),
            "payload_press": press,
            "icon": "mdi:bullhorn",
            "availability_topic": n.availability(),
            "device": n.device(),
        });
        (n.config_topic("button", key), c)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{SensorReading, SystemReading};

    fn naming() -> Naming {
        Naming {
            prefix: "wasi-python-host/pi".into(),
            discovery_prefix: "homeassistant".into(),
            device_id: "pi".into(),
            device_name: "Pi".into(),
            hardware: "sim".into(),
        }
    }

    #[test]
    fn a_bme680_reading_makes_five_entities_with_units() {
        let mut readings = Readings::default();
        readings.sensors.insert(
            "bme680".into(),
            vec![SensorReading::from_bme680(
                crate::contract::types::Bme680Reading {
                    sensor_id: "bme680-0x77".into(),
                    temperature: 21.3,
                    humidity: 40.0,
                    pressure: 1013.2,
                    gas_resistance: 120.5,
                    iaq_score: 42,
                    timestamp_ms: 1,
                    alert: crate::contract::types::AlertLevel::Ok,
                    message: String::new(),
                },
                "bme680",
            )],
        );
        readings.system = Some(SystemReading {
            cpu_temp_c: 50.0,
            ram_used_mb: 100,
            ram_total_mb: 512,
            uptime_s: 10,
            load_1m: 0.1,
            timestamp_ms: 1,
            alert: "ok",
            message: String::new(),
        });
        let (entities, state) = sensors(&readings);
        assert_eq!(entities.len(), 8);
        assert_eq!(state["bme680_0x77_temperature"], json!(21.3));
        let (topic, c) = sensor_config(&naming(), &entities[2]);
        assert_eq!(topic, "homeassistant/sensor/pi/bme680_0x77_pressure/config");
        assert_eq!(c["device_class"], "atmospheric_pressure");
        assert_eq!(c["unit_of_measurement"], "hPa");
        assert_eq!(c["unique_id"], "pi_bme680_0x77_pressure");
        assert_eq!(
            c["value_template"],
            "{{ value_json['bme680_0x77_pressure'] }}"
        );
        let uptime = entities.iter().find(|e| e.key == "uptime").unwrap();
        assert_eq!(uptime.state_class, "total_increasing");
        // The IAQ keeps its pre-generic key, so HA keeps the entity.
        assert_eq!(state["bme680_0x77_iaq"], json!(42));
    }

    #[test]
    fn any_sensor_makes_an_entity_per_field_with_its_class_and_unit() {
        let mut readings = Readings::default();
        let mut dew = SensorReading::published(
            "dew",
            &[(
                "dew_point".to_string(),
                crate::readings::TelemetryValue {
                    value: 9.25,
                    unit: "°C".into(),
                    timestamp_ms: 1,
                },
            )]
            .into_iter()
            .collect(),
        );
        dew.fields[0].device_class = Some("temperature".into());
        readings.sensors.insert("dew".into(), vec![dew]);
        let (entities, state) = sensors(&readings);
        assert_eq!(entities.len(), 1);
        assert_eq!(state["dew_dew_point"], json!(9.25));
        let (topic, c) = sensor_config(&naming(), &entities[0]);
        assert_eq!(topic, "homeassistant/sensor/pi/dew_dew_point/config");
        assert_eq!(c["device_class"], "temperature");
        assert_eq!(c["unit_of_measurement"], "°C");
        assert_eq!(c["name"], "dew dew point");
    }
}
