//! The wasmtime side: the Engines (the optimized tier and, where there is
//! one, the quick tier), the epoch ticker, the artifact caches, and turning
//! traps into failures a user can read.
//!
//! Every plugin call runs with a fuel budget and an epoch deadline. The
//! ticker thread bumps the epoch of every Engine every [`EPOCH_TICK`] while
//! a call is running, so a deadline of `deadline_ms` is `deadline_ms / 10`
//! ticks from the call's start; even `while True: pass` in Python is
//! interrupted there. Between calls the ticker sleeps (an idle host must not
//! wake up 100 times a second: it costs CPU, and power on a Pi).
//!
//! Compile tiers: Cranelift makes fast code slowly (~10 s for a Python
//! component here, minutes on a Pi). Where the host can compile native code
//! (x86_64, aarch64) it also has a Winch Engine, which compiles 3-4x faster
//! into code that runs ~2x slower. [`Runtime::component`] serves a
//! component with no cached optimized artifact from Winch, and
//! [`Runtime::optimize`] builds the Cranelift artifact later, in a
//! low-priority thread pool. Both Engines have the same fuel and epoch
//! settings; their artifacts have different cache tags and never share a
//! Store.

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

/// The Engines plugins run on, with the ticker that drives deadlines.
pub struct Runtime {
    /// The optimized tier (Cranelift, or Pulley where there is no native
    /// backend): what precompiled artifacts and steady state use.
    engine: Engine,
    cache: ArtifactCache,
    tier: Tier,
    /// The quick tier (Winch), when this build can compile native code.
    quick: Option<(Engine, ArtifactCache)>,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

/// Which compiler made the code a plugin runs, as `/api/plugins` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Quick to compile, ~2x slower to run; served until Cranelift is done.
    Winch,
    /// Optimized native code.
    Cranelift,
    /// Pulley bytecode (armv7: no native backend, no tiers).
    Pulley,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Winch => "winch",
            Tier::Cranelift => "cranelift",
            Tier::Pulley => "pulley",
        }
    }

    /// Whether a faster build of the same component should replace it.
    pub fn is_quick(self) -> bool {
        self == Tier::Winch
    }
}

/// Niceness of the background (optimizing) compile threads: the scheduler,
/// HTTP and a quick compile for another reload come first, so a plugin's
/// wall-clock deadline is not eaten by our own compiler.
pub const BACKGROUND_NICE: i32 = 10;

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

/// The quick tier's settings: [`engine_config`] (the same fuel and epoch
/// instrumentation, so every limit holds) compiled by Winch. wasmtime
/// turns off the proposals Winch lacks (tail calls, exceptions, GC); a
/// component that needs them fails to compile there and goes straight to
/// Cranelift.
#[cfg(feature = "compiler")]
pub fn quick_engine_config() -> Config {
    let mut config = engine_config();
    config.strategy(wasmtime::Strategy::Winch);
    config
}

