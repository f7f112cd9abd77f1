//! HTTP/2 connections: the `h2` crate's server behind the frame relay ([`super::pump`]).
//!
//! The connection task accepts streams, enforces the advertised `MAX_CONCURRENT_STREAMS`
//! (`REFUSED_STREAM` above it), counts streams in flight, sends GOAWAY (request limit, idle
//! timeout, on demand) and refuses streams that arrive after it decided to.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{Request, Response};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::pump::{self, PumpCtx};
use super::{respond, RequestCtx, Shared};
use crate::net::ServerStream;
use crate::stats::{CloseReason, Protocol};

/// `h2`'s own stream cap: above anything advertised, as the connection task enforces the limit.
const INTERNAL_CAP: u32 = 1 << 20;
/// After a GOAWAY with no stream left, how long `h2`'s PING round trip may take before the
/// connection is closed anyway.
const GOAWAY_GRACE: Duration = Duration::from_secs(3);

struct H2State {
    in_flight: u64,
    accepted: u64,
    draining: bool,
    advertised: Option<u32>,
    /// The value the client acknowledged (initially the advertised one: enforced from the start,
    /// as `h2` does for its own settings).
    acked: Option<u32>,
    idle_since: Instant,
}

impl H2State {
    /// The limit in force: while a new value awaits its ACK, the larger of old and new.
    fn enforced(&self) -> Option<u32> {
        if self.advertised == self.acked {
            return self.acked;
        }
        match (self.advertised, self.acked) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        }
    }
}

type State = Arc<Mutex<H2State>>;

fn lock(s: &State) -> std::sync::MutexGuard<'_, H2State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) async fn serve(stream: ServerStream, id: u64, shared: Arc<Shared>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut ctl = shared.ctl.clone();
    // What this connection starts from; any later change (even during the handshake) is seen
    // by `ctl.changed()` in the connection loop.
    let seen = *ctl.borrow_and_update();
    let advertise = seen.max_streams;
    shared
        .rec
        .update(id, |c| c.max_streams_advertised = advertise);
    let state: State = Arc::new(Mutex::new(H2State {
        in_flight: 0,
        accepted: 0,
        draining: false,
        advertised: advertise,
        acked: advertise,
        idle_since: Instant::now(),
    }));
    let (inject_tx, inject_rx) = mpsc::unbounded_channel();
    let on_acked = {
        let (state, rec) = (state.clone(), shared.rec.clone());
        Box::new(move |v: u32| {
            lock(&state).acked = Some(v);
            rec.update(id, |c| c.max_streams_acked = Some(v));
        })
    };
    let pump = pump::run(
        stream,
        b,
        PumpCtx {
            id,
            rec: shared.rec.clone(),
            advertise,
            inject: inject_rx,
            on_acked,
            linger: shared.cfg.close_linger,
        },
    );
    let conn = conn_loop(a, id, shared.clone(), state, inject_tx, ctl, seen);
    let ((), reason) = tokio::join!(pump, conn);
    shared.rec.close(id, reason);
}

