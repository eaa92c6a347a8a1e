//! The BME680 driver sequence, over any register bus.
//!
//! [`Bme680Driver`] does what a BME680 needs, in order: check the chip id,
//! read the variant id (a BME688 has the same chip id and needs its own gas
//! enable bit, gas bytes and gas formula: both are supported, anything else
//! is refused by name), soft-reset, read the three calibration blocks once,
//! then per reading
//! program the gas heater and oversampling, trigger one forced measurement,
//! wait for it, poll `new_data` a bounded number of times, read the 17-byte
//! field and compensate it with [`crate::drivers::bme680`].
//!
//! It talks to the chip only through [`Bme680Bus`]: the `pi` backend
//! implements it with rppal's I2C, the `sim` backend with a simulated
//! register file ([`super::SimBme680Registers`]). The same sequence
//! therefore runs in every simulated reading and every test.
//!
//! A bus error forgets the calibration, so the next reading starts again
//! from the chip-id check: a sensor that was unplugged and plugged back in
//! (which resets it) is picked up again without restarting the host.
//!
//! # Troubleshooting
//!
//! - **No BME680 answered at address 0x77**: wiring (SDA → GPIO 2 / pin 3,
//!   SCL → GPIO 3 / pin 5, VCC → 3.3 V, GND) or the address: `i2cdetect -y 1`
//!   shows what answers; SDO to GND is 0x76, SDO to VCC 0x77.
//! - **Chip id 0x60 / 0x58**: a BME280 / BMP280 answers there; they have no
//!   gas sensor and are not supported.
//! - **Gas not valid** in readings: the heater did not reach its target in
//!   time; raise `hardware.bme680.heater_ms` or lower `heater_temp_c`.
//! - **I2C error**: occasional ones are retried at the next reading;
//!   persistent ones point at long wires or missing pull-ups.

use std::fmt;
use std::time::Duration;

use crate::drivers::bme680::{
    self as proto, Calibration, Oversampling, Variant, CHIP_ID, COEFF1_LEN, COEFF2_LEN, COEFF3_LEN,
    FIELD_LEN,
};

use super::{Bme680Sample, HwError};

/// How a BME680 is reached: register reads and writes, and waiting.
pub trait Bme680Bus {
    /// Reads `buf.len()` consecutive registers starting at `reg`.
    fn read(&mut self, reg: u8, buf: &mut [u8]) -> Result<(), BusError>;
    /// Writes one register.
    fn write(&mut self, reg: u8, value: u8) -> Result<(), BusError>;
    /// Waits while the chip works. The simulator advances a virtual clock
    /// instead, so tests do not sleep and can check the waits are long
    /// enough.
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Why a bus transfer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// Nothing acknowledged the address: the chip is absent, unpowered,
    /// miswired or at the other address. Check the wiring and run
    /// `i2cdetect -y 1` to see what answers.
    NoAck,
    /// Any other failure (timeout, a glitch, the bus went away), with the
    /// operating system's message. Retried at the next reading; if it
    /// persists, shorten the wires and check the pull-ups.
    Io(String),
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::NoAck => f.write_str("no acknowledge from the device"),
            BusError::Io(detail) => f.write_str(detail),
        }
    }
}

/// How the driver measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bme680Settings {
    /// Gas heater plate target, °C (200–400; Bosch suggests 320).
    pub heater_temp_c: u16,
    /// How long the heater runs before the gas conversion.
    pub heater_duration: Duration,
    pub os_temperature: Oversampling,
    pub os_pressure: Oversampling,
    pub os_humidity: Oversampling,
}

impl Default for Bme680Settings {
    fn default() -> Self {
        Bme680Settings {
            heater_temp_c: 320,
            heater_duration: Duration::from_millis(150),
            os_temperature: Oversampling::X8,
            os_pressure: Oversampling::X4,
            os_humidity: Oversampling::X2,
        }
    }
}

impl Bme680Settings {
    /// How long one forced measurement takes: conversion plus heater.
    pub fn measurement_time(&self) -> Duration {
        proto::measurement_duration(self.os_temperature, self.os_pressure, self.os_humidity)
            + self.heater_duration
    }
}

