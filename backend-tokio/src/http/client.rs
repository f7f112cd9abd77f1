//! [`Client`] and [`ClientBuilder`]: requests over the pool, with the
//! release and retry rules.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION, HOST};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tokio::runtime::Handle;

use super::body::{Body, Held, ResponseBody};
use super::conn::Sender;
use super::connector::{HttpConnect, HttpConnector, Opened};
use super::error::HttpError;
use super::route::{HttpRoute, Protocol};
use crate::builder::Builder;
use crate::lease::Lease;
use crate::pool::Pool;
use wharf_core::RouteConfig;

/// A lease of an HTTP connection.
pub type HttpLease<C = HttpConnector> = Lease<HttpRoute, C>;

/// What happened to a request on its way, read from its response body
/// ([`ResponseBody::info`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// Time spent waiting for a connection (the last attempt's): zero when
    /// the pool granted one at once (no clock read), else from the first
    /// poll of the lease to the connection.
    pub pool_wait: Duration,
    /// The connection was reused (the last attempt's): it had served a
    /// request before, or it sat idle in the pool before this request (it
    /// was not handed straight from its connect to this request).
    pub reused: bool,
    /// Attempts made (1 = not retried).
    pub attempts: u32,
    /// The connection's version (`HTTP/1.1` or `HTTP/2.0`).
    pub version: Version,
    /// HTTP/2: this client's streams open on the connection when the
    /// request started, itself included (1 for HTTP/1).
    pub streams: u32,
}

/// The client's counters ([`Client::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests asked for.
    pub requests: u64,
    /// Requests that failed (no response head).
    pub failed: u64,
    /// Retries of requests that were never sent, or that an HTTP/2 server
    /// did not process (refused stream, above the GOAWAY's last stream).
    pub retried_unsent: u64,
    /// Retries of idempotent requests whose reused connection closed before
    /// any byte of the response (Go's rule; HTTP/2: before the response
    /// head, the connection closed or shut down).
    pub retried_reused: u64,
    /// HTTP/1 connections opened.
    pub http1_connections: u64,
    /// HTTP/2 connections opened.
    pub http2_connections: u64,
    /// The most streams this client had open at once on one HTTP/2
    /// connection.
    pub max_streams_in_use: u32,
}

struct Shared {
    plain: Protocol,
    tls_default: Protocol,
    retry_unsent: u32,
    retry_reused: bool,
    request_timeout: Option<Duration>,
    /// Identities with a TLS config (`None`: without a client certificate).
    #[cfg(feature = "rustls")]
    identities: Vec<Option<Arc<str>>>,
    opened: Arc<Opened>,
    requests: AtomicU64,
    failed: AtomicU64,
    retried_unsent: AtomicU64,
    retried_reused: AtomicU64,
    max_streams: AtomicU32,
}

/// An HTTP/1.1 and HTTP/2 client over a Wharf [`Pool`]: per-host and total
/// connection limits, FIFO waiting with a deadline, connections a server
/// closed never handed out, HTTP/2 streams counted against the server's
/// `MAX_CONCURRENT_STREAMS`. A cheap, cloneable handle.
///
/// - **Routes.** A request's route is its scheme, host and port, its
///   protocol (`Version::HTTP_2` on an `http://` request: HTTP/2 with prior
///   knowledge) and, for TLS, the server name and the client identity
///   ([`Identity`](super::Identity) extension): see [`HttpRoute`].
/// - **Leases.** A request leases a connection (HTTP/1: the whole
///   connection; HTTP/2: one stream of it) and holds it until its response
///   body was read to the end or dropped ([`ResponseBody`]), then the
///   connection goes back at once. A response (or request) with
///   `Connection: close` (or an HTTP/1.0 response without keep-alive)
///   closes it; `Keep-Alive: timeout=N` sets its keep-alive (not reused
///   after N seconds idle).
/// - **Retries.** A request hyper hands back unsent (its connection closed
///   before it was written) is retried on another connection
///   ([`retry_unsent`](ClientBuilder::retry_unsent), 3 times by default),
///   as is one an HTTP/2 server did not process (`REFUSED_STREAM`, or above
///   the last stream of its GOAWAY: RFC 9113 §8.7), when its body can be
///   sent again. An idempotent request (`GET`, `HEAD`, `OPTIONS`, `TRACE`,
///   `PUT`, `DELETE`, or one with an `Idempotency-Key` header) with an
///   empty or buffered body, sent on a reused connection (one that served
///   a request before, or sat idle in the pool before this request: any
///   connection not handed straight from its connect to it) that closed
///   before any byte of the response (HTTP/2: that closed or was shut down
///   before the response head), is retried once
///   ([`retry_idempotent`](ClientBuilder::retry_idempotent), Go's rule). A
///   request that was sent otherwise (a `POST` whose connection closed
///   before the response) is not retried: it fails with
///   [`HttpError::Request`].
///
/// ```
/// use http_body_util::BodyExt;
/// use wharf_tokio::http::Client;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = wharf_test_servers::Http1Server::builder().start().await;
/// # let url = server.url("/");
/// let client = Client::builder().max_total(64).max_per_host(8).build()?;
/// for _ in 0..3 {
///     let resp = client.get(&url).await?;
///     assert_eq!(resp.status(), 200);
///     let body = resp.into_body().collect().await?.to_bytes();
///     assert_eq!(&body[..], b"ok\n"); // read to the end: the connection is back
/// }
/// assert_eq!(client.stats().http1_connections, 1); // one connection served all three
/// # Ok(())
/// # }
/// ```
pub struct Client<C: HttpConnect = HttpConnector> {
    pool: Pool<HttpRoute, C>,
    shared: Arc<Shared>,
}

