//! The wasmtime side: one Engine, the epoch ticker, the artifact cache, and
//! turning traps into failures a user can read.
//!
//! Every plugin call runs with a fuel budget and an epoch deadline. The
//! ticker thread bumps the epoch every [`EPOCH_TICK`] while a call is
//! running, so a deadline of `deadline_ms` is `deadline_ms / 10` ticks
//! from the call's start; even `while True: pass` in Python is interrupted
//! there. Between calls the ticker sleeps (an idle host must not wake up
//! 100 times a second: it costs CPU, and power on a Pi).

mod cache;
mod instance;

pub use cache::{digest as cache_digest, ArtifactCache, Source as CacheSource};
pub use instance::{FailureKind, Instance, Kind, PluginFailure, Prepared};

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the epoch advances; the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The Engine every plugin shares, with the ticker that drives deadlines.
pub struct Runtime {
    engine: Engine,
    cache: ArtifactCache,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

/// WebAssembly calls in progress, in any Runtime of this process; the
/// epoch tickers only tick while it is above zero.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// The ticker threads to wake when a call starts.
static TICKERS: Mutex<Vec<Thread>> = Mutex::new(Vec::new());

/// Marks WebAssembly running (a call, an instantiation) until dropped, so
/// the epoch advances and the deadline set for it can expire.
pub struct Running(());

/// Starts the epoch tickers for a call; hold the guard for its duration.
pub fn running() -> Running {
    if RUNNING.fetch_add(1, Ordering::SeqCst) == 0 {
        if let Ok(tickers) = TICKERS.lock() {
            tickers.iter().for_each(Thread::unpark);
        }
    }
    Running(())
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The wasmtime version this host is built against; `Cargo.toml` pins it
/// exactly (a unit test checks the two agree). Part of every cache key.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Bump whenever [`engine_config`] changes what it sets: artifacts made
/// with the old settings then get a different cache key instead of being
/// offered to wasmtime and refused.
const ENGINE_CONFIG_REVISION: u32 = 1;

/// The Engine settings. Artifacts are only valid for an Engine built with
/// exactly these, which is why the cache key includes an engine tag (see
/// [`EngineTarget::tag`]).
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config
}

/// What an Engine produces or runs: native code for an architecture, or
/// Pulley bytecode. Names the target in logs and derives the cache tag,
/// identically on the build machine (`precompile --target`) and on the
/// device (with or without a compiler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineTarget {
    /// `pulley32`, `pulley64`, or `<arch>-<os>` such as `aarch64-linux`.
    pub name: String,
    /// The triple handed to `Config::target`, `None` for this machine.
    pub wasmtime_target: Option<String>,
}

impl EngineTarget {
    /// The target of an Engine built for this machine.
    pub fn native(engine: &Engine) -> EngineTarget {
        let name = if engine.is_pulley() {
            format!("pulley{}", usize::BITS)
        } else {
            format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
        };
        EngineTarget {
            name,
            wasmtime_target: None,
        }
    }

    /// The target for a Rust target triple (`aarch64-unknown-linux-gnu`,
    /// `armv7-unknown-linux-gnueabihf`) or a Pulley name (`pulley32`).
    /// 32-bit Arm and x86 map to `pulley32`: Cranelift has no backend for
    /// them, so a host built for them runs Pulley (wasmtime picks it by
    /// itself there).
    pub fn for_triple(triple: &str) -> anyhow::Result<EngineTarget> {
        let triple = triple.trim();
        let pulley = |bits: u32| EngineTarget {
            name: format!("pulley{bits}"),
            wasmtime_target: Some(format!("pulley{bits}")),
        };
        if triple == "pulley32" || triple == "pulley64" {
            return Ok(pulley(if triple == "pulley32" { 32 } else { 64 }));
        }
        let arch = triple.split('-').next().unwrap_or_default();
        let os = triple
            .split('-')
            .find(|p| ["linux", "darwin", "windows", "freebsd"].contains(p));
        let Some(os) = os else {
            anyhow::bail!(
                "`{triple}` is not a target triple such as aarch64-unknown-linux-gnu \
                 or armv7-unknown-linux-gnueabihf"
            );
        };
        match arch {
            "x86_64" | "aarch64" | "riscv64" | "riscv64gc" | "s390x" => Ok(EngineTarget {
                name: format!("{}-{os}", arch.trim_end_matches("gc")),
                wasmtime_target: Some(triple.to_string()),
            }),
            a if a.starts_with("arm") || a.starts_with("thumb") => Ok(pulley(32)),
            "i386" | "i586" | "i686" | "riscv32" | "riscv32gc" => Ok(pulley(32)),
            _ => anyhow::bail!("wasmtime has no backend for `{arch}` (target `{triple}`)"),
        }
    }

    pub fn is_pulley(&self) -> bool {
        self.name.starts_with("pulley")
    }

