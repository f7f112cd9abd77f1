//! The clock: embassy-time's, as the core's `Instant`.

use wharf_core::Instant;

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
