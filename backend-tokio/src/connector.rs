//! What the pool holds: the [`Connector`] trait and the ready [`TcpConnector`].

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use wharf_core::{CloseReason, ConnectFailure, Tag};
use wharf_driver::ConnEvent;

/// The bounds a route key needs: hashable, cloneable (the core keeps one copy
/// per route), printable for errors, and shareable across tasks.
pub trait RouteKey: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static {}
impl<K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static> RouteKey for K {}

/// Opens, checks and closes the connections a [`Pool`](crate::Pool) holds:
/// TCP streams, TLS streams, database clients, anything async.
///
/// Only [`connect`](Connector::connect) and the two types are required. A
/// connect fails with the connector's own [`Error`](Connector::Error) type (a
/// database client's, an RPC stack's; `io::Error` for [`TcpConnector`]),
/// which reaches the caller typed as the source of
/// [`Error::ConnectFailed`](crate::Error::ConnectFailed). The pool calls the
/// connector from its own tasks, never while it holds its lock, except for
/// [`is_broken`](Connector::is_broken) which runs in the task that takes or
/// drops a lease.
///
/// ```
/// use std::io;
/// use wharf_tokio::Connector;
///
/// /// A "connection" that is just a number, for illustration.
/// struct Numbers;
///
/// impl Connector<u32> for Numbers {
///     type Conn = u64;
///     type Error = io::Error;
///     async fn connect(&self, route: &u32) -> io::Result<u64> {
///         Ok(u64::from(*route) * 1000)
///     }
/// }
/// ```
///
/// # Panics in the connector
///
/// A connect, stale check or close future that panics is a bug in the
/// connector, and the pool contains it to that one step (the panic hook
/// still prints it): a connect that panics fails as a `Local` connect
/// failure with no `source` (its slot is free again and the leases waiting
/// for it are answered), a stale check that panics counts as stale (the
/// connection is closed, the lease gets another), and a close that panics
/// counts as done (`Pool::close` still completes). The synchronous checks
/// (`is_broken`, `is_dead_at_handout`, `poll_event`, `multiplexed`,
/// `share`) run inside the pool's operations and must not panic.
pub trait Connector<K: fmt::Debug>: Send + Sync + 'static {
    /// The connection object a lease hands out (by `Deref`/`DerefMut`).
    type Conn: Send + 'static;

    /// What a connect fails with; delivered typed to every lease the failure
    /// fails ([`Error::ConnectFailed`](crate::Error::ConnectFailed)'s
    /// `source`), and classified by [`classify`](Connector::classify).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a connection for `route`. The pool bounds it by its connect
    /// timeout (the future is dropped when it fires).
    fn connect(&self, route: &K) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send;

    /// Opens a connection for `route` as the identity `tag`: the pool calls
    /// this for every connect. With
    /// [`Builder::strict_tags`](crate::Builder::strict_tags), `tag` is the
    /// tag of the lease the connect is made for (`None` for an untagged
    /// lease, a preconnect or a warm-up): open the connection as that
    /// identity (a TLS client certificate, a database login); it keeps the
    /// tag for life and serves only leases asking for it. Without strict
    /// tags `tag` is always `None`. Default: [`connect`](Connector::connect).
    fn connect_as(
        &self,
        route: &K,
        tag: Option<Tag>,
    ) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send {
        let _ = tag;
        self.connect(route)
    }

    /// Checks an idle connection before it is handed out again after
    /// `validate_after_inactivity` (HttpClient's stale check). `true` = stale:
    /// the pool closes it and looks for another. Default: never stale.
    fn is_stale(&self, conn: &mut Self::Conn) -> impl Future<Output = bool> + Send {
        let _ = conn;
        async { false }
    }

    /// Checks a connection when it is handed out and when its lease is
    /// dropped; `true` = broken. At hand-out a broken connection is closed
    /// (as `PeerClosed`) and the lease gets another one; at release it is
    /// closed instead of reused (as `Discarded`). Must not block (it runs in
    /// the task that takes or drops the lease) and should cost nothing when
    /// nothing happened: [`TcpConnector`] reads the readiness the reactor
    /// already recorded and makes a system call (a non-blocking peek) only
    /// when the socket is readable. Default: never broken.
    fn is_broken(&self, conn: &mut Self::Conn) -> bool {
        let _ = conn;
        false
    }

    /// The hand-out check: called when a connection is handed out after
    /// being idle for `idle` (since its connect or its last release); `true`
    /// = dead: it is closed (as `PeerClosed`) and the lease gets another.
    /// Must not block. Default: [`is_broken`](Connector::is_broken).
    ///
    /// [`TcpConnector`] reads the readiness the reactor recorded (no system
    /// call when nothing arrived and the connection was idle less than
    /// [`TcpConnector::peek_after_idle`], 1 ms by default) and confirms with
    /// a non-blocking peek when the socket is readable or idle longer: the
    /// reactor records readiness when it turns, so a FIN that reached the
    /// kernel since its last turn is only seen by asking the kernel.
    fn is_dead_at_handout(&self, conn: &mut Self::Conn, idle: std::time::Duration) -> bool {
        let _ = idle;
        self.is_broken(conn)
    }

    /// Watches a connection while the pool holds it (idle; a multiplexed
    /// connection for its whole life): `Ready(event)` when something
    /// happened, else `Pending` after registering `cx`'s waker to be woken
    /// when that may change (register read interest with the reactor:
    /// `TcpStream::poll_read_ready`, or keep the waker where the
    /// connection's task will find it).
    ///
    /// - [`ConnEvent::PeerClosed`]: the peer closed or reset it, or sent
    ///   bytes nobody asked for, or shut it down gracefully (HTTP/2 GOAWAY).
    ///   Idle, it is closed at once (`PeerClosed`), so no lease gets it and a
    ///   waiter gets another connection; with leases out (multiplexed) it
    ///   drains: they finish, no new lease starts.
    /// - [`ConnEvent::Capacity`]: a multiplexed connection's stream capacity
    ///   changed (an HTTP/2 peer's SETTINGS changed
    ///   `MAX_CONCURRENT_STREAMS`). Leases out stay; while as many leases as
    ///   the new capacity (or more) are out, no new one starts.
    ///
    /// Called under the pool's lock, from the task that released the
    /// connection and from the pool's timer task when the waker fires (one
    /// waker per connection slot, made once: no task and no allocation per
    /// connection). Must not block. After an event it is asked again until
    /// it answers `Pending`, so an event must be reported once (a capacity)
    /// or every time it is asked (a close). Default: `Pending` without
    /// registering (never watched: the hand-out check and
    /// `validate_after_inactivity` still apply).
    fn poll_event(&self, conn: &mut Self::Conn, cx: &mut Context<'_>) -> Poll<ConnEvent> {
        let _ = (conn, cx);
        Poll::Pending
    }

    /// Declares a fresh connection multiplexed (HTTP/2, gRPC): `Some(k)`, it
    /// serves up to `k` leases at once (its stream capacity: for HTTP/2 the
    /// peer's `MAX_CONCURRENT_STREAMS`, e.g. h2's
    /// `SendRequest::current_max_send_streams()`), each lease with a handle
    /// of its own made by [`share`](Connector::share); the connection itself
    /// stays in the pool. `None` (default): one lease at a time, the object
    /// moves into the lease. Asked once, right after the connect; later
    /// changes come from [`poll_event`](Connector::poll_event).
    fn multiplexed(&self, conn: &Self::Conn) -> Option<u32> {
        let _ = conn;
        None
    }

    /// A handle for one more lease on a multiplexed connection (a clone of
    /// hyper's HTTP/2 `SendRequest`, of an `Arc` around a client). Called
    /// under the pool's lock when a lease is handed out: must be cheap and
    /// must not block. The handle is dropped when its lease is. `None`: the
    /// connection cannot take a lease now (it is drained and the lease gets
    /// another). Default: `None` (only called for connections that
    /// [`multiplexed`](Connector::multiplexed) declared multiplexed).
    fn share(&self, conn: &Self::Conn) -> Option<Self::Conn> {
        let _ = conn;
        None
    }

    /// Closes a connection the pool no longer needs (idle timeout, expiry,
    /// eviction, drain, broken...). The pool polls the future once right away
    /// and spawns it only if it is not finished then. Default: drop it.
    fn close(&self, conn: Self::Conn) -> impl Future<Output = ()> + Send + 'static {
        async move { drop(conn) }
    }

    /// Closes a connection the pool held, for `reason` (the reason the
    /// pool's [`counters`](crate::Pool::counters) count it under, and its
    /// `tracing` close event names): the place to log or count closes per
    /// connection. The pool calls this for every connection it closes, and
    /// [`close`](Connector::close) only for objects it disposes of without
    /// a reason (a connect's result that came after the pool gave the
    /// connect up, a connection of a pool that was dropped). Polled as
    /// `close` is. Default: [`close`](Connector::close).
    fn close_for(
        &self,
        conn: Self::Conn,
        reason: CloseReason,
    ) -> impl Future<Output = ()> + Send + 'static {
        let _ = reason;
        self.close(conn)
    }

    /// Classifies a connect error (the core's [`ConnectFailure`]); the pool
    /// keeps the answer as it is. Default, for an `io::Error` (also one an
    /// error type of its own wraps as its
    /// [`source`](std::error::Error::source)): refused, reset and aborted
    /// are remote, timed out is a timeout (counted with the pool's own
    /// connect timeouts), everything else (resolution, unreachable, socket
    /// errors) is local; any other error is remote (the peer answered, and
    /// said no).
    fn classify(&self, error: &Self::Error) -> ConnectFailure {
        let mut e: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(err) = e {
            if let Some(io) = err.downcast_ref::<io::Error>() {
                return classify_io(io);
            }
            e = err.source();
        }
        ConnectFailure::Remote
    }

    /// Renders a route for errors and events. Default: its `Debug` form.
    fn describe(&self, route: &K) -> String {
        format!("{route:?}")
    }
}