    /// The engine tag in cache file names: 16 hex digits of the SHA-256 of
    /// the wasmtime version, the target and our Engine settings.
    ///
    /// Not `Engine::precompile_compatibility_hash()`: that exists only in
    /// builds with a compiler (a runtime-only device build has none), and
    /// it hashes the ISA flags detected on the machine, so a device
    /// compiling for itself and a workstation compiling for it would never
    /// agree on a name. wasmtime still checks every artifact's header
    /// (target, flags, features, version) when it loads it, so a wrong
    /// artifact under a matching name is refused, never run.
    pub fn tag(&self) -> String {
        use sha2::{Digest, Sha256};
        let descriptor = self.descriptor();
        let hash = Sha256::digest(descriptor.as_bytes());
        hash[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// What [`EngineTarget::tag`] hashes, human-readable.
    pub fn descriptor(&self) -> String {
        format!(
            "wasmtime {WASMTIME_VERSION}; target {}; fuel; epoch; config rev {ENGINE_CONFIG_REVISION}",
            self.name
        )
    }
}

/// The Engine settings for `target`: [`engine_config`] plus the target.
pub fn engine_config_for(target: &EngineTarget) -> anyhow::Result<Config> {
    let mut config = engine_config();
    if let Some(t) = &target.wasmtime_target {
        config
            .target(t)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("wasmtime does not know the target `{t}`"))?;
    }
    Ok(config)
}

/// True when this build can compile WebAssembly (cargo feature `compiler`);
/// false for the runtime-only build, which only loads precompiled artifacts.
pub const CAN_COMPILE: bool = cfg!(feature = "compiler");

/// How plugins are compiled and run, for the start-up log.
pub fn describe_engine(target: &EngineTarget) -> String {
    let how = if target.is_pulley() {
        format!(
            "Pulley interpreter ({}; Cranelift has no native backend for {})",
            target.name,
            std::env::consts::ARCH
        )
    } else {
        format!("Cranelift native code ({})", target.name)
    };
    let compiler = if CAN_COMPILE {
        "compiles missing artifacts"
    } else {
        "runtime-only build: loads precompiled artifacts, cannot compile"
    };
    format!("wasmtime {WASMTIME_VERSION}: {how}; {compiler}")
}

impl Runtime {
    /// Creates the Engine and starts the epoch ticker. Artifacts go to
    /// `cache_dir`.
    pub fn new(cache_dir: &Path) -> anyhow::Result<Runtime> {
        let engine = Engine::new(&engine_config())
            .map_err(anyhow::Error::from)
            .context("failed to create the wasmtime engine")?;
        let target = EngineTarget::native(&engine);
        log::info!("{}", describe_engine(&target));
        #[cfg(feature = "compiler")]
        log::debug!(
            "engine tag {} ({}); wasmtime's own compatibility hash {:016x}",
            target.tag(),
            target.descriptor(),
            {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                engine.precompile_compatibility_hash().hash(&mut h);
                h.finish()
            }
        );
        let cache = ArtifactCache::new(cache_dir, &target).with_context(|| {
            format!(
                "failed to open the artifact cache in {}",
                cache_dir.display()
            )
        })?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("epoch-ticker".into())
                .spawn(move || {
                    loop {
                        // Idle: sleep until a call starts (`running()`
                        // unparks; a wake-up that came first is not lost).
                        while RUNNING.load(Ordering::SeqCst) == 0 {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            std::thread::park();
                        }
                        // Busy: the epoch follows the wall clock from the
                        // call's start, not the number of wake-ups (on a
                        // busy machine a sleep overruns, and counting
                        // wake-ups would stretch every deadline).
                        let start = std::time::Instant::now();
                        let mut ticks: u128 = 0;
                        while RUNNING.load(Ordering::SeqCst) > 0 && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(EPOCH_TICK);
                            let due = start.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                            while ticks < due {
                                engine.increment_epoch();
                                ticks += 1;
                            }
                        }
                    }
                })
                .context("failed to start the epoch ticker thread")?
        };
        if let Ok(mut tickers) = TICKERS.lock() {
            tickers.push(ticker.thread().clone());
        }
        Ok(Runtime {
            engine,
            cache,
            ticker_stop,
            ticker: Some(ticker),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// Loads the component in `path`, from the artifact cache when this
    /// exact file was compiled before by this Engine.
    pub fn load_component(&self, path: &Path) -> anyhow::Result<Component> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("failed to read plugin {}", path.display()))?;
        self.cache
            .load_or_compile(&self.engine, &bytes)
            .with_context(|| format!("failed to load plugin {}", path.display()))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            if let Ok(mut tickers) = TICKERS.lock() {
                tickers.retain(|th| th.id() != t.thread().id());
            }
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Epoch ticks for a deadline, at least one.
pub fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}
