//! The pool's typed errors, and the mapping from the core's.

use wharf_core::{ClusterError, ConnectFailure, FailReason};

/// Why a lease failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// Too many pending lease requests (`max_pending` / the state's waiter
    /// slots) or leases in use (`max_leases`): answered at once, never queued.
    Overflow,
    /// Every route slot of the state is taken by another route.
    RouteTableFull,
    /// The route is being drained for deletion.
    Draining,
    /// The pool was drained for deletion as a whole.
    Closed,
    /// The lease's deadline passed before a connection was free. With a
    /// timeout of zero ([`LeaseOptions::timeout`](crate::LeaseOptions)
    /// `Some(Duration::ZERO)`, "do not wait"): no connection was
    /// ready, and the lease failed at once without queueing or connecting.
    Timeout,
    /// A connect for the route failed (refused, no route, DNS, or timed out);
    /// every request queued on the route fails with it.
    ConnectFailed(ConnectFailure),
    /// Every connection handed out to the lease was found closed by the peer
    /// (the driver's `handout_tries` times in a row: each try closed one), as
    /// `wharf-tokio`'s `Error::PeerClosed`.
    PeerClosed,
    /// A cluster call failed for a reason of the cluster itself:
    /// [`ClusterError::NoHosts`] (lease through an empty cluster) or
    /// [`ClusterError::UnknownHost`] (removing or marking a host that is not
    /// in the cluster). Never [`ClusterError::Lease`]: a lease that fails on
    /// the picked host reports the variant a route lease would
    /// ([`Error::Overflow`], [`Error::Draining`], ...).
    Cluster(ClusterError),
    /// The [`ClusterHandle`](crate::ClusterHandle) was issued by another
    /// pool.
    ForeignCluster,
    /// The [`ClusterHandle`](crate::ClusterHandle) names a cluster that was
    /// removed ([`Pool::remove_cluster`](crate::Pool::remove_cluster)).
    UnknownCluster,
    /// [`Pool::add_cluster`](crate::Pool::add_cluster) was given a
    /// [`ClusterSlot`](crate::ClusterSlot) that holds a cluster.
    ClusterSlotInUse,
}

impl From<ClusterError> for Error {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Lease(e) => e.into(),
            e => Error::Cluster(e),
        }
    }
}

impl From<wharf_core::LeaseError> for Error {
    fn from(e: wharf_core::LeaseError) -> Self {
        use wharf_core::LeaseError as E;
        match e {
            E::Overflow => Error::Overflow,
            E::RouteTableFull => Error::RouteTableFull,
            E::Draining => Error::Draining,
            E::Closed => Error::Closed,
            E::Timeout => Error::Timeout,
        }
    }
}

impl From<FailReason> for Error {
    fn from(e: FailReason) -> Self {
        match e {
            FailReason::Timeout => Error::Timeout,
            FailReason::ConnectFailed(f) => Error::ConnectFailed(f),
            FailReason::Overflow => Error::Overflow,
            FailReason::Draining => Error::Draining,
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Overflow => f.write_str("pool overflow"),
            Error::RouteTableFull => f.write_str("route table full"),
            Error::Draining => f.write_str("route is draining"),
            Error::Closed => f.write_str("pool is closed"),
            Error::Timeout => {
                f.write_str("lease timed out (or, with a zero timeout, no connection was ready)")
            }
            Error::ConnectFailed(r) => write!(f, "connect failed: {r:?}"),
            Error::PeerClosed => {
                f.write_str("every connection handed out was found closed by the peer")
            }
            Error::Cluster(e) => write!(f, "cluster: {e}"),
            Error::ForeignCluster => f.write_str("the cluster handle was issued by another pool"),
            Error::UnknownCluster => f.write_str("no such cluster (it was removed)"),
            Error::ClusterSlotInUse => f.write_str("the cluster slot holds a cluster"),
        }
    }
}

impl core::error::Error for Error {}
