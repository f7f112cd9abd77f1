//! A frame-level relay between a client's socket and the `h2` server, for what `h2` cannot do:
//! change `SETTINGS_MAX_CONCURRENT_STREAMS` on a live connection.
//!
//! `h2::server::Connection` can send a SETTINGS frame mid-connection only for
//! `INITIAL_WINDOW_SIZE` (`set_initial_window_size`) and `ENABLE_CONNECT_PROTOCOL`
//! (`enable_connect_protocol`); hyper's HTTP/2 server exposes neither (only
//! `graceful_shutdown`). So `h2` runs over one end of an in-memory duplex pipe and this relay sits
//! between the pipe and the socket, parsing only the 9-byte frame headers (no HPACK):
//!
//! * server → client: the server's SETTINGS frames get their `MAX_CONCURRENT_STREAMS` entry
//!   replaced (the first one carries the advertised value; `h2` itself runs with a high internal
//!   cap and the connection task enforces the advertised limit), and SETTINGS frames with a new
//!   value are injected between frames on demand;
//! * client → server: the client's ACKs of injected SETTINGS are consumed here (`h2` never sent
//!   those, and would treat the ACK as a protocol error); ACKs are matched in order, as SETTINGS
//!   are acknowledged in the order sent (RFC 9113 §6.5.3);
//! * it sees GOAWAY frames the server sends, and after the server's side has closed it keeps
//!   reading for the linger time, recording requests (HEADERS/DATA) as dead-connection evidence.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::net::ServerStream;
use crate::stats::Recorder;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const ACK: u8 = 0x1;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// Who sent a SETTINGS frame the client has yet to acknowledge.
enum Origin {
    /// `h2` (with the value we advertised in it, if any): the ACK goes on to `h2`.
    Server(Option<u32>),
    /// Us: the ACK stops here.
    Injected(u32),
}

pub(crate) struct PumpCtx {
    pub(crate) id: u64,
    pub(crate) rec: Arc<Recorder>,
    /// `MAX_CONCURRENT_STREAMS` for the first SETTINGS (`None`: not advertised).
    pub(crate) advertise: Option<u32>,
    /// New values to advertise.
    pub(crate) inject: mpsc::UnboundedReceiver<u32>,
    /// Called when the client acknowledged a SETTINGS carrying this value.
    pub(crate) on_acked: Box<dyn Fn(u32) + Send + Sync>,
    pub(crate) linger: Duration,
}

