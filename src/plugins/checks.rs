//! What a plugin's readings must be before the host takes them: ids it
//! owns (see `config::ownership`), times near the host's clock, well-formed
//! fields, and a bounded number of distinct ids. A poll that breaks a rule
//! is refused whole, as a failed call with the reason; nothing of it
//! reaches `/api`, the history, `/metrics` or MQTT.

use std::collections::BTreeSet;

use crate::config::ownership::{valid_id, Owned};
pub use crate::readings::MAX_FIELDS;
use crate::readings::{SensorReading, RESERVED_KEYS};

/// Distinct sensor ids one plugin version may ever report: a plugin
/// inventing ids cannot churn `/api`, the history or Home Assistant.
pub const MAX_SENSOR_IDS: usize = 16;
/// How far ahead of the host's clock a reading's time may be.
pub const MAX_AHEAD_MS: u64 = 60_000;
/// How far behind the host's clock a reading's time may be (a plugin may
/// show its last good reading, with its time, for a while).
pub const MAX_BEHIND_MS: u64 = 24 * 3_600_000;
/// Longest unit.
pub const MAX_UNIT_CHARS: usize = 16;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks one poll's `readings` of a plugin that owns `owned`, at
/// `now_ms`; `seen` holds the ids this plugin version reported before and
/// gets this poll's. Returns why the poll is refused.
pub fn check_readings(
    readings: &[SensorReading],
    owned: &Owned,
    now_ms: u64,
    seen: &mut BTreeSet<String>,
) -> Result<(), String> {
    let mut ids = BTreeSet::new();
    for r in readings {
        let id = &r.sensor_id;
        if !valid_id(id) {
            return Err(format!(
                "sensor id `{}` is not allowed: use 1–64 letters, digits, `_`, `-`, `.` or `:`",
                id.escape_debug()
            ));
        }
        if !owned.owns(id) {
            return Err(format!(
                "sensor id `{id}` is not this plugin's: it may report {} (more with \
                 grants.sensor_ids in its config)",
                owned.describe()
            ));
        }
        if !ids.insert(id.as_str()) {
            return Err(format!("sensor id `{id}` appears twice in one poll"));
        }
        if r.timestamp_ms > now_ms.saturating_add(MAX_AHEAD_MS)
            || r.timestamp_ms < now_ms.saturating_sub(MAX_BEHIND_MS)
        {
            return Err(format!(
                "reading `{id}` has timestamp_ms {}, too far from the host's clock ({now_ms}): \
                 at most {} s ahead and {} h behind (use get_timestamp_ms())",
                r.timestamp_ms,
                MAX_AHEAD_MS / 1000,
                MAX_BEHIND_MS / 3_600_000
            ));
        }
        if r.fields.is_empty() || r.fields.len() > MAX_FIELDS {
            return Err(format!(
                "reading `{id}` has {} fields: a reading has 1–{MAX_FIELDS}",
                r.fields.len()
            ));
        }
        let mut names = BTreeSet::new();
        for f in &r.fields {
            if !valid_name(&f.name) || RESERVED_KEYS.contains(&f.name.as_str()) {
                return Err(format!(
                    "reading `{id}`: field name `{}` is not allowed: use 1–32 of a-z, 0-9 and _, \
                     not one of {}",
                    f.name.escape_debug(),
                    RESERVED_KEYS.join(", ")
                ));
            }
            if !names.insert(f.name.as_str()) {
                return Err(format!("reading `{id}`: field `{}` appears twice", f.name));
            }
            if !f.value.is_finite() {
                return Err(format!(
                    "reading `{id}`: field `{}` is {}, not a finite number",
                    f.name, f.value
                ));
            }
            if f.unit.chars().count() > MAX_UNIT_CHARS || f.unit.chars().any(char::is_control) {
                return Err(format!(
                    "reading `{id}`: the unit of `{}` must be at most {MAX_UNIT_CHARS} printable \
                     characters",
                    f.name
                ));
            }
            if let Some(class) = &f.device_class {
                if !valid_name(class) {
                    return Err(format!(
                        "reading `{id}`: device class `{}` of `{}` is not one (a Home Assistant \
                         sensor device class such as temperature, humidity, pressure, aqi)",
                        class.escape_debug(),
                        f.name
                    ));
                }
            }
        }
    }
    let new: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !seen.contains(*id))
        .collect();
    if seen.len() + new.len() > MAX_SENSOR_IDS {
        return Err(format!(
            "more than {MAX_SENSOR_IDS} different sensor ids from one plugin (new: {}): report \
             the same sensors every poll",
            new.join(", ")
        ));
    }
    seen.extend(new.into_iter().map(str::to_string));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ownership, Config};
    use crate::readings::{Field, Origin};

    const NOW: u64 = 1_800_000_000_000;

    fn owned(grants: &str) -> Owned {
        let c = Config::parse(
            &format!("[host]\n[plugins.dew]\nkind = \"sensor\"\n[plugins.dew.grants]\n{grants}\n"),
            std::path::Path::new("host.toml"),
        )
        .unwrap();
        ownership::owned(&c, "dew")
    }

    fn reading(id: &str, fields: &[(&str, f64, &str)]) -> SensorReading {
        SensorReading {
            sensor_id: id.into(),
            fields: fields
                .iter()
                .map(|(n, v, u)| Field {
                    name: n.to_string(),
                    value: *v,
                    unit: u.to_string(),
                    device_class: None,
                })
                .collect(),
            timestamp_ms: NOW,
            alert: "ok",
            message: String::new(),
            plugin: "dew".into(),
            origin: Origin::Generic,
        }
    }

    fn check(r: SensorReading) -> Result<(), String> {
        check_readings(&[r], &owned("dht22_pins = [4]"), NOW, &mut BTreeSet::new())
    }

    #[test]
    fn good_readings_pass() {
        assert_eq!(check(reading("dew", &[("dew_point", 9.5, "°C")])), Ok(()));
        assert_eq!(check(reading("dew-east", &[("x", 1.0, "")])), Ok(()));
        assert_eq!(check(reading("dht22-gpio-4", &[("x", 1.0, "")])), Ok(()));
    }

    #[test]
    fn each_rule_refuses_with_its_reason() {
        let t = |ts: u64| {
            let mut r = reading("dew", &[("x", 1.0, "")]);
            r.timestamp_ms = ts;
            r
        };
        let mut dup = reading("dew", &[("x", 1.0, ""), ("x", 2.0, "")]);
        dup.fields[1].name = "x".into();
        let mut class = reading("dew", &[("x", 1.0, "")]);
        class.fields[0].device_class = Some("Temperature!".into());
        let many: Vec<(String, f64, &str)> = (0..17).map(|i| (format!("f{i}"), 1.0, "")).collect();
        let many: Vec<(&str, f64, &str)> =
            many.iter().map(|(n, v, u)| (n.as_str(), *v, *u)).collect();
        for (r, words) in [
            (
                reading("dht22-gpio-5", &[("x", 1.0, "")]),
                "is not this plugin's",
            ),
            (
                reading("other", &[("x", 1.0, "")]),
                "may report `dew`, `dew-…`, `dht22-gpio-4`",
            ),
            (reading("a b", &[("x", 1.0, "")]), "is not allowed"),
            (t(u64::MAX), "too far from the host's clock"),
            (t(NOW + MAX_AHEAD_MS + 1), "too far"),
            (t(NOW - MAX_BEHIND_MS - 1), "too far"),
            (t(0), "too far"),
            (reading("dew", &[]), "has 0 fields"),
            (reading("dew", &many), "has 17 fields"),
            (reading("dew", &[("Temp", 1.0, "")]), "field name `Temp`"),
            (
                reading("dew", &[("plugin", 1.0, "")]),
                "field name `plugin`",
            ),
            (dup, "appears twice"),
            (
                reading("dew", &[("x", f64::NAN, "")]),
                "not a finite number",
            ),
            (
                reading("dew", &[("x", f64::INFINITY, "")]),
                "not a finite number",
            ),
            (
                reading("dew", &[("x", 1.0, "a very long unit name")]),
                "at most 16",
            ),
            (reading("dew", &[("x", 1.0, "°C\r")]), "printable"),
            (class, "device class"),
        ] {
            let err = check(r.clone()).unwrap_err();
            assert!(err.contains(words), "{r:?}: {err}");
        }
        let twice = [
            reading("dew", &[("x", 1.0, "")]),
            reading("dew", &[("y", 1.0, "")]),
        ];
        let err = check_readings(&twice, &owned(""), NOW, &mut BTreeSet::new()).unwrap_err();
        assert!(err.contains("twice in one poll"), "{err}");
    }

    #[test]
    fn a_plugin_cannot_invent_ids_without_end() {
        let o = owned("");
        let mut seen = BTreeSet::new();
        for i in 0..MAX_SENSOR_IDS {
            let r = reading(&format!("dew-{i}"), &[("x", 1.0, "")]);
            assert_eq!(check_readings(&[r], &o, NOW, &mut seen), Ok(()));
        }
        // The same ones again are fine; one more is not.
        let again = reading("dew-0", &[("x", 2.0, "")]);
        assert_eq!(check_readings(&[again], &o, NOW, &mut seen), Ok(()));
        let more = reading("dew-new", &[("x", 1.0, "")]);
        let err = check_readings(&[more], &o, NOW, &mut seen).unwrap_err();
        assert!(err.contains("more than 16 different sensor ids"), "{err}");
        assert!(err.contains("dew-new"), "{err}");
    }
}
