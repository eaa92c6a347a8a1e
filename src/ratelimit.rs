//! Rate limits, in one place: the [`TokenBucket`] every limit counts with
//! (a plugin's buzzer, LED strip and telemetry, the external buzzer
//! buttons, MQTT discovery), and how a refusal by one is worded wherever it
//! is hit (the buzzer buttons over HTTP and MQTT, wrong control tokens):
//! which limit, then when to try again. One wording, so every refusal reads
//! alike and an HTTP `429` carries the same wait in `Retry-After` as in its
//! message.

use std::time::{Duration, Instant};

/// `capacity` actions at once, then one per refill interval. A bucket that
/// belongs to a plugin (not an instance) is not refilled by a crash.
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

/// A request refused by a rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// The limit, in words: what it counts and what it allows
    /// (`buzzer rate limit: at most 3 presses at once, then one every 2 s`).
    pub limit: String,
    /// How long until a retry can succeed, at most.
    pub retry_after: Duration,
}

impl RateLimited {
    pub fn new(limit: impl Into<String>, retry_after: Duration) -> RateLimited {
        RateLimited {
            limit: limit.into(),
            retry_after,
        }
    }

    /// The wait in whole seconds, rounded up and at least 1: the unit of
    /// HTTP's `Retry-After`, and a client retrying sooner is refused again.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: try again in {} s",
            self.limit,
            self.retry_after_secs()
        )
    }
}

impl std::error::Error for RateLimited {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_whole_seconds_rounded_up_and_at_least_one() {
        for (wait_ms, secs) in [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (5500, 6)] {
            let r = RateLimited::new("x", Duration::from_millis(wait_ms));
            assert_eq!(r.retry_after_secs(), secs, "{wait_ms} ms");
        }
        let r = RateLimited::new(
            "buzzer rate limit: at most 3 presses at once, then one every 2 s",
            Duration::from_millis(1500),
        );
        assert_eq!(
            r.to_string(),
            "buzzer rate limit: at most 3 presses at once, then one every 2 s: try again in 2 s"
        );
    }

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
