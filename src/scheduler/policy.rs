//! The scheduler's rules as plain data: when a plugin is called, when a
//! version on trial is kept or rolled back, when the dashboard renders and
//! how long the loop may sleep.
//!
//! Nothing here reads a clock, calls a plugin or takes a lock: the loop in
//! `mod.rs` passes the time in and acts on the answers.

use std::time::{Duration, Instant};

/// Calls a new version must survive before the old one is let go.
pub const TRIAL_CALLS: u32 = 3;

/// The dashboard is re-rendered at least this often, so plugin health on
/// the page stays current even when readings do not change.
pub const RENDER_REFRESH: Duration = Duration::from_secs(5);

/// Longest the loop sleeps, so the heartbeat stays fresh.
pub const MAX_SLEEP: Duration = Duration::from_millis(500);

/// A plugin's place in the fixed-rate schedule: an absolute due time that
/// advances by whole intervals, so call durations do not make it drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    next_due: Instant,
}

/// Why a plugin is called in this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Its time came; `due` is when, to measure how late it starts.
    Scheduled { due: Instant },
    /// Not due, but a plugin it follows changed its readings this round.
    Triggered,
}

impl Schedule {
    /// Due at `now`: a plugin is first called as soon as it is installed.
    pub fn due_at(now: Instant) -> Schedule {
        Schedule { next_due: now }
    }

    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// Whether the plugin is called in the round at `now` (`triggered`: a
    /// plugin it follows changed its readings in this round). A scheduled
    /// turn moves the due time past `now` by whole intervals, skipping the
    /// ticks it missed rather than replaying them; a triggered turn leaves
    /// the schedule as it is. The turn is taken (and the tick spent) whether
    /// or not the plugin is then callable.
    pub fn turn(&mut self, now: Instant, interval: Duration, triggered: bool) -> Option<Turn> {
        let due = self.next_due;
        if now < due {
            return triggered.then_some(Turn::Triggered);
        }
        self.next_due = next_due(due, interval, now);
        Some(Turn::Scheduled { due })
    }
}

/// `due` advanced by whole `interval`s until it is after `now` (`due`
/// itself when it already is).
pub fn next_due(due: Instant, interval: Duration, now: Instant) -> Instant {
    if due > now {
        return due;
    }
    // Config keeps intervals well above zero; a zero one must not hang us.
    let step = interval.as_nanos().max(1);
    let ticks = now.duration_since(due).as_nanos() / step + 1;
    due + Duration::from_nanos(u64::try_from(ticks * step).unwrap_or(u64::MAX))
}

/// When the loop wakes up: for the earliest due plugin, and at least
/// [`MAX_SLEEP`] after the round started (`round_started`) and from `now`.
pub fn wake_at(earliest_due: Option<Instant>, round_started: Instant, now: Instant) -> Instant {
    earliest_due
        .unwrap_or(round_started + MAX_SLEEP)
        .min(now + MAX_SLEEP)
}

/// A new version on trial: the one it replaced is kept until this one has
/// made [`TRIAL_CALLS`] good calls, and comes back if this one fails first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trial {
    good_calls_left: u32,
}

/// What happens to the two versions after a call of the one on trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep both: the trial goes on.
    Continue,
    /// The new version passed: the old one is let go.
    Passed,
    /// The new version failed: the old one comes back.
    RollBack,
    /// The new version failed, but the old one had been quarantined, and a
    /// rollback never brings such a version back: the old one is let go,
    /// the new one keeps its slot (with its own backoff).
    KeepDespiteFailure,
}

impl Trial {
    /// The trial a new version starts when it replaces one: only when the
    /// loader asked for one (a reload, not a config change) and the old
    /// version serves the same entry point, so it could take over again.
    pub fn begin(requested: bool, same_kind: bool) -> Option<Trial> {
        (requested && same_kind).then_some(Trial {
            good_calls_left: TRIAL_CALLS,
        })
    }

    /// Settles a call of the new version: `failed` is its outcome,
    /// `old_quarantined` whether the version it replaced was quarantined.
    pub fn after_call(&mut self, failed: bool, old_quarantined: bool) -> Verdict {
        if failed {
            return if old_quarantined {
                Verdict::KeepDespiteFailure
            } else {
                Verdict::RollBack
            };
        }
        self.good_calls_left = self.good_calls_left.saturating_sub(1);
        if self.good_calls_left == 0 {
            Verdict::Passed
        } else {
            Verdict::Continue
        }
    }
}

/// When the dashboard renders: after a round that changed the readings
/// (their generation moved), and at least every [`RENDER_REFRESH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Render {
    generation: u64,
    at: Option<Instant>,
}

impl Default for Render {
    fn default() -> Render {
        Render {
            generation: u64::MAX,
            at: None,
        }
    }
}

impl Render {
    /// Whether the page is out of date at `now` with the readings at
    /// `generation`.
    pub fn due(&self, generation: u64, now: Instant) -> bool {
        generation != self.generation
            || self
                .at
                .is_none_or(|t| now.duration_since(t) >= RENDER_REFRESH)
    }

    /// The page was rendered at `now` from the readings at `generation`.
    pub fn rendered(&mut self, generation: u64, now: Instant) {
        self.generation = generation;
        self.at = Some(now);
    }

