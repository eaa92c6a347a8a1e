//! The typed `host.toml`.
//!
//! Every table denies unknown keys, so a typo is an error instead of a
//! silently ignored setting. Errors name the file, the key and the line,
//! because a user editing a config on a headless Pi over ssh has nothing else
//! to go on. Relative paths in the file are resolved against the directory
//! the file is in, so the host behaves the same whatever its working
//! directory is (systemd starts it in `/`).

mod error;
pub mod ownership;
pub mod rules;

pub use error::ConfigError;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Which hardware backend drives the devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HardwareMode {
    /// `pi` on a Raspberry Pi, `sim` everywhere else.
    Auto,
    /// Simulated sensors and actuators.
    Sim,
    /// Real devices through GPIO, I2C and the LED strip driver.
    Pi,
}

impl std::str::FromStr for HardwareMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "sim" => Ok(Self::Sim),
            "pi" => Ok(Self::Pi),
            other => Err(format!(
                "unknown hardware mode `{other}`: expected auto, sim or pi"
            )),
        }
    }
}

impl std::fmt::Display for HardwareMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Sim => "sim",
            Self::Pi => "pi",
        })
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub host: HostSection,
    #[serde(default)]
    pub hardware: HardwareSection,
    /// Defaults for every plugin's limits; a plugin's own `limits` table
    /// overrides single keys.
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Home Assistant / fleet telemetry over MQTT; off unless enabled.
    #[serde(default)]
    pub mqtt: MqttSection,
    /// The file this was read from; resolved paths are relative to its folder.
    #[serde(skip)]
    pub source: PathBuf,
    /// [`text_digest`] of the text this was parsed from: tells whether the
    /// file on disk is still what is running.
    #[serde(skip)]
    pub text_digest: String,
}

/// A digest of a config file's text (SHA-256, hex).
pub fn text_digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostSection {
    pub listen: SocketAddr,
    pub hardware: HardwareMode,
    /// Folder holding `<name>/app.py` for every plugin, and `common/`, the
    /// modules every plugin may import.
    pub plugins_dir: PathBuf,
    /// The shared Python runtime component (built by
    /// scripts/build-runtime.sh). A device that has it precompiled in its
    /// cache (scripts/deploy.sh puts it there) needs no file here.
    pub runtime: PathBuf,
    /// Writable folder for plugin state (and the artifact cache, unless
    /// `cache_dir` says otherwise).
    pub state_dir: PathBuf,
    /// Where compiled plugins are cached; default `<state_dir>/cache`.
    pub cache_dir: Option<PathBuf>,
    /// HTTP requests routed at once.
    pub http_workers: usize,
    /// Open HTTP connections at most; past it the longest-waiting idle or
    /// slow one is closed for a newcomer, or the newcomer gets `503`.
    pub http_max_connections: usize,
    /// A request must arrive whole (head and body) this long after its
    /// first byte, or it gets `408`.
    pub http_request_timeout_ms: u64,
    /// A keep-alive connection is closed after waiting this long for its
    /// next request.
    pub http_idle_timeout_ms: u64,
    /// Open connections one client (an IPv4 address, or an IPv6 /64) may
    /// hold; past it its own idlest connection is closed for its newcomer.
    /// Default: a quarter of `http_max_connections` (32 of 128).
    pub http_max_connections_per_client: Option<usize>,
    /// Host names (the `Host` header) the HTTP server answers besides IP
    /// addresses, `localhost`, the machine's host name and names no public
    /// DNS can serve (single-label, `.local`, `.lan`, `.home.arpa`, ...).
    /// `"*"` answers any name (behind a reverse proxy that checks it).
    pub http_allowed_hosts: Vec<String>,
    /// Whether control endpoints (buzzer, simulated hardware) answer:
    /// `token` (default) requires the control token, `off` refuses them.
    pub control: ControlMode,
    /// The control token. Unset: one is generated on first run and kept in
    /// `<state_dir>/control-token`.
    pub control_token: Option<String>,
}

impl HostSection {
    /// `http_max_connections_per_client`, or its default: a quarter of
    /// `http_max_connections`, at least 1.
    pub fn max_connections_per_client(&self) -> usize {
        self.http_max_connections_per_client
            .unwrap_or((self.http_max_connections / 4).max(1))
    }
}

/// See [`HostSection::control`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ControlMode {
    #[default]
    Token,
    Off,
}

impl Default for HostSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 3000)),
            hardware: HardwareMode::Auto,
            plugins_dir: PathBuf::from("../plugins"),
            runtime: PathBuf::from("../runtime/python-runtime.wasm"),
            state_dir: PathBuf::from("../var"),
            cache_dir: None,
            http_workers: 4,
            http_max_connections: 128,
            http_request_timeout_ms: 10_000,
            http_idle_timeout_ms: 5_000,
            http_max_connections_per_client: None,
            http_allowed_hosts: Vec::new(),
            control: ControlMode::Token,
            control_token: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HardwareSection {
    /// How long a caller waits for the hardware thread before giving up.
    pub request_timeout_ms: u64,
    pub sim: SimSection,
    pub leds: LedSection,
    pub buzzer: BuzzerSection,
    pub bme680: Bme680Section,
}

