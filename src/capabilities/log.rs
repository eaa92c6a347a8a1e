//! `log`: plugin lines in the host's log, tagged with the plugin's name,
//! cut to a sane length, with control characters made visible (so a plugin
//! cannot forge log lines with a newline or overwrite one on a terminal
//! with a carriage return or an escape sequence), and rate-limited so a
//! chatty plugin cannot flood the journal of a Pi's SD card.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::contract::log::{Host, Level};
use crate::text::truncate;

/// Longest line kept; the rest is cut.
pub const MAX_LINE_BYTES: usize = 1024;
/// Lines per plugin per second; the rest are counted and reported.
pub const MAX_LINES_PER_SECOND: u32 = 20;

pub struct Log {
    plugin: Arc<str>,
    window_start: Instant,
    lines_in_window: u32,
    dropped: u64,
}

impl Log {
    pub fn new(plugin: Arc<str>) -> Log {
        Log {
            plugin,
            window_start: Instant::now(),
            lines_in_window: 0,
            dropped: 0,
        }
    }
}

impl Host for Log {
    fn write(&mut self, level: Level, message: String) {
        if self.window_start.elapsed() >= Duration::from_secs(1) {
            if self.dropped > 0 {
                ::log::warn!(target: "plugin", "[{}] {} log lines dropped (limit {MAX_LINES_PER_SECOND}/s)", self.plugin, self.dropped);
            }
            self.window_start = Instant::now();
            self.lines_in_window = 0;
            self.dropped = 0;
        }
        if self.lines_in_window >= MAX_LINES_PER_SECOND {
            self.dropped += 1;
            return;
        }
        self.lines_in_window += 1;
        let level = match level {
            Level::Debug => ::log::Level::Debug,
            Level::Info => ::log::Level::Info,
            Level::Warn => ::log::Level::Warn,
            Level::Error => ::log::Level::Error,
        };
        ::log::log!(target: "plugin", level, "[{}] {}", self.plugin, truncate(&message, MAX_LINE_BYTES));
    }
}
