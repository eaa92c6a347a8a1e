//! `telemetry`: a plugin publishes its own named values (with a unit). Each
//! is a field of the plugin's own reading (sensor id = the plugin's name):
//! in `/api`, on the dashboard, in the history and `/metrics` and, with
//! `[mqtt]`, one discovered Home Assistant sensor each, like any reading.
//!
//! Names are `[a-z0-9_]{1,32}` (they become topic keys and unique ids),
//! units at most 16 characters, values finite. Each plugin may publish 10
//! values at once, then 10 per second (a token bucket that outlives its
//! instances), and keep at most [`MAX_NAMES`] distinct names.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Refuser;
use crate::clock::unix_time_ms;
use crate::contract::telemetry::Host;
use crate::ratelimit::TokenBucket;
use crate::readings::{TelemetryMap, TelemetryValue};

/// Distinct names one plugin may publish: the fields of one reading.
pub const MAX_NAMES: usize = crate::readings::MAX_FIELDS;
pub const MAX_NAME_LEN: usize = 32;
pub const MAX_UNIT_LEN: usize = 16;

/// Values published by every plugin since the scheduler last looked.
#[derive(Default)]
pub struct Board {
    inner: Mutex<(TelemetryMap, bool)>,
}

impl Board {
    /// The whole map, if anything changed since the last call.
    pub fn take_if_changed(&self) -> Option<TelemetryMap> {
        let mut inner = self.inner.lock().expect("telemetry board lock");
        if !inner.1 {
            return None;
        }
        inner.1 = false;
        Some(inner.0.clone())
    }

    /// Forgets what `plugin` published (it was disabled or removed), so its
    /// values leave `/api` and their Home Assistant entities are withdrawn.
    pub fn remove(&self, plugin: &str) {
        let mut inner = self.inner.lock().expect("telemetry board lock");
        if inner.0.remove(plugin).is_some() {
            inner.1 = true;
        }
    }

    fn put(&self, plugin: &str, name: &str, v: TelemetryValue) -> Result<(), String> {
        let mut inner = self.inner.lock().expect("telemetry board lock");
        let values = inner.0.entry(plugin.to_string()).or_default();
        if !values.contains_key(name) && values.len() >= MAX_NAMES {
            return Err(format!(
                "at most {MAX_NAMES} telemetry names per plugin; `{name}` would be one more"
            ));
        }
        if values.get(name) != Some(&v) {
            values.insert(name.to_string(), v);
            inner.1 = true;
        }
        Ok(())
    }
}

/// Values a plugin may publish: 10 at once, then 10 per second.
pub fn bucket() -> TokenBucket {
    TokenBucket::new(10, Duration::from_millis(100))
}

/// Checks a value name; `Err` says what is allowed.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "telemetry name `{}` is not allowed: use 1–{MAX_NAME_LEN} of a-z, 0-9 and _",
            crate::text::truncate(name, 40)
        ))
    }
}

pub struct Telemetry {
    plugin: Arc<str>,
    refuse: Refuser,
    bucket: Arc<Mutex<TokenBucket>>,
    board: Arc<Board>,
}

impl Telemetry {
    pub fn new(
        plugin: Arc<str>,
        refuse: Refuser,
        bucket: Arc<Mutex<TokenBucket>>,
        board: Arc<Board>,
    ) -> Telemetry {
        Telemetry {
            plugin,
            refuse,
            bucket,
            board,
        }
    }
}

impl Host for Telemetry {
    fn publish(&mut self, name: String, value: f64, unit: String) -> Result<(), String> {
        check_name(&name).map_err(|e| self.refuse.refuse(e))?;
        if unit.chars().count() > MAX_UNIT_LEN || unit.chars().any(char::is_control) {
            return Err(self.refuse.refuse(format!(
                "telemetry unit of `{name}` must be at most {MAX_UNIT_LEN} printable characters"
            )));
        }
        if !value.is_finite() {
            return Err(format!(
                "telemetry value of `{name}` must be a finite number"
            ));
        }
        if !self
            .bucket
            .lock()
            .expect("telemetry rate limit lock")
            .try_take()
        {
            return Err(self.refuse.refuse(
                "telemetry rate limit: at most 10 values at once, then 10 per second".into(),
            ));
        }
        self.board.put(
            &self.plugin,
            &name,
            TelemetryValue {
                value,
                unit,
                timestamp_ms: unix_time_ms(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("answer_42").is_ok());
        for bad in ["", "Answer", "a-b", "a/b", "é", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn board_reports_changes_once_and_caps_names() {
        let board = Board::default();
        let v = |value| TelemetryValue {
            value,
            unit: "u".into(),
            timestamp_ms: 1,
        };
        board.put("p", "a", v(1.0)).unwrap();
        assert!(board.take_if_changed().is_some());
        assert!(board.take_if_changed().is_none());
        board.put("p", "a", v(1.0)).unwrap();
        assert!(board.take_if_changed().is_none());
        for i in 1..MAX_NAMES {
            board.put("p", &format!("n{i}"), v(0.0)).unwrap();
        }
        assert!(board.put("p", "one_more", v(0.0)).is_err());
        assert!(board.put("p", "a", v(2.0)).is_ok());
    }
}
