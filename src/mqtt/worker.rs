//! The MQTT thread: one connection at a time to the broker, and what it
//! does on it.
//!
//! Plain blocking `std::net::TcpStream` (wrapped in rustls with
//! `mqtt.tls`, see [`super::tls`]) and our own MQTT 3.1.1 codec
//! ([`super::codec`]); no async runtime. The thread only *reads* what the
//! scheduler publishes (`Shared`): nothing else ever waits on it, so a slow
//! or absent broker cannot delay a plugin call or an HTTP request.
//!
//! On connect it sets a retained last will (`offline` on
//! `<prefix>/availability`), publishes `online` (retained), the retained
//! discovery configs ([`super::discovery`]), anything queued while the
//! broker was away, and the current state. Then it publishes state on every
//! change of the readings (and at least every `publish_interval_s`),
//! answers the buzzer buttons through [`crate::control`] (the same path and
//! rate limit as the dashboard's Beep button), and pings. A lost connection
//! is retried with exponential backoff ([`MIN_BACKOFF`] doubling to
//! [`MAX_BACKOFF`]); meanwhile state changes go to a bounded queue
//! (`Outbox`) that drops its oldest entries. Entities that go away (a
//! plugin disabled or removed) are withdrawn with an empty retained
//! discovery config; how many a plugin may have, how fast new ones come and
//! how much is logged about them is bounded ([`super::announce`]).
//!
//! What a broker (or anyone who may publish to our command topic) cannot
//! do: knock us off with one big message (a PUBLISH over
//! [`codec::MAX_INCOMING`] is skipped as it arrives, acknowledged and
//! counted, never buffered), or hold us on a dead connection (we ping when
//! the broker has been silent for half the keep-alive, also while
//! publishing, and give up on it a keep-alive later: a broker that accepts
//! and then stops answering is left within 1.5 × keep-alive; a write that
//! blocks is given up after [`WRITE_TIMEOUT`]).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::announce::{Announcements, Group, Planned, Wanted};
use super::codec::{self, ConnectRefused, Incoming, Malformed};
use super::discovery::{self, Naming};
use super::tls;
use crate::config::MqttSection;
use crate::control::{Control, Pattern};
use crate::scheduler::Shared;

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long connecting (TCP plus CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the loop looks at the readings when nothing arrives.
const TICK: Duration = Duration::from_millis(100);
/// A write to the broker that blocks this long (a broker that stopped
/// reading, a full socket buffer) ends the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Oversized messages are logged at most once per this long.
const SKIPPED_LOG_EVERY: Duration = Duration::from_secs(60);
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

/// The thread's counters, written here and read by `/api` (through
/// [`super::StatusView`]).
#[derive(Debug, Default)]
pub struct Status {
    pub connected: AtomicBool,
    /// Messages handed to the broker.
    pub published: AtomicU64,
    /// Queued messages dropped (oldest first) while the broker was away.
    pub dropped: AtomicU64,
    /// Buzzer presses received on the command topic, counted once each has
    /// been through the control path (played or refused).
    pub commands: AtomicU64,
    /// Messages from the broker skipped for their size.
    pub skipped: AtomicU64,
    pub connects: AtomicU64,
    pub last_error: Mutex<String>,
}

/// Whether the thread is to stop, set by its owner ([`super::Mqtt`]).
#[derive(Clone, Default)]
pub(super) struct Stop {
    pub stop: Arc<AtomicBool>,
    /// Set with `stop`: withdraw every discovered entity before leaving.
    pub withdraw: Arc<AtomicBool>,
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
}

/// The thread's state: what it was started with, what it has published,
/// and what waits for the broker.
pub(super) struct Worker {
    config: MqttSection,
    naming: Naming,
    shared: Arc<Shared>,
    control: Arc<Control>,
    status: Arc<Status>,
    stop: Stop,
    broker: String,
    outbox: Outbox,
    seen: Seen,
    /// The TLS client config, built on the first TLS connect.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Discovery configs published (retained) and not withdrawn, across
    /// connections, and the limits on announcing more.
    announcements: Announcements,
    /// When an oversized message was last logged.
    skipped_logged: Option<Instant>,
}

/// One thing `collect` sends.
enum Out {
    Discovery(Planned),
    Publish(String, Value, bool),
}

struct Conn {
    stream: tls::Stream,
    buf: Vec<u8>,
    /// Bytes of an oversized packet still to be read and dropped.
    skip: usize,
    last_sent: Instant,
    /// When the broker last sent anything: its sign of life.
    last_received: Instant,
    ping_sent: Option<Instant>,
}

impl Worker {
    pub(super) fn new(
        config: MqttSection,
        shared: Arc<Shared>,
        control: Arc<Control>,
        status: Arc<Status>,
        stop: Stop,
        hardware_name: String,
    ) -> Worker {
        let naming = Naming {
            prefix: config.topic_prefix(),
            discovery_prefix: config.discovery_prefix.clone(),
            device_id: config.device_id.clone(),
            device_name: config.device_name.clone(),
            hardware: hardware_name,
        };
        Worker {
            outbox: Outbox::new(config.queue_limit),
            broker: config.broker(),
            config,
            naming,
            shared,
            control,
            status,
            stop,
            seen: Seen::default(),
            tls: None,
            announcements: Announcements::default(),
            skipped_logged: None,
        }
    }

    /// Connects, serves and reconnects until stopped.
    pub(super) fn run(mut self) {
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
                *self.status.last_error.lock().expect("mqtt last_error lock") = message;
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
        self.stop.stop.load(Ordering::Relaxed)
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
            let name =
                crate::config::rules::server_name(&self.config.host).map_err(MqttError::Tls)?;
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
            skip: 0,
            last_sent: Instant::now(),
            last_received: Instant::now(),
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
        self.announcements.new_connection();
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
                if self.stop.withdraw.load(Ordering::Relaxed) {
                    self.withdraw_all(&mut conn);
                } else {
                    self.withdraw_volatile(&mut conn);
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
            // A broker silent for half the keep-alive is pinged, however
            // busy we are publishing (a write succeeds into the socket
            // buffer whether or not anyone reads it), and given up on if
            // it stays silent for a keep-alive more.
            if let Some(sent) = conn.ping_sent {
                if sent.elapsed() >= keep_alive {
                    return Err(MqttError::Timeout("PINGRESP"));
                }
            } else if conn.last_received.elapsed() >= keep_alive / 2
                || conn.last_sent.elapsed() >= keep_alive / 2
            {
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
            .announcements
            .all()
            .into_iter()
            .chain(buttons)
            .collect();
        for topic in &all {
            if self.publish(conn, topic, b"", true).is_err() {
                return;
            }
        }
        log::info!(target: "mqtt", "withdrew {} Home Assistant entities of device `{}`", all.len(), self.naming.device_id);
        self.announcements.forget();
    }

    /// At a clean stop: empties the configs of plugins whose entities came
    /// and went while they ran (their ids would never come back).
    fn withdraw_volatile(&mut self, conn: &mut Conn) {
        let topics = self.announcements.at_stop();
        if topics.is_empty() {
            return;
        }
        for topic in &topics {
            if self.publish(conn, topic, b"", true).is_err() {
                return;
            }
        }
        log::info!(target: "mqtt", "withdrew {} Home Assistant entities of plugins whose sensor ids kept changing", topics.len());
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
                            crate::text::truncate(&text, 64)
                        ),
                    }
                    // Counted once handled: whoever reads N knows the N
                    // presses are through the control path (their beeps in
                    // the buzzer's count, or refused).
                    self.status.commands.fetch_add(1, Ordering::Relaxed);
                }
            }
            Incoming::Oversized {
                topic,
                len,
                packet_id,
            } => {
                if let Some(id) = packet_id {
                    conn.send(&codec::puback(id))?;
                }
                let n = self.status.skipped.fetch_add(1, Ordering::Relaxed) + 1;
                if self
                    .skipped_logged
                    .is_none_or(|t| t.elapsed() >= SKIPPED_LOG_EVERY)
                {
                    self.skipped_logged = Some(Instant::now());
                    log::warn!(
                        target: "mqtt",
                        "skipped a {len}-byte message on {}: more than the {} bytes accepted \
                         ({n} skipped so far; logged at most once a minute)",
                        crate::text::truncate(&topic, 200),
                        codec::MAX_INCOMING
                    );
                }
            }
            Incoming::SubAck { granted } if granted.contains(&0x80) => {
                log::warn!(target: "mqtt", "the broker refused our subscription to {}: the buzzer buttons will not work (check the broker's ACL)", self.naming.buzzer_command());
            }
            _ => {}
        }
        Ok(())
    }

    /// Publishes (or, with no connection, queues) what changed since the
    /// last look at the shared readings.
    fn collect(&mut self, mut conn: Option<&mut Conn>) -> Result<(), MqttError> {
        let interval = Duration::from_secs(self.config.publish_interval_s);
        let due = self.seen.state_at.is_none_or(|t| t.elapsed() >= interval);
        // Cheap checks first: this runs every tick, on a Pi Zero too.
        let generation = Some(
            self.shared
                .readings
                .read()
                .expect("readings lock")
                .generation,
        );
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
                let wanted = entities
                    .iter()
                    .map(|e| {
                        let (topic, payload) = discovery::sensor_config(&self.naming, e);
                        Wanted {
                            topic,
                            payload,
                            owner: e.owner.clone(),
                        }
                    })
                    .collect();
                let running = |name: &str| {
                    plugins
                        .get(name)
                        .is_some_and(|status| *status != "disabled")
                };
                messages.extend(
                    self.announcements
                        .plan(Group::Sensors, wanted, &running)
                        .into_iter()
                        .map(Out::Discovery),
                );
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
                let wanted = plugins
                    .iter()
                    .filter(|(_, status)| *status != "disabled")
                    .map(|(name, _)| {
                        let (topic, payload) = discovery::plugin_config(&self.naming, name);
                        Wanted {
                            topic,
                            payload,
                            owner: None,
                        }
                    })
                    .collect();
                messages.extend(
                    self.announcements
                        .plan(Group::Plugins, wanted, &|_| true)
                        .into_iter()
                        .map(Out::Discovery),
                );
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
                (
                    Out::Discovery(Planned::Config {
                        group,
                        topic,
                        payload,
                        owner,
                    }),
                    Some(c),
                ) => {
                    self.publish_json(c, &topic, &payload, true)?;
                    self.announcements.published(group, &topic, owner);
                }
                (Out::Discovery(Planned::Clear { group, topic }), Some(c)) => {
                    // An empty retained config: the broker forgets the
                    // retained one and Home Assistant removes the entity.
                    self.publish(c, &topic, b"", true)?;
                    self.announcements.cleared(group, &topic);
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
                (Out::Discovery(_), None) => {}
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
    /// An oversized PUBLISH comes back as [`Incoming::Oversized`] as soon
    /// as its head is here; the rest of it is dropped as it arrives.
    fn next_packet(&mut self) -> Result<Option<Incoming>, MqttError> {
        loop {
            if self.skip == 0 {
                if let Some((packet, used)) =
                    codec::parse(&self.buf).map_err(MqttError::Protocol)?
                {
                    if used > self.buf.len() {
                        self.skip = used - self.buf.len();
                        self.buf.clear();
                    } else {
                        self.buf.drain(..used);
                    }
                    return Ok(Some(packet));
                }
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(MqttError::Closed),
                Ok(n) => {
                    self.last_received = Instant::now();
                    let dropped = self.skip.min(n);
                    self.skip -= dropped;
                    self.buf.extend_from_slice(&chunk[dropped..n]);
                }
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

    use crate::hardware::{
        Backend, Bme680Sample, Dht22Sample, Hardware, HardwareOptions, HwError, SimBackend,
        SystemStats,
    };

    /// The simulator, noting the MQTT command count each time the buzzer
    /// turns on.
    struct Watching {
        sim: SimBackend,
        status: Arc<Status>,
        commands_at_tone: Arc<Mutex<Vec<u64>>>,
    }

    impl Backend for Watching {
        fn name(&self) -> &'static str {
            "watching"
        }
        fn read_dht22(&mut self, pin: u8) -> Result<Dht22Sample, HwError> {
            self.sim.read_dht22(pin)
        }
        fn read_bme680(&mut self, addr: u8) -> Result<Bme680Sample, HwError> {
            self.sim.read_bme680(addr)
        }
        fn cpu_temp_c(&mut self) -> Result<f32, HwError> {
            self.sim.cpu_temp_c()
        }
        fn system_stats(&mut self) -> Result<SystemStats, HwError> {
            self.sim.system_stats()
        }
        fn show_leds(&mut self, frame: &[[u8; 3]]) -> Result<(), HwError> {
            self.sim.show_leds(frame)
        }
        fn set_buzzer(&mut self, on: bool) -> Result<(), HwError> {
            if on {
                let n = self.status.commands.load(Ordering::SeqCst);
                self.commands_at_tone.lock().expect("test lock").push(n);
            }
            self.sim.set_buzzer(on)
        }
    }

    /// A connection to a socket nobody reads: `handle` only writes to it.
    fn loopback() -> (Conn, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (theirs, _) = listener.accept().unwrap();
        let conn = Conn {
            stream: tls::Stream::Plain(ours),
            buf: Vec::new(),
            skip: 0,
            last_sent: Instant::now(),
            last_received: Instant::now(),
            ping_sent: None,
        };
        (conn, theirs)
    }

    /// `/api`'s `commands` is a barrier: a reader who sees N knows the N
    /// presses have been through the control path, their beeps counted.
    #[test]
    fn a_press_is_counted_after_the_control_path_has_handled_it() {
        let status = Arc::new(Status::default());
        let commands_at_tone = Arc::new(Mutex::new(Vec::new()));
        let hardware = Hardware::start(
            Box::new(Watching {
                sim: SimBackend::new(1, vec![4], vec![]),
                status: status.clone(),
                commands_at_tone: commands_at_tone.clone(),
            }),
            HardwareOptions::default(),
        )
        .expect("the hardware thread starts");
        let control = Arc::new(Control::new(hardware.handle()));
        let mut worker = Worker::new(
            MqttSection::default(),
            Shared::new(),
            control,
            status.clone(),
            Stop::default(),
            "sim".into(),
        );
        let (mut conn, _broker) = loopback();
        let press = |payload: &[u8]| Incoming::Publish {
            topic: worker.naming.buzzer_command(),
            payload: payload.to_vec(),
            packet_id: None,
        };
        let (beep, siren) = (press(b"beep"), press(b"siren"));
        worker.handle(&mut conn, beep).unwrap();
        assert_eq!(
            *commands_at_tone.lock().unwrap(),
            [0],
            "the press is counted only after its tone has started"
        );
        assert_eq!(status.commands.load(Ordering::SeqCst), 1);
        assert_eq!(hardware.handle().status().beeps_total, 1);
        // A press the control path ignores is counted too.
        worker.handle(&mut conn, siren).unwrap();
        assert_eq!(status.commands.load(Ordering::SeqCst), 2);
        assert_eq!(hardware.handle().status().beeps_total, 1);
    }
}
