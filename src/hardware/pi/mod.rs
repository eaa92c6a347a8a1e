//! The `pi` backend: real devices on a Raspberry Pi.
//!
//! One file per device: [`dht22`] (bit-banged GPIO through rppal),
//! [`bme680`] (rppal I2C under the shared [`Bme680Driver`]), [`leds`]
//! (rs_ws281x, or SPI through rppal), [`buzzer`] (a GPIO, software PWM for a
//! passive one) and [`cpu`] (sysfs). The protocol work is shared with the
//! simulator ([`crate::hardware::dht22`], [`crate::hardware::bme680`],
//! [`crate::drivers`]); what lives here is opening devices, timing and
//! turning OS errors into messages that say what to do.
//!
//! Every device is opened on first use, not when the host starts, and a
//! device that fails to open is reported on each use: a missing sensor
//! leaves the host running with that sensor reporting why. Only the LED
//! strip remembers a failed start (initialising rs_ws281x is costly and
//! would not succeed on a second try).
//!
//! # Troubleshooting
//!
//! - **"not a Raspberry Pi"**: rppal could not identify the board; run with
//!   `--hardware sim` off a Pi.
//! - **GPIO permission denied**: add the service user to the `gpio` group
//!   (`sudo usermod -aG gpio USER`), then log in again or restart the
//!   service.
//! - **I2C bus not found**: enable I2C (`sudo raspi-config nonint do_i2c 0`,
//!   or `dtparam=i2c_arm=on` in `/boot/firmware/config.txt`) and reboot;
//!   **permission denied**: the `i2c` group.
//! - **SPI not found**: `sudo raspi-config nonint do_spi 0` (or
//!   `dtparam=spi=on`), reboot; **permission denied**: the `spi` group.
//! - **LED strip unavailable** with rs_ws281x: see [`leds`].
//! - **DHT22 pulse-count errors** on a busy Pi: allow real-time priority
//!   (see [`dht22`]).

pub mod bme680;
pub mod buzzer;
pub mod cpu;
pub mod dht22;
pub mod leds;

pub use buzzer::BuzzerKind;
pub use leds::LedDriver;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use rppal::gpio::Gpio;

use super::bme680::{Bme680Driver, Bme680Settings};
use super::{read_system_stats, Backend, Bme680Sample, Dht22Sample, HwError, SystemStats};

/// True on a Raspberry Pi, from the device tree's model string.
pub fn is_raspberry_pi() -> bool {
    std::fs::read_to_string("/proc/device-tree/model")
        .or_else(|_| std::fs::read_to_string("/sys/firmware/devicetree/base/model"))
        .is_ok_and(|m| m.contains("Raspberry Pi"))
}

/// How the devices are wired and driven.
#[derive(Debug, Clone, PartialEq)]
pub struct PiOptions {
    pub led_count: u8,
    /// BCM pin of the strip's data line for rs_ws281x (SPI is always
    /// GPIO 10, MOSI).
    pub led_pin: u8,
    pub led_driver: LedDriver,
    pub buzzer_pin: u8,
    pub buzzer_kind: BuzzerKind,
    pub bme680: Bme680Settings,
    /// The CPU temperature in millidegrees Celsius.
    pub thermal_path: PathBuf,
}

impl Default for PiOptions {
    fn default() -> Self {
        PiOptions {
            led_count: 3,
            led_pin: 18,
            led_driver: LedDriver::Auto,
            buzzer_pin: 17,
            buzzer_kind: BuzzerKind::Active,
            bme680: Bme680Settings::default(),
            thermal_path: PathBuf::from(cpu::THERMAL_ZONE0),
        }
    }
}

/// Why a device on the Pi cannot be used, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PiError {
    /// rppal cannot identify the board: this is not a Raspberry Pi, or the
    /// OS hides `/proc/device-tree`. Run with `--hardware sim` off a Pi.
    NotAPi,
    /// Opening `/dev/gpiomem` (or `/dev/gpiochipN`) was refused. Add the
    /// service user to the `gpio` group and log in again (or restart the
    /// service).
    GpioPermission(String),
    /// Two devices of this host are configured on the same pin. Give each
    /// its own pin in `host.toml`.
    PinUsed { pin: u8, by: String },
    /// The board has no such GPIO. Pins are BCM numbers (0–27), not
    /// physical header positions.
    PinNotAvailable(u8),
    /// `/dev/i2c-N` does not exist: I2C is disabled. Run
    /// `sudo raspi-config nonint do_i2c 0` (or add `dtparam=i2c_arm=on` to
    /// `/boot/firmware/config.txt`) and reboot.
    I2cDisabled,
    /// `/dev/i2c-N` exists but may not be opened. Add the service user to
    /// the `i2c` group.
    I2cPermission(String),
    /// `/dev/spidev0.0` does not exist: SPI is disabled. Run
    /// `sudo raspi-config nonint do_spi 0` (or add `dtparam=spi=on` to
    /// `/boot/firmware/config.txt`) and reboot.
    SpiDisabled,
    /// `/dev/spidev0.0` exists but may not be opened. Add the service user
    /// to the `spi` group.
    SpiPermission(String),
    /// rs_ws281x could not start; `fix` says what to change.
    Ws281x { error: String, fix: String },
    /// Anything else, with what was being attempted.
    Io { doing: String, detail: String },
}

