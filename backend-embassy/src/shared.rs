//! The pool's shared state (the driver behind a `RefCell`) and the clock.

use core::cell::RefCell;

use wharf_core::Instant;
use wharf_driver::Driver;

use crate::route::Route;
use crate::sockets::Net;

/// The driver, with the embassy-net sockets as its I/O.
pub(crate) type Inner<'d> = Driver<'d, Route, Net<'d>>;

/// The core pool type this backend drives, keyed by [`Route`].
pub type CorePool<'d> = wharf_core::Pool<'d, Route>;

/// What the pool handle, the leases and the runner share (single-threaded:
/// the stack is `!Send`, so a `RefCell` is the lock, never held across an
/// `.await`).
pub(crate) struct Shared<'d> {
    pub inner: RefCell<Inner<'d>>,
}

/// The core's clock: embassy-time's, in microseconds.
pub(crate) fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

/// The first tick at or after `t` (rounding down would wake the timer task
/// before the deadline, and it would spin until the clock reaches it).
pub(crate) fn to_embassy(t: Instant) -> embassy_time::Instant {
    const HZ: u64 = embassy_time::TICK_HZ;
    let ticks = if HZ <= 1_000_000 && 1_000_000 % HZ == 0 {
        // The usual tick rates (1 MHz, 1 kHz, ...): no 128-bit division.
        t.as_micros().div_ceil(1_000_000 / HZ)
    } else {
        let ticks = (u128::from(t.as_micros()) * u128::from(HZ)).div_ceil(1_000_000);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    };
    embassy_time::Instant::from_ticks(ticks)
}
