//! `probe`: checks the configured devices once.

use std::path::PathBuf;

use super::{load_config, Overrides};
use crate::config::Config;
use crate::hardware::ProbePlan;

/// What `probe` checks: the pins and addresses granted to enabled plugins
/// (the only ones the host will ever touch), the strip and the buzzer.
pub fn probe_plan(config: &Config) -> ProbePlan {
    let mut plan = ProbePlan {
        led_count: config.hardware.leds.count,
        led_pin: config.hardware.leds.pin,
        buzzer_pin: config.hardware.buzzer.pin,
        ..ProbePlan::default()
    };
    for plugin in config.plugins.values().filter(|p| p.enabled) {
        plan.dht22_pins.extend(&plugin.grants.dht22_pins);
        plan.bme680_addresses.extend(&plugin.grants.i2c_addresses);
    }
    for list in [&mut plan.dht22_pins, &mut plan.bme680_addresses] {
        list.sort_unstable();
        list.dedup();
    }
    plan
}

/// `wasi-python-host probe`: checks every configured device with the
/// selected backend and prints what it found. `Ok(false)` when a device is
/// missing or failing.
pub fn probe(config_path: PathBuf, overrides: Overrides) -> anyhow::Result<bool> {
    let config = load_config(&config_path, &overrides)?;
    let mut backend = crate::app::backend(&config)?;
    let report = crate::hardware::probe(backend.as_mut(), &probe_plan(&config));
    print!("{report}");
    Ok(report.all_found())
}
