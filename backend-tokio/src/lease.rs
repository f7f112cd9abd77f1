//! A leased connection.

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wharf_core::Tag;

use wharf_driver::{Handout, Returned};

use crate::connector::{Connector, RouteKey};
use crate::runtime::Shared;

/// A connection leased from a [`Pool`](crate::Pool).
///
/// Derefs to the connection (for a multiplexed connection: this lease's
/// handle); is `AsyncRead`/`AsyncWrite` when the connection is. Dropping it
/// gives the connection back to the pool for reuse, unless
/// [`Lease::discard`] was called or the connector's
/// [`is_broken`](Connector::is_broken) says so, in which case it is closed.
///
/// What belongs to the pool is reached through associated functions
/// (`Lease::discard(&mut lease)`, `Lease::id(&lease)`, `Lease::route(&lease)`,
/// `Lease::is_reused`, `Lease::set_keep_alive`, `Lease::set_tag`, `Lease::tag`,
/// `Lease::detach(lease)`), as with std's smart pointers, so none of them
/// shadows a method of the connection.
pub struct Lease<K: RouteKey, C: Connector<K>> {
    shared: Arc<Shared<K, C>>,
    lease: wharf_core::Lease,
    conn: Option<C::Conn>,
    keep_alive: Option<Duration>,
    tag: Option<Tag>,
    discard: bool,
    reused: bool,
}

impl<K: RouteKey, C: Connector<K>> Lease<K, C> {
    /// A lease over a connection the driver handed out (already checked).
    pub(crate) fn new(shared: &Arc<Shared<K, C>>, h: Handout<C::Conn>) -> Self {
        Lease {
            shared: shared.clone(),
            lease: h.lease,
            conn: Some(h.conn),
            keep_alive: None,
            tag: h.tag,
            discard: false,
            reused: h.reused,
        }
    }

    /// Marks the connection as not reusable: it is closed when the lease is
    /// dropped (e.g. after a protocol error or `Connection: close`). An
    /// associated function (`Lease::discard(&mut lease)`), so it never
    /// shadows a method of the connection.
    pub fn discard(this: &mut Self) {
        this.discard = true;
    }

    /// True when [`discard`](Lease::discard) was called.
    pub fn is_discarded(this: &Self) -> bool {
        this.discard
    }

    /// Sets the keep-alive the server announced (e.g. HTTP `Keep-Alive:
    /// timeout=5`): the idle connection is not reused after it and closes
    /// then.
    pub fn set_keep_alive(this: &mut Self, keep_alive: Duration) {
        this.keep_alive = Some(keep_alive);
    }

    /// Sets the connection's tag (its state for matching, e.g. the identity it
    /// authenticated as) for when it goes back to the pool. A lease starts
    /// with the connection's current tag. With
    /// [`Builder::strict_tags`](crate::Builder::strict_tags) it does nothing:
    /// the tag was fixed when the connection was made.
    pub fn set_tag(this: &mut Self, tag: Option<Tag>) {
        if !this.shared.strict_tags {
            this.tag = tag;
        }
    }

    /// True when the connection is reused: it was not handed straight from
    /// its connect to this lease. It served a lease before, or it sat idle
    /// in the pool before this hand-out (connected for warm-up, or for a
    /// request another connection served, or given back unused), so the
    /// server may have closed it while it was idle, as with any connection
    /// taken from the idle pool.
    pub fn is_reused(this: &Self) -> bool {
        this.reused
    }

    /// The tag the connection goes back with.
    pub fn tag(this: &Self) -> Option<Tag> {
        this.tag
    }

    /// The route of the connection (for a cluster lease: the host picked).
    /// Takes the pool's lock and clones the key.
    pub fn route(this: &Self) -> Option<K> {
        let g = this.shared.lock();
        let core = g.driver.core();
        let route = core.route_of(this.lease.conn())?;
        core.route_key(route).cloned()
    }

    /// The core's handle of this lease (its connection's slot, for logs).
    pub fn id(this: &Self) -> wharf_core::Lease {
        this.lease
    }

    /// Takes the connection out of the pool for good: the pool forgets it
    /// (its slot frees up as if it was closed) and the caller owns it. For
    /// a multiplexed connection: this lease's handle; the connection drains
    /// (the other leases finish, then the pool closes it).
    pub fn detach(mut this: Self) -> C::Conn {
        let conn = this.conn.take().expect("lease holds its connection");
        let now = this.shared.now();
        let mut g = this.shared.lock();
        g.driver.detach(this.lease, now);
        this.shared.finish(g);
        conn
    }

    fn conn_ref(&self) -> &C::Conn {
        self.conn.as_ref().expect("lease holds its connection")
    }

    fn conn_mut(&mut self) -> &mut C::Conn {
        self.conn.as_mut().expect("lease holds its connection")
    }
}

impl<K: RouteKey, C: Connector<K>> Drop for Lease<K, C> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let how = if self.discard || self.shared.connector.is_broken(&mut conn) {
            Returned::Discard
        } else {
            Returned::Reuse {
                keep_alive: self.keep_alive.map(wharf_core::Duration::from),
                tag: self.tag,
            }
        };
        // The clock is read outside the lock (the core never moves time
        // backwards), so the lock covers the release's table work only.
        let now = self.shared.now();
        let mut g = self.shared.lock();
        g.driver.release(self.lease, conn, how, now);
        self.shared.finish(g);
    }
}

impl<K: RouteKey, C: Connector<K>> Deref for Lease<K, C> {
    type Target = C::Conn;
    fn deref(&self) -> &C::Conn {
        self.conn_ref()
    }
}

impl<K: RouteKey, C: Connector<K>> DerefMut for Lease<K, C> {
    fn deref_mut(&mut self) -> &mut C::Conn {
        self.conn_mut()
    }
}

impl<K: RouteKey, C: Connector<K>> fmt::Debug for Lease<K, C>
where
    C::Conn: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("lease", &self.lease)
            .field("conn", &self.conn)
            .field("discard", &self.discard)
            .finish()
    }
}

impl<K: RouteKey, C: Connector<K>> AsyncRead for Lease<K, C>
where
    C::Conn: AsyncRead + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().conn_mut()).poll_read(cx, buf)
    }
}

impl<K: RouteKey, C: Connector<K>> AsyncWrite for Lease<K, C>
where
    C::Conn: AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().conn_mut()).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().conn_mut()).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().conn_mut()).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().conn_mut()).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.conn_ref().is_write_vectored()
    }
}