fn take_frame(buf: &mut BytesMut) -> Option<BytesMut> {
    if buf.len() < 9 {
        return None;
    }
    let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
    if buf.len() < 9 + len {
        return None;
    }
    Some(buf.split_to(9 + len))
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(ty);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn settings_mcs(v: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(6);
    p.extend_from_slice(&MAX_CONCURRENT_STREAMS.to_be_bytes());
    p.extend_from_slice(&v.to_be_bytes());
    frame(SETTINGS, 0, 0, &p)
}

/// The server's SETTINGS frame without its `MAX_CONCURRENT_STREAMS`, plus `mcs` if given.
fn rewrite_settings(f: &[u8], mcs: Option<u32>) -> Vec<u8> {
    let mut p = Vec::with_capacity(f.len());
    for e in f[9..].chunks(6) {
        if e.len() == 6 && u16::from_be_bytes([e[0], e[1]]) != MAX_CONCURRENT_STREAMS {
            p.extend_from_slice(e);
        }
    }
    if let Some(v) = mcs {
        p.extend_from_slice(&MAX_CONCURRENT_STREAMS.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(SETTINGS, f[4], 0, &p)
}

async fn sleep_until_opt(d: Option<Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Runs the relay until both directions are done.
pub(crate) async fn run(sock: ServerStream, h2side: DuplexStream, ctx: PumpCtx) {
    let (sr, sw) = tokio::io::split(sock);
    let (dr, dw) = tokio::io::split(h2side);
    let acks = Mutex::new(VecDeque::new());
    let (closed_tx, closed_rx) = watch::channel(false);
    let PumpCtx {
        id,
        rec,
        advertise,
        inject,
        on_acked,
        linger,
    } = ctx;
    let up = client_to_server(sr, dw, &acks, id, &rec, &*on_acked, closed_rx, linger);
    let down = server_to_client(dr, sw, &acks, id, &rec, advertise, inject, closed_tx);
    tokio::join!(up, down);
}

#[allow(clippy::too_many_arguments)]
async fn client_to_server(
    mut sr: ReadHalf<ServerStream>,
    mut dw: WriteHalf<DuplexStream>,
    acks: &Mutex<VecDeque<Origin>>,
    id: u64,
    rec: &Recorder,
    on_acked: &(dyn Fn(u32) + Send + Sync),
    mut closed: watch::Receiver<bool>,
    linger: Duration,
) {
    let mut buf = BytesMut::with_capacity(32 * 1024);
    let mut preface = false;
    let mut raw = false;
    let mut h2_gone = false;
    let mut server_closed = false;
    let mut deadline = None;
    loop {
        if !preface && buf.len() >= PREFACE.len() {
            preface = true;
            raw = &buf[..PREFACE.len()] != PREFACE;
            if !raw {
                let p = buf.split_to(PREFACE.len());
                h2_gone |= dw.write_all(&p).await.is_err();
            }
        }
        if preface && raw {
            let b = buf.split();
            h2_gone |= dw.write_all(&b).await.is_err();
        }
        while let Some(f) = (preface && !raw).then(|| take_frame(&mut buf)).flatten() {
            let (ty, flags) = (f[3], f[4]);
            if server_closed {
                if matches!(ty, HEADERS | DATA | CONTINUATION) {
                    rec.update(id, |c| {
                        c.late_bytes += f.len() as u64;
                        c.late_requests += u64::from(ty == HEADERS);
                    });
                }
                continue;
            }
            if ty == SETTINGS && flags & ACK != 0 {
                let origin = acks.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                match origin {
                    Some(Origin::Injected(v)) => {
                        on_acked(v);
                        continue;
                    }
                    Some(Origin::Server(Some(v))) => on_acked(v),
                    _ => {}
                }
            }
            if !h2_gone {
                h2_gone |= dw.write_all(&f).await.is_err();
            }
        }
        tokio::select! {
            r = sr.read_buf(&mut buf) => match r {
                Ok(n) if n > 0 => {}
                _ => {
                    let _ = dw.shutdown().await;
                    return;
                }
            },
            _ = async { let _ = closed.wait_for(|c| *c).await; }, if !server_closed => {
                server_closed = true;
                deadline = Some(Instant::now() + linger);
                let _ = dw.shutdown().await;
            }
            _ = sleep_until_opt(deadline) => return,
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn server_to_client(
    mut dr: ReadHalf<DuplexStream>,
    mut sw: WriteHalf<ServerStream>,
    acks: &Mutex<VecDeque<Origin>>,
    id: u64,
    rec: &Recorder,
    advertise: Option<u32>,
    mut inject: mpsc::UnboundedReceiver<u32>,
    closed: watch::Sender<bool>,
) {
    let mut buf = BytesMut::with_capacity(32 * 1024);
    let mut initial_sent = false;
    let mut pending: Vec<u32> = Vec::new();
    let mut sink_ok = true;
    let mut inject_open = true;
    loop {
        let mut out = Vec::new();
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            r = dr.read_buf(&mut buf) => {
                match r {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
                while let Some(f) = take_frame(&mut buf) {
                    let (ty, flags) = (f[3], f[4]);
                    if ty == SETTINGS && flags & ACK == 0 {
                        let mcs = if initial_sent { None } else { advertise };
                        acks.lock().unwrap_or_else(|e| e.into_inner()).push_back(Origin::Server(mcs));
                        out.extend(rewrite_settings(&f, mcs));
                        initial_sent = true;
                        for v in pending.drain(..) {
                            acks.lock().unwrap_or_else(|e| e.into_inner()).push_back(Origin::Injected(v));
                            out.extend(settings_mcs(v));
                        }
                    } else {
                        if ty == GOAWAY {
                            rec.update(id, |c| c.goaway_sent = true);
                        }
                        out.extend_from_slice(&f);
                    }
                }
            }
            v = inject.recv(), if inject_open => match v {
                Some(v) if initial_sent => {
                    acks.lock().unwrap_or_else(|e| e.into_inner()).push_back(Origin::Injected(v));
                    out.extend(settings_mcs(v));
                }
                Some(v) => pending.push(v),
                None => inject_open = false,
            }
        }
        if sink_ok && !out.is_empty() {
            sink_ok = sw.write_all(&out).await.is_ok() && sw.flush().await.is_ok();
        }
    }
    // h2 closed its end: close ours (FIN; close_notify first under TLS).
    let _ = tokio::time::timeout(Duration::from_secs(2), sw.shutdown()).await;
    rec.server_closed(id, false);
    let _ = closed.send(true);
}
