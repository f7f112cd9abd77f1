//! What the pool holds: the [`Connector`] trait and the ready [`TcpConnector`].

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use wharf_core::ConnectFailure;

/// The bounds a route key needs: hashable, cloneable (the core keeps one copy
/// per route), printable for errors, and shareable across tasks.
pub trait RouteKey: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static {}
impl<K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static> RouteKey for K {}

/// Opens, checks and closes the connections a [`Pool`](crate::Pool) holds:
/// TCP streams, TLS streams, database clients, anything async.
///
/// Only [`connect`](Connector::connect) is required. The pool calls the
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
///     async fn connect(&self, route: &u32) -> io::Result<u64> {
///         Ok(u64::from(*route) * 1000)
///     }
/// }
/// ```
pub trait Connector<K: fmt::Debug>: Send + Sync + 'static {
    /// The connection object a lease hands out (by `Deref`/`DerefMut`).
    type Conn: Send + 'static;

    /// Opens a connection for `route`. The pool bounds it by its connect
    /// timeout (the future is dropped when it fires).
    fn connect(&self, route: &K) -> impl Future<Output = io::Result<Self::Conn>> + Send;

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
    /// the task that takes or drops the lease). Default: never broken.
    fn is_broken(&self, conn: &mut Self::Conn) -> bool {
        let _ = conn;
        false
    }

    /// Closes a connection the pool no longer needs (idle timeout, expiry,
    /// eviction, drain, broken...). The pool polls the future once right away
    /// and spawns it only if it is not finished then. Default: drop it.
    fn close(&self, conn: Self::Conn) -> impl Future<Output = ()> + Send + 'static {
        async move { drop(conn) }
    }

    /// Classifies a connect error (the core's [`ConnectFailure`]); the pool
    /// keeps the answer as it is. Default: refused, reset and aborted are
    /// remote, timed out is a timeout (counted with the pool's own connect
    /// timeouts), everything else (resolution, unreachable, socket errors) is
    /// local.
    fn classify(&self, error: &io::Error) -> ConnectFailure {
        match error.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => ConnectFailure::Remote,
            io::ErrorKind::TimedOut => ConnectFailure::Timeout,
            _ => ConnectFailure::Local,
        }
    }

    /// Renders a route for errors and events. Default: its `Debug` form.
    fn describe(&self, route: &K) -> String {
        format!("{route:?}")
    }
}

/// A [`Connector`] for plain TCP: routes are `(host, port)` pairs (or
/// `SocketAddr`s).
///
/// - Resolves names through tokio (`lookup_host`) and tries every resolved
///   address in order until one connects.
/// - Sets `TCP_NODELAY` (on by default).
/// - Stale check and broken check: a non-blocking `MSG_PEEK` read; end of
///   stream (FIN), an error (RST) or unexpected unread bytes mean the
///   connection is not reusable.
/// - Close: shuts the write side down (FIN) and drops the socket.
#[derive(Clone, Copy, Debug)]
pub struct TcpConnector {
    nodelay: bool,
}

impl Default for TcpConnector {
    fn default() -> Self {
        TcpConnector { nodelay: true }
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

/// True when the stream has seen FIN or RST, or holds unread bytes: a
/// non-blocking `MSG_PEEK` of one byte. No allocation, one system call.
pub fn tcp_is_unusable(stream: &TcpStream) -> bool {
    let sock = socket2::SockRef::from(stream);
    let mut buf = [MaybeUninit::<u8>::uninit(); 1];
    match sock.peek(&mut buf) {
        Ok(_) => true, // 0 = FIN; > 0 = bytes nobody asked for.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
        Err(_) => true,
    }
}

async fn tcp_close(mut stream: TcpStream) {
    // shutdown(Write) completes at once on a TCP socket; the drop closes it.
    let _ = stream.shutdown().await;
}

macro_rules! tcp_connector_for {
    ($k:ty, |$self_:ident, $route:ident| $connect:expr, |$r2:ident| $describe:expr) => {
        impl Connector<$k> for TcpConnector {
            type Conn = TcpStream;
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
