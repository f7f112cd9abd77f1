//! Gauges and counters.

use crate::action::{CloseReason, ConnectFailure};

/// Pool-wide gauges, computed in O(1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PoolStats {
    /// Open + connecting connections (what `max_total` limits).
    pub connections: u32,
    /// Connections still connecting.
    pub connecting: u32,
    /// Open connections with no lease.
    pub idle: u32,
    /// Leases in use.
    pub leased: u32,
    /// Waiters (queued or awaiting a validation).
    pub pending: u32,
    /// Closed connections whose `Close` action has not been polled yet.
    pub closing: u32,
    /// Routes in the table.
    pub routes: u32,
    /// The `max_total` limit.
    pub max_total: u32,
}

/// One route's gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RouteStats {
    /// Open + connecting connections (what the route limit bounds).
    pub connections: u32,
    /// Connections still connecting.
    pub connecting: u32,
    /// Open connections with no lease.
    pub idle: u32,
    /// Leases in use.
    pub leased: u32,
    /// Waiters (queued or awaiting a validation).
    pub pending: u32,
    /// The route's connection limit.
    pub limit: u32,
    /// Connects started for this route since it was created.
    pub connects: u64,
    /// Leases granted on this route since it was created.
    pub grants: u64,
}

/// Monotonic counters since the pool was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Counters {
    /// Connects started (all purposes).
    pub connects: u64,
    /// Of those, preconnects (started beyond the waiting demand by the ratio).
    pub preconnects: u64,
    /// Of those, warm-up connects (`min_idle`).
    pub warmups: u64,
    /// Of those, connects allowed past `max_total` by the starvation guard.
    pub guard_connects: u64,
    /// Connects completed.
    pub connected: u64,
    /// Connect failures by reason: `[Timeout, Local, Remote]`.
    pub connect_failures: [u64; 3],
    /// Leases granted (at once or to a waiter).
    pub grants: u64,
    /// Of those, on a connection that had served a lease before.
    pub reuses: u64,
    /// Validations asked for.
    pub validations: u64,
    /// Validations that found the connection stale.
    pub stale: u64,
    /// Closes by reason, indexed by [`CloseReason::index`].
    pub closes: [u64; CloseReason::ALL.len()],
    /// Waiters failed by their deadline.
    pub timeouts: u64,
    /// Leases refused or failed with `Overflow`.
    pub overflows: u64,
    /// Waiters cancelled.
    pub cancels: u64,
    /// Waiters queued.
    pub queued: u64,
}

impl Counters {
    /// Closes for one reason.
    pub fn closes_for(&self, reason: CloseReason) -> u64 {
        self.closes[reason.index()]
    }
    /// Connect failures for one reason.
    pub fn connect_failures_for(&self, reason: ConnectFailure) -> u64 {
        self.connect_failures[reason as usize]
    }
}
