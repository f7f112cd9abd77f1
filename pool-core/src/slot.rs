//! The records kept in storage slots. Internal: handles name them by index.

use crate::action::{CloseReason, FailReason};
use crate::config::RouteOverrides;
use crate::handle::{LeaseId, Tag};
use crate::index::Index;
use crate::list::{Link, List};
use crate::time::Instant;

/// "No index": list ends, free-list end, absent links.
pub(crate) const NIL: u32 = u32::MAX;

/// `tag()` / `set_tag()` over a slot's `tag_value` and `tagged` fields (an
/// `Option<Tag>` kept as a value and a flag: 9 bytes instead of 16).
macro_rules! tag_accessors {
    () => {
        #[inline(always)]
        pub(crate) fn tag(&self) -> Option<Tag> {
            self.tagged().then_some(Tag(self.tag_value))
        }
        #[inline(always)]
        pub(crate) fn set_tag(&mut self, tag: Option<Tag>) {
            self.set_tagged(tag.is_some());
            self.tag_value = tag.map_or(0, |t| t.0);
        }
    };
}

/// A getter and a setter for one bit of a slot's `flags`.
macro_rules! flag {
    ($get:ident, $set:ident, $bit:expr) => {
        #[inline(always)]
        pub(crate) fn $get(&self) -> bool {
            self.flags & $bit != 0
        }
        #[inline(always)]
        pub(crate) fn $set(&mut self, on: bool) {
            if on {
                self.flags |= $bit;
            } else {
                self.flags &= !$bit;
            }
        }
    };
}

// The bits of `ConnSlot::flags`.
const DRAINING: u8 = 1;
const DELIVERED: u8 = 1 << 1;
const IN_LRU: u8 = 1 << 2;
const GUARD: u8 = 1 << 3;
const KEPT: u8 = 1 << 4;
const USED: u8 = 1 << 5;
const TAGGED: u8 = 1 << 6;

// The bits of `RouteSlot::flags`.
const R_DELETING: u8 = 1;
const R_BLOCKED: u8 = 1 << 1;
const R_IDLE_MARK: u8 = 1 << 2;
const R_OVER_LIMIT: u8 = 1 << 3;
const R_RETRYING: u8 = 1 << 4;
const R_UNHEALTHY: u8 = 1 << 5;
const R_OVERRIDDEN: u8 = 1 << 6;

/// Lifecycle of a connection slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnState {
    Free,
    Connecting,
    Validating,
    Ready,
    /// Closed; its `Close` action is not polled yet.
    Closing,
}

/// Which of its route's lists a connection is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteListKind {
    None,
    Connecting,
    Ready,
    /// Open but not available (leased to capacity, draining, validating); no list.
    Busy,
}

/// One connection slot.
#[derive(Clone, Copy, Debug)]
pub struct ConnSlot<I = u32> {
    pub(crate) gen: u32,
    pub(crate) state: ConnState,
    pub(crate) list: RouteListKind,
    /// Seven flags, one bit each, read and written through their accessors:
    /// `draining` (never handed out again; closes when `active` reaches 0),
    /// `delivered` (its `Connect` or `Validate` action was polled),
    /// `in_lru`, `guard` (counted as a starvation-guard connection), `kept`
    /// (idle and kept for `min_idle`: its idle timeout no longer counts until
    /// `updated` is next set, SEMANTICS §2), `used` (it served a lease
    /// already: the next one is a reuse) and `tagged` (`tag_value` holds its
    /// tag).
    pub(crate) flags: u8,
    /// Drain reason, then close reason.
    pub(crate) reason: CloseReason,
    pub(crate) route: I,
    pub(crate) capacity: u32,
    pub(crate) active: u32,
    /// Leases it may still serve (`u32::MAX` = unlimited).
    pub(crate) remaining: u32,
    /// The tag, when `tagged` (`Option<Tag>` kept as a value and a flag).
    pub(crate) tag_value: u64,
    pub(crate) updated: Instant,
    pub(crate) validity: Instant,
    /// Ready or validating: when it expires (keep-alive or lifetime, the
    /// earlier). Connecting: its connect timeout (the field is shared: a
    /// connection gets its expiry when the connect completes).
    pub(crate) expiry: Instant,
    /// Creation order (low 32 bits of the pool's sequence number): orders
    /// its timer among those due at the same instant.
    pub(crate) seq: u32,
    /// The waiter a validation is for (`NIL` if none / gone).
    pub(crate) waiter: I,
    /// Route list link (connecting, ready or busy list); free-list link when free.
    pub(crate) rlink: Link<I>,
    /// Idle LRU link.
    pub(crate) glink: Link<I>,
    /// Action queue link.
    pub(crate) alink: Link<I>,
}

