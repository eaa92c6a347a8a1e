//! WS2812 / WS2812B ("NeoPixel") wire encoding.
//!
//! A WS2812 strip takes 24 bits per LED in **green, red, blue** order, most
//! significant bit first, as pulses whose high time carries the value
//! (datasheet: 0 = ~0.4 µs high then ~0.85 µs low, 1 = ~0.8 µs high then
//! ~0.45 µs low, ±150 ns), followed by a long low that latches the colours.
//!
//! This module produces those bytes without touching hardware:
//! [`apply_brightness`] and [`grb_bytes`] build the colour stream, and
//! [`spi_encode`] turns it into an SPI bit stream for driving the strip from
//! MOSI. The SPI encoding is the common **3 SPI bits per data bit at
//! 2.4 MHz** ([`SPI_FREQUENCY_HZ`]): each SPI bit lasts 417 ns, a 0 is sent
//! as `100` (417 ns high, 833 ns low) and a 1 as `110` (833 ns high, 417 ns
//! low), both inside the datasheet's tolerances. The SPI path matters on the
//! Pi 5, where rs_ws281x's PWM/DMA driver does not run.
//!
//! # Troubleshooting
//!
//! - **Colours swapped (red shows green)**: the strip is RGB-ordered (a
//!   WS2811 or an SK6812 variant), not GRB.
//! - **Flicker or wrong colours only on SPI**: on a Pi 3/Zero 2 W the SPI
//!   clock follows the VPU core clock; add `core_freq=250` (and
//!   `core_freq_min=250`) to `/boot/firmware/config.txt`.
//! - **Long strips cut off on SPI**: spidev's default buffer is 4096 bytes
//!   (about 440 LEDs with the reset tail); add `spidev.bufsiz=65536` to
//!   `/boot/firmware/cmdline.txt`.
//! - **First LED wrong, rest fine**: the Pi drives 3.3 V but the strip at 5 V
//!   expects ≥ 3.5 V highs; use a level shifter (74AHCT125) or power the
//!   first LED through a diode.

use std::time::Duration;

/// SPI clock for [`spi_encode`]'s 3-bits-per-bit encoding, in Hz.
pub const SPI_FREQUENCY_HZ: u32 = 2_400_000;

/// SPI bits sent per WS2812 data bit.
pub const SPI_BITS_PER_BIT: usize = 3;

/// Low time that latches the colours. The original WS2812B needs 50 µs;
/// newer parts (WS2812B-V5, WS2813) need 280 µs, so 300 µs suits both.
pub const RESET: Duration = Duration::from_micros(300);

/// Zero bytes [`spi_encode`] appends to hold MOSI low for [`RESET`] at
/// [`SPI_FREQUENCY_HZ`] (8 SPI bits per byte, rounded up).
pub const SPI_RESET_BYTES: usize =
    (RESET.as_micros() as usize * SPI_FREQUENCY_HZ as usize / 1_000_000).div_ceil(8);

/// SPI pattern for a 0 data bit: one bit time high, two low.
const SPI_ZERO: u32 = 0b100;
/// SPI pattern for a 1 data bit: two bit times high, one low.
const SPI_ONE: u32 = 0b110;

/// Scales an `[r, g, b]` colour by a global brightness cap (0 = off,
/// 255 = unchanged), rounding to the nearest level.
pub fn apply_brightness(color: [u8; 3], brightness: u8) -> [u8; 3] {
    // c * b / 255 rounded; the largest intermediate, 255 * 255 + 127, fits u16.
    color.map(|c| ((u16::from(c) * u16::from(brightness) + 127) / 255) as u8)
}

/// The strip's data stream: each `[r, g, b]` colour scaled by `brightness`
/// (see [`apply_brightness`]) and sent in the WS2812's G, R, B order,
/// 3 bytes per LED.
pub fn grb_bytes(colors: &[[u8; 3]], brightness: u8) -> Vec<u8> {
    colors
        .iter()
        .flat_map(|&color| {
            let [r, g, b] = apply_brightness(color, brightness);
            [g, r, b]
        })
        .collect()
}

