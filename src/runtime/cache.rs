//! Precompiled artifacts on disk, so a restart or a reload never recompiles
//! an unchanged plugin.
//!
//! An entry is keyed by the SHA-256 of the component and the Engine's tag
//! (wasmtime version, target, fuel/epoch settings: see
//! [`super::EngineTarget::tag`]), and is stored with the SHA-256 of the
//! artifact itself: `<first 32 hex of the component's sha256>-<tag>.cwasm`
//! and `.sha256` beside it. `precompile --target T --out DIR` on a build
//! machine writes exactly these names for target T's engine, so DIR can be
//! copied into the device's `cache_dir` as is.
//!
//! Trust model: an artifact is native code that wasmtime maps and runs
//! without validation (`Component::deserialize_file` is `unsafe` for that
//! reason). The host therefore only loads artifacts it wrote itself (or that
//! its owner's build machine precompiled for it and installed): every
//! entry's checksum is verified before it is mapped, a mismatch (a torn
//! write, a bit flip, a file dropped in by hand) is deleted and recompiled,
//! and the cache folder belongs to the host's user alone. Entries are
//! written to a temporary name and renamed, so a crash mid-write leaves no
//! half entry under a real name.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Total size the cache may grow to before the oldest entries go.
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024;

pub struct ArtifactCache {
    dir: PathBuf,
    /// What makes this cache's artifacts, for logs (`cranelift`, `pulley`).
    compiler: &'static str,
    engine_tag: String,
    /// What `engine_tag` stands for: named by a runtime-only build when it
    /// has no artifact and cannot compile one.
    #[cfg_attr(feature = "compiler", allow(dead_code))]
    engine_descriptor: String,
    max_bytes: u64,
    /// Entries this process verified (or wrote), by file identity: loading
    /// one again (a reload back to a known version) skips the 30 ms hash.
    /// Entries are only replaced by rename, which makes a new identity.
    verified: std::sync::Mutex<std::collections::HashSet<(u64, u64, u64)>>,
}

/// (device, inode, length) of a file.
fn identity(path: &Path) -> Option<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.len()))
}

/// How a component was obtained, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Compiled,
}