// The `ZEROED` slots below are all zero bytes: only for
// [`Storage::new`](crate::Storage::new), whose slots `Pool::new` initialises
// before use (so a `static` storage is all zero bytes and lands in `.bss`,
// costing no flash).

impl<I: Index> ConnSlot<I> {
    /// All-zero bytes.
    pub(crate) const ZEROED: ConnSlot<I> = ConnSlot {
        route: I::ZERO,
        validity: Instant::ZERO,
        expiry: Instant::ZERO,
        waiter: I::ZERO,
        rlink: Link::ZERO,
        glink: Link::ZERO,
        alink: Link::ZERO,
        ..ConnSlot::EMPTY
    };
    pub(crate) const EMPTY: ConnSlot<I> = ConnSlot {
        gen: 0,
        state: ConnState::Free,
        list: RouteListKind::None,
        flags: 0,
        reason: CloseReason::Drained,
        route: I::NIL,
        capacity: 0,
        active: 0,
        remaining: 0,
        tag_value: 0,
        updated: Instant::ZERO,
        validity: Instant::MAX,
        expiry: Instant::MAX,
        seq: 0,
        waiter: I::NIL,
        rlink: Link::NONE,
        glink: Link::NONE,
        alink: Link::NONE,
    };

    /// Ready, not draining, with a free stream.
    #[inline]
    pub(crate) fn available(&self) -> bool {
        self.state == ConnState::Ready && !self.draining() && self.active < self.capacity
    }
    /// Available with no lease.
    #[inline]
    pub(crate) fn idle(&self) -> bool {
        self.available() && self.active == 0
    }
    /// Counts toward the limits (connecting, validating or ready).
    #[inline]
    pub(crate) fn allocated(&self) -> bool {
        matches!(
            self.state,
            ConnState::Connecting | ConnState::Validating | ConnState::Ready
        )
    }
    /// Free streams, bounded by the leases it may still serve: what it adds
    /// to its route's `spare` while on the ready list.
    #[inline]
    pub(crate) fn streams_left(&self) -> u32 {
        self.capacity
            .saturating_sub(self.active)
            .min(self.remaining)
    }
    tag_accessors!();
    flag!(draining, set_draining, DRAINING);
    flag!(delivered, set_delivered, DELIVERED);
    flag!(in_lru, set_in_lru, IN_LRU);
    flag!(guard, set_guard, GUARD);
    flag!(kept, set_kept, KEPT);
    flag!(used, set_used, USED);
    flag!(tagged, set_tagged, TAGGED);
    /// On the idle LRU and untagged (one test of the flags for the warm
    /// path).
    #[inline(always)]
    pub(crate) fn untagged_idle(&self) -> bool {
        self.flags & (IN_LRU | TAGGED) == IN_LRU
    }
    /// Capacity 1 and one lease (one comparison of the two adjacent fields).
    #[inline(always)]
    pub(crate) fn one_stream_one_lease(&self) -> bool {
        (self.capacity as u64 | (self.active as u64) << 32) == (1 | 1 << 32)
    }
    /// Not draining, and not tagged if tags are strict (`strict`): one test
    /// of the flags for the warm release.
    #[inline(always)]
    pub(crate) fn reusable(&self, strict: bool) -> bool {
        let mask = DRAINING | if strict { TAGGED } else { 0 };
        self.flags & mask == 0
    }
    /// Streams it can still take (0 unless available).
    #[inline]
    pub(crate) fn spare(&self) -> u32 {
        if self.available() {
            self.streams_left()
        } else {
            0
        }
    }
}

/// State of a waiter slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaiterState {
    Free,
    Queued,
    /// Waiting for the validation of connection `conn`.
    Validating,
    /// Answered; the answer is in the action queue.
    Granted,
    Failed,
}

