//! BME680 register map, calibration parsing and Bosch's compensation.
//!
//! The BME680 reports raw ADC counts; turning them into °C, Pa, %RH and Ω
//! needs ~25 per-chip calibration words read once from three register blocks
//! (0x8A, 0xE1, 0x00). This module parses those blocks ([`Calibration`]),
//! compensates a 17-byte data field read from 0x1D ([`compensate`]), computes
//! the heater set-point and wait registers ([`heater_resistance`],
//! [`gas_wait`]) and the forced-mode conversion time
//! ([`measurement_duration`]). It does no I2C itself; the `pi` backend reads
//! the bytes and the `sim` backend fabricates them with [`encode_field`].
//!
//! # Reference and precision
//!
//! The arithmetic follows the *floating-point* path of Bosch's BME68x
//! SensorAPI v4.4.8 (`calc_temperature`, `calc_pressure`, `calc_humidity`,
//! `calc_gas_resistance_low`, `calc_gas_resistance_high`, `calc_res_heat`,
//! `calc_gas_wait`, `bme68x_get_meas_dur`) operation for operation in `f32`,
//! as the C code does, so the results are the reference's bit for bit
//! (checked against the C code compiled with gcc on 20 000 random
//! calibrations and ADC values, all gas ranges included; the BME688's gas
//! formula on every range). Results are therefore `f32`; the sensor's own
//! resolution (0.01 °C, ~0.2 Pa, ~0.01 %RH) is far coarser than `f32`
//! precision at these magnitudes. The integer path is not implemented.
//!
//! # Traps this code avoids
//!
//! - `par_p7` is at 0x98 and `par_p6` at 0x99, the reverse of what the
//!   numbering suggests.
//! - `par_h1` and `par_h2` are 12-bit values sharing register 0xE2: `par_h1`
//!   takes its low nibble, `par_h2` its high nibble.
//! - `range_sw_err` (bits 7..4 of 0x04) is a *signed* 4-bit value.
//! - The BME688 answers with the same chip id (0x61). Only the variant id
//!   register 0xF0 tells them apart ([`Variant`]), and the two differ in
//!   three places: the gas enable bit in `ctrl_gas_1` (bit 4 on a BME680,
//!   bit 5 on a BME688), where the gas ADC, range and flags sit in the field
//!   (0x2A/0x2B on a BME680, 0x2C/0x2D on a BME688) and the gas formula
//!   (the BME680's with `range_sw_err` and two per-range lookup tables;
//!   the BME688's "high" formula without either). A BME688 driven as a
//!   BME680 never reports a valid gas reading.
//!
//! # Troubleshooting
//!
//! - **Chip id mismatch** ([`Bme680Error::ChipId`]): something else answers
//!   at the address, often a BME280 (id 0x60) or BMP280 (0x58), which have no
//!   gas sensor. The BME680 is at 0x76 with SDO to GND, 0x77 with SDO to VCC.
//! - **No new data**: the conversion was read before it finished; wait at
//!   least [`measurement_duration`] plus the heater duration after triggering.
//! - **Gas not valid / heater not stable**: the heater did not reach its
//!   target within `gas_wait`; lengthen it (typically 150 ms for 320 °C) or
//!   lower the target.
//! - **I2C not found** (I/O layer): enable it with `dtparam=i2c_arm=on` in
//!   `/boot/firmware/config.txt` (`/boot/config.txt` before Bookworm) and add
//!   the service user to the `i2c` group.

use std::fmt;
use std::time::Duration;

/// I2C address with SDO tied to GND.
pub const I2C_ADDRESS_PRIMARY: u8 = 0x76;
/// I2C address with SDO tied to VCC (most breakout boards).
pub const I2C_ADDRESS_SECONDARY: u8 = 0x77;

/// Register holding the chip id.
pub const REG_CHIP_ID: u8 = 0xD0;
/// Value of [`REG_CHIP_ID`] on a BME680 (and BME688).
pub const CHIP_ID: u8 = 0x61;
/// Soft-reset register.
pub const REG_SOFT_RESET: u8 = 0xE0;
/// Value written to [`REG_SOFT_RESET`] to reset the chip; wait
/// [`SOFT_RESET_DELAY`] afterwards.
pub const SOFT_RESET_COMMAND: u8 = 0xB6;
/// Time the chip needs after a soft reset before it answers again.
pub const SOFT_RESET_DELAY: Duration = Duration::from_millis(10);
/// Variant id register (0x00 on a BME680, 0x01 on a BME688).
pub const REG_VARIANT_ID: u8 = 0xF0;
/// [`REG_VARIANT_ID`] of a BME680 (Bosch: `BME68X_VARIANT_GAS_LOW`).
pub const VARIANT_ID_BME680: u8 = 0x00;
/// [`REG_VARIANT_ID`] of a BME688 (Bosch: `BME68X_VARIANT_GAS_HIGH`).
pub const VARIANT_ID_BME688: u8 = 0x01;

/// Which chip of the family answers at chip id 0x61.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// BME680: variant id 0x00.
    #[default]
    Bme680,
    /// BME688: variant id 0x01. Same registers and compensation except gas
    /// (see the module doc).
    Bme688,
}

impl Variant {
    /// The chip from its [`REG_VARIANT_ID`] value; another value is
    /// [`Bme680Error::Variant`], not a guess.
    pub fn from_id(id: u8) -> Result<Variant, Bme680Error> {
        match id {
            VARIANT_ID_BME680 => Ok(Variant::Bme680),
            VARIANT_ID_BME688 => Ok(Variant::Bme688),
            got => Err(Bme680Error::Variant { got }),
        }
    }

    /// The [`REG_VARIANT_ID`] value this chip reports.
    pub fn id(self) -> u8 {
        match self {
            Variant::Bme680 => VARIANT_ID_BME680,
            Variant::Bme688 => VARIANT_ID_BME688,
        }
    }

    /// "BME680" or "BME688".
    pub fn name(self) -> &'static str {
        match self {
            Variant::Bme680 => "BME680",
            Variant::Bme688 => "BME688",
        }
    }

    /// The `run_gas` bit of [`REG_CTRL_GAS_1`] that enables the gas
    /// measurement (Bosch: `BME68X_ENABLE_GAS_MEAS_L`/`_H` << 4).
    pub fn run_gas(self) -> u8 {
        match self {
            Variant::Bme680 => RUN_GAS,
            Variant::Bme688 => RUN_GAS_BME688,
        }
    }

    /// Index in the 17-byte field of the gas ADC's high byte; the next
    /// byte holds its two low bits, `gas_valid`, `heat_stab` and the range.
    fn gas_field_index(self) -> usize {
        match self {
            Variant::Bme680 => 13, // 0x2A, 0x2B
            Variant::Bme688 => 15, // 0x2C, 0x2D
        }
    }
}