impl Default for HardwareSection {
    fn default() -> Self {
        Self {
            request_timeout_ms: 250,
            sim: SimSection::default(),
            leds: LedSection::default(),
            buzzer: BuzzerSection::default(),
            bme680: Bme680Section::default(),
        }
    }
}

/// How the BME680's gas sensor is heated for each reading (both backends
/// run the same driver).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bme680Section {
    /// Heater plate target, °C. Bosch suggests 320.
    pub heater_temp_c: u16,
    /// How long the heater runs before the gas conversion. A reading takes
    /// this plus ~33 ms, during which the hardware thread is busy.
    pub heater_ms: u16,
}

impl Default for Bme680Section {
    fn default() -> Self {
        Self {
            heater_temp_c: 320,
            heater_ms: 150,
        }
    }
}

/// Conversion time of one BME680 reading besides the heater (oversampling
/// T×8, P×4, H×2) plus I2C transfers, rounded up.
const BME680_OVERHEAD_MS: u64 = 50;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSection {
    /// Same seed, same readings: tests and demos are repeatable.
    pub seed: u64,
    /// Pins with a simulated DHT22.
    pub dht22_pins: Vec<u8>,
    /// I2C addresses with a simulated BME680.
    pub bme680_addresses: Vec<u8>,
    /// Of those, the ones where the simulated chip is a BME688 (same chip
    /// id, variant id 0x01, its own gas registers and formula).
    pub bme688_addresses: Vec<u8>,
}

impl Default for SimSection {
    fn default() -> Self {
        Self {
            seed: 1,
            dht22_pins: vec![4],
            bme680_addresses: vec![0x77],
            bme688_addresses: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedSection {
    /// Number of WS2812B LEDs on the strip.
    pub count: u8,
    /// Data pin (BCM); 18 is the PWM pin rs_ws281x drives.
    pub pin: u8,
    /// Global brightness cap, 0–255, applied to every colour.
    pub brightness: u8,
    /// What drives the strip on a Pi.
    pub driver: LedDriver,
}

impl Default for LedSection {
    fn default() -> Self {
        Self {
            count: 3,
            pin: 18,
            brightness: 64,
            driver: LedDriver::Auto,
        }
    }
}

/// `hardware.leds.driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedDriver {
    /// rs_ws281x, falling back to SPI (data on GPIO 10) where it cannot
    /// start (a Pi 5, or no /dev/mem access).
    Auto,
    /// rs_ws281x only: PWM/DMA on `pin`, needs root.
    Ws281x,
    /// SPI0 only: data on MOSI, GPIO 10; needs the `spi` group.
    Spi,
}

/// SPI0's MOSI, the only pin the `spi` LED driver can use.
pub const SPI_MOSI_PIN: u8 = 10;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuzzerSection {
    pub pin: u8,
    /// Longest single tone the host will play, whatever a plugin asks for.
    pub max_duration_ms: u32,
    pub kind: BuzzerKind,
    /// Tone of a passive buzzer; ignored for an active one.
    pub frequency_hz: u32,
}

impl Default for BuzzerSection {
    fn default() -> Self {
        Self {
            pin: 17,
            max_duration_ms: 2000,
            kind: BuzzerKind::Active,
            frequency_hz: 2000,
        }
    }
}

/// `hardware.buzzer.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuzzerKind {
    /// Has its own oscillator: sounds while the pin is high.
    Active,
    /// A bare transducer: driven with a square wave at `frequency_hz`.
    Passive,
}

/// `[mqtt]`: publishing readings to a broker, with Home Assistant discovery.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSection {
    pub enabled: bool,
    /// Broker host name or address; with TLS, the name the broker's
    /// certificate must carry.
    pub host: String,
    /// Default 1883, or 8883 with `tls`.
    pub port: Option<u16>,
    /// TLS to the broker (rustls), verifying its certificate and name.
    pub tls: bool,
    /// PEM file of the CA(s) that signed the broker's certificate; without
    /// it the system trust store is used. Relative to the config file's
    /// folder; resolved to an absolute path at load.
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// MQTT client id; default `wasi-python-host-<device_id>`.
    pub client_id: Option<String>,
    /// Where state, availability and commands live; default
    /// `wasi-python-host/<device_id>`.
    pub topic_prefix: Option<String>,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// The device's name in Home Assistant.
    pub device_name: String,
    /// Stable id: part of every unique_id and topic. Letters, digits, `_`, `-`.
    pub device_id: String,
    /// State is published on every change, and at least this often.
    pub publish_interval_s: u64,
    /// MQTT keep-alive; the broker sends the last will after 1.5× this.
    pub keep_alive_s: u16,
    /// Messages kept while the broker is away; the oldest are dropped.
    pub queue_limit: usize,
}

impl Default for MqttSection {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "localhost".into(),
            port: None,
            tls: false,
            ca_file: None,
            username: None,
            password: None,
            client_id: None,
            topic_prefix: None,
            discovery_prefix: "homeassistant".into(),
            device_name: "Raspberry Pi sensors".into(),
            device_id: "pi".into(),
            publish_interval_s: 60,
            keep_alive_s: 30,
            queue_limit: 256,
        }
    }
}