impl ArtifactCache {
    pub fn new(dir: &Path, target: &super::EngineTarget) -> std::io::Result<ArtifactCache> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            compiler: target.engine_name(),
            engine_tag: target.tag(),
            engine_descriptor: target.descriptor(),
            max_bytes: DEFAULT_MAX_BYTES,
            verified: Default::default(),
        })
    }

    /// The file an artifact of the component with `digest` has here.
    pub fn entry(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", &digest[..32], self.engine_tag))
    }

    /// Loads `wasm` from the cache or compiles (and caches) it.
    pub fn load_or_compile(&self, engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
        self.load_or_compile_with_source(engine, wasm)
            .map(|(c, _)| c)
    }

    pub fn load_or_compile_with_source(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> anyhow::Result<(Component, Source)> {
        self.load_or_compile_digested(engine, wasm, &digest(wasm))
    }

    /// Like [`ArtifactCache::load_or_compile_with_source`] for a caller
    /// that already has the component's [`digest`] (hashing 18 MiB twice
    /// would add ~15 ms to every reload).
    pub fn load_or_compile_digested(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
    ) -> anyhow::Result<(Component, Source)> {
        let rejected = match self.cached(engine, digest) {
            Ok(Some(component)) => return Ok((component, Source::Cache)),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        #[cfg(feature = "compiler")]
        {
            let _ = rejected;
            Ok((self.compile(engine, wasm, digest)?, Source::Compiled))
        }
        #[cfg(not(feature = "compiler"))]
        {
            let _ = wasm;
            let path = self.entry(digest);
            let why = match rejected {
                Some(e) => format!("the artifact {} is unusable: {e:#}", path.display()),
                None => format!("there is no artifact {}", path.display()),
            };
            anyhow::bail!(
                "this is a runtime-only build (no compiler) and needs an artifact precompiled \
                 for its engine ({}), but {why}; on the build machine run \
                 `wasi-python-host precompile --target <this device's triple> --out DIR` \
                 and copy DIR's files into {}",
                self.engine_descriptor,
                self.dir.display()
            )
        }
    }

    /// The cached artifact of the component with `digest`, if there is
    /// one. `Err` when there was an entry but it is unusable (checksum
    /// mismatch, refused by wasmtime); a build that can compile deletes it
    /// then, so the next step is a fresh compile, never trusting it.
    pub fn cached(&self, engine: &Engine, digest: &str) -> anyhow::Result<Option<Component>> {
        let path = self.entry(digest);
        self.load(engine, &path).inspect_err(|e| {
            if super::CAN_COMPILE {
                log::warn!(
                    "discarding cached {} artifact {}: {e:#}",
                    self.compiler,
                    path.display()
                );
                self.remove(digest);
            }
        })
    }

    /// Compiles `wasm` (whose [`digest`] is `digest`) with `engine`, caches
    /// the artifact and returns the component, mapped from the cache file
    /// when the write worked (file-backed code costs no RSS of its own).
    #[cfg(feature = "compiler")]
    pub fn compile(&self, engine: &Engine, wasm: &[u8], digest: &str) -> anyhow::Result<Component> {
        let path = self.entry(digest);
        let started = std::time::Instant::now();
        let artifact = engine.precompile_component(wasm)?;
        log::info!(
            "compiled {} KiB of WebAssembly for {} in {:.1} s",
            wasm.len() / 1024,
            self.compiler,
            started.elapsed().as_secs_f64()
        );
        match self.store(&path, &artifact) {
            Ok(()) => {
                if let Ok(Some(component)) = self.load(engine, &path) {
                    return Ok(component);
                }
            }
            Err(e) => log::warn!("could not cache artifact {}: {e}", path.display()),
        }
        // SAFETY: `artifact` was produced by this Engine just now.
        Ok(unsafe { Component::deserialize(engine, &artifact)? })
    }

    /// Deletes the entry of the component with `digest`, if any.
    pub fn remove(&self, digest: &str) {
        let path = self.entry(digest);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(checksum_path(&path));
    }

    /// Compiles `wasm` with `engine` (which may target another machine)
    /// into this folder under the name that target's host looks up.
    /// Returns the entry and whether it was compiled now (false: a
    /// checksum-valid entry was already there).
    #[cfg(feature = "compiler")]
    pub fn precompile_into(&self, engine: &Engine, wasm: &[u8]) -> anyhow::Result<(PathBuf, bool)> {
        let path = self.entry(&digest(wasm));
        if let (Ok(expected), Ok(actual)) = (
            std::fs::read_to_string(checksum_path(&path)),
            hash_file(&path),
        ) {
            if actual == expected.trim() {
                return Ok((path, false));
            }
        }
        let artifact = engine.precompile_component(wasm)?;
        self.store(&path, &artifact)
            .with_context(|| format!("failed to write {}", path.display()))?;
        Ok((path, true))
    }

    fn load(&self, engine: &Engine, path: &Path) -> anyhow::Result<Option<Component>> {
        let id = identity(path);
        let known = id.is_some_and(|id| {
            self.verified
                .lock()
                .expect("verified artifacts lock")
                .contains(&id)
        });
        if !known {
            if !self.verify(path)? {
                return Ok(None);
            }
            if let Some(id) = id {
                self.verified
                    .lock()
                    .expect("verified artifacts lock")
                    .insert(id);
            }
        }
        // Touch for LRU eviction.
        let _ =
            std::fs::File::open(path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        let started = std::time::Instant::now();
        // SAFETY: the file holds exactly what this host wrote (checksum
        // verified) for an Engine with the same compatibility hash; wasmtime
        // still checks the header and refuses a mismatch. Mapping the file
        // (instead of copying bytes) keeps the code file-backed and saves a
        // 37 MiB copy per load. Entries are only ever replaced by rename, by
        // this host, in a folder only this host's user can write.
        let component = unsafe { Component::deserialize_file(engine, path) }
            .map_err(anyhow::Error::from)
            .context("artifact rejected by wasmtime")?;
        // Only the pages plugins use should become resident.
        super::residency::track(path);
        log::debug!("deserialized artifact in {:?}", started.elapsed());
        Ok(Some(component))
    }

    /// Checks an entry against its stored SHA-256. `Ok(false)` when there
    /// is no (complete) entry.
    fn verify(&self, path: &Path) -> anyhow::Result<bool> {
        let expected = match std::fs::read_to_string(checksum_path(path)) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).context("checksum unreadable"),
        };
        // Streamed through a small buffer: reading 37 MiB into one Vec
        // would leave that much in a malloc arena after it is freed.
        let started = std::time::Instant::now();
        let digest = match hash_file(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).context("artifact unreadable"),
        };
        log::debug!("verified artifact in {:?}", started.elapsed());
        if digest != expected.trim() {
            anyhow::bail!("checksum mismatch (corrupt or foreign file)");
        }
        Ok(true)
    }

    #[cfg_attr(not(feature = "compiler"), allow(dead_code))]
    fn store(&self, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        crate::fsutil::write_atomically(path, artifact)?;
        // Written and synced: its pages are clean and can leave the page
        // cache now (see `residency`).
        super::residency::evict_path(path);
        crate::fsutil::write_atomically(
            &checksum_path(path),
            hex(&Sha256::digest(artifact)).as_bytes(),
        )?;
        if let Some(id) = identity(path) {
            self.verified
                .lock()
                .expect("verified artifacts lock")
                .insert(id);
        }
        self.evict(path);
        Ok(())
    }

    /// Deletes the oldest entries until the cache fits, never `keep`.
    #[cfg_attr(not(feature = "compiler"), allow(dead_code))]
    fn evict(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(checksum_path(&path));
            total -= len;
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The SHA-256 of a file, hex, read in 64 KiB pieces. The file leaves the
/// page cache afterwards: reading it once must not make all of it resident
/// when it is mapped next (see `residency`).
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    super::residency::evict(&file);
    Ok(hex(&hasher.finalize()))
}

