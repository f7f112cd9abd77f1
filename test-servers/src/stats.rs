//! Counters every server keeps, read as snapshots ([`Stats`]) and waited on
//! ([`StatsHandle::wait_for`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::tcp::Fault;

/// How long [`StatsHandle::wait_for`] waits before it panics: generous, for a loaded 2-core machine.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);

/// The protocol a connection spoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Not known yet (TCP accepted, TLS handshake not finished).
    Unknown,
    /// HTTP/1.1 (hyper's server).
    Http1,
    /// HTTP/2 (the `h2` crate's server), prior knowledge or ALPN `h2`.
    Http2,
    /// The raw line protocol of [`TcpFaultServer`](crate::TcpFaultServer).
    Line,
}

/// Why the server's side of a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed (EOF) or reset the connection first.
    ClientClosed,
    /// The server closed a connection idle for longer than its idle timeout.
    IdleTimeout,
    /// The server closed after its per-connection request limit (HTTP/1.1 after the N-th
    /// response; HTTP/2 by GOAWAY; the line server after the N-th reply).
    MaxRequests,
    /// The server sent GOAWAY on demand ([`HttpServer::goaway_all`](crate::HttpServer::goaway_all))
    /// or closed an HTTP/1.1 connection for the same call.
    GoAway,
    /// A fault of the [`TcpFaultServer`](crate::TcpFaultServer) policy ended it (reset on accept,
    /// lifetime reached, `!close`/`!reset` command).
    Fault,
    /// The server was shut down while the connection was open.
    Shutdown,
    /// The TLS handshake failed (the message says why).
    TlsHandshake(String),
    /// A protocol or I/O error (the message says which).
    Error(String),
}

/// What the server knows about one connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// 1, 2, 3, … in accept order (per server). HTTP responses carry it as `x-conn-id`.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// When the server accepted it.
    pub accepted_at: Instant,
    /// When the server saw its end (`None` while open).
    pub closed_at: Option<Instant>,
    /// Protocol spoken.
    pub protocol: Protocol,
    /// ALPN protocol chosen in the TLS handshake (`None` without TLS or without ALPN).
    pub alpn: Option<String>,
    /// TLS only: the identity (the name given to [`TestPki::client`](crate::TestPki::client))
    /// of the client certificate presented; `Some("unknown")` for a certificate not issued by
    /// the server's [`TestPki`](crate::TestPki).
    pub identity: Option<String>,
    /// Requests served (HTTP requests answered, streams answered, lines answered).
    pub requests: u64,
    /// HTTP/2: streams in flight now.
    pub in_flight: u64,
    /// The most requests in flight at once on this connection (HTTP/2 streams; 1 for HTTP/1.1
    /// and the line protocol once a request was served).
    pub peak_streams: u64,
    /// HTTP/2: streams refused with `REFUSED_STREAM` (after GOAWAY or the request limit, or
    /// above the advertised `MAX_CONCURRENT_STREAMS`).
    pub refused_streams: u64,
    /// HTTP/2: streams refused because they exceeded the advertised (and acknowledged)
    /// `MAX_CONCURRENT_STREAMS` (a subset of `refused_streams`).
    pub streams_over_limit: u64,
    /// HTTP/2: the `MAX_CONCURRENT_STREAMS` value last advertised on this connection
    /// (`None`: never advertised, i.e. unlimited).
    pub max_streams_advertised: Option<u32>,
    /// HTTP/2: the last advertised value that the client acknowledged (SETTINGS ACK).
    pub max_streams_acked: Option<u32>,
    /// HTTP/2: the server sent GOAWAY on this connection.
    pub goaway_sent: bool,
    /// The moment the server decided to close it (idle timeout, request limit, GOAWAY, fault).
    pub close_decided_at: Option<Instant>,
    /// When the server closed its side (sent FIN or RST); the connection stays open in the
    /// counters until the server sees the client's end or its linger runs out.
    pub server_closed_at: Option<Instant>,
    /// **Dead-connection evidence**: bytes the client sent after the server had decided to close
    /// (bytes left unread in the server's buffer, plus bytes read while the server lingered
    /// after its FIN). Non-zero means the client reused a connection the server had closed.
    pub late_bytes: u64,
    /// Requests among `late_bytes`: HTTP/1.1 request heads, HTTP/2 HEADERS frames, lines.
    /// (HTTP/2 counts only HEADERS, DATA and CONTINUATION frames in `late_bytes`: control
    /// frames a client sends while closing are not evidence of reuse.)
    pub late_requests: u64,
    /// The server closed with RST (SO_LINGER 0) instead of FIN.
    pub reset_by_server: bool,
    /// Why it ended, or why the server decided to end it (set at the decision, so also while
    /// the connection lingers or finishes its streams); `None` while open for no such reason.
    pub close: Option<CloseReason>,
    /// The raw TCP server's fault drawn for this connection.
    pub fault: Option<Fault>,
}

