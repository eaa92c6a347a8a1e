//! The wasmtime side: the Engine, the epoch ticker, the artifact cache, the
//! shared Python runtime, and turning traps into failures a user can read.
//!
//! Every plugin call runs with a fuel budget and an epoch deadline. The
//! ticker thread bumps the epoch every [`EPOCH_TICK`] while a call is
//! running, so a deadline of `deadline_ms` is `deadline_ms / 10` ticks from
//! the call's start; even `while True: pass` in Python is interrupted there.
//! Between calls the ticker sleeps (an idle host must not wake up 100 times
//! a second: it costs CPU, and power on a Pi).
//!
//! Compiling happens once per component: the shared Python runtime
//! ([`python`]) when it is built (or never, on a device that got it
//! precompiled), a component plugin when it changes. A plugin written as
//! Python source is never compiled to native code; the runtime compiles its
//! Python to bytecode, which [`bytecode`] caches.

pub mod bytecode;
mod cache;
mod instance;
pub mod python;
mod residency;

pub use cache::{
    check_component_header, digest as cache_digest, ArtifactCache, Source as CacheSource,
};
pub use instance::{check_exports, Instance, Prepared, Program, MAX_READINGS_PER_POLL};
pub use python::PythonRuntime;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use crate::capabilities::Interrupt;

/// How often the epoch advances; the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The Engine plugins run on, with the ticker that drives deadlines.
pub struct Runtime {
    engine: Engine,
    cache: ArtifactCache,
    target: EngineTarget,
    interrupt: Arc<Interrupt>,
    /// The shared Python runtime, once loaded (see [`Runtime::python`]).
    python: Mutex<Option<Arc<PythonRuntime>>>,
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
        let tickers = TICKERS.lock().expect("epoch tickers lock");
        tickers.iter().for_each(Thread::unpark);
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

    /// What runs the code: "pulley" (interpreted) or "cranelift" (native).
    pub fn engine_name(&self) -> &'static str {
        if self.is_pulley() {
            "pulley"
        } else {
            "cranelift"
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

/// An Engine that compiles for `target` (another machine's, for
/// `precompile --target`), with the host's settings. Fails naming the cargo
/// feature when this build lacks the target's Cranelift backend.
#[cfg(feature = "compiler")]
pub fn engine_for(target: &EngineTarget) -> anyhow::Result<Engine> {
    Engine::new(&engine_config_for(target)?)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "cannot compile for `{}`: this host was built without that \
                 Cranelift backend; build it with `--features precompile-all-targets`",
                target.name
            )
        })
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
        "compiles a missing artifact once"
    } else {
        "runtime-only build: loads precompiled artifacts, never compiles"
    };
    format!("wasmtime {WASMTIME_VERSION}: {how}; {compiler}")
}

/// Ticks added to the epoch on shutdown: more than any deadline a config
/// allows, so every call in progress traps at its next check.
const SHUTDOWN_TICKS: u64 = crate::config::MAX_DEADLINE_MS / EPOCH_TICK.as_millis() as u64 + 100;

impl Runtime {
    /// Creates the Engine and starts the epoch ticker. Artifacts go to
    /// `cache_dir`.
    pub fn new(cache_dir: &Path) -> anyhow::Result<Runtime> {
        Runtime::with_target(cache_dir, None)
    }

    /// Like [`Runtime::new`] with an Engine for `target` instead of this
    /// machine: `pulley64` runs everything on the Pulley interpreter, as an
    /// armv7 device does, which lets benchmarks and tests measure that
    /// engine on a workstation.
    pub fn with_target(cache_dir: &Path, target: Option<&EngineTarget>) -> anyhow::Result<Runtime> {
        let config = match target {
            Some(t) => engine_config_for(t)?,
            None => engine_config(),
        };
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("failed to create the wasmtime engine")?;
        let target = match target {
            Some(t) => t.clone(),
            None => EngineTarget::native(&engine),
        };
        log::debug!("engine tag {} ({})", target.tag(), target.descriptor());
        let cache = ArtifactCache::new(cache_dir, &target).with_context(|| {
            format!(
                "failed to open the artifact cache in {}",
                cache_dir.display()
            )
        })?;
        log::info!("{}", describe_engine(&target));
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
                        let start = Instant::now();
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
        TICKERS
            .lock()
            .expect("epoch tickers lock")
            .push(ticker.thread().clone());
        Ok(Runtime {
            engine,
            cache,
            target,
            interrupt: Arc::default(),
            python: Mutex::new(None),
            ticker_stop,
            ticker: Some(ticker),
        })
    }

    /// The Engine every plugin runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// What this Engine runs: the name in logs and `/api/plugins`.
    pub fn target(&self) -> &EngineTarget {
        &self.target
    }

