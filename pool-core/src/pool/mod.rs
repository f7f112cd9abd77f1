//! The pool state machine: [`Pool`] and its inputs and outputs.
//!
//! The state is in `crate::tables` (connections, routes, waiters, leases:
//! each table owns its slots, lists, timers and counts). This module holds
//! what runs over them: one file per group of inputs (`lease`, `release`,
//! `connect`, `drain`, `limits`, `hosts`), and the routines they share:
//! `routes` (per-route settings, idle notices, `settle`), `capacity`
//! (connect decisions: demand, preconnect, warm-up, eviction, blocked routes,
//! the cross-route yield), `conns` (connection transitions across tables),
//! `waiters` (queues, grants, failures), `timers` (deadlines), `actions` (the
//! output queue) and `fast` (the warm lease and release).

mod actions;
mod capacity;
mod connect;
mod conns;
mod drain;
mod fast;
mod hosts;
mod lease;
mod limits;
mod release;
mod routes;
mod timers;
mod waiters;

use core::hash::Hash;

use crate::config::{Config, ConfigError, Settings};
use crate::handle::{ConnId, Lease, RouteId, Tag, WaiterId};
use crate::heap::Heap;
use crate::index::Index;
use crate::slot::{ConnSlot, HeapEntry, LeaseSlot, RouteSlot, WaiterSlot, NIL};
use crate::stats::{Counters, PoolStats, RouteStats};
use crate::storage::{Slots, Storage};
use crate::tables::{Conns, Leases, Routes, Waiters};
use crate::time::{Duration, Instant};

pub use drain::{DrainMode, DrainScope};
pub use hosts::RouteLoad;

/// Answer to [`Pool::lease`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LeaseOutcome {
    /// A connection was free: here is the lease.
    Granted(Lease),
    /// The request waits; its answer comes as [`Action::Granted`](crate::Action::Granted)
    /// or [`Action::Failed`](crate::Action::Failed) for this waiter.
    Queued(WaiterId),
}

/// What [`Pool::cancel`] withdrew, so a backend can account for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Cancelled {
    /// The request was still waiting (queued, or bound to a validation).
    Waiting,
    /// The request had been granted this lease, not yet polled: the grant was
    /// undone, the connection is back as it was (tag, idle time and
    /// keep-alive expiry kept, §7).
    Grant(Lease),
    /// The request had failed for this reason, not yet polled.
    Failure(crate::action::FailReason),
}

/// How a lease comes back to [`Pool::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Release {
    /// The connection is healthy and may serve another lease.
    Reuse {
        /// Keep-alive the server announced: the connection expires at
        /// `min(now + keep_alive, created + max_lifetime)`.
        keep_alive: Option<Duration>,
        /// The connection's tag from now on (`None` = untagged).
        tag: Option<Tag>,
    },
    /// The connection is broken or its state unknown: never reuse it.
    Discard,
}

impl Release {
    /// Reusable, no keep-alive, untagged.
    pub const REUSE: Release = Release::Reuse {
        keep_alive: None,
        tag: None,
    };
}

/// Result of a validation the pool asked for with [`Action::Validate`](crate::Action::Validate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Validation {
    /// Still usable.
    Alive,
    /// Closed by the peer, reset, or unexpected bytes pending.
    Stale,
}

/// The pool. See the [crate docs](crate) for how to drive it and
/// `docs/SEMANTICS.md` for the exact rules.
///
/// `I` is the index width of its storage ([`Index`]): `u32` unless the
/// [`Storage`] says `u16`.
pub struct Pool<'a, K, I = u32> {
    /// The state, one table per kind of slot (`crate::tables`).
    pub(crate) conns: Conns<'a, I>,
    pub(crate) routes: Routes<'a, K, I>,
    pub(crate) waiters: Waiters<'a, I>,
    pub(crate) leases: Leases<'a, I>,
    pub(crate) cfg: Settings,
    pub(crate) now: Instant,
    /// No timer is due before it: at or before [`Pool::next_due`], exact
    /// after each `advance` and lowered by every arming (`Heap::set`), so
    /// the warm path reads one field instead of three heap tops.
    pub(crate) due: Instant,
    pub(crate) seq: u64,
    /// The action queue (`actions.rs`), threaded through the three tables.
    pub(crate) act_head: u32,
    pub(crate) act_tail: u32,
    /// `max_total` was lowered below the connections open: they may exceed it
    /// until enough have closed (`set_max_total`).
    pub(crate) over_total: bool,
    pub(crate) closed: bool,
    /// The pool's identity, carried by every [`Lease`] it makes
    /// (`pool_identity`): 32 bits from its storage's address and the number
    /// of pools made before it.
    pub(crate) id: u32,
    /// State of the lifetime jitter's generator (splitmix64).
    pub(crate) rng: u64,
    /// No pool-wide preconnect ratio and no warm-up: `settle` has a fast path.
    pub(crate) plain: bool,
    /// [`Pool::plain_fast`], not `closed` and not `over_total` (kept by
    /// [`Pool::set_warm`] where either changes): the warm path (`fast.rs`)
    /// applies whenever no route is blocked and no timer is due.
    pub(crate) warm: bool,
    pub(crate) counters: Counters,
}

