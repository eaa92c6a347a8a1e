//! Host capabilities: one module per contract interface.
//!
//! Each module has the same parts: its grant (from `[plugins.NAME.grants]`),
//! its per-instance state (a field of [`PluginCtx`]), its linker registration
//! and its WIT trait impl. A plugin's linker only gets the interfaces its
//! grants name, so an ungranted import cannot even be instantiated; within a
//! granted interface, every argument (pin, address, LED) is checked against
//! the grant before anything reaches the hardware thread.
//!
//! Every plugin's linker holds the real implementation of exactly the
//! interfaces it is granted and, for every other contract interface the
//! component imports (the shared Python runtime imports them all), a stub
//! per function that traps with the name of the interface and the config
//! line that would grant it. Deny by default thus holds at link level, also
//! for a plugin that finds a way around the runtime's import check.
//!
//! WASI is linked for every plugin because componentize-py's CPython imports
//! it, but its context grants nothing: no preopened folders, no environment,
//! no arguments, no sockets, stdin closed. Its one blocking call, a clock
//! wait (`time.sleep`), is served by [`sleep`] so no wait can outlive the
//! call's deadline or delay a shutdown.

pub mod buzzer;
pub mod gpio;
pub mod leds;
pub mod log;
pub mod readings;
pub mod settings;
pub mod sleep;
pub mod state;
pub mod system;
pub mod telemetry;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::config::{Grants, Interface, Limits, PluginConfig};
use crate::contract;
use crate::failure::{FailureKind, OUTPUT_CAPTURE_BYTES};
use crate::hardware::HardwareHandle;
use crate::ratelimit::TokenBucket;
pub use sleep::Interrupt;

/// Everything one plugin instance's store holds.
pub struct PluginCtx {
    pub plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: TrackedLimits,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
    /// When the call in progress must end; `None` between calls.
    pub deadline: Option<Instant>,
    /// The host's shutdown signal: ends waits at once.
    pub interrupt: Arc<Interrupt>,
    pub gpio: gpio::Gpio,
    pub leds: leds::Leds,
    pub buzzer: buzzer::Buzzer,
    pub system: system::System,
    pub state: state::State,
    pub log: log::Log,
    pub settings: settings::Settings,
    pub telemetry: telemetry::Telemetry,
    pub readings: readings::Readings,
}

impl WasiView for PluginCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl contract::types::Host for PluginCtx {}

/// What every plugin's capabilities share: the hardware, and counters of
/// refused calls.
#[derive(Clone)]
pub struct HostServices {
    pub hardware: HardwareHandle,
    pub state_dir: std::path::PathBuf,
    /// Per-plugin resources by name, shared by every version of a plugin so
    /// a hot reload keeps its state store, counters and rate limits. Entries
    /// are added only by the loader (when it loads a version).
    pub resources: Arc<Mutex<std::collections::HashMap<String, Resources>>>,
    /// Values plugins publish through `telemetry` (each under its own name,
    /// from whichever thread runs its instance: the scheduler, or the loader
    /// while a new version's modules import); only the scheduler takes them
    /// and removes an unloaded plugin's.
    pub telemetry: Arc<telemetry::Board>,
    /// Every plugin's latest readings, posted by the scheduler, for the
    /// plugins that follow them.
    pub readings: Arc<readings::Board>,
    /// The runtime's shutdown signal, for every plugin context.
    pub interrupt: Arc<Interrupt>,
}

impl HostServices {
    pub fn new(
        hardware: HardwareHandle,
        state_dir: std::path::PathBuf,
        interrupt: Arc<Interrupt>,
    ) -> HostServices {
        HostServices {
            hardware,
            state_dir,
            resources: Arc::default(),
            telemetry: Arc::default(),
            readings: Arc::default(),
            interrupt,
        }
    }

