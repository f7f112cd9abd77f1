//! HTTP/1.1 connections: hyper's server, with the server's own idle timer, request limit and
//! close (FIN + linger, or RST) around it.
//!
//! hyper owns the socket through [`Tracked`], which (a) marks the connection busy when request
//! bytes arrive and (b) stops hyper from reading once the server decided to close (the "gate"),
//! so whatever the client sends after that decision stays in the socket and is counted as
//! dead-connection evidence instead of being served.

use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{count_heads, respond, CloseMode, RequestCtx, Shared};
use crate::net::ServerStream;
use crate::stats::{CloseReason, Protocol};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle(Instant),
    Busy,
}

struct St {
    phase: Phase,
    /// The server decided to close: hyper reads nothing more.
    gate: bool,
    /// Why (set by the request path for the request limit / GOAWAY; by the serve loop for idle).
    close: Option<CloseReason>,
    requests: u64,
    draining: bool,
}

struct ConnState {
    st: Mutex<St>,
    notify: Notify,
}

impl ConnState {
    fn lock(&self) -> std::sync::MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The socket as hyper sees it.
struct Tracked {
    inner: ServerStream,
    st: Arc<ConnState>,
    eof: bool,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        {
            let st = this.st.lock();
            if st.gate {
                // No waker kept: once the gate is shut the serve loop calls hyper's graceful
                // shutdown and polls the connection again, which then reads no more.
                return Poll::Pending;
            }
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            if buf.filled().len() > before {
                let mut st = this.st.lock();
                if let Phase::Idle(_) = st.phase {
                    st.phase = Phase::Busy;
                    drop(st);
                    this.st.notify.notify_one();
                }
            } else {
                this.eof = true;
            }
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that marks the connection idle when hyper is done with it.
struct TrackedBody {
    inner: Full<Bytes>,
    st: Arc<ConnState>,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        let mut st = self.st.lock();
        if st.phase == Phase::Busy {
            st.phase = Phase::Idle(Instant::now());
        }
        drop(st);
        self.st.notify.notify_one();
    }
}

type BoxFut =
    Pin<Box<dyn std::future::Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

fn handle(req: Request<Incoming>, id: u64, shared: Arc<Shared>, st: Arc<ConnState>) -> BoxFut {
    Box::pin(async move {
        {
            let mut s = st.lock();
            s.phase = Phase::Busy;
        }
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let req = Request::from_parts(parts, body);
        let cfg = &shared.cfg;
        let n = {
            let mut s = st.lock();
            s.requests += 1;
            s.requests
        };
        let (alpn, identity) = shared
            .rec
            .read(id, |c| (c.alpn.clone(), c.identity.clone()));
        let ctx = RequestCtx {
            conn_id: id,
            request_on_conn: n,
            protocol: Protocol::Http1,
            alpn,
            identity,
        };
        let resp = respond(&shared, req, &ctx).await;
        // Decided when the response is ready (a GOAWAY call during a long request counts).
        let closing = {
            let mut s = st.lock();
            let closing = s.draining || cfg.max_requests.is_some_and(|m| n >= m);
            if closing {
                // Before the response is written: nothing more is read from the client.
                s.gate = true;
                let why = if s.draining {
                    CloseReason::GoAway
                } else {
                    CloseReason::MaxRequests
                };
                s.close.get_or_insert(why);
            }
            closing
        };
        if closing {
            let why = st.lock().close.clone().unwrap_or(CloseReason::MaxRequests);
            shared.rec.decide_close(id, why);
            st.notify.notify_one();
        }
        let (mut parts, body) = resp.into_parts();
        if closing {
            if !cfg.close_without_header {
                parts
                    .headers
                    .insert(http::header::CONNECTION, "close".parse().unwrap());
            }
        } else if let Some(secs) = cfg.keep_alive_header {
            let v = match cfg.max_requests {
                Some(m) => format!("timeout={secs}, max={}", m - n),
                None => format!("timeout={secs}"),
            };
            parts
                .headers
                .insert("keep-alive", v.parse().expect("keep-alive header"));
        }
        shared.rec.update(id, |c| {
            c.requests += 1;
            c.peak_streams = c.peak_streams.max(1);
        });
        Ok(Response::from_parts(
            parts,
            TrackedBody {
                inner: Full::new(body),
                st: st.clone(),
            },
        ))
    })
}

/// Waits until the server should start closing: the request path decided (limit/GOAWAY while
/// busy), the idle timer ran out, or `goaway_all` was called.
async fn close_signal(
    st: &ConnState,
    idle: Option<Duration>,
    ctl: &mut tokio::sync::watch::Receiver<super::Control>,
    seen_goaway: u64,
) -> CloseReason {
    let mut ctl_open = true;
    loop {
        let notified = st.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (phase, close) = {
            let s = st.lock();
            (s.phase, s.close.clone())
        };
        if let Some(r) = close {
            return r;
        }
        let deadline = match (phase, idle) {
            (Phase::Idle(since), Some(t)) => Some(since + t),
            _ => None,
        };
        tokio::select! {
            _ = &mut notified => {}
            r = ctl.changed(), if ctl_open => {
                if r.is_err() {
                    ctl_open = false;
                    continue;
                }
                let goaway = ctl.borrow_and_update().goaway;
                if goaway == seen_goaway {
                    continue; // another setting (HTTP/2 streams) changed
                }
                let mut s = st.lock();
                s.draining = true;
                if let Phase::Idle(_) = s.phase {
                    s.gate = true;
                    s.close.get_or_insert(CloseReason::GoAway);
                    return CloseReason::GoAway;
                }
                // Busy: the response in progress carries `Connection: close`; hyper closes
                // after it (graceful shutdown below), whatever the request path saw.
                s.close.get_or_insert(CloseReason::GoAway);
                return CloseReason::GoAway;
            }
            _ = sleep_until_opt(deadline) => {
                let mut s = st.lock();
                if s.phase == phase && s.close.is_none() {
                    s.gate = true;
                    s.close = Some(CloseReason::IdleTimeout);
                    return CloseReason::IdleTimeout;
                }
            }
        }
    }
}

async fn sleep_until_opt(d: Option<Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn serve(stream: ServerStream, id: u64, shared: Arc<Shared>) {
    let st = Arc::new(ConnState {
        st: Mutex::new(St {
            phase: Phase::Idle(Instant::now()),
            gate: false,
            close: None,
            requests: 0,
            draining: false,
        }),
        notify: Notify::new(),
    });
    let tracked = Tracked {
        inner: stream,
        st: st.clone(),
        eof: false,
    };
    let svc = {
        let (shared, st) = (shared.clone(), st.clone());
        hyper::service::service_fn(move |req| handle(req, id, shared.clone(), st.clone()))
    };
    let mut conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tracked), svc);
    let mut ctl = shared.ctl.clone();
    // Only GOAWAY calls from now on concern this connection.
    let seen_goaway = ctl.borrow_and_update().goaway;
    let mut shutdown_called = false;
    let result = loop {
        let ev = tokio::select! {
            r = poll_fn(|cx| conn.poll_without_shutdown(cx)) => Ok(r),
            r = close_signal(&st, shared.cfg.idle_timeout, &mut ctl, seen_goaway), if !shutdown_called => Err(r),
        };
        match ev {
            Ok(r) => break r,
            Err(reason) => {
                shared.rec.decide_close(id, reason);
                Pin::new(&mut conn).graceful_shutdown();
                shutdown_called = true;
            }
        }
    };
    let parts = conn.into_parts();
    let mut tracked = parts.io.into_inner();
    let (server_decided, reason) = {
        let s = st.lock();
        // `close` is set by every server decision (a GOAWAY call during a request sets it
        // before the request path shuts the gate).
        (s.gate || s.close.is_some(), s.close.clone())
    };
    if !server_decided {
        // The client closed (EOF/reset) or the connection failed.
        let reason = match &result {
            Ok(()) => CloseReason::ClientClosed,
            Err(e) if e.is_incomplete_message() || e.is_closed() || tracked.eof => {
                CloseReason::ClientClosed
            }
            Err(e) => match std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<io::Error>())
                .map(|e| e.kind())
            {
                Some(io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => {
                    CloseReason::ClientClosed
                }
                _ => CloseReason::Error(e.to_string()),
            },
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), tracked.inner.shutdown()).await;
        shared.rec.close(id, reason);
        return;
    }
    let reason = reason.unwrap_or(CloseReason::GoAway);
    // Bytes hyper had buffered but not served arrived after the decision: evidence.
    if !parts.read_buf.is_empty() {
        let heads = count_heads(&parts.read_buf);
        shared.rec.update(id, |c| {
            c.late_bytes += parts.read_buf.len() as u64;
            c.late_requests += heads;
        });
    }
    close_decided(tracked.inner, id, &shared, reason, tracked.eof).await;
}