    /// A new dashboard version renders at once.
    pub fn invalidate(&mut self) {
        self.at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn the_next_due_time_skips_missed_ticks_without_drifting() {
        let t0 = Instant::now();
        // (due, now) in ms from t0, interval 1000 ms: the next due time.
        let cases = [
            (0, 0, 1000),      // on time
            (0, 30, 1000),     // a little late: no drift
            (0, 999, 1000),    //
            (0, 1000, 2000),   // exactly one tick late: that tick is spent
            (0, 3500, 4000),   // three ticks missed: skipped, not replayed
            (2000, 500, 2000), // not due yet: unchanged
        ];
        for (due, now, want) in cases {
            assert_eq!(
                next_due(t0 + ms(due), ms(1000), t0 + ms(now)),
                t0 + ms(want),
                "due {due}, now {now}"
            );
        }
        // A zero interval (never configured) still moves past now.
        assert_eq!(
            next_due(t0, Duration::ZERO, t0 + ms(5)),
            t0 + ms(5) + Duration::from_nanos(1)
        );
    }

    #[test]
    fn a_plugin_is_called_when_due_or_when_a_plugin_it_follows_changed() {
        let t0 = Instant::now();
        let interval = ms(1000);
        let mut s = Schedule::due_at(t0);
        assert_eq!(
            s.turn(t0, interval, false),
            Some(Turn::Scheduled { due: t0 })
        );
        assert_eq!(s.next_due(), t0 + interval);
        // Between ticks: only a trigger calls it, and the schedule stays.
        assert_eq!(s.turn(t0 + ms(400), interval, false), None);
        assert_eq!(s.turn(t0 + ms(400), interval, true), Some(Turn::Triggered));
        assert_eq!(s.next_due(), t0 + interval);
        // Due and triggered at once is a scheduled turn (its delay counts).
        assert_eq!(
            s.turn(t0 + ms(1200), interval, true),
            Some(Turn::Scheduled { due: t0 + interval })
        );
        assert_eq!(s.next_due(), t0 + ms(2000));
    }

    #[test]
    fn the_loop_sleeps_until_the_earliest_due_plugin_but_never_past_half_a_second() {
        let t0 = Instant::now();
        let now = t0 + ms(30);
        let cases = [
            (Some(t0 + ms(100)), t0 + ms(100)),
            (Some(t0 + ms(2000)), now + MAX_SLEEP),
            // Already due: wake at once.
            (Some(t0), t0),
            // Nothing scheduled: half a second after the round began.
            (None, t0 + MAX_SLEEP),
        ];
        for (earliest, want) in cases {
            assert_eq!(wake_at(earliest, t0, now), want, "{earliest:?}");
        }
    }

    #[test]
    fn a_trial_starts_only_on_request_and_against_a_version_of_the_same_kind() {
        assert!(Trial::begin(true, true).is_some());
        assert_eq!(Trial::begin(true, false), None, "another entry point");
        assert_eq!(Trial::begin(false, true), None, "a config change");
        assert_eq!(Trial::begin(false, false), None);
    }

    #[test]
    fn a_new_version_passes_its_trial_after_three_good_calls() {
        let mut t = Trial::begin(true, true).unwrap();
        assert_eq!(t.after_call(false, false), Verdict::Continue);
        assert_eq!(t.after_call(false, false), Verdict::Continue);
        assert_eq!(t.after_call(false, false), Verdict::Passed);
    }

    #[test]
    fn a_failure_during_the_trial_rolls_back_unless_the_old_version_was_quarantined() {
        // (good calls before the failure, old version quarantined, verdict)
        let cases = [
            (0, false, Verdict::RollBack),
            (2, false, Verdict::RollBack),
            (0, true, Verdict::KeepDespiteFailure),
            (2, true, Verdict::KeepDespiteFailure),
        ];
        for (good, quarantined, want) in cases {
            let mut t = Trial::begin(true, true).unwrap();
            for _ in 0..good {
                assert_eq!(t.after_call(false, quarantined), Verdict::Continue);
            }
            assert_eq!(
                t.after_call(true, quarantined),
                want,
                "after {good} good calls"
            );
        }
    }

    #[test]
    fn the_dashboard_renders_when_readings_change_and_at_least_every_five_seconds() {
        let t0 = Instant::now();
        let mut r = Render::default();
        assert!(r.due(0, t0), "a new dashboard renders at once");
        r.rendered(7, t0);
        assert!(!r.due(7, t0 + ms(4999)), "same readings, page fresh");
        assert!(r.due(8, t0 + ms(1)), "the readings changed");
        assert!(r.due(7, t0 + RENDER_REFRESH), "refresh for plugin health");
        r.invalidate();
        assert!(
            r.due(7, t0 + ms(1)),
            "a new dashboard version renders at once"
        );
    }

    proptest! {
        /// The closed form is the loop it replaced: add the interval until
        /// the due time is after now.
        #[test]
        fn next_due_is_whole_intervals_after_the_last_due_time(
            interval_ms in 1u64..5_000, late_us in 0u64..50_000_000, ahead in any::<bool>()
        ) {
            let t0 = Instant::now();
            let interval = ms(interval_ms);
            let (due, now) = if ahead {
                (t0 + Duration::from_micros(late_us), t0)
            } else {
                (t0, t0 + Duration::from_micros(late_us))
            };
            let mut want = due;
            while want <= now {
                want += interval;
            }
            prop_assert_eq!(next_due(due, interval, now), want);
        }
    }
}
