//! A bounded in-memory history of every reading, for the dashboard's charts
//! and `GET /api/history`.
//!
//! Each series (one field of one sensor, e.g. `dht22-1/temperature`) keeps
//! two rings of fixed-width buckets — 10 s buckets for the last hour and
//! 5 min buckets for the last 24 h — holding average, minimum and maximum.
//! Memory is fixed: at most [`MAX_SERIES`] series of [`FINE`] + [`COARSE`]
//! buckets (about 20 KiB a series). A series not updated for 24 h is
//! dropped; a reading with a timestamp no newer than its series' last one
//! (a plugin repeating a cached reading) is not counted twice.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::readings::{SensorReading, SystemReading};

/// Bucket widths and counts of the two tiers.
pub const FINE: Tier = Tier {
    name: "1h",
    width_ms: 10_000,
    buckets: 360,
};
pub const COARSE: Tier = Tier {
    name: "24h",
    width_ms: 300_000,
    buckets: 288,
};
/// Series beyond this many are not recorded (a plugin inventing sensor ids
/// cannot grow the host's memory).
pub const MAX_SERIES: usize = 64;
/// Series one plugin may have: a plugin reporting ever new fields or ids
/// cannot crowd out the others' history.
pub const MAX_SERIES_PER_PLUGIN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub name: &'static str,
    pub width_ms: u64,
    pub buckets: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    start_ms: u64,
    sum: f64,
    min: f32,
    max: f32,
    n: u32,
}

#[derive(Debug, Default)]
struct Ring {
    buckets: VecDeque<Bucket>,
}

impl Ring {
    fn add(&mut self, tier: Tier, ts: u64, v: f32) {
        let start = ts - ts % tier.width_ms;
        if let Some(b) = self.buckets.back_mut() {
            if b.start_ms == start {
                b.sum += f64::from(v);
                b.min = b.min.min(v);
                b.max = b.max.max(v);
                b.n += 1;
                return;
            }
            if start < b.start_ms {
                return;
            }
        }
        self.buckets.push_back(Bucket {
            start_ms: start,
            sum: f64::from(v),
            min: v,
            max: v,
            n: 1,
        });
        while self.buckets.len() > tier.buckets {
            self.buckets.pop_front();
        }
    }
}

#[derive(Debug)]
struct Series {
    sensor_id: String,
    field: String,
    unit: String,
    plugin: String,
    last_ms: u64,
    fine: Ring,
    coarse: Ring,
}

/// One series as `/api/history` serves it.
#[derive(Debug, Serialize)]
pub struct SeriesView {
    pub key: String,
    pub sensor_id: String,
    pub field: String,
    pub unit: String,
    pub plugin: String,
    /// `[bucket start (Unix ms), average, minimum, maximum]`, oldest first.
    pub points: Vec<(u64, f32, f32, f32)>,
}

#[derive(Debug, Default)]
pub struct History {
    series: BTreeMap<String, Series>,
    warned_full: bool,
}

impl History {
    /// Records every field of `r`.
    pub fn add_sensor(&mut self, r: &SensorReading) {
        for f in &r.fields {
            self.add(
                &r.sensor_id,
                &f.name,
                &f.unit,
                &r.plugin,
                r.timestamp_ms,
                f.value as f32,
            );
        }
    }

    /// Records the system stats as sensor `system`.
    pub fn add_system(&mut self, s: &SystemReading, plugin: &str) {
        let fields: [(&'static str, &'static str, f32); 3] = [
            ("cpu_temp_c", "°C", s.cpu_temp_c),
            ("ram_used_mb", "MB", s.ram_used_mb as f32),
            ("load_1m", "", s.load_1m),
        ];
        for (field, unit, v) in fields {
            self.add("system", field, unit, plugin, s.timestamp_ms, v);
        }
    }

    fn add(&mut self, sensor_id: &str, field: &str, unit: &str, plugin: &str, ts: u64, v: f32) {
        if !v.is_finite() || ts == 0 {
            return;
        }
        let key = format!("{sensor_id}/{field}");
        if !self.series.contains_key(&key) {
            self.expire(ts);
            let mine = self.series.values().filter(|s| s.plugin == plugin).count();
            if self.series.len() >= MAX_SERIES || mine >= MAX_SERIES_PER_PLUGIN {
                if !self.warned_full {
                    log::warn!(
                        "history keeps at most {MAX_SERIES} series, {MAX_SERIES_PER_PLUGIN} per \
                         plugin; `{key}` (from plugin `{plugin}`) and later new ones are not \
                         recorded"
                    );
                    self.warned_full = true;
                }
                return;
            }
        }
        let s = self.series.entry(key).or_insert_with(|| Series {
            sensor_id: sensor_id.to_string(),
            field: field.to_string(),
            unit: unit.to_string(),
            plugin: plugin.to_string(),
            last_ms: 0,
            fine: Ring::default(),
            coarse: Ring::default(),
        });
        if ts <= s.last_ms {
            return;
        }
        s.last_ms = ts;
        s.plugin.clear();
        s.plugin.push_str(plugin);
        s.fine.add(FINE, ts, v);
        s.coarse.add(COARSE, ts, v);
    }

    /// Drops series with nothing in the last 24 h.
    fn expire(&mut self, now_ms: u64) {
        let horizon = COARSE.width_ms * COARSE.buckets as u64;
        self.series
            .retain(|_, s| now_ms.saturating_sub(s.last_ms) <= horizon);
    }

