//! What a backend does for the driver: the [`Io`] trait.

use wharf_core::{CloseReason, ConnId, Pool, Validation};

/// The backend's side of the driver: sockets, tasks, buffers.
///
/// The driver calls these methods while it drains the core, under the
/// backend's lock (the driver is inside it), in the order the core asked for
/// the work. None of them may block or call back into the driver: they record
/// the work (queue a task, mark a socket slot) and return. Results come back
/// later as the driver's inputs: [`Driver::connected`](crate::Driver::connected),
/// [`Driver::connect_failed`](crate::Driver::connect_failed),
/// [`Driver::validated`](crate::Driver::validated).
///
/// Ordering guarantee: for one drain, a `close` is called before the `connect`
/// that the core opens in its place (an eviction, a route limit), so a backend
/// that performs its work in call order never holds both at once.
pub trait Io<K> {
    /// The connection object (a TCP stream, a socket and its buffers, a
    /// client handle). While idle it lives in the driver's connection table;
    /// a lease holds it while leased.
    type Conn;
    /// A connect error as the backend reports it; a clone is delivered with
    /// every lease request the failure fails.
    type ConnectError: Clone;
    /// Per-request data the backend keeps with a waiting lease request
    /// (`()` for none); [`Io::failed`] may fill it in when the request fails.
    type Note: Default;

    /// Open a connection for `route`; answer with `connected` or
    /// `connect_failed` for `conn`.
    fn connect(&mut self, conn: ConnId, route: &K);

    /// Check an idle connection before it is handed out again. Answer at once
    /// with [`Checked::Done`] (a cheap, non-blocking check) or keep the object
    /// and answer later with [`Driver::validated`](crate::Driver::validated).
    fn validate(&mut self, conn: ConnId, conn_obj: Self::Conn) -> Checked<Self::Conn>;

    /// Close `conn`. `conn_obj` is its object if the driver holds it (an idle
    /// connection); `None` for a connect still running (abort it) or an
    /// object that is out (being validated, or detached).
    fn close(&mut self, conn: ConnId, reason: CloseReason, conn_obj: Option<Self::Conn>);

    /// An object came back for a connection the pool no longer has (a connect
    /// that finished after its timeout, a validation after a drain): close it.
    fn dispose(&mut self, conn_obj: Self::Conn);

    /// A waiting lease request failed (its answer is stored; `note` is its
    /// note). Default: nothing.
    fn failed(&mut self, note: &mut Self::Note, core: &Pool<'_, K>) {
        let _ = (note, core);
    }

    /// The core reported a route idle (`Action::RouteIdle`). Default: nothing.
    fn route_idle(&mut self, key: K) {
        let _ = key;
    }

    /// Watch `conn` while the driver holds its object: called when the object
    /// comes into the table (connected, given back for reuse, validated) and
    /// each time the backend asks again ([`Driver::watch`](crate::Driver::watch),
    /// [`Driver::watch_all`](crate::Driver::watch_all)). Register interest
    /// with the reactor (a waker per slot, a socket's receive waker) and
    /// answer at once: `Some(event)` if something is already known (the peer
    /// closed it, a new stream capacity), which the driver applies at once;
    /// `None` otherwise. Must not block; an event must not be lost (answer
    /// it again when asked again). Default: never watched (`None`).
    ///
    /// For a multiplexed connection the object stays in the table while
    /// leases are out, so it is watched for its whole life (a SETTINGS
    /// change, a GOAWAY).
    fn watch(&mut self, conn: ConnId, conn_obj: &mut Self::Conn) -> Option<ConnEvent> {
        let _ = (conn, conn_obj);
        None
    }

    /// A handle for one more lease on a multiplexed connection (a clone of
    /// hyper's HTTP/2 `SendRequest`, or of an `Arc` around the client). Called
    /// under the backend's lock when a lease is handed out on a connection
    /// reported with
    /// [`Driver::connected_multiplexed`](crate::Driver::connected_multiplexed);
    /// `None` = it cannot take a lease now (the lease is given back as
    /// discarded and the request asks again). Default: `None` (never called
    /// for exclusive connections).
    fn share(&mut self, conn_obj: &Self::Conn) -> Option<Self::Conn> {
        let _ = conn_obj;
        None
    }
}

/// What a connection's watcher saw ([`Io::watch`], [`Driver::watch`](crate::Driver::watch)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnEvent {
    /// The peer closed or reset it, sent bytes nobody asked for, or shut it
    /// down gracefully (HTTP/2 GOAWAY): the core's `peer_closed`. An idle
    /// connection closes at once (`PeerClosed`) and a waiter gets another;
    /// one with leases out drains (they finish, no new lease starts).
    PeerClosed,
    /// Its stream capacity changed (an HTTP/2 peer's SETTINGS changed
    /// `MAX_CONCURRENT_STREAMS`): the core's `set_capacity`. Leases out stay;
    /// while there are as many as the capacity or more, no new lease starts.
    /// `0` is ignored (a peer that allows no stream for good is
    /// `PeerClosed`).
    Capacity(u32),
}

/// The answer to [`Io::validate`].
#[derive(Debug)]
pub enum Checked<T> {
    /// Checked at once: the object back, and the result.
    Done(T, Validation),
    /// The backend keeps the object and answers later.
    Pending,
}