impl fmt::Display for PiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PiError::NotAPi => f.write_str(
                "this is not a Raspberry Pi (rppal cannot identify the board); \
                 run with --hardware sim",
            ),
            PiError::GpioPermission(path) => write!(
                f,
                "permission denied opening {path}: add the user to the `gpio` group \
                 (`sudo usermod -aG gpio $USER`) and log in again or restart the service"
            ),
            PiError::PinUsed { pin, by } => write!(
                f,
                "GPIO {pin} is already used by {by}: give each device its own pin in host.toml"
            ),
            PiError::PinNotAvailable(pin) => write!(
                f,
                "GPIO {pin} does not exist on this board: use a BCM GPIO number (0–27), \
                 not the physical header pin"
            ),
            PiError::I2cDisabled => f.write_str(
                "the I2C bus /dev/i2c-1 does not exist: enable I2C with \
                 `sudo raspi-config nonint do_i2c 0` (or `dtparam=i2c_arm=on` in \
                 /boot/firmware/config.txt) and reboot",
            ),
            PiError::I2cPermission(detail) => write!(
                f,
                "permission denied opening the I2C bus ({detail}): add the user to the `i2c` \
                 group (`sudo usermod -aG i2c $USER`) and log in again or restart the service"
            ),
            PiError::SpiDisabled => f.write_str(
                "the SPI bus /dev/spidev0.0 does not exist: enable SPI with \
                 `sudo raspi-config nonint do_spi 0` (or `dtparam=spi=on` in \
                 /boot/firmware/config.txt) and reboot",
            ),
            PiError::SpiPermission(detail) => write!(
                f,
                "permission denied opening /dev/spidev0.0 ({detail}): add the user to the \
                 `spi` group (`sudo usermod -aG spi $USER`) and log in again or restart the \
                 service"
            ),
            PiError::Ws281x { error, fix } => write!(f, "rs_ws281x: {error}: {fix}"),
            PiError::Io { doing, detail } => write!(f, "{doing}: {detail}"),
        }
    }
}

impl std::error::Error for PiError {}

impl From<PiError> for HwError {
    fn from(e: PiError) -> HwError {
        HwError::NotPresent(e.to_string())
    }
}

/// Real devices.
pub struct PiBackend {
    options: PiOptions,
    /// Opened on first use; `None` until then or while opening fails.
    gpio: Option<Gpio>,
    /// Which device holds which pin, for [`PiError::PinUsed`] messages.
    owners: HashMap<u8, String>,
    dht22: HashMap<u8, dht22::Dht22Pin>,
    realtime: dht22::Realtime,
    bme680: HashMap<u8, Bme680Driver<bme680::PiI2c>>,
    strip: leds::Strip,
    buzzer: Option<buzzer::Buzzer>,
    sys: Option<sysinfo::System>,
}

impl PiBackend {
    /// Opens nothing yet: each device is opened on first use, so a missing
    /// one cannot stop the host from starting.
    pub fn new(options: PiOptions) -> PiBackend {
        PiBackend {
            strip: leds::Strip::new(options.led_driver, options.led_pin, options.led_count),
            options,
            gpio: None,
            owners: HashMap::new(),
            dht22: HashMap::new(),
            realtime: dht22::Realtime::default(),
            bme680: HashMap::new(),
            buzzer: None,
            sys: sysinfo::System::new().ok(),
        }
    }

    fn gpio(&mut self) -> Result<Gpio, PiError> {
        if let Some(gpio) = &self.gpio {
            return Ok(gpio.clone());
        }
        let gpio = Gpio::new().map_err(|e| gpio_error(e, 0, "", &self.owners))?;
        self.gpio = Some(gpio.clone());
        Ok(gpio)
    }
}

/// Turns an rppal GPIO error on `pin` (wanted by `device`) into what to do.
fn gpio_error(
    error: rppal::gpio::Error,
    pin: u8,
    device: &str,
    owners: &HashMap<u8, String>,
) -> PiError {
    use rppal::gpio::Error;
    match error {
        Error::UnknownModel => PiError::NotAPi,
        Error::PermissionDenied(path) => PiError::GpioPermission(path),
        Error::PinUsed(pin) => PiError::PinUsed {
            pin,
            by: owners
                .get(&pin)
                .cloned()
                .unwrap_or_else(|| "another part of this host".into()),
        },
        Error::PinNotAvailable(pin) => PiError::PinNotAvailable(pin),
        Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            PiError::GpioPermission(e.to_string())
        }
        other => PiError::Io {
            doing: format!("opening GPIO {pin} for the {device}"),
            detail: other.to_string(),
        },
    }
}

