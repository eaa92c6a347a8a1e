//! Token buckets for actuators, so a plugin cannot buzz continuously or
//! flood the LED strip. Buckets belong to the plugin, not the instance:
//! crashing and being re-created does not refill them.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    /// `capacity` actions at once, refilled at one per `every`.
    pub fn new(capacity: u32, every: Duration) -> TokenBucket {
        TokenBucket {
            capacity: capacity.into(),
            tokens: capacity.into(),
            per_second: 1.0 / every.as_secs_f64().max(1e-6),
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Buzzer patterns a plugin may start: 3 at once, then one per 10 s.
pub fn buzzer_bucket() -> TokenBucket {
    TokenBucket::new(3, Duration::from_secs(10))
}

/// Strip updates a plugin may show: 10 at once, then 10 per second.
pub fn leds_bucket() -> TokenBucket {
    TokenBucket::new(10, Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refuses() {
        let mut b = TokenBucket::new(3, Duration::from_secs(3600));
        assert!(b.try_take() && b.try_take() && b.try_take());
        assert!(!b.try_take());
        let mut fast = TokenBucket::new(1, Duration::from_millis(1));
        assert!(fast.try_take());
        std::thread::sleep(Duration::from_millis(5));
        assert!(fast.try_take());
    }
}
