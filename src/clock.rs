//! Wall-clock time as the host reports it (readings, telemetry, `/api`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, in milliseconds.
pub fn unix_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
