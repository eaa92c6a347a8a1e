//! Wiring: starts the threads in order and stops them in reverse.
//!
//! hardware → runtime (engine + epoch ticker) → scheduler (loads plugins,
//! then polls) → HTTP workers. HTTP is up before the plugins finish loading,
//! so a cold start (which compiles every plugin) still answers `/healthz`
//! and shows a "loading" page at once. The MQTT thread (when `[mqtt]` is
//! enabled) starts before HTTP and only reads what the scheduler publishes.
//! Shutdown stops HTTP first, then MQTT (a clean `offline`), then the
//! scheduler (which drops the plugins, putting their actuators in the safe
//! state), then the hardware thread (LEDs off, buzzer silent).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::capabilities::HostServices;
use crate::config::{self, Config, HardwareMode};
use crate::control::Control;
use crate::hardware::bme680::Bme680Settings;
use crate::hardware::pi::{BuzzerKind, LedDriver, PiBackend, PiOptions};
use crate::hardware::{Backend, Hardware, HardwareOptions, ProbePlan, SimBackend};
use crate::http::{self, AppState, HttpServer};
use crate::mqtt::Service as MqttService;
use crate::runtime::Runtime;
use crate::scheduler::{self, Command, Shared};

/// What the command line can override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub hardware: Option<HardwareMode>,
}

/// Reads the config and applies command-line overrides.
pub fn load_config(
    path: &std::path::Path,
    overrides: &Overrides,
) -> Result<Config, crate::config::ConfigError> {
    let mut config = Config::load(path)?;
    if let Some(listen) = overrides.listen {
        config.host.listen = listen;
    }
    if let Some(hardware) = overrides.hardware {
        config.host.hardware = hardware;
    }
    Ok(config)
}

fn backend(config: &Config) -> anyhow::Result<Box<dyn Backend>> {
    let mode = match config.host.hardware {
        HardwareMode::Auto if crate::hardware::pi::is_raspberry_pi() => {
            log::info!("hardware = auto: this is a Raspberry Pi, using the `pi` backend");
            HardwareMode::Pi
        }
        HardwareMode::Auto => {
            log::info!("hardware = auto: not a Raspberry Pi, using the simulated `sim` backend");
            HardwareMode::Sim
        }
        mode => mode,
    };
    let hw = &config.hardware;
    let bme680 = Bme680Settings {
        heater_temp_c: hw.bme680.heater_temp_c,
        heater_duration: Duration::from_millis(hw.bme680.heater_ms.into()),
        ..Bme680Settings::default()
    };
    match mode {
        // Devices open on first use, so a missing one is reported by the
        // sensor that needs it and never stops the host from starting.
        HardwareMode::Pi => Ok(Box::new(PiBackend::new(PiOptions {
            led_count: hw.leds.count,
            led_pin: hw.leds.pin,
            led_driver: match hw.leds.driver {
                config::LedDriver::Auto => LedDriver::Auto,
                config::LedDriver::Ws281x => LedDriver::Ws281x,
                config::LedDriver::Spi => LedDriver::Spi,
            },
            buzzer_pin: hw.buzzer.pin,
            buzzer_kind: match hw.buzzer.kind {
                config::BuzzerKind::Active => BuzzerKind::Active,
                config::BuzzerKind::Passive => BuzzerKind::Passive {
                    frequency_hz: f64::from(hw.buzzer.frequency_hz),
                },
            },
            bme680,
            ..PiOptions::default()
        }))),
        _ => Ok(Box::new(
            SimBackend::with_bme680_settings(
                hw.sim.seed,
                hw.sim.dht22_pins.clone(),
                hw.sim.bme680_addresses.clone(),
                bme680,
            )
            .with_bme688_at(&hw.sim.bme688_addresses),
        )),
    }
}

/// What `probe` checks: the pins and addresses granted to enabled plugins
/// (the only ones the host will ever touch), the strip and the buzzer.
pub fn probe_plan(config: &Config) -> ProbePlan {
    let mut plan = ProbePlan {
        led_count: config.hardware.leds.count,
        led_pin: config.hardware.leds.pin,
        buzzer_pin: config.hardware.buzzer.pin,
        ..ProbePlan::default()
    };
    for plugin in config.plugins.values().filter(|p| p.enabled) {
        plan.dht22_pins.extend(&plugin.grants.dht22_pins);
        plan.bme680_addresses.extend(&plugin.grants.i2c_addresses);
    }
    for list in [&mut plan.dht22_pins, &mut plan.bme680_addresses] {
        list.sort_unstable();
        list.dedup();
    }
    plan
}

