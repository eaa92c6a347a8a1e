//! `led-controller`: a per-instance buffer of the plugin's own LEDs, shown
//! on the strip by `sync-leds`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Grants;
use crate::contract::led_controller::Host;
use crate::contract::types::Rgb;
use crate::hardware::HardwareHandle;
use crate::ratelimit::TokenBucket;

use super::Refuser;

/// Strip updates a plugin may show: 10 at once, then 10 per second.
pub fn bucket() -> TokenBucket {
    TokenBucket::new(10, Duration::from_millis(100))
}

pub struct Leds {
    granted: Vec<u8>,
    pending: BTreeMap<u8, [u8; 3]>,
    hardware: HardwareHandle,
    refuse: Refuser,
    bucket: Arc<Mutex<TokenBucket>>,
}

impl Leds {
    pub fn new(
        grants: &Grants,
        hardware: HardwareHandle,
        refuse: Refuser,
        bucket: Arc<Mutex<TokenBucket>>,
    ) -> Leds {
        Leds {
            granted: grants.leds.clone(),
            pending: BTreeMap::new(),
            hardware,
            refuse,
            bucket,
        }
    }

    fn buffer(&mut self, index: u8, color: Rgb) -> Result<(), String> {
        if !self.granted.contains(&index) {
            return Err(self.refuse.refuse(format!(
                "LED {index} is not granted: add it to `leds` in [plugins.{}.grants] (granted: {:?})",
                self.refuse.plugin(),
                self.granted
            )));
        }
        self.pending.insert(index, [color.r, color.g, color.b]);
        Ok(())
    }
}

impl Host for Leds {
    fn set_led(&mut self, index: u8, color: Rgb) -> Result<(), String> {
        self.buffer(index, color)
    }

    fn set_two(
        &mut self,
        index_a: u8,
        color_a: Rgb,
        index_b: u8,
        color_b: Rgb,
    ) -> Result<(), String> {
        // Check both before buffering either, so a refused pair changes nothing.
        if !self.granted.contains(&index_b) {
            return self.buffer(index_b, color_b);
        }
        self.buffer(index_a, color_a)?;
        self.buffer(index_b, color_b)
    }

    fn sync_leds(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if !self.bucket.lock().expect("LED rate limit lock").try_take() {
            // The buffer is kept: the next allowed sync shows the latest colours.
            return Err(self
                .refuse
                .refuse("LED rate limit: at most 10 strip updates per second".to_string()));
        }
        let colors: Vec<(u8, [u8; 3])> = std::mem::take(&mut self.pending).into_iter().collect();
        self.hardware
            .set_leds(colors)
            .map_err(|e| format!("LED strip: {e}"))
    }
}
