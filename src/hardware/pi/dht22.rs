//! DHT22 on a GPIO pin: the start signal and a timed capture.
//!
//! The host pulls the line low for [`HOST_START_LOW`], releases it to the
//! pull-up, and then samples the pin in a busy loop against the monotonic
//! clock (the shared [`capture`](crate::hardware::dht22::capture) loop,
//! bounded to a few milliseconds). rppal reads the pin through the
//! memory-mapped GPIO registers (`/dev/gpiomem`), far faster than the
//! sensor's 26 µs shortest pulse, so the only enemy is the scheduler: a
//! thread descheduled mid-transfer misses edges. The thread therefore asks
//! for `SCHED_FIFO` while it times the transfer and drops back afterwards.
//!
//! A failed read is not retried here; see
//! [`DHT22_QUIET_RETRIES`](crate::hardware::DHT22_QUIET_RETRIES) for why the
//! next scheduled read is the retry.
//!
//! # Troubleshooting
//!
//! - **Frequent "sent 39 data pulses" errors**: the thread is being
//!   descheduled. Let the host use real-time priority: run the service with
//!   `AmbientCapabilities=CAP_SYS_NICE` (or `LimitRTPRIO=20`); without it the
//!   host logs once at debug level and carries on at normal priority.
//! - **"did not respond"**: see [`crate::drivers::dht22`]; on a bare
//!   4-pin sensor fit a 4.7 kΩ pull-up from DATA to 3.3 V (modules on a
//!   small board usually have one).

use std::time::Instant;

use rppal::gpio::{Bias, IoPin, Mode, Pin};

use crate::drivers::dht22::HOST_START_LOW;
use crate::hardware::dht22::{read_sample, DataLine};
use crate::hardware::{Dht22Sample, HwError};

/// `SCHED_FIFO` priority while timing: above every normal thread, below the
/// kernel's interrupt threads (50) so the GPIO and timer interrupts still run.
const REALTIME_PRIORITY: i32 = 20;

/// One DHT22's data pin, kept open between reads.
pub struct Dht22Pin {
    pin: IoPin,
}

impl Dht22Pin {
    pub(super) fn new(pin: Pin) -> Dht22Pin {
        let mut pin = pin.into_io(Mode::Input);
        // The internal ~50 kΩ pull-up is weak but keeps a module without
        // its own pull-up from floating between reads.
        pin.set_bias(Bias::PullUp);
        Dht22Pin { pin }
    }

    /// One transfer: start signal, capture, decode.
    pub(super) fn read(
        &mut self,
        pin: u8,
        realtime: &mut Realtime,
    ) -> Result<Dht22Sample, HwError> {
        let _priority = realtime.raise();
        // Level first, then direction, so the line never glitches high.
        self.pin.set_low();
        self.pin.set_mode(Mode::Output);
        // Anything from 0.8 to 20 ms works, so an oversleeping `sleep` is
        // harmless here; the timing that matters starts at the release.
        std::thread::sleep(HOST_START_LOW);
        self.pin.set_mode(Mode::Input);
        let mut line = GpioLine {
            pin: &self.pin,
            released: Instant::now(),
        };
        read_sample(pin, &mut line)
    }
}

struct GpioLine<'a> {
    pin: &'a IoPin,
    released: Instant,
}

impl DataLine for GpioLine<'_> {
    fn is_high(&mut self) -> bool {
        self.pin.is_high()
    }

    fn now_us(&mut self) -> u32 {
        u32::try_from(self.released.elapsed().as_micros()).unwrap_or(u32::MAX)
    }
}

/// Asks for real-time scheduling while a transfer is timed.
#[derive(Debug, Default)]
pub struct Realtime {
    /// Denied once already: do not ask (or log) again.
    denied: bool,
}

/// Restores the thread's scheduling policy when dropped.
pub struct Restore {
    policy: i32,
    param: libc::sched_param,
}

impl Realtime {
    /// Switches the calling thread to `SCHED_FIFO` until the guard drops;
    /// `None` (and one debug log line) if the OS refuses.
    pub fn raise(&mut self) -> Option<Restore> {
        if self.denied {
            return None;
        }
        // SAFETY: plain syscalls on the calling thread (pid 0) with
        // initialised arguments; `sched_param` is a C struct of integers,
        // for which all-zero is a valid value.
        unsafe {
            let policy = libc::sched_getscheduler(0);
            let mut param: libc::sched_param = std::mem::zeroed();
            if policy < 0 || libc::sched_getparam(0, &mut param) != 0 {
                self.deny();
                return None;
            }
            let mut fifo: libc::sched_param = std::mem::zeroed();
            fifo.sched_priority = REALTIME_PRIORITY;
            if libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) != 0 {
                self.deny();
                return None;
            }
            Some(Restore { policy, param })
        }
    }

    fn deny(&mut self) {
        self.denied = true;
        log::debug!(
            "DHT22: real-time priority not permitted ({}); timing at normal priority \
             (grant CAP_SYS_NICE or LimitRTPRIO to the service for fewer missed edges)",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: restores the values read in `raise` on the same thread.
        unsafe {
            libc::sched_setscheduler(0, self.policy, &self.param);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_is_granted_or_refused_without_harm() {
        let mut realtime = Realtime::default();
        let before = unsafe { libc::sched_getscheduler(0) };
        {
            let guard = realtime.raise();
            if guard.is_some() {
                assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_FIFO);
            } else {
                assert!(realtime.denied);
                // Once refused, it is not asked again.
                assert!(realtime.raise().is_none());
            }
        }
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, before);
    }
}