/// One waiter slot.
#[derive(Clone, Copy, Debug)]
pub struct WaiterSlot<I = u32> {
    pub(crate) gen: u32,
    pub(crate) state: WaiterState,
    pub(crate) route: I,
    /// The tag asked for, as in [`ConnSlot::tag_value`].
    pub(crate) tag_value: u64,
    pub(crate) tagged: bool,
    /// `Instant::MAX`: no deadline.
    pub(crate) deadline: Instant,
    pub(crate) seq: u64,
    pub(crate) conn: I,
    /// The lease of a `Granted` waiter (its connection is the lease slot's).
    pub(crate) lease: LeaseId,
    pub(crate) reason: FailReason,
    /// Route queue link; free-list link when free.
    pub(crate) qlink: Link<I>,
    pub(crate) alink: Link<I>,
}

impl<I: Index> WaiterSlot<I> {
    tag_accessors!();
    #[inline(always)]
    pub(crate) fn tagged(&self) -> bool {
        self.tagged
    }
    #[inline(always)]
    pub(crate) fn set_tagged(&mut self, on: bool) {
        self.tagged = on;
    }
    /// The deadline, if it has one.
    #[inline(always)]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        Some(self.deadline).filter(|&d| d != Instant::MAX)
    }
    /// All-zero bytes.
    pub(crate) const ZEROED: WaiterSlot<I> = WaiterSlot {
        route: I::ZERO,
        conn: I::ZERO,
        qlink: Link::ZERO,
        alink: Link::ZERO,
        ..WaiterSlot::EMPTY
    };
    pub(crate) const EMPTY: WaiterSlot<I> = WaiterSlot {
        gen: 0,
        state: WaiterState::Free,
        route: I::NIL,
        tag_value: 0,
        tagged: false,
        deadline: Instant::MAX,
        seq: 0,
        conn: I::NIL,
        lease: LeaseId { index: NIL, gen: 0 },
        reason: FailReason::Timeout,
        qlink: Link::NONE,
        alink: Link::NONE,
    };
}

/// One lease slot.
#[derive(Clone, Copy, Debug)]
pub struct LeaseSlot<I = u32> {
    pub(crate) gen: u32,
    /// The connection it runs on, `NIL` when free.
    pub(crate) conn: I,
    pub(crate) next_free: I,
}

impl<I: Index> LeaseSlot<I> {
    /// All-zero bytes.
    pub(crate) const ZEROED: LeaseSlot<I> = LeaseSlot {
        gen: 0,
        conn: I::ZERO,
        next_free: I::ZERO,
    };
    pub(crate) const EMPTY: LeaseSlot<I> = LeaseSlot {
        gen: 0,
        conn: I::NIL,
        next_free: I::NIL,
    };
}

/// One route slot.
#[derive(Debug)]
pub struct RouteSlot<K, I = u32> {
    pub(crate) key: Option<K>,
    pub(crate) gen: u32,
    /// Next route in the same hash bucket; free-list link when free.
    pub(crate) chain: I,
    /// As [`ConnSlot::seq`].
    pub(crate) seq: u32,
    pub(crate) overrides: RouteOverrides,
    pub(crate) connecting: List<I>,
    pub(crate) ready: List<I>,
    pub(crate) queue: List<I>,
    /// Waiters bound to a validation.
    pub(crate) validating: u32,
    pub(crate) allocated: u32,
    pub(crate) idle: u32,
    pub(crate) active: u32,
    /// Sum of `streams_left()` over the ready list.
    pub(crate) spare: u64,
    /// Seven flags, one bit each, through their accessors: `deleting`,
    /// `blocked` (on the blocked list), `idle_mark` (a `RouteIdle` notice is
    /// outstanding: queued, or delivered while still idle), `over_limit`
    /// (created past its limit after the limit was lowered: may exceed it
    /// until back under), `retrying` (in a connect-failure backoff until
    /// `retry_until`; a backoff that saturates to `Instant::MAX` never ends)
    /// `unhealthy` (host health, clusters: it connects only for demand) and
    /// `overridden` (`overrides` is not empty: set with it, by
    /// [`RouteSlot::set_overrides`], so the warm path tests one byte).
    pub(crate) flags: u8,
    pub(crate) retry_until: Instant,
    pub(crate) connects: u64,
    pub(crate) grants: u64,
    pub(crate) blink: Link<I>,
    pub(crate) all: Link<I>,
    pub(crate) alink: Link<I>,
}

