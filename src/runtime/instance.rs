//! One plugin instance: a Store, the export it serves, and calls under limits.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::bail;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store, Trap};

use crate::capabilities::PluginCtx;

/// Lines of guest output logged per call; the rest are counted.
const MAX_FORWARDED_LINES: usize = 50;
use crate::config::Limits;
use crate::contract::{self, bme680_logic, dashboard, dht22_logic, pi_monitor_logic};

/// What a plugin is, from the entry point it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dht22,
    Bme680,
    PiMonitor,
    Dashboard,
}

impl Kind {
    const ALL: [(Kind, &'static str); 4] = [
        (Kind::Dht22, "dht22-logic"),
        (Kind::Bme680, "bme680-logic"),
        (Kind::PiMonitor, "pi-monitor-logic"),
        (Kind::Dashboard, "dashboard"),
    ];

    pub fn interface(self) -> &'static str {
        Kind::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| *n)
            .unwrap_or("")
    }

    /// The kind a component is, from its exports; exactly one entry point.
    pub fn of(engine: &Engine, component: &Component) -> anyhow::Result<Kind> {
        let prefix = format!("{}/", contract::PACKAGE);
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let found: Vec<Kind> = exports
            .iter()
            .filter_map(|name| {
                let iface = name.strip_prefix(&prefix)?;
                let (iface, version) = iface.split_once('@').unwrap_or((iface, ""));
                let kind = Kind::ALL.iter().find(|(_, n)| *n == iface)?.0;
                Some((kind, version))
            })
            .map(|(kind, version)| {
                if version != contract::VERSION {
                    bail!(
                        "the plugin was built against contract {}@{version}, this host implements {}@{}: rebuild it with this host's wit/ folder",
                        contract::PACKAGE,
                        contract::PACKAGE,
                        contract::VERSION
                    );
                }
                Ok(kind)
            })
            .collect::<anyhow::Result<_>>()?;
        match found.as_slice() {
            [kind] => Ok(*kind),
            [] => {
                bail!(
                "the component exports none of this host's entry points ({}); its exports are: {}",
                Kind::ALL.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", "),
                if exports.is_empty() { "none".to_string() } else { exports.join(", ") }
            )
            }
            _ => bail!(
                "the component exports more than one entry point; a plugin must export exactly one"
            ),
        }
    }
}

/// Why a call failed, in the words a user needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The call ran past its wall-clock deadline.
    Timeout,
    /// The call used its whole fuel budget.
    OutOfFuel,
    /// Linear memory hit its limit.
    OutOfMemory,
    /// Python raised and did not catch an exception.
    PythonException,
    /// The call recursed past the stack limit.
    StackOverflow,
    /// Any other WebAssembly trap.
    Trap,
    /// The plugin returned something the host refuses (too large, invalid).
    BadResult,
    /// The call printed more than the capture cap.
    OutputFlood,
    /// Instantiation or a host-side error.
    Host,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::OutOfMemory => "out_of_memory",
            FailureKind::PythonException => "python_exception",
            FailureKind::StackOverflow => "stack_overflow",
            FailureKind::Trap => "trap",
            FailureKind::BadResult => "bad_result",
            FailureKind::OutputFlood => "output_flood",
            FailureKind::Host => "host_error",
        }
    }
}

/// A failed plugin call.
#[derive(Debug, Clone)]
pub struct PluginFailure {
    pub kind: FailureKind,
    /// One line: what happened.
    pub message: String,
    /// The Python traceback or other guest stderr, when there is one.
    pub detail: String,
}

impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A compiled plugin ready to instantiate quickly (~1 ms, copy-on-write).
#[derive(Clone)]
pub struct Prepared {
    pre: InstancePre<PluginCtx>,
    pub kind: Kind,
}

enum Guest {
    Dht22(dht22_logic::Guest),
    Bme680(bme680_logic::Guest),
    PiMonitor(pi_monitor_logic::Guest),
    Dashboard(dashboard::Guest),
}

