//! DHT22 / AM2302 single-wire protocol: pulse trains to frames to readings.
//!
//! The sensor answers a host start pulse with an 80 µs low / 80 µs high
//! response and then 40 data bits, most significant bit first. Every bit is a
//! ~50 µs low followed by a high whose *width* carries the value: ~26–28 µs
//! for a 0 and ~70 µs for a 1. The 40 bits form five bytes:
//!
//! ```text
//! [RH_hi, RH_lo, T_hi, T_lo, CHK]
//! RH  = u16(RH_hi, RH_lo) / 10                      %RH
//! T   = (u16(T_hi, T_lo) & 0x7FFF) / 10             °C, negative when bit 15 is set
//! CHK = (RH_hi + RH_lo + T_hi + T_lo) & 0xFF
//! ```
//!
//! The temperature is *sign-magnitude*, not two's complement: `0x8065` is
//! −10.1 °C. Decoders that treat it as an `i16` report −3276.7 °C on the first
//! frosty night.
//!
//! Decoding is split in two steps so that each can be tested and reused:
//! [`decode_pulses`] classifies 40 measured high times into a frame, and
//! [`decode_frame`] checks and converts the frame. The simulator goes the
//! other way with [`encode_frame`] and [`encode_pulses`] and then runs the same
//! decoders, so simulated readings go through the code used on a real Pi.
//!
//! # Troubleshooting
//!
//! - **Checksum errors now and then** are normal for a bit-banged protocol
//!   on a non-real-time OS; retry after [`MIN_READ_INTERVAL`]. Frequent ones
//!   point at noise: keep the wire short (under ~1 m without a stronger
//!   pull-up), add a 4.7–10 kΩ pull-up from DATA to 3.3 V, power the sensor
//!   from 3.3 V rather than 5 V so the data line never exceeds the Pi's 3.3 V.
//! - **Wrong pulse count** means edges were missed: the reading thread was
//!   descheduled during the 4 ms transfer. Retry; on a busy Pi Zero raise the
//!   hardware thread's priority.
//! - **No response** means the sensor never pulled the line low after the
//!   start signal: check the wiring and the configured BCM pin number (not
//!   the physical header pin), and that the sensor has power.
//! - **Reading more often than every 2 s** returns stale or garbled data; the
//!   host enforces [`MIN_READ_INTERVAL`] for that reason.

use std::fmt;
use std::time::Duration;

/// Number of data bits (and high pulses) in one transfer.
pub const BITS: usize = 40;

/// High pulses at least this long (µs) are 1-bits, shorter ones 0-bits.
///
/// The datasheet gives 26–28 µs for a 0 and 70 µs for a 1; 48 µs sits near
/// the midpoint, so either width may drift by ~20 µs (slow GPIO sampling,
/// scheduler jitter, a long cable) before a bit is misread. Any threshold
/// between ~30 and ~65 µs decodes a conforming sensor; the Linux kernel's
/// dht11 driver uses 49 µs and Adafruit's CircuitPython driver 51 µs.
pub const ONE_THRESHOLD_US: u32 = 48;

/// How long the host holds the line low to request a reading.
///
/// The AM2302 datasheet asks for at least 0.8 ms (typically 1 ms, at most
/// 20 ms); a little margin over 1 ms survives a slow GPIO write.
pub const HOST_START_LOW: Duration = Duration::from_micros(1_100);

/// The sensor needs this long between reads; reading sooner returns the
/// previous conversion or garbage.
pub const MIN_READ_INTERVAL: Duration = Duration::from_secs(2);

/// Lowest temperature the DHT22 is specified for, in tenths of a °C.
const MIN_TEMPERATURE_X10: i32 = -400;
/// Highest temperature the DHT22 is specified for, in tenths of a °C.
const MAX_TEMPERATURE_X10: i32 = 800;
/// Highest humidity the DHT22 reports, in tenths of a %RH.
const MAX_HUMIDITY_X10: u16 = 1000;
/// Bit 15 of the temperature word is the sign.
const TEMPERATURE_SIGN: u16 = 0x8000;

/// One checked DHT22 measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dht22Reading {
    /// Air temperature in °C, resolution 0.1 °C, within −40…80 °C.
    pub temperature_c: f32,
    /// Relative humidity in %RH, resolution 0.1 %, within 0…100 %.
    pub humidity_pct: f32,
}

