//! Clock waits (`time.sleep` in Python), served by the host so that no
//! wait outlives the call's deadline.
//!
//! A WASI clock wait is a host call: while the plugin waits, no WebAssembly
//! runs, so the epoch deadline cannot interrupt it, and a plugin that
//! sleeps for an hour would hold the scheduler (and shutdown) for an hour.
//! Here the two functions that start a wait,
//! `wasi:clocks/monotonic-clock.subscribe-duration` and `subscribe-instant`,
//! are replaced: a wait that fits in what is left of the call's deadline is
//! served right away (an interruptible sleep; a shutdown ends it), and the
//! timer handed back is already due; a wait that does not fit traps at
//! once, as a timeout, without waiting. The other clock functions are
//! wasmtime-wasi's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host as _;
use wasmtime_wasi::p2::DynPollable;

use super::PluginCtx;
use crate::failure::{FailureKind, HostTrap};

/// Ends every wait a plugin is in (a `time.sleep` the host serves) and
/// every call in progress, when the host shuts down: shutdown must not wait
/// for a plugin, whatever it does.
#[derive(Default)]
pub struct Interrupt {
    stopping: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Interrupt {
    /// Sleeps for `duration` unless the host starts shutting down first.
    /// Returns false when it was interrupted.
    pub fn sleep(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        let mut guard = match self.lock.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            guard = match self.wake.wait_timeout(guard, until - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Starts the shutdown: for `Runtime::interrupt_all`.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _guard = self.lock.lock();
        self.wake.notify_all();
    }
}

/// The monotonic-clock interface as wasmtime-wasi 48 links it (components
/// importing an older 0.2 release are matched to it by semver).
pub const INTERFACE: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces the two waiting functions of the monotonic clock in `linker`,
/// which must already hold WASI.
pub fn add_to_linker(linker: &mut Linker<PluginCtx>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(INTERFACE)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, PluginCtx>, (nanos,): (u64,)| {
            let ctx = store.data_mut();
            wait(ctx, Duration::from_nanos(nanos))?;
            Ok((due_now(ctx)?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, PluginCtx>, (when,): (u64,)| {
            let ctx = store.data_mut();
            let now = ctx.clocks().now()?;
            wait(ctx, Duration::from_nanos(when.saturating_sub(now)))?;
            Ok((due_now(ctx)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Waits `duration` if it ends before the call's deadline; otherwise traps
/// at once. Outside a call (there is no deadline) only a zero wait is
/// allowed.
fn wait(ctx: &mut PluginCtx, duration: Duration) -> wasmtime::Result<()> {
    if duration.is_zero() {
        return Ok(());
    }
    let left = ctx
        .deadline
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or_default();
    if duration > left {
        return Err(wasmtime::Error::new(HostTrap {
            kind: FailureKind::Timeout,
            message: format!(
                "timed out: the plugin asked to wait {} ms (time.sleep?), but its call had only \
                 {} ms left before its deadline (limits.deadline_ms); a plugin must not wait \
                 past its call: use a shorter interval_ms instead",
                duration.as_millis(),
                left.as_millis()
            ),
        }));
    }
    if !ctx.interrupt.sleep(duration) {
        return Err(wasmtime::Error::new(HostTrap {
            kind: FailureKind::Host,
            message: "the host is shutting down".into(),
        }));
    }
    Ok(())
}

/// A timer that is already due, for the guest's poll to return at once.
fn due_now(ctx: &mut PluginCtx) -> wasmtime::Result<Resource<DynPollable>> {
    ctx.clocks().subscribe_duration(0)
}
