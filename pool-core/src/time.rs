//! The core's own clock types.
//!
//! The core never reads a clock: every input carries `now`. Both types count
//! **microseconds** in a `u64` (about 584,000 years), so they are the same on
//! a Cortex-M0 and on a server. All arithmetic saturates; nothing here panics.

use core::ops::{Add, Sub};

/// A point in time, in microseconds since an epoch the backend chooses
/// (boot time on a microcontroller, the pool's creation on a server).
///
/// ```
/// use wharf_core::{Duration, Instant};
/// let t = Instant::from_millis(1_500);
/// assert_eq!(t.as_micros(), 1_500_000);
/// assert_eq!(t + Duration::from_secs(1), Instant::from_millis(2_500));
/// assert_eq!(Instant::from_millis(2_500) - t, Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant {
    micros: u64,
}

/// A span of time in microseconds.
///
/// ```
/// use wharf_core::Duration;
/// assert_eq!(Duration::from_secs(2).as_micros(), 2_000_000);
/// assert_eq!(Duration::from(core::time::Duration::from_millis(3)), Duration::from_millis(3));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Duration {
    micros: u64,
}

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant { micros: 0 };
    /// The latest representable instant; used as "never".
    pub const MAX: Instant = Instant { micros: u64::MAX };

    /// An instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant { micros }
    }
    /// An instant `millis` milliseconds after the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant {
            micros: millis.saturating_mul(1_000),
        }
    }
    /// An instant `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Instant {
            micros: secs.saturating_mul(1_000_000),
        }
    }
    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }
    /// Milliseconds since the epoch (truncated).
    pub const fn as_millis(self) -> u64 {
        self.micros / 1_000
    }
    /// A deadline that has come at `now`. `Instant::MAX` means never, so it
    /// is never reached, even at `now == Instant::MAX` (SEMANTICS §2).
    #[inline(always)]
    pub(crate) fn reached(self, now: Instant) -> bool {
        self.micros != u64::MAX && self.micros <= now.micros
    }

    /// The instant after `self` (saturating): `t.reached(now)` is
    /// `t < now.after_by_one()`, one comparison (for `now` < `MAX` both say
    /// `t <= now`; for `now` = `MAX` both say `t != MAX`).
    #[inline(always)]
    pub(crate) fn after_by_one(self) -> Instant {
        Instant {
            micros: self.micros.saturating_add(1),
        }
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub const fn saturating_add(self, d: Duration) -> Instant {
        Instant {
            micros: self.micros.saturating_add(d.micros),
        }
    }
    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration {
            micros: self.micros.saturating_sub(earlier.micros),
        }
    }
}

impl Duration {
    /// No time.
    pub const ZERO: Duration = Duration { micros: 0 };
    /// The longest representable duration.
    pub const MAX: Duration = Duration { micros: u64::MAX };

    /// `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        Duration { micros }
    }
    /// `millis` milliseconds (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Duration {
            micros: millis.saturating_mul(1_000),
        }
    }
    /// `secs` seconds (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Duration {
            micros: secs.saturating_mul(1_000_000),
        }
    }
    /// Whole microseconds.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }
    /// Whole milliseconds (truncated).
    pub const fn as_millis(self) -> u64 {
        self.micros / 1_000
    }
    /// True for a zero duration.
    pub const fn is_zero(self) -> bool {
        self.micros == 0
    }
}

impl From<core::time::Duration> for Duration {
    /// Converts, truncating below a microsecond and saturating above `u64::MAX` µs.
    fn from(d: core::time::Duration) -> Self {
        let micros = d.as_micros();
        Duration {
            micros: if micros > u64::MAX as u128 {
                u64::MAX
            } else {
                micros as u64
            },
        }
    }
}

impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> Self {
        core::time::Duration::from_micros(d.micros)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating addition.
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating difference (zero when `rhs` is later).
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl Add for Duration {
    type Output = Duration;
    /// Saturating addition.
    fn add(self, rhs: Duration) -> Duration {
        Duration {
            micros: self.micros.saturating_add(rhs.micros),
        }
    }
}
