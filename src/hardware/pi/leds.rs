//! The WS2812B strip: rs_ws281x (PWM + DMA) or SPI through rppal.
//!
//! rs_ws281x drives the strip from GPIO 18 (PWM0) with DMA, so the timing
//! survives a busy CPU. It needs `/dev/mem` (in practice: root) and knows
//! the boards up to the Pi 4/400 and Zero 2 W, not the Pi 5. SPI needs only
//! the `spi` group and works on every Pi including the 5, but the data must
//! come from MOSI, GPIO 10 (header pin 19), and the frame is encoded with
//! [`crate::drivers::ws2812::spi_encode`].
//!
//! `driver = "auto"` tries rs_ws281x and falls back to SPI, logging that the
//! data wire must then be on GPIO 10; `"ws281x"` and `"spi"` use only that
//! driver. When nothing can drive the strip, the host keeps running and
//! every LED update reports why.
//!
//! The hardware thread has already applied the brightness cap, so
//! rs_ws281x's own brightness is fixed at 255.
//!
//! # Troubleshooting
//!
//! - **"rs_ws281x: Hardware not supported"** on a Pi 5: use `driver = "spi"`
//!   (or `"auto"`), enable SPI, move the data wire to GPIO 10 (pin 19).
//! - **"rs_ws281x: mmap error" / "mailbox"**: rs_ws281x needs `/dev/mem`;
//!   run the service as root, or use SPI.
//! - **Strip flickers or shows random colours on a Pi 4 with rs_ws281x**:
//!   the PWM is shared with analogue audio; add `dtparam=audio=off` to
//!   `/boot/firmware/config.txt`.
//! - **Colours wrong on SPI on a Pi 3 / Zero 2 W**: see
//!   [`crate::drivers::ws2812`] (`core_freq=250`).
//! - **First LED wrong, rest fine / nothing lights**: 3.3 V data into a 5 V
//!   strip; use a level shifter (74AHCT125).

use std::fmt;

use rppal::spi::{Bus, Mode, SlaveSelect, Spi};
use rs_ws281x::{ChannelBuilder, Controller, ControllerBuilder, StripType, WS2811Error};

use super::PiError;
use crate::drivers::ws2812;
use crate::hardware::HwError;

/// Which driver moves the colours to the strip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LedDriver {
    /// rs_ws281x, and SPI if that cannot start.
    #[default]
    Auto,
    /// rs_ws281x only (PWM/PCM with DMA; needs root).
    Ws281x,
    /// SPI0 only, data on MOSI (GPIO 10).
    Spi,
}

impl fmt::Display for LedDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LedDriver::Auto => "auto",
            LedDriver::Ws281x => "ws281x",
            LedDriver::Spi => "spi",
        })
    }
}

/// The BCM pin of SPI0 MOSI.
pub const SPI_MOSI_PIN: u8 = 10;
/// rs_ws281x's DMA channel: 10 is free on every model (5 corrupts the SD
/// card on a Pi 3).
const WS281X_DMA: i32 = 10;
/// WS2812 bit rate.
const WS281X_FREQUENCY_HZ: u32 = 800_000;

/// The strip, started on first use.
pub(super) struct Strip {
    driver: LedDriver,
    pin: u8,
    count: u8,
    state: State,
}

enum State {
    Untried,
    Ws281x(Ws281xStrip),
    Spi(SpiStrip),
    Unavailable(String),
}

impl Strip {
    pub(super) fn new(driver: LedDriver, pin: u8, count: u8) -> Strip {
        Strip {
            driver,
            pin,
            count,
            state: State::Untried,
        }
    }

    pub(super) fn show(&mut self, frame: &[[u8; 3]]) -> Result<(), HwError> {
        if matches!(self.state, State::Untried) {
            self.state = self.start();
        }
        match &mut self.state {
            State::Ws281x(strip) => strip.show(frame),
            State::Spi(strip) => strip.show(frame),
            State::Unavailable(why) => Err(HwError::NotPresent(why.clone())),
            State::Untried => Err(HwError::NotPresent("LED strip not started".into())),
        }
    }

