//! `state`: a small key-value store per plugin that outlives instances,
//! reloads and restarts, so an alarm stays an alarm after a hot swap.
//!
//! Each plugin's store is one JSON file (`<state_dir>/state/<plugin>.json`,
//! values hex-encoded) written with [`crate::fsutil::write_atomically`]: a
//! power cut mid-write leaves either the old or the new file, never a torn
//! one.
//!
//! A store writes through (one durable write per change) until the host
//! calls [`Store::buffer_writes`]; then changes stay in memory and
//! [`Store::flush`], which the host calls when a plugin call ends, writes
//! them in one go, at most once per `min_interval`. So a call that sets a
//! key 164 times costs one fsync, and a plugin that writes on every poll
//! costs at most one per interval (an SD card wears with every write).
//! Reads always see memory, so a plugin sees its own writes at once and an
//! unsaved change is not mistaken for no change.
//!
//! At open, temporary files a killed host left behind are removed, and an
//! unreadable file is kept as `<plugin>.json.corrupt-<unix time>` (and
//! logged) before the plugin starts afresh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::contract::state::Host;

/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 256;

/// The durable write interval the host gives [`Store::buffer_writes`]:
/// at most one fsync'd rewrite of a plugin's state per this long.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(5);

/// One plugin's persistent store.
pub struct Store {
    path: PathBuf,
    plugin: String,
    quota_bytes: u64,
    values: BTreeMap<String, Vec<u8>>,
    /// `Some(min_interval)` once writes are buffered for [`Store::flush`].
    buffered: Option<Duration>,
    /// Memory holds changes the file does not.
    dirty: bool,
    last_write: Option<Instant>,
    writes: u64,
}

/// What [`Store::flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing to write.
    Clean,
    /// The changes are on disk.
    Written,
    /// The last durable write was too recent: the changes stay in memory
    /// and go out with a `flush` at least this much later.
    Deferred(Duration),
}

impl Store {
    /// Opens (or starts empty) the store of `plugin` in `dir`. With a
    /// quota of 0 nothing can be written, so nothing is.
    pub fn open(dir: &Path, plugin: &str, quota_bytes: u64) -> std::io::Result<Store> {
        let path = dir.join(format!("{plugin}.json"));
        crate::fsutil::remove_leftover_temps(&path);
        let values = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).unwrap_or_else(|| {
                keep_corrupt(&path, plugin);
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Store {
            path,
            plugin: plugin.to_string(),
            quota_bytes,
            values,
            buffered: None,
            dirty: false,
            last_write: None,
            writes: 0,
        })
    }

    /// From now on, changes stay in memory until [`Store::flush`], which
    /// writes at most once per `min_interval`.
    pub fn buffer_writes(&mut self, min_interval: Duration) {
        self.buffered = Some(min_interval);
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.values.get(key).map(Vec::as_slice)
    }

    pub fn used_bytes(&self) -> u64 {
        self.values
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    pub fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(format!("state keys must be 1–{MAX_KEY_BYTES} bytes"));
        }
        if self.values.get(key).is_some_and(|v| v == value) {
            return Ok(());
        }
        let old = self
            .values
            .get(key)
            .map(|v| (key.len() + v.len()) as u64)
            .unwrap_or(0);
        let new_total = self.used_bytes() - old + (key.len() + value.len()) as u64;
        if new_total > self.quota_bytes {
            return Err(format!(
                "state quota exceeded: {new_total} bytes > {} (grants.state_quota_bytes)",
                self.quota_bytes
            ));
        }
        let previous = self.values.insert(key.to_string(), value.to_vec());
        if self.buffered.is_some() {
            self.dirty = true;
            return Ok(());
        }
        if let Err(e) = self.persist() {
            // Keep memory and disk in agreement: undo the change.
            match previous {
                Some(v) => self.values.insert(key.to_string(), v),
                None => self.values.remove(key),
            };
            return Err(format!("state could not be saved: {e}"));
        }
        Ok(())
    }

    pub fn delete(&mut self, key: &str) {
        if self.values.remove(key).is_some() {
            if self.buffered.is_some() {
                self.dirty = true;
            } else if let Err(e) = self.persist() {
                log::warn!("state delete could not be saved: {e}");
            }
        }
    }

    /// Writes buffered changes, unless the last durable write was less
    /// than the interval ago (then they wait for a later `flush`). On an
    /// error they stay in memory for the next one.
    pub fn flush(&mut self) -> std::io::Result<Flush> {
        if !self.dirty {
            return Ok(Flush::Clean);
        }
        let interval = self.buffered.unwrap_or(Duration::ZERO);
        if let Some(last) = self.last_write {
            let since = last.elapsed();
            if since < interval {
                return Ok(Flush::Deferred(interval - since));
            }
        }
        self.flush_now()
    }

    /// Writes buffered changes now, whatever the interval: at shutdown,
    /// and when a plugin is removed or stops being called.
    pub fn flush_now(&mut self) -> std::io::Result<Flush> {
        if !self.dirty {
            return Ok(Flush::Clean);
        }
        self.persist()?;
        self.dirty = false;
        Ok(Flush::Written)
    }

    /// Whether memory holds changes not on disk yet.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Durable writes (fsync'd rewrites of the file) so far.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    fn persist(&mut self) -> std::io::Result<()> {
        // Counted and timed even when it fails: a failing disk is retried
        // at the same bounded rate.
        self.last_write = Some(Instant::now());
        self.writes += 1;
        crate::fsutil::write_atomically(&self.path, &encode(&self.values))
    }

    /// A new quota from a changed config; what is stored stays.
    pub fn set_quota(&mut self, quota_bytes: u64) {
        self.quota_bytes = quota_bytes;
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.flush_now() {
            log::error!(
                "state of plugin `{}` could not be saved to {}: {e}",
                self.plugin,
                self.path.display()
            );
        }
    }
}

