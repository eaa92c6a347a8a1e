//! `system`: memory, load and uptime of the device.

use crate::contract::system::{Host, SystemStats};
use crate::hardware::HardwareHandle;

pub struct System {
    hardware: HardwareHandle,
}

impl System {
    pub fn new(hardware: HardwareHandle) -> System {
        System { hardware }
    }
}

impl Host for System {
    fn get_stats(&mut self) -> Result<SystemStats, String> {
        self.hardware
            .system_stats()
            .map(|s| SystemStats {
                ram_used_bytes: s.ram_used_bytes,
                ram_total_bytes: s.ram_total_bytes,
                uptime_s: s.uptime_s,
                load_1m: s.load_1m,
            })
            .map_err(|e| format!("system stats: {e}"))
    }
}
