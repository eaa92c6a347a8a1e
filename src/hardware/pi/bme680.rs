//! BME680 over I2C: rppal's `/dev/i2c-1` behind [`Bme680Bus`].
//!
//! All of the driver sequence is in [`crate::hardware::bme680`] and runs
//! unchanged in the simulator; this file only moves bytes and names errors.
//!
//! # Troubleshooting
//!
//! - **I2C bus not found / permission denied**: see [`super::PiError`].
//! - **No BME680 answered**: `i2cdetect -y 1` (package `i2c-tools`) lists
//!   what answers; the BME680 shows as 76 or 77.

use rppal::i2c::I2c;

use super::PiError;
use crate::hardware::bme680::{Bme680Bus, BusError};

/// One I2C device address on the bus on header pins 3 and 5.
pub struct PiI2c {
    i2c: I2c,
}

impl PiI2c {
    /// Opens the bus (I2C1, or I2C3 where rppal finds it on pins 3/5) and
    /// addresses `addr`. Nothing is sent yet.
    pub fn open(addr: u8) -> Result<PiI2c, PiError> {
        let mut i2c = I2c::new().map_err(open_error)?;
        i2c.set_slave_address(u16::from(addr))
            .map_err(|e| PiError::Io {
                doing: format!("addressing I2C device {addr:#04x}"),
                detail: e.to_string(),
            })?;
        Ok(PiI2c { i2c })
    }
}

fn open_error(error: rppal::i2c::Error) -> PiError {
    use rppal::i2c::Error;
    match error {
        Error::UnknownModel => PiError::NotAPi,
        Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound => PiError::I2cDisabled,
        Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            PiError::I2cPermission(e.to_string())
        }
        other => PiError::Io {
            doing: "opening the I2C bus".into(),
            detail: other.to_string(),
        },
    }
}

/// NACKs come back as `EREMOTEIO` from the Pi's I2C controllers (and as
/// `ENXIO` from some others): the device did not answer.
fn transfer_error(error: rppal::i2c::Error) -> BusError {
    match &error {
        rppal::i2c::Error::Io(e)
            if matches!(e.raw_os_error(), Some(libc::EREMOTEIO | libc::ENXIO)) =>
        {
            BusError::NoAck
        }
        _ => BusError::Io(error.to_string()),
    }
}

impl Bme680Bus for PiI2c {
    fn read(&mut self, reg: u8, buf: &mut [u8]) -> Result<(), BusError> {
        // Register address, repeated start, read: one combined transfer.
        self.i2c.write_read(&[reg], buf).map_err(transfer_error)
    }

    fn write(&mut self, reg: u8, value: u8) -> Result<(), BusError> {
        match self.i2c.write(&[reg, value]).map_err(transfer_error)? {
            2 => Ok(()),
            n => Err(BusError::Io(format!(
                "short write: {n} of 2 bytes to register {reg:#04x}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nacks_are_told_apart_from_other_errors() {
        let io = |code| rppal::i2c::Error::Io(std::io::Error::from_raw_os_error(code));
        assert_eq!(transfer_error(io(libc::EREMOTEIO)), BusError::NoAck);
        assert_eq!(transfer_error(io(libc::ENXIO)), BusError::NoAck);
        assert!(matches!(
            transfer_error(io(libc::ETIMEDOUT)),
            BusError::Io(_)
        ));
    }

    #[test]
    fn open_errors_name_the_fix() {
        let io = |kind| rppal::i2c::Error::Io(std::io::Error::from(kind));
        assert_eq!(
            open_error(io(std::io::ErrorKind::NotFound)),
            PiError::I2cDisabled
        );
        assert!(matches!(
            open_error(io(std::io::ErrorKind::PermissionDenied)),
            PiError::I2cPermission(_)
        ));
        assert_eq!(open_error(rppal::i2c::Error::UnknownModel), PiError::NotAPi);
    }
}
