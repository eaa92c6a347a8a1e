//! The simulated backend: believable, repeatable readings off a Pi, made
//! at protocol level so they go through the code that runs on one.
//!
//! Values follow slow waves plus seeded noise, so the same seed gives the
//! same sequence and a dashboard left open looks alive. Temperature and
//! humidity move against each other as they do in a room. Tests pin values
//! with [`SimOverride`] to drive a plugin into alarm.
//!
//! The values are not handed out directly. A DHT22 reading becomes a frame
//! ([`crate::drivers::dht22::encode_frame`]) and a data-line waveform with
//! seeded jitter inside the datasheet's pulse widths, which the shared
//! capture loop samples and decodes ([`super::dht22`]). A BME680 reading is
//! a [`SimBme680Registers`] chip that the shared [`Bme680Driver`] checks,
//! resets, calibrates, triggers and reads ([`super::bme680`]). Faults
//! ([`SimFault`]) are injected into those waveforms and registers, so each
//! one reaches the caller as the error the real code path produces.

mod bme680;
mod control;
mod dht22;

pub use bme680::{SimAir, SimBme680Registers, Transfer, SIM_HEATER_MIN};
pub use control::{SimControl, SimDevice, SimFault, SimOverride};

use std::collections::HashMap;
use std::time::Instant;

use self::dht22::{LineFault, SimLine};
use super::bme680::{Bme680Driver, Bme680Settings};
use super::{read_system_stats, Backend, Bme680Sample, Dht22Sample, HwError, SystemStats};

pub struct SimBackend {
    rng: SplitMix64,
    start: Instant,
    /// Phase offsets so two sensors do not move in lockstep.
    phase: f64,
    dht22_pins: Vec<u8>,
    bme680_addresses: Vec<u8>,
    overrides: HashMap<SimDevice, SimOverride>,
    faults: HashMap<SimDevice, SimFault>,
    /// One simulated chip and driver per configured address.
    bme680: HashMap<u8, Bme680Driver<SimBme680Registers>>,
    sys: Option<sysinfo::System>,
    leds: Vec<[u8; 3]>,
    buzzer_on: bool,
}

impl SimBackend {
    pub fn new(seed: u64, dht22_pins: Vec<u8>, bme680_addresses: Vec<u8>) -> SimBackend {
        SimBackend::with_bme680_settings(
            seed,
            dht22_pins,
            bme680_addresses,
            Bme680Settings::default(),
        )
    }

    /// [`SimBackend::new`] with the BME680 driver measuring as configured
    /// (heater target and time), as the `pi` backend would.
    pub fn with_bme680_settings(
        seed: u64,
        dht22_pins: Vec<u8>,
        bme680_addresses: Vec<u8>,
        settings: Bme680Settings,
    ) -> SimBackend {
        let mut rng = SplitMix64(seed);
        let phase = rng.next_f64() * std::f64::consts::TAU;
        let bme680 = bme680_addresses
            .iter()
            .map(|&addr| {
                (
                    addr,
                    Bme680Driver::new(SimBme680Registers::new(), addr, settings),
                )
            })
            .collect();
        SimBackend {
            rng,
            start: Instant::now(),
            phase,
            dht22_pins,
            bme680_addresses,
            overrides: HashMap::new(),
            faults: HashMap::new(),
            bme680,
            sys: sysinfo::System::new().ok(),
            leds: Vec::new(),
            buzzer_on: false,
        }
    }

    /// Makes the simulated chips at `addresses` (of `bme680_addresses`)
    /// BME688s: the driver must recognise them by their variant id.
    pub fn with_bme688_at(mut self, addresses: &[u8]) -> SimBackend {
        for (&addr, driver) in self.bme680.iter_mut() {
            if addresses.contains(&addr) {
                let settings = driver.settings();
                *driver = Bme680Driver::new(
                    SimBme680Registers::of_variant(crate::drivers::bme680::Variant::Bme688),
                    addr,
                    settings,
                );
            }
        }
        self
    }

    fn t_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Room temperature: 21.5 °C ± 1.5 over ten minutes, plus noise.
    fn room_temperature_c(&mut self, offset: f64) -> f64 {
        let t = self.t_s();
        21.5 + offset
            + 1.5 * (t / 600.0 * std::f64::consts::TAU + self.phase).sin()
            + self.rng.noise(0.05)
    }

