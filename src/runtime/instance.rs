//! One plugin instance: a Store, the export it serves, and calls under limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Engine, Store, Trap};

use super::bytecode::BytecodeCache;
use crate::capabilities::PluginCtx;
use crate::config::{Limits, PluginKind};
use crate::contract::{
    self, automation, bme680_logic, dashboard, dht22_logic, loader, pi_monitor_logic, sensor,
};
use crate::failure::{self, FailureKind, HostTrap, PluginFailure, Seen, Trapped};

/// Lines of guest output logged per call; the rest are counted.
const MAX_FORWARDED_LINES: usize = 50;

/// Checks that a component plugin exports the entry point its config says
/// it is (`kind`), built against this host's contract version. What else it
/// exports does not matter: the host only ever calls that one.
pub fn check_exports(
    engine: &Engine,
    component: &Component,
    kind: PluginKind,
) -> anyhow::Result<()> {
    let prefix = format!("{}/", contract::PACKAGE);
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let found = exports.iter().find_map(|name| {
        let (iface, version) = name.strip_prefix(&prefix)?.split_once('@')?;
        (iface == kind.interface()).then_some(version)
    });
    match found {
        Some(version) if version == contract::VERSION => Ok(()),
        Some(version) => bail!(
            "the plugin was built against contract {}@{version}, this host implements {}@{}: \
             rebuild it with this host's wit/ folder",
            contract::PACKAGE,
            contract::PACKAGE,
            contract::VERSION
        ),
        None => bail!(
            "the component does not export `{}`, the entry point of kind = \"{}\" in its \
             config; its exports are: {}",
            kind.interface(),
            kind.name(),
            if exports.is_empty() {
                "none".to_string()
            } else {
                exports.join(", ")
            }
        ),
    }
}

/// A plugin's Python source, for the shared runtime to load into each new
/// instance, with the bytecode the runtime compiled from it once.
pub struct Program {
    /// The plugin's name, for messages.
    pub plugin: String,
    modules: Vec<loader::Module>,
    /// The contract interfaces the plugin is granted; importing any other
    /// fails at load.
    granted: Vec<String>,
    bytecode: Arc<BytecodeCache>,
    /// Modules the runtime compiled from source during the last load (a
    /// module the plugin never imports is never compiled).
    compiled_by_last_load: usize,
}

impl Program {
    /// `modules` as (import name, traceback path, source), with whatever
    /// bytecode `bytecode` has for them.
    pub fn new(
        plugin: &str,
        modules: impl IntoIterator<Item = (String, String, String)>,
        granted: Vec<String>,
        bytecode: Arc<BytecodeCache>,
    ) -> Program {
        let modules = modules
            .into_iter()
            .map(|(name, path, source)| loader::Module {
                bytecode: bytecode.get(&path, &source),
                name,
                path,
                source,
            })
            .collect();
        Program {
            plugin: plugin.to_string(),
            modules,
            granted,
            bytecode,
            compiled_by_last_load: 0,
        }
    }

    /// Keeps what the runtime compiled, here and in the cache.
    fn remember(&mut self, compiled: Vec<loader::Compiled>) {
        self.compiled_by_last_load = compiled.len();
        for c in compiled {
            if let Some(m) = self.modules.iter_mut().find(|m| m.name == c.name) {
                self.bytecode.put(&m.path, &m.source, &c.bytecode);
                m.bytecode = Some(c.bytecode);
            }
        }
    }

    /// A load error in the words of the host's config.
    fn failure(&self, e: loader::LoadError) -> PluginFailure {
        let name = &self.plugin;
        let message = match e.failure {
            loader::Failure::NotGranted => {
                let missing: Vec<&str> = e.message.split(", ").collect();
                let them = if missing.len() == 1 { "it" } else { "them" };
                let granted = crate::config::Grants {
                    interfaces: self
                        .granted
                        .iter()
                        .filter_map(|i| crate::config::Interface::named(i))
                        .collect(),
                    ..Default::default()
                };
                format!(
                    "plugin `{name}` imports {} but its config does not grant {them}; to allow \
                     {them}, set in [plugins.{name}.grants]: {}",
                    e.message,
                    granted.interfaces_line(&missing)
                )
            }
            _ => e.message,
        };
        PluginFailure {
            kind: FailureKind::Load,
            message,
            detail: e.traceback,
        }
    }
}

