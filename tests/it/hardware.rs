//! The hardware thread, the simulated devices and the shared sensor code,
//! through the public API: readings go through the real decoders and driver
//! sequence, faults come back as the errors a Pi would report, the DHT22's
//! minimum interval holds, and `probe` checks the configured devices.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::TEST_TOKEN;
use wasi_python_host::config::Config;
use wasi_python_host::drivers::bme680::Variant;
use wasi_python_host::hardware::bme680::{Bme680Bus, Bme680Driver, Bme680Settings, BusError};
use wasi_python_host::hardware::{
    Backend, Bme680Sample, Dht22Sample, Hardware, HardwareHandle, HardwareOptions, HwError, SimAir,
    SimBackend, SimBme680Registers, SimControl, SimDevice, SimFault, SimOverride, SystemStats,
    Transfer, SIM_HEATER_MIN,
};
use wasi_python_host::http::{self, AppState, Request};
use wasi_python_host::scheduler::Shared;

const DHT22: SimDevice = SimDevice::Dht22 { pin: 4 };
const BME680: SimDevice = SimDevice::Bme680 { addr: 0x77 };

/// A hardware thread over a simulator with a DHT22 on GPIO 4 and a BME680
/// at 0x77. The timeout is generous: the point is behaviour, not speed.
fn sim_hardware() -> Hardware {
    start(
        Box::new(SimBackend::new(7, vec![4], vec![0x77])),
        Duration::from_secs(2),
    )
}

fn start(backend: Box<dyn Backend>, dht22_min_interval: Duration) -> Hardware {
    Hardware::start(
        backend,
        HardwareOptions {
            request_timeout: Duration::from_secs(5),
            dht22_min_interval,
            ..HardwareOptions::default()
        },
    )
    .expect("hardware thread starts")
}

fn fault(hw: &HardwareHandle, device: SimDevice, fault: Option<SimFault>) {
    hw.set_fault(device, fault)
        .expect("the sim backend takes faults");
}

/// The error of a read that must fail, as text, checked to be `kind`.
fn error_of<T: std::fmt::Debug>(result: Result<T, HwError>, kind: fn(&HwError) -> bool) -> String {
    match result {
        Err(e) if kind(&e) => e.to_string(),
        other => panic!("expected a different outcome, got {other:?}"),
    }
}

fn is_sensor(e: &HwError) -> bool {
    matches!(e, HwError::Sensor(_))
}

fn is_not_present(e: &HwError) -> bool {
    matches!(e, HwError::NotPresent(_))
}

#[test]
fn dht22_values_travel_through_frame_and_pulse_decoding() {
    let hardware = sim_hardware();
    let hw = hardware.handle();
    // Pinned values come back as the sensor's frame carries them: tenths,
    // rounded, and negative temperatures in sign-magnitude.
    for (set, expected) in [(35.06, 35.1), (-10.1, -10.1), (0.04, 0.0)] {
        hw.set_override(
            DHT22,
            Some(SimOverride {
                temperature_c: Some(set),
                humidity_pct: Some(65.24),
                ..SimOverride::default()
            }),
        )
        .unwrap();
        let sample = hw.read_dht22(4).unwrap();
        assert_eq!(
            sample,
            Dht22Sample {
                temperature_c: expected,
                humidity_pct: 65.2
            }
        );
    }
}

#[test]
fn dht22_faults_are_reported_and_clear() {
    let hardware = sim_hardware();
    let hw = hardware.handle();
    assert!(hw.read_dht22(4).is_ok());

    fault(&hw, DHT22, Some(SimFault::Checksum));
    let message = error_of(hw.read_dht22(4), is_sensor);
    assert!(message.contains("checksum"), "{message}");

    fault(&hw, DHT22, Some(SimFault::MissingEdge));
    let message = error_of(hw.read_dht22(4), is_sensor);
    assert!(message.contains("39 data pulses"), "{message}");

    fault(&hw, DHT22, Some(SimFault::NoResponse));
    let message = error_of(hw.read_dht22(4), is_not_present);
    assert!(
        message.contains("did not respond") && message.contains("GPIO 4"),
        "{message}"
    );

    fault(&hw, DHT22, None);
    let sample = hw
        .read_dht22(4)
        .expect("readings return once the fault is cleared");
    assert!((10.0..35.0).contains(&sample.temperature_c), "{sample:?}");
}