/// Gas control 0: bit 3 turns the heater off.
pub const REG_CTRL_GAS_0: u8 = 0x70;
/// Gas control 1: bits 3..0 select the heater profile (`nb_conv`), bit 4
/// enables the gas measurement on a BME680 ([`RUN_GAS`]).
pub const REG_CTRL_GAS_1: u8 = 0x71;
/// `run_gas` bit of [`REG_CTRL_GAS_1`] on a BME680 (the BME688 uses bit 5,
/// [`RUN_GAS_BME688`]; see [`Variant::run_gas`]).
pub const RUN_GAS: u8 = 0x10;
/// `run_gas` bit of [`REG_CTRL_GAS_1`] on a BME688.
pub const RUN_GAS_BME688: u8 = 0x20;
/// Humidity control: bits 2..0 are the humidity oversampling.
pub const REG_CTRL_HUM: u8 = 0x72;
/// Measurement control: bits 7..5 temperature oversampling, 4..2 pressure
/// oversampling, 1..0 mode. Write it *after* [`REG_CTRL_HUM`], which only
/// takes effect on a write to this register.
pub const REG_CTRL_MEAS: u8 = 0x74;
/// Configuration: bits 4..2 are the IIR filter coefficient.
pub const REG_CONFIG: u8 = 0x75;
/// Mode bits for [`REG_CTRL_MEAS`]: sleep.
pub const MODE_SLEEP: u8 = 0b00;
/// Mode bits for [`REG_CTRL_MEAS`]: one forced measurement, then sleep.
pub const MODE_FORCED: u8 = 0b01;
/// Heater current of profile 0 (profiles 1..9 follow).
pub const REG_IDAC_HEAT_0: u8 = 0x50;
/// Heater resistance set-point of profile 0, see [`heater_resistance`].
pub const REG_RES_HEAT_0: u8 = 0x5A;
/// Heater wait time of profile 0, see [`gas_wait`].
pub const REG_GAS_WAIT_0: u8 = 0x64;

/// First register of the data field (status, measurement index, ADCs).
pub const REG_FIELD: u8 = 0x1D;
/// Bytes read from [`REG_FIELD`] for one measurement (0x1D..=0x2D).
pub const FIELD_LEN: usize = 17;
/// First calibration block (temperature and pressure words).
pub const REG_COEFF1: u8 = 0x8A;
/// Bytes read from [`REG_COEFF1`].
pub const COEFF1_LEN: usize = 23;
/// Second calibration block (humidity, `par_t1` and heater words).
pub const REG_COEFF2: u8 = 0xE1;
/// Bytes read from [`REG_COEFF2`].
pub const COEFF2_LEN: usize = 14;
/// Third calibration block (heater resistance and range error).
pub const REG_COEFF3: u8 = 0x00;
/// Bytes read from [`REG_COEFF3`].
pub const COEFF3_LEN: usize = 5;

/// Status bit in field byte 0: a new measurement is ready.
const NEW_DATA_MASK: u8 = 0x80;
/// Field byte 14: the gas measurement is valid.
const GAS_VALID_MASK: u8 = 0x20;
/// Field byte 14: the heater reached its target temperature.
const HEAT_STAB_MASK: u8 = 0x10;
/// Field byte 14: gas range in bits 3..0.
const GAS_RANGE_MASK: u8 = 0x0F;
/// Field byte 0: index of the heater profile used, bits 3..0.
const GAS_INDEX_MASK: u8 = 0x0F;

/// Largest value of the 20-bit temperature and pressure ADCs.
const ADC_20BIT_MAX: u32 = (1 << 20) - 1;
/// Largest value of the 10-bit gas ADC.
const ADC_GAS_MAX: u16 = (1 << 10) - 1;

/// A register dump from a real BME680 (block 0x8A) for the simulator; see
/// [`Calibration::simulated`]. From Pimoroni bme680-python issue #11.
pub const SIM_COEFF1: [u8; COEFF1_LEN] = [
    101, 103, 3, 0, 65, 143, 237, 214, 88, 0, 142, 28, 127, 255, 46, 30, 0, 0, 151, 243, 181, 246,
    30,
];
/// Block 0xE1 of the simulator's chip, see [`SIM_COEFF1`].
pub const SIM_COEFF2: [u8; COEFF2_LEN] =
    [64, 84, 42, 0, 45, 20, 120, 156, 185, 101, 78, 159, 226, 18];
/// Block 0x00 of the simulator's chip, see [`SIM_COEFF1`].
pub const SIM_COEFF3: [u8; COEFF3_LEN] = [48, 0, 16, 0, 0];

/// Why BME680 data was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bme680Error {
    /// A register block had the wrong length: the read was cut short or the
    /// caller read the wrong range. Read exactly `expected` bytes starting at
    /// the block's register (see the `REG_*` and `*_LEN` constants).
    WrongLength {
        /// Which block: "coeff1 (0x8A)", "field (0x1D)", ...
        what: &'static str,
        /// Bytes the block has.
        expected: usize,
        /// Bytes supplied.
        got: usize,
    },
    /// The chip id register did not read 0x61: another device answers at
    /// this address (a BME280 reads 0x60, a BMP280 0x58) or the bus is
    /// floating. Check the part and the address (0x76 or 0x77, set by SDO).
    ChipId {
        /// Value read from [`REG_CHIP_ID`].
        got: u8,
    },
    /// The data field was read before the conversion finished. Wait at
    /// least [`measurement_duration`] plus the heater time after triggering a
    /// forced measurement, then read again.
    NoNewData,
    /// The gas conversion did not complete (`gas_valid` clear): gas
    /// measurement was not enabled ([`RUN_GAS`]) or the profile was not
    /// selected. The other values are still usable.
    GasNotValid,
    /// The heater did not reach its target temperature (`heat_stab` clear),
    /// so the gas resistance is not meaningful. Lengthen [`gas_wait`] or
    /// lower the target temperature.
    HeaterNotStable,
    /// The variant id register (0xF0) holds neither 0x00 (BME680) nor 0x01
    /// (BME688): a part of the family this driver does not know, whose gas
    /// readings it would misread. Check the part number on the board.
    Variant {
        /// Value read from [`REG_VARIANT_ID`].
        got: u8,
    },
}

