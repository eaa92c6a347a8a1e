//! The fixed-rate loop that calls plugins, and the readings it publishes.
//!
//! One thread owns every plugin instance. Each plugin has its own interval
//! and an absolute next-due time that advances by whole intervals, so
//! schedules do not drift with call durations; a plugin that falls behind
//! skips the ticks it missed instead of bursting. Calls are bounded by each
//! plugin's deadline, so a slow plugin delays the others by at most its own
//! deadline. After a round that changed the readings, the dashboard plugin
//! renders the page once and the HTML is cached for HTTP workers, which
//! therefore never wait on a render.

pub mod history;
pub mod policy;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::capabilities::HostServices;
use crate::clock::unix_time_ms;
use crate::config::Config;
use crate::config::PluginKind;
use crate::contract::dashboard::{PluginInfo, Snapshot};
use crate::contract::types::{FollowedReading, Rgb};
use crate::plugins::registry::{Problem, Unloaded};
pub use crate::plugins::Command;
use crate::plugins::{self, Plugin, PluginStatus, Polled, Registry};
use crate::readings::Origin;
pub use crate::readings::{Readings, SensorReading, SystemReading};
use crate::runtime::Runtime;
use policy::{Render, Schedule, Trial, Turn, Verdict};
pub use policy::{RENDER_REFRESH, TRIAL_CALLS};

/// What the scheduler and the loader publish for the HTTP workers, the
/// MQTT thread and `/metrics`. Each field has one writer, named on it;
/// everyone else only reads.
pub struct Shared {
    /// The latest readings. Written only by the scheduler thread (after a
    /// poll, on telemetry, when a plugin is unloaded).
    pub readings: RwLock<Readings>,
    /// The dashboard plugin's last good page; `None` while it is loading or
    /// after it failed, when HTTP serves the host's fallback page. Written
    /// only by the scheduler thread (after a render, when the dashboard is
    /// unloaded).
    pub page: RwLock<Option<Arc<String>>>,
    /// Every plugin's status. Changed only through its transitions: the
    /// loader reports loads, the scheduler calls and unloads (see
    /// `plugins::registry`).
    pub registry: Registry,
    /// Unix ms of the scheduler loop's last turn; `/healthz` checks it.
    /// Written only by the scheduler thread.
    pub heartbeat_ms: AtomicU64,
    /// Every plugin finished loading (successfully or not). Set only by the
    /// scheduler thread, when the loader says so ([`Command::LoadingDone`]).
    pub loaded: std::sync::atomic::AtomicBool,
    /// The config file's error, while the file on disk is invalid and the
    /// host keeps running the last good config. Written only by the loader.
    pub config_error: Arc<RwLock<Option<String>>>,
    /// Bounded history of every reading, for charts and `/api/history`.
    /// Written only by the scheduler thread (with the readings).
    pub history: Mutex<history::History>,
    /// Why the host cannot go on: set once, by a thread it cannot run
    /// without as that thread dies of a panic (see [`watched`]). `/healthz`
    /// reports it and `app::run` exits on it, so a bug (such as a poisoned
    /// lock) stops the service for its manager to restart, instead of
    /// leaving a host that answers but no longer polls or reloads.
    pub fatal: OnceLock<String>,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            readings: RwLock::new(Readings::default()),
            page: RwLock::new(None),
            registry: Registry::default(),
            heartbeat_ms: AtomicU64::new(unix_time_ms()),
            loaded: std::sync::atomic::AtomicBool::new(false),
            config_error: Arc::default(),
            history: Mutex::default(),
            fatal: OnceLock::new(),
        })
    }

    pub fn readings(&self) -> Readings {
        self.readings.read().expect("readings lock").clone()
    }

    pub fn plugins(&self) -> Vec<PluginStatus> {
        self.registry.snapshot()
    }
}

/// A plugin in the schedule.
struct Slot {
    plugin: Plugin,
    schedule: Schedule,
    /// The version this one replaced, while this one is on trial.
    previous: Option<(Plugin, Trial)>,
}

impl Slot {
    fn new(plugin: Plugin) -> Slot {
        Slot {
            plugin,
            schedule: Schedule::due_at(Instant::now()),
            previous: None,
        }
    }