#[test]
fn a_dht22_that_disappears_comes_back() {
    let hardware = sim_hardware();
    let hw = hardware.handle();
    fault(&hw, DHT22, Some(SimFault::Absent));
    let message = error_of(hw.read_dht22(4), is_not_present);
    assert!(message.contains("pull-up"), "the fix is named: {message}");
    fault(&hw, DHT22, None);
    assert!(hw.read_dht22(4).is_ok());
}

/// Counts the DHT22 reads that reach the backend.
struct Counting {
    inner: SimBackend,
    dht22_reads: Arc<AtomicUsize>,
}

impl Backend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn read_dht22(&mut self, pin: u8) -> Result<Dht22Sample, HwError> {
        self.dht22_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_dht22(pin)
    }
    fn read_bme680(&mut self, addr: u8) -> Result<Bme680Sample, HwError> {
        self.inner.read_bme680(addr)
    }
    fn cpu_temp_c(&mut self) -> Result<f32, HwError> {
        self.inner.cpu_temp_c()
    }
    fn system_stats(&mut self) -> Result<SystemStats, HwError> {
        self.inner.system_stats()
    }
    fn show_leds(&mut self, frame: &[[u8; 3]]) -> Result<(), HwError> {
        self.inner.show_leds(frame)
    }
    fn set_buzzer(&mut self, on: bool) -> Result<(), HwError> {
        self.inner.set_buzzer(on)
    }
    fn as_sim(&mut self) -> Option<&mut dyn SimControl> {
        self.inner.as_sim()
    }
}

#[test]
fn dht22_reads_inside_the_minimum_interval_are_answered_from_the_last_read() {
    assert_eq!(
        HardwareOptions::default().dht22_min_interval,
        Duration::from_secs(2),
        "the datasheet's interval is the default"
    );
    let reads = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_millis(300);
    let hardware = start(
        Box::new(Counting {
            inner: SimBackend::new(1, vec![4], vec![]),
            dht22_reads: reads.clone(),
        }),
        interval,
    );
    let hw = hardware.handle();
    let first = hw.read_dht22(4).unwrap();
    let second = hw.read_dht22(4).unwrap();
    assert_eq!(first, second);
    assert_eq!(reads.load(Ordering::SeqCst), 1, "the sensor was read twice");

    // A failed read is cached too: the retry is the next read after the
    // interval, never an immediate second transfer.
    fault(&hw, DHT22, Some(SimFault::Checksum));
    assert!(hw.read_dht22(4).is_err());
    assert!(hw.read_dht22(4).is_err());
    assert_eq!(reads.load(Ordering::SeqCst), 2);
    fault(&hw, DHT22, None);
    assert!(hw.read_dht22(4).is_ok(), "clearing a fault drops the cache");
    assert_eq!(reads.load(Ordering::SeqCst), 3);

    std::thread::sleep(interval + Duration::from_millis(50));
    hw.read_dht22(4).unwrap();
    assert_eq!(
        reads.load(Ordering::SeqCst),
        4,
        "a read after the interval is fresh"
    );
}

#[test]
fn bme680_faults_are_reported_and_a_replugged_chip_is_picked_up() {
    let hardware = sim_hardware();
    let hw = hardware.handle();
    let sample = hw.read_bme680(0x77).unwrap();
    assert!(
        sample.gas_valid && sample.gas_resistance_ohm > 50_000.0,
        "{sample:?}"
    );

    fault(&hw, BME680, Some(SimFault::I2cError));
    let message = error_of(hw.read_bme680(0x77), is_sensor);
    assert!(
        message.contains("I2C error") && message.contains("0x77"),
        "{message}"
    );

    fault(&hw, BME680, Some(SimFault::WrongChipId));
    let message = error_of(hw.read_bme680(0x77), is_not_present);
    assert!(
        message.contains("0x60")
            && message.contains("BME280")
            && message.contains("i2cdetect -y 1"),
        "{message}"
    );

    fault(&hw, BME680, Some(SimFault::Absent));
    let message = error_of(hw.read_bme680(0x77), is_not_present);
    assert!(
        message.contains("no BME680 answered at I2C address 0x77")
            && message.contains("i2cdetect -y 1"),
        "{message}"
    );

    fault(&hw, BME680, None);
    let sample = hw.read_bme680(0x77).expect("the chip is picked up again");
    assert!((900.0..1100.0).contains(&sample.pressure_hpa), "{sample:?}");
}