impl ConnInfo {
    fn new(id: u64, peer: SocketAddr, protocol: Protocol) -> Self {
        ConnInfo {
            id,
            peer,
            accepted_at: Instant::now(),
            closed_at: None,
            protocol,
            alpn: None,
            identity: None,
            requests: 0,
            in_flight: 0,
            peak_streams: 0,
            refused_streams: 0,
            streams_over_limit: 0,
            max_streams_advertised: None,
            max_streams_acked: None,
            goaway_sent: false,
            close_decided_at: None,
            server_closed_at: None,
            late_bytes: 0,
            late_requests: 0,
            reset_by_server: false,
            close: None,
            fault: None,
        }
    }

    /// Still open (the server has not seen its end).
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }
}

/// A snapshot of a server's counters.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Connections accepted (TCP level, including ones whose TLS handshake failed).
    pub accepted: u64,
    /// Open now: from accept until the server sees the connection's end (its task finished,
    /// including the linger after a FIN; see [`HttpServerBuilder::close_linger`](crate::HttpServerBuilder::close_linger)).
    pub open: u64,
    /// The most connections open at once (exact: counted under one lock).
    pub peak_open: u64,
    /// [`TcpFaultServer`](crate::TcpFaultServer) only: the most connections open at once as
    /// the *client* holds them, counted at each accept over the server's connections whose
    /// client had not closed yet (no FIN or RST received, checked with a non-blocking peek).
    /// `peak_open` counts a connection until the server's task sees its end, so a client that
    /// closes one connection and opens the next at once can show in it as one more; this one
    /// does not lag (on loopback the client's FIN arrives before its next SYN).
    pub peak_live: u64,
    /// Requests served over all connections.
    pub requests: u64,
    /// HTTP/2 streams refused (all connections).
    pub refused_streams: u64,
    /// Connections with dead-connection evidence (`late_bytes > 0`).
    pub late_conns: u64,
    /// Late requests over all connections (see [`ConnInfo::late_requests`]).
    pub late_requests: u64,
    /// TLS handshakes that failed.
    pub tls_failures: u64,
    /// Requests waiting at `/hold` now (HTTP servers).
    pub held: u64,
    /// Every connection, in accept order (`conns[i].id == i + 1`).
    pub conns: Vec<ConnInfo>,
}

impl Stats {
    /// Requests served on each connection, in accept order.
    pub fn requests_per_conn(&self) -> Vec<u64> {
        self.conns.iter().map(|c| c.requests).collect()
    }

    /// How many connections served each number of requests (requests → connections).
    pub fn requests_histogram(&self) -> std::collections::BTreeMap<u64, u64> {
        let mut h = std::collections::BTreeMap::new();
        for c in &self.conns {
            *h.entry(c.requests).or_insert(0) += 1;
        }
        h
    }

    /// The most requests served on one connection.
    pub fn max_requests_per_conn(&self) -> u64 {
        self.conns.iter().map(|c| c.requests).max().unwrap_or(0)
    }

    /// The most requests in flight on one connection (HTTP/2 streams).
    pub fn peak_streams(&self) -> u64 {
        self.conns.iter().map(|c| c.peak_streams).max().unwrap_or(0)
    }

    /// Connections whose server side was closed by the server (FIN or RST sent).
    pub fn server_closed(&self) -> u64 {
        self.conns
            .iter()
            .filter(|c| c.server_closed_at.is_some())
            .count() as u64
    }

    /// Connections whose end the server has seen.
    pub fn closed(&self) -> u64 {
        self.accepted - self.open
    }

    /// The connection with this id (`x-conn-id`).
    pub fn conn(&self, id: u64) -> Option<&ConnInfo> {
        id.checked_sub(1).and_then(|i| self.conns.get(i as usize))
    }

    /// Connections that ended for this reason.
    pub fn closed_for(&self, reason: &CloseReason) -> u64 {
        self.conns
            .iter()
            .filter(|c| c.close.as_ref() == Some(reason))
            .count() as u64
    }
}

/// Shared recorder: one lock over every counter, a watch channel that ticks on each change.
pub(crate) struct Recorder {
    inner: Mutex<Stats>,
    tick: watch::Sender<u64>,
}

impl Recorder {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Recorder {
            inner: Mutex::new(Stats::default()),
            tick: watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.tick.send_modify(|t| *t += 1);
    }

    /// `live` connections the client holds now (counted at an accept).
    pub(crate) fn note_live(&self, live: u64) {
        let mut s = self.lock();
        s.peak_live = s.peak_live.max(live);
    }

    /// A connection was accepted: returns its id.
    pub(crate) fn open(&self, peer: SocketAddr, protocol: Protocol) -> u64 {
        let id;
        {
            let mut s = self.lock();
            s.accepted += 1;
            s.open += 1;
            s.peak_open = s.peak_open.max(s.open);
            id = s.conns.len() as u64 + 1;
            s.conns.push(ConnInfo::new(id, peer, protocol));
        }
        self.changed();
        id
    }

