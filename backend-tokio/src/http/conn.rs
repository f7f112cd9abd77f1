//! An HTTP connection as the pool holds it ([`HttpConn`]), what its
//! connection task and its tap learn about it ([`ConnState`]), and the
//! connection tasks.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use atomic_waker::AtomicWaker;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use wharf_driver::ConnEvent;

use super::body::Body;
use super::io::Tap;

/// What a connection's task and its tap saw, for the pool's watch
/// ([`Connector::poll_event`](crate::Connector::poll_event)) and the
/// client's retry rules. Shared by the connection object, its handles
/// (HTTP/2), its connection task and its I/O tap.
pub(crate) struct ConnState {
    h2: bool,
    /// The connection ended: hyper's connection task finished, or the tap
    /// read EOF or an error.
    closed: AtomicBool,
    /// HTTP/2: the server sent GOAWAY (or allows no stream at all).
    goaway: AtomicBool,
    /// HTTP/2: the stream capacity (the server's `MAX_CONCURRENT_STREAMS`,
    /// capped); 0 until its first SETTINGS frame was applied.
    capacity: AtomicU32,
    /// HTTP/2: `capacity` changed since the pool's watch last looked.
    capacity_changed: AtomicBool,
    /// HTTP/2: a SETTINGS frame was applied: the connection task reads
    /// hyper's `current_max_send_streams()` again.
    settings_dirty: AtomicBool,
    /// HTTP/1: plaintext bytes read so far (a response started, or not).
    bytes: AtomicU64,
    /// Requests started on this connection.
    requests: AtomicU64,
    /// HTTP/2: streams of this client in use now, and the most at once.
    in_flight: AtomicU32,
    peak: AtomicU32,
    /// The pool's watch waker (one per connection slot).
    pool: AtomicWaker,
    /// HTTP/2: the connection task's waker (woken when SETTINGS changed).
    task: AtomicWaker,
    /// HTTP/2: the connect waits here for the first SETTINGS.
    ready: Notify,
    /// The first read error the tap saw (a TLS alert, a reset), for the
    /// connect error of an HTTP/2 connection that ends before its SETTINGS.
    read_error: Mutex<Option<std::io::Error>>,
}

/// Registers `waker` (no clone when it is the one already registered).
#[inline]
fn register(slot: &AtomicWaker, waker: &Waker) {
    slot.register(waker);
}

fn wake(slot: &AtomicWaker) {
    slot.wake();
}

impl ConnState {
    pub(crate) fn new(h2: bool) -> Self {
        ConnState {
            h2,
            closed: AtomicBool::new(false),
            goaway: AtomicBool::new(false),
            capacity: AtomicU32::new(0),
            capacity_changed: AtomicBool::new(false),
            settings_dirty: AtomicBool::new(false),
            bytes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            peak: AtomicU32::new(0),
            pool: AtomicWaker::new(),
            task: AtomicWaker::new(),
            ready: Notify::new(),
            read_error: Mutex::new(None),
        }
    }