impl<C: HttpConnect> Clone for Client<C> {
    fn clone(&self) -> Self {
        Client {
            pool: self.pool.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<C: HttpConnect> fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("stats", &self.stats())
            .field("pool", &self.pool)
            .finish()
    }
}

impl Client {
    /// A builder with the defaults listed on [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }
}

fn is_idempotent<B>(req: &Request<B>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || req.headers().contains_key("idempotency-key")
        || req.headers().contains_key("x-idempotency-key")
}

/// A copy of a request to send again (its body must be replayable).
fn try_clone(req: &Request<Body>) -> Option<Request<Body>> {
    let mut r = Request::new(req.body().try_clone()?);
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    *r.extensions_mut() = req.extensions().clone();
    Some(r)
}

/// The request as the connection's protocol wants it: HTTP/1.1 in origin
/// form with a `Host` header; HTTP/2 in absolute form (`:scheme` and
/// `:authority`).
fn prepare(req: &mut Request<Body>, route: &HttpRoute, h2: bool) {
    if h2 {
        *req.version_mut() = Version::HTTP_2;
        if req.uri().authority().is_none() {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(if route.is_tls() {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            });
            parts.authority = Some(route.authority().clone());
            parts.path_and_query = req.uri().path_and_query().cloned();
            if let Ok(u) = Uri::from_parts(parts) {
                *req.uri_mut() = u;
            }
        }
    } else {
        *req.version_mut() = Version::HTTP_11;
        if req.uri().authority().is_some() {
            let pq = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(pq);
        }
        if !req.headers().contains_key(HOST) {
            if let Ok(v) = HeaderValue::from_str(route.authority().as_str()) {
                req.headers_mut().insert(HOST, v);
            }
        }
    }
}

/// hyper's error says the connection closed (EOF or reset) before the
/// response.
fn closed_early(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = s.source();
    }
    false
}

/// HTTP/2: the server did not process the stream (RFC 9113 §8.7): it
/// refused it, or it was above the last stream of the server's GOAWAY.
fn not_processed(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<h2::Error>() {
            return h.is_remote()
                && (h.is_go_away() || h.reason() == Some(h2::Reason::REFUSED_STREAM));
        }
        source = s.source();
    }
    false
}

/// `Keep-Alive: timeout=N` of a response.
fn keep_alive(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("keep-alive")?.to_str().ok()?;
    v.split(',')
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("timeout")
                .then(|| v.trim().parse::<u64>().ok())?
        })
        .map(Duration::from_secs)
}

