//! When a failing plugin is called again: exponential backoff after each
//! failure, and quarantine after too many failures in a window.
//!
//! Plain data: the caller passes the time of each failure and asks whether
//! the plugin is callable at a given time, so the rules are tested without
//! a plugin or a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// First retry delay after a failure; doubles per consecutive failure.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// This many failures inside [`QUARANTINE_WINDOW`] quarantine a plugin.
pub const QUARANTINE_FAILURES: usize = 5;
pub const QUARANTINE_WINDOW: Duration = Duration::from_secs(120);

/// One plugin version's record of failures.
#[derive(Debug, Default)]
pub struct Backoff {
    /// When the plugin may be called again after a failure.
    retry_at: Option<Instant>,
    consecutive: u32,
    /// Failures inside the quarantine window, oldest first.
    recent: VecDeque<Instant>,
    quarantined: bool,
}

/// What a failure leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Called again after this long.
    Retry(Duration),
    /// Not called again until reloaded or re-enabled; `failures` is how
    /// many fell inside the window.
    Quarantined { failures: usize },
}

impl Backoff {
    /// Whether the plugin may be called at `now`.
    pub fn callable(&self, now: Instant) -> bool {
        !self.quarantined && self.retry_at.is_none_or(|t| now >= t)
    }

    /// Whether the last call failed.
    pub fn failing(&self) -> bool {
        self.consecutive > 0
    }

    /// Whether this version was quarantined.
    pub fn quarantined(&self) -> bool {
        self.quarantined
    }

    /// Records a failure at `now`.
    pub fn failed(&mut self, now: Instant) -> AfterFailure {
        self.consecutive += 1;
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) > QUARANTINE_WINDOW)
        {
            self.recent.pop_front();
        }
        let delay = delay(self.consecutive);
        self.retry_at = Some(now + delay);
        self.quarantined = self.recent.len() >= QUARANTINE_FAILURES;
        if self.quarantined {
            AfterFailure::Quarantined {
                failures: self.recent.len(),
            }
        } else {
            AfterFailure::Retry(delay)
        }
    }

    /// Records a good call. Returns whether it ends a run of failures (the
    /// plugin recovered). Failures still count towards quarantine until
    /// they leave the window.
    pub fn succeeded(&mut self) -> bool {
        std::mem::take(&mut self.consecutive) > 0
    }
}

/// The retry delay after the `consecutive`-th failure in a row (from 1).
pub fn delay(consecutive: u32) -> Duration {
    BACKOFF_START
        .saturating_mul(1 << consecutive.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_retry_delay_doubles_from_one_second_up_to_a_minute() {
        let cases = [
            (1, 1),
            (2, 2),
            (3, 4),
            (4, 8),
            (6, 32),
            (7, 60),
            (8, 60),
            (40, 60),
            (u32::MAX, 60),
        ];
        for (consecutive, want) in cases {
            assert_eq!(delay(consecutive), secs(want), "failure {consecutive}");
        }
    }

    #[test]
    fn a_failed_plugin_is_not_called_until_its_retry_time() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.callable(t0), "a new plugin is callable");
        assert_eq!(b.failed(t0), AfterFailure::Retry(secs(1)));
        assert!(b.failing());
        assert!(!b.callable(t0 + Duration::from_millis(999)));
        assert!(b.callable(t0 + secs(1)));
        assert_eq!(b.failed(t0 + secs(1)), AfterFailure::Retry(secs(2)));
        assert!(!b.callable(t0 + secs(2)));
        assert!(b.callable(t0 + secs(3)));
    }

    #[test]
    fn a_good_call_resets_the_delay_but_not_the_quarantine_count() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(!b.succeeded(), "nothing to recover from");
        for i in 0..4 {
            b.failed(t0 + secs(10 * i));
            assert!(b.succeeded(), "a good call after a failure is a recovery");
            assert!(!b.failing());
        }
        // The fifth failure in two minutes quarantines, however many good
        // calls came between; and its delay starts again from one second.
        assert_eq!(
            b.failed(t0 + secs(40)),
            AfterFailure::Quarantined { failures: 5 }
        );
        assert!(b.quarantined());
        assert!(!b.callable(t0 + secs(3600)), "quarantine has no end");
    }

    #[test]
    fn five_failures_in_two_minutes_quarantine_but_older_ones_drop_out() {
        let t0 = Instant::now();
        // Failures at these seconds; the verdict on the last one.
        let cases: &[(&[u64], AfterFailure)] = &[
            (&[0, 1, 3, 7], AfterFailure::Retry(secs(8))),
            (&[0, 1, 3, 7, 15], AfterFailure::Quarantined { failures: 5 }),
            // Exactly the window apart still counts ...
            (
                &[0, 30, 60, 90, 120],
                AfterFailure::Quarantined { failures: 5 },
            ),
            // ... one more second and the first has dropped out.
            (&[0, 30, 60, 90, 121], AfterFailure::Retry(secs(16))),
            (
                &[0, 200, 230, 260, 290, 320],
                AfterFailure::Quarantined { failures: 5 },
            ),
        ];
        for (at, want) in cases {
            let mut b = Backoff::default();
            let mut last = None;
            for &s in *at {
                last = Some(b.failed(t0 + secs(s)));
            }
            assert_eq!(last, Some(*want), "failures at {at:?}");
            assert_eq!(
                b.quarantined(),
                matches!(want, AfterFailure::Quarantined { .. })
            );
        }
    }

    proptest! {
        /// Over any run of failures and good calls: a plugin is quarantined
        /// exactly when the failures of the last two minutes (counting the
        /// one just now) reach five, and otherwise waits the doubling delay
        /// of its run of failures.
        #[test]
        fn quarantine_and_delay_follow_the_failures_in_the_window(
            steps in proptest::collection::vec((0u64..90_000, any::<bool>()), 1..40)
        ) {
            let t0 = Instant::now();
            let mut b = Backoff::default();
            let (mut now, mut failures, mut run) = (t0, Vec::new(), 0u32);
            for (gap_ms, fails) in steps {
                now += Duration::from_millis(gap_ms);
                if !fails {
                    prop_assert_eq!(b.succeeded(), run > 0);
                    run = 0;
                    continue;
                }
                failures.push(now);
                run += 1;
                let in_window = failures
                    .iter()
                    .filter(|&&t| now.duration_since(t) <= QUARANTINE_WINDOW)
                    .count();
                let want = if in_window >= QUARANTINE_FAILURES {
                    AfterFailure::Quarantined { failures: in_window }
                } else {
                    AfterFailure::Retry(delay(run))
                };
                prop_assert_eq!(b.failed(now), want);
                prop_assert!(!b.callable(now));
            }
        }
    }
}
