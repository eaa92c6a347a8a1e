//! `gpio-provider`: sensor reads and clocks, checked against the plugin's
//! pins and I2C addresses before they reach the hardware thread.

use crate::clock::unix_time_ms;
use crate::config::Grants;
use crate::contract::gpio_provider::{Bme680Sample, Host};
use crate::hardware::HardwareHandle;

use super::Refuser;

pub struct Gpio {
    dht22_pins: Vec<u8>,
    i2c_addresses: Vec<u8>,
    hardware: HardwareHandle,
    refuse: Refuser,
}

impl Gpio {
    pub fn new(grants: &Grants, hardware: HardwareHandle, refuse: Refuser) -> Gpio {
        Gpio {
            dht22_pins: grants.dht22_pins.clone(),
            i2c_addresses: grants.i2c_addresses.clone(),
            hardware,
            refuse,
        }
    }
}

impl Host for Gpio {
    fn read_dht22(&mut self, pin: u8) -> Result<(f32, f32), String> {
        if !self.dht22_pins.contains(&pin) {
            return Err(self.refuse.refuse(format!(
                "GPIO {pin} is not granted: add it to `dht22_pins` in [plugins.{}.grants] (granted: {:?})",
                self.refuse.plugin(),
                self.dht22_pins
            )));
        }
        self.hardware
            .read_dht22(pin)
            .map(|s| (s.temperature_c, s.humidity_pct))
            .map_err(|e| format!("DHT22 on GPIO {pin}: {e}"))
    }

    fn read_bme680(&mut self, addr: u8) -> Result<Bme680Sample, String> {
        if !self.i2c_addresses.contains(&addr) {
            return Err(self.refuse.refuse(format!(
                "I2C address {addr:#04x} is not granted: add {addr:#04x} to `i2c_addresses` in [plugins.{}.grants]",
                self.refuse.plugin()
            )));
        }
        self.hardware
            .read_bme680(addr)
            .map(|s| Bme680Sample {
                temperature_c: s.temperature_c,
                humidity_pct: s.humidity_pct,
                pressure_hpa: s.pressure_hpa,
                gas_resistance_ohm: s.gas_resistance_ohm,
                gas_valid: s.gas_valid,
            })
            .map_err(|e| format!("BME680 at {addr:#04x}: {e}"))
    }

    fn get_cpu_temp(&mut self) -> Result<f32, String> {
        self.hardware
            .cpu_temp_c()
            .map_err(|e| format!("CPU temperature: {e}"))
    }

    fn get_timestamp_ms(&mut self) -> u64 {
        unix_time_ms()
    }
}