impl<K, I: Index> RouteSlot<K, I> {
    /// All-zero bytes.
    pub(crate) const ZEROED: RouteSlot<K, I> = RouteSlot {
        chain: I::ZERO,
        connecting: List::ZERO,
        ready: List::ZERO,
        queue: List::ZERO,
        blink: Link::ZERO,
        all: Link::ZERO,
        alink: Link::ZERO,
        overrides: RouteOverrides::ZEROED,
        ..RouteSlot::EMPTY
    };
    pub(crate) const EMPTY: RouteSlot<K, I> = RouteSlot {
        key: None,
        gen: 0,
        chain: I::NIL,
        seq: 0,
        overrides: RouteOverrides::NONE,
        connecting: List::EMPTY,
        ready: List::EMPTY,
        queue: List::EMPTY,
        validating: 0,
        allocated: 0,
        idle: 0,
        active: 0,
        spare: 0,
        flags: 0,
        retry_until: Instant::MAX,
        connects: 0,
        grants: 0,
        blink: Link::NONE,
        all: Link::NONE,
        alink: Link::NONE,
    };

    flag!(deleting, set_deleting, R_DELETING);
    flag!(blocked, set_blocked, R_BLOCKED);
    flag!(idle_mark, set_idle_mark, R_IDLE_MARK);
    flag!(over_limit, set_over_limit, R_OVER_LIMIT);
    flag!(retrying, set_retrying, R_RETRYING);
    flag!(unhealthy, set_unhealthy, R_UNHEALTHY);
    flag!(overridden, set_overridden, R_OVERRIDDEN);

    /// Sets the overrides and the flag that says whether there are any.
    #[inline]
    pub(crate) fn set_overrides(&mut self, ov: RouteOverrides) {
        self.overrides = ov;
        self.set_overridden(!ov.is_empty());
    }

    pub(crate) fn live(&self) -> bool {
        self.key.is_some()
    }

    /// Neither deleting nor [`configured`](Self::configured): one test of
    /// the flags for the warm path.
    #[inline(always)]
    pub(crate) fn plain(&self) -> bool {
        self.flags & (R_DELETING | R_UNHEALTHY | R_OVERRIDDEN) == 0
    }

    /// Carries settings that outlive its connections (kept when idle).
    pub(crate) fn configured(&self) -> bool {
        !self.overrides.is_empty() || self.unhealthy()
    }
}

/// A timer heap entry: ordered by `at`, then by `seq`, naming its owner slot.
///
/// `seq` is the low 32 bits of the owner's sequence number, compared with
/// wrapping (serial-number) arithmetic: it only orders entries due at the
/// same microsecond, which fire in creation order as long as they were
/// created fewer than 2^31 sequence numbers apart. The order by `at` is
/// exact, so the heap's top is always the earliest deadline (16 bytes per
/// entry instead of 24).
#[derive(Clone, Copy, Debug)]
pub struct HeapEntry<I = u32> {
    pub(crate) at: Instant,
    pub(crate) seq: u32,
    pub(crate) owner: I,
}

impl<I: Index> HeapEntry<I> {
    /// All-zero bytes.
    pub(crate) const ZEROED: HeapEntry<I> = HeapEntry {
        at: Instant::ZERO,
        seq: 0,
        owner: I::ZERO,
    };
    #[cfg(any(test, feature = "alloc"))]
    pub(crate) const EMPTY: HeapEntry<I> = HeapEntry {
        at: Instant::ZERO,
        seq: 0,
        owner: I::NIL,
    };
    /// Its owner slot.
    #[inline(always)]
    pub(crate) fn owner(&self) -> u32 {
        self.owner.get()
    }
    /// Strictly before `other`.
    #[inline]
    pub(crate) fn before(&self, other: &HeapEntry<I>) -> bool {
        self.at < other.at || (self.at == other.at && (self.seq.wrapping_sub(other.seq) as i32) < 0)
    }
}
