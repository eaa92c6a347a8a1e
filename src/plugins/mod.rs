//! Loaded plugins: their versions, health, backoff and quarantine.
//!
//! A plugin is a folder of Python source run on the shared Python runtime
//! (one compiled CPython, one instance per plugin), or, as an escape hatch,
//! a componentize-py component of its own. A [`Plugin`] lives on the
//! scheduler thread and owns its prepared component and (at most) one live
//! instance. A failed call throws the
//! instance away, puts the plugin's actuators in their safe state and
//! schedules a retry with exponential backoff; too many failures in a window
//! quarantine the plugin until it is reloaded or re-enabled. What the rest of
//! the host may know about a plugin is published in the [`Registry`].

pub mod backoff;
pub mod checks;
mod command;
pub mod files;
pub mod histogram;
pub mod registry;
pub mod reload;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub use command::Command;

use crate::capabilities::{self, HostServices, PluginShared};
use crate::clock::unix_time_ms;
use crate::config::{ownership::Owned, Config, Limits, PluginKind};
use crate::contract::types::FollowedReading;
use crate::failure::{FailureKind, PluginFailure};
use crate::readings::{SensorReading, SystemReading};
use crate::runtime::{Instance, Prepared, Program, Runtime};
use backoff::{AfterFailure, Backoff};
pub use backoff::{BACKOFF_MAX, BACKOFF_START, QUARANTINE_FAILURES, QUARANTINE_WINDOW};
use registry::{Call, Problem, Version};
pub use registry::{Health, PluginStatus, Registry};

/// A loaded plugin on the scheduler thread.
pub struct Plugin {
    pub name: String,
    pub kind: PluginKind,
    pub interval: Duration,
    pub limits: Limits,
    shared: PluginShared,
    prepared: Prepared,
    instance: Option<Instance>,
    /// When it may be called again after failures, and whether at all.
    backoff: Backoff,
    /// The failure of the last call, while it is the latest outcome.
    last_failure: Option<PluginFailure>,
    registry: Registry,
    services: HostServices,
    /// First 12 hex digits of the SHA-256 of its sources (or component).
    pub version: String,
    /// Its folder of Python source, or its component file.
    pub origin: PathBuf,
    /// Whether dropping this plugin puts its actuators in the safe state:
    /// yes when it is unloaded, no when a newer version replaced it.
    safe_on_drop: bool,
    /// The sensor ids it may report.
    owned: Arc<Owned>,
    /// The sensor ids this version has reported, for the bound on them.
    seen_ids: Arc<Mutex<BTreeSet<String>>>,
    /// The plugins whose readings it follows.
    pub follows: Vec<String>,
}

/// What one poll of a sensor plugin produced.
pub enum Polled {
    Sensors(Vec<SensorReading>),
    System(SystemReading),
}

