//! The simulator's control surface: what `POST /api/sim`, demos and tests
//! use to pin values on a simulated sensor and to inject faults. Only the
//! `sim` backend has one; a backend reaches it through
//! [`Backend::as_sim`](crate::hardware::Backend::as_sim), which real
//! hardware leaves at its default (none), so the `pi` backend knows
//! nothing of it.

use std::fmt;

use crate::hardware::HwError;

/// What only simulated hardware can do.
pub trait SimControl {
    /// Pins (or with `None`, releases) values of a simulated sensor.
    fn set_override(
        &mut self,
        device: SimDevice,
        values: Option<SimOverride>,
    ) -> Result<(), HwError>;
    /// Injects (or with `None`, clears) a simulated fault.
    fn set_fault(&mut self, device: SimDevice, fault: Option<SimFault>) -> Result<(), HwError>;
}

/// Values a test or a demo pins on a simulated sensor; `None` fields follow
/// the simulation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SimOverride {
    pub temperature_c: Option<f32>,
    pub humidity_pct: Option<f32>,
    pub pressure_hpa: Option<f32>,
    pub gas_resistance_ohm: Option<f32>,
}

/// Which simulated device an override or fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimDevice {
    Dht22 { pin: u8 },
    Bme680 { addr: u8 },
    Cpu,
}

impl fmt::Display for SimDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimDevice::Dht22 { pin } => write!(f, "the DHT22 on GPIO {pin}"),
            SimDevice::Bme680 { addr } => write!(f, "the BME680 at {addr:#04x}"),
            SimDevice::Cpu => f.write_str("the CPU temperature sensor"),
        }
    }
}

/// A fault the simulator injects until it is cleared. Each one is made at
/// protocol level (in the DHT22's waveform, in the BME680's registers), so
/// the caller sees the error the real code path reports for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimFault {
    /// DHT22: one bit of the checksum byte flips.
    Checksum,
    /// DHT22: one data bit's edges are lost, 39 pulses arrive.
    MissingEdge,
    /// DHT22: the sensor does not answer the start signal.
    NoResponse,
    /// BME680: every I2C transfer fails with an I/O error.
    I2cError,
    /// BME680: a BME280 (chip id 0x60) answers at the address.
    WrongChipId,
    /// Any device: unplugged. Clearing the fault plugs it back in (a
    /// BME680 comes back reset, as a real one does).
    Absent,
}

impl SimFault {
    pub const ALL: [SimFault; 6] = [
        SimFault::Checksum,
        SimFault::MissingEdge,
        SimFault::NoResponse,
        SimFault::I2cError,
        SimFault::WrongChipId,
        SimFault::Absent,
    ];

    /// The name used in `POST /api/sim` and in messages.
    pub fn name(self) -> &'static str {
        match self {
            SimFault::Checksum => "checksum",
            SimFault::MissingEdge => "missing_edge",
            SimFault::NoResponse => "no_response",
            SimFault::I2cError => "i2c_error",
            SimFault::WrongChipId => "wrong_chip_id",
            SimFault::Absent => "absent",
        }
    }

    /// Whether `device` can show this fault.
    pub fn applies_to(self, device: SimDevice) -> bool {
        match (self, device) {
            (SimFault::Absent, _) => true,
            (SimFault::Checksum | SimFault::MissingEdge | SimFault::NoResponse, d) => {
                matches!(d, SimDevice::Dht22 { .. })
            }
            (SimFault::I2cError | SimFault::WrongChipId, d) => {
                matches!(d, SimDevice::Bme680 { .. })
            }
        }
    }
}

impl fmt::Display for SimFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SimFault {
    type Err = String;
    fn from_str(s: &str) -> Result<SimFault, String> {
        SimFault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown fault `{s}`: expected one of {}",
                    SimFault::ALL.map(SimFault::name).join(", ")
                )
            })
    }
}