impl fmt::Display for Bme680Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bme680Error::WrongLength {
                what,
                expected,
                got,
            } => write!(f, "BME680 {what}: expected {expected} bytes, got {got}"),
            Bme680Error::ChipId { got } => write!(
                f,
                "BME680 chip id is {got:#04x}, expected {CHIP_ID:#04x} (wrong device or address?)"
            ),
            Bme680Error::NoNewData => {
                f.write_str("BME680 has no new data yet (read before the conversion finished)")
            }
            Bme680Error::GasNotValid => f.write_str("BME680 gas measurement is not valid"),
            Bme680Error::HeaterNotStable => {
                f.write_str("BME680 gas heater did not reach its target temperature")
            }
            Bme680Error::Variant { got } => write!(
                f,
                "chip id 0x61 but variant id register {REG_VARIANT_ID:#04x} reads {got:#04x}: \
                 neither a BME680 ({VARIANT_ID_BME680:#04x}) nor a BME688 \
                 ({VARIANT_ID_BME688:#04x}); refusing to guess how to read its gas sensor"
            ),
        }
    }
}

impl std::error::Error for Bme680Error {}

/// Checks that a caller-supplied block has exactly `N` bytes.
fn exact<'a, const N: usize>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<&'a [u8; N], Bme680Error> {
    bytes.try_into().map_err(|_| Bme680Error::WrongLength {
        what,
        expected: N,
        got: bytes.len(),
    })
}

/// The chip's factory calibration words, named as in Bosch's API.
///
/// `par_t*` feed the temperature (and `t_fine`), `par_p*` the pressure,
/// `par_h*` the humidity and `par_gh*` with `res_heat_*` the heater
/// set-point; `range_sw_err` corrects the gas ADC. Each is read from the
/// register(s) noted, little-endian where two bytes are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calibration {
    /// 0xE9/0xEA.
    pub par_t1: u16,
    /// 0x8A/0x8B.
    pub par_t2: i16,
    /// 0x8C.
    pub par_t3: i8,
    /// 0x8E/0x8F.
    pub par_p1: u16,
    /// 0x90/0x91.
    pub par_p2: i16,
    /// 0x92.
    pub par_p3: i8,
    /// 0x94/0x95.
    pub par_p4: i16,
    /// 0x96/0x97.
    pub par_p5: i16,
    /// 0x99 (after `par_p7`).
    pub par_p6: i8,
    /// 0x98 (before `par_p6`).
    pub par_p7: i8,
    /// 0x9C/0x9D.
    pub par_p8: i16,
    /// 0x9E/0x9F.
    pub par_p9: i16,
    /// 0xA0.
    pub par_p10: u8,
    /// 12 bits: 0xE3 << 4 | low nibble of 0xE2.
    pub par_h1: u16,
    /// 12 bits: 0xE1 << 4 | high nibble of 0xE2.
    pub par_h2: u16,
    /// 0xE4.
    pub par_h3: i8,
    /// 0xE5.
    pub par_h4: i8,
    /// 0xE6.
    pub par_h5: i8,
    /// 0xE7.
    pub par_h6: u8,
    /// 0xE8.
    pub par_h7: i8,
    /// 0xED.
    pub par_gh1: i8,
    /// 0xEB/0xEC.
    pub par_gh2: i16,
    /// 0xEE.
    pub par_gh3: i8,
    /// Heater resistance range, bits 5..4 of 0x02 (0..=3).
    pub res_heat_range: u8,
    /// Heater resistance correction, 0x00.
    pub res_heat_val: i8,
    /// Gas range switching error, signed bits 7..4 of 0x04 (−8..=7).
    pub range_sw_err: i8,
}

impl Calibration {
    /// Parses the three calibration blocks exactly as the chip returns them:
    /// 23 bytes from 0x8A, 14 from 0xE1 and 5 from 0x00.
    pub fn from_registers(
        coeff1: &[u8],
        coeff2: &[u8],
        coeff3: &[u8],
    ) -> Result<Calibration, Bme680Error> {
        Ok(Calibration::from_arrays(
            exact("calibration block coeff1 (0x8A)", coeff1)?,
            exact("calibration block coeff2 (0xE1)", coeff2)?,
            exact("calibration block coeff3 (0x00)", coeff3)?,
        ))
    }

    /// [`Calibration::from_registers`] for blocks already known to have the
    /// right lengths.
    pub fn from_arrays(
        coeff1: &[u8; COEFF1_LEN],
        coeff2: &[u8; COEFF2_LEN],
        coeff3: &[u8; COEFF3_LEN],
    ) -> Calibration {
        // Indices are offsets from each block's first register; the
        // register address is in the comment.
        let (c1, c2) = (coeff1, coeff2);
        let u16_le = |lsb: u8, msb: u8| u16::from_le_bytes([lsb, msb]);
        let i16_le = |lsb: u8, msb: u8| i16::from_le_bytes([lsb, msb]);
        Calibration {
            par_t1: u16_le(c2[8], c2[9]),                              // 0xE9, 0xEA
            par_t2: i16_le(c1[0], c1[1]),                              // 0x8A, 0x8B
            par_t3: c1[2] as i8,                                       // 0x8C
            par_p1: u16_le(c1[4], c1[5]),                              // 0x8E, 0x8F
            par_p2: i16_le(c1[6], c1[7]),                              // 0x90, 0x91
            par_p3: c1[8] as i8,                                       // 0x92
            par_p4: i16_le(c1[10], c1[11]),                            // 0x94, 0x95
            par_p5: i16_le(c1[12], c1[13]),                            // 0x96, 0x97
            par_p7: c1[14] as i8,                                      // 0x98 (p7 comes before p6)
            par_p6: c1[15] as i8,                                      // 0x99
            par_p8: i16_le(c1[18], c1[19]),                            // 0x9C, 0x9D
            par_p9: i16_le(c1[20], c1[21]),                            // 0x9E, 0x9F
            par_p10: c1[22],                                           // 0xA0
            par_h1: (u16::from(c2[2]) << 4) | u16::from(c2[1] & 0x0F), // 0xE3, 0xE2 low
            par_h2: (u16::from(c2[0]) << 4) | u16::from(c2[1] >> 4),   // 0xE1, 0xE2 high
            par_h3: c2[3] as i8,                                       // 0xE4
            par_h4: c2[4] as i8,                                       // 0xE5
            par_h5: c2[5] as i8,                                       // 0xE6
            par_h6: c2[6],                                             // 0xE7
            par_h7: c2[7] as i8,                                       // 0xE8
            par_gh2: i16_le(c2[10], c2[11]),                           // 0xEB, 0xEC
            par_gh1: c2[12] as i8,                                     // 0xED
            par_gh3: c2[13] as i8,                                     // 0xEE
            res_heat_val: coeff3[0] as i8,                             // 0x00
            res_heat_range: (coeff3[2] & 0x30) >> 4,                   // 0x02
            // The arithmetic shift keeps the sign of the 4-bit field.
            range_sw_err: (coeff3[4] & 0xF0) as i8 >> 4, // 0x04
        }
    }

