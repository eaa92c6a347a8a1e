//! Control requests from outside the device: the dashboard's Beep buttons
//! over HTTP and the Home Assistant button over MQTT take the same path,
//! through one rate limit shared by every external caller, so a second
//! protocol is not a second way around the limit.

use std::sync::Mutex;
use std::time::Duration;

use crate::hardware::{BuzzPattern, HardwareHandle, HwError};
use crate::ratelimit::{RateLimited, TokenBucket};

/// Presses any external caller may make at once; then one per
/// [`EXTERNAL_REFILL`].
pub const EXTERNAL_BURST: u32 = 3;
pub const EXTERNAL_REFILL: Duration = Duration::from_secs(2);

/// A named buzzer pattern an external caller may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// One short tone (150 ms).
    Beep,
    /// One long tone (1 s).
    Long,
}

impl Pattern {
    pub fn parse(name: &str) -> Option<Pattern> {
        match name.trim() {
            "beep" => Some(Pattern::Beep),
            "long" => Some(Pattern::Long),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Pattern::Beep => "beep",
            Pattern::Long => "long",
        }
    }

    fn buzz(self) -> BuzzPattern {
        let on = match self {
            Pattern::Beep => Duration::from_millis(150),
            Pattern::Long => Duration::from_millis(1000),
        };
        BuzzPattern {
            count: 1,
            on,
            off: Duration::ZERO,
        }
    }
}

/// Why a control request did not happen.
#[derive(Debug)]
pub enum ControlError {
    /// Too many presses: wait and try again.
    RateLimited(RateLimited),
    /// The hardware thread refused or did not answer.
    Hardware(HwError),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::RateLimited(refusal) => refusal.fmt(f),
            ControlError::Hardware(e) => write!(f, "buzzer: {e}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// The shared control path. One per host; HTTP and MQTT hold an `Arc`.
pub struct Control {
    hardware: HardwareHandle,
    bucket: Mutex<TokenBucket>,
}

impl Control {
    pub fn new(hardware: HardwareHandle) -> Control {
        Control {
            hardware,
            bucket: Mutex::new(TokenBucket::new(EXTERNAL_BURST, EXTERNAL_REFILL)),
        }
    }

    /// Plays `pattern` if the shared rate limit allows it. `via` names the
    /// caller for the log (`http`, `mqtt`).
    pub fn buzz(&self, pattern: Pattern, via: &str) -> Result<(), ControlError> {
        if !self
            .bucket
            .lock()
            .expect("control rate limit lock")
            .try_take()
        {
            log::warn!(target: "control", "buzzer `{}` from {via} refused: rate limit", pattern.name());
            // The bucket refused because it holds less than one press, so
            // one refill interval brings the next at the latest.
            return Err(ControlError::RateLimited(RateLimited::new(
                format!(
                    "buzzer rate limit: at most {EXTERNAL_BURST} presses at once, then one every {} s",
                    EXTERNAL_REFILL.as_secs()
                ),
                EXTERNAL_REFILL,
            )));
        }
        log::info!(target: "control", "buzzer `{}` from {via}", pattern.name());
        self.hardware
            .buzz(pattern.buzz())
            .map_err(ControlError::Hardware)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_by_name() {
        assert_eq!(Pattern::parse("beep"), Some(Pattern::Beep));
        assert_eq!(Pattern::parse("long\n"), Some(Pattern::Long));
        assert_eq!(Pattern::parse("siren"), None);
    }
}
