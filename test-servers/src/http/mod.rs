//! The HTTP/1.1 and HTTP/2 servers ([`HttpServer`], made by [`Http1Server::builder`] or
//! [`Http2Server::builder`]).

mod h1;
mod h2srv;
mod pump;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::net::{listen, Running, ServerStream};
use crate::stats::{CloseReason, Protocol, Recorder, StatsHandle};
use crate::tls::{ServerTls, TestPki};

/// How a server closes a connection it decided to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseMode {
    /// FIN (`shutdown(Write)`), then the server keeps reading for
    /// [`close_linger`](HttpServerBuilder::close_linger) and records what the client still sends
    /// as dead-connection evidence ([`ConnInfo::late_bytes`](crate::ConnInfo::late_bytes)).
    Fin,
    /// RST (SO_LINGER 0, then close): the client's next read or write fails with
    /// `ECONNRESET`/`EPIPE`. Data written before the reset (the last response) is still readable
    /// by the client on Linux. Only bytes already buffered count as late bytes.
    Rst,
}

/// What a handler sees of the connection a request came on.
#[derive(Clone, Debug)]
pub struct RequestCtx {
    /// The connection's id ([`ConnInfo::id`](crate::ConnInfo::id)), also sent as `x-conn-id`.
    pub conn_id: u64,
    /// 1 for the connection's first request, 2 for the second, … (sent as `x-conn-req`).
    pub request_on_conn: u64,
    /// The protocol of the connection.
    pub protocol: Protocol,
    /// ALPN chosen (TLS only).
    pub alpn: Option<String>,
    /// Client certificate identity (TLS with client certificates only).
    pub identity: Option<String>,
}

/// A handler hook: return `Some(response)` to answer, `None` to fall through to the built-in
/// routes. Runs after the request body was read in full.
pub type Handler =
    Arc<dyn Fn(&Request<Bytes>, &RequestCtx) -> Option<Response<Bytes>> + Send + Sync + 'static>;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) default_protocol: Protocol,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_requests: Option<u64>,
    pub(crate) keep_alive_header: Option<u64>,
    pub(crate) close_without_header: bool,
    pub(crate) close_mode: CloseMode,
    pub(crate) close_linger: Duration,
    pub(crate) response_delay: Duration,
    pub(crate) body: Bytes,
    pub(crate) handler: Option<Handler>,
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) tls: Option<ServerTls>,
}

/// Marker for the HTTP/1.1 preset: [`Http1Server::builder`].
pub struct Http1Server;
/// Marker for the HTTP/2 preset: [`Http2Server::builder`].
pub struct Http2Server;

impl Http1Server {
    /// A builder for a server speaking HTTP/1.1 (hyper's server) on plain connections, and on
    /// TLS connections whose ALPN is `http/1.1` or absent (`h2` → HTTP/2).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use wharf_test_servers::Http1Server;
    /// let server = Http1Server::builder()
    ///     .idle_timeout(Duration::from_millis(300)) // close connections idle for 300 ms
    ///     .max_requests_per_conn(3)                 // 3rd response has `Connection: close`
    ///     .keep_alive_header(5)                     // `Keep-Alive: timeout=5, max=N`
    ///     .start()
    ///     .await;
    /// println!("{}", server.url("/"));
    /// assert_eq!(server.stats().accepted, 0);
    /// # }
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn builder() -> HttpServerBuilder {
        HttpServerBuilder::new(Protocol::Http1)
    }
}

impl Http2Server {
    /// A builder for a server speaking HTTP/2 (the `h2` crate's server): prior knowledge (h2c)
    /// on plain connections, and on TLS connections whose ALPN is `h2` or absent
    /// (`http/1.1` → HTTP/1.1).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use wharf_test_servers::Http2Server;
    /// let server = Http2Server::builder()
    ///     .max_concurrent_streams(2)      // advertised in SETTINGS and enforced
    ///     .max_requests_per_conn(10)      // then GOAWAY; later streams get REFUSED_STREAM
    ///     .response_delay(Duration::from_millis(50))
    ///     .start()
    ///     .await;
    /// server.set_max_concurrent_streams(1); // SETTINGS update on every live connection
    /// server.goaway_all();                  // graceful GOAWAY on every live connection
    /// # }
    /// ```
    pub fn builder() -> HttpServerBuilder {
        HttpServerBuilder::new(Protocol::Http2)
    }
}

