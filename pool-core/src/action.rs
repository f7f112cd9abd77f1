//! Outputs: the work the core asks its backend to do.
//!
//! Drain them with [`Pool::poll_action`](crate::Pool::poll_action) until it
//! returns `None` after every input (str0m's rule), then sleep until
//! [`Pool::poll_timeout`](crate::Pool::poll_timeout).

use crate::handle::{ConnId, Lease, RouteId, WaiterId};

/// One piece of work for the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action<K> {
    /// Open a connection for `route` (look its key up with
    /// [`Pool::route_key`](crate::Pool::route_key)). Answer with
    /// [`Pool::connected`](crate::Pool::connected) or
    /// [`Pool::connect_failed`](crate::Pool::connect_failed).
    Connect {
        /// The new connection's handle.
        conn: ConnId,
        /// The route to connect to.
        route: RouteId,
    },
    /// Close the connection (and forget the handle). For a connect still in
    /// progress (`reason == ConnectTimeout` or `Excess`/`Drained`), abort it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Check whether an idle connection is still usable (e.g. a non-blocking
    /// read that detects FIN/RST) and answer with
    /// [`Pool::validated`](crate::Pool::validated).
    Validate {
        /// The connection.
        conn: ConnId,
    },
    /// A queued lease request got its connection.
    Granted {
        /// The request.
        waiter: WaiterId,
        /// The lease to hand to the requester.
        lease: Lease,
    },
    /// A queued lease request failed.
    Failed {
        /// The request.
        waiter: WaiterId,
        /// Why.
        reason: FailReason,
    },
    /// The route has no connections and no waiters. The backend may forget
    /// whatever it keeps per route (Envoy erases an idle pool). If the route
    /// carries no per-route configuration (or was drained for deletion) its slot
    /// is freed and `route` becomes stale.
    RouteIdle {
        /// The route.
        route: RouteId,
        /// Its key.
        key: K,
    },
}

/// Why a connect failed (Envoy's `PoolFailureReason` for connects).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnectFailure {
    /// The connect took longer than the connect timeout.
    Timeout,
    /// A local failure (no route, resolution failed, socket exhaustion, TLS setup).
    Local,
    /// The remote refused or reset the connection.
    Remote,
}

/// Why a queued lease request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FailReason {
    /// The request's deadline passed.
    Timeout,
    /// A connect for its route failed; all the route's queued requests fail with it.
    ConnectFailed(ConnectFailure),
    /// The lease limit (`max_leases`) was reached when a connection was found.
    Overflow,
    /// The route is being deleted and no connection is left to serve the request.
    Draining,
}

/// Why a connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CloseReason {
    /// Released as not reusable (or the backend found it broken).
    Discarded,
    /// Keep-alive expiry or maximum lifetime passed.
    Expired,
    /// Idle longer than the idle timeout.
    IdleTimeout,
    /// Least recently used idle connection closed to make room for another
    /// route or tag when the total limit was reached.
    Evicted,
    /// The route is at or over its limit (after a shrink, or to make room for
    /// a waiter whose tag no idle connection matches).
    RouteLimit,
    /// More idle connections than `max_idle_per_route` / `max_idle`.
    IdleLimit,
    /// Served `max_leases_per_conn` leases.
    MaxLeases,
    /// Validation found it stale.
    Stale,
    /// The peer closed it.
    PeerClosed,
    /// A drain closed it.
    Drained,
    /// The connect did not complete within the connect timeout.
    ConnectTimeout,
    /// A connecting connection no longer needed after a cancel (`CloseExcess`).
    Excess,
    /// Released while the pool holds more connections than a lowered
    /// `max_total` (`set_max_total`).
    TotalLimit,
}

impl CloseReason {
    /// Every reason, in declaration order (index of [`CloseReason::index`]).
    pub const ALL: [CloseReason; 13] = [
        CloseReason::Discarded,
        CloseReason::Expired,
        CloseReason::IdleTimeout,
        CloseReason::Evicted,
        CloseReason::RouteLimit,
        CloseReason::IdleLimit,
        CloseReason::MaxLeases,
        CloseReason::Stale,
        CloseReason::PeerClosed,
        CloseReason::Drained,
        CloseReason::ConnectTimeout,
        CloseReason::Excess,
        CloseReason::TotalLimit,
    ];
    /// Position in [`CloseReason::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}
