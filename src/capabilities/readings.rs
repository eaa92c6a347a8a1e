//! `readings`: the latest readings of the plugins a plugin follows
//! (`grants.follows`), read-only. The scheduler posts every plugin's
//! readings on the [`Board`] after each change; a plugin only ever sees
//! those of the plugins its grants name, as they were last published (a
//! copy: nothing it does changes them).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::contract::readings::Host;
use crate::contract::types::{FollowedReading, Reading};

/// The latest readings of every plugin, by plugin name.
#[derive(Default)]
pub struct Board {
    latest: RwLock<BTreeMap<String, Vec<Reading>>>,
}

impl Board {
    /// Replaces what `plugin` reported (an empty list when it was unloaded).
    pub fn post(&self, plugin: &str, readings: Vec<Reading>) {
        let mut latest = self.latest.write().expect("readings board lock");
        if readings.is_empty() {
            latest.remove(plugin);
        } else {
            latest.insert(plugin.to_string(), readings);
        }
    }

    /// The readings of the plugins in `follows`, in that order.
    pub fn followed(&self, follows: &[String]) -> Vec<FollowedReading> {
        let latest = self.latest.read().expect("readings board lock");
        follows
            .iter()
            .flat_map(|plugin| {
                latest
                    .get(plugin)
                    .into_iter()
                    .flatten()
                    .map(move |r| FollowedReading {
                        plugin: plugin.clone(),
                        reading: r.clone(),
                    })
            })
            .collect()
    }
}

/// One instance's view of the board.
pub struct Readings {
    follows: Vec<String>,
    board: Arc<Board>,
}

impl Readings {
    pub fn new(follows: &[String], board: Arc<Board>) -> Readings {
        Readings {
            follows: follows.to_vec(),
            board,
        }
    }
}

impl Host for Readings {
    fn latest(&mut self) -> Vec<FollowedReading> {
        self.board.followed(&self.follows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::types::{AlertLevel, Field};

    fn reading(id: &str) -> Reading {
        Reading {
            sensor_id: id.into(),
            fields: vec![Field {
                name: "x".into(),
                value: 1.0,
                unit: String::new(),
                device_class: None,
            }],
            timestamp_ms: 1,
            alert: AlertLevel::Ok,
            message: String::new(),
        }
    }

    #[test]
    fn a_plugin_sees_only_what_it_follows() {
        let board = Arc::new(Board::default());
        board.post("a", vec![reading("a-1"), reading("a-2")]);
        board.post("b", vec![reading("b-1")]);
        let mut r = Readings::new(&["b".to_string()], board.clone());
        let seen = r.latest();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].plugin.as_str(), seen[0].reading.sensor_id.as_str()),
            ("b", "b-1")
        );
        board.post("b", Vec::new());
        assert!(
            r.latest().is_empty(),
            "an unloaded plugin's readings are gone"
        );
        let mut none = Readings::new(&[], board);
        assert!(none.latest().is_empty());
    }
}