/// Loads plugin `name` as configured and makes its first instance, so a
/// version that cannot even start (a SyntaxError, an import it is not
/// granted, no entry point, a trap while importing) is refused here, off
/// the scheduler thread, with the reason. A source plugin is read from its
/// folder and loaded into a fresh instance of the shared Python runtime; a
/// component plugin is compiled (or taken from the cache) and checked
/// against its grants.
pub fn load(
    name: &str,
    config: &Config,
    runtime: &Runtime,
    services: &HostServices,
    registry: &Registry,
) -> anyhow::Result<Plugin> {
    let plugin_config = config
        .plugins
        .get(name)
        .with_context(|| format!("plugin `{name}` is not in the config"))?;
    let grants = &plugin_config.grants;
    let kind = plugin_config.kind();
    let engine = runtime.engine();
    let (pre, program, version, origin) = match config.component_file(name) {
        None => {
            let dir = config.plugin_dir(name);
            let sources = files::read_sources(name, &dir, &config.common_dir())?;
            let python = runtime.python(&config.runtime_file())?;
            let linker = capabilities::linker(engine, name, grants, &python.component)?;
            let pre = linker
                .instantiate_pre(&python.component)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("plugin `{name}` cannot be linked"))?;
            let program = Program::new(
                name,
                sources
                    .modules
                    .into_iter()
                    .map(|m| (m.name, m.path, m.source)),
                grants
                    .interfaces
                    .iter()
                    .map(|i| i.name().to_string())
                    .collect(),
                python.bytecode.clone(),
            );
            (pre, Some(program), sources.version, dir)
        }
        Some(file) => {
            let bytes = crate::fsutil::read_limited(&file, files::MAX_COMPONENT_BYTES)
                .with_context(|| format!("cannot load plugin `{name}`"))?;
            crate::runtime::check_component_header(&bytes)
                .with_context(|| format!("{} is not a plugin", file.display()))?;
            let digest = crate::runtime::cache_digest(&bytes);
            let component = runtime
                .component(&bytes, &digest)
                .with_context(|| format!("failed to compile plugin {}", file.display()))?;
            drop(bytes);
            // What it is (and for which contract) before how it links: a
            // plugin of another contract version fails to link, obscurely.
            crate::runtime::check_exports(engine, &component, kind)
                .with_context(|| format!("plugin `{name}` ({}) is not usable", file.display()))?;
            let missing = capabilities::ungranted_imports(engine, &component, grants);
            if !missing.is_empty() {
                let them = if missing.len() == 1 { "it" } else { "them" };
                anyhow::bail!(
                    "plugin `{name}` imports {} but its config does not grant {them}; to allow \
                     {them}, set in [plugins.{name}.grants]: {}",
                    missing.join(", "),
                    grants.interfaces_line(&missing)
                );
            }
            let linker = capabilities::linker(engine, name, grants, &component)?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("plugin `{name}` ({}) cannot be linked", file.display())
                })?;
            (pre, None, digest[..12].to_string(), file)
        }
    };
    let prepared = Prepared::new(pre, kind, program)
        .with_context(|| format!("plugin `{name}` ({}) is not usable", origin.display()))?;
    let limits = config.limits_for(name);
    let shared = PluginShared::new(name, plugin_config, limits, services)?;
    let mut plugin = Plugin {
        name: name.to_string(),
        kind,
        interval: Duration::from_millis(plugin_config.interval_ms),
        limits,
        shared,
        prepared,
        instance: None,
        backoff: Backoff::default(),
        last_failure: None,
        registry: registry.clone(),
        services: services.clone(),
        version,
        origin,
        safe_on_drop: true,
        owned: Arc::new(crate::config::ownership::owned(config, name)),
        seen_ids: Arc::default(),
        follows: plugin_config.grants.follows.clone(),
    };
    let started = Instant::now();
    // The first load compiles the Python (the loader thread's time, not the
    // schedule's): it gets the first-load budget.
    plugin.start(&limits.first_load()).map_err(|failure| {
        // The first instance never served: nothing to put in a safe state.
        plugin.safe_on_drop = false;
        LoadFailure(failure)
    })?;
    let fuel = plugin.instance.as_ref().map_or(0, |i| i.last_fuel);
    log::info!(
        "plugin `{name}` loaded: {} ({}), version {}, {} in {} ms{}",
        kind.interface(),
        plugin.origin.display(),
        plugin.version,
        if plugin.prepared.is_source() {
            "Python source"
        } else {
            "component"
        },
        started.elapsed().as_millis(),
        match plugin.prepared.compiled_by_last_load() {
            0 if plugin.prepared.is_source() => format!(" (bytecode cached, {fuel} fuel)"),
            n if plugin.prepared.is_source() => format!(" ({n} modules compiled, {fuel} fuel)"),
            _ => String::new(),
        }
    );
    Ok(plugin)
}

/// A plugin version that failed while loading into its first instance;
/// its failure (with the traceback) is kept for `/api/plugins`.
#[derive(Debug)]
pub struct LoadFailure(pub PluginFailure);

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for LoadFailure {}

impl Plugin {
    /// Publishes this version as the plugin's running one.
    pub fn announce(&self) {
        self.registry
            .installed(&self.name, self.published_version());
    }

