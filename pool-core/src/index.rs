//! Slot index width: how storage names its slots.
//!
//! Every list link, timer-heap position, hash bucket and cross-slot reference
//! in storage is an index. [`Storage`](crate::Storage) and
//! [`Pool`](crate::Pool) take the index type as a parameter: `u32` (the
//! default, up to 2^30 - 1 slots of each kind, for servers) or `u16` (up to
//! 8,191 slots of each kind, for firmware: every link half the size). The
//! pool's logic works in `u32` throughout; an index is widened when read and
//! narrowed when stored, both free on every target (`u16` is read
//! sign-extended, so its "none" value 0xFFFF reads as `u32::MAX`, the same
//! "none" as a `u32` index).
//!
//! ```
//! use wharf_core::{Config, Pool, Storage};
//! // 16-bit indices: the same pool in less RAM.
//! let mut storage: Storage<u8, 4, 2, 8, 4, u16> = Storage::new();
//! let cfg = Config { max_total: 4, max_per_route: 2, ..Config::default() };
//! let pool = Pool::new(&mut storage, cfg).unwrap();
//! assert_eq!(pool.stats().connections, 0);
//! ```

use core::fmt::Debug;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
}

/// The integer type storage uses to name its slots: `u32` or `u16` (sealed).
pub trait Index: Copy + Eq + Debug + Send + Sync + 'static + sealed::Sealed {
    /// "No slot" as stored.
    #[doc(hidden)]
    const NIL: Self;
    /// Zero, for all-zero storage.
    #[doc(hidden)]
    const ZERO: Self;
    /// The most slots of one kind this width can name: 2^30 - 1 for `u32`,
    /// 8,191 for `u16` (the action queue's links carry the slot's kind in
    /// the two bits above the index).
    const MAX_SLOTS: usize;
    /// Where an action-queue link keeps the kind of slot it names.
    #[doc(hidden)]
    const KIND_SHIFT: u32;
    /// Widens to the pool's working index (`NIL` reads as `u32::MAX`).
    #[doc(hidden)]
    fn get(self) -> u32;
    /// Narrows a working index (below `MAX_SLOTS`, or `u32::MAX` for none).
    #[doc(hidden)]
    fn new(i: u32) -> Self;
}

impl Index for u32 {
    const NIL: u32 = u32::MAX;
    const ZERO: u32 = 0;
    const MAX_SLOTS: usize = (1 << 30) - 1;
    const KIND_SHIFT: u32 = 30;
    #[inline(always)]
    fn get(self) -> u32 {
        self
    }
    #[inline(always)]
    fn new(i: u32) -> u32 {
        i
    }
}

impl Index for u16 {
    const NIL: u16 = u16::MAX;
    const ZERO: u16 = 0;
    const MAX_SLOTS: usize = (1 << 13) - 1;
    const KIND_SHIFT: u32 = 13;
    #[inline(always)]
    fn get(self) -> u32 {
        // Sign extension: 0..=0x7FFF stay (indices, and action links: an
        // index below 2^13 with its kind in bits 13-14), 0xFFFF (NIL)
        // becomes u32::MAX.
        self as i16 as i32 as u32
    }
    #[inline(always)]
    fn new(i: u32) -> u16 {
        i as u16
    }
}

#[cfg(test)]
mod tests {
    use super::Index;

    #[test]
    fn round_trips_and_nil_reads_as_u32_max() {
        // Indices and action-queue entities (kind 2 above the largest index).
        for i in [0u32, 1, 255, 256, 8_190, 2 << 13 | 8_190] {
            assert_eq!(u16::new(i).get(), i);
            assert_eq!(u32::new(i).get(), i);
        }
        assert_eq!(u16::new(u32::MAX), u16::NIL);
        assert_eq!(u16::NIL.get(), u32::MAX);
        assert_eq!(u32::NIL.get(), u32::MAX);
        assert_eq!(u16::MAX_SLOTS, 8_191);
    }
}