    /// Settles a trial after a call: let the old version go after enough
    /// good calls, or bring it back if the new one failed.
    fn after_call(&mut self) {
        let Some((old, trial)) = self.previous.as_mut() else {
            return;
        };
        let verdict = trial.after_call(self.plugin.failing(), old.quarantined());
        if verdict == Verdict::Continue {
            return;
        }
        let (old, _) = self
            .previous
            .take()
            .expect("a trial has a previous version");
        match verdict {
            Verdict::Continue => unreachable!("returned above"),
            Verdict::Passed => {
                log::info!(
                    "plugin `{}`: version {} passed its trial; version {} released",
                    self.plugin.name,
                    self.plugin.version,
                    old.version
                );
                old.retire();
            }
            Verdict::RollBack => self.roll_back(old),
            Verdict::KeepDespiteFailure => {
                log::error!(
                    "plugin `{}`: version {} failed on its first calls; version {} stays \
                     released (it was quarantined)",
                    self.plugin.name,
                    self.plugin.version,
                    old.version
                );
                old.retire();
            }
        }
    }

    /// Brings back `old`, the version the failing one replaced.
    fn roll_back(&mut self, old: Plugin) {
        let bad = std::mem::replace(&mut self.plugin, old);
        let (why, detail) = bad
            .last_failure()
            .map(|f| (format!(": {}", f.message), f.detail.clone()))
            .unwrap_or_default();
        let message = format!(
            "version {} failed on its first calls{why}; rolled back to version {}",
            bad.version, self.plugin.version
        );
        log::error!("plugin `{}`: {message}", self.plugin.name);
        // The failing version's traceback stays visible: it is what the
        // author needs to fix it.
        self.plugin.announce_rollback(Problem {
            kind: "rollback",
            message,
            detail,
        });
        self.schedule = Schedule::due_at(Instant::now());
        bad.retire();
    }
}

struct Scheduler {
    polled: Vec<Slot>,
    dashboard: Option<Slot>,
    shared: Arc<Shared>,
    services: HostServices,
    hardware_name: String,
    render: Render,
}

/// Starts the scheduler thread and the loader thread. The loader compiles
/// (or takes from the cache) each enabled plugin and hands it over; the
/// scheduler starts calling each plugin as soon as it arrives, so on a cold
/// start the first readings do not wait for every plugin to compile. HTTP is
/// already serving meanwhile, showing the others as loading. After the first
/// load the loader watches the plugin files and the config for hot reload.
pub fn spawn(
    config: Config,
    runtime: Arc<Runtime>,
    services: HostServices,
    shared: Arc<Shared>,
    hardware_name: String,
    commands: (Sender<Command>, Receiver<Command>),
    hooks: Vec<plugins::reload::ConfigHook>,
) -> std::io::Result<JoinHandle<()>> {
    let (tx, rx) = commands;
    let mut loader = plugins::reload::Loader::new(
        config,
        runtime,
        services.clone(),
        shared.registry.clone(),
        tx,
        shared.config_error.clone(),
    );
    for hook in hooks {
        loader = loader.on_config_change(hook);
    }
    let watch = shared.clone();
    std::thread::Builder::new()
        .name("loader".into())
        .spawn(move || watched(&watch, "loader", || loader.run()))?;
    std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || {
            let watch = shared.clone();
            watched(&watch, "scheduler", move || {
                let mut scheduler = Scheduler {
                    polled: Vec::new(),
                    dashboard: None,
                    shared,
                    services,
                    hardware_name,
                    render: Render::default(),
                };
                scheduler.run(&rx);
                // Dropping the plugins puts their actuators in the safe state
                // (also when unwinding from a panic).
            })
        })
}

/// Runs `body`, the work of the thread named `thread`. If it panics, the
/// panic is recorded in [`Shared::fatal`] (the first one wins) and goes on
/// unwinding, so joining the thread still sees it.
pub fn watched<R>(shared: &Shared, thread: &str, body: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            let _ = shared
                .fatal
                .set(format!("the {thread} thread panicked: {message}"));
            std::panic::resume_unwind(panic)
        }
    }
}