    /// The resources of plugin `name`, created on first use; the state
    /// quota follows the latest config.
    pub fn resources(&self, name: &str, state_quota_bytes: u64) -> anyhow::Result<Resources> {
        let mut all = self.resources.lock().expect("plugin resources lock");
        if let Some(r) = all.get(name) {
            r.state
                .lock()
                .expect("state store lock")
                .set_quota(state_quota_bytes);
            return Ok(r.clone());
        }
        let mut store = state::Store::open(&self.state_dir.join("state"), name, state_quota_bytes)
            .with_context(|| format!("failed to open the state store of plugin `{name}`"))?;
        // A call's writes stay in memory; the host writes them out after
        // the call, at most once every MIN_WRITE_INTERVAL (SD-card wear).
        store.buffer_writes(state::MIN_WRITE_INTERVAL);
        let r = Resources {
            state: Arc::new(Mutex::new(store)),
            denied: Arc::new(Denials::default()),
            buzzer_bucket: Arc::new(Mutex::new(buzzer::bucket())),
            leds_bucket: Arc::new(Mutex::new(leds::bucket())),
            telemetry_bucket: Arc::new(Mutex::new(telemetry::bucket())),
        };
        all.insert(name.to_string(), r.clone());
        Ok(r)
    }
}

/// What a plugin keeps across versions and instances.
#[derive(Clone)]
pub struct Resources {
    pub state: Arc<Mutex<state::Store>>,
    pub denied: Arc<Denials>,
    pub buzzer_bucket: Arc<Mutex<TokenBucket>>,
    pub leds_bucket: Arc<Mutex<TokenBucket>>,
    pub telemetry_bucket: Arc<Mutex<TokenBucket>>,
}

/// Long-lived per-plugin pieces that outlive any one instance: the state
/// store, the refusal counter, the LED buffer's ownership.
pub struct PluginShared {
    pub name: Arc<str>,
    pub grants: Grants,
    pub settings: toml::Table,
    pub limits: Limits,
    pub state: Arc<Mutex<state::Store>>,
    pub denied: Arc<Denials>,
    /// Actuator rate limits; they outlive instances on purpose.
    pub buzzer_bucket: Arc<Mutex<TokenBucket>>,
    pub leds_bucket: Arc<Mutex<TokenBucket>>,
    pub telemetry_bucket: Arc<Mutex<TokenBucket>>,
    /// Failures to save the state store are logged at most once a minute.
    pub state_error_log: Mutex<TokenBucket>,
}

impl PluginShared {
    pub fn new(
        name: &str,
        config: &PluginConfig,
        limits: Limits,
        services: &HostServices,
    ) -> anyhow::Result<PluginShared> {
        let quota = if config.grants.allows(Interface::State) {
            config
                .grants
                .state_quota_bytes
                .unwrap_or(crate::config::DEFAULT_STATE_QUOTA_BYTES)
        } else {
            0
        };
        let r = services.resources(name, quota)?;
        Ok(PluginShared {
            name: name.into(),
            grants: config.grants.clone(),
            settings: config.settings.clone(),
            limits,
            state: r.state,
            denied: r.denied,
            buzzer_bucket: r.buzzer_bucket,
            leds_bucket: r.leds_bucket,
            telemetry_bucket: r.telemetry_bucket,
            state_error_log: Mutex::new(TokenBucket::new(1, Duration::from_secs(60))),
        })
    }

    /// A fresh store context for one instance of this plugin.
    pub fn context(&self, services: &HostServices) -> PluginCtx {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPTURE_BYTES);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPTURE_BYTES);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_mb as usize * 1024 * 1024)
            .instances(16)
            .tables(64)
            .memories(4)
            .trap_on_grow_failure(false)
            .build();
        let limits = TrackedLimits {
            limits,
            memory_bytes: 0,
        };
        let refuse = Refuser {
            plugin: self.name.clone(),
            denied: self.denied.clone(),
        };
        PluginCtx {
            plugin: self.name.clone(),
            wasi,
            table: ResourceTable::new(),
            limits,
            stdout,
            stderr,
            deadline: None,
            interrupt: services.interrupt.clone(),
            gpio: gpio::Gpio::new(&self.grants, services.hardware.clone(), refuse.clone()),
            leds: leds::Leds::new(
                &self.grants,
                services.hardware.clone(),
                refuse.clone(),
                self.leds_bucket.clone(),
            ),
            buzzer: buzzer::Buzzer::new(
                services.hardware.clone(),
                refuse.clone(),
                self.buzzer_bucket.clone(),
            ),
            system: system::System::new(services.hardware.clone()),
            state: state::State::new(self.state.clone()),
            log: log::Log::new(self.name.clone()),
            settings: settings::Settings::new(&self.settings),
            telemetry: telemetry::Telemetry::new(
                self.name.clone(),
                refuse,
                self.telemetry_bucket.clone(),
                services.telemetry.clone(),
            ),
            readings: readings::Readings::new(&self.grants.follows, services.readings.clone()),
        }
    }
}

