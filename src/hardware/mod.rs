//! The hardware thread: the only code that touches devices.
//!
//! One thread owns the backend (`sim` or `pi`). Everyone else holds a
//! [`HardwareHandle`] and sends it a [`Request`] with a one-slot reply channel,
//! then waits with a timeout, so a stuck sensor can never hang a plugin call
//! or an HTTP worker. The thread also owns the timing rules that must not be
//! left to plugins: the DHT22's 2 s minimum read interval (answered from the
//! last good reading in between) and buzzer patterns, which it plays by
//! waking at each edge while still serving other requests.
//!
//! Backends: `sim` ([`SimBackend`]) and `pi` ([`pi::PiBackend`]). Both run
//! the same protocol code for the sensors: [`dht22`] (capture and decode a
//! data line) and [`bme680`] (the driver sequence over a register bus), on
//! top of the pure [`crate::drivers`].
//!
//! This module knows nothing about WebAssembly or HTTP.

pub mod bme680;
pub mod dht22;
pub mod pi;
mod probe;
mod sim;

pub use probe::{probe, ProbeLine, ProbePlan, ProbeReport};
pub use sim::{
    SimAir, SimBackend, SimBme680Registers, SimControl, SimDevice, SimFault, SimOverride, Transfer,
    SIM_HEATER_MIN,
};

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

/// The DHT22 cannot be read more often than this; a faster read returns
/// the previous frame or garbage.
pub const DHT22_MIN_INTERVAL: Duration = crate::drivers::dht22::MIN_READ_INTERVAL;

/// A temperature and humidity pair from a DHT22.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dht22Sample {
    pub temperature_c: f32,
    pub humidity_pct: f32,
}

/// A compensated BME680 measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bme680Sample {
    pub temperature_c: f32,
    pub humidity_pct: f32,
    pub pressure_hpa: f32,
    /// 0 when `gas_valid` is false.
    pub gas_resistance_ohm: f32,
    /// The heater was stable and the gas reading is meaningful.
    pub gas_valid: bool,
    /// Which part answered: "BME680" or "BME688" (from its variant id).
    pub chip: &'static str,
}

/// Memory, load and uptime of the device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemStats {
    pub ram_used_bytes: u64,
    pub ram_total_bytes: u64,
    pub uptime_s: u64,
    pub load_1m: f32,
}

/// A buzzer pattern: `count` tones of `on` separated by `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuzzPattern {
    pub count: u8,
    pub on: Duration,
    pub off: Duration,
}

/// What the actuators are doing, as last set by the hardware thread.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActuatorStatus {
    /// Colours currently shown on the strip (after the brightness cap is
    /// removed: these are the colours plugins asked for).
    pub leds: Vec<[u8; 3]>,
    pub buzzer_on: bool,
    /// A pattern is playing (the buzzer may be between two beeps).
    pub buzzer_pattern_active: bool,
    /// Tones started since the host started.
    pub beeps_total: u64,
    pub backend: &'static str,
}

/// Why a hardware request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum HwError {
    /// The hardware thread did not answer in time; the device may be hung.
    Timeout,
    /// The request queue is full; the caller should retry later.
    Busy,
    /// The hardware thread has stopped (the host is shutting down).
    Stopped,
    /// No such device is configured or it did not answer.
    NotPresent(String),
    /// The device answered with bad data (checksum, out of range).
    Sensor(String),
    /// The backend cannot do this (e.g. overrides on real hardware).
    Unsupported(String),
}