    /// The calibration of the simulated chip ([`SIM_COEFF1`] ..
    /// [`SIM_COEFF3`]), a dump from a real BME680.
    pub fn simulated() -> Calibration {
        Calibration::from_arrays(&SIM_COEFF1, &SIM_COEFF2, &SIM_COEFF3)
    }
}

/// The raw contents of the 17-byte data field, before compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawField {
    /// 20-bit temperature ADC value.
    pub adc_temp: u32,
    /// 20-bit pressure ADC value.
    pub adc_pres: u32,
    /// 16-bit humidity ADC value.
    pub adc_hum: u16,
    /// 10-bit gas resistance ADC value.
    pub adc_gas: u16,
    /// Gas range (0..=15), the ADC's power-of-two scale.
    pub gas_range: u8,
    /// The chip's measurement counter (byte 1).
    pub measurement_index: u8,
    /// Heater profile used for the gas conversion (0..=9).
    pub gas_index: u8,
    /// A new measurement is in the field.
    pub new_data: bool,
    /// The gas conversion completed.
    pub gas_valid: bool,
    /// The heater reached its target temperature.
    pub heat_stable: bool,
}

impl RawField {
    /// Splits the 17 bytes read from [`REG_FIELD`] into ADC values and flags;
    /// the gas bytes are where `variant` puts them.
    pub fn parse(field: &[u8], variant: Variant) -> Result<RawField, Bme680Error> {
        let b = exact::<FIELD_LEN>("data field (0x1D)", field)?;
        let adc_20bit = |msb: u8, lsb: u8, xlsb: u8| {
            (u32::from(msb) << 12) | (u32::from(lsb) << 4) | u32::from(xlsb >> 4)
        };
        let g = variant.gas_field_index();
        Ok(RawField {
            adc_pres: adc_20bit(b[2], b[3], b[4]),
            adc_temp: adc_20bit(b[5], b[6], b[7]),
            adc_hum: u16::from_be_bytes([b[8], b[9]]),
            adc_gas: (u16::from(b[g]) << 2) | u16::from(b[g + 1] >> 6),
            gas_range: b[g + 1] & GAS_RANGE_MASK,
            measurement_index: b[1],
            gas_index: b[0] & GAS_INDEX_MASK,
            new_data: b[0] & NEW_DATA_MASK != 0,
            gas_valid: b[g + 1] & GAS_VALID_MASK != 0,
            heat_stable: b[g + 1] & HEAT_STAB_MASK != 0,
        })
    }

    /// The 17 field bytes a `variant` chip would return for these values;
    /// the inverse of [`RawField::parse`]. ADC values wider than their
    /// fields are truncated to the field width; the other variant's gas
    /// bytes stay 0.
    pub fn to_bytes(&self, variant: Variant) -> [u8; FIELD_LEN] {
        let mut b = [0u8; FIELD_LEN];
        let flag = |set: bool, mask: u8| if set { mask } else { 0 };
        b[0] = flag(self.new_data, NEW_DATA_MASK) | (self.gas_index & GAS_INDEX_MASK);
        b[1] = self.measurement_index;
        let [_, pres_msb, pres_lsb, pres_xlsb] = (self.adc_pres << 4).to_be_bytes();
        b[2..5].copy_from_slice(&[pres_msb, pres_lsb, pres_xlsb]);
        let [_, temp_msb, temp_lsb, temp_xlsb] = (self.adc_temp << 4).to_be_bytes();
        b[5..8].copy_from_slice(&[temp_msb, temp_lsb, temp_xlsb]);
        b[8..10].copy_from_slice(&self.adc_hum.to_be_bytes());
        let [gas_msb, gas_lsb] = (self.adc_gas << 6).to_be_bytes();
        let g = variant.gas_field_index();
        b[g] = gas_msb;
        b[g + 1] = gas_lsb
            | flag(self.gas_valid, GAS_VALID_MASK)
            | flag(self.heat_stable, HEAT_STAB_MASK)
            | (self.gas_range & GAS_RANGE_MASK);
        b
    }
}

/// One compensated BME680 measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bme680Measurement {
    /// Temperature of the die in °C (reads a little above ambient while
    /// the gas heater runs).
    pub temperature_c: f32,
    /// Barometric pressure in Pa (1 hPa = 100 Pa).
    pub pressure_pa: f32,
    /// Relative humidity in %RH, clamped to 0..=100.
    pub humidity_pct: f32,
    /// Resistance of the gas sensor in Ω; meaningful only when `gas_valid`
    /// and `heat_stable` are both set.
    pub gas_resistance_ohm: f32,
    /// The field held a new measurement.
    pub new_data: bool,
    /// The gas conversion completed.
    pub gas_valid: bool,
    /// The heater reached its target temperature.
    pub heat_stable: bool,
}

impl Bme680Measurement {
    /// Turns the status flags into an error, for callers that need a
    /// complete measurement including gas: [`Bme680Error::NoNewData`],
    /// then [`Bme680Error::GasNotValid`], then
    /// [`Bme680Error::HeaterNotStable`].
    pub fn require_complete(&self) -> Result<(), Bme680Error> {
        if !self.new_data {
            Err(Bme680Error::NoNewData)
        } else if !self.gas_valid {
            Err(Bme680Error::GasNotValid)
        } else if !self.heat_stable {
            Err(Bme680Error::HeaterNotStable)
        } else {
            Ok(())
        }
    }
}

/// Compensates the 17 bytes read from [`REG_FIELD`] with the chip's
/// calibration, for the chip `variant` (which decides where the gas bytes
/// are and which gas formula applies).
///
/// The flags are reported, not enforced: a measurement without new data or
/// with an invalid gas reading is still returned (see
/// [`Bme680Measurement::require_complete`]).
pub fn compensate(
    cal: &Calibration,
    variant: Variant,
    field: &[u8],
) -> Result<Bme680Measurement, Bme680Error> {
    Ok(compensate_raw(
        cal,
        variant,
        &RawField::parse(field, variant)?,
    ))
}

/// [`compensate`] for an already parsed field.
pub fn compensate_raw(cal: &Calibration, variant: Variant, raw: &RawField) -> Bme680Measurement {
    let t_fine = calc_t_fine(cal, raw.adc_temp);
    Bme680Measurement {
        temperature_c: t_fine / 5120.0,
        pressure_pa: calc_pressure(cal, t_fine, raw.adc_pres),
        humidity_pct: calc_humidity(cal, t_fine, raw.adc_hum),
        gas_resistance_ohm: gas_resistance(cal, variant, raw.adc_gas, raw.gas_range),
        new_data: raw.new_data,
        gas_valid: raw.gas_valid,
        heat_stable: raw.heat_stable,
    }
}