async fn sleep_until_opt(d: Option<Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

enum Ev {
    Stream(Box<(Request<RecvStream>, SendResponse<Bytes>)>),
    Done(Option<h2::Error>),
    Joined,
    Ctl(bool),
    Idle,
    Force,
}

async fn conn_loop(
    io: DuplexStream,
    id: u64,
    shared: Arc<Shared>,
    state: State,
    inject: mpsc::UnboundedSender<u32>,
    mut ctl: tokio::sync::watch::Receiver<super::Control>,
    mut seen: super::Control,
) -> CloseReason {
    let cfg = &shared.cfg;
    let rec = &shared.rec;
    let idle_deadline = |st: &State| cfg.idle_timeout.map(|t| lock(st).idle_since + t);
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(INTERNAL_CAP)
        .max_local_error_reset_streams(None)
        .handshake::<_, Bytes>(io);
    let mut conn = tokio::select! {
        r = handshake => match r {
            Ok(c) => c,
            Err(e) => return classify(Some(e)),
        },
        _ = sleep_until_opt(idle_deadline(&state)) => {
            rec.decide_close(id, CloseReason::IdleTimeout);
            return CloseReason::IdleTimeout;
        }
    };
    let mut streams = JoinSet::new();
    let mut ctl_open = true;
    let mut reason: Option<CloseReason> = None;
    let mut goaway_at: Option<Instant> = None;
    let mut forced = false;
    loop {
        let (idle, force) = {
            let st = lock(&state);
            let idle = if st.in_flight == 0 && goaway_at.is_none() {
                cfg.idle_timeout.map(|t| st.idle_since + t)
            } else {
                None
            };
            let force = match goaway_at {
                Some(at) if st.in_flight == 0 && !forced => {
                    Some(at.max(st.idle_since) + GOAWAY_GRACE)
                }
                _ => None,
            };
            (idle, force)
        };
        let ev = tokio::select! {
            r = conn.accept() => match r {
                Some(Ok(s)) => Ev::Stream(Box::new(s)),
                Some(Err(e)) => Ev::Done(Some(e)),
                None => Ev::Done(None),
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => Ev::Joined,
            r = ctl.changed(), if ctl_open => Ev::Ctl(r.is_ok()),
            _ = sleep_until_opt(idle) => Ev::Idle,
            _ = sleep_until_opt(force) => Ev::Force,
        };
        match ev {
            Ev::Stream(s) => {
                let (req, mut resp) = *s;
                let (accept, over_limit, n, start_goaway, in_flight) = {
                    let mut st = lock(&state);
                    if st.draining {
                        (false, false, 0, false, st.in_flight)
                    } else if st.enforced().is_some_and(|l| st.in_flight >= u64::from(l)) {
                        (false, true, 0, false, st.in_flight)
                    } else {
                        st.in_flight += 1;
                        st.accepted += 1;
                        let n = st.accepted;
                        let start = cfg.max_requests == Some(n);
                        if start {
                            st.draining = true;
                        }
                        (true, false, n, start, st.in_flight)
                    }
                };
                if accept {
                    rec.update(id, |c| {
                        c.in_flight = in_flight;
                        c.peak_streams = c.peak_streams.max(in_flight);
                    });
                    streams.spawn(stream_task(req, resp, n, id, shared.clone(), state.clone()));
                } else {
                    resp.send_reset(Reason::REFUSED_STREAM);
                    rec.update(id, |c| {
                        c.refused_streams += 1;
                        c.streams_over_limit += u64::from(over_limit);
                    });
                }
                if start_goaway {
                    conn.graceful_shutdown();
                    goaway_at = Some(Instant::now());
                    reason.get_or_insert(CloseReason::MaxRequests);
                    rec.decide_close(id, CloseReason::MaxRequests);
                }
            }
            Ev::Done(e) => {
                if reason.is_none() {
                    reason = Some(classify(e));
                }
                break;
            }
            Ev::Joined => {}
            Ev::Ctl(open) => {
                if !open {
                    ctl_open = false;
                    continue;
                }
                let c = *ctl.borrow_and_update();
                if c.goaway != seen.goaway && goaway_at.is_none() {
                    lock(&state).draining = true;
                    conn.graceful_shutdown();
                    goaway_at = Some(Instant::now());
                    reason.get_or_insert(CloseReason::GoAway);
                    rec.decide_close(id, CloseReason::GoAway);
                }
                if c.max_streams != seen.max_streams {
                    if let Some(v) = c.max_streams {
                        lock(&state).advertised = Some(v);
                        rec.update(id, |c| c.max_streams_advertised = Some(v));
                        let _ = inject.send(v);
                    }
                }
                seen = c;
            }
            Ev::Idle => {
                let still = {
                    let mut st = lock(&state);
                    let still = st.in_flight == 0
                        && cfg
                            .idle_timeout
                            .is_some_and(|t| st.idle_since + t <= Instant::now());
                    if still {
                        st.draining = true;
                    }
                    still
                };
                if still {
                    conn.graceful_shutdown();
                    goaway_at = Some(Instant::now());
                    reason.get_or_insert(CloseReason::IdleTimeout);
                    rec.decide_close(id, CloseReason::IdleTimeout);
                }
            }
            Ev::Force => {
                // The client did not finish the GOAWAY/PING exchange: close anyway.
                forced = true;
                conn.abrupt_shutdown(Reason::NO_ERROR);
            }
        }
    }
    streams.shutdown().await;
    drop(conn);
    reason.unwrap_or(CloseReason::ClientClosed)
}

fn classify(e: Option<h2::Error>) -> CloseReason {
    match e {
        None => CloseReason::ClientClosed,
        Some(e) if e.is_io() || e.is_go_away() || e.is_remote() => CloseReason::ClientClosed,
        Some(e) => CloseReason::Error(e.to_string()),
    }
}

/// Counts a stream out of the connection's in-flight set when its task ends (also when aborted).
struct InFlight {
    id: u64,
    shared: Arc<Shared>,
    state: State,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let n = {
            let mut st = lock(&self.state);
            st.in_flight -= 1;
            if st.in_flight == 0 {
                st.idle_since = Instant::now();
            }
            st.in_flight
        };
        self.shared.rec.update(self.id, |c| c.in_flight = n);
    }
}

async fn stream_task(
    req: Request<RecvStream>,
    mut resp: SendResponse<Bytes>,
    n: u64,
    id: u64,
    shared: Arc<Shared>,
    state: State,
) {
    let _in_flight = InFlight {
        id,
        shared: shared.clone(),
        state,
    };
    let work = async {
        let (parts, mut body) = req.into_parts();
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.ok()?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let req = Request::from_parts(parts, data.freeze());
        let (alpn, identity) = shared
            .rec
            .read(id, |c| (c.alpn.clone(), c.identity.clone()));
        let ctx = RequestCtx {
            conn_id: id,
            request_on_conn: n,
            protocol: Protocol::Http2,
            alpn,
            identity,
        };
        Some(respond(&shared, req, &ctx).await)
    };
    let response = tokio::select! {
        r = work => r,
        _ = poll_fn(|cx| resp.poll_reset(cx)) => None,
    };
    let Some(response) = response else {
        return;
    };
    let (mut parts, body) = response.into_parts();
    // Connection-specific headers are not allowed in HTTP/2.
    for h in ["connection", "keep-alive", "transfer-encoding", "upgrade"] {
        parts.headers.remove(h);
    }
    let head = Response::from_parts(parts, ());
    match resp.send_response(head, body.is_empty()) {
        Ok(mut send) => {
            if !body.is_empty() && send.send_data(body, true).is_err() {
                return;
            }
        }
        Err(_) => return,
    }
    shared.rec.update(id, |c| c.requests += 1);
}
