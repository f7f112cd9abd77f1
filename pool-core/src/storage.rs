//! Fixed storage for a pool: sized once, never grown.
//!
//! Two ways to get it:
//! - [`Storage`]: const-generic arrays, for firmware (`static` via `StaticCell`,
//!   or on the stack). `Pool::new(&mut storage, config)` borrows it.
//! - [`Capacity`] with `Pool::with_capacity` (feature `alloc`): boxed slices
//!   allocated once at construction, for servers with thousands of connections.
//!
//! Either way the pool works over plain slices ([`Slots`]); nothing allocates
//! after construction.

use core::ops::{Deref, DerefMut};

use crate::index::Index;
use crate::slot::{ConnSlot, HeapEntry, LeaseSlot, RouteSlot, WaiterSlot};

/// A slice the pool either borrows or (with `alloc`) owns.
pub(crate) enum Slots<'a, T> {
    Borrowed(&'a mut [T]),
    #[cfg(feature = "alloc")]
    Owned(alloc::boxed::Box<[T]>),
}

impl<T> Deref for Slots<'_, T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        match self {
            Slots::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Slots::Owned(b) => b,
        }
    }
}

impl<T> DerefMut for Slots<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Slots::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Slots::Owned(b) => b,
        }
    }
}

/// Const-generic storage for a pool with `CONNS` connection slots, `ROUTES`
/// route slots, `WAITERS` waiter slots and `LEASES` lease slots.
///
/// Size it as: `CONNS >= max_total` (one or two more lets an eviction connect
/// before the evicted connection's `Close` is polled), `ROUTES` = routes in use
/// at once, `WAITERS >= max_pending`, `LEASES` = leases in use at once
/// (`CONNS` for HTTP/1).
///
/// `I` is the index width ([`Index`]): `u32` by default, or `u16` when every
/// count is at most 8,191 (checked when the storage is built: a larger
/// count does not compile), which halves every link in every slot.
///
/// ```
/// use wharf_core::{Config, Pool, Storage};
/// let mut storage: Storage<u8, 4, 2, 8, 4> = Storage::new();
/// let cfg = Config { max_total: 4, max_per_route: 2, ..Config::default() };
/// let pool = Pool::new(&mut storage, cfg).unwrap();
/// assert_eq!(pool.stats().connections, 0);
/// ```
pub struct Storage<
    K,
    const CONNS: usize,
    const ROUTES: usize,
    const WAITERS: usize,
    const LEASES: usize,
    I: Index = u32,
> {
    pub(crate) conns: [ConnSlot<I>; CONNS],
    pub(crate) routes: [RouteSlot<K, I>; ROUTES],
    pub(crate) buckets: [I; ROUTES],
    pub(crate) waiters: [WaiterSlot<I>; WAITERS],
    pub(crate) leases: [LeaseSlot<I>; LEASES],
    pub(crate) conn_heap: [HeapEntry<I>; CONNS],
    pub(crate) conn_pos: [I; CONNS],
    pub(crate) waiter_heap: [HeapEntry<I>; WAITERS],
    pub(crate) waiter_pos: [I; WAITERS],
    pub(crate) route_heap: [HeapEntry<I>; ROUTES],
    pub(crate) route_pos: [I; ROUTES],
}

impl<K, const C: usize, const R: usize, const W: usize, const L: usize, I: Index>
    Storage<K, C, R, W, L, I>
{
    /// Empty storage; `const`, so it can initialise a `static`. It is all zero
    /// bytes (`Pool::new` initialises every slot), so a `static` of it lands
    /// in `.bss` and costs no flash.
    ///
    /// A count beyond what the index width names (`I::MAX_SLOTS`) does not
    /// compile.
    pub const fn new() -> Self {
        const {
            assert!(
                C <= I::MAX_SLOTS && R <= I::MAX_SLOTS && W <= I::MAX_SLOTS && L <= I::MAX_SLOTS,
                "a slot count exceeds what the storage's index type can name"
            )
        };
        Storage {
            conns: [ConnSlot::ZEROED; C],
            routes: [const { RouteSlot::ZEROED }; R],
            buckets: [I::ZERO; R],
            waiters: [WaiterSlot::ZEROED; W],
            leases: [LeaseSlot::ZEROED; L],
            conn_heap: [HeapEntry::ZEROED; C],
            conn_pos: [I::ZERO; C],
            waiter_heap: [HeapEntry::ZEROED; W],
            waiter_pos: [I::ZERO; W],
            route_heap: [HeapEntry::ZEROED; R],
            route_pos: [I::ZERO; R],
        }
    }
}

impl<K, const C: usize, const R: usize, const W: usize, const L: usize, I: Index> Default
    for Storage<K, C, R, W, L, I>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Slot counts for runtime-sized storage (`Pool::with_capacity`, feature `alloc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Connection slots (>= `max_total`).
    pub conns: usize,
    /// Route slots.
    pub routes: usize,
    /// Waiter slots (>= `max_pending`).
    pub waiters: usize,
    /// Lease slots.
    pub leases: usize,
}