    /// The tap's read failed.
    pub(crate) fn read_failed(&self, e: &std::io::Error) {
        let mut slot = self.read_error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(std::io::Error::new(e.kind(), e.to_string()));
        }
        drop(slot);
        self.read_closed();
    }

    fn take_read_error(&self) -> Option<std::io::Error> {
        self.read_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The tap read a GOAWAY frame header.
    pub(crate) fn goaway_seen(&self) {
        self.goaway.store(true, Ordering::Release);
        wake(&self.pool);
    }

    /// The tap saw h2 apply a SETTINGS frame: the connection task looks at
    /// the stream capacity again.
    pub(crate) fn settings_applied(&self) {
        self.settings_dirty.store(true, Ordering::Release);
        wake(&self.task);
    }

    /// EOF or a read error at the tap, or the connection task ended.
    pub(crate) fn read_closed(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            wake(&self.pool);
            self.ready.notify_one();
        }
    }

    pub(crate) fn bytes_read(&self, n: usize) {
        if !self.h2 {
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn is_goaway(&self) -> bool {
        self.goaway.load(Ordering::Acquire)
    }

    /// Gone for new requests: closed, or (HTTP/2) shut down by the server.
    pub(crate) fn is_unusable(&self) -> bool {
        self.is_closed() || self.is_goaway()
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.capacity.load(Ordering::Acquire)
    }

    /// The connection task read the server's stream limit (capped).
    fn publish_capacity(&self, k: u32) {
        if k == 0 {
            // A server that allows no stream: no lease can use it.
            self.goaway_seen();
            self.ready.notify_one();
            return;
        }
        let old = self.capacity.swap(k, Ordering::AcqRel);
        if old == 0 {
            self.ready.notify_one();
        } else if old != k {
            self.capacity_changed.store(true, Ordering::Release);
            wake(&self.pool);
        }
    }

    /// A request starts on the connection; `true` if it served one before
    /// (the client also counts a connection that sat idle in the pool as
    /// reused: [`Lease::is_reused`](crate::Lease::is_reused)).
    pub(crate) fn start_request(&self) -> bool {
        self.requests.fetch_add(1, Ordering::Relaxed) > 0
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// HTTP/2: a stream of this client opens; the number in use now.
    pub(crate) fn stream_open(&self) -> u32 {
        let n = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        // A write only for a new peak.
        if n > self.peak.load(Ordering::Acquire) {
            self.peak.fetch_max(n, Ordering::AcqRel);
        }
        n
    }

    pub(crate) fn stream_closed(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn peak_streams(&self) -> u32 {
        self.peak.load(Ordering::Acquire)
    }

    /// The pool's watch: what happened since it last looked, else `Pending`
    /// with its waker registered.
    pub(crate) fn poll_event(&self, cx: &mut Context<'_>) -> Poll<ConnEvent> {
        register(&self.pool, cx.waker());
        if self.is_unusable() {
            return Poll::Ready(ConnEvent::PeerClosed);
        }
        if self.capacity_changed.swap(false, Ordering::AcqRel) {
            return Poll::Ready(ConnEvent::Capacity(self.capacity()));
        }
        Poll::Pending
    }
}

pub(crate) enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// An HTTP connection in the pool: HTTP/1.1 (one request at a time, the
/// object moves into the lease) or HTTP/2 (multiplexed: the object stays in
/// the pool and each lease holds a handle, a clone of hyper's
/// `SendRequest`). Made by [`HttpConnector`](super::HttpConnector); the
/// [`Client`](super::Client) sends requests on it.
pub struct HttpConn {
    pub(crate) sender: Sender,
    pub(crate) state: Arc<ConnState>,
    /// Plain HTTP/1: the socket, for the hand-out check.
    pub(crate) tcp: Option<Arc<TcpStream>>,
}

impl fmt::Debug for HttpConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConn")
            .field("version", &self.version())
            .field("requests", &self.requests())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl HttpConn {
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub fn version(&self) -> http::Version {
        match self.sender {
            Sender::H1(_) => http::Version::HTTP_11,
            Sender::H2(_) => http::Version::HTTP_2,
        }
    }

    /// True when it takes no new request: closed, or (HTTP/2) shut down by
    /// the server with GOAWAY.
    pub fn is_closed(&self) -> bool {
        self.state.is_unusable()
            || match &self.sender {
                Sender::H1(s) => s.is_closed(),
                Sender::H2(s) => s.is_closed(),
            }
    }

    /// Requests started on the connection so far.
    pub fn requests(&self) -> u64 {
        self.state.requests()
    }

    /// HTTP/2: the most streams this client had open on it at once (0 for
    /// HTTP/1).
    pub fn peak_streams(&self) -> u32 {
        self.state.peak_streams()
    }

    /// HTTP/2: its stream capacity now (the server's
    /// `MAX_CONCURRENT_STREAMS`, capped by
    /// [`ClientBuilder::h2_max_streams`](super::ClientBuilder::h2_max_streams));
    /// `None` for HTTP/1.
    pub fn stream_capacity(&self) -> Option<u32> {
        match self.sender {
            Sender::H1(_) => None,
            Sender::H2(_) => Some(self.state.capacity()),
        }
    }

    pub(crate) fn is_h2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// A handle for one more lease (HTTP/2 only; a connection that is gone
    /// is refused by the hand-out check).
    pub(crate) fn share(&self) -> Option<HttpConn> {
        match &self.sender {
            Sender::H2(s) => Some(HttpConn {
                sender: Sender::H2(s.clone()),
                state: self.state.clone(),
                tcp: None,
            }),
            _ => None,
        }
    }
}

/// HTTP/1.1: hyper's handshake, then its connection task, which marks the
/// connection closed when it ends.
pub(crate) async fn start_h1(
    builder: &http1::Builder,
    io: Tap,
    state: Arc<ConnState>,
) -> hyper::Result<http1::SendRequest<Body>> {
    let (sender, conn) = builder.handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
        state.read_closed();
    });
    Ok(sender)
}

/// Why an HTTP/2 connection could not start.
pub(crate) enum H2StartError {
    Handshake(hyper::Error),
    /// Closed (or shut down, or no stream allowed) before the server's
    /// first SETTINGS frame came; the read error, if one ended it.
    ClosedEarly(Option<std::io::Error>),
}

/// HTTP/2: hyper's handshake, then its connection task, which also reads
/// hyper's `current_max_send_streams()` each time the tap saw a SETTINGS
/// frame applied (capped at `cap`). Returns once the server's first
/// SETTINGS frame was applied, so the stream capacity is the server's.
pub(crate) async fn start_h2(
    builder: &http2::Builder<TokioExecutor>,
    io: Tap,
    state: Arc<ConnState>,
    cap: u32,
) -> Result<http2::SendRequest<Body>, H2StartError> {
    let (sender, conn) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(H2StartError::Handshake)?;
    let st = state.clone();
    tokio::spawn(async move {
        let mut conn = pin!(conn);
        poll_fn(|cx| {
            register(&st.task, cx.waker());
            let r = conn.as_mut().poll(cx);
            if st.settings_dirty.swap(false, Ordering::AcqRel) {
                let k = conn.current_max_send_streams();
                st.publish_capacity(u32::try_from(k).unwrap_or(u32::MAX).min(cap));
            }
            r.map(|_| ())
        })
        .await;
        st.read_closed();
    });
    loop {
        let ready = state.ready.notified();
        if state.is_unusable() {
            return Err(H2StartError::ClosedEarly(state.take_read_error()));
        }
        if state.capacity() > 0 {
            // What the pool learns at connect is not a change.
            state.capacity_changed.store(false, Ordering::Release);
            return Ok(sender);
        }
        ready.await;
    }
}
