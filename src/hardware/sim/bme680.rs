//! A simulated BME680 at register level, for the shared driver.
//!
//! The register file holds what a real chip holds (chip id, the three
//! calibration blocks of a real BME680, control registers, the data field)
//! and reacts to the writes a driver makes: a soft reset restores the
//! defaults and keeps the chip deaf for a moment, a forced-mode write starts
//! a conversion whose length follows the programmed oversampling and heater
//! time on a *virtual* clock that [`Bme680Bus::sleep`] advances. The data
//! field gets `new_data` only once that time has passed, so a driver that
//! reads too early is caught by the tests instead of on a Pi.

use std::time::Duration;

use crate::drivers::bme680::{
    self as proto, Calibration, Oversampling, Variant, CHIP_ID, COEFF1_LEN, COEFF2_LEN, COEFF3_LEN,
    FIELD_LEN, SIM_COEFF1, SIM_COEFF2, SIM_COEFF3,
};
use crate::hardware::bme680::{Bme680Bus, BusError};

/// The chip ignores the bus for this long after a soft reset (datasheet
/// start-up time); drivers wait [`proto::SOFT_RESET_DELAY`].
const RESET_DEAF: Duration = Duration::from_millis(2);
/// The simulated heater reaches its target when given at least this long.
pub const SIM_HEATER_MIN: Duration = Duration::from_millis(25);
/// Status bit in the field's first byte: a conversion is running.
const MEASURING: u8 = 0x20;
/// `heat_off` bit of `ctrl_gas_0`.
const HEAT_OFF: u8 = 0x08;
/// Transfers kept in the transcript.
const TRANSCRIPT_LEN: usize = 128;

/// The air around the simulated chip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimAir {
    pub temperature_c: f32,
    pub pressure_hpa: f32,
    pub humidity_pct: f32,
    pub gas_resistance_ohm: f32,
}

impl Default for SimAir {
    fn default() -> Self {
        SimAir {
            temperature_c: 22.0,
            pressure_hpa: 1013.25,
            humidity_pct: 45.0,
            gas_resistance_ohm: 150_000.0,
        }
    }
}

/// One bus transfer, as the chip saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Read { reg: u8, len: usize },
    Write { reg: u8, value: u8 },
}

#[derive(Debug, Clone, Copy)]
struct Conversion {
    done_at: Duration,
    gas_enabled: bool,
    heat_stable: bool,
}

/// A BME680's registers, behind [`Bme680Bus`].
#[derive(Debug, Clone)]
pub struct SimBme680Registers {
    regs: [u8; 256],
    calibration: Calibration,
    chip_id: u8,
    /// What the variant id register (0xF0) holds; a BME688 (0x01) also
    /// enables gas on its own `run_gas` bit and reports gas in its own
    /// bytes, by its own formula.
    variant_id: u8,
    air: SimAir,
    /// Virtual time, advanced only by [`Bme680Bus::sleep`].
    now: Duration,
    deaf_until: Duration,
    conversion: Option<Conversion>,
    absent: bool,
    failing: bool,
    transcript: Vec<Transfer>,
}

impl Default for SimBme680Registers {
    fn default() -> Self {
        SimBme680Registers::new()
    }
}

impl SimBme680Registers {
    /// A BME680 with the calibration of a real chip
    /// ([`Calibration::simulated`]).
    pub fn new() -> SimBme680Registers {
        SimBme680Registers::of_variant(Variant::Bme680)
    }

    /// A BME680 or a BME688 (same chip id, its variant id in 0xF0).
    pub fn of_variant(variant: Variant) -> SimBme680Registers {
        let mut sim = SimBme680Registers {
            regs: [0; 256],
            calibration: Calibration::simulated(),
            chip_id: CHIP_ID,
            variant_id: variant.id(),
            air: SimAir::default(),
            now: Duration::ZERO,
            deaf_until: Duration::ZERO,
            conversion: None,
            absent: false,
            failing: false,
            transcript: Vec::new(),
        };
        sim.power_on();
        sim
    }

