//! The embedded networking traits: [`PooledConnect`] implements
//! `embedded-nal-async`'s [`TcpConnect`] over the pool (feature `nal`).
//!
//! Protocol crates written against `TcpConnect` (reqwless's `HttpClient`,
//! ...) open a connection per request and drop it when done. Through
//! [`PooledConnect`] each `connect` is a [`Pool::lease_with`] on the
//! address's route: a connection already open to that address is handed out
//! again, at most `max_total` sockets exist, and a dropped [`Connection`]
//! goes back to the pool (or, if it is no longer reusable, is closed with a
//! FIN that the runner sends before the socket's buffers are reused).
//! embassy-net's own `TcpClient` instead opens a new socket per connect,
//! never reuses one, and frees its buffers on drop before the FIN is sent
//! (embassy issue #6130).
//!
//! ```no_run
//! # async fn demo(pool: wharf_embassy::Pool<'static>) -> Result<(), wharf_embassy::nal::Error> {
//! use core::net::{Ipv4Addr, SocketAddr};
//! use embedded_io_async::{Read, Write};
//! use embedded_nal_async::TcpConnect;
//! use wharf_embassy::{nal::PooledConnect, Duration, LeaseOptions};
//!
//! let tcp = PooledConnect::with_options(
//!     pool,
//!     LeaseOptions { timeout: Some(Duration::from_secs(5)), ..Default::default() },
//! );
//! let server = SocketAddr::new(Ipv4Addr::new(10, 0, 0, 2).into(), 80);
//! let mut conn = tcp.connect(server).await?; // a pooled connection
//! conn.write_all(b"GET / HTTP/1.1\r\nHost: 10.0.0.2\r\n\r\n").await?;
//! let mut buf = [0; 512];
//! let n = conn.read(&mut buf).await?;
//! drop(conn); // back to the pool: the next `connect` to `server` reuses it
//! # Ok(()) }
//! ```
//!
//! A [`Connection`] is the pool's [`Lease`] with an error type that also
//! covers the pool's own failures ([`Error`]); [`Connection::lease`] and
//! [`Connection::into_lease`] reach the lease's methods (tag, keep-alive,
//! discard with a RST).

use core::net::SocketAddr;

use embassy_net::{IpAddress, IpEndpoint};
use embedded_io_async::ErrorKind;
pub use embedded_nal_async::TcpConnect;
use wharf_core::ConnectFailure;

use crate::lease::Lease;
use crate::options::LeaseOptions;
use crate::pool::Pool;
use crate::route::Route;

/// `embedded-nal-async`'s [`TcpConnect`] over a [`Pool`]: each `connect`
/// leases a pooled connection to the address (route `Route::Ip`).
///
/// `Copy`, like the pool handle. The lease options (a timeout, a tag) apply
/// to every connect; without a timeout a connect waits as long as the pool
/// is at its limits (the pool's `connect_timeout` still bounds each TCP
/// connect).
pub struct PooledConnect<'d, const H: usize = 0> {
    pool: Pool<'d, H>,
    opts: LeaseOptions,
}

impl<const H: usize> Clone for PooledConnect<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<const H: usize> Copy for PooledConnect<'_, H> {}

impl<'d, const H: usize> PooledConnect<'d, H> {
    /// Connects through `pool` with default lease options.
    pub fn new(pool: Pool<'d, H>) -> Self {
        Self::with_options(pool, LeaseOptions::default())
    }

    /// Connects through `pool`, each connect leasing with `opts`.
    pub fn with_options(pool: Pool<'d, H>, opts: LeaseOptions) -> Self {
        PooledConnect { pool, opts }
    }

    /// The pool.
    pub fn pool(&self) -> Pool<'d, H> {
        self.pool
    }
}

/// The route of a socket address: its IP endpoint.
///
/// [`Error::Unsupported`] for an IPv6 address unless the crate's
/// `proto-ipv6` feature is on.
pub fn route_of<const H: usize>(addr: SocketAddr) -> Result<Route<H>, Error> {
    let ip = match addr {
        SocketAddr::V4(a) => IpAddress::Ipv4(*a.ip()),
        #[cfg(feature = "proto-ipv6")]
        SocketAddr::V6(a) => IpAddress::Ipv6(*a.ip()),
        #[cfg(not(feature = "proto-ipv6"))]
        SocketAddr::V6(_) => return Err(Error::Unsupported),
    };
    Ok(Route::Ip(IpEndpoint::new(ip, addr.port())))
}

impl<'d, const H: usize> TcpConnect for PooledConnect<'d, H> {
    type Error = Error;
    type Connection<'a>
        = Connection<'d, H>
    where
        Self: 'a;

