//! MQTT publishing for Home Assistant and fleet telemetry.
//!
//! One thread, plain blocking `std::net::TcpStream` and our own small MQTT
//! 3.1.1 codec ([`codec`]); no async runtime. The thread only *reads* what
//! the scheduler publishes (`Shared`): nothing else ever waits on it, so a
//! slow or absent broker cannot delay a plugin call or an HTTP request.
//!
//! On connect it sets a retained last will (`offline` on
//! `<prefix>/availability`), publishes `online` (retained), the retained
//! discovery configs ([`discovery`]), anything queued while the broker was
//! away, and the current state. Then it publishes state on every change of
//! the readings (and at least every `publish_interval_s`), answers the
//! buzzer buttons through [`crate::control`] (the same path and rate limit
//! as the dashboard's Beep button), and pings. A lost connection is retried
//! with exponential backoff (0.5 s doubling to 30 s); meanwhile state
//! changes go to a bounded queue that drops its oldest entries. With
//! `mqtt.tls` the socket is wrapped in rustls ([`tls`]) before CONNECT.
//! Entities that go away (a plugin disabled or removed) are withdrawn with
//! an empty retained discovery config. [`Service`] replaces the thread when
//! the config file's `[mqtt]` table changes.
//!
//! # Troubleshooting
//!
//! * `connection refused`: no broker on `mqtt.host`:`mqtt.port`
//!   (`systemctl status mosquitto`; Mosquitto 2 listens only on localhost
//!   unless its config has a `listener 1883` line).
//! * `bad username or password` / `not authorized`: check `mqtt.username`
//!   and `mqtt.password` against the broker's password file
//!   (`mosquitto_passwd`).
//! * Entities missing in Home Assistant: its MQTT integration must use the
//!   same discovery prefix (`mqtt.discovery_prefix`, default
//!   `homeassistant`).
//! * `certificate is not trusted` / `not valid for HOST` / `TLS handshake
//!   failed`: see [`tls`]; the message says which setting to change.

pub mod codec;
pub mod discovery;
pub mod tls;

