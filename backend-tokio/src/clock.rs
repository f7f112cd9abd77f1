//! The pool's clock: the core's microseconds since the pool was built, read
//! once per operation, before the lock is taken.
//!
//! Two sources, chosen at build:
//!
//! - **Coarse** (Linux, on a multi-thread runtime): `CLOCK_MONOTONIC_COARSE`,
//!   the time the kernel's timekeeping last stored, read from the vDSO
//!   without touching the time-stamp counter (~6-9 ns against ~31-34 ns for
//!   `CLOCK_MONOTONIC` on the 2-core machine of `docs/PERFORMANCE.md`, and
//!   ~26 instructions, 10 of them glibc's `clock_gettime` wrapper, against
//!   ~85 for `tokio::time::Instant::now()` and the conversion to
//!   microseconds under callgrind). Its resolution is the kernel's tick
//!   (`clock_getres`: 4 ms there, 1-10 ms on Linux) and it lags
//!   `CLOCK_MONOTONIC` by up to about two ticks (measured there: 3-8 ms,
//!   25 of 25 million reads up to 11 ms), so it is read as an upper bound:
//!   the stored time plus two ticks. It is on `CLOCK_MONOTONIC`'s timeline,
//!   the one std's and tokio's `Instant` use on Linux, so a core instant
//!   maps to a tokio instant for the timer task's sleep, which then never
//!   ends before the real deadline. A lease's deadline gets two more ticks
//!   ([`Clock::lease_wait`]): two readings differ from the time between them
//!   by up to the lag's spread, and the core fires a due deadline at any
//!   input, so a lease never times out early (it times out up to ~4 ticks
//!   late). The deadlines the core sets itself from the reading (connect
//!   timeout, idle timeout, lifetime, keep-alive, backoff) and the hand-out
//!   check's idle time are exact to the spread (~5 ms there): right for pool
//!   timers, whose settings are milliseconds to minutes.
//! - **Tokio** (`tokio::time::Instant::now()`): everywhere else, and on a
//!   current-thread runtime, the only kind whose clock tokio can pause
//!   (`tokio::time::pause`, `start_paused` with `test-util`): there the pool
//!   follows tokio's clock exactly, paused, advanced and auto-advanced.
//!
//! Either way the core never moves time backwards (it keeps the latest
//! reading it was given), so a reading another thread overtook before taking
//! the lock is taken as the core's current time.

use tokio::runtime::{Handle, RuntimeFlavor};
use wharf_core::{Duration, Instant};

/// The pool's clock (see the module docs).
pub(crate) struct Clock {
    /// tokio's instant of the core's `Instant::ZERO`.
    base: tokio::time::Instant,
    #[cfg(target_os = "linux")]
    coarse: Option<Coarse>,
}

/// `CLOCK_MONOTONIC_COARSE` as the core's microseconds.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, Debug)]
struct Coarse {
    /// `CLOCK_MONOTONIC` at build, in microseconds: the core's time is
    /// `coarse + lead - base`.
    base: u64,
    /// How far the reading is put ahead, in microseconds: two ticks
    /// (`clock_getres`, the kernel's tick). The coarse clock lags
    /// `CLOCK_MONOTONIC` by up to about two ticks: 3-8 ms with a 4 ms tick
    /// on the benchmark machine.
    lead: u64,
}

#[cfg(target_os = "linux")]
impl Coarse {
    /// The coarse clock, if the kernel has one with a tick of at most 100 ms.
    fn new(base_micros: u64) -> Option<Self> {
        use rustix::time::{clock_getres, clock_gettime_dynamic, ClockId, DynamicClockId};
        // Asked once with an error returned (a sandbox may refuse it), so the
        // warm path's infallible read cannot fail.
        clock_gettime_dynamic(DynamicClockId::Known(ClockId::MonotonicCoarse)).ok()?;
        let res = clock_getres(ClockId::MonotonicCoarse);
        let tick = micros(res).max(1);
        (res.tv_sec == 0 && tick <= 100_000).then_some(Coarse {
            base: base_micros,
            lead: 2 * tick,
        })
    }

    #[inline(always)]
    fn now(self) -> Instant {
        let c = micros(rustix::time::clock_gettime(
            rustix::time::ClockId::MonotonicCoarse,
        ));
        // `c + lead >= base` unless the coarse clock lagged by more than
        // `lead` just after the build: then the pool's time is still zero.
        Instant::from_micros((c + self.lead).saturating_sub(self.base))
    }
}

/// Microseconds of a `timespec` (a monotonic clock's: non-negative).
#[cfg(target_os = "linux")]
#[inline(always)]
fn micros(t: rustix::time::Timespec) -> u64 {
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000)
        .wrapping_add(t.tv_nsec as u64 / 1_000)
}