impl fmt::Display for HwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HwError::Timeout => write!(f, "hardware did not answer in time"),
            HwError::Busy => write!(f, "hardware queue is full, try again"),
            HwError::Stopped => write!(f, "hardware thread has stopped"),
            HwError::NotPresent(m) | HwError::Sensor(m) | HwError::Unsupported(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for HwError {}

/// What a backend must do; timing policy lives in the hardware thread.
pub trait Backend: Send {
    fn name(&self) -> &'static str;
    fn read_dht22(&mut self, pin: u8) -> Result<Dht22Sample, HwError>;
    fn read_bme680(&mut self, addr: u8) -> Result<Bme680Sample, HwError>;
    fn cpu_temp_c(&mut self) -> Result<f32, HwError>;
    fn system_stats(&mut self) -> Result<SystemStats, HwError>;
    /// Shows `frame` (already brightness-capped) on the strip.
    fn show_leds(&mut self, frame: &[[u8; 3]]) -> Result<(), HwError>;
    fn set_buzzer(&mut self, on: bool) -> Result<(), HwError>;
    /// The simulator's controls, when this backend is simulated hardware.
    /// Real backends keep the default: they have none.
    fn as_sim(&mut self) -> Option<&mut dyn SimControl> {
        None
    }
    /// What drives the LED strip, for `probe` (after a `show_leds`).
    fn leds_driver(&self) -> String {
        format!("{} backend", self.name())
    }
    /// What kind of buzzer is fitted, for `probe`.
    fn buzzer_kind(&self) -> String {
        format!("{} backend", self.name())
    }
}

type Reply<T> = Sender<Result<T, HwError>>;

/// A request to the hardware thread.
enum Request {
    ReadDht22 {
        pin: u8,
        reply: Reply<Dht22Sample>,
    },
    ReadBme680 {
        addr: u8,
        reply: Reply<Bme680Sample>,
    },
    CpuTemp {
        reply: Reply<f32>,
    },
    SystemStats {
        reply: Reply<SystemStats>,
    },
    /// Sets LEDs by index and shows the strip.
    SetLeds {
        colors: Vec<(u8, [u8; 3])>,
        reply: Reply<()>,
    },
    Buzz {
        pattern: BuzzPattern,
        reply: Reply<()>,
    },
    BuzzerOff,
    Override {
        device: SimDevice,
        values: Option<SimOverride>,
        reply: Reply<()>,
    },
    Fault {
        device: SimDevice,
        fault: Option<SimFault>,
        reply: Reply<()>,
    },
    Shutdown,
}

/// Settings the hardware thread needs.
#[derive(Debug, Clone)]
pub struct HardwareOptions {
    pub led_count: u8,
    pub brightness: u8,
    pub max_tone: Duration,
    pub request_timeout: Duration,
    /// Reads of one DHT22 closer together than this are answered from the
    /// last read. [`DHT22_MIN_INTERVAL`] everywhere but in tests, which
    /// shorten it rather than sleep.
    pub dht22_min_interval: Duration,
}

impl Default for HardwareOptions {
    fn default() -> Self {
        HardwareOptions {
            led_count: 3,
            brightness: 64,
            max_tone: Duration::from_secs(2),
            request_timeout: Duration::from_millis(250),
            dht22_min_interval: DHT22_MIN_INTERVAL,
        }
    }
}

/// Failed DHT22 reads in a row that are expected now and then and logged
/// only at debug level; the next one is a warning.
///
/// A failed read is not retried at once: the sensor needs
/// [`DHT22_MIN_INTERVAL`] between transfers, and holding a caller for 2 s
/// would exceed every request timeout. The failure is returned (and cached
/// for the interval like a good reading), and the next scheduled read is
/// the retry. Two such retries absorb the occasional checksum error of a
/// bit-banged protocol; a third failure in a row is worth a warning.
pub const DHT22_QUIET_RETRIES: u32 = 2;

/// A cloneable way to talk to the hardware thread.
#[derive(Clone)]
pub struct HardwareHandle {
    tx: Sender<Request>,
    status: Arc<RwLock<ActuatorStatus>>,
    timeout: Duration,
}

/// The running hardware thread; dropping it turns actuators off and joins.
pub struct Hardware {
    handle: HardwareHandle,
    thread: Option<JoinHandle<()>>,
}

impl Hardware {
    /// Starts the hardware thread with `backend`.
    pub fn start(backend: Box<dyn Backend>, options: HardwareOptions) -> std::io::Result<Hardware> {
        let (tx, rx) = bounded(64);
        let status = Arc::new(RwLock::new(ActuatorStatus {
            leds: vec![[0, 0, 0]; options.led_count as usize],
            backend: backend.name(),
            ..ActuatorStatus::default()
        }));
        let timeout = options.request_timeout;
        let worker = Worker {
            backend,
            options,
            status: status.clone(),
            dht22_cache: HashMap::new(),
            dht22_failures: HashMap::new(),
            frame: Vec::new(),
            pattern: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("hardware".into())
            .spawn(move || worker.run(rx))?;
        Ok(Hardware {
            handle: HardwareHandle {
                tx,
                status,
                timeout,
            },
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> HardwareHandle {
        self.handle.clone()
    }

    /// Turns actuators off and stops the thread.
    pub fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A blocking send: shutdown must not be lost to a full queue.
            let _ = self.handle.tx.send(Request::Shutdown);
            let _ = thread.join();
        }
    }
}

impl Drop for Hardware {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl HardwareHandle {
    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, HwError> {
        let (reply, answer) = bounded(1);
        self.tx.try_send(make(reply)).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => HwError::Busy,
            crossbeam_channel::TrySendError::Disconnected(_) => HwError::Stopped,
        })?;
        match answer.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(HwError::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(HwError::Stopped),
        }
    }

    pub fn read_dht22(&self, pin: u8) -> Result<Dht22Sample, HwError> {
        self.ask(|reply| Request::ReadDht22 { pin, reply })
    }

    pub fn read_bme680(&self, addr: u8) -> Result<Bme680Sample, HwError> {
        self.ask(|reply| Request::ReadBme680 { addr, reply })
    }

    pub fn cpu_temp_c(&self) -> Result<f32, HwError> {
        self.ask(|reply| Request::CpuTemp { reply })
    }

    pub fn system_stats(&self) -> Result<SystemStats, HwError> {
        self.ask(|reply| Request::SystemStats { reply })
    }

    /// Sets the given LEDs and shows the strip.
    pub fn set_leds(&self, colors: Vec<(u8, [u8; 3])>) -> Result<(), HwError> {
        self.ask(|reply| Request::SetLeds { colors, reply })
    }

    /// Starts a buzzer pattern, replacing any pattern still playing.
    pub fn buzz(&self, pattern: BuzzPattern) -> Result<(), HwError> {
        self.ask(|reply| Request::Buzz { pattern, reply })
    }

    /// Turns the given LEDs off. Never waits: this is the safe-state path,
    /// and a failing plugin must not cost the others a hardware round trip.
    pub fn leds_off(&self, indices: &[u8]) {
        let (reply, _) = bounded(1);
        let colors = indices.iter().map(|&i| (i, [0, 0, 0])).collect();
        let _ = self.tx.try_send(Request::SetLeds { colors, reply });
    }

    /// Silences the buzzer now. Never waits: this is the safe-state path.
    pub fn buzzer_off(&self) {
        let _ = self.tx.try_send(Request::BuzzerOff);
    }

    /// Pins (or with `None`, releases) simulated values.
    pub fn set_override(
        &self,
        device: SimDevice,
        values: Option<SimOverride>,
    ) -> Result<(), HwError> {
        self.ask(|reply| Request::Override {
            device,
            values,
            reply,
        })
    }

    /// Injects (or with `None`, clears) a simulated fault; `sim` only.
    pub fn set_fault(&self, device: SimDevice, fault: Option<SimFault>) -> Result<(), HwError> {
        self.ask(|reply| Request::Fault {
            device,
            fault,
            reply,
        })
    }

    /// The actuators' state, without a round trip to the thread.
    pub fn status(&self) -> ActuatorStatus {
        self.status.read().expect("actuator status lock").clone()
    }

    /// Whether the actuators' state is `status`, without copying it.
    pub fn status_is(&self, status: &ActuatorStatus) -> bool {
        *self.status.read().expect("actuator status lock") == *status
    }
}

struct Worker {
    backend: Box<dyn Backend>,
    options: HardwareOptions,
    status: Arc<RwLock<ActuatorStatus>>,
    /// Last read per pin: (when, result). Reads inside the minimum interval
    /// are answered from here.
    dht22_cache: HashMap<u8, (Instant, Result<Dht22Sample, HwError>)>,
    /// Failed reads in a row per pin, for [`DHT22_QUIET_RETRIES`].
    dht22_failures: HashMap<u8, u32>,
    /// Colours plugins asked for, before the brightness cap.
    frame: Vec<[u8; 3]>,
    /// Pending buzzer edges: (when, on), soonest last.
    pattern: Vec<(Instant, bool)>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Request>) {
        self.frame = vec![[0, 0, 0]; self.options.led_count as usize];
        self.safe_state();
        loop {
            let request = match self.pattern.last() {
                Some(&(at, _)) => match rx.recv_deadline(at) {
                    Ok(r) => Some(r),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(r) => Some(r),
                    Err(_) => break,
                },
            };
            self.play_due_edges();
            match request {
                None => {}
                Some(Request::Shutdown) => break,
                Some(r) => self.handle(r),
            }
        }
        self.safe_state();
    }

    fn handle(&mut self, request: Request) {
        // A reply whose caller has given up is dropped: that is fine.
        match request {
            Request::ReadDht22 { pin, reply } => {
                let _ = reply.send(self.read_dht22(pin));
            }
            Request::ReadBme680 { addr, reply } => {
                let _ = reply.send(self.backend.read_bme680(addr));
            }
            Request::CpuTemp { reply } => {
                let _ = reply.send(self.backend.cpu_temp_c());
            }
            Request::SystemStats { reply } => {
                let _ = reply.send(self.backend.system_stats());
            }
            Request::SetLeds { colors, reply } => {
                let _ = reply.send(self.set_leds(&colors));
            }
            Request::Buzz { pattern, reply } => {
                let _ = reply.send(self.start_pattern(pattern));
            }
            Request::BuzzerOff => {
                // Said only when it cut a pattern short: a plugin's safe
                // state silencing its tone is an event worth a line (and
                // the one tests wait for); silencing nothing is not.
                if let Some(left) = self.stop_buzzer() {
                    log::info!(
                        "buzzer silenced with {} ms of its pattern left",
                        left.as_millis()
                    );
                }
            }
            Request::Override {
                device,
                values,
                reply,
            } => {
                if let SimDevice::Dht22 { pin } = device {
                    // A pinned value shows on the next read, not 2 s later.
                    self.dht22_cache.remove(&pin);
                }
                let name = self.backend.name();
                let result = match self.backend.as_sim() {
                    Some(sim) => sim.set_override(device, values),
                    None => Err(HwError::Unsupported(format!(
                        "the `{name}` backend has no simulated values to override"
                    ))),
                };
                let _ = reply.send(result);
            }
            Request::Fault {
                device,
                fault,
                reply,
            } => {
                if let SimDevice::Dht22 { pin } = device {
                    // An injected fault shows on the next read, not 2 s later.
                    self.dht22_cache.remove(&pin);
                }
                let name = self.backend.name();
                let result = match self.backend.as_sim() {
                    Some(sim) => sim.set_fault(device, fault),
                    None => Err(HwError::Unsupported(format!(
                        "the `{name}` backend cannot inject faults; real hardware has its own"
                    ))),
                };
                let _ = reply.send(result);
            }
            Request::Shutdown => {}
        }
    }

    fn read_dht22(&mut self, pin: u8) -> Result<Dht22Sample, HwError> {
        if let Some((at, result)) = self.dht22_cache.get(&pin) {
            if at.elapsed() < self.options.dht22_min_interval {
                return result.clone();
            }
        }
        let result = self.backend.read_dht22(pin);
        self.dht22_cache
            .insert(pin, (Instant::now(), result.clone()));
        let failures = self.dht22_failures.entry(pin).or_insert(0);
        match &result {
            Ok(_) if *failures > 0 => {
                log::info!("DHT22 on GPIO {pin}: reading again after {failures} failed reads");
                *failures = 0;
            }
            Ok(_) => {}
            Err(e) => {
                *failures += 1;
                if *failures <= DHT22_QUIET_RETRIES {
                    log::debug!("DHT22 on GPIO {pin}: {e}; the next read retries");
                } else if (*failures - DHT22_QUIET_RETRIES) % 30 == 1 {
                    // The first persistent failure, then every 30th, so a
                    // dead sensor does not flood the log.
                    log::warn!("DHT22 on GPIO {pin}: {failures} failed reads in a row: {e}");
                }
            }
        }
        result
    }

    fn set_leds(&mut self, colors: &[(u8, [u8; 3])]) -> Result<(), HwError> {
        for &(index, color) in colors {
            match self.frame.get_mut(index as usize) {
                Some(slot) => *slot = color,
                None => {
                    return Err(HwError::NotPresent(format!(
                        "LED {index} does not exist: the strip has {} LEDs",
                        self.frame.len()
                    )))
                }
            }
        }
        self.show()
    }

    fn show(&mut self) -> Result<(), HwError> {
        let brightness = u16::from(self.options.brightness);
        let capped: Vec<[u8; 3]> = self
            .frame
            .iter()
            .map(|c| c.map(|v| ((u16::from(v) * brightness + 127) / 255) as u8))
            .collect();
        let result = self.backend.show_leds(&capped);
        let mut status = self.status.write().expect("actuator status lock");
        status.leds = self.frame.clone();
        result
    }

    fn start_pattern(&mut self, pattern: BuzzPattern) -> Result<(), HwError> {
        let on = pattern.on.min(self.options.max_tone);
        let now = Instant::now();
        let mut edges = Vec::with_capacity(pattern.count as usize * 2);
        let mut at = now;
        for _ in 0..pattern.count {
            edges.push((at, true));
            at += on;
            edges.push((at, false));
            at += pattern.off;
        }
        edges.reverse();
        self.pattern = edges;
        self.play_due_edges();
        Ok(())
    }

    fn play_due_edges(&mut self) {
        let now = Instant::now();
        while let Some(&(at, on)) = self.pattern.last() {
            if at > now {
                break;
            }
            self.pattern.pop();
            self.set_buzzer(on);
        }
        let mut status = self.status.write().expect("actuator status lock");
        status.buzzer_pattern_active = !self.pattern.is_empty();
    }

    fn set_buzzer(&mut self, on: bool) {
        if let Err(e) = self.backend.set_buzzer(on) {
            log::warn!("buzzer: {e}");
        }
        let mut status = self.status.write().expect("actuator status lock");
        // Every tone a pattern starts counts, even one that cuts into a
        // tone still sounding from the pattern it replaced.
        if on {
            status.beeps_total += 1;
        }
        status.buzzer_on = on;
    }

    /// Silences the buzzer and drops the pattern playing, if any: how much
    /// of it was left.
    fn stop_buzzer(&mut self) -> Option<Duration> {
        // Edges are kept soonest last: the first is the pattern's end.
        let left = self
            .pattern
            .first()
            .map(|&(end, _)| end.saturating_duration_since(Instant::now()));
        self.pattern.clear();
        self.set_buzzer(false);
        let mut status = self.status.write().expect("actuator status lock");
        status.buzzer_pattern_active = false;
        left
    }

    /// LEDs off, buzzer silent: where the device rests when nobody drives it.
    fn safe_state(&mut self) {
        self.stop_buzzer();
        self.frame.iter_mut().for_each(|c| *c = [0, 0, 0]);
        if let Err(e) = self.show() {
            log::warn!("LED strip: {e}");
        }
    }
}

/// Memory, load and uptime from the kernel via sysinfo; the same on a Pi
/// and a laptop, so both backends use it. `None`: sysinfo could not start
/// on this system.
pub(crate) fn read_system_stats(sys: Option<&mut sysinfo::System>) -> Result<SystemStats, HwError> {
    let sys = sys.ok_or_else(|| {
        HwError::Unsupported("this system does not report memory statistics".into())
    })?;
    sys.refresh_memory();
    Ok(SystemStats {
        ram_used_bytes: sys.used_memory(),
        ram_total_bytes: sys.total_memory(),
        uptime_s: sysinfo::System::uptime().unwrap_or(0),
        load_1m: sysinfo::System::load_average()
            .map(|l| l.one as f32)
            .unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> Worker {
        Worker {
            backend: Box::new(SimBackend::new(1, vec![], vec![])),
            options: HardwareOptions::default(),
            status: Arc::default(),
            dht22_cache: HashMap::new(),
            dht22_failures: HashMap::new(),
            frame: Vec::new(),
            pattern: Vec::new(),
        }
    }

    #[test]
    fn silencing_a_pattern_says_how_much_of_it_was_cut() {
        let mut w = worker();
        assert_eq!(w.stop_buzzer(), None, "nothing was playing");
        let two_seconds = BuzzPattern {
            count: 1,
            on: Duration::from_secs(2),
            off: Duration::ZERO,
        };
        w.start_pattern(two_seconds).unwrap();
        assert!(w.status.read().unwrap().buzzer_on);
        let left = w.stop_buzzer().expect("a pattern was playing");
        assert!(
            left > Duration::from_secs(1) && left <= Duration::from_secs(2),
            "{left:?}"
        );
        let status = w.status.read().unwrap().clone();
        assert!(!status.buzzer_on && !status.buzzer_pattern_active);
        assert_eq!(w.stop_buzzer(), None, "already silent");
    }
}
