//! [`HttpConnector`]: TCP, TLS with ALPN, hyper's handshake, and the watch
//! of the connection for the pool.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::TokioExecutor;
use wharf_core::ConnectFailure;
use wharf_driver::ConnEvent;

use super::conn::{start_h1, start_h2, ConnState, H2StartError, HttpConn, Sender};
use super::error::{ConnectError, ConnectStep};
use super::io::{FrameScan, SharedTcp, Stream, Tap};
use super::route::HttpRoute;
use crate::connector::{classify_io, Connector, TcpConnector};

/// Connections opened, by protocol (shared with the client's stats).
#[derive(Debug, Default)]
pub(crate) struct Opened {
    pub(crate) h1: AtomicU64,
    pub(crate) h2: AtomicU64,
}

/// The [`Connector`] of the HTTP client: for an [`HttpRoute`], TCP (every
/// resolved address in turn, `TCP_NODELAY`), then for `https://` TLS with
/// ALPN (`h2`, `http/1.1`; feature `rustls`), then hyper's HTTP/1.1 or
/// HTTP/2 handshake (plain HTTP/2 with prior knowledge for
/// [`Protocol::Http2`](super::Protocol::Http2) routes). The connection task
/// is spawned on the pool's runtime and watched:
///
/// - a connection that ends (the server closed it, reset it, sent bytes
///   nobody asked for while it was idle) is reported to the pool at once
///   ([`Connector::poll_event`]: `PeerClosed`), so it is never handed out;
/// - HTTP/2 connections are multiplexed: their stream capacity is the
///   server's `MAX_CONCURRENT_STREAMS` (hyper's
///   `current_max_send_streams()`, read after the server's first SETTINGS
///   frame was applied, capped by
///   [`ClientBuilder::h2_max_streams`](super::ClientBuilder::h2_max_streams)),
///   updated when a SETTINGS frame changes it; a GOAWAY drains the
///   connection (requests in flight finish, no new one starts).
///
/// Built by [`ClientBuilder`](super::ClientBuilder); usable on its own with
/// a [`Pool`](crate::Pool) (the client is the usual way).
pub struct HttpConnector {
    pub(crate) tcp: TcpConnector,
    pub(crate) h1: http1::Builder,
    pub(crate) h2: http2::Builder<TokioExecutor>,
    pub(crate) h2_max_streams: u32,
    pub(crate) opened: Arc<Opened>,
    #[cfg(feature = "rustls")]
    pub(crate) tls: super::tls::TlsConfigs,
}

impl fmt::Debug for HttpConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConnector")
            .field("h2_max_streams", &self.h2_max_streams)
            .finish_non_exhaustive()
    }
}

/// What the [`Client`](super::Client) runs on: a [`Connector`] of
/// [`HttpRoute`]s to [`HttpConn`]s failing with [`ConnectError`]
/// ([`HttpConnector`], or a connector wrapping it). Implemented for every
/// such connector.
pub trait HttpConnect: Connector<HttpRoute, Conn = HttpConn, Error = ConnectError> {}
impl<C: Connector<HttpRoute, Conn = HttpConn, Error = ConnectError>> HttpConnect for C {}

/// The hand-out check of a plain HTTP/1 connection asks the kernel (a
/// non-blocking peek) once it was idle this long (as [`TcpConnector`]).
const PEEK_AFTER_IDLE: Duration = Duration::from_millis(1);