/// Pools made so far in this program. Only loaded and stored (no
/// compare-and-swap: it builds for `thumbv6m-none-eabi`): two pools made at the
/// same instant on two threads may read the same count, but they are alive at
/// once, so their storage addresses differ.
static POOLS_MADE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// A pool's identity: its storage's address (distinct between live pools)
/// mixed with the count of pools made before it (distinct between pools made
/// one after the other in the same storage, or at an address the allocator
/// gave out again).
fn pool_identity(addr: usize) -> u32 {
    use core::sync::atomic::Ordering::Relaxed;
    let n = POOLS_MADE.load(Relaxed);
    POOLS_MADE.store(n.wrapping_add(1), Relaxed);
    let x = crate::hash::splitmix(addr as u64 ^ ((n as u64) << 40) ^ n as u64);
    (x ^ (x >> 32)) as u32
}

impl<'a, K: Eq + Hash + Clone, I: Index> Pool<'a, K, I> {
    /// Largest stream capacity of one connection (HTTP/2 servers commonly
    /// announce 100 to 1000); `connected` clamps larger values.
    pub const MAX_STREAMS: u32 = 1 << 16;

    /// A pool over const-generic storage (firmware). Fails with a
    /// [`ConfigError`] if the configuration is invalid or does not fit.
    pub fn new<const C: usize, const R: usize, const W: usize, const L: usize>(
        storage: &'a mut Storage<K, C, R, W, L, I>,
        config: Config,
    ) -> Result<Self, ConfigError> {
        let s = storage;
        Self::from_slots(
            Slots::Borrowed(&mut s.conns),
            Slots::Borrowed(&mut s.routes),
            Slots::Borrowed(&mut s.buckets),
            Slots::Borrowed(&mut s.waiters),
            Slots::Borrowed(&mut s.leases),
            [
                (
                    Slots::Borrowed(&mut s.conn_heap),
                    Slots::Borrowed(&mut s.conn_pos),
                ),
                (
                    Slots::Borrowed(&mut s.waiter_heap),
                    Slots::Borrowed(&mut s.waiter_pos),
                ),
                (
                    Slots::Borrowed(&mut s.route_heap),
                    Slots::Borrowed(&mut s.route_pos),
                ),
            ],
            config,
        )
    }

    #[allow(clippy::type_complexity)]
    fn from_slots(
        conns: Slots<'a, ConnSlot<I>>,
        routes: Slots<'a, RouteSlot<K, I>>,
        buckets: Slots<'a, I>,
        waiters: Slots<'a, WaiterSlot<I>>,
        leases: Slots<'a, LeaseSlot<I>>,
        heaps: [(Slots<'a, HeapEntry<I>>, Slots<'a, I>); 3],
        config: Config,
    ) -> Result<Self, ConfigError> {
        let (nc, nr, nw, nl) = (conns.len(), routes.len(), waiters.len(), leases.len());
        if nc == 0 || nr == 0 || nl == 0 || [nc, nr, nw, nl].iter().any(|&n| n > I::MAX_SLOTS) {
            return Err(ConfigError::BadStorage);
        }
        let cfg = config.validate(nc, nw, nl)?;
        // Generations go on from what the storage held (each table's
        // `new`): handles of an earlier pool built in the same storage are
        // stale in this one.
        let id = pool_identity(conns.as_ptr() as usize);
        let [ch, wh, rh] = heaps;
        let rng = crate::hash::splitmix(cfg.seed ^ 0x6a09_e667_f3bc_c909);
        let plain = cfg.ratio_milli <= 1000 && cfg.min_idle == 0;
        let mut pool = Pool {
            conns: Conns::new(conns, Heap::new(ch.0, ch.1)),
            routes: Routes::new(routes, buckets, Heap::new(rh.0, rh.1), cfg.seed),
            waiters: Waiters::new(waiters, Heap::new(wh.0, wh.1)),
            leases: Leases::new(leases),
            cfg,
            now: Instant::ZERO,
            due: Instant::MAX,
            seq: 0,
            act_head: NIL,
            act_tail: NIL,
            over_total: false,
            closed: false,
            id,
            rng,
            plain,
            warm: false,
            counters: Counters::default(),
        };
        pool.set_warm();
        Ok(pool)
    }