    pub(super) fn describe(&self) -> String {
        match &self.state {
            State::Ws281x(_) => format!("rs_ws281x on GPIO {}", self.pin),
            State::Spi(_) => format!("SPI0 MOSI on GPIO {SPI_MOSI_PIN}"),
            State::Unavailable(_) => "unavailable".into(),
            State::Untried => format!("driver {} (not started)", self.driver),
        }
    }

    fn start(&self) -> State {
        let ws281x = match self.driver {
            LedDriver::Auto | LedDriver::Ws281x => match Ws281xStrip::start(self.pin, self.count) {
                Ok(strip) => {
                    log::info!("LED strip: rs_ws281x on GPIO {}", self.pin);
                    return State::Ws281x(strip);
                }
                Err(e) => Some(e),
            },
            LedDriver::Spi => None,
        };
        if self.driver == LedDriver::Ws281x {
            let why = ws281x.map(|e| e.to_string()).unwrap_or_default();
            log::warn!("LED strip unavailable: {why}");
            return State::Unavailable(why);
        }
        match SpiStrip::start(self.count) {
            Ok(strip) => {
                match &ws281x {
                    Some(e) if self.pin != SPI_MOSI_PIN => log::warn!(
                        "LED strip: {e}; driving it over SPI instead, so its data wire must be \
                         on GPIO {SPI_MOSI_PIN} (header pin 19), not GPIO {}",
                        self.pin
                    ),
                    Some(e) => log::info!("LED strip: {e}; driving it over SPI instead"),
                    None => log::info!("LED strip: SPI0 MOSI on GPIO {SPI_MOSI_PIN}"),
                }
                State::Spi(strip)
            }
            Err(spi) => {
                let why = match ws281x {
                    Some(ws) => format!("LED strip unavailable: {ws}; and SPI: {spi}"),
                    None => format!("LED strip unavailable: {spi}"),
                };
                log::warn!("{why}");
                State::Unavailable(why)
            }
        }
    }
}

/// rs_ws281x's controller holds raw pointers into its DMA buffers, so it is
/// not `Send`. The C library keeps no thread-local state and the strip is
/// owned by exactly one thread at a time (the hardware thread, after the
/// backend is moved there), never shared and never cloned.
struct SendController(Controller);

// SAFETY: see `SendController`: single owner, no thread affinity in
// rpi_ws281x, and `Controller::clone` (which would double-free) is never
// called.
unsafe impl Send for SendController {}

struct Ws281xStrip {
    controller: SendController,
}

impl Ws281xStrip {
    fn start(pin: u8, count: u8) -> Result<Ws281xStrip, PiError> {
        let controller = ControllerBuilder::new()
            .freq(WS281X_FREQUENCY_HZ)
            .dma(WS281X_DMA)
            .channel(
                0,
                ChannelBuilder::new()
                    .pin(i32::from(pin))
                    .count(i32::from(count))
                    .strip_type(StripType::Ws2812)
                    .brightness(255)
                    .build(),
            )
            .build()
            .map_err(|e| ws281x_error(e, pin))?;
        Ok(Ws281xStrip {
            controller: SendController(controller),
        })
    }

    fn show(&mut self, frame: &[[u8; 3]]) -> Result<(), HwError> {
        let controller = &mut self.controller.0;
        for (slot, &[r, g, b]) in controller.leds_mut(0).iter_mut().zip(frame) {
            // ws2811_led_t is 0xWWRRGGBB; little-endian in memory.
            *slot = [b, g, r, 0];
        }
        controller
            .render()
            .map_err(|e| HwError::Sensor(format!("rs_ws281x render failed: {e}")))
    }
}

impl Drop for Ws281xStrip {
    fn drop(&mut self) {
        // Dark before the controller is torn down: a strip keeps showing
        // its last frame when the data line stops.
        let controller = &mut self.controller.0;
        controller.leds_mut(0).iter_mut().for_each(|c| *c = [0; 4]);
        let _ = controller.render();
        let _ = controller.wait();
    }
}