/// The default classification of an `io::Error` ([`Connector::classify`]).
pub fn classify_io(error: &io::Error) -> ConnectFailure {
    match error.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => ConnectFailure::Remote,
        io::ErrorKind::TimedOut => ConnectFailure::Timeout,
        _ => ConnectFailure::Local,
    }
}

/// A [`Connector`] for plain TCP: routes are `(host, port)` pairs (or
/// `SocketAddr`s).
///
/// - Resolves names through tokio (`lookup_host`) and tries every resolved
///   address in order until one connects.
/// - Sets `TCP_NODELAY` (on by default).
/// - Idle watching ([`Connector::poll_event`]): read interest registered
///   with the reactor while the connection is idle; a FIN, a RST or bytes
///   nobody asked for close it at once (`PeerClosed`).
/// - Hand-out and release check ([`Connector::is_broken`]) and stale check:
///   the readiness the reactor recorded, confirmed by a non-blocking
///   `MSG_PEEK` only when the socket is readable ([`tcp_is_unusable`]).
/// - Close: shuts the write side down (FIN) and drops the socket.
#[derive(Clone, Copy, Debug)]
pub struct TcpConnector {
    nodelay: bool,
    peek_after_idle: std::time::Duration,
}

impl Default for TcpConnector {
    fn default() -> Self {
        TcpConnector {
            nodelay: true,
            peek_after_idle: std::time::Duration::from_millis(1),
        }
    }
}