    /// Publishes this version as the running one again, after the version
    /// that replaced it failed on its first calls (`why`).
    pub fn announce_rollback(&self, why: Problem) {
        self.registry
            .rolled_back(&self.name, self.published_version(), why);
    }

    fn published_version(&self) -> Version {
        Version {
            kind: self.kind.interface(),
            version: self.version.clone(),
            source: if self.prepared.is_source() {
                "python"
            } else {
                "component"
            },
            file: self.origin.display().to_string(),
            interval_ms: self.interval.as_millis() as u64,
        }
    }

    /// The last failure of this version, if its last call failed.
    pub fn last_failure(&self) -> Option<&PluginFailure> {
        self.last_failure.as_ref()
    }

    /// Whether the last call failed.
    pub fn failing(&self) -> bool {
        self.backoff.failing()
    }

    /// Drops a version that a newer one replaced, leaving the actuators to
    /// the newer one.
    pub fn retire(mut self) {
        self.safe_on_drop = false;
    }

    /// Records how late a scheduled call starts.
    pub fn record_start_delay(&self, delay: Duration) {
        self.registry.started_late(&self.name, delay);
    }

    /// Whether the plugin may be called at `now`.
    pub fn callable(&self, now: Instant) -> bool {
        self.backoff.callable(now)
    }

    /// Makes a new instance, loading the plugin's source into it under
    /// `limits`.
    fn start(&mut self, limits: &Limits) -> Result<(), PluginFailure> {
        let ctx = self.shared.context(&self.services);
        let instance = self.prepared.instantiate(ctx, limits)?;
        self.registry
            .compiled(&self.name, self.prepared.compiled_by_last_load() as u64);
        self.instance = Some(instance);
        Ok(())
    }

    /// Whether this version was quarantined: a rollback must never bring
    /// such a version back.
    pub fn quarantined(&self) -> bool {
        self.backoff.quarantined()
    }