/// The usual MQTT ports (IANA): plain and over TLS.
pub const MQTT_PORT: u16 = 1883;
pub const MQTT_TLS_PORT: u16 = 8883;

impl MqttSection {
    /// The configured port, or the usual one for plain MQTT or TLS.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls { MQTT_TLS_PORT } else { MQTT_PORT })
    }

    /// `host:port`, as logs and `/api` name the broker.
    pub fn broker(&self) -> String {
        format!("{}:{}", self.host, self.port())
    }

    pub fn topic_prefix(&self) -> String {
        self.topic_prefix
            .clone()
            .unwrap_or_else(|| format!("wasi-python-host/{}", self.device_id))
    }

    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("wasi-python-host-{}", self.device_id))
    }

    /// Checks what serde cannot; returns the dotted key at fault.
    fn validate(&self) -> Result<(), (String, String)> {
        let key = |k: &str| format!("mqtt.{k}");
        if self.host.trim().is_empty() {
            return Err((
                key("host"),
                "must name the broker (a host name or address)".into(),
            ));
        }
        if self.port == Some(0) {
            return Err((key("port"), "must be 1–65535 (1883 plain, 8883 TLS)".into()));
        }
        if self.tls {
            if let Err(e) = rules::server_name(&self.host) {
                return Err((key("host"), e));
            }
        }
        match &self.ca_file {
            Some(_) if !self.tls => {
                return Err((
                    key("ca_file"),
                    "only used with tls = true: set tls = true to reach the broker over TLS, \
                     or remove ca_file"
                        .into(),
                ))
            }
            Some(file) => {
                rules::load_ca_file(file).map_err(|e| (key("ca_file"), e))?;
            }
            None => {}
        }
        if self.password.is_some() && self.username.is_none() {
            return Err((key("password"), "needs a username too".into()));
        }
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !id_ok(&self.device_id) {
            return Err((
                key("device_id"),
                "must be 1–64 letters, digits, `_` or `-` (it is part of every topic and unique_id)"
                    .into(),
            ));
        }
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.len() > 64 {
                return Err((key("client_id"), "must be 1–64 characters".into()));
            }
        }
        for (k, topic) in [
            ("topic_prefix", self.topic_prefix()),
            ("discovery_prefix", self.discovery_prefix.clone()),
        ] {
            if topic.is_empty()
                || topic.starts_with('/')
                || topic.ends_with('/')
                || topic.contains(['#', '+', '\0'])
            {
                return Err((
                    key(k),
                    "must be a topic like `a/b`: not empty, no leading or trailing `/`, no `#` or `+`"
                        .into(),
                ));
            }
        }
        if !(1..=86_400).contains(&self.publish_interval_s) {
            return Err((key("publish_interval_s"), "must be 1–86400 s".into()));
        }
        if !(5..=3600).contains(&self.keep_alive_s) {
            return Err((key("keep_alive_s"), "must be 5–3600 s".into()));
        }
        if !(1..=100_000).contains(&self.queue_limit) {
            return Err((key("queue_limit"), "must be 1–100000 messages".into()));
        }
        Ok(())
    }
}

/// Resource limits for one plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wasm fuel per call (roughly instructions); a `poll` uses ~130 k, a
    /// dashboard render ~1.3 M.
    pub fuel: u64,
    /// Wall-clock limit per call, enforced by epoch interruption.
    pub deadline_ms: u64,
    /// Linear memory ceiling. A componentize-py plugin starts at 12.4 MiB.
    pub memory_mb: u32,
    /// Largest result a call may return (readings or a page), in KiB.
    pub max_result_kb: u32,
    /// Drop the instance after every call and re-create it from the
    /// copy-on-write image for the next (~1 ms): an idle plugin then costs
    /// almost no memory instead of the ~8 MiB CPython dirties. Python globals
    /// do not survive between calls; keep state in the `state` interface.
    pub recycle: bool,
}

impl Limits {
    /// The limits of a version's first load: see [`FIRST_LOAD_FACTOR`].
    pub fn first_load(&self) -> Limits {
        Limits {
            fuel: self.fuel.saturating_mul(FIRST_LOAD_FACTOR),
            deadline_ms: (self.deadline_ms * FIRST_LOAD_FACTOR).min(MAX_DEADLINE_MS),
            ..*self
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 200_000_000,
            deadline_ms: 1000,
            memory_mb: 64,
            max_result_kb: 1024,
            recycle: false,
        }
    }
}

/// Per-plugin overrides of [`Limits`]; missing keys inherit `[limits]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub fuel: Option<u64>,
    pub deadline_ms: Option<u64>,
    pub memory_mb: Option<u32>,
    pub max_result_kb: Option<u32>,
    pub recycle: Option<bool>,
}

