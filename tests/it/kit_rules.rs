//! The test kit refuses a sensor's poll where the host does, with the same
//! words: the same cases go through the host's rules
//! (`plugins::checks::check_readings` with `config::ownership`) and through
//! their port in plugins/testing/fakehost/_checks.py, and every verdict and
//! message must match. No host is started; the kit runs in the project's
//! .venv.

use std::path::Path;

use serde_json::json;
use wasi_python_host::config::{ownership, Config};
use wasi_python_host::plugins::checks;
use wasi_python_host::readings::{Field, Origin, SensorReading, RESERVED_KEYS};

use crate::support::kit_json;

const NOW: u64 = 1_800_000_000_000;

/// A field as a case writes it: (name, value as text, unit, device class).
type FieldSpec<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);
/// A reading as a case writes it: (sensor id, fields, timestamp).
type ReadingSpec<'a> = (&'a str, &'a [FieldSpec<'a>], u64);
type OwnedField = (String, String, String, Option<String>);
type OwnedReading = (String, Vec<OwnedField>, u64);

/// One case: the plugin `dew`'s grants (and other plugins' entries), and
/// the readings of one poll: (sensor id, [(name, value, unit, device
/// class)], timestamp). Values are text, so NaN and infinities travel.
struct Case {
    config: String,
    readings: Vec<OwnedReading>,
}

fn case(grants: &str, readings: &[ReadingSpec]) -> Case {
    case_with(grants, "", readings)
}

fn case_with(grants: &str, others: &str, readings: &[ReadingSpec]) -> Case {
    Case {
        config: format!(
            "[host]\n[plugins.dew]\nkind = \"sensor\"\n[plugins.dew.grants]\n{grants}\n{others}"
        ),
        readings: readings
            .iter()
            .map(|(id, fields, ts)| {
                (
                    id.to_string(),
                    fields
                        .iter()
                        .map(|(n, v, u, d)| {
                            (
                                n.to_string(),
                                v.to_string(),
                                u.to_string(),
                                d.map(str::to_string),
                            )
                        })
                        .collect(),
                    *ts,
                )
            })
            .collect(),
    }
}

fn cases() -> Vec<Case> {
    let x: &[FieldSpec] = &[("x", "1", "", None)];
    let many: Vec<String> = (0..17).map(|i| format!("f{i}")).collect();
    let many: Vec<FieldSpec> = many.iter().map(|n| (n.as_str(), "1", "", None)).collect();
    let ids: Vec<String> = (0..17).map(|i| format!("dew-{i}")).collect();
    let seventeen: Vec<ReadingSpec> = ids.iter().map(|id| (id.as_str(), x, NOW)).collect();
    let long_name = "x".repeat(33);
    let shared = "[plugins.dht22]\nkind = \"dht22\"\n[plugins.dht22.grants]\ndht22_pins = [4]\n";
    vec![
        case(
            "",
            &[(
                "dew",
                &[("dew_point", "9.5", "°C", Some("temperature"))],
                NOW,
            )],
        ),
        case("", &[("dew-east", x, NOW)]),
        case("dht22_pins = [4]", &[("dht22-gpio-4", x, NOW)]),
        case("dht22_pins = [4]", &[("dht22-gpio-5", x, NOW)]),
        case("i2c_addresses = [0x77]", &[("bme680-i2c-0x77", x, NOW)]),
        case("sensor_ids = [\"hall\"]", &[("hall", x, NOW)]),
        case("sensor_ids = [\"hall\"]", &[("kitchen", x, NOW)]),
        case_with("dht22_pins = [4]", shared, &[("dht22-gpio-4", x, NOW)]),
        case("", &[("a b", x, NOW)]),
        case("", &[("dew\n", x, NOW)]),
        case("", &[("dewé", x, NOW)]),
        case("", &[("", x, NOW)]),
        case("", &[("dew", x, NOW), ("dew", x, NOW)]),
        case("", &[("dew", x, NOW + 60_000)]),
        case("", &[("dew", x, NOW + 60_001)]),
        case("", &[("dew", x, NOW - 24 * 3_600_000)]),
        case("", &[("dew", x, NOW - 24 * 3_600_000 - 1)]),
        case("", &[("dew", x, 0)]),
        case("", &[("dew", &[], NOW)]),
        case("", &[("dew", &many, NOW)]),
        case("", &[("dew", &[("Temp", "1", "", None)], NOW)]),
        case("", &[("dew", &[("plugin", "1", "", None)], NOW)]),
        case("", &[("dew", &[("kind", "1", "", None)], NOW)]),
        case("", &[("dew", &[("units", "1", "", None)], NOW)]),
        case("", &[("dew", &[(&long_name, "1", "", None)], NOW)]),
        case("", &[("dew", &[("é", "1", "", None)], NOW)]),
        case(
            "",
            &[("dew", &[("x", "1", "", None), ("x", "2", "", None)], NOW)],
        ),
        case("", &[("dew", &[("x", "NaN", "", None)], NOW)]),
        case("", &[("dew", &[("x", "inf", "", None)], NOW)]),
        case("", &[("dew", &[("x", "-inf", "", None)], NOW)]),
        case("", &[("dew", &[("x", "1", "a very long unit", None)], NOW)]),
        case(
            "",
            &[("dew", &[("x", "1", "a very long unit!", None)], NOW)],
        ),
        case("", &[("dew", &[("x", "1", "éééééééééééééééé", None)], NOW)]),
        case("", &[("dew", &[("x", "1", "°C\r", None)], NOW)]),
        case("", &[("dew", &[("x", "1", "", Some("Temperature!"))], NOW)]),
        case("", &[("dew", &[("x", "1", "", Some(""))], NOW)]),
        case("", &seventeen),
    ]
}