/// Configures an [`HttpServer`]. Options apply to both protocols unless marked otherwise.
#[must_use]
pub struct HttpServerBuilder {
    cfg: Config,
}

impl HttpServerBuilder {
    fn new(p: Protocol) -> Self {
        HttpServerBuilder {
            cfg: Config {
                default_protocol: p,
                idle_timeout: None,
                max_requests: None,
                keep_alive_header: None,
                close_without_header: false,
                close_mode: CloseMode::Fin,
                close_linger: Duration::from_secs(3),
                response_delay: Duration::ZERO,
                body: Bytes::from_static(b"ok\n"),
                handler: None,
                max_concurrent_streams: Some(100),
                tls: None,
            },
        }
    }

    /// Close a connection idle (no request in progress) for `d`, measured from accept (after
    /// the TLS handshake) or from the end of the last response. HTTP/1.1: FIN or RST per [`close_mode`](Self::close_mode);
    /// HTTP/2: graceful GOAWAY, then close. Default: never.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.cfg.idle_timeout = Some(d);
        self
    }

    /// Serve at most `n` requests per connection. HTTP/1.1: the `n`-th response carries
    /// `Connection: close` (unless [`close_without_header`](Self::close_without_header)) and the
    /// server closes after it. HTTP/2: after accepting the `n`-th stream the server sends a
    /// graceful GOAWAY; in-flight streams finish, later ones get `REFUSED_STREAM`.
    pub fn max_requests_per_conn(mut self, n: u64) -> Self {
        assert!(n > 0, "max_requests_per_conn must be at least 1");
        self.cfg.max_requests = Some(n);
        self
    }

    /// HTTP/1.1: send `Keep-Alive: timeout=<secs>` on keep-alive responses (with `, max=<left>`
    /// when a request limit is set). The value need not match the real idle timeout (servers
    /// lie). Default: no header.
    pub fn keep_alive_header(mut self, secs: u64) -> Self {
        self.cfg.keep_alive_header = Some(secs);
        self
    }

    /// HTTP/1.1: after the last allowed request, close the socket right after the response
    /// *without* sending `Connection: close` (as sloppy servers do).
    pub fn close_without_header(mut self) -> Self {
        self.cfg.close_without_header = true;
        self
    }

    /// HTTP/1.1: how server-decided closes (idle timeout, request limit, GOAWAY call) happen:
    /// [`CloseMode::Fin`] (default) or [`CloseMode::Rst`].
    pub fn close_mode(mut self, mode: CloseMode) -> Self {
        self.cfg.close_mode = mode;
        self
    }

    /// After a server-decided FIN, keep reading for up to `d` (or until the client closes) and
    /// record what arrives as dead-connection evidence. Default 3 s; the connection counts as
    /// open meanwhile. `Duration::ZERO`: close at once.
    pub fn close_linger(mut self, d: Duration) -> Self {
        self.cfg.close_linger = d;
        self
    }

    /// Wait `d` before answering every request (holds HTTP/2 streams open).
    pub fn response_delay(mut self, d: Duration) -> Self {
        self.cfg.response_delay = d;
        self
    }

    /// The body of `/` and `/sleep/MS`: `n` bytes of `x` (default `ok\n`).
    pub fn body_size(mut self, n: usize) -> Self {
        self.cfg.body = Bytes::from(vec![b'x'; n]);
        self
    }

    /// A handler consulted before the built-in routes (see [`Handler`]).
    ///
    /// ```
    /// # use wharf_test_servers::Http1Server;
    /// let b = Http1Server::builder().handler(|req, ctx| {
    ///     (req.uri().path() == "/who").then(|| {
    ///         http::Response::new(bytes::Bytes::from(format!("conn {}", ctx.conn_id)))
    ///     })
    /// });
    /// # let _ = b;
    /// ```
    pub fn handler<F>(mut self, f: F) -> Self
    where
        F: Fn(&Request<Bytes>, &RequestCtx) -> Option<Response<Bytes>> + Send + Sync + 'static,
    {
        self.cfg.handler = Some(Arc::new(f));
        self
    }

    /// HTTP/2: the `SETTINGS_MAX_CONCURRENT_STREAMS` advertised to each new connection and
    /// enforced (streams above it get `REFUSED_STREAM`). Default 100.
    pub fn max_concurrent_streams(mut self, n: u32) -> Self {
        self.cfg.max_concurrent_streams = Some(n);
        self
    }

    /// HTTP/2: advertise no `SETTINGS_MAX_CONCURRENT_STREAMS` (unlimited).
    pub fn unlimited_streams(mut self) -> Self {
        self.cfg.max_concurrent_streams = None;
        self
    }

    /// Serve TLS (from [`TestPki::server_tls`]): ALPN picks the protocol per connection and is
    /// recorded with the client's identity in [`ConnInfo`](crate::ConnInfo).
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.cfg.tls = Some(tls);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime. Panics if it
    /// cannot bind.
    pub async fn start(self) -> HttpServer {
        let listener = listen(1024).expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let rec = Recorder::new();
        let (ctl, ctl_rx) = watch::channel(Control {
            goaway: 0,
            max_streams: self.cfg.max_concurrent_streams,
        });
        let hold = Arc::new(Semaphore::new(0));
        let tls = self.cfg.tls.clone();
        let shared = Arc::new(Shared {
            cfg: self.cfg,
            rec: rec.clone(),
            ctl: ctl_rx,
            hold: hold.clone(),
            acceptor: tls
                .as_ref()
                .map(|t| tokio_rustls::TlsAcceptor::from(t.server_config())),
            pki: tls.as_ref().map(|t| t.pki().clone()),
        });
        let running = Running::spawn(rec.clone(), move |mut stop| async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    r = listener.accept() => {
                        if let Ok((stream, peer)) = r {
                            let shared = shared.clone();
                            conns.spawn(serve_conn(stream, peer, shared));
                        }
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            drop(listener);
            conns.shutdown().await;
        });
        HttpServer {
            addr,
            stats: StatsHandle { rec },
            ctl,
            hold,
            tls: tls.is_some(),
            running,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Control {
    pub(crate) goaway: u64,
    pub(crate) max_streams: Option<u32>,
}

pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) rec: Arc<Recorder>,
    pub(crate) ctl: watch::Receiver<Control>,
    pub(crate) hold: Arc<Semaphore>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    pki: Option<TestPki>,
}