/// Encodes a GRB data stream for SPI at [`SPI_FREQUENCY_HZ`]: every data bit
/// becomes 3 SPI bits (0 → `100`, 1 → `110`), MSB first, so each data byte
/// becomes 3 SPI bytes. [`SPI_RESET_BYTES`] zero bytes follow, so a single
/// SPI write both sends and latches the colours.
pub fn spi_encode(grb: &[u8]) -> Vec<u8> {
    let mut spi = Vec::with_capacity(grb.len() * SPI_BITS_PER_BIT + SPI_RESET_BYTES);
    for &byte in grb {
        let bits = (0..8).rev().fold(0u32, |acc, bit| {
            let pattern = if (byte >> bit) & 1 == 1 {
                SPI_ONE
            } else {
                SPI_ZERO
            };
            (acc << SPI_BITS_PER_BIT) | pattern
        });
        // 24 SPI bits: the low three bytes of the word.
        let [_, high, middle, low] = bits.to_be_bytes();
        spi.extend_from_slice(&[high, middle, low]);
    }
    spi.resize(spi.len() + SPI_RESET_BYTES, 0);
    spi
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recovers the data bytes from an SPI stream by reading the middle bit
    /// of each 3-bit symbol, checking that every symbol is `100` or `110`.
    fn spi_decode(spi: &[u8]) -> Vec<u8> {
        let data_len = spi.len() - SPI_RESET_BYTES;
        assert!(
            spi[data_len..].iter().all(|&b| b == 0),
            "reset tail not low"
        );
        spi[..data_len]
            .chunks_exact(3)
            .map(|chunk| {
                let bits = u32::from_be_bytes([0, chunk[0], chunk[1], chunk[2]]);
                (0..8).rev().fold(0u8, |acc, bit| {
                    let symbol = (bits >> (bit * 3)) & 0b111;
                    assert!(
                        symbol == SPI_ZERO || symbol == SPI_ONE,
                        "bad symbol {symbol:03b}"
                    );
                    (acc << 1) | u8::from(symbol == SPI_ONE)
                })
            })
            .collect()
    }

    #[test]
    fn brightness_scales_and_rounds() {
        assert_eq!(apply_brightness([255, 128, 1], 255), [255, 128, 1]);
        assert_eq!(apply_brightness([255, 128, 1], 0), [0, 0, 0]);
        assert_eq!(apply_brightness([255, 128, 1], 128), [128, 64, 1]);
        assert_eq!(apply_brightness([200, 100, 50], 64), [50, 25, 13]);
    }

    #[test]
    fn brightness_never_increases_a_channel() {
        for c in 0..=255u8 {
            for b in 0..=255u8 {
                assert!(apply_brightness([c, 0, 0], b)[0] <= c);
            }
        }
    }

    #[test]
    fn grb_order_is_green_red_blue() {
        let bytes = grb_bytes(&[[0x11, 0x22, 0x33], [0xFF, 0x00, 0x80]], 255);
        assert_eq!(bytes, [0x22, 0x11, 0x33, 0x00, 0xFF, 0x80]);
        assert!(grb_bytes(&[], 255).is_empty());
    }

    #[test]
    fn grb_applies_brightness() {
        assert_eq!(grb_bytes(&[[255, 0, 0]], 51), [0, 51, 0]);
    }

    #[test]
    fn spi_symbols_for_all_zeros_and_all_ones() {
        let spi = spi_encode(&[0x00, 0xFF]);
        assert_eq!(spi[..6], [0x92, 0x49, 0x24, 0xDB, 0x6D, 0xB6]);
    }

    #[test]
    fn spi_reset_tail_lasts_at_least_the_latch_time() {
        let spi = spi_encode(&[0xAA; 3]);
        assert_eq!(spi.len(), 9 + SPI_RESET_BYTES);
        let tail_us = SPI_RESET_BYTES as u64 * 8 * 1_000_000 / u64::from(SPI_FREQUENCY_HZ);
        assert!(tail_us >= RESET.as_micros() as u64, "{tail_us} µs");
        assert_eq!(spi_encode(&[]).len(), SPI_RESET_BYTES);
    }

    #[test]
    fn spi_round_trips_every_byte() {
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(spi_decode(&spi_encode(&data)), data);
    }

    #[test]
    fn spi_timing_is_within_datasheet_tolerance() {
        let bit_ns = 1_000_000_000 / SPI_FREQUENCY_HZ;
        // T0H 0.4 µs, T1H 0.8 µs, each ±150 ns.
        assert!((250..=550).contains(&bit_ns), "T0H {bit_ns} ns");
        assert!((650..=950).contains(&(2 * bit_ns)), "T1H {} ns", 2 * bit_ns);
    }
}