impl LimitOverrides {
    pub fn apply(&self, base: Limits) -> Limits {
        Limits {
            fuel: self.fuel.unwrap_or(base.fuel),
            deadline_ms: self.deadline_ms.unwrap_or(base.deadline_ms),
            memory_mb: self.memory_mb.unwrap_or(base.memory_mb),
            max_result_kb: self.max_result_kb.unwrap_or(base.max_result_kb),
            recycle: self.recycle.unwrap_or(base.recycle),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What the plugin is: the entry point the host calls. Required; an
    /// `Option` only so that a missing one gets a better message than
    /// serde's (see [`Config::validate`]). The config decides, never the
    /// plugin: a plugin cannot make itself the dashboard by exporting it.
    #[serde(default)]
    pub kind: Option<PluginKind>,
    /// A componentize-py component to run instead of Python source in the
    /// shared runtime (the escape hatch for a plugin that needs more than the
    /// runtime's standard library). Default: none, the plugin is the Python
    /// source in `<plugins_dir>/<name>/`.
    #[serde(default)]
    pub component: Option<PathBuf>,
    /// How often the scheduler calls `poll`. Ignored for the dashboard,
    /// which renders when the data changes.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    #[serde(default)]
    pub limits: LimitOverrides,
    #[serde(default)]
    pub grants: Grants,
    /// Free-form settings the plugin reads through the `settings` interface.
    #[serde(default)]
    pub settings: toml::Table,
}

fn yes() -> bool {
    true
}

/// `plugins.NAME.kind`: which entry point of the contract the plugin
/// implements, and so what the host calls and what it does with the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// `sensor.poll`: readings of any sensor, real or derived.
    Sensor,
    /// `automation.run`: reacts to the readings it follows, drives actuators.
    Automation,
    /// `dht22-logic.poll`: temperature and humidity readings.
    Dht22,
    /// `bme680-logic.poll`: air readings with an IAQ score.
    Bme680,
    /// `pi-monitor-logic.poll`: the device's own health.
    PiMonitor,
    /// `dashboard.render`: the HTML page.
    Dashboard,
}

impl PluginKind {
    pub const ALL: [PluginKind; 6] = [
        PluginKind::Sensor,
        PluginKind::Automation,
        PluginKind::Dht22,
        PluginKind::Bme680,
        PluginKind::PiMonitor,
        PluginKind::Dashboard,
    ];

    /// The value in the config file.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Sensor => "sensor",
            PluginKind::Automation => "automation",
            PluginKind::Dht22 => "dht22",
            PluginKind::Bme680 => "bme680",
            PluginKind::PiMonitor => "pi-monitor",
            PluginKind::Dashboard => "dashboard",
        }
    }

    /// The contract interface the plugin exports.
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::Sensor => "sensor",
            PluginKind::Automation => "automation",
            PluginKind::Dht22 => "dht22-logic",
            PluginKind::Bme680 => "bme680-logic",
            PluginKind::PiMonitor => "pi-monitor-logic",
            PluginKind::Dashboard => "dashboard",
        }
    }
}

impl PluginConfig {
    /// The plugin's kind; validation guarantees there is one.
    pub fn kind(&self) -> PluginKind {
        self.kind.unwrap_or(PluginKind::Dashboard)
    }
}

fn default_interval() -> u64 {
    2000
}

/// What a plugin may touch. Everything defaults to nothing.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// Contract interfaces the plugin may import, by WIT name
    /// (`gpio-provider`, `led-controller`, ...).
    pub interfaces: Vec<Interface>,
    /// GPIO pins (BCM) the plugin may read a DHT22 on.
    pub dht22_pins: Vec<u8>,
    /// I2C addresses the plugin may read a BME680 at.
    pub i2c_addresses: Vec<u8>,
    /// LED indices the plugin may set.
    pub leds: Vec<u8>,
    /// Bytes the plugin may keep in its state store.
    pub state_quota_bytes: Option<u64>,
    /// Plugins whose latest readings this plugin gets: as the argument of
    /// an automation's `run`, and from the `readings` interface.
    pub follows: Vec<String>,
    /// Sensor ids the plugin may report besides those it owns anyway (its
    /// name, `<name>-…`, its devices' ids): see [`ownership`].
    pub sensor_ids: Vec<String>,
}

/// A contract interface a grant can name: every interface of
/// `wit/plugin.wit` a plugin may import (`types` is always there). Each has
/// one module in `capabilities` (see `capabilities::REGISTRY`; a test keeps
/// the two, the WIT and the runtime's list in step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interface {
    GpioProvider,
    LedController,
    BuzzerController,
    System,
    State,
    Log,
    Settings,
    Telemetry,
    Readings,
}

impl Interface {
    pub const ALL: [Interface; 9] = [
        Interface::GpioProvider,
        Interface::LedController,
        Interface::BuzzerController,
        Interface::System,
        Interface::State,
        Interface::Log,
        Interface::Settings,
        Interface::Telemetry,
        Interface::Readings,
    ];