/// Moves an unreadable state file aside as `<file>.corrupt-<unix time>`,
/// so starting afresh does not destroy what may still be rescued by hand.
fn keep_corrupt(path: &Path, plugin: &str) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let mut backup = path.with_file_name(format!("{name}.corrupt-{secs}"));
    let mut n = 1;
    while backup.exists() {
        n += 1;
        backup = path.with_file_name(format!("{name}.corrupt-{secs}-{n}"));
    }
    match std::fs::rename(path, &backup) {
        Ok(()) => log::warn!(
            "state of plugin `{plugin}` in {} is unreadable (not the JSON the host writes); \
             kept it as {} and starting with an empty state",
            path.display(),
            backup.display()
        ),
        Err(e) => log::error!(
            "state of plugin `{plugin}` in {} is unreadable, and keeping a copy as {} failed \
             ({e}); starting with an empty state, the next save replaces it",
            path.display(),
            backup.display()
        ),
    }
}

fn encode(values: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let map: BTreeMap<&str, String> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.iter().map(|b| format!("{b:02x}")).collect()))
        .collect();
    serde_json::to_vec_pretty(&map).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Option<BTreeMap<String, Vec<u8>>> {
    let map: BTreeMap<String, String> = serde_json::from_slice(bytes).ok()?;
    map.into_iter()
        .map(|(k, hex)| {
            if hex.len() % 2 != 0 {
                return None;
            }
            let v = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            Some((k, v))
        })
        .collect()
}

/// The per-instance handle on the plugin's shared store.
pub struct State {
    store: Arc<Mutex<Store>>,
}

impl State {
    pub fn new(store: Arc<Mutex<Store>>) -> State {
        State { store }
    }
}