/// A live instance. After any trap it must be thrown away.
pub struct Instance {
    store: Store<PluginCtx>,
    guest: Guest,
    /// Fuel used by the last call.
    pub last_fuel: u64,
    pub last_duration: Duration,
    /// Bytes of stdout and stderr already sent to the log.
    forwarded: [usize; 2],
}

impl Prepared {
    pub fn new(
        engine: &Engine,
        component: &Component,
        linker: &Linker<PluginCtx>,
    ) -> anyhow::Result<Prepared> {
        let kind = Kind::of(engine, component)?;
        let pre = linker.instantiate_pre(component)?;
        Ok(Prepared { pre, kind })
    }

    pub fn instantiate(&self, ctx: PluginCtx, limits: &Limits) -> Result<Instance, PluginFailure> {
        let engine = self.pre.engine().clone();
        let mut store = Store::new(&engine, ctx);
        store.limiter(|c| &mut c.limits);
        // Instantiation runs no Python (componentize-py pre-initialises), but
        // give it the same bounds as a call anyway.
        let _ = store.set_fuel(limits.fuel);
        store.set_epoch_deadline(super::deadline_ticks(Duration::from_millis(
            limits.deadline_ms,
        )));
        let _running = super::running();
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, &store, limits))?;
        let guest = (|| -> anyhow::Result<Guest> {
            Ok(match self.kind {
                Kind::Dht22 => Guest::Dht22(
                    dht22_logic::GuestIndices::new(&self.pre)?.load(&mut store, &instance)?,
                ),
                Kind::Bme680 => Guest::Bme680(
                    bme680_logic::GuestIndices::new(&self.pre)?.load(&mut store, &instance)?,
                ),
                Kind::PiMonitor => Guest::PiMonitor(
                    pi_monitor_logic::GuestIndices::new(&self.pre)?.load(&mut store, &instance)?,
                ),
                Kind::Dashboard => Guest::Dashboard(
                    dashboard::GuestIndices::new(&self.pre)?.load(&mut store, &instance)?,
                ),
            })
        })()
        .map_err(|e| PluginFailure {
            kind: FailureKind::Host,
            message: format!("entry point not usable: {e:#}"),
            detail: String::new(),
        })?;
        Ok(Instance {
            store,
            guest,
            last_fuel: 0,
            last_duration: Duration::ZERO,
            forwarded: [0, 0],
        })
    }
}

impl Instance {
    pub fn ctx(&self) -> &PluginCtx {
        self.store.data()
    }

    pub fn ctx_mut(&mut self) -> &mut PluginCtx {
        self.store.data_mut()
    }