/// Bosch's `t_fine` (°C × 5120), which pressure and humidity depend on.
fn calc_t_fine(cal: &Calibration, adc_temp: u32) -> f32 {
    let adc = adc_temp as f32;
    let t1 = f32::from(cal.par_t1);
    let var1 = ((adc / 16384.0) - (t1 / 1024.0)) * f32::from(cal.par_t2);
    let delta = (adc / 131072.0) - (t1 / 8192.0);
    let var2 = (delta * delta) * (f32::from(cal.par_t3) * 16.0);
    var1 + var2
}

/// Bosch's `calc_pressure` (float path), in Pa.
fn calc_pressure(cal: &Calibration, t_fine: f32, adc_pres: u32) -> f32 {
    let mut var1 = (t_fine / 2.0) - 64000.0;
    let mut var2 = var1 * var1 * (f32::from(cal.par_p6) / 131072.0);
    var2 += var1 * f32::from(cal.par_p5) * 2.0;
    var2 = (var2 / 4.0) + (f32::from(cal.par_p4) * 65536.0);
    var1 = (((f32::from(cal.par_p3) * var1 * var1) / 16384.0) + (f32::from(cal.par_p2) * var1))
        / 524288.0;
    var1 = (1.0 + (var1 / 32768.0)) * f32::from(cal.par_p1);
    // The reference returns 0 rather than dividing by (nearly) zero; the
    // truncating cast mirrors its `(int)var1 != 0` test.
    if var1 as i32 == 0 {
        return 0.0;
    }
    let mut pres = 1048576.0 - adc_pres as f32;
    pres = ((pres - (var2 / 4096.0)) * 6250.0) / var1;
    let var1 = (f32::from(cal.par_p9) * pres * pres) / 2147483648.0;
    let var2 = pres * (f32::from(cal.par_p8) / 32768.0);
    let scaled = pres / 256.0;
    let var3 = scaled * scaled * scaled * (f32::from(cal.par_p10) / 131072.0);
    pres + (var1 + var2 + var3 + (f32::from(cal.par_p7) * 128.0)) / 16.0
}

/// Bosch's `calc_humidity` (float path), in %RH clamped to 0..=100.
fn calc_humidity(cal: &Calibration, t_fine: f32, adc_hum: u16) -> f32 {
    let temp_comp = t_fine / 5120.0;
    let var1 = f32::from(adc_hum)
        - ((f32::from(cal.par_h1) * 16.0) + ((f32::from(cal.par_h3) / 2.0) * temp_comp));
    let var2 = var1
        * ((f32::from(cal.par_h2) / 262144.0)
            * (1.0
                + ((f32::from(cal.par_h4) / 16384.0) * temp_comp)
                + ((f32::from(cal.par_h5) / 1048576.0) * temp_comp * temp_comp)));
    let var3 = f32::from(cal.par_h6) / 16384.0;
    let var4 = f32::from(cal.par_h7) / 2097152.0;
    let hum = var2 + ((var3 + (var4 * temp_comp)) * var2 * var2);
    hum.clamp(0.0, 100.0)
}

/// Per-range correction factors of the BME680 gas ADC, in percent
/// (Bosch's `lookup_k1_range`).
const GAS_RANGE_K1: [f32; 16] = [
    0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, -0.8, 0.0, 0.0, -0.2, -0.5, 0.0, -1.0, 0.0, 0.0,
];
/// Per-range correction factors of the BME680 gas ADC, in percent
/// (Bosch's `lookup_k2_range`).
const GAS_RANGE_K2: [f32; 16] = [
    0.0, 0.0, 0.0, 0.0, 0.1, 0.7, 0.0, -0.8, -0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
];

/// The range-dependent terms of the BME680 gas formula: `var2` and `var3`
/// of Bosch's `calc_gas_resistance_low` and the range's scale `2^range`.
fn gas_range_terms(cal: &Calibration, gas_range: u8) -> (f32, f32, f32) {
    let range = usize::from(gas_range & GAS_RANGE_MASK);
    let var1 = 1340.0 + (5.0 * f32::from(cal.range_sw_err));
    let var2 = var1 * (1.0 + GAS_RANGE_K1[range] / 100.0);
    let var3 = 1.0 + (GAS_RANGE_K2[range] / 100.0);
    (var2, var3, (1u32 << range) as f32)
}

/// Bosch's `calc_gas_resistance_low` (the BME680 formula, float path), in Ω.
fn calc_gas_resistance(cal: &Calibration, adc_gas: u16, gas_range: u8) -> f32 {
    let (var2, var3, scale) = gas_range_terms(cal, gas_range);
    1.0 / (var3 * 0.000000125 * scale * (((f32::from(adc_gas) - 512.0) / var2) + 1.0))
}

/// Bosch's `calc_gas_resistance_high` (the BME688 formula, float path), in
/// Ω: no calibration, no lookup tables.
fn calc_gas_resistance_high(adc_gas: u16, gas_range: u8) -> f32 {
    let var1: u32 = 262144 >> (gas_range & GAS_RANGE_MASK);
    let var2: i32 = 4096 + (i32::from(adc_gas) - 512) * 3;
    1000000.0f32 * var1 as f32 / var2 as f32
}

/// The gas resistance in Ω by the formula of the chip `variant`.
fn gas_resistance(cal: &Calibration, variant: Variant, adc_gas: u16, gas_range: u8) -> f32 {
    match variant {
        Variant::Bme680 => calc_gas_resistance(cal, adc_gas, gas_range),
        Variant::Bme688 => calc_gas_resistance_high(adc_gas, gas_range),
    }
}

/// The `res_heat_x` register value that heats the plate to `target_c` (°C,
/// capped at 400 as in the reference) at an ambient of `ambient_c` (°C).
///
/// Bosch's `calc_res_heat` float path. Results outside 0..=255, which no
/// real calibration produces for targets up to 400 °C, saturate.
pub fn heater_resistance(cal: &Calibration, target_c: u16, ambient_c: i8) -> u8 {
    let target = f32::from(target_c.min(400));
    let var1 = (f32::from(cal.par_gh1) / 16.0) + 49.0;
    let var2 = ((f32::from(cal.par_gh2) / 32768.0) * 0.0005) + 0.00235;
    let var3 = f32::from(cal.par_gh3) / 1024.0;
    let var4 = var1 * (1.0 + (var2 * target));
    let var5 = var4 + (var3 * f32::from(ambient_c));
    let res_heat = 3.4
        * ((var5
            * (4.0 / (4.0 + f32::from(cal.res_heat_range)))
            * (1.0 / (1.0 + (f32::from(cal.res_heat_val) * 0.002))))
            - 25.0);
    // Truncates like the reference's cast; `as` also saturates.
    res_heat as u8
}