/// Closes a connection the server decided to close: RST, or FIN then linger (reading and
/// recording whatever the client still sends).
async fn close_decided(
    mut stream: ServerStream,
    id: u64,
    shared: &Shared,
    reason: CloseReason,
    client_eof: bool,
) {
    let cfg = &shared.cfg;
    if cfg.close_mode == CloseMode::Rst {
        // What is already in the socket buffer was sent after the decision.
        if let ServerStream::Plain(tcp) = &stream {
            let mut buf = vec![0u8; 16 * 1024];
            let mut late = Vec::new();
            while let Ok(n) = tcp.try_read(&mut buf) {
                if n == 0 {
                    break;
                }
                late.extend_from_slice(&buf[..n]);
            }
            if !late.is_empty() {
                let heads = count_heads(&late);
                shared.rec.update(id, |c| {
                    c.late_bytes += late.len() as u64;
                    c.late_requests += heads;
                });
            }
        }
        stream.set_reset_on_close();
        drop(stream);
        shared.rec.server_closed(id, true);
        shared.rec.close(id, reason);
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
    shared.rec.server_closed(id, false);
    if !client_eof && !cfg.close_linger.is_zero() {
        let deadline = Instant::now() + cfg.close_linger;
        let mut buf = vec![0u8; 16 * 1024];
        let mut tail: Vec<u8> = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    tail.extend_from_slice(&buf[..n]);
                    let heads = count_heads(&tail);
                    // Keep the last 3 bytes so a head split over two reads is still counted once.
                    let keep = tail.len().saturating_sub(3);
                    tail.drain(..keep);
                    shared.rec.update(id, |c| {
                        c.late_bytes += n as u64;
                        c.late_requests += heads;
                    });
                }
                _ => break,
            }
        }
    }
    shared.rec.close(id, reason);
}