fn has_token(headers: &http::HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

enum Outcome {
    Response(Response<Incoming>),
    Unsent(Request<Body>, hyper::Error),
    Sent(hyper::Error),
}

impl<C: HttpConnect> Client<C> {
    /// Sends a request and waits for the response head. The URI must be
    /// absolute (`http://` or `https://`). The response body holds the
    /// connection until it is read to the end or dropped.
    ///
    /// Errors: [`HttpError::InvalidRequest`] (before anything is sent),
    /// [`HttpError::Pool`] (no connection: waiting timed out, the connect
    /// failed, ...), [`HttpError::Request`] (failed on the connection, after
    /// the retries that are safe), [`HttpError::Timeout`] (no response head
    /// within the request timeout).
    pub async fn request<B: Into<Body>>(
        &self,
        req: Request<B>,
    ) -> Result<Response<ResponseBody<C>>, HttpError> {
        let req = req.map(Into::into);
        let sh = &*self.shared;
        sh.requests.fetch_add(1, Ordering::Relaxed);
        let r = match self.route_of(&req) {
            Ok(route) => match sh.request_timeout {
                Some(t) => match tokio::time::timeout(t, self.send(&route, req)).await {
                    Ok(r) => r,
                    Err(_) => Err(HttpError::Timeout {
                        route: route.to_string(),
                        after: t,
                    }),
                },
                None => self.send(&route, req).await,
            },
            Err(e) => Err(e),
        };
        if r.is_err() {
            sh.failed.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// `GET uri`. A `uri` that does not parse fails with
    /// [`HttpError::InvalidRequest`], counted in [`ClientStats`] as a
    /// request that failed (as [`request`](Client::request) counts one).
    pub async fn get(&self, uri: &str) -> Result<Response<ResponseBody<C>>, HttpError> {
        let req = match uri.parse::<Uri>() {
            Ok(u) => Request::get(u).body(Body::empty()).ok(),
            Err(_) => None,
        };
        match req {
            Some(req) => self.request(req).await,
            None => {
                let sh = &*self.shared;
                sh.requests.fetch_add(1, Ordering::Relaxed);
                sh.failed.fetch_add(1, Ordering::Relaxed);
                Err(HttpError::InvalidRequest {
                    uri: uri.to_string(),
                    reason: "not a valid URI",
                })
            }
        }
    }

    /// The pool under the client (gauges, counters, per-route settings,
    /// drain, close).
    pub fn pool(&self) -> &Pool<HttpRoute, C> {
        &self.pool
    }

    /// The client's counters.
    pub fn stats(&self) -> ClientStats {
        let sh = &*self.shared;
        ClientStats {
            requests: sh.requests.load(Ordering::Relaxed),
            failed: sh.failed.load(Ordering::Relaxed),
            retried_unsent: sh.retried_unsent.load(Ordering::Relaxed),
            retried_reused: sh.retried_reused.load(Ordering::Relaxed),
            http1_connections: sh.opened.h1.load(Ordering::Relaxed),
            http2_connections: sh.opened.h2.load(Ordering::Relaxed),
            max_streams_in_use: sh.max_streams.load(Ordering::Relaxed),
        }
    }

    /// Graceful shutdown of the pool: new requests fail, idle connections
    /// close now, the others when their response bodies are done. Requests
    /// already waiting for a connection are served by the connections
    /// still out as they come back (no new connection is made), or fail
    /// when their route has none left ([`Pool::close`]).
    pub async fn close(&self) {
        self.pool.close().await
    }

    /// The route a request goes by (its connections are that route's).
    pub fn route<B>(&self, req: &Request<B>) -> Result<HttpRoute, HttpError> {
        self.route_of(req)
    }

    fn route_of<B>(&self, req: &Request<B>) -> Result<HttpRoute, HttpError> {
        let sh = &*self.shared;
        let invalid = |reason| HttpError::InvalidRequest {
            uri: req.uri().to_string(),
            reason,
        };
        let route = HttpRoute::of_request(req, sh.plain, sh.tls_default).map_err(invalid)?;
        if route.is_tls() {
            #[cfg(feature = "rustls")]
            if !sh.identities.contains(&route.identity) {
                return Err(invalid(match route.identity {
                    Some(_) => "unknown client identity (ClientBuilder::tls_identity)",
                    None => "no TLS roots or config (ClientBuilder::tls_roots)",
                }));
            }
            #[cfg(not(feature = "rustls"))]
            return Err(invalid(
                "https:// needs the `rustls` feature of wharf-tokio",
            ));
        }
        Ok(route)
    }

    async fn send(
        &self,
        route: &HttpRoute,
        mut req: Request<Body>,
    ) -> Result<Response<ResponseBody<C>>, HttpError> {
        let sh = &*self.shared;
        let idempotent = is_idempotent(&req);
        let mut attempts = 0u32;
        let mut unsent_left = sh.retry_unsent;
        let mut reused_left = u32::from(sh.retry_reused);
        loop {
            attempts += 1;
            let (lease, pool_wait) = lease_timed(self.pool.lease(route)).await;
            let lease = lease?;
            let h2 = lease.is_h2();
            prepare(&mut req, route, h2);
            // Reused (retry-eligible): it served a request, or it sat idle
            // in the pool before this hand-out (as stale as a used one).
            let served_before = lease.state.start_request();
            let reused = served_before || Lease::is_reused(&lease);
            // A copy to send again, if a retry after sending may be due.
            let replay = if req.body().is_replayable()
                && ((h2 && unsent_left > 0) || (reused && idempotent && reused_left > 0))
            {
                try_clone(&req)
            } else {
                None
            };
            let streams = if h2 {
                let n = lease.state.stream_open();
                // A write only for a new peak (the counter's cache line is
                // shared by every request of the client).
                if n > sh.max_streams.load(Ordering::Relaxed) {
                    sh.max_streams.fetch_max(n, Ordering::Relaxed);
                }
                n
            } else {
                1
            };
            // From here the stream count is given back with `held`.
            let mut held = Held {
                lease,
                h2,
                in_flight: false,
            };
            let bytes_before = held.lease.state.bytes();
            // HTTP/1: a request saying `Connection: close` ends its
            // connection after the response (hyper closes it).
            let asked_close = !h2 && has_token(req.headers(), "close");
            let outcome = match &mut held.lease.sender {
                Sender::H1(s) => match s.ready().await {
                    Ok(()) => {
                        held.in_flight = true;
                        sent(s.try_send_request(req).await)
                    }
                    Err(e) => Outcome::Unsent(req, e),
                },
                Sender::H2(s) => sent(s.try_send_request(req).await),
            };
            held.in_flight = false;
            match outcome {
                Outcome::Response(resp) => {
                    let info = RequestInfo {
                        pool_wait,
                        reused,
                        attempts,
                        version: if h2 {
                            Version::HTTP_2
                        } else {
                            Version::HTTP_11
                        },
                        streams,
                    };
                    if asked_close {
                        Lease::discard(&mut held.lease);
                    }
                    return Ok(respond(resp, held, info));
                }
                Outcome::Unsent(r, e) => {
                    // hyper refused to send on it: it takes no request.
                    Lease::discard(&mut held.lease);
                    drop(held);
                    if unsent_left == 0 {
                        return Err(request_error(route, attempts, e));
                    }
                    unsent_left -= 1;
                    sh.retried_unsent.fetch_add(1, Ordering::Relaxed);
                    req = r;
                }
                Outcome::Sent(e) => {
                    // Gone before any byte of the response: HTTP/1, EOF or
                    // a reset with no byte read since the request; HTTP/2
                    // (no response head came), the connection closed or
                    // was shut down (hyper may then drop a request it had
                    // passed to h2 without an answer: "dispatch task is
                    // gone", sent or not).
                    let gone_early = if h2 {
                        closed_early(&e) || held.lease.state.is_unusable()
                    } else {
                        held.lease.state.bytes() == bytes_before && closed_early(&e)
                    };
                    // HTTP/1: the connection is in an unknown state;
                    // HTTP/2: a stream failed, the connection may serve on.
                    if !h2 || held.lease.is_closed() {
                        Lease::discard(&mut held.lease);
                    }
                    drop(held);
                    match replay {
                        Some(r) if h2 && unsent_left > 0 && not_processed(&e) => {
                            unsent_left -= 1;
                            sh.retried_unsent.fetch_add(1, Ordering::Relaxed);
                            req = r;
                        }
                        Some(r) if reused && idempotent && reused_left > 0 && gone_early => {
                            reused_left -= 1;
                            sh.retried_reused.fetch_add(1, Ordering::Relaxed);
                            req = r;
                        }
                        _ => return Err(request_error(route, attempts, e)),
                    }
                }
            }
        }
    }
}

/// Awaits a lease and the time it waited: zero, without a clock read, when
/// it was granted (or refused) at its first poll; otherwise from that first
/// poll to the answer.
async fn lease_timed<F: std::future::Future + Unpin>(mut fut: F) -> (F::Output, Duration) {
    let mut t0 = None;
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut fut).poll(cx) {
        std::task::Poll::Ready(r) => std::task::Poll::Ready((
            r,
            t0.map_or(Duration::ZERO, |t: std::time::Instant| t.elapsed()),
        )),
        std::task::Poll::Pending => {
            t0.get_or_insert_with(std::time::Instant::now);
            std::task::Poll::Pending
        }
    })
    .await
}

#[cold]
fn request_error(route: &HttpRoute, attempts: u32, source: hyper::Error) -> HttpError {
    HttpError::Request {
        route: route.to_string(),
        attempts,
        source,
    }
}

fn sent(
    r: Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Body>>>,
) -> Outcome {
    match r {
        Ok(resp) => Outcome::Response(resp),
        Err(mut e) => match e.take_message() {
            Some(req) => Outcome::Unsent(req, e.into_error()),
            None => Outcome::Sent(e.into_error()),
        },
    }
}

/// The response, its body holding the lease; HTTP/1's `Connection: close`
/// and `Keep-Alive: timeout=N` applied to the lease.
fn respond<C: HttpConnect>(
    resp: Response<Incoming>,
    mut held: Held<C>,
    info: RequestInfo,
) -> Response<ResponseBody<C>> {
    let (parts, incoming) = resp.into_parts();
    if !held.h2 {
        let close = has_token(&parts.headers, "close")
            || (parts.version == Version::HTTP_10 && !has_token(&parts.headers, "keep-alive"));
        if close {
            Lease::discard(&mut held.lease);
        } else if let Some(ka) = keep_alive(&parts.headers) {
            Lease::set_keep_alive(&mut held.lease, ka);
        }
    }
    Response::from_parts(parts, ResponseBody::new(incoming, held, info))
}

/// Builds a [`Client`]. Defaults:
///
/// | setting | default |
/// | --- | --- |
/// | `max_total` | 25 connections |
/// | `max_per_host` | 5 connections per route |
/// | `max_pending` | 1024 requests waiting for a connection |
/// | `max_routes` | `max_total + 64` routes known at once |
/// | `pool_timeout` | 30 s (waiting for a connection) |
/// | `connect_timeout` | 5 s (TCP, TLS and the HTTP handshake) |
/// | `request_timeout` | none (as hyper-util, reqwest and Go's `http.Client`: a timer per request costs ~3% of a loopback request; set one to bound a server that never answers) |
/// | `idle_timeout` | 90 s |
/// | `validate_after_inactivity` | 2 s (the connection's state is checked) |
/// | `max_lifetime` | none |
/// | `max_requests_per_connection` | none |
/// | `h2_max_streams` | 100 (cap on an HTTP/2 server's `MAX_CONCURRENT_STREAMS`) |
/// | `http2_prior_knowledge` | off (plain `http://` is HTTP/1.1) |
/// | `http1_only` | off (`https://` offers `h2` and `http/1.1`) |
/// | `retry_unsent` | 3 |
/// | `retry_idempotent` | on |
pub struct ClientBuilder {
    max_total: u32,
    max_per_host: u32,
    max_pending: u32,
    max_routes: Option<usize>,
    pool_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    validate_after_inactivity: Option<Duration>,
    max_lifetime: Option<Duration>,
    max_requests_per_connection: Option<u32>,
    max_idle_per_host: Option<u32>,
    h2_max_streams: u32,
    h2_prior_knowledge: bool,
    http1_only: bool,
    retry_unsent: u32,
    retry_reused: bool,
    preconnect_ratio: f32,
    min_idle_per_host: u32,
    connecting_streams: u32,
    routes: Vec<(HttpRoute, RouteConfig)>,
    runtime: Option<Handle>,
    #[cfg(feature = "rustls")]
    tls: super::tls::TlsSettings,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("max_total", &self.max_total)
            .field("max_per_host", &self.max_per_host)
            .field("h2_max_streams", &self.h2_max_streams)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// The defaults in the table above.
    pub fn new() -> Self {
        ClientBuilder {
            max_total: 25,
            max_per_host: 5,
            max_pending: 1024,
            max_routes: None,
            pool_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Some(Duration::from_secs(5)),
            request_timeout: None,
            idle_timeout: Some(Duration::from_secs(90)),
            validate_after_inactivity: Some(Duration::from_secs(2)),
            max_lifetime: None,
            max_requests_per_connection: None,
            max_idle_per_host: None,
            h2_max_streams: 100,
            h2_prior_knowledge: false,
            http1_only: false,
            retry_unsent: 3,
            retry_reused: true,
            preconnect_ratio: 1.0,
            min_idle_per_host: 0,
            connecting_streams: 1,
            routes: Vec::new(),
            runtime: None,
            #[cfg(feature = "rustls")]
            tls: super::tls::TlsSettings::default(),
        }
    }
    /// Connections (open and connecting) over all routes.
    pub fn max_total(mut self, n: u32) -> Self {
        self.max_total = n;
        self
    }
    /// Connections (open and connecting) per route (scheme, host, port,
    /// protocol, TLS identity).
    pub fn max_per_host(mut self, n: u32) -> Self {
        self.max_per_host = n;
        self
    }
    /// Requests waiting for a connection at once, over all routes; more
    /// fail at once ([`Error::Overflow`](crate::Error::Overflow)).
    pub fn max_pending(mut self, n: u32) -> Self {
        self.max_pending = n;
        self
    }
    /// Routes (scheme, host, port, protocol, TLS identity) known at once:
    /// a route takes a slot while it has a connection or a request waiting,
    /// and a request to a new route when every slot is taken fails at once
    /// ([`Error::RouteTableFull`](crate::Error::RouteTableFull)). Default
    /// `max_total + 64`: every connection on a route of its own, and 64
    /// routes more whose requests wait (slots are allocated at build).
    pub fn max_routes(mut self, n: usize) -> Self {
        self.max_routes = Some(n);
        self
    }
    /// How long a request waits for a connection (`None`: no limit but the
    /// request timeout).
    pub fn pool_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.pool_timeout = t.into();
        self
    }
    /// Bound of a connect: TCP, TLS and the HTTP handshake.
    pub fn connect_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = t.into();
        self
    }
    /// Time from the call until the response head, waiting for a connection
    /// and retries included (`None`: no limit).
    pub fn request_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.request_timeout = t.into();
        self
    }
    /// An idle connection closes after this long.
    pub fn idle_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = t.into();
        self
    }
    /// An idle connection is checked (its connection task's state) before
    /// it serves again after this long idle. Connections a server closed
    /// are noticed without it (the connection task reports them at once).
    pub fn validate_after_inactivity(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.validate_after_inactivity = t.into();
        self
    }
    /// A connection closes (when idle) this long after it opened.
    pub fn max_lifetime(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.max_lifetime = t.into();
        self
    }
    /// Requests one connection serves (HTTP/2: streams); the one that uses
    /// the last drains it (Envoy's `max_requests_per_connection`).
    pub fn max_requests_per_connection(mut self, n: impl Into<Option<u32>>) -> Self {
        self.max_requests_per_connection = n.into();
        self
    }
    /// Idle connections kept per route.
    pub fn max_idle_per_host(mut self, n: impl Into<Option<u32>>) -> Self {
        self.max_idle_per_host = n.into();
        self
    }
    /// Cap on the stream capacity of an HTTP/2 connection: the server's
    /// `MAX_CONCURRENT_STREAMS` (unlimited when it sets none) is used up to
    /// this (at least 1).
    pub fn h2_max_streams(mut self, n: u32) -> Self {
        self.h2_max_streams = n.max(1);
        self
    }
    /// Plain `http://` requests use HTTP/2 with prior knowledge (h2c), as
    /// a request with `Version::HTTP_2` does.
    pub fn http2_prior_knowledge(mut self, on: bool) -> Self {
        self.h2_prior_knowledge = on;
        self
    }
    /// `https://` requests offer only `http/1.1` by ALPN (unless a request
    /// asks for `Version::HTTP_2`).
    pub fn http1_only(mut self, on: bool) -> Self {
        self.http1_only = on;
        self
    }
    /// Retries of a request that was never sent (hyper handed it back: its
    /// connection closed first) or that an HTTP/2 server did not process;
    /// 0 turns them off.
    pub fn retry_unsent(mut self, n: u32) -> Self {
        self.retry_unsent = n;
        self
    }
    /// Retry once an idempotent request with a replayable body whose reused
    /// connection (it served a request before, or sat idle in the pool)
    /// closed before any response byte (Go's rule; HTTP/2: the connection
    /// closed or was shut down before the response head).
    pub fn retry_idempotent(mut self, on: bool) -> Self {
        self.retry_reused = on;
        self
    }
    /// Envoy's preconnect ratio (connections opened ahead of demand; 1.0 =
    /// none).
    pub fn preconnect_ratio(mut self, ratio: f32) -> Self {
        self.preconnect_ratio = ratio;
        self
    }
    /// Streams a connection still connecting is counted for (the pool's
    /// `connecting_capacity`; default 1). With only HTTP/2 routes, the
    /// expected streams per connection (e.g. 100) keeps a burst from opening
    /// a connection per waiting request up to the route's limit; with
    /// HTTP/1 routes leave it at 1 (it applies to every route).
    pub fn connecting_streams(mut self, n: u32) -> Self {
        self.connecting_streams = n.max(1);
        self
    }
    /// Idle connections kept open per route (warm-up).
    pub fn min_idle_per_host(mut self, n: u32) -> Self {
        self.min_idle_per_host = n;
        self
    }
    /// Settings of one route (its connection limit, warm-up, preconnect).
    pub fn route(mut self, route: HttpRoute, config: RouteConfig) -> Self {
        self.routes.push((route, config));
        self
    }
    /// The runtime the pool's tasks and the connection tasks run on
    /// (default: the current one).
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Builds the client over an [`HttpConnector`].
    pub fn build(self) -> Result<Client, HttpError> {
        self.build_with(|c| c)
    }

    /// Builds the client over a connector made from the [`HttpConnector`]
    /// (e.g. one that wraps it to count or log connects).
    pub fn build_with<C, F>(self, wrap: F) -> Result<Client<C>, HttpError>
    where
        C: HttpConnect,
        F: FnOnce(HttpConnector) -> C,
    {
        #[allow(unused_mut)]
        let mut connector = HttpConnector::new(self.h2_max_streams);
        #[cfg(feature = "rustls")]
        let identities = {
            let tls = self.tls.build()?;
            let mut ids: Vec<Option<Arc<str>>> = Vec::new();
            if tls.knows(&None) {
                ids.push(None);
            }
            for id in tls.identities() {
                ids.push(Some(id));
            }
            connector.tls = tls;
            ids
        };
        let opened = connector.opened.clone();
        let leases = u64::from(self.max_total)
            .saturating_add(2)
            .saturating_mul(u64::from(self.h2_max_streams))
            .min(1 << 20) as u32;
        let mut b = Builder::new(wrap(connector))
            .max_total(self.max_total)
            .max_per_route(self.max_per_host)
            .max_pending(self.max_pending)
            .max_routes(
                self.max_routes
                    .unwrap_or_else(|| (self.max_total as usize).saturating_add(64)),
            )
            .lease_timeout(self.pool_timeout)
            .connect_timeout(self.connect_timeout)
            .idle_timeout(self.idle_timeout)
            .validate_after_inactivity(self.validate_after_inactivity)
            .max_lifetime(self.max_lifetime)
            .max_leases_per_conn(self.max_requests_per_connection)
            .max_idle_per_route(self.max_idle_per_host)
            .max_leases(leases)
            .preconnect_ratio(self.preconnect_ratio)
            .min_idle_per_route(self.min_idle_per_host)
            .connecting_capacity(self.connecting_streams);
        for (route, config) in self.routes {
            b = b.route(route, config);
        }
        if let Some(rt) = self.runtime {
            b = b.runtime(rt);
        }
        let pool = b.build().map_err(|e| HttpError::Config {
            what: String::from("the pool's settings"),
            source: Box::new(e),
        })?;
        Ok(Client {
            pool,
            shared: Arc::new(Shared {
                plain: if self.h2_prior_knowledge {
                    Protocol::Http2
                } else {
                    Protocol::Auto
                },
                tls_default: if self.http1_only {
                    Protocol::Http1
                } else {
                    Protocol::Auto
                },
                retry_unsent: self.retry_unsent,
                retry_reused: self.retry_reused,
                request_timeout: self.request_timeout,
                #[cfg(feature = "rustls")]
                identities,
                opened,
                requests: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                retried_unsent: AtomicU64::new(0),
                retried_reused: AtomicU64::new(0),
                max_streams: AtomicU32::new(0),
            }),
        })
    }
}

