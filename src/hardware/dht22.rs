//! The DHT22 read path both backends share: capture the data line's edges
//! after the start signal, turn them into high-pulse widths, decode.
//!
//! Only the start signal and the line itself differ between backends: the
//! `pi` backend samples a GPIO pin against the monotonic clock, the `sim`
//! backend samples a synthesised waveform against a virtual clock. The
//! capture loop, its time budget and every decision about what the edges
//! mean run the same code in both, so the simulator exercises the code that
//! runs on a Pi.
//!
//! The transfer, after the host releases the line (datasheet, AM2302):
//!
//! ```text
//! host release   sensor response     bit 0            bit 39         end
//! ‾‾‾‾‾‾‾‾‾‾\__80 µs__/‾‾80 µs‾‾\_50 µs_/‾26|70‾\ ... _/‾26|70‾\_50_/‾‾‾‾‾
//! ```
//!
//! # Troubleshooting
//!
//! See [`crate::drivers::dht22`]: the errors produced here are
//! [`Dht22Error::NoResponse`] (nothing answered), [`Dht22Error::Timeout`]
//! (the line stuck low mid-transfer) and whatever the decoders report.

use crate::drivers::dht22::{self, Dht22Error, Dht22Reading, BITS};

use super::{Dht22Sample, HwError};

/// The whole transfer takes at most ~5 ms (all ones: 40 × 120 µs plus the
/// 160 µs response); past this budget the capture stops whatever the line
/// does, so a stuck or noisy line can never hold the hardware thread.
pub const CAPTURE_BUDGET_US: u32 = 8_000;

/// No level of a conforming transfer lasts longer than 80 µs (the sensor
/// may wait up to 200 µs before answering). A line that stays put this long
/// has finished, never started, or is stuck.
pub const IDLE_US: u32 = 300;

/// Edges kept per capture: 2 response edges + 80 data edges + 2 trailing,
/// with room for some glitches. Preallocated so the timing loop never
/// allocates.
pub const MAX_EDGES: usize = 2 * (BITS + 2) + 16;

/// One level change on the data line, `at_us` after the host released it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub at_us: u32,
    /// The level the line changed to.
    pub high: bool,
}

/// The data line as the capture loop sees it.
pub trait DataLine {
    /// Samples the line.
    fn is_high(&mut self) -> bool;
    /// Microseconds since the host released the line, from a monotonic
    /// clock.
    fn now_us(&mut self) -> u32;
}

/// What a capture saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub edges: Vec<Edge>,
    /// The line's level when the capture stopped.
    pub ended_high: bool,
}

/// Samples `line` in a busy loop from the moment the host released it,
/// recording every level change, until the line has been idle for
/// [`IDLE_US`] or [`CAPTURE_BUDGET_US`] has passed. Never allocates after
/// its first line and never loops unbounded.
pub fn capture(line: &mut impl DataLine) -> Capture {
    let mut edges = Vec::with_capacity(MAX_EDGES);
    let mut level = line.is_high();
    let mut last_change_us = line.now_us();
    loop {
        let now = line.now_us();
        let sample = line.is_high();
        if sample != level {
            level = sample;
            last_change_us = now;
            // A line noisier than MAX_EDGES is garbage anyway; dropping the
            // rest keeps the loop allocation-free and the decoder rejects it.
            if edges.len() < MAX_EDGES {
                edges.push(Edge {
                    at_us: now,
                    high: sample,
                });
            }
        }
        if now.saturating_sub(last_change_us) > IDLE_US || now > CAPTURE_BUDGET_US {
            break;
        }
    }
    Capture {
        edges,
        ended_high: level,
    }
}

/// Widths (µs) of the complete high pulses, rising edge to falling edge,
/// in order. The high level before the sensor's first falling edge (the
/// released line) and after its last rising edge (the idle line) have no
/// matching edge and are not pulses.
pub fn high_pulses(edges: &[Edge]) -> Vec<u32> {
    let mut pulses = Vec::with_capacity(BITS + 1);
    let mut rose_at = None;
    for edge in edges {
        match (edge.high, rose_at) {
            (true, _) => rose_at = Some(edge.at_us),
            (false, Some(start)) => {
                pulses.push(edge.at_us.saturating_sub(start));
                rose_at = None;
            }
            (false, None) => {}
        }
    }
    pulses
}