/// What to do about an rs_ws281x start-up error.
fn ws281x_error(error: WS2811Error, pin: u8) -> PiError {
    let fix = match error {
        WS2811Error::HwNotSupported => {
            "rs_ws281x does not know this board (a Pi 5, or not a Pi): set \
             [hardware.leds] driver = \"spi\" (or \"auto\"), enable SPI and put the data wire \
             on GPIO 10 (header pin 19)"
                .to_string()
        }
        WS2811Error::Mmap
        | WS2811Error::MemLock
        | WS2811Error::MapRegisters
        | WS2811Error::MailboxDevice
        | WS2811Error::GpioInit
        | WS2811Error::Dma => "rs_ws281x needs /dev/mem: run the host as root, or set \
             [hardware.leds] driver = \"spi\" and put the data wire on GPIO 10 (header pin 19)"
            .to_string(),
        WS2811Error::IllegalGpio => format!(
            "GPIO {pin} cannot drive the strip with rs_ws281x: use GPIO 18 (PWM0, header pin \
             12), 12, 21 (PCM) or 10 (SPI)"
        ),
        WS2811Error::PwmSetup | WS2811Error::PcmSetup => "the PWM/PCM block is busy: add \
             `dtparam=audio=off` to /boot/firmware/config.txt and reboot, or use driver = \"spi\""
            .to_string(),
        _ => "use [hardware.leds] driver = \"spi\" with the data wire on GPIO 10".to_string(),
    };
    PiError::Ws281x {
        error: error.to_string(),
        fix,
    }
}

struct SpiStrip {
    spi: Spi,
    count: u8,
}

impl SpiStrip {
    fn start(count: u8) -> Result<SpiStrip, PiError> {
        let spi = Spi::new(
            Bus::Spi0,
            SlaveSelect::Ss0,
            ws2812::SPI_FREQUENCY_HZ,
            Mode::Mode0,
        )
        .map_err(|e| match e {
            rppal::spi::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
                PiError::SpiDisabled
            }
            rppal::spi::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                PiError::SpiPermission(io.to_string())
            }
            other => PiError::Io {
                doing: "opening SPI0 (/dev/spidev0.0)".into(),
                detail: other.to_string(),
            },
        })?;
        Ok(SpiStrip { spi, count })
    }

    fn show(&mut self, frame: &[[u8; 3]]) -> Result<(), HwError> {
        // One write sends the colours and the latching low tail.
        let bytes = ws2812::spi_encode(&ws2812::grb_bytes(frame, 255));
        match self.spi.write(&bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(n) => Err(HwError::Sensor(format!(
                "SPI wrote {n} of {} bytes to the LED strip (raise spidev.bufsiz)",
                bytes.len()
            ))),
            Err(e) => Err(HwError::Sensor(format!(
                "SPI write to the LED strip failed: {e}"
            ))),
        }
    }
}

impl Drop for SpiStrip {
    fn drop(&mut self) {
        let _ = self.show(&vec![[0, 0, 0]; usize::from(self.count)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws281x_errors_say_what_to_do() {
        let pi5 = ws281x_error(WS2811Error::HwNotSupported, 18).to_string();
        assert!(
            pi5.contains("driver = \"spi\"") && pi5.contains("GPIO 10"),
            "{pi5}"
        );
        let mem = ws281x_error(WS2811Error::Mmap, 18).to_string();
        assert!(mem.contains("/dev/mem") && mem.contains("root"), "{mem}");
        let pin = ws281x_error(WS2811Error::IllegalGpio, 17).to_string();
        assert!(pin.contains("GPIO 17") && pin.contains("GPIO 18"), "{pin}");
    }

    #[test]
    fn an_unavailable_strip_keeps_reporting_why() {
        let mut strip = Strip::new(LedDriver::Auto, 18, 3);
        strip.state = State::Unavailable("LED strip unavailable: no SPI".into());
        for _ in 0..2 {
            match strip.show(&[[0, 0, 0]; 3]) {
                Err(HwError::NotPresent(why)) => assert!(why.contains("no SPI")),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(strip.describe(), "unavailable");
    }
}
