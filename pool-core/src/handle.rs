//! Handles: small `Copy` values naming a slot in the pool's storage.
//!
//! Every handle is an index plus a generation. A slot's generation changes
//! each time it is freed, so a handle kept past the life of what it named is
//! detected (a stale or double release is an error, never a corruption), the
//! way smoltcp names sockets by index and slotmap-style arenas detect reuse.

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name {
            pub(crate) index: u32,
            pub(crate) gen: u32,
        }

        impl $name {
            /// The slot index, `0..capacity`. Backends use it to index their
            /// own per-slot storage (sockets, wakers) without hashing.
            pub const fn index(self) -> usize {
                self.index as usize
            }
            /// The slot's generation when this handle was made.
            pub const fn generation(self) -> u32 {
                self.gen
            }
        }
    };
}

handle!(
    /// A connection slot: connecting, open, or closing.
    ConnId
);
handle!(
    /// A lease request that has not been answered yet (a queued waiter).
    ///
    /// Its slot is reused as soon as its answer (`Granted`/`Failed`) is polled:
    /// the next waiter may get the same [`index`](WaiterId::index) with a new
    /// generation. A backend keeping answers per waiter must compare the whole
    /// handle, or keep them in its own table.
    WaiterId
);
handle!(
    /// One granted lease (one stream on a connection).
    LeaseId
);
handle!(
    /// A route (upstream host/port/scheme, or whatever key the user picks).
    RouteId
);

/// A granted lease: which lease it is and the connection it runs on.
///
/// Give it back with [`Pool::release`](crate::Pool::release) exactly once; a
/// second release (or one after the pool closed the connection) returns
/// [`ReleaseError::StaleLease`](crate::ReleaseError::StaleLease), and a lease
/// given to a pool that did not make it
/// [`ReleaseError::ForeignLease`](crate::ReleaseError::ForeignLease).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Lease {
    pub(crate) id: LeaseId,
    pub(crate) conn: ConnId,
    /// Identity of the pool that made it (see [`Pool::release`](crate::Pool::release)).
    pub(crate) pool: u32,
}

impl Lease {
    /// The lease's own handle.
    pub const fn id(self) -> LeaseId {
        self.id
    }
    /// The connection the lease runs on.
    pub const fn conn(self) -> ConnId {
        self.conn
    }
}

/// Connection state for state matching (HttpClient's `state`, e.g. a TLS
/// client identity or an authenticated principal).
///
/// A lease asking for tag `T` prefers a connection tagged `T`, then an untagged
/// one; connections with another tag are skipped. A lease with no tag takes only
/// untagged connections. Backends map richer identities to a `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Tag(pub u64);
