//! `state`: a small key-value store per plugin that outlives instances,
//! reloads and restarts, so an alarm stays an alarm after a hot swap.
//!
//! Each plugin's store is one JSON file (`<state_dir>/state/<plugin>.json`,
//! values hex-encoded) rewritten on every change with write-to-temp, fsync,
//! rename: a power cut mid-write leaves either the old or the new file,
//! never a torn one. Alert plugins write a few bytes when their level
//! changes, so the rewrite cost does not matter.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::contract::state::Host;

/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 256;

/// One plugin's persistent store.
pub struct Store {
    path: PathBuf,
    quota_bytes: u64,
    values: BTreeMap<String, Vec<u8>>,
}

impl Store {
    /// Opens (or starts empty) the store of `plugin` in `dir`. With a
    /// quota of 0 nothing can be written, so nothing is.
    pub fn open(dir: &Path, plugin: &str, quota_bytes: u64) -> std::io::Result<Store> {
        let path = dir.join(format!("{plugin}.json"));
        let values = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).unwrap_or_else(|| {
                log::warn!(
                    "state of plugin `{plugin}` in {} is unreadable; starting empty",
                    path.display()
                );
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Store {
            path,
            quota_bytes,
            values,
        })
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
            if let Err(e) = self.persist() {
                log::warn!("state delete could not be saved: {e}");
            }
        }
    }

    fn persist(&self) -> std::io::Result<()> {
        write_atomically(&self.path, &encode(&self.values))
    }

    /// A new quota from a changed config; what is stored stays.
    pub fn set_quota(&mut self, quota_bytes: u64) {
        self.quota_bytes = quota_bytes;
    }
}

/// Writes `bytes` to `path` so that readers and power cuts see either the
/// old or the new content: temp file in the same folder, fsync, rename,
/// fsync the folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
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
        self.store.lock().ok()?.get(&key).map(<[u8]>::to_vec)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        self.store
            .lock()
            .map_err(|_| "state store unavailable".to_string())?
            .set(&key, &value)
    }

    fn delete(&mut self, key: String) {
        if let Ok(mut store) = self.store.lock() {
            store.delete(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_enforces_quota() {
        let dir = std::env::temp_dir().join(format!("whp-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Store::open(&dir, "p", 32).unwrap();
        s.set("level", b"alarm").unwrap();
        assert!(s.set("big", &[0u8; 40]).unwrap_err().contains("quota"));
        let s = Store::open(&dir, "p", 32).unwrap();
        assert_eq!(s.get("level"), Some(&b"alarm"[..]));
        assert_eq!(s.get("big"), None);
        std::fs::write(dir.join("p.json"), b"{not json").unwrap();
        assert_eq!(Store::open(&dir, "p", 32).unwrap().get("level"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
