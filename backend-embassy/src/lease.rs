//! A leased connection.

use embassy_net::tcp::{TcpReader, TcpSocket, TcpWriter};
use wharf_core::{Duration, Instant, Tag};
use wharf_driver::{Handout, Returned};

use crate::clock::now;
use crate::route::Route;
use crate::sockets::{dead_while_idle, peer_gone};
use crate::state::PoolSocket;
use crate::state::{Inner, Shared};

/// A leased connection: a TCP stream (embedded-io-async `Read`, `Write`,
/// `ReadReady`, `WriteReady`).
///
/// Dropped, it goes back to the pool for reuse, unless it is no longer
/// healthy (peer closed, reset, unread data left), in which case the pool
/// closes it (FIN). [`Lease::discard`] closes it with a RST. A lease starts
/// with the tag its connection was last released with.
pub struct Lease<'d, const H: usize = 0> {
    shared: &'d Shared<'d, H>,
    lease: wharf_core::Lease,
    socket: Option<PoolSocket<'d>>,
    keep_alive: Option<Duration>,
    tag: Option<Tag>,
    discard: bool,
}

impl<'d, const H: usize> Lease<'d, H> {
    /// The hand-out check: a connection the peer closed while it was idle
    /// (no validation due), or that holds bytes nobody asked for, is given
    /// back to be closed (`PeerClosed`), and the request asks again (`None`).
    /// smoltcp's socket state is in memory: no I/O.
    pub(crate) fn hand_out(
        shared: &'d Shared<'d, H>,
        inner: &mut Inner<'d, H>,
        h: Handout<PoolSocket<'d>>,
        now: Instant,
    ) -> Option<Lease<'d, H>> {
        if dead_while_idle(&h.conn) {
            inner.dead_at_handout(h, now);
            return None;
        }
        Some(Lease {
            shared,
            lease: h.lease,
            socket: Some(h.conn),
            keep_alive: None,
            tag: h.tag,
            discard: false,
        })
    }

    /// The core's lease handle (its connection id names the connection).
    pub fn id(&self) -> wharf_core::Lease {
        self.lease
    }

    /// The route of the connection (for a cluster lease: the picked host).
    pub fn route(&self) -> Route<H> {
        let inner = self.shared.inner.borrow();
        let core = inner.core();
        core.route_of(self.lease.conn())
            .and_then(|r| core.route_key(r))
            .cloned()
            .expect("a leased connection is live in its route")
    }

    /// Keep the connection at most this long after it goes back (HTTP
    /// `Keep-Alive: timeout=`); default: the pool's lifetime rules only.
    pub fn set_keep_alive(&mut self, keep_alive: Option<Duration>) {
        self.keep_alive = keep_alive;
    }

    /// Tag the connection when it goes back (state matching, see [`Tag`]).
    pub fn set_tag(&mut self, tag: Option<Tag>) {
        self.tag = tag;
    }

    /// The tag the connection goes back with.
    pub fn tag(&self) -> Option<Tag> {
        self.tag
    }

    fn sock(&mut self) -> &mut PoolSocket<'d> {
        self.socket.as_mut().expect("lease holds its socket")
    }

    /// The socket, for its state and endpoints. (It is only lent: the
    /// socket's buffers belong to its pool slot, so no `&mut TcpSocket` is
    /// handed out; the setters below and [`Lease::split`] cover the rest.)
    pub fn socket(&self) -> &TcpSocket<'d> {
        self.socket.as_ref().expect("lease holds its socket").get()
    }

    /// smoltcp's socket timeout for this connection (see
    /// `TcpSocket::set_timeout`).
    pub fn set_socket_timeout(&mut self, timeout: Option<embassy_time::Duration>) {
        self.sock().set_timeout(timeout)
    }

    /// TCP keep-alive interval for this connection (see
    /// `TcpSocket::set_keep_alive`; not the pool's keep-alive,
    /// [`Lease::set_keep_alive`]).
    pub fn set_tcp_keep_alive(&mut self, interval: Option<embassy_time::Duration>) {
        self.sock().set_keep_alive(interval)
    }

    /// IP hop limit (see `TcpSocket::set_hop_limit`).
    pub fn set_hop_limit(&mut self, hop_limit: Option<u8>) {
        self.sock().set_hop_limit(hop_limit)
    }

    /// Nagle's algorithm (see `TcpSocket::set_nagle_enabled`).
    pub fn set_nagle_enabled(&mut self, enabled: bool) {
        self.sock().set_nagle_enabled(enabled)
    }

    /// A reader and a writer over the connection, usable at once.
    pub fn split(&mut self) -> (TcpReader<'_>, TcpWriter<'_>) {
        self.sock().split()
    }

    /// Closes the connection with a RST instead of returning it.
    pub fn discard(mut self) {
        self.discard = true;
    }
}

impl<const H: usize> core::fmt::Debug for Lease<'_, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lease")
            .field("lease", &self.lease)
            .field("slot", &self.socket.as_ref().map(|s| s.slot()))
            .finish()
    }
}

impl<const H: usize> Drop for Lease<'_, H> {
    fn drop(&mut self) {
        let Some(mut socket) = self.socket.take() else {
            return;
        };
        // Closed or reset by the peer: closed as `PeerClosed`. Unread data
        // left: not reusable, closed as `Discarded` (with a FIN).
        let how = if !self.discard && peer_gone(&socket) {
            Returned::PeerClosed
        } else if self.discard || socket.get().can_recv() {
            Returned::Discard
        } else {
            Returned::Reuse {
                keep_alive: self.keep_alive,
                tag: self.tag,
            }
        };
        socket.rst = self.discard;
        let now = now();
        self.shared
            .inner
            .borrow_mut()
            .release(self.lease, socket, how, now);
    }
}

impl<const H: usize> embedded_io_async::ErrorType for Lease<'_, H> {
    type Error = embassy_net::tcp::Error;
}

impl<const H: usize> embedded_io_async::Read for Lease<'_, H> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.sock().read(buf).await
    }
}

impl<const H: usize> embedded_io_async::Write for Lease<'_, H> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.sock().write(buf).await
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.sock().flush().await
    }
}

impl<const H: usize> embedded_io_async::ReadReady for Lease<'_, H> {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        self.sock().read_ready()
    }
}

impl<const H: usize> embedded_io_async::WriteReady for Lease<'_, H> {
    fn write_ready(&mut self) -> Result<bool, Self::Error> {
        self.sock().write_ready()
    }
}