/// The store limits, plus the linear memory the instance holds (for
/// `/metrics`): wasmtime reports every memory's creation and growth to the
/// limiter, so the sum of granted growths is the instance's memory size.
pub struct TrackedLimits {
    limits: StoreLimits,
    pub memory_bytes: u64,
}

impl wasmtime::ResourceLimiter for TrackedLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let granted = self.limits.memory_growing(current, desired, maximum)?;
        if granted {
            self.memory_bytes += desired.saturating_sub(current) as u64;
        }
        Ok(granted)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Counts and logs (at most once every few seconds) calls a grant refused.
#[derive(Default)]
pub struct Denials {
    pub count: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

const DENIAL_LOG_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Refuser {
    plugin: Arc<str>,
    denied: Arc<Denials>,
}

impl Refuser {
    /// Records a refused call and returns the message the plugin gets.
    pub fn refuse(&self, message: String) -> String {
        let n = self.denied.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.denied.last_log.lock().expect("denial log lock");
        if last.is_none_or(|t| t.elapsed() >= DENIAL_LOG_EVERY) {
            *last = Some(Instant::now());
            ::log::warn!(target: "grants", "plugin `{}`: {message} ({n} refused so far)", self.plugin);
        }
        message
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }
}

/// Links one capability's interface into a plugin's linker, pointed at its
/// field of [`PluginCtx`].
pub type AddToLinker = fn(&mut Linker<PluginCtx>) -> wasmtime::Result<()>;

/// Every capability: its interface and how it is linked. Adding a
/// capability: its WIT interface in `wit/plugin.wit`, a variant of
/// `config::Interface`, a module here with its state, grant checks and
/// `Host` impl, its field in [`PluginCtx`], and its line below (a test
/// checks that this list, `config::Interface`, the WIT and the runtime's
/// list agree).
pub const REGISTRY: &[(Interface, AddToLinker)] = &[
    (Interface::GpioProvider, |l| {
        contract::gpio_provider::add_to_linker::<_, HasSelf<gpio::Gpio>>(l, |c| &mut c.gpio)
    }),
    (Interface::LedController, |l| {
        contract::led_controller::add_to_linker::<_, HasSelf<leds::Leds>>(l, |c| &mut c.leds)
    }),
    (Interface::BuzzerController, |l| {
        contract::buzzer_controller::add_to_linker::<_, HasSelf<buzzer::Buzzer>>(l, |c| {
            &mut c.buzzer
        })
    }),
    (Interface::System, |l| {
        contract::system::add_to_linker::<_, HasSelf<system::System>>(l, |c| &mut c.system)
    }),
    (Interface::State, |l| {
        contract::state::add_to_linker::<_, HasSelf<state::State>>(l, |c| &mut c.state)
    }),
    (Interface::Log, |l| {
        contract::log::add_to_linker::<_, HasSelf<log::Log>>(l, |c| &mut c.log)
    }),
    (Interface::Settings, |l| {
        contract::settings::add_to_linker::<_, HasSelf<settings::Settings>>(l, |c| &mut c.settings)
    }),
    (Interface::Telemetry, |l| {
        contract::telemetry::add_to_linker::<_, HasSelf<telemetry::Telemetry>>(l, |c| {
            &mut c.telemetry
        })
    }),
    (Interface::Readings, |l| {
        contract::readings::add_to_linker::<_, HasSelf<readings::Readings>>(l, |c| &mut c.readings)
    }),
];

/// Builds the linker for a plugin with these grants: WASI (which grants
/// nothing, and whose clock waits end by the call's deadline), the granted
/// contract interfaces, and a trapping stub for every function of every
/// other contract interface `component` imports.
pub fn linker(
    engine: &wasmtime::Engine,
    plugin: &str,
    grants: &Grants,
    component: &wasmtime::component::Component,
) -> anyhow::Result<Linker<PluginCtx>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(anyhow::Error::from)
        .context("failed to link WASI")?;
    sleep::add_to_linker(&mut linker)?;
    contract::types::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c)?;
    for &interface in &grants.interfaces {
        let add = REGISTRY
            .iter()
            .find(|(i, _)| *i == interface)
            .map(|(_, add)| add)
            .with_context(|| format!("no capability module for interface `{interface}`"))?;
        add(&mut linker)?;
    }
    add_denied_stubs(&mut linker, engine, plugin, grants, component)?;
    Ok(linker)
}