/// Whether this build has a quick tier for an Engine like `engine`: it
/// must compile (cargo feature `compiler`) native code on an architecture
/// Winch supports. Pulley (armv7) has none.
pub fn has_quick_tier(engine: &Engine) -> bool {
    CAN_COMPILE && !engine.is_pulley() && cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
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
    /// Compiled by Winch (the quick tier) rather than Cranelift.
    pub quick: bool,
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
            quick: false,
        }
    }

    /// The quick (Winch) tier of the same target.
    pub fn quick(&self) -> EngineTarget {
        EngineTarget {
            quick: true,
            ..self.clone()
        }
    }

    /// The tier this target's artifacts are.
    pub fn tier(&self) -> Tier {
        if self.is_pulley() {
            Tier::Pulley
        } else if self.quick {
            Tier::Winch
        } else {
            Tier::Cranelift
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
            quick: false,
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
                quick: false,
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

    /// What [`EngineTarget::tag`] hashes, human-readable. The optimized
    /// tier's text predates tiers and stays as it was, so existing caches
    /// and precompiled folders stay valid; the quick tier's names Winch.
    pub fn descriptor(&self) -> String {
        format!(
            "wasmtime {WASMTIME_VERSION}; target {}; fuel; epoch; config rev {ENGINE_CONFIG_REVISION}{}",
            self.name,
            if self.quick { "; compiler winch" } else { "" }
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
pub fn describe_engine(target: &EngineTarget, quick: bool) -> String {
    let how = if target.is_pulley() {
        format!(
            "Pulley interpreter ({}; Cranelift has no native backend for {})",
            target.name,
            std::env::consts::ARCH
        )
    } else {
        format!("Cranelift native code ({})", target.name)
    };
    let compiler = if quick {
        "compiles missing artifacts, Winch first (served at once) then Cranelift in the background"
    } else if CAN_COMPILE {
        "compiles missing artifacts"
    } else {
        "runtime-only build: loads precompiled artifacts, cannot compile"
    };
    format!("wasmtime {WASMTIME_VERSION}: {how}; {compiler}")
}

impl Runtime {
    /// Creates the Engines and starts the epoch ticker. Artifacts go to
    /// `cache_dir`.
    pub fn new(cache_dir: &Path) -> anyhow::Result<Runtime> {
        let engine = Engine::new(&engine_config())
            .map_err(anyhow::Error::from)
            .context("failed to create the wasmtime engine")?;
        let target = EngineTarget::native(&engine);
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
        let quick = Self::quick_tier(&engine, &target, cache_dir);
        log::info!("{}", describe_engine(&target, quick.is_some()));
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            // Epochs are per Engine: each tier's deadlines need their own.
            let mut engines = vec![engine.clone()];
            engines.extend(quick.as_ref().map(|(e, _)| e.clone()));
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
                                for engine in &engines {
                                    engine.increment_epoch();
                                }
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
            tier: target.tier(),
            engine,
            cache,
            quick,
            ticker_stop,
            ticker: Some(ticker),
        })
    }

    /// The Winch Engine and its cache, where this build has a quick tier.
    /// Not having one is not an error: plugins then wait for Cranelift.
    fn quick_tier(
        engine: &Engine,
        target: &EngineTarget,
        cache_dir: &Path,
    ) -> Option<(Engine, ArtifactCache)> {
        if !has_quick_tier(engine) {
            return None;
        }
        #[cfg(feature = "compiler")]
        {
            let made = Engine::new(&quick_engine_config())
                .map_err(anyhow::Error::from)
                .and_then(|e| Ok((e, ArtifactCache::new(cache_dir, &target.quick())?)));
            match made {
                Ok(quick) => Some(quick),
                Err(e) => {
                    log::warn!("no quick compile tier (Winch): {e:#}; plugins wait for Cranelift");
                    None
                }
            }
        }
        #[cfg(not(feature = "compiler"))]
        {
            let _ = (target, cache_dir);
            None
        }
    }

    /// The optimized tier's Engine: the one precompiled artifacts are for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The optimized tier's cache.
    pub fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// The optimized tier: Cranelift, or Pulley where there is no native
    /// backend.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Whether a component can be served from Winch first.
    pub fn has_quick_tier(&self) -> bool {
        self.quick.is_some()
    }

    /// The Engine that runs artifacts of `tier`.
    pub fn engine_for(&self, tier: Tier) -> &Engine {
        match (&self.quick, tier) {
            (Some((quick, _)), Tier::Winch) => quick,
            _ => &self.engine,
        }
    }

    /// The quickest way to a runnable component with the SHA-256 `digest`:
    /// the cached optimized artifact; else, with a quick tier, the Winch
    /// artifact (cached or compiled now, 3-4x faster than Cranelift), which
    /// the caller should have [`Runtime::optimize`]d later; else Cranelift
    /// now. A cached entry that fails its checksum or that wasmtime refuses
    /// is deleted and recompiled, never run.
    pub fn component(&self, wasm: &[u8], digest: &str) -> anyhow::Result<(Component, Tier)> {
        if let Some((quick_engine, quick_cache)) = &self.quick {
            if let Ok(Some(component)) = self.cache.cached(&self.engine, digest) {
                return Ok((component, self.tier));
            }
            match quick_cache.load_or_compile_digested(quick_engine, wasm, digest) {
                Ok((component, _)) => return Ok((component, Tier::Winch)),
                Err(e) => log::warn!(
                    "Winch cannot compile this component ({e:#}); compiling it with {} instead",
                    self.tier.as_str()
                ),
            }
        }
        let (component, _) = self
            .cache
            .load_or_compile_digested(&self.engine, wasm, digest)?;
        Ok((component, self.tier))
    }

    /// Builds and caches the optimized artifact of a component served from
    /// the quick tier, in a thread pool of its own at [`BACKGROUND_NICE`],
    /// then deletes the Winch artifact (a restart prefers the optimized one,
    /// so it would never be loaded again). Takes as long as a Cranelift
    /// compile; call it off the scheduler and loader threads.
    #[cfg(feature = "compiler")]
    pub fn optimize(&self, wasm: &[u8], digest: &str) -> anyhow::Result<Component> {
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("optimize-{i}"))
            .start_handler(|_| lower_this_threads_priority())
            .build()
            .context("cannot start the background compile threads")?;
        let component = pool.install(|| self.cache.compile(&self.engine, wasm, digest))?;
        if let Some((_, quick_cache)) = &self.quick {
            quick_cache.remove(digest);
        }
        Ok(component)
    }

    /// Loads the component in `path`, from the artifact cache when this
    /// exact file was compiled before by the optimized Engine.
    pub fn load_component(&self, path: &Path) -> anyhow::Result<Component> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("failed to read plugin {}", path.display()))?;
        self.cache
            .load_or_compile(&self.engine, &bytes)
            .with_context(|| format!("failed to load plugin {}", path.display()))
    }
}