async fn serve_conn(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let id = shared.rec.open(peer, Protocol::Unknown);
    let (stream, protocol) = match &shared.acceptor {
        None => (ServerStream::Plain(stream), shared.cfg.default_protocol),
        Some(acceptor) => {
            let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
            let tls = match hs {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    shared.rec.tls_failed();
                    shared
                        .rec
                        .close(id, CloseReason::TlsHandshake(e.to_string()));
                    return;
                }
                Err(_) => {
                    shared.rec.tls_failed();
                    shared
                        .rec
                        .close(id, CloseReason::TlsHandshake("handshake timed out".into()));
                    return;
                }
            };
            let (_, session) = tls.get_ref();
            let alpn = session
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let identity = session
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| {
                    shared
                        .pki
                        .as_ref()
                        .and_then(|p| p.identity_of(c))
                        .unwrap_or_else(|| "unknown".into())
                });
            let protocol = match alpn.as_deref() {
                Some("h2") => Protocol::Http2,
                Some("http/1.1") => Protocol::Http1,
                _ => shared.cfg.default_protocol,
            };
            shared.rec.update(id, |c| {
                c.alpn = alpn;
                c.identity = identity;
            });
            (ServerStream::Tls(Box::new(tls)), protocol)
        }
    };
    shared.rec.update(id, |c| c.protocol = protocol);
    match protocol {
        Protocol::Http2 => h2srv::serve(stream, id, shared).await,
        _ => h1::serve(stream, id, shared).await,
    }
}

/// A running HTTP server (HTTP/1.1, HTTP/2, or both under TLS). Derefs to [`StatsHandle`]
/// for its counters. Stops when dropped (asynchronously) or by [`shutdown`](Self::shutdown).
///
/// Built-in routes (after the [`handler`](HttpServerBuilder::handler)): `/` (the configured
/// body), `/status/N`, `/sleep/MS`, `/bytes/N` (N bytes), `/echo` (the request body back),
/// `/conn` (`id=.. req=.. proto=.. alpn=.. identity=..`), `/hold` (waits for
/// [`release_held`](Self::release_held)); anything else 404. Every response carries
/// `x-conn-id` and `x-conn-req`.
pub struct HttpServer {
    addr: SocketAddr,
    stats: StatsHandle,
    ctl: watch::Sender<Control>,
    hold: Arc<Semaphore>,
    tls: bool,
    running: Running,
}

impl std::ops::Deref for HttpServer {
    type Target = StatsHandle;
    fn deref(&self) -> &StatsHandle {
        &self.stats
    }
}