/// Why a DHT22 transfer was rejected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dht22Error {
    /// The capture held `got` high pulses instead of 40: edges were missed
    /// (the reading thread was descheduled mid-transfer) or noise added
    /// spurious ones. Retry after [`MIN_READ_INTERVAL`]; if it persists,
    /// raise the hardware thread's priority or shorten the cable.
    PulseCount {
        /// Number of high pulses captured.
        got: usize,
    },
    /// The checksum byte does not match the sum of the four data bytes: a bit
    /// was misread. `expected` is the sum of the data bytes, `got` the
    /// checksum byte received. Occasional ones are normal, retry; frequent ones
    /// mean noise: add a 4.7–10 kΩ pull-up on DATA, shorten or shield the
    /// wire, power the sensor from 3.3 V.
    Checksum {
        /// `(b0 + b1 + b2 + b3) & 0xFF` of the received data bytes.
        expected: u8,
        /// The checksum byte the sensor sent.
        got: u8,
    },
    /// The frame was intact but the values are outside the sensor's range
    /// (−40…80 °C, 0…100 %RH); the fields hold what was decoded. A failing
    /// or wet sensor, or a different part (a DHT11 answers in another
    /// format) on the pin. Check which sensor is wired; replace it if it
    /// keeps happening.
    OutOfRange {
        /// Decoded temperature in °C.
        temperature_c: f32,
        /// Decoded relative humidity in %RH.
        humidity_pct: f32,
    },
    /// The sensor did not pull the line low after the start signal. Check the
    /// wiring, the sensor's power and that the configured pin is the BCM
    /// GPIO number the DATA wire is on. Reported by the I/O layer.
    NoResponse,
    /// The sensor started answering but a level did not change in time: the
    /// transfer stalled or the line is stuck. Usually a loose wire or a
    /// missing pull-up. Reported by the I/O layer.
    Timeout,
}

impl fmt::Display for Dht22Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dht22Error::PulseCount { got } => write!(
                f,
                "DHT22 sent {got} data pulses instead of {BITS} (missed edges); try again"
            ),
            Dht22Error::Checksum { expected, got } => write!(
                f,
                "DHT22 checksum mismatch: data bytes sum to {expected:#04x} but the checksum \
                 byte is {got:#04x} (noise on the data line?)"
            ),
            Dht22Error::OutOfRange {
                temperature_c,
                humidity_pct,
            } => write!(
                f,
                "DHT22 reading out of range: {temperature_c:.1} °C, {humidity_pct:.1} %RH \
                 (valid: -40..80 °C, 0..100 %RH)"
            ),
            Dht22Error::NoResponse => {
                f.write_str("DHT22 did not respond to the start signal (check wiring and pin)")
            }
            Dht22Error::Timeout => f.write_str("DHT22 transfer timed out mid-frame"),
        }
    }
}

impl std::error::Error for Dht22Error {}

/// Classifies 40 high-pulse widths (µs, bit 0 = MSB of byte 0) into a frame.
///
/// The sensor's 80 µs response pulse must not be included. Widths of at least
/// [`ONE_THRESHOLD_US`] are 1-bits. Any count other than 40 is
/// [`Dht22Error::PulseCount`]; the frame is not checked here (see
/// [`decode_frame`]).
pub fn decode_pulses(high_us: &[u32]) -> Result<[u8; 5], Dht22Error> {
    if high_us.len() != BITS {
        return Err(Dht22Error::PulseCount { got: high_us.len() });
    }
    let mut frame = [0u8; 5];
    for (byte, pulses) in frame.iter_mut().zip(high_us.chunks_exact(8)) {
        *byte = pulses.iter().fold(0, |acc, &width| {
            (acc << 1) | u8::from(width >= ONE_THRESHOLD_US)
        });
    }
    Ok(frame)
}

