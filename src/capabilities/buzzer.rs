//! `buzzer-controller`: patterns are played by the hardware thread; these
//! calls only queue them.

use std::time::Duration;

use crate::contract::buzzer_controller::Host;
use crate::hardware::{BuzzPattern, HardwareHandle};

/// Most beeps one call may ask for.
pub const MAX_BEEPS: u8 = 10;

pub struct Buzzer {
    hardware: HardwareHandle,
}

impl Buzzer {
    pub fn new(hardware: HardwareHandle) -> Buzzer {
        Buzzer { hardware }
    }
}

impl Host for Buzzer {
    fn buzz(&mut self, duration_ms: u32) -> Result<(), String> {
        self.beep(1, duration_ms, 0)
    }

    fn beep(&mut self, count: u8, duration_ms: u32, interval_ms: u32) -> Result<(), String> {
        if count == 0 || count > MAX_BEEPS {
            return Err(format!("beep count must be 1–{MAX_BEEPS}, not {count}"));
        }
        self.hardware
            .buzz(BuzzPattern {
                count,
                on: Duration::from_millis(duration_ms.into()),
                off: Duration::from_millis(interval_ms.min(5000).into()),
            })
            .map_err(|e| format!("buzzer: {e}"))
    }
}