    fn room_humidity_pct(&mut self, temperature_c: f64) -> f64 {
        (45.0 - 2.0 * (temperature_c - 21.5) + self.rng.noise(0.2)).clamp(0.0, 100.0)
    }

    /// The LED frame last shown (brightness-capped), for tests of the backend.
    pub fn leds(&self) -> &[[u8; 3]] {
        &self.leds
    }

    pub fn buzzer_on(&self) -> bool {
        self.buzzer_on
    }
}

impl Backend for SimBackend {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn read_dht22(&mut self, pin: u8) -> Result<Dht22Sample, HwError> {
        if !self.dht22_pins.contains(&pin) {
            return Err(HwError::NotPresent(format!(
                "no DHT22 answered on GPIO {pin} (simulated DHT22s: {:?}, hardware.sim.dht22_pins)",
                self.dht22_pins
            )));
        }
        let forced = self
            .overrides
            .get(&SimDevice::Dht22 { pin })
            .copied()
            .unwrap_or_default();
        let t = forced
            .temperature_c
            .map(f64::from)
            .unwrap_or_else(|| self.room_temperature_c(0.0));
        let h = forced
            .humidity_pct
            .map(f64::from)
            .unwrap_or_else(|| self.room_humidity_pct(t));
        // What the sensor would send, sampled and decoded as on a Pi.
        let frame = crate::drivers::dht22::encode_frame(t as f32, h as f32);
        let fault = self
            .faults
            .get(&SimDevice::Dht22 { pin })
            .and_then(|&f| LineFault::from_sim(f));
        let mut line = SimLine::new(dht22::waveform(frame, fault, &mut self.rng));
        super::dht22::read_sample(pin, &mut line)
    }