/// The `gas_wait_x` register value for a heater duration in ms.
///
/// The register holds a 6-bit count and a 2-bit multiplier (×1, ×4, ×16,
/// ×64); durations that need more precision are rounded down, and anything
/// from 4032 ms up is the maximum, 0xFF (4032 ms). Bosch's `calc_gas_wait`.
pub fn gas_wait(duration_ms: u16) -> u8 {
    if duration_ms >= 0xFC0 {
        return 0xFF;
    }
    let mut count = duration_ms;
    let mut factor = 0u16;
    while count > 0x3F {
        count /= 4;
        factor += 1;
    }
    // count <= 63 and factor <= 3 here, so this fits in a byte.
    (count + factor * 64) as u8
}

/// Oversampling setting of one BME680 channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Oversampling {
    /// Channel not measured (its ADC reads 0x80000).
    Skip,
    /// One sample.
    #[default]
    X1,
    /// Two samples.
    X2,
    /// Four samples.
    X4,
    /// Eight samples.
    X8,
    /// Sixteen samples.
    X16,
}

impl Oversampling {
    /// The 3-bit `osrs_*` register code.
    pub fn register_bits(self) -> u8 {
        match self {
            Oversampling::Skip => 0,
            Oversampling::X1 => 1,
            Oversampling::X2 => 2,
            Oversampling::X4 => 3,
            Oversampling::X8 => 4,
            Oversampling::X16 => 5,
        }
    }

    /// ADC conversions this setting takes.
    fn cycles(self) -> u32 {
        match self {
            Oversampling::Skip => 0,
            Oversampling::X1 => 1,
            Oversampling::X2 => 2,
            Oversampling::X4 => 4,
            Oversampling::X8 => 8,
            Oversampling::X16 => 16,
        }
    }
}

/// How long a forced-mode temperature/pressure/humidity conversion takes,
/// including the 1 ms wake-up; Bosch's `bme68x_get_meas_dur` for forced mode.
///
/// With gas enabled, wait this *plus* the heater duration written with
/// [`gas_wait`] before reading the field, as Bosch's examples do.
pub fn measurement_duration(
    os_temperature: Oversampling,
    os_pressure: Oversampling,
    os_humidity: Oversampling,
) -> Duration {
    /// One ADC conversion, µs.
    const CYCLE_US: u32 = 1963;
    /// Switching between the temperature, pressure and humidity channels.
    const SWITCHING_US: u32 = 477 * 4;
    /// Gas measurement overhead.
    const GAS_US: u32 = 477 * 5;
    /// Waking from sleep in forced mode.
    const WAKE_UP_US: u32 = 1000;
    let cycles = os_temperature.cycles() + os_pressure.cycles() + os_humidity.cycles();
    Duration::from_micros(u64::from(
        cycles * CYCLE_US + SWITCHING_US + GAS_US + WAKE_UP_US,
    ))
}

/// Produces the 17 field bytes that [`compensate`] turns back into
/// (approximately) the given values; for the simulator.
///
/// Each ADC value is found by bisection over its range against the forward
/// formulas (temperature first, since pressure and humidity depend on it),
/// then the nearer of the two neighbouring codes is taken. The round trip is
/// therefore limited only by ADC resolution: with a real chip's calibration
/// it is within ~0.001 °C, ~0.2 Pa, ~0.005 %RH and ~0.05 % of the gas
/// resistance. Values beyond what the ADCs can express saturate (humidity
/// is 0..=100 %RH anyway; gas about 180 Ω..13 MΩ on a BME680, 1.4 kΩ..100 MΩ
/// on a BME688). `new_data` is set; the
/// measurement and gas indices are 0. The gas bytes are the `variant`'s.
#[allow(clippy::too_many_arguments)]
pub fn encode_field(
    cal: &Calibration,
    variant: Variant,
    temperature_c: f32,
    pressure_pa: f32,
    humidity_pct: f32,
    gas_resistance_ohm: f32,
    gas_valid: bool,
    heat_stable: bool,
) -> [u8; FIELD_LEN] {
    let adc_temp = closest_code(ADC_20BIT_MAX, temperature_c * 5120.0, |adc| {
        calc_t_fine(cal, adc)
    });
    let t_fine = calc_t_fine(cal, adc_temp);
    let adc_pres = closest_code(ADC_20BIT_MAX, pressure_pa, |adc| {
        calc_pressure(cal, t_fine, adc)
    });
    let adc_hum = closest_code(u32::from(u16::MAX), humidity_pct, |adc| {
        calc_humidity(cal, t_fine, adc as u16)
    }) as u16;
    let (adc_gas, gas_range) = encode_gas(cal, variant, gas_resistance_ohm);
    RawField {
        adc_temp,
        adc_pres,
        adc_hum,
        adc_gas,
        gas_range,
        measurement_index: 0,
        gas_index: 0,
        new_data: true,
        gas_valid,
        heat_stable,
    }
    .to_bytes(variant)
}

