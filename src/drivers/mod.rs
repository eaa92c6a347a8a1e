//! Pure protocol code for the sensors and the LED strip.
//!
//! Everything here turns bytes, bit timings and calibration words into
//! physical quantities (and back) without touching a device: no GPIO, no I2C,
//! no SPI, no clock, no sleeping. The hardware thread's two backends share it:
//!
//! - `pi` captures raw data from the real parts (pulse widths from a GPIO pin,
//!   register bytes over I2C) and hands it to these decoders, and encodes LED
//!   colours with them before writing to SPI or PWM.
//! - `sim` synthesises the same raw data with the `encode_*` inverses
//!   ([`dht22::encode_frame`], [`dht22::encode_pulses`],
//!   [`bme680::encode_field`]) and then runs the very same decoders, so every
//!   simulated reading exercises the code that runs on the Pi.
//!
//! Keeping the protocol apart from the I/O is what lets the decoding,
//! checksum, compensation and bit-encoding rules be tested on any machine
//! against published reference vectors, and it keeps the timing-critical
//! I/O code in `hardware` short.
//!
//! Nothing in this module panics on input from a sensor: every function that
//! takes caller-supplied slices checks their lengths and returns a typed error.

pub mod bme680;
pub mod dht22;
pub mod ws2812;