    /// Runs `f` on a live instance (creating one if needed), with the
    /// plugin's limits, and records the outcome.
    pub fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Instance, &Limits) -> Result<R, PluginFailure>,
    ) -> Option<R> {
        if self.instance.is_none() {
            let limits = self.limits;
            if let Err(failure) = self.start(&limits) {
                self.fail(failure);
                return None;
            }
        }
        let instance = self.instance.as_mut().expect("instance was just created");
        let result = f(instance, &self.limits);
        let (fuel, duration) = (instance.last_fuel, instance.last_duration);
        let recycle = self.limits.recycle || instance.output_nearly_full();
        let memory = if recycle || result.is_err() {
            0
        } else {
            instance.memory_bytes()
        };
        let state_writes = self.flush_state(false);
        let call_kind = match self.kind {
            PluginKind::Dashboard => "render",
            PluginKind::Automation => "run",
            _ => "poll",
        };
        let denied = self
            .shared
            .denied
            .count
            .load(std::sync::atomic::Ordering::Relaxed);
        self.registry.called(
            &self.name,
            Call {
                kind: call_kind,
                duration,
                fuel,
                memory_bytes: memory,
                denied,
                state_writes,
            },
        );
        match result {
            Ok(r) => {
                if recycle {
                    self.instance = None;
                }
                self.last_failure = None;
                if self.backoff.succeeded() {
                    log::info!("plugin `{}` recovered", self.name);
                    self.registry.recovered(&self.name);
                }
                Some(r)
            }
            Err(failure) => {
                self.fail(failure);
                None
            }
        }
    }

    /// Polls a sensor plugin (of any sensor kind) and checks what it
    /// reported (ids it owns, times, fields: see [`checks`]); a poll that
    /// breaks a rule fails like a call.
    pub fn poll(&mut self) -> Option<Polled> {
        let name = self.name.clone();
        let kind = self.kind;
        let owned = self.owned.clone();
        let seen = self.seen_ids.clone();
        self.call(move |i, l| {
            let readings: Vec<SensorReading> = match kind {
                PluginKind::Dht22 => i
                    .poll_dht22(l)?
                    .into_iter()
                    .map(|r| SensorReading::from_dht22(r, &name))
                    .collect(),
                PluginKind::Bme680 => i
                    .poll_bme680(l)?
                    .into_iter()
                    .map(|r| SensorReading::from_bme680(r, &name))
                    .collect(),
                PluginKind::Sensor => i
                    .poll_sensor(l)?
                    .into_iter()
                    .map(|r| SensorReading::from_generic(r, &name))
                    .collect(),
                PluginKind::PiMonitor => {
                    return Ok(Polled::System(SystemReading::from_stats(
                        i.poll_pi_monitor(l)?,
                    )))
                }
                PluginKind::Automation | PluginKind::Dashboard => Vec::new(),
            };
            let mut seen = seen.lock().expect("sensor id set lock");
            checks::check_readings(&readings, &owned, unix_time_ms(), &mut seen).map_err(
                |message| PluginFailure {
                    kind: FailureKind::BadResult,
                    message,
                    detail: String::new(),
                },
            )?;
            Ok(Polled::Sensors(readings))
        })
    }

    /// Runs an automation with the latest readings it follows.
    pub fn run_automation(&mut self, readings: &[FollowedReading]) -> bool {
        self.call(|i, l| i.run_automation(l, readings)).is_some()
    }

    /// Records a failed call: drop the instance, make actuators safe, back
    /// off, and quarantine if it keeps happening.
    pub fn fail(&mut self, failure: PluginFailure) {
        self.instance = None;
        self.safe_state();
        match self.backoff.failed(Instant::now()) {
            AfterFailure::Retry(delay) => {
                log::error!(
                    "plugin `{}` failed ({}): {}; retrying in {} s",
                    self.name,
                    failure.kind.as_str(),
                    failure.message,
                    delay.as_secs()
                );
                self.registry.call_failed(&self.name, &failure);
            }
            AfterFailure::Quarantined { failures } => {
                // It will not be called again: what it changed goes to disk now.
                self.flush_state(true);
                log::error!(
                    "plugin `{}` quarantined after {failures} failures in {} s; fix it and copy a new file to reload it. Last failure: {}",
                    self.name,
                    QUARANTINE_WINDOW.as_secs(),
                    failure.message
                );
                self.registry.quarantined(&self.name, &failure);
            }
        }
        if !failure.detail.is_empty() {
            log::error!("plugin `{}` output:\n{}", self.name, failure.detail);
        }
        self.last_failure = Some(failure);
    }

    /// Writes what the plugin's calls changed in its state store: after a
    /// call (at most once per `state::MIN_WRITE_INTERVAL`), or everything at
    /// once (`now`: the plugin is going away, or was quarantined). A failed
    /// write keeps the changes in memory for the next attempt.
    /// Returns the store's durable writes so far.
    fn flush_state(&self, now: bool) -> u64 {
        let mut store = self.shared.state.lock().expect("state store lock");
        let written = if now {
            store.flush_now()
        } else {
            store.flush()
        };
        if let Err(e) = written {
            let log_it = self
                .shared
                .state_error_log
                .lock()
                .expect("state error log lock")
                .try_take();
            if log_it {
                log::error!(
                    "plugin `{}`: cannot save its state ({e}); kept in memory, retrying after \
                     its next call",
                    self.name
                );
            }
        }
        store.writes()
    }

    /// LEDs this plugin owns off, buzzer silent if it may drive it.
    pub fn safe_state(&self) {
        let grants = &self.shared.grants;
        if grants.allows(crate::config::Interface::LedController) && !grants.leds.is_empty() {
            self.services.hardware.leds_off(&grants.leds);
        }
        if grants.allows(crate::config::Interface::BuzzerController) {
            self.services.hardware.buzzer_off();
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if std::thread::panicking() && self.shared.state.is_poisoned() {
            // Unwinding from a panic taken while the store was open: what it
            // holds may be half-changed, so it is not written (and a second
            // panic here would abort before the actuators are made safe).
            log::error!(
                "plugin `{}`: its state store was open when the host panicked; unsaved \
                 changes are dropped",
                self.name
            );
        } else {
            self.flush_state(true);
        }
        if self.safe_on_drop {
            self.safe_state();
        }
    }
}