/// Links a trapping stub for each function of each contract interface that
/// `component` imports and `grants` does not allow.
fn add_denied_stubs(
    linker: &mut Linker<PluginCtx>,
    engine: &wasmtime::Engine,
    plugin: &str,
    grants: &Grants,
    component: &wasmtime::component::Component,
) -> anyhow::Result<()> {
    let prefix = format!("{}/", contract::PACKAGE);
    for (name, item) in component.component_type().imports(engine) {
        let Some(interface) = name
            .strip_prefix(&prefix)
            .map(|i| i.split('@').next().unwrap_or(i))
        else {
            continue;
        };
        if interface == "types" || grants.allows_named(interface) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let message = format!(
            "{interface} is not granted to plugin `{plugin}`; to allow it, set in \
             [plugins.{plugin}.grants]: {}",
            grants.interfaces_line(&[interface])
        );
        let mut root = linker.root();
        let mut stubs = root.instance(name)?;
        for (func, item) in instance.exports(engine) {
            if !matches!(item.ty, ComponentItem::ComponentFunc(_)) {
                continue;
            }
            let message = message.clone();
            stubs.func_new(func, move |_, _, _, _| {
                Err(wasmtime::Error::new(crate::failure::HostTrap {
                    kind: FailureKind::NotGranted,
                    message: message.clone(),
                }))
            })?;
        }
    }
    Ok(())
}

/// A component's imports and exports by name, for `check`.
pub struct Description {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

pub fn describe(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> Description {
    let ty = component.component_type();
    Description {
        imports: ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
        exports: ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
    }
}

/// Contract interfaces `component` imports that `grants` does not allow,
/// and imports from other packages that this host does not provide.
pub fn ungranted_imports(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
    grants: &Grants,
) -> Vec<String> {
    let prefix = format!("{}/", contract::PACKAGE);
    component
        .component_type()
        .imports(engine)
        .filter_map(|(name, _)| {
            let interface = name.strip_prefix(&prefix)?;
            let interface = interface.split('@').next().unwrap_or(interface);
            (interface != "types" && !grants.allows_named(interface)).then(|| interface.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interfaces of the runtime's world in `wit/plugin.wit`.
    fn wit_imports() -> Vec<String> {
        let wit = include_str!("../../wit/plugin.wit");
        let world = wit
            .split("world python-runtime {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("wit/plugin.wit has the python-runtime world");
        world
            .lines()
            .filter_map(|l| l.trim().strip_prefix("import "))
            .map(|i| i.trim_end_matches(';').to_string())
            .collect()
    }

    #[test]
    fn registry_config_wit_runtime_and_test_kit_agree() {
        let names: Vec<&str> = Interface::ALL.iter().map(|i| i.name()).collect();
        // One registry entry per interface, no more.
        for i in Interface::ALL {
            assert_eq!(
                REGISTRY.iter().filter(|(r, _)| *r == i).count(),
                1,
                "{i}: one capability module in REGISTRY"
            );
        }
        assert_eq!(REGISTRY.len(), Interface::ALL.len());
        // The runtime imports exactly the grantable interfaces.
        let mut wit = wit_imports();
        wit.sort();
        let mut sorted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        sorted.sort();
        assert_eq!(wit, sorted, "the python-runtime world's imports");
        // The runtime's loader and the test kit know each by its module.
        let loader = include_str!("../../runtime/plugin_loader.py");
        let kit = include_str!("../../plugins/testing/fakehost/__init__.py");
        for i in Interface::ALL {
            let module = i.name().replace('-', "_");
            assert!(
                loader.contains(&format!("\"{}\": \"{module}\"", i.name())),
                "runtime/plugin_loader.py INTERFACES lacks {i}"
            );
            assert!(
                kit.contains(&format!("\"{module}\": dict(")),
                "the test kit has no fakes for {i}"
            );
        }
    }
}