    /// Its name in the WIT and in the config.
    pub fn name(self) -> &'static str {
        match self {
            Interface::GpioProvider => "gpio-provider",
            Interface::LedController => "led-controller",
            Interface::BuzzerController => "buzzer-controller",
            Interface::System => "system",
            Interface::State => "state",
            Interface::Log => "log",
            Interface::Settings => "settings",
            Interface::Telemetry => "telemetry",
            Interface::Readings => "readings",
        }
    }

    /// The interface called `name`, if there is one.
    pub fn named(name: &str) -> Option<Interface> {
        Interface::ALL.into_iter().find(|i| i.name() == name)
    }
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Folders of the plugins folder that are not plugins: the modules every
/// plugin shares, and the test kit.
pub const RESERVED_PLUGIN_NAMES: &[&str] = &["common", "testing"];

/// State quota when a plugin is granted `state` without naming one.
pub const DEFAULT_STATE_QUOTA_BYTES: u64 = 64 * 1024;

/// The smallest fuel budget a config may set.
pub const MIN_FUEL: u64 = 10_000_000;

/// The first load of a plugin version (on the loader thread, off the
/// schedule) compiles its Python, which takes far longer than a call: it
/// runs with this many times the call's fuel and deadline (the deadline at
/// most [`MAX_DEADLINE_MS`]). Every later load has cached bytecode and the
/// call's own limits.
pub const FIRST_LOAD_FACTOR: u64 = 10;

/// The longest call deadline a config may set.
pub const MAX_DEADLINE_MS: u64 = 60_000;

/// The fastest poll rate the scheduler accepts.
pub const MIN_INTERVAL_MS: u64 = 50;

impl Grants {
    pub fn allows(&self, interface: Interface) -> bool {
        self.interfaces.contains(&interface)
    }

    /// Whether the interface called `name` is granted (false for a name
    /// that is no interface).
    pub fn allows_named(&self, name: &str) -> bool {
        Interface::named(name).is_some_and(|i| self.allows(i))
    }