impl HttpServer {
    /// The bound address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port{path}`, or `https://localhost:port{path}` with TLS.
    pub fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{}", self.addr.port(), path)
        } else {
            format!("http://{}{}", self.addr, path)
        }
    }

    /// Sends a graceful GOAWAY on every live HTTP/2 connection (in-flight streams finish, new
    /// ones are refused, then the connection closes), and stops keep-alive on every live
    /// HTTP/1.1 connection (idle ones close now, busy ones after their response, which carries
    /// `Connection: close`). Connections accepted later are not affected.
    pub fn goaway_all(&self) {
        self.ctl.send_modify(|c| c.goaway += 1);
    }

    /// HTTP/2: advertises a new `SETTINGS_MAX_CONCURRENT_STREAMS` on every live connection (a
    /// SETTINGS frame mid-connection) and to new ones. The server enforces it once the client
    /// acknowledged it (until then the larger of old and new);
    /// [`ConnInfo::max_streams_acked`](crate::ConnInfo::max_streams_acked) shows the ACK.
    pub fn set_max_concurrent_streams(&self, n: u32) {
        self.ctl.send_modify(|c| c.max_streams = Some(n));
    }

    /// Lets `n` requests waiting at `/hold` (now or later) through.
    pub fn release_held(&self, n: usize) {
        self.hold.add_permits(n);
    }

    /// Stops accepting, aborts every connection (open ones are recorded as
    /// [`CloseReason::Shutdown`]) and waits until all of the server's tasks have ended.
    pub async fn shutdown(mut self) {
        self.running.shutdown().await;
    }
}

/// Decrements the `/hold` waiting count even when the request is cancelled.
struct HeldGuard(Arc<Recorder>);
impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.0.add_held(-1);
    }
}

/// The response for a request: handler, then built-in routes, then the delays.
pub(crate) async fn respond(
    shared: &Shared,
    req: Request<Bytes>,
    ctx: &RequestCtx,
) -> Response<Bytes> {
    if !shared.cfg.response_delay.is_zero() {
        tokio::time::sleep(shared.cfg.response_delay).await;
    }
    let mut resp = match shared.cfg.handler.as_ref().and_then(|h| h(&req, ctx)) {
        Some(r) => r,
        None => builtin(shared, &req, ctx).await,
    };
    let h = resp.headers_mut();
    h.insert("x-conn-id", ctx.conn_id.into());
    h.insert("x-conn-req", ctx.request_on_conn.into());
    resp
}

async fn builtin(shared: &Shared, req: &Request<Bytes>, ctx: &RequestCtx) -> Response<Bytes> {
    let path = req.uri().path();
    let text = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(body);
        *r.status_mut() = status;
        r.headers_mut()
            .insert(http::header::CONTENT_TYPE, "text/plain".parse().unwrap());
        r
    };
    let num = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
    };
    if path == "/" {
        text(StatusCode::OK, shared.cfg.body.clone())
    } else if let Some(code) = num("/status/") {
        match StatusCode::from_u16(code as u16) {
            Ok(s) => text(s, Bytes::new()),
            Err(_) => text(StatusCode::BAD_REQUEST, Bytes::from_static(b"bad status\n")),
        }
    } else if let Some(ms) = num("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        text(StatusCode::OK, shared.cfg.body.clone())
    } else if let Some(n) = num("/bytes/") {
        text(StatusCode::OK, Bytes::from(vec![b'x'; n as usize]))
    } else if path == "/echo" {
        text(StatusCode::OK, req.body().clone())
    } else if path == "/conn" {
        let body = format!(
            "id={} req={} proto={:?} alpn={} identity={}\n",
            ctx.conn_id,
            ctx.request_on_conn,
            ctx.protocol,
            ctx.alpn.as_deref().unwrap_or("-"),
            ctx.identity.as_deref().unwrap_or("-"),
        );
        text(StatusCode::OK, Bytes::from(body))
    } else if path == "/hold" {
        shared.rec.add_held(1);
        let _guard = HeldGuard(shared.rec.clone());
        if let Ok(p) = shared.hold.acquire().await {
            p.forget();
        }
        text(StatusCode::OK, Bytes::from_static(b"released\n"))
    } else {
        text(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n"))
    }
}

/// Counts request heads (`\r\n\r\n`) in bytes a client sent late.
pub(crate) fn count_heads(b: &[u8]) -> u64 {
    b.windows(4).filter(|w| w == b"\r\n\r\n").count() as u64
}
