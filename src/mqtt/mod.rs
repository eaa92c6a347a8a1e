//! MQTT publishing for Home Assistant and fleet telemetry (`[mqtt]`).
//!
//! * [`service`]: what the rest of the host holds — the [`Service`] that
//!   starts, restarts and stops the thread as `[mqtt]` changes, the
//!   running thread ([`Mqtt`]) and the [`StatusView`] `/api` shows.
//! * [`worker`]: the thread — connect, publish, answer the buzzer buttons,
//!   ping, reconnect with backoff, queue while the broker is away.
//! * [`codec`]: our MQTT 3.1.1 subset, pure and bounds-checked.
//! * [`discovery`]: readings and plugins as Home Assistant discovery
//!   configs and state documents.
//! * [`announce`]: which discovery configs are announced and withdrawn, and
//!   the limits on plugins' entities.
//! * [`tls`]: TLS to the broker (rustls), with errors that say what to fix.
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

pub mod announce;
pub mod codec;
pub mod discovery;
pub mod service;
pub mod tls;
pub mod worker;

pub use service::{Mqtt, Service, StatusView};
pub use worker::{MqttError, Status};
