//! The wasmtime side: one Engine, the epoch ticker, the artifact cache, and
//! turning traps into failures a user can read.
//!
//! Every plugin call runs with a fuel budget and an epoch deadline. The
//! ticker thread bumps the epoch every [`EPOCH_TICK`], so a deadline of
//! `deadline_ms` is `deadline_ms / 10` ticks; even `while True: pass` in
//! Python is interrupted there.

mod cache;
mod instance;

pub use cache::{digest as cache_digest, ArtifactCache, Source as CacheSource};
pub use instance::{FailureKind, Instance, Kind, PluginFailure, Prepared};

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
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

/// The Engine settings. Artifacts are only valid for an Engine built with
/// exactly these, which is why the cache key includes the Engine's
/// compatibility hash.
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config
}

impl Runtime {
    /// Creates the Engine and starts the epoch ticker. Artifacts go to
    /// `cache_dir`.
    pub fn new(cache_dir: &Path) -> anyhow::Result<Runtime> {
        let engine = Engine::new(&engine_config())
            .map_err(anyhow::Error::from)
            .context("failed to create the wasmtime engine")?;
        let cache = ArtifactCache::new(cache_dir, &engine).with_context(|| {
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
                    // The epoch follows the wall clock, not the number of
                    // wake-ups: on a busy machine a sleep overruns, and
                    // counting wake-ups would stretch every deadline.
                    let start = std::time::Instant::now();
                    let mut epoch: u128 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        let due = start.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                        while epoch < due {
                            engine.increment_epoch();
                            epoch += 1;
                        }
                    }
                })
                .context("failed to start the epoch ticker thread")?
        };
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
            .with_context(|| format!("failed to compile plugin {}", path.display()))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// Epoch ticks for a deadline, at least one.
pub fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}