impl TcpConnector {
    /// A connector with `TCP_NODELAY` on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets whether new connections get `TCP_NODELAY`.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// The hand-out check of a connection idle at least this long asks the
    /// kernel (a non-blocking peek) even when the reactor has recorded
    /// nothing yet (default 1 ms; `Duration::MAX` = never). A connection
    /// reused sooner is checked by its recorded readiness alone: no system
    /// call on the warm path. The idle time is the pool's clock's: exact to
    /// a kernel tick or two on Linux on a multi-thread runtime (see the
    /// crate docs), so a setting below that peeks after the reuses whose
    /// readings cross a tick.
    pub fn peek_after_idle(mut self, idle: std::time::Duration) -> Self {
        self.peek_after_idle = idle;
        self
    }

    /// Connects to `host:port`, trying every resolved address.
    pub async fn connect_host(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in tokio::net::lookup_host((host, port)).await? {
            match self.connect_addr(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host}: no address resolved"),
            )
        }))
    }

    /// Connects to one address.
    pub async fn connect_addr(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        if self.nodelay {
            stream.set_nodelay(true)?;
        }
        Ok(stream)
    }
}

/// True when the stream has seen FIN or RST, or holds unread bytes.
///
/// Reads the readiness the reactor already recorded for the socket: when
/// nothing arrived since the last read that found the socket empty, that is
/// all (no system call). Only when the socket is readable is it confirmed
/// with a non-blocking `MSG_PEEK` of one byte (which also clears a stale
/// readiness). No allocation.
pub fn tcp_is_unusable(stream: &TcpStream) -> bool {
    for _ in 0..4 {
        match stream.try_io(Interest::READABLE, || peek(stream)) {
            Ok(_) => return true, // 0 = FIN; > 0 = bytes nobody asked for.
            // Not readable (nothing recorded, or the peek found nothing
            // and cleared the readiness).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    false
}

/// The hand-out check of [`TcpConnector`]: [`tcp_is_unusable`], and when
/// `ask_kernel` a non-blocking peek even if the reactor recorded nothing.
pub fn tcp_is_dead(stream: &TcpStream, ask_kernel: bool) -> bool {
    if tcp_is_unusable(stream) {
        return true;
    }
    ask_kernel
        && match peek(stream) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        }
}

/// Watches an idle stream: `Ready(())` once it has seen FIN or RST or holds
/// unread bytes (as [`tcp_is_unusable`]); else `Pending`, with read interest
/// registered with the reactor for `cx`'s waker. A system call (a
/// non-blocking peek) only when the reactor reports the socket readable.
pub fn tcp_poll_unusable(stream: &TcpStream, cx: &mut Context<'_>) -> Poll<()> {
    for _ in 0..4 {
        match stream.poll_read_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(())) => {}
        }
        match stream.try_io(Interest::READABLE, || peek(stream)) {
            Ok(_) => return Poll::Ready(()),
            // Readiness cleared: poll again (registers the waker).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Poll::Ready(()),
        }
    }
    // Readiness kept coming back empty: ask again later.
    cx.waker().wake_by_ref();
    Poll::Pending
}