/// After the expected conversion time, `new_data` is polled this many
/// times, [`POLL_INTERVAL`] apart, before the reading is given up: the
/// chip's own clock may run a little slow.
pub const NEW_DATA_POLLS: u32 = 5;
/// Time between two `new_data` polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Heater compensation assumes this ambient temperature until the first
/// reading gives a real one.
const DEFAULT_AMBIENT_C: i8 = 25;

/// One BME680 at one address, over `B`.
pub struct Bme680Driver<B> {
    bus: B,
    addr: u8,
    settings: Bme680Settings,
    /// Read after a successful chip-id check and reset; `None` until then
    /// and after any bus error, so the next reading starts over.
    calibration: Option<Calibration>,
    /// BME680 or BME688, read with the calibration.
    variant: Variant,
    /// Last measured temperature, for the heater set-point.
    ambient_c: i8,
}

impl<B: Bme680Bus> Bme680Driver<B> {
    pub fn new(bus: B, addr: u8, settings: Bme680Settings) -> Bme680Driver<B> {
        Bme680Driver {
            bus,
            addr,
            settings,
            calibration: None,
            variant: Variant::Bme680,
            ambient_c: DEFAULT_AMBIENT_C,
        }
    }

    /// The chip found at the last successful initialisation.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    pub fn addr(&self) -> u8 {
        self.addr
    }

    pub fn settings(&self) -> Bme680Settings {
        self.settings
    }

    pub fn bus_mut(&mut self) -> &mut B {
        &mut self.bus
    }

    /// The calibration read at the last successful initialisation.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// Checks the chip id, resets the chip and reads its calibration.
    pub fn init(&mut self) -> Result<(), HwError> {
        self.calibration = None;
        let mut id = [0u8];
        self.read(proto::REG_CHIP_ID, &mut id, "reading the chip id")?;
        if id[0] != CHIP_ID {
            return Err(HwError::NotPresent(format!(
                "the device at I2C address {addr:#04x} is not a BME680: chip id register \
                 {reg:#04x} reads {got:#04x}, expected {CHIP_ID:#04x}{what}; check the part and \
                 find the BME680's address with `i2cdetect -y 1` (0x76 when SDO is tied to GND, \
                 0x77 when tied to VCC)",
                addr = self.addr,
                reg = proto::REG_CHIP_ID,
                got = id[0],
                what = match id[0] {
                    0x60 => " (a BME280, which has no gas sensor)",
                    0x58 => " (a BMP280)",
                    0x00 | 0xFF => " (nothing drives the bus: wiring?)",
                    _ => "",
                },
            )));
        }
        let mut variant = [0u8];
        self.read(
            proto::REG_VARIANT_ID,
            &mut variant,
            "reading the variant id",
        )?;
        self.variant = proto::Variant::from_id(variant[0]).map_err(|e| {
            HwError::NotPresent(format!(
                "the device at I2C address {:#04x} is not a BME680 or BME688: {e}",
                self.addr
            ))
        })?;
        self.write(
            proto::REG_SOFT_RESET,
            proto::SOFT_RESET_COMMAND,
            "resetting the chip",
        )?;
        self.bus.sleep(proto::SOFT_RESET_DELAY);
        let mut coeff1 = [0u8; COEFF1_LEN];
        let mut coeff2 = [0u8; COEFF2_LEN];
        let mut coeff3 = [0u8; COEFF3_LEN];
        self.read(
            proto::REG_COEFF1,
            &mut coeff1,
            "reading calibration block 0x8A",
        )?;
        self.read(
            proto::REG_COEFF2,
            &mut coeff2,
            "reading calibration block 0xE1",
        )?;
        self.read(
            proto::REG_COEFF3,
            &mut coeff3,
            "reading calibration block 0x00",
        )?;
        self.calibration = Some(Calibration::from_arrays(&coeff1, &coeff2, &coeff3));
        Ok(())
    }

    /// One forced measurement, initialising first if needed. Gas is
    /// reported only when the chip says the conversion was valid and the
    /// heater stable; otherwise `gas_valid` is false and the resistance 0.
    pub fn measure(&mut self) -> Result<Bme680Sample, HwError> {
        if self.calibration.is_none() {
            self.init()?;
        }
        let Some(cal) = self.calibration else {
            return Err(HwError::Sensor(
                "BME680 calibration missing after initialisation".into(),
            ));
        };
        let s = self.settings;
        let heater_ms = u16::try_from(s.heater_duration.as_millis()).unwrap_or(u16::MAX);
        // Registers are written before every measurement, not once: a
        // brown-out resets the chip silently, and five small writes cost
        // well under a millisecond.
        let setup = [
            (proto::REG_CTRL_HUM, s.os_humidity.register_bits()),
            (proto::REG_CONFIG, 0), // IIR filter off: one-shot readings
            (
                proto::REG_RES_HEAT_0,
                proto::heater_resistance(&cal, s.heater_temp_c, self.ambient_c),
            ),
            (proto::REG_GAS_WAIT_0, proto::gas_wait(heater_ms)),
            (proto::REG_CTRL_GAS_0, 0),                      // heater on
            (proto::REG_CTRL_GAS_1, self.variant.run_gas()), // profile 0
            (
                proto::REG_CTRL_MEAS,
                (s.os_temperature.register_bits() << 5)
                    | (s.os_pressure.register_bits() << 2)
                    | proto::MODE_FORCED,
            ),
        ];
        for (reg, value) in setup {
            self.write(reg, value, "starting a measurement")?;
        }
        self.bus.sleep(s.measurement_time());
        let mut field = [0u8; FIELD_LEN];
        let mut polls = 0;
        loop {
            self.read(proto::REG_FIELD, &mut field, "reading the measurement")?;
            let measurement = proto::compensate(&cal, self.variant, &field).map_err(|e| {
                HwError::Sensor(format!(
                    "{} at {:#04x}: {e}",
                    self.variant.name(),
                    self.addr
                ))
            })?;
            if measurement.new_data {
                self.ambient_c = measurement.temperature_c.clamp(-40.0, 85.0) as i8;
                let gas_ok = measurement.gas_valid && measurement.heat_stable;
                return Ok(Bme680Sample {
                    temperature_c: measurement.temperature_c,
                    humidity_pct: measurement.humidity_pct,
                    pressure_hpa: measurement.pressure_pa / 100.0,
                    gas_resistance_ohm: if gas_ok {
                        measurement.gas_resistance_ohm
                    } else {
                        0.0
                    },
                    gas_valid: gas_ok,
                    chip: self.variant.name(),
                });
            }
            polls += 1;
            if polls > NEW_DATA_POLLS {
                // The chip may have reset mid-measurement: start over next time.
                self.calibration = None;
                return Err(HwError::Sensor(format!(
                    "BME680 at {:#04x} had no new data {} ms after a forced measurement \
                     (expected after {} ms); the next reading re-initialises it",
                    self.addr,
                    (s.measurement_time() + POLL_INTERVAL * NEW_DATA_POLLS).as_millis(),
                    s.measurement_time().as_millis(),
                )));
            }
            self.bus.sleep(POLL_INTERVAL);
        }
    }

    fn read(&mut self, reg: u8, buf: &mut [u8], doing: &str) -> Result<(), HwError> {
        let result = self.bus.read(reg, buf);
        result.map_err(|e| self.bus_error(e, doing))
    }

    fn write(&mut self, reg: u8, value: u8, doing: &str) -> Result<(), HwError> {
        let result = self.bus.write(reg, value);
        result.map_err(|e| self.bus_error(e, doing))
    }

    fn bus_error(&mut self, error: BusError, doing: &str) -> HwError {
        self.calibration = None;
        bus_error_to_hw(self.addr, error, doing)
    }
}

/// The error a plugin (and `probe`) sees for a failed transfer.
pub fn bus_error_to_hw(addr: u8, error: BusError, doing: &str) -> HwError {
    match error {
        BusError::NoAck => HwError::NotPresent(format!(
            "no BME680 answered at I2C address {addr:#04x} ({doing}); check the wiring \
             (SDA → GPIO 2 / pin 3, SCL → GPIO 3 / pin 5, VCC → 3.3 V, GND) and find the \
             address with `i2cdetect -y 1` (0x76 when SDO is tied to GND, 0x77 when tied to VCC)"
        )),
        BusError::Io(detail) => HwError::Sensor(format!(
            "I2C error talking to the BME680 at {addr:#04x} ({doing}): {detail}; the next \
             reading retries (if it persists: shorten the wires, check the pull-ups)"
        )),
    }
}