    async fn connect<'a>(&'a self, remote: SocketAddr) -> Result<Connection<'d, H>, Error> {
        let route = route_of::<H>(remote)?;
        let lease = self.pool.lease_with(&route, self.opts).await?;
        Ok(Connection { lease })
    }
}

/// A pooled connection from [`PooledConnect`]: the [`Lease`], as an
/// `embedded-io-async` stream (`Read`, `Write`, `ReadReady`, `WriteReady`)
/// whose error is this module's [`Error`]. Dropped, it goes back to the pool
/// like the lease.
#[derive(Debug)]
pub struct Connection<'d, const H: usize = 0> {
    lease: Lease<'d, H>,
}

impl<'d, const H: usize> Connection<'d, H> {
    /// The lease (its route, id, tag).
    pub fn lease(&self) -> &Lease<'d, H> {
        &self.lease
    }

    /// The lease, for its settings (tag and keep-alive it goes back with,
    /// socket options).
    pub fn lease_mut(&mut self) -> &mut Lease<'d, H> {
        &mut self.lease
    }

    /// The lease itself.
    pub fn into_lease(self) -> Lease<'d, H> {
        self.lease
    }

    /// Closes the connection with a RST instead of returning it (see
    /// [`Lease::discard`]).
    pub fn discard(self) {
        self.lease.discard()
    }
}

/// Why a [`PooledConnect`] connect or a [`Connection`]'s I/O failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The pool could not lease a connection (limits, timeout, failed
    /// connect, drained).
    Pool(crate::Error),
    /// The connection failed (reset by the peer).
    Tcp(embassy_net::tcp::Error),
    /// An address this build cannot reach (IPv6 without the `proto-ipv6`
    /// feature).
    Unsupported,
}

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Self {
        Error::Pool(e)
    }
}

impl From<embassy_net::tcp::Error> for Error {
    fn from(e: embassy_net::tcp::Error) -> Self {
        Error::Tcp(e)
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Pool(e) => write!(f, "pool: {e}"),
            Error::Tcp(e) => write!(f, "tcp: {e:?}"),
            Error::Unsupported => f.write_str("address family not supported by this build"),
        }
    }
}

impl core::error::Error for Error {}

impl embedded_io_async::Error for Error {
    fn kind(&self) -> ErrorKind {
        use crate::Error as P;
        match self {
            Error::Pool(P::Timeout | P::ConnectFailed(ConnectFailure::Timeout)) => {
                ErrorKind::TimedOut
            }
            Error::Pool(P::ConnectFailed(ConnectFailure::Remote)) => ErrorKind::ConnectionRefused,
            Error::Pool(P::ConnectFailed(ConnectFailure::Local)) => ErrorKind::AddrNotAvailable,
            Error::Pool(P::PeerClosed) => ErrorKind::ConnectionReset,
            Error::Pool(P::Overflow | P::RouteTableFull) => ErrorKind::OutOfMemory,
            Error::Pool(P::Draining | P::Closed) => ErrorKind::NotConnected,
            Error::Pool(
                P::Cluster(_) | P::ForeignCluster | P::UnknownCluster | P::ClusterSlotInUse,
            ) => ErrorKind::Other,
            Error::Tcp(embassy_net::tcp::Error::ConnectionReset) => ErrorKind::ConnectionReset,
            Error::Unsupported => ErrorKind::Unsupported,
        }
    }
}

impl<const H: usize> embedded_io_async::ErrorType for Connection<'_, H> {
    type Error = Error;
}

impl<const H: usize> embedded_io_async::Read for Connection<'_, H> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        Ok(embedded_io_async::Read::read(&mut self.lease, buf).await?)
    }
}

impl<const H: usize> embedded_io_async::Write for Connection<'_, H> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        Ok(embedded_io_async::Write::write(&mut self.lease, buf).await?)
    }
    async fn flush(&mut self) -> Result<(), Error> {
        Ok(embedded_io_async::Write::flush(&mut self.lease).await?)
    }
}

impl<const H: usize> embedded_io_async::ReadReady for Connection<'_, H> {
    fn read_ready(&mut self) -> Result<bool, Error> {
        Ok(embedded_io_async::ReadReady::read_ready(&mut self.lease)?)
    }
}

impl<const H: usize> embedded_io_async::WriteReady for Connection<'_, H> {
    fn write_ready(&mut self) -> Result<bool, Error> {
        Ok(embedded_io_async::WriteReady::write_ready(&mut self.lease)?)
    }
}
