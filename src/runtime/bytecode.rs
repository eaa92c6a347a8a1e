//! Python bytecode compiled by the shared runtime, cached on disk per
//! source version, so a restart, a re-instantiation after a failure or
//! `recycle = true` never compiles the same Python twice (on Pulley a
//! compile is most of a plugin's load time).
//!
//! An entry is keyed by the runtime's digest (the marshal format belongs
//! to the CPython inside it), the module's path (it is baked into the code
//! object for tracebacks) and its source. The file holds the SHA-256 of
//! the bytecode followed by the bytecode, so a torn or altered file is
//! detected and ignored. Bytecode only ever runs inside a plugin's sandbox,
//! and the runtime falls back to the source when it cannot unmarshal it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Total size of the bytecode cache before the oldest entries go. The
/// shipped plugins' bytecode is ~100 KiB in all.
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;

pub struct BytecodeCache {
    dir: PathBuf,
    /// First 16 hex digits of the runtime's digest.
    runtime: String,
}

impl BytecodeCache {
    /// The cache for the runtime with SHA-256 `runtime_digest`, in
    /// `<cache_dir>/bytecode/`.
    pub fn new(cache_dir: &Path, runtime_digest: &str) -> BytecodeCache {
        BytecodeCache {
            dir: cache_dir.join("bytecode"),
            runtime: runtime_digest[..16].to_string(),
        }
    }

    fn entry(&self, path: &str, source: &str) -> PathBuf {
        let mut h = Sha256::new();
        h.update(path.as_bytes());
        h.update([0]);
        h.update(source.as_bytes());
        let key: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(format!("{}-{key}.pyc", self.runtime))
    }

    /// The bytecode compiled before from exactly this module, if any.
    pub fn get(&self, path: &str, source: &str) -> Option<Vec<u8>> {
        let file = self.entry(path, source);
        let data = std::fs::read(&file).ok()?;
        if data.len() < 32 || Sha256::digest(&data[32..])[..] != data[..32] {
            log::warn!("discarding corrupt bytecode cache entry {}", file.display());
            let _ = std::fs::remove_file(&file);
            return None;
        }
        Some(data[32..].to_vec())
    }

    /// Stores what the runtime compiled from this module. Failing to is
    /// harmless (the next load compiles again) and only logged.
    pub fn put(&self, path: &str, source: &str, bytecode: &[u8]) {
        let file = self.entry(path, source);
        let mut data = Vec::with_capacity(32 + bytecode.len());
        data.extend_from_slice(&Sha256::digest(bytecode));
        data.extend_from_slice(bytecode);
        // No fsync: a torn entry fails its checksum and is compiled again,
        // and sparing the SD card a sync per edit is worth more.
        let tmp = file.with_extension("pyc.tmp");
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&tmp, &data))
            .and_then(|()| std::fs::rename(&tmp, &file));
        match written {
            Ok(()) => self.evict(&file),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                log::debug!("cannot cache bytecode in {}: {e}", file.display());
            }
        }
    }

    /// Deletes the oldest entries until the folder fits [`MAX_BYTES`].
    fn evict(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        if total <= MAX_BYTES {
            return;
        }
        files.sort();
        for (_, len, path) in files {
            if total <= MAX_BYTES {
                break;
            }
            if path != keep {
                let _ = std::fs::remove_file(&path);
                total -= len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(tag: &str) -> (BytecodeCache, PathBuf) {
        let dir = crate::fsutil::test_dir(&format!("bytecode-{tag}"));
        (BytecodeCache::new(&dir, &"ab".repeat(32)), dir)
    }

    #[test]
    fn an_entry_is_found_only_for_the_same_path_and_source() {
        let (c, dir) = cache("key");
        c.put("p/app.py", "x = 1\n", b"code");
        assert_eq!(c.get("p/app.py", "x = 1\n").as_deref(), Some(&b"code"[..]));
        assert_eq!(c.get("p/app.py", "x = 2\n"), None);
        assert_eq!(c.get("q/app.py", "x = 1\n"), None);
        // Another runtime never sees it.
        let other = BytecodeCache::new(&dir, &"cd".repeat(32));
        assert_eq!(other.get("p/app.py", "x = 1\n"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_entry_is_ignored_and_removed() {
        let (c, dir) = cache("damaged");
        c.put("p/app.py", "x = 1\n", b"code");
        let file = c.entry("p/app.py", "x = 1\n");
        let mut data = std::fs::read(&file).unwrap();
        *data.last_mut().unwrap() ^= 1;
        std::fs::write(&file, &data).unwrap();
        assert_eq!(c.get("p/app.py", "x = 1\n"), None);
        assert!(!file.exists());
        std::fs::write(&file, b"short").unwrap();
        assert_eq!(c.get("p/app.py", "x = 1\n"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cache_stays_under_its_size() {
        let (c, dir) = cache("evict");
        let big = vec![7u8; 3 * 1024 * 1024];
        for i in 0..8 {
            c.put("p/app.py", &format!("x = {i}\n"), &big);
        }
        let total: u64 = std::fs::read_dir(dir.join("bytecode"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= MAX_BYTES, "{total} bytes");
        // The newest entry is always kept.
        assert!(c.get("p/app.py", "x = 7\n").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
