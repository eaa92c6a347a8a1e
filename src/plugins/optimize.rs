//! The background compile of the optimized tier.
//!
//! A plugin with no cached optimized artifact is served from its quick
//! (Winch) build at once; the loader then asks this thread for the
//! Cranelift build. One component at a time, in a low-priority thread pool
//! (see [`Runtime::optimize`]), so it never holds up the scheduler or the
//! quick compile of another reload. The result goes back to the loader as
//! an [`Event::Optimized`](super::reload::Event), and the loader swaps the
//! optimized build in through the scheduler's normal install path.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use wasmtime::component::Component;

use super::reload::Event;
use crate::runtime::Runtime;

/// What became of one requested optimized build.
pub struct Optimized {
    /// The SHA-256 of the component.
    pub digest: String,
    pub outcome: Outcome,
    /// How long the compile took.
    pub took: Duration,
}

pub enum Outcome {
    /// Compiled and cached.
    Ready(Component),
    /// Compiling failed; the quick build keeps running.
    Failed(String),
    /// No plugin ran this component any more when its turn came; here are
    /// its bytes in case one does again.
    Skipped(Vec<u8>),
}

struct Job {
    digest: String,
    wasm: Vec<u8>,
}

/// The loader's handle on the background compile thread.
pub struct Optimizer {
    jobs: Sender<Job>,
    /// Components some plugin is running the quick build of. A queued job
    /// for anything else is skipped.
    wanted: Arc<Mutex<HashSet<String>>>,
    /// Requested and not reported back yet.
    pending: HashSet<String>,
}

impl Optimizer {
    /// Starts the thread; results are sent to `done`.
    pub fn start(runtime: Arc<Runtime>, done: Sender<Event>) -> std::io::Result<Optimizer> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let wanted: Arc<Mutex<HashSet<String>>> = Arc::default();
        let still_wanted = wanted.clone();
        std::thread::Builder::new()
            .name("optimizer".into())
            .spawn(move || {
                for job in queue {
                    let wanted = still_wanted
                        .lock()
                        .map(|w| w.contains(&job.digest))
                        .unwrap_or(true);
                    let started = Instant::now();
                    let outcome = if wanted {
                        let outcome = compile(&runtime, &job);
                        // Cranelift's working set is hundreds of MiB.
                        super::reload::release_freed_memory();
                        outcome
                    } else {
                        Outcome::Skipped(job.wasm)
                    };
                    let result = Optimized {
                        digest: job.digest,
                        outcome,
                        took: started.elapsed(),
                    };
                    if done.send(Event::Optimized(result)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Optimizer {
            jobs,
            wanted,
            pending: HashSet::new(),
        })
    }

    /// Asks for the optimized build of `wasm` (SHA-256 `digest`), unless
    /// it is already asked for.
    pub fn request(&mut self, digest: &str, wasm: Vec<u8>) {
        if self.pending.insert(digest.to_string()) {
            let _ = self.jobs.send(Job {
                digest: digest.to_string(),
                wasm,
            });
        }
    }

    /// Records that a result for `digest` arrived.
    pub fn finished(&mut self, digest: &str) {
        self.pending.remove(digest);
    }

    /// The components plugins currently run quick builds of.
    pub fn set_wanted(&self, digests: HashSet<String>) {
        if let Ok(mut w) = self.wanted.lock() {
            *w = digests;
        }
    }
}

fn compile(runtime: &Runtime, job: &Job) -> Outcome {
    // Debug builds only: lets a test take the path where Cranelift fails
    // and the quick build must keep serving.
    #[cfg(debug_assertions)]
    if std::env::var_os("WHP_TEST_FAIL_OPTIMIZE").is_some() {
        return Outcome::Failed("injected by WHP_TEST_FAIL_OPTIMIZE (a test hook)".into());
    }
    #[cfg(feature = "compiler")]
    {
        match runtime.optimize(&job.wasm, &job.digest) {
            Ok(component) => Outcome::Ready(component),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        }
    }
    #[cfg(not(feature = "compiler"))]
    {
        let _ = (runtime, job);
        Outcome::Failed("this build has no compiler".into())
    }
}
