//! `settings`: the plugin's `[plugins.NAME.settings]`, as TOML strings.

use std::collections::BTreeMap;

use crate::contract::settings::Host;

pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Settings {
    pub fn new(table: &toml::Table) -> Settings {
        Settings {
            values: table
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
        }
    }
}

impl Host for Settings {
    fn get(&mut self, key: String) -> Option<String> {
        self.values.get(&key).cloned()
    }

    fn keys(&mut self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }
}
