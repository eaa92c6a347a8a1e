//! Which sensor ids a plugin may report: readings are owned, so no plugin
//! can pass its values off as another's (a forged `dht22-gpio-4` in `/api`,
//! the history, `/metrics` and Home Assistant).
//!
//! A plugin owns:
//! * its own name, and every id that starts with its name and a `-`
//!   (`greenhouse`, `greenhouse-east`);
//! * the id of every sensor device it alone is granted: `dht22-gpio-<pin>`
//!   for a pin in `dht22_pins`, `bme680-i2c-0x<addr>` for an address in
//!   `i2c_addresses` (a device granted to two plugins is no one's by this
//!   rule: the config must say whose it is with `sensor_ids`);
//! * the ids listed in its grants' `sensor_ids`.
//!
//! The name's domain yields to another plugin's device: a plugin called
//! `dht22` does not own `dht22-gpio-5` when another plugin is the one
//! granted the DHT22 on pin 5 (so a second DHT22 plugin can be added next to
//! it). The config is refused when an id would have two owners otherwise,
//! e.g. a `sensor_ids` claim inside another plugin's name.

use super::Config;

/// The sensor ids one plugin owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    name: String,
    /// Ids of devices granted to this plugin alone.
    devices: Vec<String>,
    /// Ids listed in `grants.sensor_ids`.
    claimed: Vec<String>,
    /// Ids of devices other enabled plugins own: not this plugin's even
    /// where they fall in its name's domain.
    others: Vec<String>,
}

/// The id of the DHT22 on `pin`.
pub fn dht22_id(pin: u8) -> String {
    format!("dht22-gpio-{pin}")
}

/// The id of the BME680 at I2C address `addr`.
pub fn bme680_id(addr: u8) -> String {
    format!("bme680-i2c-{addr:#04x}")
}

/// Whether `id` is a well-formed sensor id: 1–64 of letters, digits, `_`,
/// `-`, `.`, `:` (it becomes part of MQTT topics, Prometheus labels and
/// Home Assistant ids).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

impl Owned {
    pub fn owns(&self, id: &str) -> bool {
        (in_domain(&self.name, id) && !self.others.iter().any(|o| o == id))
            || self.devices.iter().any(|d| d == id)
            || self.claimed.iter().any(|c| c == id)
    }

    /// What the plugin may report, for an error message.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("`{}`", self.name), format!("`{}-…`", self.name)];
        parts.extend(self.devices.iter().map(|d| format!("`{d}`")));
        parts.extend(self.claimed.iter().map(|c| format!("`{c}`")));
        parts.join(", ")
    }
}