/// Turns a capture into a reading: [`Dht22Error::NoResponse`] when the
/// sensor never pulled the line low, [`Dht22Error::Timeout`] when the line
/// was left low, otherwise the last 40 high pulses go through
/// [`dht22::decode_pulses`] and [`dht22::decode_frame`].
///
/// The data are the *last* 40 pulses, not "all but the first": before them
/// come the sensor's 80 µs response pulse and, when the line was still low
/// at the first sample (a slow pull-up, a long cable), one more pulse from
/// the line rising to the sensor pulling it low. So a capture holds 41 or
/// 42 pulses; any other count lost or gained edges and is
/// [`Dht22Error::PulseCount`] (counting data pulses, the response excluded).
pub fn decode_capture(capture: &Capture) -> Result<Dht22Reading, Dht22Error> {
    if !capture.edges.iter().any(|e| !e.high) {
        return Err(Dht22Error::NoResponse);
    }
    if !capture.ended_high {
        return Err(Dht22Error::Timeout);
    }
    let pulses = high_pulses(&capture.edges);
    let data = match pulses.len() {
        n if n == BITS + 1 || n == BITS + 2 => &pulses[n - BITS..],
        n => {
            return Err(Dht22Error::PulseCount {
                got: n.saturating_sub(1),
            })
        }
    };
    dht22::decode_frame(dht22::decode_pulses(data)?)
}

/// Capture and decode: everything after the start signal.
pub fn read(line: &mut impl DataLine) -> Result<Dht22Reading, Dht22Error> {
    decode_capture(&capture(line))
}

/// The error a plugin (and `probe`) sees, with what to do about it.
pub fn to_hw_error(pin: u8, error: Dht22Error) -> HwError {
    match error {
        Dht22Error::NoResponse => HwError::NotPresent(format!(
            "{error}: no DHT22 answered on GPIO {pin}; check that DATA is on GPIO {pin} \
             (the BCM number, not the header pin), VCC on 3.3 V, GND, and a 4.7 kΩ pull-up \
             to 3.3 V on a bare sensor"
        )),
        Dht22Error::Timeout => HwError::Sensor(format!(
            "{error}: the line stayed low; check for a loose DATA wire or a missing \
             4.7 kΩ pull-up to 3.3 V"
        )),
        Dht22Error::Checksum { .. } => HwError::Sensor(format!(
            "{error}; the next read retries (frequent ones: add a 4.7–10 kΩ pull-up, \
             shorten the wire)"
        )),
        Dht22Error::PulseCount { .. } => HwError::Sensor(format!(
            "{error}; the next read retries (frequent ones: the host was descheduled, \
             see docs/hardware.md on real-time priority)"
        )),
        Dht22Error::OutOfRange { .. } => HwError::Sensor(format!(
            "{error}; is the part on GPIO {pin} a DHT22/AM2302 (a DHT11 answers in \
             another format)?"
        )),
    }
}

