//! The connection-object table, indexed by `ConnId::index()`, and the one
//! place that decides who holds a connection's object.

use wharf_core::{ConnId, Duration, Instant, Lease, Tag};

/// Where a connection's object is.
///
/// An *exclusive* connection (stream capacity 1: a TCP stream, an HTTP/1
/// connection) carries one lease at a time: the object moves into the lease
/// ([`Hold::Lent`]) and comes back at release. A *multiplexed* connection
/// (HTTP/2: up to k leases at once) keeps its object in the table
/// ([`Hold::Here`]) for its whole life; each lease gets a handle of its own
/// made by [`Io::share`](crate::Io::share) (a clone of hyper's `SendRequest`)
/// and gives it back at release ([`ConnEntry::out`] counts them).
/// [`ConnEntry::lend`] and [`ConnEntry::give_back`] are the only functions
/// that move an object or a handle in or out for a lease.
#[derive(Debug)]
pub(crate) enum Hold<T> {
    /// No connection in this slot.
    Vacant,
    /// A connect is running at the backend.
    Connecting,
    /// In the table: idle, granted and not picked up yet, or (multiplexed)
    /// shared by the leases out.
    Here(T),
    /// Out at the backend for a validation.
    Checking,
    /// Moved into a lease (or detached from the pool): exclusive only.
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
    /// It sat in the pool with no lease since its connect: it came in idle
    /// (no request was granted it at its connect), or a grant of it was
    /// abandoned. Its next lease is a reuse, whatever it served.
    pub(crate) pooled: bool,
    /// When it last came into the table idle (connected, released).
    pub(crate) idle_since: Instant,
    /// Multiplexed: the object stays here and leases get handles.
    pub(crate) multiplexed: bool,
    /// Multiplexed: handles out (leases holding one).
    pub(crate) out: u32,
}

impl<T> ConnEntry<T> {
    /// An empty slot.
    pub const EMPTY: Self = ConnEntry {
        id: None,
        hold: Hold::Vacant,
        tag: None,
        keep_alive_until: None,
        served: 0,
        pooled: false,
        idle_since: Instant::ZERO,
        multiplexed: false,
        out: 0,
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
        self.out = 0;
        match core::mem::replace(&mut self.hold, Hold::Vacant) {
            Hold::Here(obj) => Some(obj),
            _ => None,
        }
    }

    /// The object, while it is in the table (idle, granted and not picked
    /// up, or multiplexed).
    #[inline]
    pub(crate) fn here_mut(&mut self) -> Option<(ConnId, &mut T)> {
        match (&mut self.hold, self.id) {
            (Hold::Here(obj), Some(id)) => Some((id, obj)),
            _ => None,
        }
    }

    /// Hands the object to a lease the core just granted on this slot's
    /// connection; for a multiplexed connection, a handle made by `share`.
    ///
    /// The lease is the core's own (made by this grant), so its connection
    /// is the one this slot holds: the driver fills a slot at the core's
    /// `Connect` and empties it at its `Close`. That is checked in debug
    /// builds only; the hold is what is checked here (the object is taken
    /// out of it).
    #[inline(always)]
    pub(crate) fn lend(
        &mut self,
        lease: Lease,
        now: Instant,
        share: impl FnOnce(&T) -> Option<T>,
    ) -> Option<Handout<T>> {
        debug_assert!(
            self.is(lease.conn()),
            "the core granted a slot the driver does not hold"
        );
        let conn = if self.multiplexed {
            let Hold::Here(obj) = &self.hold else {
                return None;
            };
            let handle = share(obj)?;
            self.out = self.out.saturating_add(1);
            handle
        } else {
            match core::mem::replace(&mut self.hold, Hold::Lent) {
                Hold::Here(conn) => conn,
                other => {
                    self.hold = other;
                    return None;
                }
            }
        };
        let reused = self.served > 0 || self.pooled;
        self.served = self.served.saturating_add(1);
        Some(Handout {
            lease,
            conn,
            tag: self.tag,
            reused,
            idle: now.saturating_duration_since(self.idle_since),
        })
    }

    /// A lease gives the object back, after the core took the lease back
    /// (the core's check of the lease is the only one: this slot holds its
    /// connection). For a multiplexed connection the object is the lease's
    /// handle, returned in `Ok(Some(handle))` for the caller to drop.
    /// `Err(obj)` if this slot does not lend it (cannot happen while the
    /// tables match the core).
    #[inline(always)]
    pub(crate) fn give_back(&mut self, obj: T, now: Instant) -> Result<Option<T>, T> {
        if self.multiplexed {
            if self.out == 0 {
                return Err(obj);
            }
            self.out -= 1;
            if self.out == 0 {
                self.idle_since = now;
            }
            return Ok(Some(obj));
        }
        if !matches!(self.hold, Hold::Lent) {
            return Err(obj);
        }
        self.hold = Hold::Here(obj);
        self.idle_since = now;
        Ok(None)
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

/// A connection handed to a lease: the core's lease, the object (for a
/// multiplexed connection, the lease's own handle), the tag it was last
/// released with, whether it is a reuse, and how long it was idle. (How many
/// leases it served: [`Driver::served`](crate::Driver::served).)
#[derive(Debug)]
pub struct Handout<T> {
    /// The core's lease (give it back with the object).
    pub lease: Lease,
    /// The connection object, or the lease's handle of a multiplexed one.
    pub conn: T,
    /// The connection's tag as last released (the lease starts with it).
    pub tag: Option<Tag>,
    /// The connection is reused: it was not handed straight from its connect
    /// to this lease. It served a lease before, or it sat
    /// idle in the pool before this hand-out (connected when no request
    /// took it, e.g. for warm-up or for a request another connection
    /// served; or a grant of it was abandoned), so it may have gone stale
    /// while idle exactly like one that served (Go's `Transport` and
    /// OkHttp count any connection taken from the idle pool as reused).
    pub reused: bool,
    /// How long it was idle before this hand-out (since its connect or its
    /// last release; for a multiplexed connection, since its last lease
    /// came back), as the driver's clock saw it.
    pub idle: Duration,
}
