//! The connection-object table, indexed by `ConnId::index()`, and the one
//! place that decides who holds a connection's object.

use wharf_core::{ConnId, Duration, Instant, Lease, Tag};

/// Where a connection's object is.
///
/// Today a connection carries one lease at a time (stream capacity 1): the
/// object moves into the lease and comes back at release. Multiplexed
/// connections (capacity k > 1, an object shared by up to k leases) add a
/// state here in which the object stays in the table while leases borrow or
/// clone it; [`ConnEntry::lend`] and [`ConnEntry::give_back`] are the only
/// functions that move an object in or out for a lease.
#[derive(Debug)]
pub(crate) enum Hold<T> {
    /// No connection in this slot.
    Vacant,
    /// A connect is running at the backend.
    Connecting,
    /// In the table: idle, or granted and not picked up yet.
    Here(T),
    /// Out at the backend for a validation.
    Checking,
    /// Moved into a lease (or detached from the pool).
    Lent,
}

/// One slot of the connection table. Storage for firmware:
/// `[ConnEntry::EMPTY; CONNS]`, one per core connection slot.
#[derive(Debug)]
pub struct ConnEntry<T> {
    /// The connection the core has in this slot; `None` once closed.
    pub(crate) id: Option<ConnId>,
    pub(crate) hold: Hold<T>,
    /// The tag it was last released with (a lease starts with it).
    pub(crate) tag: Option<Tag>,
    /// The keep-alive expiry announced at the last release.
    pub(crate) keep_alive_until: Option<Instant>,
    /// Leases handed out on it.
    pub(crate) served: u32,
}

impl<T> ConnEntry<T> {
    /// An empty slot.
    pub const EMPTY: Self = ConnEntry {
        id: None,
        hold: Hold::Vacant,
        tag: None,
        keep_alive_until: None,
        served: 0,
    };

    /// A new connection starts connecting in this slot.
    pub(crate) fn start(&mut self, conn: ConnId) {
        *self = ConnEntry {
            id: Some(conn),
            hold: Hold::Connecting,
            ..ConnEntry::EMPTY
        };
    }

    /// This slot holds `conn` (same index and generation).
    #[inline]
    pub(crate) fn is(&self, conn: ConnId) -> bool {
        self.id == Some(conn)
    }

    /// The connection is gone: forget it, giving back its object if here.
    pub(crate) fn forget(&mut self) -> Option<T> {
        self.id = None;
        match core::mem::replace(&mut self.hold, Hold::Vacant) {
            Hold::Here(obj) => Some(obj),
            _ => None,
        }
    }

    /// Hands the object to a lease (the lease's connection is this slot's).
    #[inline]
    pub(crate) fn lend(&mut self, lease: Lease) -> Option<Handout<T>> {
        if !self.is(lease.conn()) {
            return None;
        }
        match core::mem::replace(&mut self.hold, Hold::Lent) {
            Hold::Here(conn) => {
                self.served = self.served.saturating_add(1);
                Some(Handout {
                    lease,
                    conn,
                    tag: self.tag,
                    served: self.served,
                })
            }
            other => {
                self.hold = other;
                None
            }
        }
    }

    /// A lease gives the object back. `Err(obj)` if this slot does not lend
    /// it (another connection, or not leased).
    #[inline]
    pub(crate) fn give_back(&mut self, lease: Lease, obj: T) -> Result<(), T> {
        if !self.is(lease.conn()) || !matches!(self.hold, Hold::Lent) {
            return Err(obj);
        }
        self.hold = Hold::Here(obj);
        Ok(())
    }

    /// What an abandoned grant goes back with: the tag and the keep-alive
    /// left of its last release (zero once passed: it closes as expired).
    pub(crate) fn as_released(&self, now: Instant) -> (Option<Duration>, Option<Tag>) {
        let keep_alive = self
            .keep_alive_until
            .map(|t| t.saturating_duration_since(now));
        (keep_alive, self.tag)
    }
}

/// A connection handed to a lease: the core's lease, the object, the tag it
/// was last released with, and how many leases it has served (this one
/// included).
#[derive(Debug)]
pub struct Handout<T> {
    /// The core's lease (give it back with the object).
    pub lease: Lease,
    /// The connection object.
    pub conn: T,
    /// The connection's tag as last released (the lease starts with it).
    pub tag: Option<Tag>,
    /// Leases served by this connection, this one included (> 1 = reuse).
    pub served: u32,
}