#[cfg(feature = "rustls")]
impl ClientBuilder {
    /// The certificate authorities TLS servers are checked against (e.g.
    /// `webpki-roots`, or a private CA). Makes the config of requests
    /// without a client identity, and of identities given by certificate.
    pub fn tls_roots(mut self, roots: rustls::RootCertStore) -> Self {
        self.tls.roots = Some(roots);
        self
    }
    /// A rustls config of your own for requests without a client identity
    /// (its ALPN protocols are set by the client).
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls.base = Some(config);
        self
    }
    /// A client identity: requests with the [`Identity`](super::Identity)
    /// extension `name` present this certificate chain (checked against
    /// the [`tls_roots`](Self::tls_roots)). Connections of one identity
    /// never serve another.
    ///
    /// ```
    /// use http::Request;
    /// use wharf_test_servers::{ClientAuth, Http1Server, TestPki};
    /// use wharf_tokio::http::{Body, Client, Identity};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pki = TestPki::new(); // a CA, a certificate for localhost, alice and bob
    /// let server = Http1Server::builder()
    ///     .tls(pki.server_tls().client_auth(ClientAuth::Required))
    ///     .start()
    ///     .await;
    /// let alice = pki.alice();
    /// let client = Client::builder()
    ///     .tls_roots(pki.root_store())
    ///     .tls_identity("alice", alice.cert_chain.clone(), alice.key())
    ///     .build()?;
    /// let mut req = Request::get(server.url("/conn")).body(Body::empty())?;
    /// req.extensions_mut().insert(Identity::new("alice"));
    /// let resp = client.request(req).await?;
    /// assert_eq!(resp.version(), http::Version::HTTP_2); // ALPN picked h2
    /// let body = resp.into_body().bytes().await?;
    /// assert!(String::from_utf8_lossy(&body).contains("identity=alice"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn tls_identity(
        mut self,
        name: &str,
        cert_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Self {
        self.tls.identities.push((
            Arc::from(name),
            super::tls::IdentitySource::Cert(cert_chain, key),
        ));
        self
    }
    /// A client identity with a rustls config of your own.
    pub fn tls_identity_config(mut self, name: &str, config: rustls::ClientConfig) -> Self {
        self.tls.identities.push((
            Arc::from(name),
            super::tls::IdentitySource::Config(Box::new(config)),
        ));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_header() {
        let mut h = http::HeaderMap::new();
        h.insert("keep-alive", HeaderValue::from_static("timeout=5, max=100"));
        assert_eq!(keep_alive(&h), Some(Duration::from_secs(5)));
        h.insert("keep-alive", HeaderValue::from_static("max=3,Timeout = 2"));
        assert_eq!(keep_alive(&h), Some(Duration::from_secs(2)));
        h.insert("keep-alive", HeaderValue::from_static("max=3"));
        assert_eq!(keep_alive(&h), None);
    }

    #[test]
    fn connection_tokens() {
        let mut h = http::HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Close"));
        assert!(has_token(&h, "close"));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!has_token(&h, "close"));
    }

    #[test]
    fn idempotent_methods() {
        let r = |m: Method| Request::builder().method(m).body(()).unwrap();
        assert!(is_idempotent(&r(Method::GET)));
        assert!(is_idempotent(&r(Method::DELETE)));
        assert!(!is_idempotent(&r(Method::POST)));
        let keyed = Request::post("/")
            .header("Idempotency-Key", "k")
            .body(())
            .unwrap();
        assert!(is_idempotent(&keyed));
    }

    #[test]
    fn forms_by_protocol() {
        let route = HttpRoute::http("h", 8080).unwrap();
        let mut req = Request::get("http://h:8080/a?b")
            .body(Body::empty())
            .unwrap();
        prepare(&mut req, &route, false);
        assert_eq!(req.uri(), "/a?b");
        assert_eq!(req.headers()[HOST], "h:8080");
        prepare(&mut req, &route, true);
        assert_eq!(req.uri(), "http://h:8080/a?b");
        assert_eq!(req.version(), Version::HTTP_2);
    }
}