/// The code in `0..=max` whose `forward` value is closest to `target`,
/// assuming `forward` is monotonic (in either direction) over the range.
fn closest_code(max: u32, target: f32, forward: impl Fn(u32) -> f32) -> u32 {
    let increasing = forward(max) >= forward(0);
    // Invariant: forward(lo) is on the low side of target, forward(hi) on
    // the high side (or lo/hi are the range ends).
    let (mut lo, mut hi) = (0u32, max);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if (forward(mid) < target) == increasing {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let error = |code: u32| (forward(code) - target).abs();
    if error(hi) < error(lo) {
        hi
    } else {
        lo
    }
}

/// The gas ADC value and range that best express `resistance_ohm`.
///
/// Every range covers a factor of ~2.25 around `2^-range` / 125 ns, so
/// neighbouring ranges overlap; the code with the smallest relative error
/// wins, which is the one nearest mid-scale and thus finest-grained.
fn encode_gas(cal: &Calibration, variant: Variant, resistance_ohm: f32) -> (u16, u8) {
    let mut best = (512, 0, f32::INFINITY);
    for range in 0..16u8 {
        // The forward formula solved for the ADC value.
        let ideal = match variant {
            Variant::Bme680 => {
                let (var2, var3, scale) = gas_range_terms(cal, range);
                ((1.0 / (resistance_ohm * var3 * 0.000000125 * scale)) - 1.0) * var2 + 512.0
            }
            Variant::Bme688 => {
                let var1 = (262144u32 >> range) as f32;
                ((1000000.0 * var1 / resistance_ohm) - 4096.0) / 3.0 + 512.0
            }
        };
        // Saturating casts keep NaN and infinities in range.
        let rounded = ideal.round().clamp(0.0, f32::from(ADC_GAS_MAX)) as u16;
        for adc in [
            rounded.saturating_sub(1),
            rounded,
            (rounded + 1).min(ADC_GAS_MAX),
        ] {
            let error = ((gas_resistance(cal, variant, adc, range) - resistance_ohm)
                / resistance_ohm)
                .abs();
            if error < best.2 {
                best = (adc, range, error);
            }
        }
    }
    (best.0, best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARIANTS: [Variant; 2] = [Variant::Bme680, Variant::Bme688];

    fn field_of(
        cal: &Calibration,
        variant: Variant,
        t: f32,
        p: f32,
        h: f32,
        g: f32,
    ) -> Bme680Measurement {
        compensate(
            cal,
            variant,
            &encode_field(cal, variant, t, p, h, g, true, true),
        )
        .unwrap()
    }

    #[test]
    fn wrong_block_lengths_are_errors() {
        let err = Calibration::from_registers(&SIM_COEFF1[..22], &SIM_COEFF2, &SIM_COEFF3);
        assert!(matches!(
            err,
            Err(Bme680Error::WrongLength {
                expected: 23,
                got: 22,
                ..
            })
        ));
        assert!(Calibration::from_registers(&SIM_COEFF1, &[0; 15], &SIM_COEFF3).is_err());
        assert!(Calibration::from_registers(&SIM_COEFF1, &SIM_COEFF2, &[]).is_err());
        let cal = Calibration::simulated();
        for len in [0, 16, 18] {
            assert_eq!(
                compensate(&cal, Variant::Bme680, &vec![0; len]),
                Err(Bme680Error::WrongLength {
                    what: "data field (0x1D)",
                    expected: FIELD_LEN,
                    got: len
                })
            );
        }
    }

    #[test]
    fn p6_p7_and_h1_h2_come_from_the_right_bits() {
        let mut c1 = [0u8; COEFF1_LEN];
        c1[14] = 7; // 0x98
        c1[15] = 6; // 0x99
        let mut c2 = [0u8; COEFF2_LEN];
        c2[0] = 0xAB; // 0xE1
        c2[1] = 0xCD; // 0xE2
        c2[2] = 0xEF; // 0xE3
        let cal = Calibration::from_arrays(&c1, &c2, &[0; COEFF3_LEN]);
        assert_eq!((cal.par_p6, cal.par_p7), (6, 7));
        assert_eq!(cal.par_h1, 0xEFD);
        assert_eq!(cal.par_h2, 0xABC);
    }

    #[test]
    fn range_sw_err_is_signed_four_bits() {
        let cal = |byte| Calibration::from_arrays(&SIM_COEFF1, &SIM_COEFF2, &[0, 0, 0, 0, byte]);
        assert_eq!(cal(0xF3).range_sw_err, -1);
        assert_eq!(cal(0x80).range_sw_err, -8);
        assert_eq!(cal(0x7F).range_sw_err, 7);
        assert_eq!(cal(0x0B).range_sw_err, 0);
    }

    #[test]
    fn raw_field_round_trips_through_bytes() {
        let raw = RawField {
            adc_temp: 0xABCDE,
            adc_pres: 0x12345,
            adc_hum: 0xBEEF,
            adc_gas: 0x2A5,
            gas_range: 11,
            measurement_index: 42,
            gas_index: 3,
            new_data: true,
            gas_valid: false,
            heat_stable: true,
        };
        for variant in VARIANTS {
            assert_eq!(
                RawField::parse(&raw.to_bytes(variant), variant),
                Ok(raw),
                "{variant:?}"
            );
        }
    }

    #[test]
    fn the_variants_keep_gas_in_their_own_bytes() {
        let raw = RawField {
            adc_temp: 0x80000,
            adc_pres: 0x80000,
            adc_hum: 0x8000,
            adc_gas: 0x3FF,
            gas_range: 0x0F,
            measurement_index: 0,
            gas_index: 0,
            new_data: true,
            gas_valid: true,
            heat_stable: true,
        };
        let bme680 = raw.to_bytes(Variant::Bme680);
        let bme688 = raw.to_bytes(Variant::Bme688);
        assert_eq!(
            (bme680[13], bme680[14], bme680[15], bme680[16]),
            (0xFF, 0xFF, 0, 0)
        );
        assert_eq!(
            (bme688[13], bme688[14], bme688[15], bme688[16]),
            (0, 0, 0xFF, 0xFF)
        );
        // A BME688's field read as a BME680's has no valid gas: the bug a
        // driver that never reads the variant id has.
        let misread = RawField::parse(&bme688, Variant::Bme680).unwrap();
        assert!(!misread.gas_valid && !misread.heat_stable && misread.adc_gas == 0);
    }

    #[test]
    fn variant_ids_are_recognised_or_refused_by_name() {
        assert_eq!(Variant::from_id(0x00), Ok(Variant::Bme680));
        assert_eq!(Variant::from_id(0x01), Ok(Variant::Bme688));
        assert_eq!(Variant::from_id(0x02), Err(Bme680Error::Variant { got: 2 }));
        for variant in VARIANTS {
            assert_eq!(Variant::from_id(variant.id()), Ok(variant));
        }
        assert_eq!(
            (Variant::Bme680.run_gas(), Variant::Bme688.run_gas()),
            (0x10, 0x20)
        );
        let message = Bme680Error::Variant { got: 0x42 }.to_string();
        assert!(
            message.contains("0x42") && message.contains("BME688"),
            "{message}"
        );
    }

    #[test]
    fn encode_field_round_trips_within_adc_resolution() {
        let cal = Calibration::simulated();
        for variant in VARIANTS {
            for &t in &[-39.5f32, -10.0, 0.0, 21.3, 25.0, 60.0, 84.9] {
                for &p in &[30_000.0f32, 80_000.0, 101_325.0, 110_000.0] {
                    for &h in &[0.0f32, 12.5, 45.0, 99.0] {
                        for &g in &[500.0f32, 12_345.0, 50_000.0, 250_000.0, 2_000_000.0] {
                            if variant == Variant::Bme688 && g < 1_500.0 {
                                continue; // below the BME688's range (~1.4 kΩ..100 MΩ)
                            }
                            let m = field_of(&cal, variant, t, p, h, g);
                            assert!((m.temperature_c - t).abs() < 0.005, "{t} -> {m:?}");
                            assert!((m.pressure_pa - p).abs() < 1.0, "{p} -> {m:?}");
                            assert!((m.humidity_pct - h).abs() < 0.01, "{h} -> {m:?}");
                            let gas_error = (m.gas_resistance_ohm - g).abs() / g;
                            assert!(gas_error < 0.001, "{variant:?} {g} -> {m:?}");
                            assert!(m.new_data && m.gas_valid && m.heat_stable);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn encode_field_saturates_out_of_reach_values() {
        let cal = Calibration::simulated();
        for variant in VARIANTS {
            let m = field_of(&cal, variant, 25.0, 101_325.0, 150.0, 1.0);
            assert_eq!(m.humidity_pct, 100.0);
            assert!(m.gas_resistance_ohm > 0.0 && m.gas_resistance_ohm < 2_000.0);
            let m = field_of(&cal, variant, f32::NAN, f32::NAN, f32::NAN, f32::NAN);
            assert!(m.temperature_c.is_finite() && m.pressure_pa.is_finite());
        }
    }

    #[test]
    fn flags_are_encoded_and_enforced_in_order() {
        let cal = Calibration::simulated();
        let bytes = encode_field(
            &cal,
            Variant::Bme680,
            25.0,
            101_325.0,
            45.0,
            50_000.0,
            false,
            true,
        );
        let m = compensate(&cal, Variant::Bme680, &bytes).unwrap();
        assert_eq!(
            (m.new_data, m.gas_valid, m.heat_stable),
            (true, false, true)
        );
        assert_eq!(m.require_complete(), Err(Bme680Error::GasNotValid));
        let heater_cold = Bme680Measurement {
            gas_valid: true,
            heat_stable: false,
            ..m
        };
        assert_eq!(
            heater_cold.require_complete(),
            Err(Bme680Error::HeaterNotStable)
        );
        let stale = Bme680Measurement {
            new_data: false,
            ..heater_cold
        };
        assert_eq!(stale.require_complete(), Err(Bme680Error::NoNewData));
    }

    #[test]
    fn every_field_compensates_without_panicking() {
        let cal = Calibration::simulated();
        for byte in [0x00, 0x7F, 0x80, 0xFF] {
            for variant in VARIANTS {
                let m = compensate(&cal, variant, &[byte; FIELD_LEN]).unwrap();
                assert!((0.0..=100.0).contains(&m.humidity_pct));
                assert!(!m.gas_resistance_ohm.is_nan());
            }
        }
        let zero = Calibration::from_arrays(&[0; COEFF1_LEN], &[0; COEFF2_LEN], &[0; COEFF3_LEN]);
        assert_eq!(
            compensate(&zero, Variant::Bme680, &[0x55; FIELD_LEN])
                .unwrap()
                .pressure_pa,
            0.0
        );
    }

    #[test]
    fn gas_resistance_matches_bosch_on_every_range() {
        // (range, adc, f32 bits) from Bosch's calc_gas_resistance_low (v4.4.8,
        // float path) compiled with gcc, with range_sw_err = -3 (0x04 = 0xD0).
        const BOSCH: [(u8, u16, u32); 16] = [
            (0, 37, 0x4B3E493D),
            (1, 98, 0x4AB18B6D),
            (2, 159, 0x4A266706),
            (3, 220, 0x499C937E),
            (4, 281, 0x4913B2AE),
            (5, 342, 0x488B4560),
            (6, 403, 0x48050331),
            (7, 464, 0x477F700F),
            (8, 525, 0x46F202B4),
            (9, 586, 0x46673A10),
            (10, 647, 0x45DD8661),
            (11, 708, 0x45548ADB),
            (12, 769, 0x44CC7AB7),
            (13, 830, 0x444480E1),
            (14, 891, 0x43BDD6E3),
            (15, 952, 0x43374743),
        ];
        let cal = Calibration::from_arrays(&SIM_COEFF1, &SIM_COEFF2, &[0, 0, 0, 0, 0xD0]);
        assert_eq!(cal.range_sw_err, -3);
        for (range, adc, bits) in BOSCH {
            let ohm = calc_gas_resistance(&cal, adc, range);
            assert_eq!(
                ohm.to_bits(),
                bits,
                "range {range}: {ohm} Ω vs {}",
                f32::from_bits(bits)
            );
        }
    }

    #[test]
    fn bme688_gas_resistance_matches_bosch_on_every_range() {
        // (range, adc, f32 bits) from Bosch's calc_gas_resistance_high
        // (v4.4.8, float path) compiled with gcc. No calibration enters the
        // BME688's formula: a calibration that changes the BME680's result
        // (range_sw_err = -3) must not change these.
        const BOSCH: [(u8, u16, u32); 16] = [
            (0, 37, 0x4CBB3220),
            (1, 98, 0x4C2F3156),
            (2, 159, 0x4BA4A2DB),
            (3, 220, 0x4B1B478E),
            (4, 281, 0x4A92EDDF),
            (5, 342, 0x4A0B6E5E),
            (6, 403, 0x4984A943),
            (7, 464, 0x48FD0954),
            (8, 525, 0x4871D685),
            (9, 586, 0x47E796B5),
            (10, 647, 0x475E2C40),
            (11, 708, 0x46D57E24),
            (12, 769, 0x464D7723),
            (13, 830, 0x45C60512),
            (14, 891, 0x453F1850),
            (15, 952, 0x44B8A35B),
        ];
        let cal = Calibration::from_arrays(&SIM_COEFF1, &SIM_COEFF2, &[0, 0, 0, 0, 0xD0]);
        for (range, adc, bits) in BOSCH {
            let ohm = gas_resistance(&cal, Variant::Bme688, adc, range);
            assert_eq!(
                ohm.to_bits(),
                bits,
                "range {range}: {ohm} Ω vs {}",
                f32::from_bits(bits)
            );
            assert_ne!(
                ohm,
                gas_resistance(&cal, Variant::Bme680, adc, range),
                "range {range}: the two formulas differ"
            );
        }
    }

    #[test]
    fn heater_target_is_capped_at_400_c() {
        let cal = Calibration::simulated();
        assert_eq!(
            heater_resistance(&cal, 400, 25),
            heater_resistance(&cal, 1000, 25)
        );
        assert!(heater_resistance(&cal, 200, 25) < heater_resistance(&cal, 320, 25));
    }

    #[test]
    fn gas_wait_uses_the_four_multipliers() {
        assert_eq!(gas_wait(63), 63);
        assert_eq!(gas_wait(64), 0x40 | 16);
        assert_eq!(gas_wait(1000), 0x80 | 62);
        assert_eq!(gas_wait(4031), 0xC0 | 62);
        assert_eq!(gas_wait(u16::MAX), 0xFF);
    }

    #[test]
    fn measurement_duration_matches_bosch() {
        use Oversampling::*;
        // (2 + 1 + 16) cycles * 1963 + 1908 + 2385 + 1000 µs.
        assert_eq!(
            measurement_duration(X2, X1, X16),
            Duration::from_micros(42_590)
        );
        assert_eq!(
            measurement_duration(Skip, Skip, Skip),
            Duration::from_micros(5_293)
        );
        assert_eq!(X16.register_bits(), 5);
    }

    #[test]
    fn errors_display_what_was_attempted() {
        let message = Bme680Error::ChipId { got: 0x60 }.to_string();
        assert!(
            message.contains("0x60") && message.contains("0x61"),
            "{message}"
        );
    }
}