    /// The `interfaces = [...]` line that grants what is granted now and
    /// `more`: what an error about an ungranted import tells the user to set.
    pub fn interfaces_line<S: AsRef<str>>(&self, more: &[S]) -> String {
        let mut names: Vec<&str> = self.interfaces.iter().map(|i| i.name()).collect();
        for m in more {
            if !names.contains(&m.as_ref()) {
                names.push(m.as_ref());
            }
        }
        format!(
            "interfaces = [{}]",
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text` as if read from `path`.
    ///
    /// A file must be whole: an empty one, or one without a `[host]` table
    /// or without any `[plugins.NAME]`, is refused like a syntax error.
    /// That is what a save cut short by a full disk or a power cut looks
    /// like, and applying it would stop every plugin it no longer lists.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                key: String::new(),
                line: 1,
                message: format!(
                    "the file is empty: {REQUIRED} (a save cut short by a full disk or a power \
                     cut leaves an empty file; restore it, e.g. from config/host.toml)"
                ),
            });
        }
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
        config.source = path.to_path_buf();
        config.text_digest = text_digest(text);
        if let Some(ca) = config.mqtt.ca_file.take() {
            config.mqtt.ca_file = Some(config.resolve(&ca));
        }
        config
            .validate()
            .map_err(|(key, message)| ConfigError::invalid(path, text, &key, message))?;
        check_complete(text, path)?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges, names, cross-references. Returns the
    /// dotted key at fault and what would be valid.
    fn validate(&self) -> Result<(), (String, String)> {
        if self.host.http_workers == 0 || self.host.http_workers > 64 {
            return Err((
                "host.http_workers".into(),
                "must be between 1 and 64".into(),
            ));
        }
        if !(1..=4096).contains(&self.host.http_max_connections) {
            return Err((
                "host.http_max_connections".into(),
                "must be between 1 and 4096 (each open connection holds a small thread)".into(),
            ));
        }
        for (key, value) in [
            (
                "host.http_request_timeout_ms",
                self.host.http_request_timeout_ms,
            ),
            ("host.http_idle_timeout_ms", self.host.http_idle_timeout_ms),
        ] {
            if !(100..=600_000).contains(&value) {
                return Err((key.into(), "must be between 100 and 600000 ms".into()));
            }
        }
        if let Some(n) = self.host.http_max_connections_per_client {
            if !(1..=self.host.http_max_connections).contains(&n) {
                return Err((
                    "host.http_max_connections_per_client".into(),
                    format!(
                        "must be between 1 and host.http_max_connections ({})",
                        self.host.http_max_connections
                    ),
                ));
            }
        }
        for name in &self.host.http_allowed_hosts {
            if let Err(why) = check_host_pattern(name) {
                return Err(("host.http_allowed_hosts".into(), why));
            }
        }
        if let Some(token) = &self.host.control_token {
            if let Err(why) = rules::check_token_text(token) {
                return Err(("host.control_token".into(), why));
            }
        }
        if self.hardware.request_timeout_ms == 0 {
            return Err((
                "hardware.request_timeout_ms".into(),
                "must be at least 1".into(),
            ));
        }
        self.validate_devices()?;
        ownership::check(self)?;
        if self.mqtt.enabled {
            self.mqtt.validate()?;
        }
        check_limits("limits", &self.limits)?;
        let mut dashboard: Option<&str> = None;
        for (name, plugin) in &self.plugins {
            let key = |k: &str| format!("plugins.{name}.{k}");
            // The page at `/` is one plugin's: a second dashboard would
            // silently take the slot of the first.
            if plugin.enabled && plugin.kind == Some(PluginKind::Dashboard) {
                if let Some(first) = dashboard {
                    return Err((
                        key("kind"),
                        format!(
                            "only one plugin can be the dashboard (the page at /), and \
                             `{first}` is kind = \"dashboard\" too: disable one of them \
                             (enabled = false)"
                        ),
                    ));
                }
                dashboard = Some(name);
            }
            rules::check_plugin_name(name).map_err(|why| (format!("plugins.{name}"), why))?;
            if plugin.kind.is_none() {
                return Err((
                    key("kind"),
                    format!(
                        "missing: say what the plugin is with kind = \"...\", one of {} \
                         (the entry point the host calls)",
                        PluginKind::ALL
                            .iter()
                            .map(|k| format!("\"{}\"", k.name()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if plugin.interval_ms < MIN_INTERVAL_MS {
                return Err((
                    key("interval_ms"),
                    format!("must be at least {MIN_INTERVAL_MS} ms"),
                ));
            }
            check_limits(&key("limits"), &plugin.limits.apply(self.limits))?;
            for &index in &plugin.grants.leds {
                if index >= self.hardware.leds.count {
                    return Err((
                        key("grants.leds"),
                        format!(
                            "LED {index} does not exist: the strip has {} LEDs (hardware.leds.count)",
                            self.hardware.leds.count
                        ),
                    ));
                }
            }
            for &addr in &plugin.grants.i2c_addresses {
                if !(0x08..=0x77).contains(&addr) {
                    return Err((
                        key("grants.i2c_addresses"),
                        format!("{addr:#04x} is not a 7-bit I2C device address (0x08–0x77)"),
                    ));
                }
            }
            for followed in &plugin.grants.follows {
                if followed == name || !self.plugins.contains_key(followed) {
                    return Err((
                        key("grants.follows"),
                        format!(
                            "`{followed}` is not another plugin of this config (plugins: {})",
                            self.plugins
                                .keys()
                                .filter(|n| *n != name)
                                .map(String::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            if plugin.kind == Some(PluginKind::Automation) && plugin.grants.follows.is_empty() {
                return Err((
                    key("grants.follows"),
                    "an automation needs the plugins whose readings it reacts to: \
                     follows = [\"bme680\"], say"
                        .into(),
                ));
            }
            for &pin in &plugin.grants.dht22_pins {
                if pin > 27 {
                    return Err((
                        key("grants.dht22_pins"),
                        format!("GPIO {pin} is not a header pin (BCM 0–27)"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The `[hardware.*]` device tables.
    fn validate_devices(&self) -> Result<(), (String, String)> {
        let hw = &self.hardware;
        if !(200..=400).contains(&hw.bme680.heater_temp_c) {
            return Err((
                "hardware.bme680.heater_temp_c".into(),
                "must be between 200 and 400 °C (Bosch suggests 320)".into(),
            ));
        }
        if !(1..=4032).contains(&hw.bme680.heater_ms) {
            return Err((
                "hardware.bme680.heater_ms".into(),
                "must be between 1 and 4032 ms (the chip's gas_wait register)".into(),
            ));
        }
        let reading_ms = u64::from(hw.bme680.heater_ms) + BME680_OVERHEAD_MS;
        if reading_ms > hw.request_timeout_ms {
            return Err((
                "hardware.bme680.heater_ms".into(),
                format!(
                    "a BME680 reading takes heater_ms + ~{BME680_OVERHEAD_MS} ms = {reading_ms} ms, \
                     longer than hardware.request_timeout_ms ({}): lower heater_ms or raise \
                     request_timeout_ms",
                    hw.request_timeout_ms
                ),
            ));
        }
        if hw.buzzer.kind == BuzzerKind::Passive && !(20..=20_000).contains(&hw.buzzer.frequency_hz)
        {
            return Err((
                "hardware.buzzer.frequency_hz".into(),
                "must be between 20 and 20000 Hz (most passive buzzers resonate at 2000–4000)"
                    .into(),
            ));
        }
        if hw.leds.driver == LedDriver::Spi && hw.leds.pin != SPI_MOSI_PIN {
            return Err((
                "hardware.leds.pin".into(),
                format!(
                    "with driver = \"spi\" the strip's data comes from MOSI: set pin = \
                     {SPI_MOSI_PIN} and wire the data line to GPIO {SPI_MOSI_PIN} (header pin 19)"
                ),
            ));
        }
        Ok(())
    }

    /// Resolves a path from the file against the file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_path_buf();
        }
        let base = self.source.parent().unwrap_or_else(|| Path::new("."));
        base.join(path)
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.resolve(&self.host.plugins_dir)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.resolve(&self.host.state_dir)
    }

    pub fn cache_dir(&self) -> PathBuf {
        match &self.host.cache_dir {
            Some(dir) => self.resolve(dir),
            None => self.state_dir().join("cache"),
        }
    }

    /// The folder of plugin `name`'s Python source.
    pub fn plugin_dir(&self, name: &str) -> PathBuf {
        self.plugins_dir().join(name)
    }

    /// The modules every plugin may import: `<plugins_dir>/common`.
    pub fn common_dir(&self) -> PathBuf {
        self.plugins_dir().join("common")
    }

    /// The component file of plugin `name`, when it is a component plugin.
    pub fn component_file(&self, name: &str) -> Option<PathBuf> {
        let file = self.plugins.get(name)?.component.as_ref()?;
        Some(self.resolve(file))
    }

    /// What plugin `name` is loaded from, for logs and status: its
    /// component, or its folder of Python source.
    pub fn plugin_origin(&self, name: &str) -> PathBuf {
        self.component_file(name)
            .unwrap_or_else(|| self.plugin_dir(name))
    }

    /// The shared Python runtime component.
    pub fn runtime_file(&self) -> PathBuf {
        self.resolve(&self.host.runtime)
    }

    /// The limits plugin `name` runs with.
    pub fn limits_for(&self, name: &str) -> Limits {
        self.plugins
            .get(name)
            .map(|p| p.limits.apply(self.limits))
            .unwrap_or(self.limits)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.hardware.request_timeout_ms)
    }
}

/// An entry of `host.http_allowed_hosts`: `"*"`, a host name, or
/// `*.suffix` for every name under a domain. Names are compared without
/// case and without the port.
pub fn check_host_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "`{}` is not a host name: use names like \"pi.example.com\", \"*.example.com\" \
             (every name under it) or \"*\" (any name; only behind a proxy that checks it), \
             without a port",
            crate::text::truncate(pattern, 80)
        ));
    }
    Ok(())
}

/// What every config file must have, as the error messages say it.
const REQUIRED: &str = "a config needs a [host] table and at least one [plugins.NAME] table";

/// Refuses a file that parsed but lacks a required table: the usual shape
/// of a truncated file. The error points at the end of the file, where the
/// missing part would have been.
fn check_complete(text: &str, path: &Path) -> Result<(), ConfigError> {
    // `parse` already succeeded on the typed form, so this cannot fail;
    // an empty table stands in if it somehow does.
    let table: toml::Table = text.parse().unwrap_or_default();
    let last_line = text.trim_end().lines().count().max(1);
    let cut = "if the file ends early, a save was cut short (a full disk or a power cut): \
               restore the missing part";
    let missing = |key: &str, message: String| ConfigError::Invalid {
        file: path.to_path_buf(),
        key: key.to_string(),
        line: last_line,
        message,
    };
    if !table.get("host").is_some_and(toml::Value::is_table) {
        return Err(missing("host", format!("missing: {REQUIRED}; {cut}")));
    }
    if table
        .get("plugins")
        .and_then(toml::Value::as_table)
        .is_none_or(toml::Table::is_empty)
    {
        return Err(missing(
            "plugins",
            format!(
                "no plugin is configured: {REQUIRED} (to stop a plugin, set its \
                 enabled = false); {cut}"
            ),
        ));
    }
    Ok(())
}

/// The largest `memory_mb` accepted. A plugin's linear memory is at most
/// 4 GiB (wasm32), and the byte count must fit a 32-bit `usize` on armv7;
/// more than 1 GiB for one plugin makes no sense on a Pi (a Zero 2 W has
/// 512 MiB in all).
pub const MAX_MEMORY_MB: u32 = 1024;

fn check_limits(key: &str, limits: &Limits) -> Result<(), (String, String)> {
    if limits.fuel < MIN_FUEL {
        return Err((
            format!("{key}.fuel"),
            format!(
                "must be at least {MIN_FUEL}: loading a plugin's Python into a fresh instance \
                 (after a failure, or every call with recycle) takes 2-7 million, a poll ~130000"
            ),
        ));
    }
    if limits.deadline_ms < 10 || limits.deadline_ms > MAX_DEADLINE_MS {
        return Err((
            format!("{key}.deadline_ms"),
            format!("must be between 10 and {MAX_DEADLINE_MS}"),
        ));
    }
    if limits.max_result_kb == 0 {
        return Err((format!("{key}.max_result_kb"), "must be at least 1".into()));
    }
    if limits.memory_mb < 16 {
        return Err((
            format!("{key}.memory_mb"),
            "must be at least 16: a componentize-py plugin starts with 12.4 MiB of linear memory"
                .into(),
        ));
    }
    if limits.memory_mb > MAX_MEMORY_MB {
        return Err((
            format!("{key}.memory_mb"),
            format!(
                "must be at most {MAX_MEMORY_MB} MiB: a plugin needs ~20 (the shipped ones run in \
                 the default 64), and a Pi Zero 2 W has 512 MiB in all"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal whole config, with `extra` appended.
    fn whole(extra: &str) -> String {
        format!(
            "[host]\nlisten = \"127.0.0.1:0\"\n\n[plugins.p]\nkind = \"sensor\"\ninterval_ms = 1000\n{extra}"
        )
    }

    /// Parses `text`; `Ok` or the one-line error.
    fn check(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("host.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_shipped_configs_are_whole() {
        for file in ["config/host.toml", "deploy/host.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(config.plugins.len() >= 4, "{file}");
        }
    }

    #[test]
    fn an_empty_or_cut_short_file_is_refused_with_file_line_and_key() {
        let shipped =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/host.toml"))
                .unwrap();
        // Cut where TOML is still valid: after the [host] table, and before
        // the first plugin.
        let before_plugins = &shipped[..shipped.find("\n[plugins.").unwrap() + 1];
        let cases: &[(&str, &str)] = &[
            ("", "host.toml:1: the file is empty"),
            ("  \n\t\n  \n", "host.toml:1: the file is empty"),
            ("# just a comment\n", "host.toml:1: `host`: missing"),
            (
                "[plugins.p]\nkind = \"sensor\"\n",
                "host.toml:2: `host`: missing",
            ),
            (
                "[host]\nlisten = \"127.0.0.1:0\"\n",
                "host.toml:2: `plugins`: no plugin",
            ),
            ("[host]\n[plugins]\n", "host.toml:2: `plugins`: no plugin"),
            (before_plugins, "`plugins`: no plugin is configured"),
        ];
        for (text, expected) in cases {
            let error = check(text).expect_err(text);
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(
                error.contains("[host]") && error.contains("[plugins.NAME]"),
                "says what a config needs: {error}"
            );
            assert_eq!(error.lines().count(), 1, "{error}");
        }
        let error = check(before_plugins).unwrap_err();
        let last_line = before_plugins.trim_end().lines().count();
        assert!(
            error.contains(&format!("host.toml:{last_line}:")),
            "{error}"
        );
        assert!(error.contains("cut short"), "{error}");
        // Disabled plugins count: that is how a config stops them all.
        check(&whole("enabled = false\n")).unwrap();
        // A specific mistake is reported before a missing table.
        let error = check("[hardware.bme680]\nheater_temp_c = 900\n").unwrap_err();
        assert!(error.contains("heater_temp_c"), "{error}");
    }

    #[test]
    fn a_second_enabled_dashboard_is_refused_and_a_disabled_one_is_not() {
        let two = "[plugins.a]\nkind = \"dashboard\"\n[plugins.b]\nkind = \"dashboard\"\n";
        let error = check(&whole(two)).unwrap_err();
        assert!(
            error.contains("`plugins.b.kind`: only one plugin can be the dashboard")
                && error.contains(
                    "`a` is kind = \"dashboard\" too: disable one of them (enabled = false)"
                ),
            "{error}"
        );
        let off = "[plugins.a]\nkind = \"dashboard\"\n[plugins.b]\nkind = \"dashboard\"\nenabled = false\n";
        check(&whole(off)).unwrap();
    }

    #[test]
    fn limits_and_http_keys_have_bounds() {
        for (extra, key) in [
            (
                "[limits]\nmemory_mb = 1025\n",
                "host.toml:8: `limits.memory_mb`: must be at most 1024",
            ),
            (
                "[plugins.p.limits]\nmemory_mb = 4096\n",
                "`plugins.p.limits.memory_mb`: must be at most",
            ),
            (
                "[limits]\nmemory_mb = 8\n",
                "`limits.memory_mb`: must be at least 16",
            ),
        ] {
            let error = check(&whole(extra)).expect_err(extra);
            assert!(error.contains(key), "{extra:?}: {error}");
        }
        check(&whole("[limits]\nmemory_mb = 1024\n")).unwrap();

        let host = |lines: &str| format!("[host]\n{lines}\n[plugins.p]\nkind = \"sensor\"\n");
        let config = check(&host("http_max_connections = 128")).unwrap();
        assert_eq!(config.host.max_connections_per_client(), 32);
        let config = check(&host("http_max_connections = 2")).unwrap();
        assert_eq!(config.host.max_connections_per_client(), 1);
        let config = check(&host("http_max_connections_per_client = 8")).unwrap();
        assert_eq!(config.host.max_connections_per_client(), 8);
        for (lines, expected) in [
            (
                "http_max_connections = 16\nhttp_max_connections_per_client = 17",
                "`host.http_max_connections_per_client`: must be between 1 and host.http_max_connections (16)",
            ),
            ("http_max_connections_per_client = 0", "must be between 1"),
            ("http_allowed_hosts = [\"pi.example.com:3000\"]", "`host.http_allowed_hosts`: `pi.example.com:3000` is not a host name"),
            ("http_allowed_hosts = [\"\"]", "is not a host name"),
            ("http_allowed_hosts = [\"a..b\"]", "is not a host name"),
            ("http_allowed_hosts = [\"*.*.b\"]", "is not a host name"),
        ] {
            let error = check(&host(lines)).expect_err(lines);
            assert!(error.contains(expected), "{lines:?}: {error}");
        }
        let config = check(&host(
            "http_allowed_hosts = [\"pi.example.com\", \"*.home.example\", \"*\"]",
        ))
        .unwrap();
        assert_eq!(config.host.http_allowed_hosts.len(), 3);
    }
}
