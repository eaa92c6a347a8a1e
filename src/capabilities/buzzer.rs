//! `buzzer-controller`: patterns are played by the hardware thread; these
//! calls only queue them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Refuser;
use crate::contract::buzzer_controller::Host;
use crate::hardware::{BuzzPattern, HardwareHandle};
use crate::ratelimit::TokenBucket;

/// Most beeps one call may ask for.
pub const MAX_BEEPS: u8 = 10;

/// Buzzer patterns a plugin may start: 3 at once, then one per 10 s.
pub fn bucket() -> TokenBucket {
    TokenBucket::new(3, Duration::from_secs(10))
}

pub struct Buzzer {
    hardware: HardwareHandle,
    refuse: Refuser,
    bucket: Arc<Mutex<TokenBucket>>,
}

impl Buzzer {
    pub fn new(
        hardware: HardwareHandle,
        refuse: Refuser,
        bucket: Arc<Mutex<TokenBucket>>,
    ) -> Buzzer {
        Buzzer {
            hardware,
            refuse,
            bucket,
        }
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
        if !self
            .bucket
            .lock()
            .expect("buzzer rate limit lock")
            .try_take()
        {
            return Err(self.refuse.refuse(
                "buzzer rate limit: at most 3 patterns at once, then one every 10 s".to_string(),
            ));
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