/// The host's verdict on one case: None, or why it refuses the poll.
fn host_verdict(c: &Case) -> Option<String> {
    let config = Config::parse(&c.config, Path::new("host.toml"))
        .unwrap_or_else(|e| panic!("a case's config is valid: {e}\n{}", c.config));
    let owned = ownership::owned(&config, "dew");
    let readings: Vec<SensorReading> = c
        .readings
        .iter()
        .map(|(id, fields, ts)| SensorReading {
            sensor_id: id.clone(),
            fields: fields
                .iter()
                .map(|(n, v, u, d)| Field {
                    name: n.clone(),
                    value: v.parse().expect("a number as text"),
                    unit: u.clone(),
                    device_class: d.clone(),
                })
                .collect(),
            timestamp_ms: *ts,
            alert: "ok",
            message: String::new(),
            plugin: "dew".into(),
            origin: Origin::Generic,
        })
        .collect();
    checks::check_readings(&readings, &owned, NOW, &mut Default::default()).err()
}

/// The kit's verdicts, as the kit's FakeHost.from_config would make them:
/// the grants of `dew` and those of the config's other enabled plugins.
const KIT: &str = r#"
import json, sys, tomllib
import _checks
cases, now = json.loads(sys.argv[1])
out = []
for config, readings in cases:
    plugins = tomllib.loads(config)["plugins"]
    others = {n: t.get("grants", {}) for n, t in plugins.items() if n != "dew" and t.get("enabled", True)}
    owned = _checks.owned("dew", plugins["dew"].get("grants", {}), others)
    plain = [(i, [(n, float(v), u, d) for n, v, u, d in fields], ts, "") for i, fields, ts in readings]
    try:
        _checks.check_readings(plain, owned, now, set())
        out.append(None)
    except _checks.BadResult as e:
        out.append(e.message)
print(json.dumps(out))
"#;

#[test]
fn the_kit_refuses_a_poll_where_the_host_does_with_its_words() {
    let cases = cases();
    let input = json!([
        cases
            .iter()
            .map(|c| json!([c.config, c.readings]))
            .collect::<Vec<_>>(),
        NOW
    ]);
    let from_kit = kit_json(KIT, &[input.to_string()]);
    let from_kit = from_kit.as_array().expect("a list of verdicts");
    assert_eq!(from_kit.len(), cases.len());
    let mut refused = 0;
    for (c, kit) in cases.iter().zip(from_kit) {
        let host = host_verdict(c);
        refused += usize::from(host.is_some());
        assert_eq!(
            kit.as_str(),
            host.as_deref(),
            "the kit and the host disagree on {:?}",
            c.readings
        );
    }
    assert!(
        refused > 25 && refused < cases.len(),
        "the cases cover both verdicts"
    );
}

#[test]
fn the_kit_has_the_hosts_limits() {
    let limits = kit_json(
        "import json, _checks; print(json.dumps([list(_checks.RESERVED_KEYS), _checks.MAX_FIELDS, \
         _checks.MAX_SENSOR_IDS, _checks.MAX_AHEAD_MS, _checks.MAX_BEHIND_MS, \
         _checks.MAX_UNIT_CHARS, _checks.MAX_READINGS_PER_POLL, _checks.DEFAULT_MAX_RESULT_KB]))",
        &[],
    );
    assert_eq!(
        limits,
        json!([
            RESERVED_KEYS,
            checks::MAX_FIELDS,
            checks::MAX_SENSOR_IDS,
            checks::MAX_AHEAD_MS,
            checks::MAX_BEHIND_MS,
            checks::MAX_UNIT_CHARS,
            wasi_python_host::runtime::MAX_READINGS_PER_POLL,
            wasi_python_host::config::Limits::default().max_result_kb,
        ])
    );
}