    /// Processes every timer due at `now`: waiter deadlines, connect timeouts,
    /// idle and keep-alive expiry, lifetimes, retry backoffs. Every other input
    /// does this first too.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    /// The earliest instant at which [`Pool::handle_timeout`] has work, if any.
    /// May be earlier than strictly needed (timers are re-armed lazily).
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_due()).filter(|&t| t != Instant::MAX)
    }

    /// The slot counts of the pool's storage (what a backend sizes its own
    /// per-slot tables by).
    pub fn capacity(&self) -> crate::storage::Capacity {
        crate::storage::Capacity {
            conns: self.conns.len(),
            routes: self.routes.len(),
            waiters: self.waiters.len(),
            leases: self.leases.len(),
        }
    }

    /// Pool-wide gauges.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            connections: self.conns.total,
            connecting: self.conns.connecting,
            idle: self.conns.idle(),
            leased: self.leases.used,
            pending: self.waiters.pending,
            closing: self.conns.closing,
            routes: self.routes.count,
            max_total: self.cfg.max_total,
        }
    }

    /// Gauges for one route, if it is in the table.
    pub fn route_stats(&self, key: &K) -> Option<RouteStats> {
        let r = self.find_route(key)?;
        let s = &self.routes[r as usize];
        Some(RouteStats {
            connections: s.allocated,
            connecting: s.connecting.len(),
            idle: s.idle,
            leased: s.active,
            pending: s.queue.len() + s.validating,
            limit: self.limit(r),
            connects: s.connects,
            grants: s.grants,
        })
    }

    /// Counters since creation.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The key of a live route.
    pub fn route_key(&self, route: RouteId) -> Option<&K> {
        let s = self.routes.get(route.index())?;
        if s.gen == route.gen {
            s.key.as_ref()
        } else {
            None
        }
    }

    /// The handle of the route with this key, if it is in the table.
    pub fn route_id(&self, key: &K) -> Option<RouteId> {
        self.find_route(key).map(|r| self.route_handle(r))
    }

    /// The route a live connection belongs to.
    pub fn route_of(&self, conn: ConnId) -> Option<RouteId> {
        let c = self.live_conn(conn).ok()?;
        Some(self.route_handle(self.conns[c as usize].route.get()))
    }

    /// True once the whole pool was drained with `DrainAndDelete`.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The latest `now` seen.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// `plain`, and no idle limit and no per-connection lease limit (the
    /// settings the warm path leaves out; fixed at construction).
    pub(crate) fn plain_fast(&self) -> bool {
        self.plain
            && self.cfg.max_idle.is_none()
            && self.cfg.max_idle_per_route.is_none()
            && self.cfg.max_leases_per_conn.is_none()
    }

    /// Recomputes `warm` after `closed` or `over_total` changed.
    #[inline]
    pub(crate) fn set_warm(&mut self) {
        self.warm = self.plain_fast() && !self.closed && !self.over_total;
    }

    #[inline]
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    #[inline]
    pub(crate) fn conn_handle(&self, c: u32) -> ConnId {
        ConnId {
            index: c,
            gen: self.conns[c as usize].gen,
        }
    }

    #[inline]
    pub(crate) fn route_handle(&self, r: u32) -> RouteId {
        RouteId {
            index: r,
            gen: self.routes[r as usize].gen,
        }
    }

    #[inline]
    pub(crate) fn waiter_handle(&self, w: u32) -> WaiterId {
        WaiterId {
            index: w,
            gen: self.waiters[w as usize].gen,
        }
    }
}

#[cfg(feature = "alloc")]
impl<K: Eq + Hash + Clone> Pool<'static, K> {
    /// A pool over storage allocated once here (feature `alloc`), for servers.
    ///
    /// ```
    /// use wharf_core::{Capacity, Config, Pool};
    /// let cap = Capacity { conns: 1024, routes: 64, waiters: 4096, leases: 1024 };
    /// let pool: Pool<'static, String> =
    ///     Pool::with_capacity(cap, Config { max_total: 1000, ..Config::default() }).unwrap();
    /// assert_eq!(pool.stats().max_total, 1000);
    /// ```
    pub fn with_capacity(
        capacity: crate::storage::Capacity,
        config: Config,
    ) -> Result<Self, ConfigError> {
        use alloc::vec::Vec;
        /// `n` copies of `v`, or `OutOfMemory` (never an abort).
        fn boxed<T>(n: usize, v: impl Fn() -> T) -> Result<Slots<'static, T>, ConfigError> {
            let mut s = Vec::new();
            s.try_reserve_exact(n)
                .map_err(|_| ConfigError::OutOfMemory)?;
            s.extend((0..n).map(|_| v()));
            Ok(Slots::Owned(s.into_boxed_slice()))
        }
        let crate::storage::Capacity {
            conns,
            routes,
            waiters,
            leases,
        } = capacity;
        if conns == 0
            || routes == 0
            || leases == 0
            || [conns, routes, waiters, leases]
                .iter()
                .any(|&n| n > u32::MAX_SLOTS)
        {
            return Err(ConfigError::BadStorage);
        }
        // Refuse a bad configuration before allocating anything.
        config.validate(conns, waiters, leases)?;
        Self::from_slots(
            boxed(conns, || ConnSlot::EMPTY)?,
            boxed(routes, || RouteSlot::EMPTY)?,
            boxed(routes, || u32::NIL)?,
            boxed(waiters, || WaiterSlot::EMPTY)?,
            boxed(leases, || LeaseSlot::EMPTY)?,
            [
                (
                    boxed(conns, || HeapEntry::EMPTY)?,
                    boxed(conns, || u32::NIL)?,
                ),
                (
                    boxed(waiters, || HeapEntry::EMPTY)?,
                    boxed(waiters, || u32::NIL)?,
                ),
                (
                    boxed(routes, || HeapEntry::EMPTY)?,
                    boxed(routes, || u32::NIL)?,
                ),
            ],
            config,
        )
    }
}