/// `wasi-python-host probe`: checks every configured device with the
/// selected backend and prints what it found. `Ok(false)` when a device is
/// missing or failing.
/// `token`: prints the control token (generating it on first use), for
/// `Authorization: Bearer` clients and the browser login.
pub fn print_token(config_path: PathBuf, overrides: Overrides) -> anyhow::Result<()> {
    let config = load_config(&config_path, &overrides)?;
    let auth = crate::http::auth::Auth::load(&config)?;
    match auth.token() {
        Some(token) => {
            println!("{token}");
            eprintln!("(from {})", auth.source);
            Ok(())
        }
        None => anyhow::bail!(
            "control endpoints are off in {} (host.control = \"off\"); set it to \"token\" to use them",
            config_path.display()
        ),
    }
}

pub fn probe(config_path: PathBuf, overrides: Overrides) -> anyhow::Result<bool> {
    let config = load_config(&config_path, &overrides)?;
    let mut backend = backend(&config)?;
    let report = crate::hardware::probe(backend.as_mut(), &probe_plan(&config));
    print!("{report}");
    Ok(report.all_found())
}

/// A running host.
pub struct Host {
    pub addr: SocketAddr,
    http: Option<HttpServer>,
    mqtt: Arc<MqttService>,
    scheduler: Option<std::thread::JoinHandle<()>>,
    commands: crossbeam_channel::Sender<Command>,
    hardware: Hardware,
    runtime: Arc<Runtime>,
}

impl Host {
    /// Starts everything for `config`.
    pub fn start(config: Config) -> anyhow::Result<Host> {
        crate::budget::check(&config, crate::budget::current())
            .map_err(|why| anyhow::anyhow!("{}: {why}", config.source.display()))?;
        let backend = backend(&config)?;
        let hardware_name = backend.name().to_string();
        let hardware = Hardware::start(
            backend,
            HardwareOptions {
                led_count: config.hardware.leds.count,
                brightness: config.hardware.leds.brightness,
                max_tone: Duration::from_millis(config.hardware.buzzer.max_duration_ms.into()),
                request_timeout: config.request_timeout(),
                ..HardwareOptions::default()
            },
        )
        .context("failed to start the hardware thread")?;
        let state_dir = config.state_dir();
        std::fs::create_dir_all(&state_dir).with_context(|| {
            format!(
                "cannot create the state directory {} (host.state_dir)",
                state_dir.display()
            )
        })?;
        let runtime = Arc::new(Runtime::new(&config.cache_dir())?);
        let services = HostServices::new(hardware.handle(), state_dir.clone(), runtime.interrupt());
        let shared = Shared::new();
        let (commands, command_rx) = crossbeam_channel::bounded(16);
        let channel = (commands.clone(), command_rx);
        let listen = config.host.listen;
        let limits = http::Limits {
            workers: config.host.http_workers,
            max_connections: config.host.http_max_connections,
            max_connections_per_client: config.host.max_connections_per_client(),
            request_timeout: Duration::from_millis(config.host.http_request_timeout_ms),
            idle_timeout: Duration::from_millis(config.host.http_idle_timeout_ms),
        };
        let auth = crate::http::auth::Auth::load(&config)?;
        let config_hosts = config.host.http_allowed_hosts.clone();
        let control = Arc::new(Control::new(hardware.handle()));
        let mqtt = MqttService::new(shared.clone(), control.clone(), hardware_name.clone());
        mqtt.apply(&config.mqtt)
            .context("failed to start the MQTT thread")?;
        // A changed [mqtt] table applies live: the loader tells the service.
        let follow = mqtt.clone();
        let on_config: crate::plugins::reload::ConfigHook = Box::new(move |c: &Config| {
            if let Err(e) = follow.apply(&c.mqtt) {
                log::error!(target: "mqtt", "config change: cannot start the MQTT thread: {e}");
            }
        });
        let scheduler = scheduler::spawn(
            config,
            runtime.clone(),
            services,
            shared.clone(),
            hardware_name.clone(),
            channel,
            vec![on_config],
        )
        .context("failed to start the scheduler thread")?;
        let control_note = if auth.enabled() {
            format!(
                "control endpoints need the token from {} (`wasi-python-host token` prints it; \
                 browsers log in at /login)",
                auth.source
            )
        } else {
            "control endpoints are off (host.control = \"off\")".to_string()
        };
        let mut state = AppState::new(shared, hardware.handle(), control, hardware_name, auth);
        state.mqtt = Some(mqtt.clone());
        state.hosts = http::hosts::AllowedHosts::new(&config_hosts);
        let http = HttpServer::start(listen, limits, Arc::new(state))?;
        log::info!("listening on http://{}", http.addr);
        log::info!("{control_note}");
        Ok(Host {
            addr: http.addr,
            http: Some(http),
            mqtt,
            scheduler: Some(scheduler),
            commands,
            hardware,
            runtime,
        })
    }