    /// Register contents after power-on or a soft reset.
    fn power_on(&mut self) {
        self.regs = [0; 256];
        let coeff1 = usize::from(proto::REG_COEFF1);
        self.regs[coeff1..coeff1 + COEFF1_LEN].copy_from_slice(&SIM_COEFF1);
        let coeff2 = usize::from(proto::REG_COEFF2);
        self.regs[coeff2..coeff2 + COEFF2_LEN].copy_from_slice(&SIM_COEFF2);
        let coeff3 = usize::from(proto::REG_COEFF3);
        self.regs[coeff3..coeff3 + COEFF3_LEN].copy_from_slice(&SIM_COEFF3);
        self.regs[usize::from(proto::REG_CHIP_ID)] = self.chip_id;
        self.regs[usize::from(proto::REG_VARIANT_ID)] = self.variant_id;
        self.conversion = None;
    }

    /// What the next conversion measures.
    pub fn set_air(&mut self, air: SimAir) {
        self.air = air;
    }

    /// Another chip id (0x60 makes it a BME280).
    pub fn set_chip_id(&mut self, id: u8) {
        self.chip_id = id;
        self.regs[usize::from(proto::REG_CHIP_ID)] = id;
    }

    /// Another variant id (0x01 makes it a BME688; others are unknown parts).
    pub fn set_variant_id(&mut self, id: u8) {
        self.variant_id = id;
        self.regs[usize::from(proto::REG_VARIANT_ID)] = id;
    }

    /// The chip's variant, as a driver should find it (a BME680 for an
    /// unknown id: such a chip reports gas where a BME680 does).
    fn variant(&self) -> Variant {
        Variant::from_id(self.variant_id).unwrap_or_default()
    }

    /// Unplugs (`true`) or plugs back in (`false`) the chip. Plugging in
    /// powers it on afresh: its registers are back to their defaults.
    pub fn set_absent(&mut self, absent: bool) {
        if self.absent && !absent {
            self.power_on();
        }
        self.absent = absent;
    }

    /// Makes every transfer fail with an I/O error, as a glitching bus does.
    pub fn set_failing(&mut self, failing: bool) {
        self.failing = failing;
    }

    /// Virtual time since the chip was created.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// The most recent transfers, oldest first.
    pub fn transcript(&self) -> &[Transfer] {
        &self.transcript
    }

    fn log(&mut self, transfer: Transfer) {
        if self.transcript.len() == TRANSCRIPT_LEN {
            self.transcript.remove(0);
        }
        self.transcript.push(transfer);
    }

    fn check_bus(&self) -> Result<(), BusError> {
        if self.absent || self.now < self.deaf_until {
            Err(BusError::NoAck)
        } else if self.failing {
            Err(BusError::Io("Connection timed out (os error 110)".into()))
        } else {
            Ok(())
        }
    }

    /// Finishes a conversion whose time has come: the field gets the air's
    /// values and `new_data`, and the chip goes back to sleep.
    fn update(&mut self) {
        let Some(conversion) = self.conversion else {
            return;
        };
        if self.now < conversion.done_at {
            return;
        }
        self.conversion = None;
        let mut field = proto::encode_field(
            &self.calibration,
            self.variant(),
            self.air.temperature_c,
            self.air.pressure_hpa * 100.0,
            self.air.humidity_pct,
            self.air.gas_resistance_ohm,
            conversion.gas_enabled,
            conversion.heat_stable,
        );
        field[1] = self.regs[usize::from(proto::REG_FIELD) + 1].wrapping_add(1);
        let start = usize::from(proto::REG_FIELD);
        self.regs[start..start + FIELD_LEN].copy_from_slice(&field);
        self.regs[usize::from(proto::REG_CTRL_MEAS)] &= !0b11;
    }

    fn start_conversion(&mut self, ctrl_meas: u8) {
        let os = |bits: u8| match bits & 0b111 {
            0 => Oversampling::Skip,
            1 => Oversampling::X1,
            2 => Oversampling::X2,
            3 => Oversampling::X4,
            4 => Oversampling::X8,
            _ => Oversampling::X16,
        };
        let conversion_time = proto::measurement_duration(
            os(ctrl_meas >> 5),
            os(ctrl_meas >> 2),
            os(self.regs[usize::from(proto::REG_CTRL_HUM)]),
        );
        let gas_enabled = self.regs[usize::from(proto::REG_CTRL_GAS_1)] & self.variant().run_gas()
            != 0
            && self.regs[usize::from(proto::REG_CTRL_GAS_0)] & HEAT_OFF == 0;
        let heater = if gas_enabled {
            decode_gas_wait(self.regs[usize::from(proto::REG_GAS_WAIT_0)])
        } else {
            Duration::ZERO
        };
        let heat_stable = gas_enabled
            && self.regs[usize::from(proto::REG_RES_HEAT_0)] != 0
            && heater >= SIM_HEATER_MIN;
        self.conversion = Some(Conversion {
            done_at: self.now + conversion_time + heater,
            gas_enabled,
            heat_stable,
        });
        let status = usize::from(proto::REG_FIELD);
        self.regs[status] = (self.regs[status] & !0x80) | MEASURING;
    }
}