/// Whether `id` is `name` or starts with `name-`.
fn in_domain(name: &str, id: &str) -> bool {
    id == name
        || id
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// The ids plugin `name` owns under `config`.
pub fn owned(config: &Config, name: &str) -> Owned {
    let (devices, claimed) = explicit(config, name);
    let others = config
        .plugins
        .iter()
        .filter(|(other, p)| *other != name && p.enabled)
        .flat_map(|(other, _)| explicit(config, other).0)
        .collect();
    Owned {
        name: name.to_string(),
        devices,
        claimed,
        others,
    }
}

/// The ids plugin `name` owns explicitly: (its devices', its claims).
fn explicit(config: &Config, name: &str) -> (Vec<String>, Vec<String>) {
    let enabled = |other: &str| config.plugins.get(other).is_some_and(|p| p.enabled);
    let alone = |granted: &dyn Fn(&super::Grants) -> bool| {
        !config
            .plugins
            .iter()
            .any(|(other, p)| other != name && enabled(other) && granted(&p.grants))
    };
    let Some(plugin) = config.plugins.get(name) else {
        return (Vec::new(), Vec::new());
    };
    let mut devices = Vec::new();
    for &pin in &plugin.grants.dht22_pins {
        if alone(&|g| g.dht22_pins.contains(&pin)) {
            devices.push(dht22_id(pin));
        }
    }
    for &addr in &plugin.grants.i2c_addresses {
        if alone(&|g| g.i2c_addresses.contains(&addr)) {
            devices.push(bme680_id(addr));
        }
    }
    (devices, plugin.grants.sensor_ids.clone())
}

/// Refuses a config in which an id has two owners, or a claimed id is
/// malformed. Returns the dotted key at fault and why.
pub fn check(config: &Config) -> Result<(), (String, String)> {
    let names: Vec<&String> = config.plugins.keys().collect();
    for name in &names {
        let plugin = &config.plugins[*name];
        let key = format!("plugins.{name}.grants.sensor_ids");
        for id in &plugin.grants.sensor_ids {
            if !valid_id(id) {
                return Err((
                    key,
                    format!(
                        "`{id}` is not a sensor id: use 1–64 letters, digits, `_`, `-`, `.` or `:`"
                    ),
                ));
            }
        }
        if !plugin.enabled {
            continue;
        }
        let (devices, claimed) = explicit(config, name);
        for other in &names {
            if other == name || !config.plugins[*other].enabled {
                continue;
            }
            let theirs = owned(config, other);
            let (their_devices, their_claims) = explicit(config, other);
            // My devices are mine even in their name's domain (it yields),
            // not when they also own or claim that device; my claims must be
            // nothing of theirs.
            let taken = devices
                .iter()
                .find(|id| their_devices.contains(id) || their_claims.contains(id))
                .or_else(|| claimed.iter().find(|id| theirs.owns(id)));
            if let Some(id) = taken {
                return Err((
                    key,
                    format!(
                        "sensor id `{id}` of plugin `{name}` would also be plugin `{other}`'s \
                         (it owns {}): give every sensor id one owner",
                        theirs.describe()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<Config, String> {
        Config::parse(text, std::path::Path::new("host.toml")).map_err(|e| e.to_string())
    }

    const BASE: &str = "[host]\n";

    fn plugin(name: &str, grants: &str) -> String {
        format!("[plugins.{name}]\nkind = \"dht22\"\n[plugins.{name}.grants]\n{grants}\n")
    }

    #[test]
    fn what_a_plugin_owns() {
        let c = config(&format!(
            "{BASE}{}{}",
            plugin("air", "i2c_addresses = [0x77]\nsensor_ids = [\"hall\"]"),
            plugin("temp", "dht22_pins = [4]")
        ))
        .unwrap();
        let air = owned(&c, "air");
        for (id, yes) in [
            ("air", true),
            ("air-east", true),
            ("airy", false),
            ("bme680-i2c-0x77", true),
            ("hall", true),
            ("dht22-gpio-4", false),
            ("temp", false),
        ] {
            assert_eq!(air.owns(id), yes, "air owns {id}: {yes}");
        }
        assert!(owned(&c, "temp").owns("dht22-gpio-4"));
        assert!(air.describe().contains("`bme680-i2c-0x77`"));
    }

    #[test]
    fn a_device_granted_to_two_plugins_is_owned_by_claim_only() {
        let c = config(&format!(
            "{BASE}{}{}",
            plugin("a", "dht22_pins = [4]\nsensor_ids = [\"dht22-gpio-4\"]"),
            plugin("b", "dht22_pins = [4]")
        ))
        .unwrap();
        assert!(owned(&c, "a").owns("dht22-gpio-4"));
        assert!(!owned(&c, "b").owns("dht22-gpio-4"));
    }

    #[test]
    fn a_device_in_another_plugins_name_domain_is_the_device_owners() {
        // A second DHT22 plugin next to one called `dht22`: pin 5's id falls
        // in `dht22-…`, but it is the plugin granted pin 5 that owns it.
        let c = config(&format!(
            "{BASE}{}{}",
            plugin("dht22", "dht22_pins = [4]"),
            plugin("garage", "dht22_pins = [5]")
        ))
        .unwrap();
        let (dht22, garage) = (owned(&c, "dht22"), owned(&c, "garage"));
        assert!(garage.owns("dht22-gpio-5"));
        assert!(!dht22.owns("dht22-gpio-5"));
        assert!(dht22.owns("dht22-gpio-4") && dht22.owns("dht22-porch"));
        assert!(!garage.owns("dht22-gpio-4"));
    }

    #[test]
    fn an_id_with_two_owners_is_refused() {
        for (a, b, words) in [
            (
                "sensor_ids = [\"hall\"]",
                "sensor_ids = [\"hall\"]",
                "sensor id `hall`",
            ),
            (
                "sensor_ids = [\"b-east\"]",
                "",
                "sensor id `b-east` of plugin `a` would also be plugin `b`'s",
            ),
            (
                "dht22_pins = [4]",
                "sensor_ids = [\"dht22-gpio-4\"]",
                "dht22-gpio-4",
            ),
        ] {
            let err = config(&format!("{BASE}{}{}", plugin("a", a), plugin("b", b))).unwrap_err();
            assert!(err.contains(words), "{a} / {b}: {err}");
            assert!(err.contains("sensor_ids"), "{err}");
        }
        let bad = config(&format!("{BASE}{}", plugin("a", "sensor_ids = [\"a b\"]"))).unwrap_err();
        assert!(bad.contains("not a sensor id"), "{bad}");
    }
}