    /// Changes one connection's record (and the totals derived from it).
    pub(crate) fn update<R>(&self, id: u64, f: impl FnOnce(&mut ConnInfo) -> R) -> R {
        let r;
        {
            let mut s = self.lock();
            let s = &mut *s;
            let c = &mut s.conns[(id - 1) as usize];
            let (req, refused, late_b, late_r) = (
                c.requests,
                c.refused_streams,
                c.late_bytes > 0,
                c.late_requests,
            );
            r = f(c);
            s.requests += c.requests - req;
            s.refused_streams += c.refused_streams - refused;
            s.late_conns += u64::from(!late_b && c.late_bytes > 0);
            s.late_requests += c.late_requests - late_r;
        }
        self.changed();
        r
    }

    /// Reads one connection's record.
    pub(crate) fn read<R>(&self, id: u64, f: impl FnOnce(&ConnInfo) -> R) -> R {
        let s = self.lock();
        f(&s.conns[(id - 1) as usize])
    }

    /// Records the decision to close and its reason (the first decision wins), visible while
    /// the connection is still open (lingering, or finishing its streams).
    pub(crate) fn decide_close(&self, id: u64, reason: CloseReason) {
        self.update(id, |c| {
            if c.close_decided_at.is_none() {
                c.close_decided_at = Some(Instant::now());
                c.close.get_or_insert(reason);
            }
        });
    }

    /// The server closed its side (FIN or RST sent).
    pub(crate) fn server_closed(&self, id: u64, reset: bool) {
        self.update(id, |c| {
            c.server_closed_at.get_or_insert_with(Instant::now);
            c.reset_by_server |= reset;
        });
    }

    /// The server saw the connection's end. The first reason given wins.
    pub(crate) fn close(&self, id: u64, reason: CloseReason) {
        {
            let mut s = self.lock();
            let c = &mut s.conns[(id - 1) as usize];
            if c.closed_at.is_some() {
                return;
            }
            c.closed_at = Some(Instant::now());
            if c.close.is_none() {
                c.close = Some(reason);
            }
            c.in_flight = 0;
            s.open -= 1;
        }
        self.changed();
    }

    /// Marks every connection still open as closed for `reason` (after the server's tasks ended).
    pub(crate) fn close_all_open(&self, reason: CloseReason) {
        {
            let mut s = self.lock();
            let now = Instant::now();
            let mut closed = 0;
            for c in s.conns.iter_mut().filter(|c| c.closed_at.is_none()) {
                c.closed_at = Some(now);
                c.close.get_or_insert(reason.clone());
                c.in_flight = 0;
                closed += 1;
            }
            s.open -= closed;
        }
        self.changed();
    }

    pub(crate) fn tls_failed(&self) {
        self.lock().tls_failures += 1;
        self.changed();
    }

    pub(crate) fn add_held(&self, delta: i64) {
        {
            let mut s = self.lock();
            s.held = (s.held as i64 + delta) as u64;
        }
        self.changed();
    }

    pub(crate) fn snapshot(&self) -> Stats {
        self.lock().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }
}

/// Read access to a server's counters; every server derefs to one.
#[derive(Clone)]
pub struct StatsHandle {
    pub(crate) rec: Arc<Recorder>,
}

impl StatsHandle {
    /// A snapshot of every counter and connection record.
    pub fn stats(&self) -> Stats {
        self.rec.snapshot()
    }

    /// Waits until `pred` holds for the counters, re-checking after every change; returns the
    /// snapshot that satisfied it. Panics after [`DEFAULT_WAIT`] with `what` and the last
    /// snapshot, so a test fails with a message instead of hanging.
    ///
    /// ```
    /// # async fn f(server: &wharf_test_servers::HttpServer) {
    /// let s = server.wait_for("one connection closed", |s| s.closed() == 1).await;
    /// assert_eq!(s.accepted, 1);
    /// # }
    /// ```
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Stats) -> bool) -> Stats {
        match self.wait_for_timeout(DEFAULT_WAIT, &pred).await {
            Ok(s) => s,
            Err(s) => panic!("timed out after {DEFAULT_WAIT:?} waiting for: {what}\nstats: {s:#?}"),
        }
    }

    /// Like [`wait_for`](Self::wait_for) with a deadline: `Err(last snapshot)` when it passes.
    pub async fn wait_for_timeout(
        &self,
        timeout: Duration,
        pred: impl Fn(&Stats) -> bool,
    ) -> Result<Stats, Stats> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.rec.subscribe();
        loop {
            rx.borrow_and_update();
            let s = self.rec.snapshot();
            if pred(&s) {
                return Ok(s);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let s = self.rec.snapshot();
                    return if pred(&s) { Ok(s) } else { Err(s) };
                }
            }
        }
    }
}