    /// The shutdown signal every plugin context holds.
    pub fn interrupt(&self) -> Arc<Interrupt> {
        self.interrupt.clone()
    }

    /// Ends every plugin call and wait in progress, and refuses new waits:
    /// for shutdown, which must not depend on what a plugin does.
    pub fn interrupt_all(&self) {
        self.interrupt.stop();
        for _ in 0..SHUTDOWN_TICKS {
            self.engine.increment_epoch();
        }
    }

    /// A component from its artifact in the cache, or compiled (and
    /// cached) now. A cached entry that fails its checksum or that wasmtime
    /// refuses is deleted and recompiled, never run; a runtime-only build
    /// refuses instead of compiling, naming what to precompile.
    pub fn component(&self, wasm: &[u8], digest: &str) -> anyhow::Result<Component> {
        self.cache
            .load_or_compile_digested(&self.engine, wasm, digest)
            .map(|(component, _)| component)
    }

    /// The shared Python runtime, loaded on first use from `file` (or, on a
    /// device without the file, from the precompiled artifact the deploy put
    /// in the cache) and kept for the life of this Runtime: a rebuilt
    /// runtime applies at the next start.
    pub fn python(&self, file: &Path) -> anyhow::Result<Arc<PythonRuntime>> {
        let mut slot = self.python.lock().expect("python runtime lock");
        if let Some(python) = slot.as_ref() {
            return Ok(python.clone());
        }
        let python = Arc::new(python::load(self, file)?);
        *slot = Some(python.clone());
        Ok(python)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            // Dropping the runtime (shutdown, or unwinding from a panic)
            // must stop its ticker whatever poisoned the list.
            TICKERS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|th| th.id() != t.thread().id());
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

    /// Runs the loop with these limits; `armed` is told once the deadline
    /// is set.
    fn spin_armed(
        engine: &Engine,
        fuel: u64,
        deadline_ticks: u64,
        armed: Option<std::sync::mpsc::Sender<()>>,
    ) -> wasmtime::Error {
        let module = Module::new(engine, SPIN).unwrap();
        let mut store = Store::new(engine, ());
        store.set_fuel(fuel).unwrap();
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let f = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        store.set_epoch_deadline(deadline_ticks);
        if let Some(armed) = armed {
            armed.send(()).unwrap();
        }
        // The ticker only ticks while something marks a call as running.
        let _running = super::running();
        f.call(&mut store, ()).unwrap_err()
    }

    fn spin(engine: &Engine, fuel: u64, deadline_ticks: u64) -> wasmtime::Error {
        spin_armed(engine, fuel, deadline_ticks, None)
    }

    fn temp_runtime(tag: &str) -> (Runtime, std::path::PathBuf) {
        let dir = crate::fsutil::test_dir(&format!("rt-{tag}"));
        (Runtime::new(&dir).unwrap(), dir)
    }

    #[test]
    fn fuel_and_the_epoch_deadline_stop_a_loop() {
        let (runtime, dir) = temp_runtime("limits");
        let out_of_fuel = spin(runtime.engine(), 1_000_000, 1_000_000);
        assert_eq!(
            out_of_fuel.downcast_ref::<Trap>(),
            Some(&Trap::OutOfFuel),
            "{out_of_fuel:?}"
        );
        // 3 ticks of the runtime's own ticker.
        let timed_out = spin(runtime.engine(), u64::MAX, 3);
        assert_eq!(
            timed_out.downcast_ref::<Trap>(),
            Some(&Trap::Interrupt),
            "{timed_out:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn interrupt_all_ends_a_call_and_a_wait_in_progress() {
        let (runtime, dir) = temp_runtime("interrupt");
        let runtime = Arc::new(runtime);
        let interrupt = runtime.interrupt();
        let sleeper = std::thread::spawn(move || interrupt.sleep(Duration::from_secs(600)));
        // A loop with the longest deadline a config allows (60 s), which
        // only the shutdown can end early.
        let engine = runtime.engine().clone();
        let (armed, is_armed) = std::sync::mpsc::channel();
        let caller = std::thread::spawn(move || spin_armed(&engine, u64::MAX, 6_000, Some(armed)));
        // Once the call's deadline is set, moving the epoch past it ends the
        // call whether or not it has entered the loop yet. (The sleeper may
        // not have started: the flag it checks first covers that.)
        is_armed.recv().unwrap();
        runtime.interrupt_all();
        assert!(!sleeper.join().unwrap(), "the sleep was not interrupted");
        let trapped = caller.join().unwrap();
        assert_eq!(trapped.downcast_ref::<Trap>(), Some(&Trap::Interrupt));
        assert!(runtime.interrupt().stopping());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
