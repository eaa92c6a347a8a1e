//! When the loader acts on file changes: a burst of events is collected
//! until it has been quiet for [`DEBOUNCE`], and a changed config file is
//! read until it has stayed the same for [`CONFIG_SETTLE`]; neither waits
//! longer than [`DEBOUNCE_MAX`].
//!
//! Plain data: the loader passes the time of each step in and does the
//! waiting (on its event channel, or asleep), so the rules are tested
//! without files or a clock.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Quiet time after the last file event before acting on a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(40);
/// Longest a steady stream of events (or a config file that keeps
/// changing) can postpone acting.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(3);
/// How long the config file must stay unchanged before a change applies.
pub const CONFIG_SETTLE: Duration = Duration::from_millis(1000);

/// The paths changed in one burst of file events.
#[derive(Debug)]
pub struct Burst {
    started: Instant,
    paths: HashSet<PathBuf>,
}

impl Burst {
    /// A burst begun by a change of `path` at `now`.
    pub fn start(path: PathBuf, now: Instant) -> Burst {
        Burst {
            started: now,
            paths: HashSet::from([path]),
        }
    }

    pub fn add(&mut self, path: PathBuf) {
        self.paths.insert(path);
    }

    /// How long to wait at `now` for another event before acting on the
    /// burst (a wait that ends without one ends the burst); `None`: act
    /// now, the burst has gone on for [`DEBOUNCE_MAX`].
    pub fn quiet_wait(&self, now: Instant) -> Option<Duration> {
        (now.duration_since(self.started) < DEBOUNCE_MAX).then_some(DEBOUNCE)
    }

    pub fn into_paths(self) -> HashSet<PathBuf> {
        self.paths
    }
}

/// A changed config file being read until it stops changing: the loader
/// reads it, then again every [`CONFIG_SETTLE`].
#[derive(Debug)]
pub struct Settling {
    started: Instant,
    text: String,
}

impl Settling {
    /// The file's text as first read, at `now`.
    pub fn new(text: String, now: Instant) -> Settling {
        Settling { started: now, text }
    }

    /// The file read again [`CONFIG_SETTLE`] after the last read: its text
    /// to apply once it is the same as the last read (or once it has kept
    /// changing for [`DEBOUNCE_MAX`]: then the latest), else `None`: read
    /// again after another [`CONFIG_SETTLE`].
    pub fn read_again(&mut self, text: String, now: Instant) -> Option<String> {
        if text == self.text || now.duration_since(self.started) >= DEBOUNCE_MAX {
            return Some(text);
        }
        self.text = text;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_burst_waits_for_quiet_and_collects_each_path_once() {
        let t0 = Instant::now();
        let mut b = Burst::start("plugins/p/app.py".into(), t0);
        assert_eq!(b.quiet_wait(t0), Some(DEBOUNCE));
        // An editor's save: write a temp file, rename it over app.py.
        b.add("plugins/p/.app.py.swp".into());
        b.add("plugins/p/app.py".into());
        assert_eq!(b.quiet_wait(t0 + ms(30)), Some(DEBOUNCE));
        let paths = b.into_paths();
        assert_eq!(paths.len(), 2);
        assert!(paths.contains(&PathBuf::from("plugins/p/app.py")));
    }

    #[test]
    fn a_steady_stream_of_events_is_acted_on_after_three_seconds() {
        let t0 = Instant::now();
        let b = Burst::start("plugins/p/app.py".into(), t0);
        assert_eq!(b.quiet_wait(t0 + DEBOUNCE_MAX - ms(1)), Some(DEBOUNCE));
        assert_eq!(b.quiet_wait(t0 + DEBOUNCE_MAX), None);
    }

    #[test]
    fn a_config_change_applies_once_the_file_reads_the_same_twice() {
        let t0 = Instant::now();
        let mut s = Settling::new("[host]\n".into(), t0);
        // Still being written: read again.
        assert_eq!(
            s.read_again("[host]\n[plugins.p]\n".into(), t0 + CONFIG_SETTLE),
            None
        );
        assert_eq!(
            s.read_again("[host]\n[plugins.p]\n".into(), t0 + CONFIG_SETTLE * 2),
            Some("[host]\n[plugins.p]\n".into())
        );
    }

    #[test]
    fn a_config_file_that_never_settles_applies_as_last_read_after_three_seconds() {
        let t0 = Instant::now();
        let mut s = Settling::new("a".into(), t0);
        assert_eq!(s.read_again("b".into(), t0 + ms(1000)), None);
        assert_eq!(s.read_again("c".into(), t0 + ms(2000)), None);
        assert_eq!(s.read_again("d".into(), t0 + ms(3000)), Some("d".into()));
    }
}