impl Scheduler {
    /// Takes a plugin's slot out of the schedule, wherever it is.
    fn take_slot(&mut self, name: &str) -> Option<Slot> {
        if self
            .dashboard
            .as_ref()
            .is_some_and(|d| d.plugin.name == name)
        {
            return self.dashboard.take();
        }
        let i = self.polled.iter().position(|s| s.plugin.name == name)?;
        Some(self.polled.remove(i))
    }

    fn install(&mut self, plugin: Plugin, trial: bool) {
        let mut slot = Slot::new(plugin);
        if let Some(old) = self.take_slot(&slot.plugin.name) {
            // An older version still on trial is superseded outright.
            if let Some((older, _)) = old.previous {
                older.retire();
            }
            match Trial::begin(trial, old.plugin.kind == slot.plugin.kind) {
                Some(trial) => slot.previous = Some((old.plugin, trial)),
                None => old.plugin.retire(),
            }
        }
        slot.plugin.announce();
        if slot.plugin.kind == PluginKind::Dashboard {
            self.dashboard = Some(slot);
            self.render.invalidate();
        } else {
            self.polled.push(slot);
        }
    }

    fn remove(&mut self, name: &str, why: Unloaded) {
        if let Some(slot) = self.take_slot(name) {
            log::info!("plugin `{name}` unloaded");
            self.services.telemetry.remove(name);
            self.services.readings.post(name, Vec::new());
            {
                let mut r = self.shared.readings.write().expect("readings lock");
                r.sensors.remove(name);
                if slot.plugin.kind == PluginKind::PiMonitor {
                    r.system = None;
                }
                r.generation = r.generation.wrapping_add(1);
            }
            self.shared
                .history
                .lock()
                .expect("reading history lock")
                .remove_plugin(name);
            if slot.plugin.kind == PluginKind::Dashboard {
                *self.shared.page.write().expect("page cache lock") = None;
            }
            // Dropping the slot puts the plugin's actuators in the safe state.
            drop(slot);
        }
        self.shared.registry.unloaded(name, why);
    }