/// Runs the calling thread at [`BACKGROUND_NICE`] (on Linux niceness is
/// per thread). Failing to is harmless: the compile just competes evenly.
#[cfg(feature = "compiler")]
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes the niceness of the calling thread
    // (its thread id), which is always allowed to lower its own priority.
    unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            BACKGROUND_NICE,
        );
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

#[cfg(all(test, feature = "compiler"))]
mod tests {
    use super::*;
    use wasmtime::{Instance, Module, Store, Trap};

    /// `(module (func (export "spin") (loop (br 0))))`
    const SPIN: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
        0x03, 0x02, 0x01, 0x00, // one function
        0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00, // export
        0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop
    ];

    fn spin(engine: &Engine, fuel: u64, deadline_ticks: u64) -> wasmtime::Error {
        let module = Module::new(engine, SPIN).unwrap();
        let mut store = Store::new(engine, ());
        store.set_fuel(fuel).unwrap();
        store.set_epoch_deadline(deadline_ticks);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let f = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        // The ticker only ticks while something marks a call as running.
        let _running = super::running();
        f.call(&mut store, ()).unwrap_err()
    }

    #[test]
    fn winch_code_is_stopped_by_fuel_and_by_the_epoch_deadline() {
        let dir = std::env::temp_dir().join(format!("whp-tiers-{}", std::process::id()));
        let runtime = Runtime::new(&dir).unwrap();
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert!(runtime.has_quick_tier(), "native builds have a Winch tier");
        }
        let quick = runtime.engine_for(Tier::Winch);
        let out_of_fuel = spin(quick, 1_000_000, 1_000_000);
        assert_eq!(
            out_of_fuel.downcast_ref::<Trap>(),
            Some(&Trap::OutOfFuel),
            "{out_of_fuel:?}"
        );
        // 3 ticks of the runtime's own ticker, which must drive this Engine too.
        let timed_out = spin(quick, u64::MAX, 3);
        assert_eq!(
            timed_out.downcast_ref::<Trap>(),
            Some(&Trap::Interrupt),
            "{timed_out:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_tiers_never_take_each_others_artifacts() {
        let dir = std::env::temp_dir().join(format!("whp-tiers-mix-{}", std::process::id()));
        let runtime = Runtime::new(&dir).unwrap();
        assert!(runtime.has_quick_tier());
        let quick = runtime.engine_for(Tier::Winch);
        let winch_artifact = quick.precompile_module(SPIN).unwrap();
        // SAFETY: the bytes come from this process's own Winch Engine; the
        // point is that the Cranelift Engine refuses them.
        let refused = unsafe { Module::deserialize(runtime.engine(), &winch_artifact) };
        assert!(
            refused.is_err(),
            "a Winch artifact must not load as Cranelift"
        );
        // SAFETY: as above, into the Engine that made it.
        assert!(unsafe { Module::deserialize(quick, &winch_artifact) }.is_ok());

        let native = EngineTarget::native(runtime.engine());
        assert_eq!(native.tier(), Tier::Cranelift);
        assert_eq!(native.quick().tier(), Tier::Winch);
        assert_ne!(native.tag(), native.quick().tag());
        // The optimized tier keeps its pre-tier name, so caches and
        // precompiled folders stay valid.
        assert!(!native.descriptor().contains("winch"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