impl Backend for PiBackend {
    fn name(&self) -> &'static str {
        "pi"
    }

    fn read_dht22(&mut self, pin: u8) -> Result<Dht22Sample, HwError> {
        if !self.dht22.contains_key(&pin) {
            let gpio = self.gpio()?;
            let opened = gpio
                .get(pin)
                .map_err(|e| gpio_error(e, pin, "DHT22", &self.owners))?;
            self.owners.insert(pin, format!("the DHT22 on GPIO {pin}"));
            self.dht22.insert(pin, dht22::Dht22Pin::new(opened));
        }
        let Some(sensor) = self.dht22.get_mut(&pin) else {
            return Err(HwError::NotPresent(format!(
                "GPIO {pin} could not be opened"
            )));
        };
        sensor.read(pin, &mut self.realtime)
    }

    fn read_bme680(&mut self, addr: u8) -> Result<Bme680Sample, HwError> {
        if !self.bme680.contains_key(&addr) {
            let bus = bme680::PiI2c::open(addr)?;
            self.bme680
                .insert(addr, Bme680Driver::new(bus, addr, self.options.bme680));
        }
        match self.bme680.get_mut(&addr) {
            Some(driver) => driver.measure(),
            None => Err(HwError::NotPresent(format!(
                "the I2C bus for {addr:#04x} could not be opened"
            ))),
        }
    }

    fn cpu_temp_c(&mut self) -> Result<f32, HwError> {
        cpu::read_temperature_c(&self.options.thermal_path)
    }

    fn system_stats(&mut self) -> Result<SystemStats, HwError> {
        read_system_stats(self.sys.as_mut())
    }

    fn show_leds(&mut self, frame: &[[u8; 3]]) -> Result<(), HwError> {
        self.strip.show(frame)
    }

    fn set_buzzer(&mut self, on: bool) -> Result<(), HwError> {
        if self.buzzer.is_none() {
            let pin = self.options.buzzer_pin;
            let gpio = self.gpio()?;
            let opened = gpio
                .get(pin)
                .map_err(|e| gpio_error(e, pin, "buzzer", &self.owners))?;
            self.owners
                .insert(pin, format!("the buzzer ([hardware.buzzer] pin = {pin})"));
            self.buzzer = Some(buzzer::Buzzer::new(opened, self.options.buzzer_kind));
        }
        match self.buzzer.as_mut() {
            Some(buzzer) => buzzer.set(on),
            None => Err(HwError::NotPresent("the buzzer could not be opened".into())),
        }
    }

    fn leds_driver(&self) -> String {
        self.strip.describe()
    }

    fn buzzer_kind(&self) -> String {
        self.options.buzzer_kind.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setup_error_names_its_fix() {
        let cases = [
            (PiError::NotAPi, "--hardware sim"),
            (
                PiError::GpioPermission("/dev/gpiomem".into()),
                "`gpio` group",
            ),
            (
                PiError::PinUsed {
                    pin: 17,
                    by: "the buzzer".into(),
                },
                "its own pin",
            ),
            (PiError::PinNotAvailable(40), "BCM"),
            (PiError::I2cDisabled, "raspi-config nonint do_i2c 0"),
            (PiError::I2cDisabled, "dtparam=i2c_arm=on"),
            (PiError::I2cPermission("x".into()), "`i2c` group"),
            (PiError::SpiDisabled, "do_spi 0"),
            (PiError::SpiPermission("x".into()), "`spi` group"),
        ];
        for (error, fix) in cases {
            let message = HwError::from(error).to_string();
            assert!(message.contains(fix), "{message} lacks {fix}");
        }
    }

    #[test]
    fn pin_conflicts_name_the_owner() {
        let mut owners = HashMap::new();
        owners.insert(17, "the buzzer".to_string());
        let e = gpio_error(rppal::gpio::Error::PinUsed(17), 17, "DHT22", &owners);
        assert!(e.to_string().contains("used by the buzzer"), "{e}");
        assert_eq!(
            gpio_error(rppal::gpio::Error::UnknownModel, 4, "DHT22", &owners),
            PiError::NotAPi
        );
    }

    #[test]
    fn off_a_pi_devices_report_errors_and_the_backend_keeps_working() {
        // On the build machine (not a Pi) every device must fail cleanly,
        // never panic, and report something actionable.
        if is_raspberry_pi() {
            return;
        }
        let mut pi = PiBackend::new(PiOptions {
            thermal_path: PathBuf::from("/nonexistent/temp"),
            ..PiOptions::default()
        });
        for result in [
            pi.read_dht22(4).map(|_| ()),
            pi.read_bme680(0x77).map(|_| ()),
            pi.set_buzzer(true),
            pi.show_leds(&[[1, 2, 3]; 3]),
            pi.cpu_temp_c().map(|_| ()),
        ] {
            let error = result.expect_err("no device off a Pi").to_string();
            assert!(!error.is_empty());
        }
        // A second attempt reports again rather than panicking.
        assert!(pi.show_leds(&[[0, 0, 0]; 3]).is_err());
        assert!(pi.read_dht22(4).is_err());
    }
}