/// A plugin ready to instantiate quickly (~1 ms, copy-on-write): its
/// component (the shared runtime, or its own) linked with its grants, and
/// for a source plugin the program to load into each new instance.
pub struct Prepared {
    pre: InstancePre<PluginCtx>,
    pub kind: PluginKind,
    program: Option<Program>,
}

enum Guest {
    Sensor(sensor::Guest),
    Automation(automation::Guest),
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
    /// `pre` is `component` linked for the plugin. A component plugin must
    /// export `kind`'s entry point; a source plugin (with `program`) runs on
    /// the shared runtime, which exports every one.
    pub fn new(
        pre: InstancePre<PluginCtx>,
        kind: PluginKind,
        program: Option<Program>,
    ) -> anyhow::Result<Prepared> {
        if program.is_none() {
            check_exports(pre.engine(), pre.component(), kind)?;
        }
        Ok(Prepared { pre, kind, program })
    }

    pub fn is_source(&self) -> bool {
        self.program.is_some()
    }

    /// Modules of a source plugin that its last load compiled from source
    /// (0 when their bytecode was cached, and for a component).
    pub fn compiled_by_last_load(&self) -> usize {
        self.program.as_ref().map_or(0, |p| p.compiled_by_last_load)
    }

    /// A new instance, with the plugin's program loaded into it when it has
    /// one. Loading runs under the plugin's limits like any call.
    pub fn instantiate(
        &mut self,
        ctx: PluginCtx,
        limits: &Limits,
    ) -> Result<Instance, PluginFailure> {
        let engine = self.pre.engine().clone();
        let mut store = Store::new(&engine, ctx);
        store.limiter(|c| &mut c.limits);
        let _ = store.set_fuel(limits.fuel);
        store.set_epoch_deadline(super::deadline_ticks(Duration::from_millis(
            limits.deadline_ms,
        )));
        let running = super::running();
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, &store, limits))?;
        // Its memory image is a new mapping of the artifact: fault it in a
        // page at a time (see `residency`).
        super::residency::advise_mappings();
        let entry = |e: wasmtime::Error| PluginFailure {
            kind: FailureKind::Host,
            message: format!("entry point not usable: {e:#}"),
            detail: String::new(),
        };
        let guest = match self.kind {
            PluginKind::Sensor => sensor::GuestIndices::new(&self.pre)
                .and_then(|g| g.load(&mut store, &instance))
                .map(Guest::Sensor),
            PluginKind::Automation => automation::GuestIndices::new(&self.pre)
                .and_then(|g| g.load(&mut store, &instance))
                .map(Guest::Automation),
            PluginKind::Dht22 => dht22_logic::GuestIndices::new(&self.pre)
                .and_then(|g| g.load(&mut store, &instance))
                .map(Guest::Dht22),
            PluginKind::Bme680 => bme680_logic::GuestIndices::new(&self.pre)
                .and_then(|g| g.load(&mut store, &instance))
                .map(Guest::Bme680),
            PluginKind::PiMonitor => pi_monitor_logic::GuestIndices::new(&self.pre)
                .and_then(|g| g.load(&mut store, &instance))
                .map(Guest::PiMonitor),
            PluginKind::Dashboard => dashboard::GuestIndices::new(&self.pre)
                .and_then(|g| g.load(&mut store, &instance))
                .map(Guest::Dashboard),
        }
        .map_err(entry)?;
        let loader = match &self.program {
            Some(_) => Some(
                loader::GuestIndices::new(&self.pre)
                    .and_then(|g| g.load(&mut store, &instance))
                    .map_err(entry)?,
            ),
            None => None,
        };
        drop(running);
        let mut live = Instance {
            store,
            guest,
            last_fuel: 0,
            last_duration: Duration::ZERO,
            forwarded: [0, 0],
        };
        if let (Some(program), Some(loader)) = (&mut self.program, loader) {
            program.compiled_by_last_load = 0;
            let kind = self.kind.interface();
            let modules = &program.modules;
            let granted = &program.granted;
            let loaded = live.call(limits, |_, store| {
                loader.call_load(store, modules, "app", kind, granted)
            })?;
            match loaded {
                Ok(compiled) => program.remember(compiled),
                Err(e) => return Err(program.failure(e)),
            }
        }
        Ok(live)
    }
}