/// Checks and converts a 5-byte frame.
///
/// The checksum is checked first, so a corrupted frame is reported as
/// [`Dht22Error::Checksum`] even if its garbled values are also out of range;
/// only an intact frame can be [`Dht22Error::OutOfRange`].
pub fn decode_frame(frame: [u8; 5]) -> Result<Dht22Reading, Dht22Error> {
    let [rh_hi, rh_lo, t_hi, t_lo, received] = frame;
    let expected = checksum([rh_hi, rh_lo, t_hi, t_lo]);
    if expected != received {
        return Err(Dht22Error::Checksum {
            expected,
            got: received,
        });
    }

    let humidity_x10 = u16::from_be_bytes([rh_hi, rh_lo]);
    let raw_temperature = u16::from_be_bytes([t_hi, t_lo]);
    let magnitude_x10 = i32::from(raw_temperature & !TEMPERATURE_SIGN);
    let temperature_x10 = if raw_temperature & TEMPERATURE_SIGN != 0 {
        -magnitude_x10
    } else {
        magnitude_x10
    };

    // Tenths are converted by one correctly rounded division, so 652 becomes
    // the f32 closest to 65.2 (and −0 becomes plain 0).
    let temperature_c = temperature_x10 as f32 / 10.0;
    let humidity_pct = f32::from(humidity_x10) / 10.0;
    if !(MIN_TEMPERATURE_X10..=MAX_TEMPERATURE_X10).contains(&temperature_x10)
        || humidity_x10 > MAX_HUMIDITY_X10
    {
        return Err(Dht22Error::OutOfRange {
            temperature_c,
            humidity_pct,
        });
    }
    Ok(Dht22Reading {
        temperature_c,
        humidity_pct,
    })
}

