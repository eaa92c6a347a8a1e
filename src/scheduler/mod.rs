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

pub mod readings;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::capabilities::HostServices;
use crate::config::Config;
use crate::contract::dashboard::{PluginInfo, Snapshot};
use crate::contract::types::Rgb;
use crate::hardware::unix_time_ms;
use crate::plugins::{self, Health, Plugin, PluginStatus, Registry};
use crate::runtime::{Kind, Runtime};
pub use readings::{Readings, SensorReading, SystemReading};

/// The dashboard is re-rendered at least this often, so plugin health on
/// the page stays current even when readings do not change.
pub const RENDER_REFRESH: Duration = Duration::from_secs(5);

/// Longest the loop sleeps, so the heartbeat stays fresh.
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// What the scheduler shares with the HTTP workers.
pub struct Shared {
    pub readings: RwLock<Readings>,
    /// The dashboard plugin's last good page; `None` while it is loading or
    /// after it failed, when HTTP serves the host's fallback page.
    pub page: RwLock<Option<Arc<String>>>,
    pub registry: Registry,
    /// Unix ms of the scheduler loop's last turn; `/healthz` checks it.
    pub heartbeat_ms: AtomicU64,
    /// Every plugin finished loading (successfully or not).
    pub loaded: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            readings: RwLock::new(Readings::default()),
            page: RwLock::new(None),
            registry: Arc::new(RwLock::new(Default::default())),
            heartbeat_ms: AtomicU64::new(unix_time_ms()),
            loaded: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn readings(&self) -> Readings {
        self.readings.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn plugins(&self) -> Vec<PluginStatus> {
        self.registry
            .read()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Messages to the scheduler thread.
pub enum Command {
    /// A plugin compiled and prepared off this thread, ready to swap in.
    Install(Box<Plugin>),
    /// The loader has gone through every configured plugin.
    LoadingDone,
    Stop,
}

struct Scheduled {
    plugin: Plugin,
    next_due: Instant,
}

struct Scheduler {
    polled: Vec<Scheduled>,
    dashboard: Option<Plugin>,
    shared: Arc<Shared>,
    services: HostServices,
    hardware_name: String,
    rendered_generation: u64,
    rendered_at: Option<Instant>,
}

/// Starts the scheduler thread and a loader thread. The loader compiles
/// (or takes from the cache) each enabled plugin and hands it over; the
/// scheduler starts calling each plugin as soon as it arrives, so on a cold
/// start the first readings do not wait for every plugin to compile. HTTP is
/// already serving meanwhile, showing the others as loading.
pub fn spawn(
    config: Config,
    runtime: Arc<Runtime>,
    services: HostServices,
    shared: Arc<Shared>,
    hardware_name: String,
    commands: (Sender<Command>, Receiver<Command>),
) -> std::io::Result<JoinHandle<()>> {
    let (tx, rx) = commands;
    register_configured(&config, &shared);
    {
        let services = services.clone();
        let registry = shared.registry.clone();
        std::thread::Builder::new()
            .name("loader".into())
            .spawn(move || {
                load_all(&config, &runtime, &services, &registry, &tx);
            })?;
    }
    std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || {
            let mut scheduler = Scheduler {
                polled: Vec::new(),
                dashboard: None,
                shared,
                services,
                hardware_name,
                rendered_generation: u64::MAX,
                rendered_at: None,
            };
            scheduler.run(&rx);
            // Dropping the plugins puts their actuators in the safe state.
        })
}

/// Lists every configured plugin in the registry: loading or disabled.
fn register_configured(config: &Config, shared: &Shared) {
    if let Ok(mut registry) = shared.registry.write() {
        for (name, p) in &config.plugins {
            let health = if p.enabled {
                Health::Loading
            } else {
                Health::Disabled
            };
            registry.insert(
                name.clone(),
                PluginStatus::new(
                    name,
                    config.plugin_file(name).display().to_string(),
                    health,
                    p.interval_ms,
                ),
            );
        }
    }
}

/// Loads every enabled plugin and sends each to the scheduler. Stops early
/// when the scheduler is gone.
fn load_all(
    config: &Config,
    runtime: &Runtime,
    services: &HostServices,
    registry: &Registry,
    tx: &Sender<Command>,
) {
    for (name, p) in &config.plugins {
        if !p.enabled {
            continue;
        }
        match plugins::load(name, config, runtime, services, registry) {
            Ok(plugin) => {
                if tx.send(Command::Install(Box::new(plugin))).is_err() {
                    return;
                }
            }
            Err(e) => {
                log::error!("{e:#}");
                if let Ok(mut registry) = registry.write() {
                    if let Some(s) = registry.get_mut(name) {
                        s.status = Health::LoadFailed;
                        s.last_error = format!("{e:#}");
                        s.last_error_kind = Some("load");
                    }
                }
            }
        }
    }
    let _ = tx.send(Command::LoadingDone);
}

impl Scheduler {
    fn install(&mut self, plugin: Plugin) {
        if plugin.kind == Kind::Dashboard {
            self.dashboard = Some(plugin);
            self.rendered_at = None;
            return;
        }
        self.polled.retain(|s| s.plugin.name != plugin.name);
        self.polled.push(Scheduled {
            plugin,
            next_due: Instant::now(),
        });
    }

    fn run(&mut self, commands: &Receiver<Command>) {
        loop {
            let now = Instant::now();
            self.shared
                .heartbeat_ms
                .store(unix_time_ms(), Ordering::Relaxed);
            let mut changed = false;
            for s in &mut self.polled {
                if now < s.next_due {
                    continue;
                }
                let due = s.next_due;
                // Advance by whole intervals from the previous due time: no
                // drift, and missed ticks are skipped rather than replayed.
                while s.next_due <= now {
                    s.next_due += s.plugin.interval;
                }
                let started = Instant::now();
                if s.plugin.callable(started) {
                    s.plugin.record_start_delay(started.duration_since(due));
                    changed |= poll(&mut s.plugin, &self.shared);
                }
            }
            if changed {
                if let Ok(mut r) = self.shared.readings.write() {
                    r.generation = r.generation.wrapping_add(1);
                }
            }
            self.render_if_needed();

            let next = self
                .polled
                .iter()
                .map(|s| s.next_due)
                .min()
                .unwrap_or(now + MAX_SLEEP)
                .min(Instant::now() + MAX_SLEEP);
            match commands.recv_deadline(next) {
                Ok(Command::Install(plugin)) => self.install(*plugin),
                Ok(Command::LoadingDone) => self.shared.loaded.store(true, Ordering::Relaxed),
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
            .map(|r| r.generation)
            .unwrap_or(0);
        let stale = self
            .rendered_at
            .is_none_or(|t| t.elapsed() >= RENDER_REFRESH);
        if generation == self.rendered_generation && !stale {
            return;
        }
        let Some(dashboard) = self.dashboard.as_mut() else {
            return;
        };
        if !dashboard.callable(Instant::now()) {
            return;
        }
        let snapshot = snapshot(&self.shared, &self.services, &self.hardware_name);
        let html = dashboard.call(|i, limits| i.render(limits, &snapshot));
        self.rendered_generation = generation;
        self.rendered_at = Some(Instant::now());
        let page = html.map(Arc::new);
        if let Ok(mut p) = self.shared.page.write() {
            *p = page;
        }
    }
}

/// Calls one sensor plugin and stores what it returned. Returns whether the
/// readings changed.
fn poll(plugin: &mut Plugin, shared: &Shared) -> bool {
    let name = plugin.name.clone();
    match plugin.kind {
        Kind::Dht22 => plugin
            .call(|i, l| i.poll_dht22(l))
            .map(|rs| {
                store_sensors(
                    shared,
                    &name,
                    rs.into_iter()
                        .map(|r| SensorReading::from_dht22(r, &name))
                        .collect(),
                )
            })
            .unwrap_or(false),
        Kind::Bme680 => plugin
            .call(|i, l| i.poll_bme680(l))
            .map(|rs| {
                store_sensors(
                    shared,
                    &name,
                    rs.into_iter()
                        .map(|r| SensorReading::from_bme680(r, &name))
                        .collect(),
                )
            })
            .unwrap_or(false),
        Kind::PiMonitor => plugin
            .call(|i, l| i.poll_pi_monitor(l))
            .map(|s| {
                let reading = SystemReading::from_stats(s);
                let Ok(mut r) = shared.readings.write() else {
                    return false;
                };
                r.last_update_ms = r.last_update_ms.max(reading.timestamp_ms);
                let changed = r.system.as_ref() != Some(&reading);
                r.system = Some(reading);
                changed
            })
            .unwrap_or(false),
        Kind::Dashboard => false,
    }
}

fn store_sensors(shared: &Shared, plugin: &str, readings: Vec<SensorReading>) -> bool {
    let Ok(mut r) = shared.readings.write() else {
        return false;
    };
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
        dht22: all
            .iter()
            .filter(|r| !r.is_bme680())
            .map(|r| r.to_dht22())
            .collect(),
        bme680: all
            .iter()
            .filter(|r| r.is_bme680())
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
