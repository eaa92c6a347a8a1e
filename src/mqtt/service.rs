//! What the rest of the host holds of MQTT: the [`Service`] that keeps the
//! thread in step with the config's `[mqtt]` table, the running thread
//! ([`Mqtt`]), and the [`StatusView`] `/api` shows. The thread itself is
//! [`super::worker`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::Serialize;

use super::worker::{Status, Stop, Worker};
use crate::config::MqttSection;
use crate::control::Control;
use crate::scheduler::Shared;

/// What `/api` shows about MQTT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    pub broker: String,
    pub connected: bool,
    pub published: u64,
    pub dropped: u64,
    pub commands: u64,
    pub skipped: u64,
    pub connects: u64,
    pub last_error: String,
}

/// The running MQTT thread.
pub struct Mqtt {
    stop: Stop,
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
        let _one = self.applying.lock().expect("mqtt apply lock");
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
        // Shutdown must publish `offline` and join the thread whatever a
        // panicking apply left behind: the slot holds at most a thread.
        let _one = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(true, Ordering::Relaxed);
        let old = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut old) = old {
            old.stop();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Mqtt>> {
        self.running.lock().expect("mqtt thread slot lock")
    }
}

impl Mqtt {
    pub fn spawn(
        config: MqttSection,
        shared: Arc<Shared>,
        control: Arc<Control>,
        hardware_name: String,
    ) -> std::io::Result<Mqtt> {
        let stop = Stop::default();
        let status = Arc::new(Status::default());
        let broker = config.broker();
        let watch = shared.clone();
        let worker = Worker::new(
            config.clone(),
            shared,
            control,
            status.clone(),
            stop.clone(),
            hardware_name,
        );
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || crate::scheduler::watched(&watch, "mqtt", || worker.run()))?;
        Ok(Mqtt {
            stop,
            thread: Some(thread),
            status,
            broker,
            config,
        })
    }

    pub fn view(&self) -> StatusView {
        view(&self.broker, &self.status)
    }

    /// Like [`Mqtt::stop`], withdrawing every entity this thread announced
    /// to Home Assistant first (empty retained discovery configs).
    pub fn stop_and_withdraw(&mut self) {
        self.stop.withdraw.store(true, Ordering::Relaxed);
        self.stop();
    }

    /// Publishes `offline`, disconnects cleanly (no last will) and joins.
    pub fn stop(&mut self) {
        self.stop.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether the discovery topics of `new` differ from those of `old`.
fn discovery_moves(old: &MqttSection, new: &MqttSection) -> bool {
    old.device_id != new.device_id || old.discovery_prefix != new.discovery_prefix
}

fn view(broker: &str, s: &Status) -> StatusView {
    StatusView {
        broker: broker.to_string(),
        connected: s.connected.load(Ordering::Relaxed),
        published: s.published.load(Ordering::Relaxed),
        dropped: s.dropped.load(Ordering::Relaxed),
        commands: s.commands.load(Ordering::Relaxed),
        skipped: s.skipped.load(Ordering::Relaxed),
        connects: s.connects.load(Ordering::Relaxed),
        last_error: s.last_error.lock().expect("mqtt last_error lock").clone(),
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.stop();
    }
}