/// The DHT22 checksum of the four data bytes: their sum, modulo 256.
pub fn checksum(data: [u8; 4]) -> u8 {
    data.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

/// Builds the frame a sensor would send for these values, with a valid
/// checksum.
///
/// Values are rounded to the sensor's 0.1 resolution and saturated to what
/// the frame can carry (±3276.7 °C, 0…6553.5 %RH), *not* to the valid range,
/// so the simulator can inject out-of-range readings; NaN encodes as 0.
pub fn encode_frame(temperature_c: f32, humidity_pct: f32) -> [u8; 5] {
    // `as` saturates and maps NaN to 0, which is the clamping wanted here.
    let humidity_x10 = (humidity_pct * 10.0).round() as u16;
    let magnitude_x10 = ((temperature_c.abs() * 10.0).round() as u16).min(!TEMPERATURE_SIGN);
    let raw_temperature = if temperature_c < 0.0 && magnitude_x10 != 0 {
        magnitude_x10 | TEMPERATURE_SIGN
    } else {
        magnitude_x10
    };
    let [rh_hi, rh_lo] = humidity_x10.to_be_bytes();
    let [t_hi, t_lo] = raw_temperature.to_be_bytes();
    [
        rh_hi,
        rh_lo,
        t_hi,
        t_lo,
        checksum([rh_hi, rh_lo, t_hi, t_lo]),
    ]
}

/// Turns a frame into the 40 high-pulse widths (µs) the sensor would send,
/// MSB first: `zero_us` for each 0-bit, `one_us` for each 1-bit.
///
/// With the datasheet's 27 and 70 µs, [`decode_pulses`] recovers the frame;
/// pick widths on the wrong side of [`ONE_THRESHOLD_US`] to simulate timing
/// faults.
pub fn encode_pulses(frame: [u8; 5], zero_us: u32, one_us: u32) -> Vec<u32> {
    frame
        .iter()
        .flat_map(|&byte| (0..8).rev().map(move |bit| (byte >> bit) & 1))
        .map(|bit| if bit == 1 { one_us } else { zero_us })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datasheet 0-bit and 1-bit high times.
    const ZERO_US: u32 = 27;
    const ONE_US: u32 = 70;

    #[test]
    fn datasheet_example_decodes() {
        let reading = decode_frame([0x02, 0x8C, 0x01, 0x5F, 0xEE]).unwrap();
        assert_eq!(reading.humidity_pct, 65.2);
        assert_eq!(reading.temperature_c, 35.1);
    }

    #[test]
    fn negative_temperature_is_sign_magnitude() {
        let reading = decode_frame([0x02, 0x8C, 0x80, 0x65, 0x73]).unwrap();
        assert_eq!(reading.temperature_c, -10.1);
        assert_eq!(encode_frame(-10.1, 65.2), [0x02, 0x8C, 0x80, 0x65, 0x73]);
    }

    #[test]
    fn negative_zero_encodes_without_sign_and_decodes_as_zero() {
        assert_eq!(encode_frame(-0.01, 50.0)[2], 0);
        let frame = [0x01, 0xF4, 0x80, 0x00, 0x75];
        let reading = decode_frame(frame).unwrap();
        assert_eq!(reading.temperature_c, 0.0);
        assert!(reading.temperature_c.is_sign_positive());
    }

    #[test]
    fn frames_round_trip_over_the_valid_range() {
        for temperature_x10 in (-400..=800).step_by(7) {
            for humidity_x10 in (0..=1000).step_by(37) {
                let temperature_c = temperature_x10 as f32 / 10.0;
                let humidity_pct = humidity_x10 as f32 / 10.0;
                let frame = encode_frame(temperature_c, humidity_pct);
                let reading = decode_frame(frame).unwrap();
                assert_eq!(reading.temperature_c, temperature_c, "frame {frame:02x?}");
                assert_eq!(reading.humidity_pct, humidity_pct, "frame {frame:02x?}");
            }
        }
    }

    #[test]
    fn pulses_round_trip_for_every_byte_value() {
        for value in 0..=255u8 {
            let frame = [value, value.wrapping_add(1), !value, value ^ 0x5A, value];
            let pulses = encode_pulses(frame, ZERO_US, ONE_US);
            assert_eq!(pulses.len(), BITS);
            assert_eq!(decode_pulses(&pulses), Ok(frame));
        }
    }

    #[test]
    fn pulses_are_msb_first() {
        let pulses = encode_pulses([0x80, 0, 0, 0, 0x01], ZERO_US, ONE_US);
        assert_eq!(pulses[0], ONE_US);
        assert!(pulses[1..39].iter().all(|&w| w == ZERO_US));
        assert_eq!(pulses[39], ONE_US);
    }

    #[test]
    fn threshold_separates_the_datasheet_widths_with_margin() {
        let zero = [ONE_THRESHOLD_US - 1; BITS];
        let one = [ONE_THRESHOLD_US; BITS];
        assert_eq!(decode_pulses(&zero), Ok([0; 5]));
        assert_eq!(decode_pulses(&one), Ok([0xFF; 5]));
    }

    #[test]
    fn wrong_pulse_counts_are_rejected() {
        for len in [0, 1, 39, 41, 80] {
            let pulses = vec![ZERO_US; len];
            assert_eq!(
                decode_pulses(&pulses),
                Err(Dht22Error::PulseCount { got: len })
            );
        }
    }

    #[test]
    fn checksum_is_checked_before_range() {
        // 200.0 °C with a wrong checksum must be reported as a checksum error.
        let mut frame = encode_frame(200.0, 40.0);
        frame[4] = frame[4].wrapping_add(1);
        assert!(matches!(
            decode_frame(frame),
            Err(Dht22Error::Checksum { .. })
        ));
    }

    #[test]
    fn range_limits_are_inclusive() {
        assert!(decode_frame(encode_frame(-40.0, 0.0)).is_ok());
        assert!(decode_frame(encode_frame(80.0, 100.0)).is_ok());
        assert_eq!(
            decode_frame(encode_frame(-40.1, 50.0)),
            Err(Dht22Error::OutOfRange {
                temperature_c: -40.1,
                humidity_pct: 50.0
            })
        );
        assert!(matches!(
            decode_frame(encode_frame(20.0, 100.1)),
            Err(Dht22Error::OutOfRange { .. })
        ));
    }

    #[test]
    fn encoding_saturates_instead_of_wrapping() {
        let frame = encode_frame(-5000.0, f32::NAN);
        assert_eq!(frame[..4], [0, 0, 0xFF, 0xFF]);
        assert_eq!(frame[4], checksum([0, 0, 0xFF, 0xFF]));
    }

    #[test]
    fn errors_display_a_reason() {
        let message = Dht22Error::Checksum {
            expected: 0xA9,
            got: 0xA8,
        }
        .to_string();
        assert!(
            message.contains("0xa9") && message.contains("0xa8"),
            "{message}"
        );
        assert!(Dht22Error::PulseCount { got: 39 }
            .to_string()
            .contains("39"));
    }
}