#[test]
fn faults_that_do_not_fit_the_device_are_refused() {
    let hardware = sim_hardware();
    let hw = hardware.handle();
    let refused = hw.set_fault(DHT22, Some(SimFault::I2cError));
    assert!(
        matches!(&refused, Err(HwError::Unsupported(m)) if m.contains("checksum")),
        "{refused:?}"
    );
    assert!(hw
        .set_fault(SimDevice::Cpu, Some(SimFault::Checksum))
        .is_err());
    fault(&hw, SimDevice::Cpu, Some(SimFault::Absent));
    assert!(matches!(hw.cpu_temp_c(), Err(HwError::NotPresent(_))));
    fault(&hw, SimDevice::Cpu, None);
    assert!(hw.cpu_temp_c().is_ok());
}

// --- The BME680 driver sequence against the simulated register file.

fn driver(chip: SimBme680Registers, settings: Bme680Settings) -> Bme680Driver<SimBme680Registers> {
    Bme680Driver::new(chip, 0x77, settings)
}

#[test]
fn bme680_driver_runs_the_datasheet_sequence() {
    let mut chip = SimBme680Registers::new();
    chip.set_air(SimAir {
        temperature_c: 23.5,
        pressure_hpa: 1001.5,
        humidity_pct: 40.0,
        gas_resistance_ohm: 120_000.0,
    });
    let settings = Bme680Settings::default();
    let mut bme = driver(chip, settings);
    let sample = bme.measure().unwrap();
    assert!((sample.temperature_c - 23.5).abs() < 0.01, "{sample:?}");
    assert!((sample.pressure_hpa - 1001.5).abs() < 0.02, "{sample:?}");
    assert!((sample.humidity_pct - 40.0).abs() < 0.02, "{sample:?}");
    assert!(sample.gas_valid);
    assert!(
        (sample.gas_resistance_ohm - 120_000.0).abs() < 120.0,
        "{sample:?}"
    );

    let chip = bme.bus_mut();
    assert!(
        chip.elapsed() >= settings.measurement_time(),
        "the driver read after {:?}, the measurement takes {:?}",
        chip.elapsed(),
        settings.measurement_time()
    );
    let transcript = chip.transcript().to_vec();
    assert_eq!(
        transcript[..6],
        [
            Transfer::Read { reg: 0xD0, len: 1 },
            Transfer::Read { reg: 0xF0, len: 1 },
            Transfer::Write {
                reg: 0xE0,
                value: 0xB6
            },
            Transfer::Read { reg: 0x8A, len: 23 },
            Transfer::Read { reg: 0xE1, len: 14 },
            Transfer::Read { reg: 0x00, len: 5 },
        ],
        "chip id, variant id, reset, three calibration blocks"
    );
    assert!(
        transcript.contains(&Transfer::Write {
            reg: 0x71,
            value: 0x10
        }),
        "a BME680's gas is enabled with bit 4 of ctrl_gas_1"
    );
    let trigger = transcript
        .iter()
        .position(|t| matches!(t, Transfer::Write { reg: 0x74, value } if value & 0b11 == 0b01))
        .expect("a forced measurement was triggered");
    let humidity = transcript
        .iter()
        .position(|t| matches!(t, Transfer::Write { reg: 0x72, .. }))
        .expect("humidity oversampling was set");
    assert!(
        humidity < trigger,
        "ctrl_hum only takes effect before ctrl_meas"
    );
    assert_eq!(
        transcript[transcript.len() - 1],
        Transfer::Read { reg: 0x1D, len: 17 }
    );

    // Calibration is read once; the next reading goes straight to work.
    let before = transcript.len();
    bme.measure().unwrap();
    let again = &bme.bus_mut().transcript()[before..];
    assert!(
        !again.contains(&Transfer::Read { reg: 0xD0, len: 1 }),
        "{again:?}"
    );
}

/// A BME688 (same chip id, variant id 0x01) through the same driver: it is
/// recognised, its gas is enabled with its own bit and read from its own
/// bytes by its own formula, so gas is valid and right. A driver that reads
/// it as a BME680 gets no valid gas reading, ever.
#[test]
fn bme688_is_recognised_and_its_gas_is_valid() {
    let mut chip = SimBme680Registers::of_variant(Variant::Bme688);
    chip.set_air(SimAir {
        temperature_c: 21.0,
        pressure_hpa: 990.0,
        humidity_pct: 55.0,
        gas_resistance_ohm: 80_000.0,
    });
    let mut bme = driver(chip, Bme680Settings::default());
    let sample = bme.measure().unwrap();
    assert_eq!(bme.variant(), Variant::Bme688);
    assert!(sample.gas_valid, "{sample:?}");
    assert!(
        (sample.gas_resistance_ohm - 80_000.0).abs() < 80.0,
        "{sample:?}"
    );
    assert!((sample.temperature_c - 21.0).abs() < 0.01, "{sample:?}");
    let transcript = bme.bus_mut().transcript().to_vec();
    assert!(
        transcript.contains(&Transfer::Write {
            reg: 0x71,
            value: 0x20
        }),
        "a BME688's gas is enabled with bit 5 of ctrl_gas_1: {transcript:?}"
    );
}