impl Clock {
    /// The clock of a pool whose tasks run on `rt`.
    pub(crate) fn new(rt: &Handle) -> Self {
        // Read `CLOCK_MONOTONIC` first and tokio's clock second (the same
        // clock when tokio's is not paused): tokio's base is not earlier, so a
        // core instant's tokio instant is never later than the real instant
        // the coarse clock reads as it (the timer task's sleeps end in time).
        #[cfg(target_os = "linux")]
        let base_micros = micros(rustix::time::clock_gettime(
            rustix::time::ClockId::Monotonic,
        ));
        let base = tokio::time::Instant::now();
        // Only a current-thread runtime can pause its clock.
        #[cfg(target_os = "linux")]
        let coarse = match rt.runtime_flavor() {
            RuntimeFlavor::MultiThread => Coarse::new(base_micros),
            _ => None,
        };
        #[cfg(not(target_os = "linux"))]
        let _ = (rt, RuntimeFlavor::CurrentThread);
        Clock {
            base,
            #[cfg(target_os = "linux")]
            coarse,
        }
    }

    /// The core's clock: one read of the coarse clock, or of tokio's.
    #[inline(always)]
    pub(crate) fn now(&self) -> Instant {
        #[cfg(target_os = "linux")]
        if let Some(c) = self.coarse {
            return c.now();
        }
        self.tokio_now()
    }

    /// tokio's clock as the core's time.
    #[inline]
    fn tokio_now(&self) -> Instant {
        let d = tokio::time::Instant::now().saturating_duration_since(self.base);
        // u64 arithmetic (`as_micros` is u128): a pool lives far less than
        // 584,000 years.
        Instant::from_micros(d.as_secs() * 1_000_000 + u64::from(d.subsec_micros()))
    }

    /// The time for the timer task, just woken by a sleep that ended at a
    /// deadline's tokio instant: the later of the clock and tokio's own, so
    /// the deadline is due even if the coarse clock lagged more than a tick
    /// (the task never wakes again for a deadline it was woken for).
    pub(crate) fn now_for_timer(&self) -> Instant {
        #[cfg(target_os = "linux")]
        if let Some(c) = self.coarse {
            return c.now().max(self.tokio_now());
        }
        self.tokio_now()
    }

    /// How long after a reading of this clock a lease that may wait
    /// `timeout` times out. On the coarse clock two more ticks: two readings
    /// differ from the time between them by up to the clock's lag spread
    /// (about a tick), and the core fires a due deadline at any input, so
    /// without them a lease could time out that much early.
    /// `Duration::ZERO` stays "do not wait" (a deadline already reached).
    pub(crate) fn lease_wait(&self, timeout: Duration) -> Duration {
        #[cfg(target_os = "linux")]
        if let Some(c) = self.coarse {
            if timeout != Duration::ZERO {
                return timeout + Duration::from_micros(c.lead);
            }
        }
        timeout
    }

    /// The tokio instant of a core instant.
    pub(crate) fn deadline(&self, t: Instant) -> tokio::time::Instant {
        // Far-future instants are capped (tokio's own limit is ~30 years).
        let micros = t.as_micros().min(365 * 24 * 3600 * 1_000_000);
        self.base + std::time::Duration::from_micros(micros)
    }

    /// The clock's source and resolution in microseconds (1 for tokio's).
    #[cfg(test)]
    pub(crate) fn source(&self) -> (&'static str, u64) {
        #[cfg(target_os = "linux")]
        if let Some(c) = self.coarse {
            return ("CLOCK_MONOTONIC_COARSE", c.lead / 2);
        }
        ("tokio::time::Instant", 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(multi: bool) -> tokio::runtime::Runtime {
        let mut b = if multi {
            tokio::runtime::Builder::new_multi_thread()
        } else {
            tokio::runtime::Builder::new_current_thread()
        };
        b.worker_threads(1).enable_all().build().unwrap()
    }

    #[test]
    fn a_current_thread_runtime_keeps_tokios_clock() {
        let rt = runtime(false);
        let clock = rt.block_on(async { Clock::new(&Handle::current()) });
        assert_eq!(clock.source(), ("tokio::time::Instant", 1));
    }

    #[test]
    fn a_multi_thread_runtime_on_linux_reads_the_coarse_clock() {
        let rt = runtime(true);
        let clock = rt.block_on(async { Clock::new(&Handle::current()) });
        let (source, tick) = clock.source();
        if cfg!(target_os = "linux") {
            assert_eq!(source, "CLOCK_MONOTONIC_COARSE");
            assert!((1..=100_000).contains(&tick));
        } else {
            assert_eq!(source, "tokio::time::Instant");
        }
    }

    #[test]
    fn the_clock_never_goes_backwards_and_the_timer_time_is_tokios_or_later() {
        for multi in [false, true] {
            let rt = runtime(multi);
            let clock = rt.block_on(async { Clock::new(&Handle::current()) });
            let mut last = Instant::ZERO;
            for _ in 0..10_000 {
                let now = clock.now();
                assert!(now >= last);
                last = now;
            }
            // "Do not wait" stays a deadline already reached; any other
            // timeout ends no earlier than asked.
            let t = Duration::from_millis(17);
            assert_eq!(clock.lease_wait(Duration::ZERO), Duration::ZERO);
            assert!(clock.lease_wait(t) >= t);
            let before = clock.tokio_now();
            assert!(clock.now_for_timer() >= before);
            // A core instant maps back to tokio's timeline.
            let t = clock.now_for_timer();
            assert!(clock.deadline(t) >= clock.base);
        }
    }
}