    fn read_bme680(&mut self, addr: u8) -> Result<Bme680Sample, HwError> {
        if !self.bme680.contains_key(&addr) {
            return Err(HwError::NotPresent(format!(
                "no BME680 answered at I2C address {addr:#04x} (simulated: {}, hardware.sim.bme680_addresses)",
                self.bme680_addresses
                    .iter()
                    .map(|a| format!("{a:#04x}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let forced = self
            .overrides
            .get(&SimDevice::Bme680 { addr })
            .copied()
            .unwrap_or_default();
        let t_s = self.t_s();
        let temperature = forced
            .temperature_c
            .map(f64::from)
            .unwrap_or_else(|| self.room_temperature_c(0.6));
        let humidity = forced
            .humidity_pct
            .map(f64::from)
            .unwrap_or_else(|| self.room_humidity_pct(temperature) - 2.0);
        let pressure = forced.pressure_hpa.map(f64::from).unwrap_or_else(|| {
            1013.2 + 0.8 * (t_s / 3600.0 * std::f64::consts::TAU).sin() + self.rng.noise(0.05)
        });
        // Clean indoor air reads ~150 kΩ on a burnt-in sensor; people and
        // cooking push it down.
        let gas = forced.gas_resistance_ohm.map(f64::from).unwrap_or_else(|| {
            150_000.0
                + 20_000.0 * (t_s / 900.0 * std::f64::consts::TAU + self.phase).sin()
                + self.rng.noise(1500.0)
        });
        let air = SimAir {
            temperature_c: temperature as f32,
            humidity_pct: humidity.clamp(0.0, 100.0) as f32,
            pressure_hpa: pressure as f32,
            gas_resistance_ohm: gas.max(0.0) as f32,
        };
        let Some(driver) = self.bme680.get_mut(&addr) else {
            return Err(HwError::NotPresent(format!(
                "no BME680 at I2C address {addr:#04x}"
            )));
        };
        driver.bus_mut().set_air(air);
        driver.measure()
    }

    fn cpu_temp_c(&mut self) -> Result<f32, HwError> {
        if self.faults.contains_key(&SimDevice::Cpu) {
            return Err(HwError::NotPresent(
                "cannot read /sys/class/thermal/thermal_zone0/temp (simulated: absent)".into(),
            ));
        }
        if let Some(t) = self
            .overrides
            .get(&SimDevice::Cpu)
            .and_then(|o| o.temperature_c)
        {
            return Ok(t);
        }
        let t = self.t_s();
        Ok((47.0 + 4.0 * (t / 120.0 * std::f64::consts::TAU).sin() + self.rng.noise(0.3)) as f32)
    }

    fn system_stats(&mut self) -> Result<SystemStats, HwError> {
        read_system_stats(self.sys.as_mut())
    }

    fn show_leds(&mut self, frame: &[[u8; 3]]) -> Result<(), HwError> {
        self.leds = frame.to_vec();
        Ok(())
    }

    fn set_buzzer(&mut self, on: bool) -> Result<(), HwError> {
        self.buzzer_on = on;
        Ok(())
    }

    fn leds_driver(&self) -> String {
        "simulated".into()
    }

    fn buzzer_kind(&self) -> String {
        "simulated".into()
    }

    fn as_sim(&mut self) -> Option<&mut dyn SimControl> {
        Some(self)
    }
}

impl SimControl for SimBackend {
    fn set_override(
        &mut self,
        device: SimDevice,
        values: Option<SimOverride>,
    ) -> Result<(), HwError> {
        match values {
            Some(v) => {
                self.overrides.insert(device, v);
            }
            None => {
                self.overrides.remove(&device);
            }
        }
        Ok(())
    }

    fn set_fault(&mut self, device: SimDevice, fault: Option<SimFault>) -> Result<(), HwError> {
        if let Some(fault) = fault {
            if !fault.applies_to(device) {
                return Err(HwError::Unsupported(format!(
                    "fault `{fault}` does not apply to {device}: use one of {}",
                    SimFault::ALL
                        .iter()
                        .filter(|f| f.applies_to(device))
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if let SimDevice::Bme680 { addr } = device {
            // BME680 faults live in the simulated chip, where the driver
            // meets them as bus errors and register contents.
            if let Some(driver) = self.bme680.get_mut(&addr) {
                let chip = driver.bus_mut();
                chip.set_absent(fault == Some(SimFault::Absent));
                chip.set_failing(fault == Some(SimFault::I2cError));
                chip.set_chip_id(if fault == Some(SimFault::WrongChipId) {
                    BME280_CHIP_ID
                } else {
                    crate::drivers::bme680::CHIP_ID
                });
            }
        }
        match fault {
            Some(f) => {
                self.faults.insert(device, f);
            }
            None => {
                self.faults.remove(&device);
            }
        }
        Ok(())
    }
}

/// What a BME280 answers at the chip-id register: the usual impostor.
const BME280_CHIP_ID: u8 = 0x60;

/// A tiny seeded generator; enough for noise, and no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-amplitude, amplitude).
    fn noise(&mut self, amplitude: f64) -> f64 {
        (self.next_f64() * 2.0 - 1.0) * amplitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_noise() {
        let mut a = SplitMix64(7);
        let mut b = SplitMix64(7);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SplitMix64(8).next_u64(), xs[0]);
    }

    #[test]
    fn readings_are_plausible_and_overrides_win() {
        let mut sim = SimBackend::new(3, vec![4], vec![0x77]);
        let d = sim.read_dht22(4).unwrap();
        assert!((15.0..30.0).contains(&d.temperature_c), "{d:?}");
        assert!((20.0..70.0).contains(&d.humidity_pct), "{d:?}");
        let b = sim.read_bme680(0x77).unwrap();
        assert!((1000.0..1030.0).contains(&b.pressure_hpa), "{b:?}");
        assert!(b.gas_valid && b.gas_resistance_ohm > 50_000.0, "{b:?}");
        assert!(matches!(sim.read_dht22(5), Err(HwError::NotPresent(_))));
        assert!(matches!(sim.read_bme680(0x76), Err(HwError::NotPresent(_))));
        sim.set_override(
            SimDevice::Dht22 { pin: 4 },
            Some(SimOverride {
                temperature_c: Some(35.0),
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!(sim.read_dht22(4).unwrap().temperature_c, 35.0);
        sim.set_override(SimDevice::Dht22 { pin: 4 }, None).unwrap();
        assert!(sim.read_dht22(4).unwrap().temperature_c < 30.0);
    }
}