/// The `sim` backend (what `hardware.sim.bme688_addresses` selects) serves a
/// BME688 through the same driver, with valid gas.
#[test]
fn the_sim_backend_simulates_a_bme688() {
    let mut sim = SimBackend::new(3, vec![], vec![0x76, 0x77]).with_bme688_at(&[0x77]);
    for addr in [0x76, 0x77] {
        let sample = sim.read_bme680(addr).unwrap();
        assert!(
            sample.gas_valid && sample.gas_resistance_ohm > 1_000.0,
            "{addr:#04x}: {sample:?}"
        );
    }
}

#[test]
fn an_unknown_variant_is_refused_by_name() {
    let mut chip = SimBme680Registers::new();
    chip.set_variant_id(0x07);
    let mut bme = driver(chip, Bme680Settings::default());
    let message = error_of(bme.measure(), is_not_present);
    for needle in ["0x77", "0xf0", "0x07", "BME688"] {
        assert!(
            message.contains(needle),
            "`{needle}` missing from: {message}"
        );
    }
}

#[test]
fn bme680_chip_id_mismatch_names_the_address_and_the_fix() {
    let mut chip = SimBme680Registers::new();
    chip.set_chip_id(0x58);
    let mut bme = driver(chip, Bme680Settings::default());
    let message = error_of(bme.measure(), is_not_present);
    for needle in ["0x77", "0x58", "0x61", "BMP280", "i2cdetect -y 1", "SDO"] {
        assert!(
            message.contains(needle),
            "`{needle}` missing from: {message}"
        );
    }
}

#[test]
fn bme680_gas_is_reported_only_when_the_heater_was_stable() {
    let short = Bme680Settings {
        heater_duration: SIM_HEATER_MIN / 2,
        ..Bme680Settings::default()
    };
    let sample = driver(SimBme680Registers::new(), short).measure().unwrap();
    assert!(
        !sample.gas_valid && sample.gas_resistance_ohm == 0.0,
        "{sample:?}"
    );
    assert!(
        (900.0..1100.0).contains(&sample.pressure_hpa),
        "other values still count"
    );
}

/// A bus on which time stops passing once `frozen` is set.
struct Freezable {
    chip: SimBme680Registers,
    frozen: bool,
}

impl Bme680Bus for Freezable {
    fn read(&mut self, reg: u8, buf: &mut [u8]) -> Result<(), BusError> {
        self.chip.read(reg, buf)
    }
    fn write(&mut self, reg: u8, value: u8) -> Result<(), BusError> {
        self.chip.write(reg, value)
    }
    fn sleep(&mut self, duration: Duration) {
        if !self.frozen {
            self.chip.sleep(duration);
        }
    }
}

#[test]
fn bme680_polling_for_new_data_is_bounded() {
    let bus = Freezable {
        chip: SimBme680Registers::new(),
        frozen: false,
    };
    let mut bme = Bme680Driver::new(bus, 0x77, Bme680Settings::default());
    bme.init().unwrap();
    // The conversion never finishes: the driver must give up, not spin.
    bme.bus_mut().frozen = true;
    let message = error_of(bme.measure(), is_sensor);
    assert!(message.contains("no new data"), "{message}");
    let polls = bme
        .bus_mut()
        .chip
        .transcript()
        .iter()
        .filter(|t| **t == Transfer::Read { reg: 0x1D, len: 17 })
        .count();
    assert!((2..=10).contains(&polls), "{polls} polls");
    // Time flows again: the next reading re-initialises and succeeds.
    bme.bus_mut().frozen = false;
    bme.measure().unwrap();
}

// --- POST /api/sim with a fault.

fn post_sim(state: &AppState, body: &str) -> (u16, String) {
    let response = http::handle(
        &Request {
            method: "POST".into(),
            path: "/api/sim".into(),
            content_type: Some("application/json".into()),
            headers: vec![("authorization".into(), format!("Bearer {TEST_TOKEN}"))],
            body: body.as_bytes().to_vec(),
            ..Request::default()
        },
        state,
    );
    (response.status, response.text())
}