    /// Stops HTTP, the scheduler and the hardware, in that order.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(http) = self.http.take() {
            http.stop();
        }
        // Before the scheduler: `offline` goes out while readings are current.
        self.mqtt.shutdown();
        if let Some(scheduler) = self.scheduler.take() {
            // Whatever a plugin is doing (a long call, a wait), it ends now.
            self.runtime.interrupt_all();
            let _ = self.commands.send(Command::Stop);
            let _ = scheduler.join();
        }
        self.hardware.shutdown();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What `precompile` was asked for.
#[derive(Debug, Clone, Default)]
pub struct PrecompileOptions {
    /// Component plugins to compile besides the runtime; empty means every
    /// enabled one.
    pub names: Vec<String>,
    /// Build artifacts for another machine (`aarch64-unknown-linux-gnu`,
    /// `armv7-unknown-linux-gnueabihf`, `pulley32`) instead of this one.
    pub target: Option<String>,
    /// Write there instead of the config's `cache_dir`.
    pub out: Option<PathBuf>,
}

/// Compiles the shared Python runtime and the enabled component plugins
/// (or those named) into the artifact cache, so the next start compiles
/// nothing. Prints one line per artifact. Source plugins need no compiling.
///
/// With a target, compiles for that machine's engine into `out` (default:
/// `precompiled/<target>`) under the names its cache looks up: copy the
/// folder's files into the device's `cache_dir` and it loads them without
/// compiling (needed by a runtime-only build).
pub fn precompile(
    config_path: PathBuf,
    overrides: Overrides,
    options: &PrecompileOptions,
) -> anyhow::Result<()> {
    let config = load_config(&config_path, &overrides)?;
    let names = &options.names;
    for name in names {
        match config.plugins.get(name) {
            None => anyhow::bail!("plugin `{name}` is not in {}", config_path.display()),
            Some(p) if p.component.is_none() => anyhow::bail!(
                "plugin `{name}` is Python source: it needs no compiling (the runtime runs it)"
            ),
            Some(_) => {}
        }
    }
    let components: Vec<(String, PathBuf)> = config
        .plugins
        .iter()
        .filter(|(name, plugin)| names.contains(name) || (names.is_empty() && plugin.enabled))
        .filter_map(|(name, _)| Some((name.clone(), config.component_file(name)?)))
        .collect();
    if let Some(target) = &options.target {
        let out = options
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("precompiled").join(target));
        return precompile_for_target(&config, target, &out, components);
    }
    let cache_dir = options.out.clone().unwrap_or_else(|| config.cache_dir());
    let runtime = Runtime::new(&cache_dir)?;
    let started = std::time::Instant::now();
    let python = runtime.python(&config.runtime_file())?;
    println!(
        "python runtime {}: ready in {:.2} s ({})",
        &python.digest[..12],
        started.elapsed().as_secs_f64(),
        config.runtime_file().display()
    );
    for (name, file) in components {
        let started = std::time::Instant::now();
        let bytes = crate::fsutil::read_limited(&file, crate::plugins::files::MAX_COMPONENT_BYTES)?;
        let (_, source) = runtime
            .cache()
            .load_or_compile_with_source(runtime.engine(), &bytes)
            .with_context(|| format!("failed to load plugin {}", file.display()))?;
        let how = match source {
            crate::runtime::CacheSource::Cache => "already cached",
            crate::runtime::CacheSource::Compiled => "compiled",
        };
        println!(
            "{name}: {how} in {:.2} s ({})",
            started.elapsed().as_secs_f64(),
            file.display()
        );
    }
    Ok(())
}

