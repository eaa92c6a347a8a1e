//! The buzzer on a GPIO pin.
//!
//! An *active* buzzer has its own oscillator: the pin switches it on and
//! off. A *passive* one is a bare transducer that needs a square wave at
//! the tone's frequency; rppal's software PWM makes one on any pin (a
//! thread toggling the pin, accurate to some tens of µs, plenty for a
//! beep). Patterns are timed by the hardware thread; this only switches.
//!
//! On drop the buzzer is silenced and the pin handed back to rppal, which
//! restores its previous mode.
//!
//! # Troubleshooting
//!
//! - **Clicks instead of a tone**: a passive buzzer configured as
//!   `kind = "active"`; set `kind = "passive"`.
//! - **A passive buzzer sounds rough or quiet**: move `frequency_hz` to the
//!   part's resonant frequency (2–4 kHz for most).
//! - **Permission denied / pin in use**: see [`super::PiError`].

use std::fmt;

use rppal::gpio::{OutputPin, Pin};

use crate::hardware::HwError;

/// Which buzzer is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BuzzerKind {
    /// Sounds while its pin is high.
    Active,
    /// Needs a square wave at `frequency_hz`.
    Passive { frequency_hz: f64 },
}

impl fmt::Display for BuzzerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuzzerKind::Active => f.write_str("active"),
            BuzzerKind::Passive { frequency_hz } => write!(f, "passive, {frequency_hz} Hz"),
        }
    }
}

pub(super) struct Buzzer {
    pin: OutputPin,
    kind: BuzzerKind,
    on: bool,
}

impl Buzzer {
    pub(super) fn new(pin: Pin, kind: BuzzerKind) -> Buzzer {
        Buzzer {
            pin: pin.into_output_low(),
            kind,
            on: false,
        }
    }

    pub(super) fn set(&mut self, on: bool) -> Result<(), HwError> {
        match (self.kind, on) {
            (BuzzerKind::Active, true) => self.pin.set_high(),
            (BuzzerKind::Active, false) => self.pin.set_low(),
            (BuzzerKind::Passive { frequency_hz }, true) => self
                .pin
                .set_pwm_frequency(frequency_hz, 0.5)
                .map_err(|e| HwError::Sensor(format!("buzzer PWM failed to start: {e}")))?,
            (BuzzerKind::Passive { .. }, false) => {
                if self.on {
                    self.pin
                        .clear_pwm()
                        .map_err(|e| HwError::Sensor(format!("buzzer PWM failed to stop: {e}")))?;
                }
                self.pin.set_low();
            }
        }
        self.on = on;
        Ok(())
    }
}

impl Drop for Buzzer {
    fn drop(&mut self) {
        let _ = self.set(false);
    }
}