    fn run(&mut self, commands: &Receiver<Command>) {
        loop {
            let now = Instant::now();
            self.shared
                .heartbeat_ms
                .store(unix_time_ms(), Ordering::Relaxed);
            let mut changed = false;
            // Plugins whose readings changed this round: the automations
            // that follow them run in the same round.
            let mut fresh: Vec<String> = Vec::new();
            for automations in [false, true] {
                for s in &mut self.polled {
                    if (s.plugin.kind == PluginKind::Automation) != automations {
                        continue;
                    }
                    let triggered =
                        automations && s.plugin.follows.iter().any(|f| fresh.contains(f));
                    let Some(turn) = s.schedule.turn(now, s.plugin.interval, triggered) else {
                        continue;
                    };
                    let started = Instant::now();
                    if !s.plugin.callable(started) {
                        continue;
                    }
                    if let Turn::Scheduled { due } = turn {
                        s.plugin.record_start_delay(started.duration_since(due));
                    }
                    if automations {
                        let readings = self.services.readings.followed(&s.plugin.follows);
                        s.plugin.run_automation(&readings);
                    } else if poll(&mut s.plugin, &self.shared, &self.services) {
                        changed = true;
                        fresh.push(s.plugin.name.clone());
                    }
                    s.after_call();
                }
            }
            if let Some(values) = self.services.telemetry.take_if_changed() {
                let published: BTreeMap<String, SensorReading> = values
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(p, v)| (p.clone(), SensorReading::published(p, v)))
                    .collect();
                {
                    let mut h = self.shared.history.lock().expect("reading history lock");
                    published.values().for_each(|r| h.add_sensor(r));
                }
                let mut r = self.shared.readings.write().expect("readings lock");
                let touched: Vec<String> = r
                    .published
                    .keys()
                    .chain(published.keys())
                    .cloned()
                    .collect();
                r.published = published;
                for plugin in touched {
                    post(&self.services, &r, &plugin);
                    if !fresh.contains(&plugin) {
                        fresh.push(plugin);
                    }
                }
                changed = true;
            }
            if changed {
                let mut r = self.shared.readings.write().expect("readings lock");
                r.generation = r.generation.wrapping_add(1);
            }
            self.render_if_needed();

            let earliest = self.polled.iter().map(|s| s.schedule.next_due()).min();
            let next = policy::wake_at(earliest, now, Instant::now());
            match commands.recv_deadline(next) {
                Ok(Command::Install { plugin, trial }) => self.install(*plugin, trial),
                Ok(Command::Remove(name, why)) => self.remove(&name, why),
                Ok(Command::LoadingDone) => self.shared.loaded.store(true, Ordering::Relaxed),
                Ok(Command::Ping) => {}
                Ok(Command::Stop) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn render_if_needed(&mut self) {
        let generation = self
            .shared
            .readings
            .read()
            .expect("readings lock")
            .generation;
        if !self.render.due(generation, Instant::now()) {
            return;
        }
        let Some(slot) = self.dashboard.as_mut() else {
            return;
        };
        if !slot.plugin.callable(Instant::now()) {
            return;
        }
        let snapshot = snapshot(&self.shared, &self.services, &self.hardware_name);
        let html = slot.plugin.call(|i, limits| i.render(limits, &snapshot));
        slot.after_call();
        self.render.rendered(generation, Instant::now());
        *self.shared.page.write().expect("page cache lock") = html.map(Arc::new);
    }
}

/// Calls one sensor plugin and stores what it returned. Returns whether the
/// readings changed.
fn poll(plugin: &mut Plugin, shared: &Shared, services: &HostServices) -> bool {
    let name = plugin.name.clone();
    match plugin.poll() {
        Some(Polled::Sensors(readings)) => {
            let changed = store_sensors(shared, &name, readings);
            post(
                services,
                &shared.readings.read().expect("readings lock"),
                &name,
            );
            changed
        }
        Some(Polled::System(reading)) => {
            shared
                .history
                .lock()
                .expect("reading history lock")
                .add_system(&reading, &name);
            let mut r = shared.readings.write().expect("readings lock");
            r.last_update_ms = r.last_update_ms.max(reading.timestamp_ms);
            let changed = r.system.as_ref() != Some(&reading);
            r.system = Some(reading);
            changed
        }
        None => false,
    }
}

/// Posts what plugin `plugin` reports now for the plugins following it.
fn post(services: &HostServices, readings: &Readings, plugin: &str) {
    services.readings.post(
        plugin,
        readings
            .of_plugin(plugin)
            .iter()
            .map(|r| r.to_generic())
            .collect(),
    );
}

fn store_sensors(shared: &Shared, plugin: &str, readings: Vec<SensorReading>) -> bool {
    {
        let mut h = shared.history.lock().expect("reading history lock");
        for r in &readings {
            h.add_sensor(r);
        }
    }
    let mut r = shared.readings.write().expect("readings lock");
    if let Some(newest) = readings.iter().map(|x| x.timestamp_ms).max() {
        r.last_update_ms = r.last_update_ms.max(newest);
    }
    let changed = r.sensors.get(plugin) != Some(&readings);
    r.sensors.insert(plugin.to_string(), readings);
    changed
}

/// What the dashboard plugin gets to render.
fn snapshot(shared: &Shared, services: &HostServices, hardware_name: &str) -> Snapshot {
    let readings = shared.readings();
    let all = readings.all();
    let actuators = services.hardware.status();
    Snapshot {
        readings: all
            .iter()
            .map(|r| FollowedReading {
                plugin: r.plugin.clone(),
                reading: r.to_generic(),
            })
            .collect(),
        dht22: all
            .iter()
            .filter(|r| r.origin == Origin::Dht22)
            .map(|r| r.to_dht22())
            .collect(),
        bme680: all
            .iter()
            .filter(|r| r.origin == Origin::Bme680)
            .map(|r| r.to_bme680())
            .collect(),
        system: readings.system.as_ref().map(SystemReading::to_stats),
        leds: actuators
            .leds
            .iter()
            .map(|&[r, g, b]| Rgb { r, g, b })
            .collect(),
        buzzer_active: actuators.buzzer_on || actuators.buzzer_pattern_active,
        plugins: shared
            .plugins()
            .into_iter()
            .map(|p| PluginInfo {
                status: serde_json::to_value(p.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                name: p.name,
                last_error: p.last_error,
                calls: p.calls,
                failures: p.failures,
            })
            .collect(),
        hardware: hardware_name.to_string(),
        last_update_ms: readings.last_update_ms,
    }
}