/// [`read`] with the reading converted for the hardware thread.
pub fn read_sample(pin: u8, line: &mut impl DataLine) -> Result<Dht22Sample, HwError> {
    read(line)
        .map(|r| Dht22Sample {
            temperature_c: r.temperature_c,
            humidity_pct: r.humidity_pct,
        })
        .map_err(|e| to_hw_error(pin, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line that follows a list of edges on a virtual clock advancing
    /// `step_us` per sample.
    struct Scripted {
        edges: Vec<Edge>,
        t_us: u32,
        step_us: u32,
    }

    impl DataLine for Scripted {
        fn is_high(&mut self) -> bool {
            self.edges
                .iter()
                .take_while(|e| e.at_us <= self.t_us)
                .last()
                .is_none_or(|e| e.high)
        }
        fn now_us(&mut self) -> u32 {
            self.t_us += self.step_us;
            self.t_us
        }
    }

    /// The edges of a conforming transfer of `frame`.
    fn transfer(frame: [u8; 5]) -> Vec<Edge> {
        let mut t = 30;
        let mut edges = vec![Edge {
            at_us: t,
            high: false,
        }];
        t += 80;
        edges.push(Edge {
            at_us: t,
            high: true,
        });
        t += 80;
        for width in dht22::encode_pulses(frame, 27, 70) {
            edges.push(Edge {
                at_us: t,
                high: false,
            });
            t += 50;
            edges.push(Edge {
                at_us: t,
                high: true,
            });
            t += width;
        }
        edges.push(Edge {
            at_us: t,
            high: false,
        });
        edges.push(Edge {
            at_us: t + 50,
            high: true,
        });
        edges
    }

    fn line(edges: Vec<Edge>) -> Scripted {
        Scripted {
            edges,
            t_us: 0,
            step_us: 1,
        }
    }

    #[test]
    fn a_conforming_transfer_decodes() {
        let frame = dht22::encode_frame(-10.1, 65.2);
        let reading = read(&mut line(transfer(frame))).unwrap();
        assert_eq!(reading.temperature_c, -10.1);
        assert_eq!(reading.humidity_pct, 65.2);
    }

    #[test]
    fn a_line_still_low_at_the_first_sample_decodes() {
        // A slow pull-up: when the capture starts, the released line has not
        // risen yet. It rises at 15 µs, then the sensor answers as usual, so
        // the capture sees one more high pulse (15..30 µs) before the
        // response: 42 in all, of which the last 40 are the data.
        let frame = dht22::encode_frame(21.7, 48.3);
        let mut edges = vec![
            Edge {
                at_us: 0,
                high: false,
            },
            Edge {
                at_us: 15,
                high: true,
            },
        ];
        edges.extend(transfer(frame));
        let mut slow = line(edges);
        let capture = capture(&mut slow);
        assert!(
            !capture.edges.is_empty() && capture.edges[0].high,
            "starts low, then rises"
        );
        assert_eq!(high_pulses(&capture.edges).len(), BITS + 2);
        let reading = decode_capture(&capture).unwrap();
        assert_eq!(reading.temperature_c, 21.7);
        assert_eq!(reading.humidity_pct, 48.3);
    }

    #[test]
    fn a_spurious_extra_pulse_is_a_pulse_count_error() {
        // Three pulses before the data: one more than a slow pull-up explains.
        let mut edges = vec![
            Edge {
                at_us: 0,
                high: false,
            },
            Edge {
                at_us: 5,
                high: true,
            },
            Edge {
                at_us: 10,
                high: false,
            },
            Edge {
                at_us: 15,
                high: true,
            },
        ];
        edges.extend(transfer(dht22::encode_frame(20.0, 50.0)));
        assert_eq!(
            read(&mut line(edges)),
            Err(Dht22Error::PulseCount { got: 42 })
        );
    }

    #[test]
    fn coarse_sampling_still_decodes() {
        // A slow Pi Zero may sample the pin only every few µs.
        let frame = dht22::encode_frame(23.4, 41.0);
        let mut slow = line(transfer(frame));
        slow.step_us = 7;
        assert_eq!(read(&mut slow).unwrap().temperature_c, 23.4);
    }

    #[test]
    fn a_silent_line_is_no_response_and_stops_early() {
        let mut silent = line(Vec::new());
        let capture = capture(&mut silent);
        assert_eq!(decode_capture(&capture), Err(Dht22Error::NoResponse));
        assert!(silent.t_us <= IDLE_US + 2, "waited {} µs", silent.t_us);
    }

    #[test]
    fn a_line_stuck_low_is_a_timeout() {
        let mut edges = transfer(dht22::encode_frame(20.0, 50.0));
        edges.truncate(30);
        let last = edges.last().unwrap().at_us;
        edges.retain(|e| e.at_us < last);
        edges.push(Edge {
            at_us: last,
            high: false,
        });
        assert_eq!(read(&mut line(edges)), Err(Dht22Error::Timeout));
    }

    #[test]
    fn a_noisy_line_is_bounded_by_the_budget() {
        // Toggles every 10 µs forever: the capture must still stop.
        let edges = (1..10_000)
            .map(|i| Edge {
                at_us: i * 10,
                high: i % 2 == 0,
            })
            .collect();
        let mut noisy = line(edges);
        let capture = capture(&mut noisy);
        assert!(noisy.t_us <= CAPTURE_BUDGET_US + 1);
        assert_eq!(capture.edges.len(), MAX_EDGES);
        assert!(decode_capture(&capture).is_err());
    }

    #[test]
    fn a_lost_bit_is_a_pulse_count_error() {
        let mut edges = transfer(dht22::encode_frame(20.0, 50.0));
        // Drop bit 7's rising and falling edge: its high merges into a low.
        edges.drain(2 + 2 * 7 + 1..2 + 2 * 7 + 3);
        assert_eq!(
            read(&mut line(edges)),
            Err(Dht22Error::PulseCount { got: 39 })
        );
    }

    #[test]
    fn high_pulses_ignore_unmatched_levels() {
        let edges = [
            Edge {
                at_us: 5,
                high: false,
            },
            Edge {
                at_us: 10,
                high: true,
            },
            Edge {
                at_us: 40,
                high: false,
            },
            Edge {
                at_us: 50,
                high: true,
            },
        ];
        assert_eq!(high_pulses(&edges), vec![30]);
    }

    #[test]
    fn errors_name_the_pin_and_the_fix() {
        let message = to_hw_error(4, Dht22Error::NoResponse).to_string();
        assert!(
            message.contains("GPIO 4") && message.contains("pull-up"),
            "{message}"
        );
        assert!(matches!(
            to_hw_error(4, Dht22Error::Checksum { expected: 1, got: 2 }),
            HwError::Sensor(m) if m.contains("checksum")
        ));
    }
}