/// The SHA-256 of a component, hex: its identity in the cache, and its
/// first 12 digits are the plugin version users see.
pub fn digest(wasm: &[u8]) -> String {
    hex(&Sha256::digest(wasm))
}

fn checksum_path(artifact: &Path) -> PathBuf {
    artifact.with_extension("sha256")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses what cannot be a component before spending time compiling it:
/// an empty or half-written file, a core module, something else entirely.
pub fn check_component_header(bytes: &[u8]) -> anyhow::Result<()> {
    match bytes.get(..8) {
        None => anyhow::bail!("only {} bytes (empty or still being written?)", bytes.len()),
        Some([0x00, b'a', b's', b'm', _, _, 0x01, 0x00]) => Ok(()),
        Some([0x00, b'a', b's', b'm', ..]) => {
            anyhow::bail!(
                "a core WebAssembly module, not a component: build it with componentize-py"
            )
        }
        Some(_) => anyhow::bail!("not WebAssembly (no \\0asm header)"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EngineTarget, WASMTIME_VERSION};

    #[test]
    fn wasmtime_version_matches_cargo_toml() {
        let manifest = include_str!("../../Cargo.toml");
        assert!(
            manifest.contains(&format!("wasmtime = {{ version = \"={WASMTIME_VERSION}\"")),
            "runtime::WASMTIME_VERSION must equal the exact wasmtime pin in Cargo.toml"
        );
    }

    #[test]
    fn device_and_build_machine_agree_on_the_tag() {
        // What `precompile --target` computes on the workstation must be
        // what the device computes for its own engine.
        let arm = EngineTarget::for_triple("armv7-unknown-linux-gnueabihf").unwrap();
        assert_eq!(arm.name, "pulley32");
        assert_eq!(arm.wasmtime_target.as_deref(), Some("pulley32"));
        let a64 = EngineTarget::for_triple("aarch64-unknown-linux-gnu").unwrap();
        assert_eq!(a64.name, "aarch64-linux");
        let here = EngineTarget {
            name: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            wasmtime_target: None,
        };
        let native_triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        if cfg!(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )) {
            assert_eq!(
                EngineTarget::for_triple(&native_triple).unwrap().tag(),
                here.tag()
            );
        }
        assert_ne!(arm.tag(), a64.tag());
        assert_eq!(a64.tag().len(), 16);
        assert!(EngineTarget::for_triple("mips-unknown-linux-gnu").is_err());
        assert!(EngineTarget::for_triple("nonsense").is_err());
    }
}