/// A non-blocking one-byte peek: EOF, bytes nobody asked for, or an error
/// (a reset) mean the idle HTTP/1 connection is dead.
#[cold]
fn peek_says_dead(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(stream).peek(&mut buf) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

impl HttpConnector {
    pub(crate) fn new(h2_max_streams: u32) -> Self {
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        // Until the server's SETTINGS arrive (the connect waits for them).
        h2.initial_max_send_streams(h2_max_streams as usize);
        HttpConnector {
            tcp: TcpConnector::new(),
            h1: http1::Builder::new(),
            h2,
            h2_max_streams,
            opened: Arc::new(Opened::default()),
            #[cfg(feature = "rustls")]
            tls: super::tls::TlsConfigs::default(),
        }
    }

    async fn open(&self, route: &HttpRoute) -> Result<HttpConn, ConnectError> {
        let tcp = self
            .tcp
            .connect_host(route.host(), route.port())
            .await
            .map_err(|e| ConnectError::new(ConnectStep::Tcp, e))?;
        let tcp = Arc::new(tcp);
        let (io, h2) = if route.is_tls() {
            self.tls_connect(route, tcp.clone()).await?
        } else {
            (Stream::Plain(SharedTcp(tcp.clone())), route.is_h2c())
        };
        let state = Arc::new(ConnState::new(h2));
        let tap = Tap {
            io,
            state: state.clone(),
            scan: h2.then(FrameScan::default),
        };
        if h2 {
            let sender = start_h2(&self.h2, tap, state.clone(), self.h2_max_streams)
                .await
                .map_err(|e| match e {
                    H2StartError::Handshake(e) => ConnectError::new(ConnectStep::Handshake, e),
                    // A TLS alert (a certificate refused) ends the
                    // connection at its first read.
                    H2StartError::ClosedEarly(Some(e))
                        if route.is_tls() && e.kind() == io::ErrorKind::InvalidData =>
                    {
                        ConnectError::new(ConnectStep::Tls, e)
                    }
                    H2StartError::ClosedEarly(Some(e)) => ConnectError::new(ConnectStep::Handshake, e),
                    H2StartError::ClosedEarly(None) => ConnectError::new(
                        ConnectStep::Handshake,
                        "the HTTP/2 server closed the connection (or allows no stream) before its first SETTINGS",
                    ),
                })?;
            self.opened.h2.fetch_add(1, Ordering::Relaxed);
            Ok(HttpConn {
                sender: Sender::H2(sender),
                state,
                tcp: None,
            })
        } else {
            let sender = start_h1(&self.h1, tap, state.clone())
                .await
                .map_err(|e| ConnectError::new(ConnectStep::Handshake, e))?;
            self.opened.h1.fetch_add(1, Ordering::Relaxed);
            Ok(HttpConn {
                sender: Sender::H1(sender),
                state,
                tcp: (!route.is_tls()).then_some(tcp),
            })
        }
    }

    #[cfg(feature = "rustls")]
    async fn tls_connect(
        &self,
        route: &HttpRoute,
        tcp: Arc<tokio::net::TcpStream>,
    ) -> Result<(Stream, bool), ConnectError> {
        let tls = self.tls.handshake(route, SharedTcp(tcp)).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        if route.protocol() == super::Protocol::Http2 && !h2 {
            return Err(ConnectError::new(
                ConnectStep::Tls,
                "the server did not pick h2 (ALPN) for an HTTP/2-only route",
            ));
        }
        Ok((Stream::Tls(Box::new(tls)), h2))
    }

    #[cfg(not(feature = "rustls"))]
    async fn tls_connect(
        &self,
        _route: &HttpRoute,
        _tcp: Arc<tokio::net::TcpStream>,
    ) -> Result<(Stream, bool), ConnectError> {
        Err(ConnectError::new(
            ConnectStep::Tls,
            "https:// needs the `rustls` feature of wharf-tokio",
        ))
    }

    /// HTTP/1 connections opened so far.
    pub fn http1_connections(&self) -> u64 {
        self.opened.h1.load(Ordering::Relaxed)
    }

    /// HTTP/2 connections opened so far.
    pub fn http2_connections(&self) -> u64 {
        self.opened.h2.load(Ordering::Relaxed)
    }
}

impl Connector<HttpRoute> for HttpConnector {
    type Conn = HttpConn;
    type Error = ConnectError;

    fn connect(
        &self,
        route: &HttpRoute,
    ) -> impl std::future::Future<Output = Result<HttpConn, ConnectError>> + Send {
        self.open(route)
    }

    fn is_stale(&self, conn: &mut HttpConn) -> impl std::future::Future<Output = bool> + Send {
        let stale = self.is_broken(conn);
        async move { stale }
    }

    /// At release: hyper's connection task reads an idle HTTP/1 socket
    /// itself (EOF or bytes nobody asked for end it), so the state it
    /// leaves is enough: no system call.
    #[inline]
    fn is_broken(&self, conn: &mut HttpConn) -> bool {
        conn.is_closed()
    }

    /// The connection task's state (no system call); for a plain HTTP/1
    /// connection idle at least 1 ms, also a non-blocking peek: a FIN that
    /// reached the kernel after the reactor last turned, which the
    /// connection task has not seen yet. (The readiness the reactor
    /// recorded is no guide here: hyper's own reads leave it set.)
    #[inline]
    fn is_dead_at_handout(&self, conn: &mut HttpConn, idle: Duration) -> bool {
        conn.is_closed()
            || (idle >= PEEK_AFTER_IDLE && conn.tcp.as_deref().is_some_and(peek_says_dead))
    }

    #[inline]
    fn poll_event(&self, conn: &mut HttpConn, cx: &mut Context<'_>) -> Poll<ConnEvent> {
        conn.state.poll_event(cx)
    }

    fn multiplexed(&self, conn: &HttpConn) -> Option<u32> {
        conn.is_h2().then(|| conn.state.capacity().max(1))
    }

    #[inline]
    fn share(&self, conn: &HttpConn) -> Option<HttpConn> {
        conn.share()
    }

    /// TCP: by the `io::Error` ([`classify_io`]: refused, reset and
    /// aborted are remote, timed out is a timeout, the rest local); a TLS or
    /// HTTP handshake failure is the server's (remote).
    fn classify(&self, error: &ConnectError) -> ConnectFailure {
        match (error.step, error.source.downcast_ref::<io::Error>()) {
            (ConnectStep::Tcp, Some(e)) => classify_io(e),
            (ConnectStep::Tcp, None) => ConnectFailure::Local,
            _ => ConnectFailure::Remote,
        }
    }

    fn describe(&self, route: &HttpRoute) -> String {
        route.to_string()
    }
}