/// The heater duration a `gas_wait_x` value encodes (inverse of
/// [`proto::gas_wait`]).
fn decode_gas_wait(value: u8) -> Duration {
    let count = u64::from(value & 0x3F);
    let factor = 1u64 << (2 * u32::from(value >> 6));
    Duration::from_millis(count * factor)
}

impl Bme680Bus for SimBme680Registers {
    fn read(&mut self, reg: u8, buf: &mut [u8]) -> Result<(), BusError> {
        self.log(Transfer::Read {
            reg,
            len: buf.len(),
        });
        self.check_bus()?;
        self.update();
        let start = usize::from(reg);
        let source = self.regs.get(start..start + buf.len()).ok_or_else(|| {
            BusError::Io(format!(
                "read of {} bytes from {reg:#04x} runs past register 0xff",
                buf.len()
            ))
        })?;
        buf.copy_from_slice(source);
        Ok(())
    }

    fn write(&mut self, reg: u8, value: u8) -> Result<(), BusError> {
        self.log(Transfer::Write { reg, value });
        self.check_bus()?;
        self.update();
        match reg {
            proto::REG_SOFT_RESET if value == proto::SOFT_RESET_COMMAND => {
                self.power_on();
                self.deaf_until = self.now + RESET_DEAF;
            }
            proto::REG_SOFT_RESET => {}
            // Read-only: chip id, variant id and calibration.
            proto::REG_CHIP_ID | proto::REG_VARIANT_ID => {}
            proto::REG_CTRL_MEAS => {
                self.regs[usize::from(reg)] = value;
                if value & 0b11 == proto::MODE_FORCED {
                    self.start_conversion(value);
                }
            }
            _ => self.regs[usize::from(reg)] = value,
        }
        Ok(())
    }

    fn sleep(&mut self, duration: Duration) {
        self.now += duration;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_wait_decodes_what_the_driver_encodes() {
        for ms in [1u16, 63, 64, 150, 1000, 4000] {
            let encoded = proto::gas_wait(ms);
            let decoded = decode_gas_wait(encoded).as_millis() as u32;
            let ms = u32::from(ms);
            assert!(
                decoded <= ms && decoded * 100 >= ms * 90,
                "{ms} -> {decoded}"
            );
        }
    }

    #[test]
    fn a_conversion_is_ready_only_after_its_time() {
        let mut chip = SimBme680Registers::new();
        chip.write(proto::REG_CTRL_HUM, 1).unwrap();
        chip.write(
            proto::REG_CTRL_MEAS,
            (1 << 5) | (1 << 2) | proto::MODE_FORCED,
        )
        .unwrap();
        let mut status = [0u8];
        chip.read(proto::REG_FIELD, &mut status).unwrap();
        assert_eq!(status[0] & 0x80, 0, "new_data before the conversion ran");
        chip.sleep(Duration::from_millis(20));
        chip.read(proto::REG_FIELD, &mut status).unwrap();
        assert_ne!(status[0] & 0x80, 0);
    }

    #[test]
    fn reset_makes_the_chip_deaf_for_a_moment() {
        let mut chip = SimBme680Registers::new();
        chip.write(proto::REG_SOFT_RESET, proto::SOFT_RESET_COMMAND)
            .unwrap();
        let mut id = [0u8];
        assert_eq!(chip.read(proto::REG_CHIP_ID, &mut id), Err(BusError::NoAck));
        chip.sleep(proto::SOFT_RESET_DELAY);
        chip.read(proto::REG_CHIP_ID, &mut id).unwrap();
        assert_eq!(id[0], CHIP_ID);
    }

    #[test]
    fn reads_past_the_register_file_are_errors() {
        let mut chip = SimBme680Registers::new();
        let mut buf = [0u8; 4];
        assert!(matches!(chip.read(0xFE, &mut buf), Err(BusError::Io(_))));
    }
}
