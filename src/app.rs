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
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::capabilities::HostServices;
use crate::config::{self, Config, HardwareMode};
use crate::control::Control;
use crate::hardware::bme680::Bme680Settings;
use crate::hardware::pi::{BuzzerKind, LedDriver, PiBackend, PiOptions};
use crate::hardware::{Backend, Hardware, HardwareOptions, SimBackend};
use crate::http::{self, AppState, HttpServer};
use crate::mqtt::Service as MqttService;
use crate::runtime::Runtime;
use crate::scheduler::{self, Command, Shared};

/// The hardware backend `config` asks for; `hardware = "auto"` is `pi` on
/// a Raspberry Pi and `sim` anywhere else.
pub fn backend(config: &Config) -> anyhow::Result<Box<dyn Backend>> {
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

/// A running host.
pub struct Host {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
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
        let mut state = AppState::new(
            shared.clone(),
            hardware.handle(),
            control,
            hardware_name,
            auth,
        );
        state.mqtt = Some(mqtt.clone());
        state.hosts = http::hosts::AllowedHosts::new(&config_hosts);
        let http = HttpServer::start(listen, limits, Arc::new(state))?;
        log::info!("listening on http://{}", http.addr);
        log::info!("{control_note}");
        Ok(Host {
            addr: http.addr,
            shared,
            http: Some(http),
            mqtt,
            scheduler: Some(scheduler),
            commands,
            hardware,
            runtime,
        })
    }

    /// Why the host cannot go on, once it cannot: a thread it needs
    /// (scheduler, loader, HTTP acceptor, MQTT) died of a panic, or the
    /// scheduler ended.
    pub fn failure(&self) -> Option<String> {
        if let Some(fatal) = self.shared.fatal.get() {
            return Some(fatal.clone());
        }
        self.scheduler
            .as_ref()
            .is_some_and(|t| t.is_finished())
            .then(|| "the scheduler thread stopped".to_string())
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
