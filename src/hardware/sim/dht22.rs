//! A simulated DHT22 data line: the waveform a sensor would drive, sampled
//! on a virtual clock by the same capture loop the `pi` backend runs.

use super::SimFault;
use crate::drivers::dht22;
use crate::hardware::dht22::{DataLine, Edge};

use super::SplitMix64;

/// Which fault, if any, the sensor shows on this transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LineFault {
    /// One bit of the checksum byte flips.
    Checksum,
    /// One data bit's high pulse is lost (39 pulses).
    MissingEdge,
    /// The sensor does not answer at all.
    Silent,
}

impl LineFault {
    pub(super) fn from_sim(fault: SimFault) -> Option<LineFault> {
        match fault {
            SimFault::Checksum => Some(LineFault::Checksum),
            SimFault::MissingEdge => Some(LineFault::MissingEdge),
            SimFault::NoResponse | SimFault::Absent => Some(LineFault::Silent),
            SimFault::I2cError | SimFault::WrongChipId => None,
        }
    }
}

/// A uniformly drawn width in `lo..=hi` µs.
fn jitter(rng: &mut SplitMix64, lo: u32, hi: u32) -> u32 {
    lo + (rng.next_u64() % u64::from(hi - lo + 1)) as u32
}

/// The edges a sensor drives for `frame`, with widths drawn inside the
/// datasheet's ranges (response 80 µs, bit low 50 µs, 0-bit high 26–28 µs,
/// 1-bit high ~70 µs).
pub(super) fn waveform(
    mut frame: [u8; 5],
    fault: Option<LineFault>,
    rng: &mut SplitMix64,
) -> Vec<Edge> {
    if fault == Some(LineFault::Silent) {
        return Vec::new();
    }
    if fault == Some(LineFault::Checksum) {
        frame[4] ^= 1 << (rng.next_u64() % 8);
    }
    let mut highs = dht22::encode_pulses(frame, 0, 1);
    if fault == Some(LineFault::MissingEdge) {
        highs.remove((rng.next_u64() % highs.len() as u64) as usize);
    }
    let mut edges = Vec::with_capacity(2 * highs.len() + 4);
    let mut t = jitter(rng, 20, 40);
    let mut push = |t: u32, high: bool| edges.push(Edge { at_us: t, high });
    push(t, false);
    t += jitter(rng, 78, 82);
    push(t, true);
    t += jitter(rng, 78, 82);
    for bit in highs {
        push(t, false);
        t += jitter(rng, 48, 55);
        push(t, true);
        t += if bit == 1 {
            jitter(rng, 68, 72)
        } else {
            jitter(rng, 26, 28)
        };
    }
    push(t, false);
    t += jitter(rng, 48, 55);
    push(t, true);
    edges
}

/// The line the capture loop samples: the waveform at the virtual time,
/// which advances 1 µs per clock read (a Pi 4 samples faster; a Pi Zero
/// about this fast).
pub(super) struct SimLine {
    edges: Vec<Edge>,
    next: usize,
    level: bool,
    t_us: u32,
}

impl SimLine {
    pub(super) fn new(edges: Vec<Edge>) -> SimLine {
        SimLine {
            edges,
            next: 0,
            // Released, the pull-up holds the line high.
            level: true,
            t_us: 0,
        }
    }
}

impl DataLine for SimLine {
    fn is_high(&mut self) -> bool {
        while let Some(edge) = self.edges.get(self.next) {
            if edge.at_us > self.t_us {
                break;
            }
            self.level = edge.high;
            self.next += 1;
        }
        self.level
    }

    fn now_us(&mut self) -> u32 {
        self.t_us += 1;
        self.t_us
    }
}