    /// Forgets the series of sensors that `plugin` reported (it was unloaded).
    pub fn remove_plugin(&mut self, plugin: &str) {
        self.series.retain(|_, s| s.plugin != plugin);
    }

    /// The series in `tier`, optionally only those of `sensor_id`, whose
    /// buckets start at or after `since_ms`.
    pub fn view(&self, tier: Tier, sensor_id: Option<&str>, since_ms: u64) -> Vec<SeriesView> {
        self.series
            .iter()
            .filter(|(_, s)| sensor_id.is_none_or(|id| s.sensor_id == id))
            .map(|(key, s)| {
                let ring = if tier == FINE { &s.fine } else { &s.coarse };
                SeriesView {
                    key: key.clone(),
                    sensor_id: s.sensor_id.clone(),
                    field: s.field.clone(),
                    unit: s.unit.clone(),
                    plugin: s.plugin.clone(),
                    points: ring
                        .buckets
                        .iter()
                        .filter(|b| b.start_ms >= since_ms)
                        .map(|b| (b.start_ms, (b.sum / f64::from(b.n)) as f32, b.min, b.max))
                        .collect(),
                }
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading_of(plugin: &str, id: &str, ts: u64, t: f32) -> SensorReading {
        SensorReading::from_dht22(
            crate::contract::types::Dht22Reading {
                sensor_id: id.into(),
                temperature: t,
                humidity: 50.0,
                timestamp_ms: ts,
                alert: crate::contract::types::AlertLevel::Ok,
                message: String::new(),
            },
            plugin,
        )
    }

    fn reading(id: &str, ts: u64, t: f32) -> SensorReading {
        reading_of("dht22", id, ts, t)
    }

    #[test]
    fn buckets_average_and_bound() {
        let mut h = History::default();
        let t0 = 1_700_000_000_000u64;
        // 3 readings in one 10 s bucket, then one in the next.
        h.add_sensor(&reading("a", t0, 20.0));
        h.add_sensor(&reading("a", t0 + 2_000, 22.0));
        h.add_sensor(&reading("a", t0 + 4_000, 24.0));
        h.add_sensor(&reading("a", t0 + 4_000, 99.0)); // repeated timestamp: ignored
        h.add_sensor(&reading("a", t0 + 10_000, 30.0));
        let v = h.view(FINE, Some("a"), 0);
        let temp = v.iter().find(|s| s.field == "temperature").unwrap();
        assert_eq!(temp.unit, "°C");
        assert_eq!(temp.points.len(), 2);
        assert_eq!(temp.points[0], (t0, 22.0, 20.0, 24.0));
        assert_eq!(temp.points[1].1, 30.0);
        // Two fields (temperature, humidity); no pressure on a DHT22.
        assert_eq!(v.len(), 2);

        // A day of readings every 2 s keeps only the ring sizes.
        for i in 0..(86_400 / 2) {
            h.add_sensor(&reading(
                "a",
                t0 + 20_000 + i * 2_000,
                20.0 + (i % 7) as f32,
            ));
        }
        let fine = h.view(FINE, Some("a"), 0);
        assert_eq!(fine[0].points.len(), FINE.buckets);
        let coarse = h.view(COARSE, Some("a"), 0);
        assert!(coarse[0].points.len() <= COARSE.buckets);
        assert!(coarse[0].points.len() >= COARSE.buckets - 1);
        // since= filters.
        let last = fine[0].points.last().unwrap().0;
        assert_eq!(h.view(FINE, Some("a"), last)[0].points.len(), 1);
    }

    #[test]
    fn series_are_capped_and_expire() {
        let mut h = History::default();
        let t0 = 1_700_000_000_000u64;
        // Eight plugins with many sensors each: every plugin gets its share.
        for p in 0..8 {
            for i in 0..100 {
                h.add_sensor(&reading_of(&format!("p{p}"), &format!("p{p}-{i}"), t0, 1.0));
            }
        }
        assert_eq!(h.len(), MAX_SERIES);
        for p in 0..4 {
            let mine = h
                .series
                .values()
                .filter(|s| s.plugin == format!("p{p}"))
                .count();
            assert_eq!(mine, MAX_SERIES_PER_PLUGIN, "p{p}");
        }
        // A plugin that invents ids cannot take another's room.
        let mut h = History::default();
        for i in 0..200 {
            h.add_sensor(&reading_of("greedy", &format!("s{i}"), t0, 1.0));
        }
        assert_eq!(h.len(), MAX_SERIES_PER_PLUGIN);
        h.add_sensor(&reading("real", t0, 1.0));
        assert_eq!(
            h.view(FINE, Some("real"), 0).len(),
            2,
            "temperature and humidity"
        );
        let mut h = History::default();
        for i in 0..200 {
            h.add_sensor(&reading(&format!("s{i}"), t0, 1.0));
        }
        assert_eq!(h.len(), MAX_SERIES_PER_PLUGIN);
        // A day later, old series make room for a new one.
        h.add_sensor(&reading("late", t0 + 25 * 3_600_000, 1.0));
        assert_eq!(h.len(), 2);
        h.remove_plugin("dht22");
        assert!(h.is_empty());
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut h = History::default();
        h.add_sensor(&reading("a", 1_000, f32::NAN));
        let v = h.view(FINE, None, 0);
        assert!(v.iter().all(|s| s.field != "temperature"));
    }
}