use std::collections::{BTreeSet, VecDeque};
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::config::MqttSection;
use crate::control::{Control, Pattern};
use crate::scheduler::Shared;
use codec::{ConnectRefused, Incoming, Malformed};
use discovery::Naming;

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long connecting (TCP plus CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the loop looks at the readings when nothing arrives.
const TICK: Duration = Duration::from_millis(100);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often plugin health is compared with what was last published.
const PLUGIN_CHECK: Duration = Duration::from_secs(1);

/// Why a connection failed or ended.
#[derive(Debug)]
pub enum MqttError {
    /// The broker's name did not resolve.
    Resolve(String),
    Connect(std::io::Error),
    /// The broker answered CONNACK with a refusal.
    Refused(ConnectRefused),
    Io(std::io::Error),
    Closed,
    Protocol(Malformed),
    /// No answer within the keep-alive or the connect timeout.
    Timeout(&'static str),
    /// TLS could not be set up or the handshake failed; the message says
    /// what to fix.
    Tls(String),
}

impl std::fmt::Display for MqttError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MqttError::Resolve(e) => {
                write!(f, "cannot resolve the host name ({e}): check mqtt.host")
            }
            MqttError::Connect(e) => write!(f, "cannot connect: {e}"),
            MqttError::Refused(r) => write!(f, "the broker refused the connection: {r}"),
            MqttError::Io(e) => write!(f, "connection error: {e}"),
            MqttError::Closed => f.write_str("the broker closed the connection"),
            MqttError::Protocol(e) => write!(f, "{e}"),
            MqttError::Timeout(what) => write!(f, "no {what} from the broker in time"),
            MqttError::Tls(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for MqttError {}

/// What `/api` shows about MQTT.
#[derive(Debug, Default)]
pub struct Status {
    pub connected: AtomicBool,
    /// Messages handed to the broker.
    pub published: AtomicU64,
    /// Queued messages dropped (oldest first) while the broker was away.
    pub dropped: AtomicU64,
    /// Buzzer presses received on the command topic.
    pub commands: AtomicU64,
    pub connects: AtomicU64,
    pub last_error: Mutex<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    pub broker: String,
    pub connected: bool,
    pub published: u64,
    pub dropped: u64,
    pub commands: u64,
    pub connects: u64,
    pub last_error: String,
}

/// The running MQTT thread.
pub struct Mqtt {
    stop: Arc<AtomicBool>,
    /// Set with `stop`: withdraw every discovered entity before leaving.
    withdraw: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub status: Arc<Status>,
    pub broker: String,
    /// What it was started with.
    pub config: MqttSection,
}

/// Keeps the MQTT thread in step with `[mqtt]`: started at start when
/// enabled, and stopped (a clean `offline`), restarted or started when the
/// config file's `[mqtt]` table changes, without restarting the host.
pub struct Service {
    shared: Arc<Shared>,
    control: Arc<Control>,
    hardware_name: String,
    running: Mutex<Option<Mqtt>>,
    /// One change at a time.
    applying: Mutex<()>,
    /// Set at shutdown: no change starts a thread after it.
    closed: AtomicBool,
}

impl Service {
    pub fn new(shared: Arc<Shared>, control: Arc<Control>, hardware_name: String) -> Arc<Service> {
        Arc::new(Service {
            shared,
            control,
            hardware_name,
            running: Mutex::new(None),
            applying: Mutex::new(()),
            closed: AtomicBool::new(false),
        })
    }

    /// Makes the running thread match `config`: nothing when it already
    /// does, else stops the old thread (publishing `offline` to its broker)
    /// and starts one for the new settings when they are enabled.
    pub fn apply(&self, config: &MqttSection) -> std::io::Result<()> {
        let _one = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let wanted = config.enabled.then(|| config.clone());
        let current = self.lock().as_ref().map(|m| m.config.clone());
        if current == wanted {
            return Ok(());
        }
        // Out of the slot first, so /api never waits for the old thread.
        let old = self.lock().take();
        if let Some(mut old) = old {
            match &wanted {
                Some(new) if discovery_moves(&old.config, new) => {
                    // Under a new device id or discovery prefix the entities
                    // get new topics; the old ones would stay in Home
                    // Assistant as a second, dead device.
                    log::info!(target: "mqtt", "config change: [mqtt] device_id or discovery_prefix changed, withdrawing the old entities from {} and starting again", old.broker);
                    old.stop_and_withdraw();
                }
                Some(_) => {
                    log::info!(target: "mqtt", "config change: [mqtt] changed, disconnecting from {} to start again with the new settings", old.broker);
                    old.stop();
                }
                None => {
                    log::info!(target: "mqtt", "config change: MQTT disabled, disconnecting from {}", old.broker);
                    old.stop();
                }
            }
        }
        if let Some(config) = wanted {
            let mqtt = Mqtt::spawn(
                config,
                self.shared.clone(),
                self.control.clone(),
                self.hardware_name.clone(),
            )?;
            *self.lock() = Some(mqtt);
        }
        Ok(())
    }

    /// The running thread's status; `None` while MQTT is off.
    pub fn view(&self) -> Option<StatusView> {
        self.lock().as_ref().map(Mqtt::view)
    }

    /// Stops the thread for good (a clean `offline`).
    pub fn shutdown(&self) {
        let _one = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(true, Ordering::Relaxed);
        let old = self.lock().take();
        if let Some(mut old) = old {
            old.stop();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Mqtt>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Mqtt {
    pub fn spawn(
        config: MqttSection,
        shared: Arc<Shared>,
        control: Arc<Control>,
        hardware_name: String,
    ) -> std::io::Result<Mqtt> {
        let stop = Arc::new(AtomicBool::new(false));
        let withdraw = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Status::default());
        let broker = config.broker();
        let config_copy = config.clone();
        let naming = Naming {
            prefix: config.topic_prefix(),
            discovery_prefix: config.discovery_prefix.clone(),
            device_id: config.device_id.clone(),
            device_name: config.device_name.clone(),
            hardware: hardware_name,
        };
        let worker = Worker {
            outbox: Outbox::new(config.queue_limit),
            config,
            naming,
            shared,
            control,
            status: status.clone(),
            stop: stop.clone(),
            withdraw: withdraw.clone(),
            broker: broker.clone(),
            seen: Seen::default(),
            tls: None,
            announced: Default::default(),
        };
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || worker.run())?;
        Ok(Mqtt {
            stop,
            withdraw,
            thread: Some(thread),
            status,
            broker,
            config: config_copy,
        })
    }

    pub fn view(&self) -> StatusView {
        view(&self.broker, &self.status)
    }

    /// Like [`Mqtt::stop`], withdrawing every entity this thread announced
    /// to Home Assistant first (empty retained discovery configs).
    pub fn stop_and_withdraw(&mut self) {
        self.withdraw.store(true, Ordering::Relaxed);
        self.stop();
    }

    /// Publishes `offline`, disconnects cleanly (no last will) and joins.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether the discovery topics of `new` differ from those of `old`.
fn discovery_moves(old: &MqttSection, new: &MqttSection) -> bool {
    old.device_id != new.device_id || old.discovery_prefix != new.discovery_prefix
}

pub fn view(broker: &str, s: &Status) -> StatusView {
    StatusView {
        broker: broker.to_string(),
        connected: s.connected.load(Ordering::Relaxed),
        published: s.published.load(Ordering::Relaxed),
        dropped: s.dropped.load(Ordering::Relaxed),
        commands: s.commands.load(Ordering::Relaxed),
        connects: s.connects.load(Ordering::Relaxed),
        last_error: s.last_error.lock().map(|e| e.clone()).unwrap_or_default(),
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Message {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// Messages waiting for the broker; bounded, dropping the oldest.
struct Outbox {
    queue: VecDeque<Message>,
    limit: usize,
}

impl Outbox {
    fn new(limit: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// Queues `m`; returns how many old messages were dropped for it.
    fn push(&mut self, m: Message) -> u64 {
        let mut dropped = 0;
        while self.queue.len() >= self.limit {
            self.queue.pop_front();
            dropped += 1;
        }
        self.queue.push_back(m);
        dropped
    }
}

/// What was last published, to publish only changes.
#[derive(Default)]
struct Seen {
    generation: Option<u64>,
    state_at: Option<Instant>,
    plugins: Option<serde_json::Map<String, Value>>,
    plugins_at: Option<Instant>,
    /// Discovery config topics published on this connection.
    discovered: BTreeSet<String>,
}

struct Worker {
    config: MqttSection,
    naming: Naming,
    shared: Arc<Shared>,
    control: Arc<Control>,
    status: Arc<Status>,
    stop: Arc<AtomicBool>,
    withdraw: Arc<AtomicBool>,
    broker: String,
    outbox: Outbox,
    seen: Seen,
    /// The TLS client config, built on the first TLS connect.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Discovery config topics this thread has published (retained) and
    /// not withdrawn, by [`Group`], across connections: when an entity
    /// disappears its config is cleared with an empty retained message.
    announced: [BTreeSet<String>; 2],
}

/// Which part of the host an entity comes from; each is worked out on its
/// own schedule.
#[derive(Debug, Clone, Copy)]
enum Group {
    /// Readings: sensors, system stats, plugin telemetry.
    Sensors = 0,
    /// Plugin health.
    Plugins = 1,
}

/// One thing `collect` sends.
enum Out {
    Config(Group, String, Value),
    Clear(Group, String),
    Publish(String, Value, bool),
}

struct Conn {
    stream: tls::Stream,
    buf: Vec<u8>,
    last_sent: Instant,
    ping_sent: Option<Instant>,
}

impl Worker {
    fn run(mut self) {
        log::info!(target: "mqtt", "publishing to MQTT broker {} as `{}`, topics under {}", self.broker, self.config.client_id(), self.naming.prefix);
        let mut backoff = MIN_BACKOFF;
        while !self.stopping() {
            let result = self.connect().and_then(|conn| {
                self.status.connects.fetch_add(1, Ordering::Relaxed);
                self.status.connected.store(true, Ordering::Relaxed);
                backoff = MIN_BACKOFF;
                log::info!(target: "mqtt", "connected to MQTT broker {}", self.broker);
                let r = self.serve(conn);
                self.status.connected.store(false, Ordering::Relaxed);
                r
            });
            if let Err(e) = result {
                let message = format!("MQTT broker {}: {e}", self.broker);
                if matches!(e, MqttError::Refused(_) | MqttError::Tls(_)) {
                    log::error!(target: "mqtt", "{message}; retrying in {:.1} s", backoff.as_secs_f64());
                } else {
                    log::warn!(target: "mqtt", "{message}; retrying in {:.1} s", backoff.as_secs_f64());
                }
                if let Ok(mut last) = self.status.last_error.lock() {
                    *last = message;
                }
            } else {
                break; // a clean stop
            }
            // Wait out the backoff, queueing state changes meanwhile.
            let until = Instant::now() + backoff;
            while Instant::now() < until && !self.stopping() {
                self.collect(None).ok();
                std::thread::sleep(TICK);
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn trust(&self) -> tls::Trust {
        match &self.config.ca_file {
            Some(path) => tls::Trust::CaFile(path.clone()),
            None => tls::Trust::System,
        }
    }

    fn connect(&mut self) -> Result<Conn, MqttError> {
        let addrs: Vec<_> = (self.config.host.as_str(), self.config.port())
            .to_socket_addrs()
            .map_err(|e| MqttError::Resolve(e.to_string()))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => {
                return Err(MqttError::Connect(last.unwrap_or_else(|| {
                    std::io::Error::new(ErrorKind::NotFound, "the name has no addresses")
                })))
            }
        };
        stream.set_nodelay(true).ok();
        stream.set_write_timeout(Some(WRITE_TIMEOUT)).ok();
        stream.set_read_timeout(Some(TICK)).ok();
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let stream = if self.config.tls {
            // Never plain MQTT instead: a failed handshake is an error.
            let trust = self.trust();
            let config = match &self.tls {
                Some(c) => c.clone(),
                None => {
                    let c = tls::client_config(&trust).map_err(MqttError::Tls)?;
                    self.tls = Some(c.clone());
                    c
                }
            };
            let name = tls::server_name(&self.config.host).map_err(MqttError::Tls)?;
            let tls = tls::handshake(config, name, stream, deadline).map_err(|e| {
                // Read the CAs again next time: the fix may be a new
                // ca_file (or system store) with the same name.
                self.tls = None;
                MqttError::Tls(e.explain(&self.config.host, &trust))
            })?;
            tls::Stream::Tls(Box::new(tls))
        } else {
            tls::Stream::Plain(stream)
        };
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
            last_sent: Instant::now(),
            ping_sent: None,
        };
        let availability = self.naming.availability();
        let client_id = self.config.client_id();
        let packet = codec::connect(&codec::Connect {
            client_id: &client_id,
            keep_alive_s: self.config.keep_alive_s,
            will: Some(codec::Will {
                topic: &availability,
                payload: b"offline",
                retain: true,
            }),
            username: self.config.username.as_deref(),
            password: self.config.password.as_deref(),
        });
        conn.send(&packet)?;
        loop {
            match conn.next_packet()? {
                Some(Incoming::ConnAck { code: 0 }) => break,
                Some(Incoming::ConnAck { code }) => {
                    return Err(MqttError::Refused(ConnectRefused::from_code(code)))
                }
                Some(_) => {}
                None if Instant::now() > deadline => return Err(MqttError::Timeout("CONNACK")),
                None => {}
            }
        }
        conn.send(&codec::subscribe(1, &self.naming.buzzer_command()))?;
        Ok(conn)
    }

    /// Runs one connection until it fails (`Err`) or the host stops (`Ok`).
    fn serve(&mut self, mut conn: Conn) -> Result<(), MqttError> {
        self.seen = Seen::default();
        self.publish(&mut conn, &self.naming.availability(), b"online", true)?;
        for (topic, payload) in discovery::button_configs(&self.naming) {
            self.publish_json(&mut conn, &topic, &payload, true)?;
        }
        while let Some(m) = self.outbox.queue.pop_front() {
            if let Err(e) = self.publish(&mut conn, &m.topic, &m.payload, m.retain) {
                self.outbox.queue.push_front(m);
                return Err(e);
            }
        }
        let keep_alive = Duration::from_secs(self.config.keep_alive_s.into());
        loop {
            if self.stopping() {
                if self.withdraw.load(Ordering::Relaxed) {
                    self.withdraw_all(&mut conn);
                }
                // A clean goodbye: the broker does not send the will.
                let _ = self.publish(&mut conn, &self.naming.availability(), b"offline", true);
                let _ = conn.send(&codec::disconnect());
                return Ok(());
            }
            self.collect(Some(&mut conn))?;
            while let Some(packet) = conn.next_packet()? {
                self.handle(&mut conn, packet)?;
            }
            if let Some(sent) = conn.ping_sent {
                if sent.elapsed() > keep_alive {
                    return Err(MqttError::Timeout("PINGRESP"));
                }
            } else if conn.last_sent.elapsed() >= keep_alive / 2 {
                conn.send(&codec::pingreq())?;
                conn.ping_sent = Some(Instant::now());
            }
        }
    }

    /// Empties every discovery config this thread announced, buttons too.
    fn withdraw_all(&mut self, conn: &mut Conn) {
        let buttons = discovery::button_configs(&self.naming)
            .into_iter()
            .map(|(topic, _)| topic);
        let all: Vec<String> = self
            .announced
            .iter()
            .flatten()
            .cloned()
            .chain(buttons)
            .collect();
        for topic in &all {
            if self.publish(conn, topic, b"", true).is_err() {
                return;
            }
        }
        log::info!(target: "mqtt", "withdrew {} Home Assistant entities of device `{}`", all.len(), self.naming.device_id);
        self.announced = Default::default();
    }

    fn handle(&mut self, conn: &mut Conn, packet: Incoming) -> Result<(), MqttError> {
        match packet {
            Incoming::PingResp => conn.ping_sent = None,
            Incoming::Publish {
                topic,
                payload,
                packet_id,
            } => {
                if let Some(id) = packet_id {
                    conn.send(&codec::puback(id))?;
                }
                if topic == self.naming.buzzer_command() {
                    self.status.commands.fetch_add(1, Ordering::Relaxed);
                    let text = String::from_utf8_lossy(&payload);
                    match Pattern::parse(&text) {
                        Some(p) => {
                            if let Err(e) = self.control.buzz(p, "mqtt") {
                                log::warn!(target: "mqtt", "buzzer press on {topic}: {e}");
                            }
                        }
                        None => log::warn!(
                            target: "mqtt",
                            "ignored `{}` on {topic}: expected `beep` or `long`",
                            crate::capabilities::log::truncate(&text, 64)
                        ),
                    }
                }
            }
            Incoming::SubAck { granted } if granted.contains(&0x80) => {
                log::warn!(target: "mqtt", "the broker refused our subscription to {}: the buzzer buttons will not work (check the broker's ACL)", self.naming.buzzer_command());
            }
            _ => {}
        }
        Ok(())
    }

    /// Discovery configs of `group` to publish (new on this connection) and
    /// to withdraw (announced before, gone now).
    fn discovery_changes(
        &self,
        group: Group,
        configs: impl Iterator<Item = (String, Value)>,
        out: &mut Vec<Out>,
    ) {
        let mut wanted = BTreeSet::new();
        for (topic, payload) in configs {
            if !self.seen.discovered.contains(&topic) {
                out.push(Out::Config(group, topic.clone(), payload));
            }
            wanted.insert(topic);
        }
        for topic in &self.announced[group as usize] {
            if !wanted.contains(topic) {
                out.push(Out::Clear(group, topic.clone()));
            }
        }
    }

    /// Publishes (or, with no connection, queues) what changed since the
    /// last look at the shared readings.
    fn collect(&mut self, mut conn: Option<&mut Conn>) -> Result<(), MqttError> {
        let interval = Duration::from_secs(self.config.publish_interval_s);
        let due = self.seen.state_at.is_none_or(|t| t.elapsed() >= interval);
        // Cheap checks first: this runs every tick, on a Pi Zero too.
        let generation = self.shared.readings.read().map(|r| r.generation).ok();
        let changed = self.seen.generation != generation;
        let look_at_plugins = self
            .seen
            .plugins_at
            .is_none_or(|t| t.elapsed() >= PLUGIN_CHECK);
        if !(due || changed || look_at_plugins) {
            return Ok(());
        }
        let plugins = discovery::plugin_states(&self.shared.plugins());
        self.seen.plugins_at = Some(Instant::now());
        let plugins_changed = self.seen.plugins.as_ref() != Some(&plugins);
        if !(due || changed || plugins_changed) {
            return Ok(());
        }
        let readings = self.shared.readings();
        let mut messages = Vec::new();
        if due || changed {
            let (entities, state) = discovery::sensors(&readings);
            if conn.is_some() {
                let configs = entities
                    .iter()
                    .map(|e| discovery::sensor_config(&self.naming, e));
                self.discovery_changes(Group::Sensors, configs, &mut messages);
            }
            if !state.is_empty() {
                messages.push(Out::Publish(
                    self.naming.state(),
                    Value::Object(state),
                    false,
                ));
            }
        }
        if due || plugins_changed {
            if conn.is_some() {
                // A disabled plugin has no entity: Home Assistant drops it.
                let configs = plugins
                    .iter()
                    .filter(|(_, status)| *status != "disabled")
                    .map(|(name, _)| discovery::plugin_config(&self.naming, name));
                self.discovery_changes(Group::Plugins, configs, &mut messages);
            }
            if !plugins.is_empty() {
                messages.push(Out::Publish(
                    self.naming.plugins(),
                    Value::Object(plugins.clone()),
                    true,
                ));
            }
        }
        self.seen.generation = Some(readings.generation);
        self.seen.state_at = Some(Instant::now());
        self.seen.plugins = Some(plugins);
        for out in messages {
            match (out, conn.as_deref_mut()) {
                (Out::Config(group, topic, payload), Some(c)) => {
                    self.publish_json(c, &topic, &payload, true)?;
                    self.seen.discovered.insert(topic.clone());
                    self.announced[group as usize].insert(topic);
                }
                (Out::Clear(group, topic), Some(c)) => {
                    // An empty retained config: the broker forgets the
                    // retained one and Home Assistant removes the entity.
                    self.publish(c, &topic, b"", true)?;
                    log::info!(target: "mqtt", "withdrew the Home Assistant entity {topic}");
                    self.seen.discovered.remove(&topic);
                    self.announced[group as usize].remove(&topic);
                }
                (Out::Publish(topic, payload, retain), Some(c)) => {
                    self.publish_json(c, &topic, &payload, retain)?;
                }
                (Out::Publish(topic, payload, retain), None) => {
                    let dropped = self.outbox.push(Message {
                        topic,
                        payload: payload.to_string().into_bytes(),
                        retain,
                    });
                    if dropped > 0 {
                        let total =
                            self.status.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
                        if total == dropped || total % 100 == 0 {
                            log::warn!(target: "mqtt", "broker {} away: queue full ({} messages), dropped the oldest ({total} so far)", self.broker, self.outbox.limit);
                        }
                    }
                }
                // Discovery is only worked out with a connection.
                (Out::Config(..) | Out::Clear(..), None) => {}
            }
        }
        Ok(())
    }

    fn publish_json(
        &self,
        conn: &mut Conn,
        topic: &str,
        payload: &Value,
        retain: bool,
    ) -> Result<(), MqttError> {
        self.publish(conn, topic, payload.to_string().as_bytes(), retain)
    }

    fn publish(
        &self,
        conn: &mut Conn,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Result<(), MqttError> {
        conn.send(&codec::publish(topic, payload, retain))?;
        self.status.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Conn {
    fn send(&mut self, bytes: &[u8]) -> Result<(), MqttError> {
        self.stream.write_all(bytes).map_err(MqttError::Io)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// The next whole packet, or `None` after one read timeout (`TICK`).
    fn next_packet(&mut self) -> Result<Option<Incoming>, MqttError> {
        loop {
            if let Some((packet, used)) = codec::parse(&self.buf).map_err(MqttError::Protocol)? {
                self.buf.drain(..used);
                return Ok(Some(packet));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(MqttError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(MqttError::Io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_drops_the_oldest() {
        let mut o = Outbox::new(2);
        let m = |t: &str| Message {
            topic: t.into(),
            payload: vec![],
            retain: false,
        };
        assert_eq!(o.push(m("a")), 0);
        assert_eq!(o.push(m("b")), 0);
        assert_eq!(o.push(m("c")), 1);
        let topics: Vec<_> = o.queue.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(topics, ["b", "c"]);
    }
}