fn peek(stream: &TcpStream) -> io::Result<usize> {
    let sock = socket2::SockRef::from(stream);
    let mut buf = [MaybeUninit::<u8>::uninit(); 1];
    sock.peek(&mut buf)
}

async fn tcp_close(mut stream: TcpStream) {
    // shutdown(Write) completes at once on a TCP socket; the drop closes it.
    let _ = stream.shutdown().await;
}

macro_rules! tcp_connector_for {
    ($k:ty, |$self_:ident, $route:ident| $connect:expr, |$r2:ident| $describe:expr) => {
        impl Connector<$k> for TcpConnector {
            type Conn = TcpStream;
            type Error = io::Error;
            fn connect(&self, $route: &$k) -> impl Future<Output = io::Result<TcpStream>> + Send {
                let $self_ = self;
                $connect
            }
            fn is_stale(&self, conn: &mut TcpStream) -> impl Future<Output = bool> + Send {
                let stale = tcp_is_unusable(conn);
                async move { stale }
            }
            fn is_broken(&self, conn: &mut TcpStream) -> bool {
                tcp_is_unusable(conn)
            }
            fn is_dead_at_handout(&self, conn: &mut TcpStream, idle: std::time::Duration) -> bool {
                tcp_is_dead(conn, idle >= self.peek_after_idle)
            }
            fn poll_event(&self, conn: &mut TcpStream, cx: &mut Context<'_>) -> Poll<ConnEvent> {
                tcp_poll_unusable(conn, cx).map(|()| ConnEvent::PeerClosed)
            }
            fn close(&self, conn: TcpStream) -> impl Future<Output = ()> + Send + 'static {
                tcp_close(conn)
            }
            fn describe(&self, $r2: &$k) -> String {
                $describe
            }
        }
    };
}

tcp_connector_for!(
    (String, u16),
    |s, r| s.connect_host(&r.0, r.1),
    |r| format!("{}:{}", r.0, r.1)
);
tcp_connector_for!(
    (&'static str, u16),
    |s, r| s.connect_host(r.0, r.1),
    |r| format!("{}:{}", r.0, r.1)
);
tcp_connector_for!(SocketAddr, |s, r| s.connect_addr(*r), |r| r.to_string());
