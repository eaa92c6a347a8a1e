//! The test kit (plugins/testing/fakehost) says what the host says: one
//! plugin makes every refused call of the capabilities (ungranted pin,
//! address and LED, beep counts, state keys and quota, telemetry names,
//! units and values) in the real host and in the kit, and the error
//! texts must be the same; so must the refusal of a plugin importing an
//! interface it is not granted. The kit's limits and messages are copies,
//! so this is what keeps them in step.

use std::time::Duration;

use serde_json::Value;

use crate::support::{add_plugin, kit_json, reading, table, test_plugin, TestHost};

const INTERFACES: &[&str] = &[
    "gpio-provider",
    "led-controller",
    "buzzer-controller",
    "state",
    "log",
    "settings",
    "telemetry",
];

fn add_probe(config: &mut toml::Table, interfaces: &[&str]) {
    add_plugin(
        config,
        "probe",
        &test_plugin("contract_probe"),
        "dht22",
        1000,
        interfaces,
    );
    table(config, &["plugins", "probe", "grants"]).insert("state_quota_bytes".into(), 100.into());
}

const GRANTS: &str =
    r#"{"interfaces": INTERFACES, "dht22_pins": [4], "leds": [3], "state_quota_bytes": 100}"#;

#[test]
fn the_kit_refuses_every_call_with_the_hosts_words() {
    let host = TestHost::builder()
        .config(|c| add_probe(c, INTERFACES))
        .start();
    let api = host.wait_api("the probe's reading", Duration::from_secs(30), |a| {
        reading(a, "probe").is_some_and(|r| r["message"] != "")
    });
    let from_host: Value =
        serde_json::from_str(reading(&api, "probe").unwrap()["message"].as_str().unwrap()).unwrap();
    let interfaces = serde_json::to_string(INTERFACES).unwrap();
    let script = format!(
        r#"
import json, shutil, tempfile, pathlib
from fakehost import FakeHost
src = pathlib.Path({probe:?})
d = pathlib.Path(tempfile.mkdtemp()) / "probe"
shutil.copytree(src, d)
host = FakeHost(kind="dht22", grants={grants}, echo_logs=False)
[r] = host.load(d).poll()
print(r.message)
"#,
        probe = test_plugin("contract_probe").display().to_string(),
        grants = GRANTS.replace("INTERFACES", &interfaces),
    );
    let from_kit = kit_json(&script, &[]);
    let cases = from_host.as_object().unwrap();
    assert!(cases.len() >= 12, "{from_host}");
    for (case, said) in cases {
        assert_ne!(
            said, "ok",
            "{case}: the host accepted a call it must refuse"
        );
        assert_eq!(
            Some(said),
            from_kit.get(case),
            "{case}: the test kit's words differ from the host's"
        );
    }
    assert_eq!(cases.len(), from_kit.as_object().unwrap().len());
}

#[test]
fn the_kit_refuses_an_ungranted_import_with_the_hosts_words() {
    let granted: Vec<&str> = INTERFACES
        .iter()
        .copied()
        .filter(|i| !["buzzer-controller", "telemetry"].contains(i))
        .collect();
    let host = TestHost::builder()
        .config(|c| add_probe(c, &granted))
        .start();
    let p = host.plugin("probe");
    assert_eq!(p["status"], "load_failed", "{p}");
    let from_host = p["last_error"].as_str().unwrap().to_string();
    let script = format!(
        r#"
import json, shutil, tempfile, pathlib
from fakehost import FakeHost, GrantError
d = pathlib.Path(tempfile.mkdtemp()) / "probe"
shutil.copytree(pathlib.Path({probe:?}), d)
host = FakeHost(kind="dht22", grants={{"interfaces": {granted}}}, echo_logs=False)
try:
    host.load(d)
    print(json.dumps("loaded"))
except GrantError as e:
    print(json.dumps(e.message))
"#,
        probe = test_plugin("contract_probe").display().to_string(),
        granted = serde_json::to_string(&granted).unwrap(),
    );
    let from_kit = kit_json(&script, &[]);
    assert_eq!(from_kit.as_str(), Some(from_host.as_str()));
    assert!(
        from_host.contains("buzzer-controller, telemetry"),
        "both ungranted imports are named: {from_host}"
    );
}