/// The HTTP handlers' state over a simulated hardware handle.
fn sim_state(hw: &wasi_python_host::hardware::HardwareHandle) -> AppState {
    AppState::new(
        Shared::new(),
        hw.clone(),
        std::sync::Arc::new(wasi_python_host::control::Control::new(hw.clone())),
        "sim".into(),
        wasi_python_host::http::auth::Auth::with_token(TEST_TOKEN, "test"),
    )
}

#[test]
fn api_sim_injects_and_clears_faults() {
    let hardware = sim_hardware();
    let hw = hardware.handle();
    let state = sim_state(&hw);

    let (status, body) = post_sim(
        &state,
        r#"{"device": "dht22", "pin": 4, "fault": "checksum"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let message = error_of(hw.read_dht22(4), is_sensor);
    assert!(message.contains("checksum"), "{message}");

    let (status, body) = post_sim(
        &state,
        r#"{"device": "dht22", "pin": 4, "fault": "gremlins"}"#,
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("missing_edge") && body.contains("i2c_error"),
        "{body}"
    );

    let (status, body) = post_sim(&state, r#"{"device": "bme680", "fault": "checksum"}"#);
    assert_eq!(status, 400);
    assert!(body.contains("does not apply"), "{body}");

    let (status, body) = post_sim(
        &state,
        r#"{"device": "bme680", "addr": 119, "fault": "absent"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(matches!(hw.read_bme680(0x77), Err(HwError::NotPresent(_))));

    let (status, _) = post_sim(&state, r#"{"device": "dht22", "pin": 4, "fault": null}"#);
    assert_eq!(status, 200);
    assert!(hw.read_dht22(4).is_ok());
    let (status, _) = post_sim(&state, r#"{"device": "bme680", "clear": true}"#);
    assert_eq!(status, 200);
    assert!(hw.read_bme680(0x77).is_ok(), "clear releases the fault too");

    let (status, _) = post_sim(&state, r#"{"device": "dht22", "faults": "checksum"}"#);
    assert_eq!(status, 400, "unknown fields are still refused");
}

/// Real hardware as far as the hardware thread can tell: the simulator's
/// readings behind a backend that, like `pi`, has no simulator controls.
struct Real(SimBackend);

impl Backend for Real {
    fn name(&self) -> &'static str {
        "real"
    }
    fn read_dht22(&mut self, pin: u8) -> Result<Dht22Sample, HwError> {
        self.0.read_dht22(pin)
    }
    fn read_bme680(&mut self, addr: u8) -> Result<Bme680Sample, HwError> {
        self.0.read_bme680(addr)
    }
    fn cpu_temp_c(&mut self) -> Result<f32, HwError> {
        self.0.cpu_temp_c()
    }
    fn system_stats(&mut self) -> Result<SystemStats, HwError> {
        self.0.system_stats()
    }
    fn show_leds(&mut self, frame: &[[u8; 3]]) -> Result<(), HwError> {
        self.0.show_leds(frame)
    }
    fn set_buzzer(&mut self, on: bool) -> Result<(), HwError> {
        self.0.set_buzzer(on)
    }
}

#[test]
fn api_sim_is_a_conflict_on_real_hardware() {
    let hardware = start(
        Box::new(Real(SimBackend::new(7, vec![4], vec![0x77]))),
        Duration::from_secs(2),
    );
    let hw = hardware.handle();
    let state = sim_state(&hw);
    let (status, body) = post_sim(
        &state,
        r#"{"device": "dht22", "pin": 4, "temperature": 45.0}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("the `real` backend has no simulated values"),
        "{body}"
    );
    let (status, body) = post_sim(
        &state,
        r#"{"device": "dht22", "pin": 4, "fault": "checksum"}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cannot inject faults"), "{body}");
    let reading = hw.read_dht22(4).expect("reads are untouched");
    assert!(reading.temperature_c < 45.0, "{reading:?}");
}

#[test]
fn api_sim_fault_alone_keeps_pinned_values() {
    let hardware = sim_hardware();
    let hw = hardware.handle();
    let state = sim_state(&hw);
    let (status, _) = post_sim(
        &state,
        r#"{"device": "dht22", "pin": 4, "temperature": 31.5}"#,
    );
    assert_eq!(status, 200);
    post_sim(
        &state,
        r#"{"device": "dht22", "pin": 4, "fault": "no_response"}"#,
    );
    post_sim(&state, r#"{"device": "dht22", "pin": 4, "fault": null}"#);
    assert_eq!(hw.read_dht22(4).unwrap().temperature_c, 31.5);
}

// --- Config keys.

/// Parses `text` made whole: with the `[host]` and plugin tables every
/// config needs appended (so error lines stay those of `text`).
fn parse(text: &str) -> Result<Config, String> {
    let whole = format!("{text}\n[host]\n[plugins.p]\nkind = \"sensor\"\n");
    Config::parse(&whole, Path::new("host.toml")).map_err(|e| e.to_string())
}

#[test]
fn device_config_has_defaults_and_checks_its_values() {
    let config = parse("").unwrap();
    assert_eq!(config.hardware.bme680.heater_temp_c, 320);
    assert_eq!(config.hardware.bme680.heater_ms, 150);
    let config = parse(
        "[hardware.buzzer]\nkind = \"passive\"\nfrequency_hz = 2700\n\
         [hardware.leds]\ndriver = \"spi\"\npin = 10\n",
    )
    .unwrap();
    assert_eq!(config.hardware.buzzer.frequency_hz, 2700);

    for (text, key) in [
        (
            "[hardware.bme680]\nheater_temp_c = 500\n",
            "hardware.bme680.heater_temp_c",
        ),
        (
            "[hardware.bme680]\nheater_ms = 400\n",
            "hardware.bme680.heater_ms",
        ),
        ("[hardware.leds]\ndriver = \"spi\"\n", "hardware.leds.pin"),
        (
            "[hardware.leds]\ndriver = \"pwm\"\n",
            "host.toml:2: `hardware.leds.driver`: unknown variant `pwm`",
        ),
        (
            "[hardware.buzzer]\nkind = \"passive\"\nfrequency_hz = 5\n",
            "hardware.buzzer.frequency_hz",
        ),
        ("[hardware.buzzer]\nvolume = 3\n", "volume"),
    ] {
        let error = parse(text).expect_err(text);
        assert!(error.contains(key), "{text:?} -> {error}");
    }
    // A long heater is fine with a request timeout to match.
    parse("[hardware]\nrequest_timeout_ms = 600\n[hardware.bme680]\nheater_ms = 400\n").unwrap();
}

// --- `wasi-python-host probe`.

fn probe(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wasi-python-host"))
        .arg("probe")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}{stderr}"),
    )
}

fn repo_config() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/config/host.toml").to_string()
}

#[test]
fn probe_finds_every_simulated_device() {
    let (code, out) = probe(&["--config", &repo_config(), "--hardware", "sim"]);
    assert_eq!(code, 0, "{out}");
    for needle in [
        "hardware backend: sim",
        "DHT22",
        "GPIO 4",
        "BME680",
        "0x77",
        "BME680, chip id 0x61",
        "hPa",
        "LED strip",
        "8 LEDs",
        "buzzer",
        "GPIO 17",
        "CPU",
        "5 of 5 devices found",
    ] {
        assert!(out.contains(needle), "`{needle}` missing from:\n{out}");
    }
}

/// A config in its own folder, removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, text: &str) -> TempConfig {
        let dir = std::env::temp_dir().join(format!("wph-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("host.toml"), text).unwrap();
        TempConfig(dir)
    }
    fn path(&self) -> String {
        self.0.join("host.toml").display().to_string()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn probe_fails_and_names_a_missing_device() {
    let config = TempConfig::new(
        "probe-missing",
        r#"
[host]
hardware = "sim"
[hardware.sim]
dht22_pins = []
bme680_addresses = [0x77]
[plugins.dht22]
kind = "dht22"
[plugins.dht22.grants]
interfaces = ["gpio-provider"]
dht22_pins = [5]
i2c_addresses = [0x77]
"#,
    );
    let (code, out) = probe(&["--config", &config.path()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("GPIO 5") && out.contains("MISSING"), "{out}");
    assert!(out.contains("4 of 5 devices found"), "{out}");
}

#[test]
fn probe_rejects_a_bad_config_with_its_line() {
    let config = TempConfig::new("probe-bad", "[hardware.bme680]\nheater_temp_c = 900\n");
    let (code, out) = probe(&["--config", &config.path(), "--hardware", "sim"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("host.toml:2") && out.contains("heater_temp_c"),
        "{out}"
    );
}