#[cfg(feature = "compiler")]
fn precompile_for_target(
    config: &Config,
    triple: &str,
    out: &std::path::Path,
    components: Vec<(String, PathBuf)>,
) -> anyhow::Result<()> {
    use crate::runtime::{engine_config_for, ArtifactCache, EngineTarget};
    let target = EngineTarget::for_triple(triple)?;
    let engine = wasmtime::Engine::new(&engine_config_for(&target)?)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "cannot compile for `{triple}` ({}): this host was built without that \
                 Cranelift backend; build it with `--features precompile-all-targets`",
                target.name
            )
        })?;
    let cache = ArtifactCache::new(out, &target)
        .with_context(|| format!("failed to create {}", out.display()))?;
    println!(
        "precompiling for {triple}: {} -> {}",
        target.descriptor(),
        out.display()
    );
    let missing_backend = |e: anyhow::Error, what: &str| {
        // A backend missing from this build shows up at the first compile.
        e.context(format!(
            "failed to compile {what} for {triple} (a host built without \
             `--features precompile-all-targets` only compiles for itself and Pulley)"
        ))
    };
    let started = std::time::Instant::now();
    let runtime_file = config.runtime_file();
    let (path, fresh) =
        crate::runtime::python::precompile_into(&engine, &cache, &target, &runtime_file)
            .map_err(|e| missing_backend(e, "the Python runtime"))?;
    println!(
        "python runtime: {} in {:.2} s -> {}",
        if fresh {
            "compiled"
        } else {
            "already precompiled"
        },
        started.elapsed().as_secs_f64(),
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    for (name, file) in components {
        let started = std::time::Instant::now();
        let bytes = crate::fsutil::read_limited(&file, crate::plugins::files::MAX_COMPONENT_BYTES)?;
        let (path, fresh) = cache
            .precompile_into(&engine, &bytes)
            .map_err(|e| missing_backend(e, &format!("plugin {}", file.display())))?;
        println!(
            "{name}: {} in {:.2} s -> {}",
            if fresh {
                "compiled"
            } else {
                "already precompiled"
            },
            started.elapsed().as_secs_f64(),
            path.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    Ok(())
}

#[cfg(not(feature = "compiler"))]
fn precompile_for_target(
    _config: &Config,
    triple: &str,
    _out: &std::path::Path,
    _components: Vec<(String, PathBuf)>,
) -> anyhow::Result<()> {
    anyhow::bail!(
        "cannot precompile for `{triple}`: this is a runtime-only build (no compiler); \
         precompile on a build machine with a host built with `--features precompile-all-targets`"
    )
}

/// `check` without a plugin: validates the config file alone, as the
/// service would read it, and checks it against this process's cgroup
/// limits (`budget`), and prints what it would run. Compiles nothing, opens
/// no device and writes no file, so the deploy can run it on the device
/// with a new binary before switching to it.
pub fn check_config(config_path: PathBuf, overrides: Overrides) -> anyhow::Result<()> {
    let config = load_config(&config_path, &overrides)?;
    crate::budget::check(&config, crate::budget::current())
        .map_err(|why| anyhow::anyhow!("{}: {why}", config_path.display()))?;
    let enabled: Vec<&str> = config
        .plugins
        .iter()
        .filter(|(_, p)| p.enabled)
        .map(|(name, _)| name.as_str())
        .collect();
    println!(
        "config ok: {}: listen {}, hardware {}, {} plugin(s) enabled: {}",
        config_path.display(),
        config.host.listen,
        config.host.hardware,
        enabled.len(),
        enabled.join(", ")
    );
    Ok(())
}

/// `check`: shows what a plugin is and whether the host would load it,
/// without starting the host. `target` names a configured plugin (its
/// source is loaded into the shared runtime exactly as the host would, on
/// simulated hardware: a SyntaxError or an ungranted import shows here), or
/// a component file. Returns the verdict.
pub fn check(
    config_path: PathBuf,
    overrides: Overrides,
    target: &str,
    name: Option<String>,
) -> anyhow::Result<bool> {
    let config = load_config(&config_path, &overrides)?;
    let file = std::path::Path::new(target);
    if config.plugins.contains_key(target) && name.is_none() {
        return check_plugin(&config, target);
    }
    if !target.ends_with(".wasm") {
        anyhow::bail!(
            "`{target}` is neither a plugin in {} nor a component file (.wasm)",
            config_path.display()
        );
    }
    let name = name.unwrap_or_else(|| {
        file.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin")
            .to_string()
    });
    let runtime = Runtime::new(&config.cache_dir())?;
    let bytes = crate::fsutil::read_limited(file, crate::plugins::files::MAX_COMPONENT_BYTES)?;
    println!("file:     {} ({} KiB)", file.display(), bytes.len() / 1024);
    let component = runtime
        .cache()
        .load_or_compile(runtime.engine(), &bytes)
        .with_context(|| format!("{} is not a loadable WebAssembly component", file.display()))?;
    let report = crate::capabilities::describe(runtime.engine(), &component);
    println!("imports:");
    for i in &report.imports {
        println!("  {i}");
    }
    println!("exports:");
    for e in &report.exports {
        println!("  {e}");
    }
    let Some(plugin) = config.plugins.get(&name) else {
        println!("config:   {} has no [plugins.{name}]: it would not be loaded (use --name to pick the entry)", config_path.display());
        return Ok(false);
    };
    print_grants(&config, &name);
    let missing =
        crate::capabilities::ungranted_imports(runtime.engine(), &component, &plugin.grants);
    let exports = crate::runtime::check_exports(runtime.engine(), &component, plugin.kind());
    if !missing.is_empty() {
        println!(
            "verdict:  refused: imports {} without a grant; to allow, set in [plugins.{name}.grants]: {}",
            missing.join(", "),
            plugin.grants.interfaces_line(&missing)
        );
        Ok(false)
    } else if let Err(e) = exports {
        println!("verdict:  refused: {e:#}");
        Ok(false)
    } else {
        println!("verdict:  loads as `{name}`");
        Ok(true)
    }
}

fn print_grants(config: &Config, name: &str) {
    let Some(plugin) = config.plugins.get(name) else {
        return;
    };
    let g = &plugin.grants;
    println!(
        "kind:     {} (entry point `{}`)",
        plugin.kind().name(),
        plugin.kind().interface()
    );
    println!(
        "grants in [plugins.{name}.grants] of {}:",
        config.source.display()
    );
    println!(
        "  interfaces      = {:?}",
        g.interfaces.iter().map(|i| i.name()).collect::<Vec<_>>()
    );
    println!("  dht22_pins      = {:?}", g.dht22_pins);
    println!("  i2c_addresses   = {:?}", g.i2c_addresses);
    println!("  leds            = {:?}", g.leds);
    println!("  state_quota     = {:?}", g.state_quota_bytes);
    println!("  follows         = {:?}", g.follows);
    println!("  sensor_ids      = {:?}", g.sensor_ids);
    if matches!(
        plugin.kind(),
        config::PluginKind::Sensor | config::PluginKind::Dht22 | config::PluginKind::Bme680
    ) {
        println!(
            "sensor ids it may report: {}",
            crate::config::ownership::owned(config, name).describe()
        );
    }
}

/// `check NAME`: loads a configured plugin as the host would.
fn check_plugin(config: &Config, name: &str) -> anyhow::Result<bool> {
    println!(
        "plugin:   {name} ({})",
        config.plugin_origin(name).display()
    );
    if config.component_file(name).is_none() {
        let sources = crate::plugins::files::read_sources(
            name,
            &config.plugin_dir(name),
            &config.common_dir(),
        )?;
        println!("version:  {}", sources.version);
        println!("modules:");
        for m in &sources.modules {
            println!("  {:<20} {} ({} bytes)", m.name, m.path, m.source.len());
        }
    }
    print_grants(config, name);
    // Simulated hardware and a throwaway state folder: checking must not
    // touch devices or the plugin's real state.
    let mut hardware = Hardware::start(
        Box::new(SimBackend::new(
            config.hardware.sim.seed,
            config.hardware.sim.dht22_pins.clone(),
            config.hardware.sim.bme680_addresses.clone(),
        )),
        HardwareOptions::default(),
    )?;
    let scratch =
        std::env::temp_dir().join(format!("wasi-python-host-check-{}", std::process::id()));
    let runtime = Runtime::new(&config.cache_dir())?;
    let services = HostServices::new(hardware.handle(), scratch.clone(), runtime.interrupt());
    let registry = crate::plugins::Registry::default();
    let started = std::time::Instant::now();
    let loaded = crate::plugins::load(name, config, &runtime, &services, &registry);
    let verdict = match loaded {
        Ok(plugin) => {
            println!(
                "verdict:  loads as `{name}` (version {}, {} ms)",
                plugin.version,
                started.elapsed().as_millis()
            );
            true
        }
        Err(e) => {
            println!("verdict:  refused: {e:#}");
            if let Some(crate::plugins::LoadFailure(f)) = e.downcast_ref() {
                if !f.detail.is_empty() {
                    println!("{}", f.detail);
                }
            }
            false
        }
    };
    drop(services);
    hardware.shutdown();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(verdict)
}

/// `new`: scaffolds `plugins/NAME/` and prints (or, with `add`, appends to
/// the config) the entry the plugin needs. `led` defaults to the first LED
/// no other plugin is granted; the plugin it follows is the config's first
/// enabled plugin of the kind it derives from (see [`crate::scaffold`]).
pub fn new_plugin(
    config_path: PathBuf,
    name: &str,
    kind: crate::scaffold::Kind,
    led: Option<u8>,
    add: bool,
) -> anyhow::Result<()> {
    let config = load_config(&config_path, &Overrides::default())?;
    crate::config::rules::check_plugin_name(name).map_err(anyhow::Error::msg)?;
    if config.plugins.contains_key(name) {
        anyhow::bail!("{} already has [plugins.{name}]", config_path.display());
    }
    if led.is_some() && !kind.uses_led() {
        anyhow::bail!("--led: a {} plugin drives no LED", kind.config_kind());
    }
    let count = config.hardware.leds.count;
    let led = match led {
        Some(led) => led,
        None if !kind.uses_led() => 0,
        None => crate::scaffold::first_free_led(&config).ok_or_else(|| {
                anyhow::anyhow!(
                    "all {count} LEDs are granted to other plugins: raise hardware.leds.count in {} or choose one to share with --led N",
                    config_path.display()
                )
            })?,
    };
    let mut notes = Vec::new();
    let follows = match (
        kind.follows_kind(),
        crate::scaffold::followed(&config, kind),
    ) {
        (None, _) => String::new(),
        (Some(_), Some(other)) => other,
        (Some(wanted), None) => {
            notes.push(format!(
                "note: it follows the readings of a `{0}` plugin, and {1} has no enabled plugin of kind \"{0}\": set `follows` in its entry to a plugin whose readings have the fields it uses",
                wanted.name(),
                config_path.display()
            ));
            wanted.name().to_string()
        }
    };
    let mut enabled = true;
    if kind == crate::scaffold::Kind::Dashboard {
        if let Some((other, _)) = config
            .plugins
            .iter()
            .find(|(_, p)| p.enabled && p.kind() == crate::config::PluginKind::Dashboard)
        {
            enabled = false;
            notes.push(format!(
                "note: the host serves one dashboard and {} has `{other}` on, so [plugins.{name}] has enabled = false: to serve this one instead, set enabled = false in [plugins.{other}] and remove that line from [plugins.{name}]",
                config_path.display()
            ));
        }
    }
    let options = crate::scaffold::Options {
        led,
        follows,
        enabled,
    };
    let entry = crate::scaffold::config_entry(name, kind, &options);
    // With --add, check the resulting config before writing anything.
    let new_config = if add {
        let mut text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&entry);
        crate::config::Config::parse(&text, &config_path)?;
        Some(text)
    } else {
        None
    };
    let made = crate::scaffold::create(&config.plugins_dir(), name, kind, &options)?;
    for file in &made.files {
        println!("created {}", file.display());
    }
    match new_config {
        Some(text) => {
            crate::fsutil::write_atomically(&config_path, text.as_bytes())
                .with_context(|| format!("cannot write {}", config_path.display()))?;
            println!("added [plugins.{name}] to {}", config_path.display());
        }
        None => println!(
            "\nadd this to {} (or run again with --add):\n\n{entry}",
            config_path.display()
        ),
    }
    for note in notes {
        println!("{note}");
    }
    println!(
        "next: edit {}/app.py (a running host loads each saved version by itself)\n      scripts/test-plugins.sh {}\n      the helpers and the test kit: docs/plugin-sdk.md",
        made.dir.display(),
        made.dir.display()
    );
    Ok(())
}

/// Runs the host until SIGINT or SIGTERM.
pub fn run(config_path: PathBuf, overrides: Overrides) -> anyhow::Result<()> {
    let config = load_config(&config_path, &overrides)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("failed to install signal handlers")?;
    }
    let host = Host::start(config)?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
    log::info!("shutting down");
    host.stop();
    log::info!("stopped: LEDs off, buzzer silent");
    Ok(())
}