    fn call<R>(
        &mut self,
        limits: &Limits,
        f: impl FnOnce(&Guest, &mut Store<PluginCtx>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFailure> {
        // An Engine without fuel metering (the benchmarks' limits-off
        // baseline, examples/callbench.rs) has no budget to set.
        let metered = self.store.get_fuel().is_ok();
        if metered {
            self.store
                .set_fuel(limits.fuel)
                .map_err(|e| host_failure(e.into()))?;
        }
        self.store
            .set_epoch_deadline(super::deadline_ticks(Duration::from_millis(
                limits.deadline_ms,
            )));
        let _running = super::running();
        let started = Instant::now();
        let result = f(&self.guest, &mut self.store);
        self.last_duration = started.elapsed();
        self.last_fuel = match self.store.get_fuel() {
            Ok(left) if metered => limits.fuel.saturating_sub(left),
            _ => 0,
        };
        self.forward_output();
        result.map_err(|e| classify(e, &self.store, limits))
    }

    /// Sends what the guest printed since the last call to the host log.
    fn forward_output(&mut self) {
        let ctx = self.store.data();
        for (i, (pipe, stream)) in [(&ctx.stdout, "stdout"), (&ctx.stderr, "stderr")]
            .into_iter()
            .enumerate()
        {
            let bytes = pipe.contents();
            let new = bytes.get(self.forwarded[i]..).unwrap_or_default();
            self.forwarded[i] = bytes.len();
            if new.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(new);
            let mut lines = text.lines();
            for line in lines.by_ref().take(MAX_FORWARDED_LINES) {
                log::info!(target: "plugin", "[{}] {stream}: {}", ctx.plugin, crate::capabilities::log::truncate(line, 1024));
            }
            let rest = lines.count();
            if rest > 0 {
                log::warn!(target: "plugin", "[{}] {stream}: {rest} more lines not logged", ctx.plugin);
            }
        }
    }

    /// Bytes of linear memory this instance holds.
    pub fn memory_bytes(&self) -> u64 {
        self.store.data().limits.memory_bytes
    }

    /// The capture pipes only grow; once half full the instance should be
    /// replaced (cheaply) so the next call has room to print.
    pub fn output_nearly_full(&self) -> bool {
        self.forwarded
            .iter()
            .any(|&n| n > crate::capabilities::OUTPUT_CAPTURE_BYTES / 2)
    }

    pub fn poll_dht22(
        &mut self,
        limits: &Limits,
    ) -> Result<Vec<contract::types::Dht22Reading>, PluginFailure> {
        let readings = self.call(limits, |g, s| match g {
            Guest::Dht22(g) => g.call_poll(s),
            _ => Err(wasmtime::Error::msg("not a dht22 plugin")),
        })?;
        check_readings(limits, &readings, |r| (&r.sensor_id, &r.message))?;
        Ok(readings)
    }

    pub fn poll_bme680(
        &mut self,
        limits: &Limits,
    ) -> Result<Vec<contract::types::Bme680Reading>, PluginFailure> {
        let readings = self.call(limits, |g, s| match g {
            Guest::Bme680(g) => g.call_poll(s),
            _ => Err(wasmtime::Error::msg("not a bme680 plugin")),
        })?;
        check_readings(limits, &readings, |r| (&r.sensor_id, &r.message))?;
        Ok(readings)
    }

    pub fn poll_pi_monitor(
        &mut self,
        limits: &Limits,
    ) -> Result<contract::types::PiStats, PluginFailure> {
        let stats = self.call(limits, |g, s| match g {
            Guest::PiMonitor(g) => g.call_poll(s),
            _ => Err(wasmtime::Error::msg("not a pi-monitor plugin")),
        })?;
        check_result(limits, 1, 64 + stats.message.len())?;
        Ok(stats)
    }

    pub fn render(
        &mut self,
        limits: &Limits,
        data: &dashboard::Snapshot,
    ) -> Result<String, PluginFailure> {
        let html = self.call(limits, |g, s| match g {
            Guest::Dashboard(g) => g.call_render(s, data),
            _ => Err(wasmtime::Error::msg("not a dashboard plugin")),
        })?;
        check_result(limits, 1, html.len())?;
        Ok(html)
    }
}

/// Most readings one `poll` may return.
pub const MAX_READINGS_PER_POLL: usize = 32;

/// Checks a list of readings against the result limits; `text` gives a
/// reading's variable-length parts (its id and message).
fn check_readings<T>(
    limits: &Limits,
    readings: &[T],
    text: impl Fn(&T) -> (&String, &String),
) -> Result<(), PluginFailure> {
    let size = readings
        .iter()
        .map(|r| {
            let (id, message) = text(r);
            64 + id.len() + message.len()
        })
        .sum();
    check_result(limits, readings.len(), size)
}

/// Refuses results larger than the plugin's `max_result_kb` or with more
/// than [`MAX_READINGS_PER_POLL`] readings.
fn check_result(limits: &Limits, count: usize, bytes: usize) -> Result<(), PluginFailure> {
    let max = limits.max_result_kb as usize * 1024;
    if count > MAX_READINGS_PER_POLL {
        return Err(PluginFailure {
            kind: FailureKind::BadResult,
            message: format!(
                "result too large: {count} readings, at most {MAX_READINGS_PER_POLL} per poll"
            ),
            detail: String::new(),
        });
    }
    if bytes > max {
        return Err(PluginFailure {
            kind: FailureKind::BadResult,
            message: format!(
                "result too large: {} KiB, the limit is {} KiB (limits.max_result_kb)",
                bytes / 1024,
                limits.max_result_kb
            ),
            detail: String::new(),
        });
    }
    Ok(())
}

fn host_failure(e: anyhow::Error) -> PluginFailure {
    PluginFailure {
        kind: FailureKind::Host,
        message: format!("{e:#}"),
        detail: String::new(),
    }
}

/// Names a failed call from its error and what the guest wrote to stderr.
fn classify(error: wasmtime::Error, store: &Store<PluginCtx>, limits: &Limits) -> PluginFailure {
    let stderr = String::from_utf8_lossy(&store.data().stderr.contents()).into_owned();
    // componentize-py prints the Python traceback, a blank line, then its
    // own Rust panic note; the traceback is the part a user needs.
    let traceback = stderr.find("Traceback (most recent call last)").map(|i| {
        let rest = &stderr[i..];
        let end = rest
            .find("\n\n")
            .or_else(|| rest.find("\nthread '"))
            .unwrap_or(rest.len());
        rest[..end].trim_end().to_string()
    });
    let last_line = traceback
        .as_deref()
        .and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()))
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    // A full capture pipe reads as a closed stdout in Python
    // (BrokenPipeError) or as a trap in the host: either way, a flood.
    let cap = crate::capabilities::OUTPUT_CAPTURE_BYTES;
    let flooded = [&store.data().stdout, &store.data().stderr]
        .iter()
        .any(|p| p.contents().len() + 4096 >= cap);
    let (kind, message) = match error.downcast_ref::<Trap>() {
        _ if flooded => (
            FailureKind::OutputFlood,
            format!(
                "output flood: the plugin printed more than {} KiB (stdout/stderr cap)",
                cap / 1024
            ),
        ),
        Some(Trap::Interrupt) => (
            FailureKind::Timeout,
            format!(
                "timed out: the call ran past its {} ms deadline (limits.deadline_ms)",
                limits.deadline_ms
            ),
        ),
        Some(Trap::OutOfFuel) => (
            FailureKind::OutOfFuel,
            format!(
                "out of fuel: the call used its whole budget of {} (limits.fuel)",
                limits.fuel
            ),
        ),
        Some(Trap::StackOverflow) => (
            FailureKind::StackOverflow,
            "stack overflow: the call recursed too deep".to_string(),
        ),
        // When memory is gone CPython may not even manage a clean traceback
        // ("lost sys.stderr"), but it names the MemoryError somewhere.
        Some(Trap::UnreachableCodeReached)
            if last_line.starts_with("MemoryError")
                || stderr.contains("type name: MemoryError") =>
        {
            (
                FailureKind::OutOfMemory,
                format!(
                    "out of memory: the plugin hit its {} MiB limit (limits.memory_mb)",
                    limits.memory_mb
                ),
            )
        }
        Some(Trap::UnreachableCodeReached) if traceback.is_some() => (
            FailureKind::PythonException,
            format!("Python exception: {last_line}"),
        ),
        Some(trap) => (FailureKind::Trap, format!("WebAssembly trap: {trap}")),
        None if format!("{error:#}").contains("write beyond capacity") => (
            FailureKind::OutputFlood,
            format!(
                "output flood: the call printed more than {} KiB (stdout/stderr cap)",
                crate::capabilities::OUTPUT_CAPTURE_BYTES / 1024
            ),
        ),
        None if format!("{error:#}").contains("memory")
            && format!("{error:#}").contains("limit") =>
        {
            (
                FailureKind::OutOfMemory,
                format!("out of memory: {error:#}"),
            )
        }
        None => (FailureKind::Host, format!("{error:#}")),
    };
    PluginFailure {
        kind,
        message,
        detail: traceback.unwrap_or(stderr),
    }
}