impl Host for State {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.store
            .lock()
            .expect("state store lock")
            .get(&key)
            .map(<[u8]>::to_vec)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        self.store
            .lock()
            .expect("state store lock")
            .set(&key, &value)
    }

    fn delete(&mut self, key: String) {
        self.store.lock().expect("state store lock").delete(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::{file_names, test_dir};

    #[test]
    fn survives_reopen_and_enforces_quota() {
        let dir = test_dir("state-reopen");
        let mut s = Store::open(&dir, "p", 32).unwrap();
        s.set("level", b"alarm").unwrap();
        assert!(s.set("big", &[0u8; 40]).unwrap_err().contains("quota"));
        drop(s);
        let s = Store::open(&dir, "p", 32).unwrap();
        assert_eq!(s.get("level"), Some(&b"alarm"[..]));
        assert_eq!(s.get("big"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_file_is_kept_aside_before_starting_empty() {
        let dir = test_dir("state-corrupt");
        std::fs::write(dir.join("p.json"), b"{not json").unwrap();
        let mut s = Store::open(&dir, "p", 64).unwrap();
        assert_eq!(s.get("level"), None);
        let names = file_names(&dir);
        let backup = names
            .iter()
            .find(|n| n.starts_with("p.json.corrupt-"))
            .unwrap_or_else(|| panic!("no backup among {names:?}"));
        assert_eq!(std::fs::read(dir.join(backup)).unwrap(), b"{not json");
        // The next save does not touch the backup.
        s.set("level", b"ok").unwrap();
        assert_eq!(std::fs::read(dir.join(backup)).unwrap(), b"{not json");
        assert_eq!(
            Store::open(&dir, "p", 64).unwrap().get("level"),
            Some(&b"ok"[..])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn temporary_files_of_a_killed_host_are_removed_at_open() {
        let dir = test_dir("state-temps");
        // What `kill -9` mid-write leaves: temp files named after the
        // writer's process id, next to a good state file.
        std::fs::write(
            dir.join("p.json"),
            encode(&BTreeMap::from([("k".into(), b"v".to_vec())])),
        )
        .unwrap();
        for pid in [1234, 99999] {
            std::fs::write(dir.join(format!(".p.json.tmp{pid}")), b"{\"k\": \"7").unwrap();
        }
        // Another plugin's leftovers and unrelated files are not ours.
        std::fs::write(dir.join(".p2.json.tmp1234"), b"x").unwrap();
        std::fs::write(dir.join(".p.json.tmpfoo"), b"x").unwrap();
        let s = Store::open(&dir, "p", 64).unwrap();
        assert_eq!(s.get("k"), Some(&b"v"[..]));
        assert_eq!(
            file_names(&dir),
            [".p.json.tmpfoo", ".p2.json.tmp1234", "p.json"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn buffered_writes_make_one_durable_write_per_flush() {
        let dir = test_dir("state-coalesce");
        let mut s = Store::open(&dir, "p", 4096).unwrap();
        s.buffer_writes(Duration::ZERO);
        // One plugin call that writes 164 times.
        for i in 0..164u32 {
            s.set("counter", &i.to_le_bytes()).unwrap();
            s.set(&format!("k{}", i % 8), b"x").unwrap();
        }
        s.delete("k0");
        // The plugin reads its own writes before anything is on disk.
        assert_eq!(s.get("counter"), Some(&163u32.to_le_bytes()[..]));
        assert_eq!(s.writes(), 0);
        assert!(!dir.join("p.json").exists());
        assert_eq!(s.flush().unwrap(), Flush::Written);
        assert_eq!(s.writes(), 1);
        assert_eq!(
            s.flush().unwrap(),
            Flush::Clean,
            "nothing new, nothing written"
        );
        assert_eq!(s.writes(), 1);
        let disk = Store::open(&dir, "p", 4096).unwrap();
        assert_eq!(disk.get("counter"), Some(&163u32.to_le_bytes()[..]));
        assert_eq!(disk.get("k0"), None);
        assert_eq!(disk.get("k1"), Some(&b"x"[..]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn buffered_writes_reach_the_disk_at_most_once_per_interval() {
        let dir = test_dir("state-rate");
        let mut s = Store::open(&dir, "p", 4096).unwrap();
        s.buffer_writes(Duration::from_secs(3600));
        s.set("level", b"warn").unwrap();
        assert_eq!(
            s.flush().unwrap(),
            Flush::Written,
            "the first change goes out"
        );
        // Calls keep changing it: every flush within the interval waits.
        for level in [&b"alarm"[..], b"ok", b"alarm"] {
            s.set("level", level).unwrap();
            assert!(
                matches!(s.flush().unwrap(), Flush::Deferred(d) if d > Duration::from_secs(3500))
            );
        }
        assert_eq!(s.writes(), 1);
        assert!(s.is_dirty());
        // At shutdown (or removal) what waits goes out regardless ...
        assert_eq!(s.flush_now().unwrap(), Flush::Written);
        assert_eq!(
            Store::open(&dir, "p", 4096).unwrap().get("level"),
            Some(&b"alarm"[..])
        );
        // ... and dropping a store with unsaved changes saves them.
        s.set("level", b"ok").unwrap();
        drop(s);
        assert_eq!(
            Store::open(&dir, "p", 4096).unwrap().get("level"),
            Some(&b"ok"[..])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_durable_write_keeps_the_change_for_the_next_flush() {
        let dir = test_dir("state-failing");
        let mut s = Store::open(&dir, "p", 4096).unwrap();
        s.buffer_writes(Duration::ZERO);
        // The state folder becomes a file: every write fails.
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, b"not a folder").unwrap();
        s.set("level", b"alarm").unwrap();
        assert!(s.flush().is_err());
        assert_eq!(s.get("level"), Some(&b"alarm"[..]), "memory keeps it");
        assert!(s.is_dirty());
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(s.flush().unwrap(), Flush::Written);
        assert_eq!(
            Store::open(&dir, "p", 4096).unwrap().get("level"),
            Some(&b"alarm"[..])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn write_through_is_still_the_default() {
        let dir = test_dir("state-through");
        let mut s = Store::open(&dir, "p", 4096).unwrap();
        s.set("a", b"1").unwrap();
        s.set("a", b"1").unwrap();
        s.set("a", b"2").unwrap();
        assert_eq!(s.writes(), 2, "one per change, none for an unchanged value");
        assert!(!s.is_dirty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