impl Instance {
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
        let deadline = Duration::from_millis(limits.deadline_ms);
        self.store
            .set_epoch_deadline(super::deadline_ticks(deadline));
        let started = Instant::now();
        self.store.data_mut().deadline = Some(started + deadline);
        // After the deadline is set: a shutdown that starts from here on
        // moves the epoch past it, so this call ends at once.
        if self.store.data().interrupt.stopping() {
            return Err(PluginFailure {
                kind: FailureKind::Host,
                message: "the host is shutting down".into(),
                detail: String::new(),
            });
        }
        let _running = super::running();
        let result = f(&self.guest, &mut self.store);
        self.last_duration = started.elapsed();
        self.store.data_mut().deadline = None;
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
                log::info!(target: "plugin", "[{}] {stream}: {}", ctx.plugin, crate::text::truncate(line, 1024));
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
            .any(|&n| n > failure::OUTPUT_CAPTURE_BYTES / 2)
    }

    pub fn poll_sensor(
        &mut self,
        limits: &Limits,
    ) -> Result<Vec<contract::types::Reading>, PluginFailure> {
        let readings = self.call(limits, |g, s| match g {
            Guest::Sensor(g) => g.call_poll(s),
            _ => Err(wasmtime::Error::msg("not a sensor plugin")),
        })?;
        let size = readings
            .iter()
            .map(|r| {
                64 + r.sensor_id.len()
                    + r.message.len()
                    + r.fields
                        .iter()
                        .map(|f| 32 + f.name.len() + f.unit.len())
                        .sum::<usize>()
            })
            .sum();
        check_result(limits, readings.len(), size)?;
        Ok(readings)
    }

    pub fn run_automation(
        &mut self,
        limits: &Limits,
        readings: &[contract::types::FollowedReading],
    ) -> Result<(), PluginFailure> {
        self.call(limits, |g, s| match g {
            Guest::Automation(g) => g.call_run(s, readings),
            _ => Err(wasmtime::Error::msg("not an automation plugin")),
        })
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

/// Names a failed call from its error and what the guest wrote to stderr
/// (the rules are [`failure::name`]'s).
fn classify(error: wasmtime::Error, store: &Store<PluginCtx>, limits: &Limits) -> PluginFailure {
    let stderr = String::from_utf8_lossy(&store.data().stderr.contents()).into_owned();
    let cap = failure::OUTPUT_CAPTURE_BYTES;
    let flooded = [&store.data().stdout, &store.data().stderr]
        .iter()
        .any(|p| p.contents().len() + 4096 >= cap);
    let trap = error.downcast_ref::<Trap>().map(|trap| match trap {
        Trap::Interrupt => Trapped::Interrupt,
        Trap::OutOfFuel => Trapped::OutOfFuel,
        Trap::StackOverflow => Trapped::StackOverflow,
        Trap::UnreachableCodeReached => Trapped::Unreachable(trap.to_string()),
        other => Trapped::Other(other.to_string()),
    });
    let seen = Seen {
        host_trap: error.downcast_ref::<HostTrap>(),
        trap,
        error: &format!("{error:#}"),
        stderr: &stderr,
        flooded,
    };
    failure::name(&seen, limits)
}
