//! A loopback test server that can be told to misbehave, and a tiny client.
//!
//! Protocol: the client sends a line; the server answers one line.
//! - `REQ\n` -> `OK <conn> <n>\n` (`OK <conn> <n> close\n` and a close when
//!   the connection reached `max_requests`).
//! - `RST\n` -> the server resets the connection (SO_LINGER 0, close).
//!
//! Connection counting on the server side: a connection counts from its
//! accept until the server sees its end. Before counting a new connection,
//! the server checks every live one for a FIN with a non-blocking peek, so a
//! connection the client closed before it opened the next one is not counted
//! as concurrent with it.
#![allow(dead_code)]

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Concurrent connection counter.
#[derive(Default, Debug)]
pub struct Tracker {
    pub current: AtomicUsize,
    pub max: AtomicUsize,
    pub accepted: AtomicUsize,
}

impl Tracker {
    pub fn new() -> Arc<Self> {
        Arc::new(Tracker::default())
    }
    fn inc(&self) {
        let c = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(c, Ordering::SeqCst);
        self.accepted.fetch_add(1, Ordering::SeqCst);
    }
    fn dec(&self) {
        self.current.fetch_sub(1, Ordering::SeqCst);
    }
    pub fn current(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// How the server behaves.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// Close a connection that sent nothing for this long.
    pub idle_close: Option<Duration>,
    /// Close a connection after this many requests (the last answer says `close`).
    pub max_requests: Option<u64>,
    /// Wait this long before each accept.
    pub accept_delay: Option<Duration>,
    /// Also count connections in this tracker (shared by several servers).
    pub global: Option<Arc<Tracker>>,
    /// The idle close is a reset (RST) instead of a FIN.
    pub idle_reset: bool,
    /// Send `PUSH\n` (bytes nobody asked for) on a connection idle this long.
    pub push_idle: Option<Duration>,
}

struct Entry {
    stream: TcpStream,
    counted: AtomicBool,
}

struct State {
    opts: Opts,
    tracker: Arc<Tracker>,
    live: Mutex<Vec<Arc<Entry>>>,
    seq: AtomicU64,
    /// When the server closed each connection for being idle (just after its
    /// socket was closed), by its id.
    idle_closed: Mutex<std::collections::HashMap<u64, tokio::time::Instant>>,
}

impl State {
    fn retire(&self, e: &Arc<Entry>) {
        if e.counted.swap(false, Ordering::SeqCst) {
            self.tracker.dec();
            if let Some(g) = &self.opts.global {
                g.dec();
            }
        }
        self.live.lock().unwrap().retain(|x| !Arc::ptr_eq(x, e));
    }

    /// Retires every live connection whose peer already closed it.
    fn reap(&self) {
        let ended: Vec<Arc<Entry>> = self
            .live
            .lock()
            .unwrap()
            .iter()
            .filter(|e| peer_ended(&e.stream))
            .cloned()
            .collect();
        for e in ended {
            self.retire(&e);
        }
    }
}

fn peer_ended(s: &TcpStream) -> bool {
    let mut buf = [MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(s).peek(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted,
    }
}

/// A running test server on 127.0.0.1.
pub struct Server {
    pub port: u16,
    pub tracker: Arc<Tracker>,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start(opts: Opts) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tracker = Tracker::new();
        let state = Arc::new(State {
            opts,
            tracker: tracker.clone(),
            live: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            idle_closed: Mutex::new(std::collections::HashMap::new()),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some(d) = st.opts.accept_delay {
                    tokio::time::sleep(d).await;
                }
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                // Let FINs already on their way through the loopback land,
                // then retire the connections they ended.
                tokio::time::sleep(Duration::from_millis(2)).await;
                st.reap();
                let entry = Arc::new(Entry {
                    stream,
                    counted: AtomicBool::new(true),
                });
                st.tracker.inc();
                if let Some(g) = &st.opts.global {
                    g.inc();
                }
                st.live.lock().unwrap().push(entry.clone());
                let id = st.seq.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(st.clone(), entry, id));
            }
        });
        Server {
            port,
            tracker,
            state,
            task,
        }
    }

    pub fn route(&self) -> (String, u16) {
        (String::from("127.0.0.1"), self.port)
    }

    /// When the server closed connection `id` (the `<conn>` of its answers)
    /// for being idle.
    pub fn idle_closed_at(&self, id: u64) -> Option<tokio::time::Instant> {
        self.state.idle_closed.lock().unwrap().get(&id).copied()
    }

    /// Connections the server closed for being idle.
    pub fn idle_closes(&self) -> usize {
        self.state.idle_closed.lock().unwrap().len()
    }

    /// Waits (bounded) until the server counts `n` live connections.
    pub async fn wait_current(&self, n: usize) -> usize {
        for _ in 0..500 {
            self.state.reap();
            if self.tracker.current() == n {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.tracker.current()
    }
}

async fn read_some(s: &TcpStream, buf: &mut [u8], idle: Option<Duration>) -> io::Result<usize> {
    loop {
        let ready = s.readable();
        match idle {
            Some(d) => match tokio::time::timeout(d, ready).await {
                Ok(r) => r?,
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "idle")),
            },
            None => ready.await?,
        }
        match s.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn write_all(s: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn serve(st: Arc<State>, e: Arc<Entry>, id: u64) {
    let mut buf = [0u8; 256];
    let mut line = Vec::new();
    let mut served = 0u64;
    let mut pushed = false;
    loop {
        let idle = match (st.opts.push_idle, pushed) {
            (Some(d), false) => Some(d),
            _ => st.opts.idle_close,
        };
        let n = match read_some(&e.stream, &mut buf, idle).await {
            Ok(0) => break,
            Err(err)
                if err.kind() == io::ErrorKind::TimedOut
                    && st.opts.push_idle.is_some()
                    && !pushed =>
            {
                pushed = true;
                if write_all(&e.stream, b"PUSH\n").await.is_err() {
                    break;
                }
                continue;
            }
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                if st.opts.idle_reset {
                    let _ = socket2::SockRef::from(&e.stream).set_linger(Some(Duration::ZERO));
                }
                st.retire(&e);
                // The last reference: FIN (or RST) now. The time of the
                // close is read after it: read before, a hand-out check run
                // between the two (it could not see a close not yet made)
                // would look like one that missed it.
                drop(e);
                st.idle_closed
                    .lock()
                    .unwrap()
                    .insert(id, tokio::time::Instant::now());
                return;
            }
            Err(_) => break,
            Ok(n) => n,
        };
        line.extend_from_slice(&buf[..n]);
        while let Some(pos) = line.iter().position(|&b| b == b'\n') {
            let req: Vec<u8> = line.drain(..=pos).collect();
            if req.starts_with(b"RST") {
                let _ = socket2::SockRef::from(&e.stream).set_linger(Some(Duration::ZERO));
                st.retire(&e);
                return; // the last reference drops here: RST
            }
            served += 1;
            let close = st.opts.max_requests.is_some_and(|m| served >= m);
            let reply = format!("OK {id} {served}{}\n", if close { " close" } else { "" });
            if write_all(&e.stream, reply.as_bytes()).await.is_err() {
                st.retire(&e);
                return;
            }
            if close {
                st.retire(&e);
                return;
            }
        }
    }
    st.retire(&e);
}

/// Sends `REQ` and reads the one-line answer.
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> io::Result<String> {
    s.write_all(b"REQ\n").await?;
    read_line(s).await
}

/// Reads one line (the server never sends more than one per request).
pub async fn read_line<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 64];
    loop {
        let n = s.read(&mut b).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        out.extend_from_slice(&b[..n]);
        if out.last() == Some(&b'\n') {
            return Ok(String::from_utf8_lossy(&out).trim_end().to_string());
        }
    }
}

/// Waits (bounded) until `f` holds.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

thread_local! {
    /// When this thread last ran a [`Probe`]'s hand-out check (the check runs
    /// in the poll of the lease future that completes with the lease).
    static LAST_CHECK: std::cell::Cell<Option<tokio::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// When the hand-out check of the lease just returned on this thread ran.
pub fn last_check() -> Option<tokio::time::Instant> {
    LAST_CHECK.with(|c| c.get())
}

/// What a [`Probe`] saw.
#[derive(Default, Debug)]
pub struct ProbeCounts {
    /// Idle connections its watch reported closed.
    pub watched: AtomicUsize,
    /// Connections its hand-out / release check found broken.
    pub broken: AtomicUsize,
}

/// `TcpConnector` with its two checks switchable (to show what each one
/// catches, and that a test fails without it): `watch` = the idle watch
/// (`poll_event`), `check` = the hand-out and release check (`is_broken`).
pub struct Probe {
    pub watch: bool,
    pub check: bool,
    pub counts: Arc<ProbeCounts>,
}

impl Probe {
    pub fn new(watch: bool, check: bool) -> (Probe, Arc<ProbeCounts>) {
        let counts = Arc::new(ProbeCounts::default());
        (
            Probe {
                watch,
                check,
                counts: counts.clone(),
            },
            counts,
        )
    }
}

impl wharf_tokio::Connector<(String, u16)> for Probe {
    type Conn = TcpStream;
    type Error = io::Error;
    async fn connect(&self, route: &(String, u16)) -> io::Result<TcpStream> {
        wharf_tokio::TcpConnector::new()
            .connect_host(&route.0, route.1)
            .await
    }
    fn is_stale(&self, conn: &mut TcpStream) -> impl std::future::Future<Output = bool> + Send {
        let stale = wharf_tokio::tcp_is_unusable(conn);
        async move { stale }
    }
    fn is_broken(&self, conn: &mut TcpStream) -> bool {
        let broken = self.check && wharf_tokio::tcp_is_unusable(conn);
        if broken {
            self.counts.broken.fetch_add(1, Ordering::SeqCst);
        }
        broken
    }
    fn is_dead_at_handout(&self, conn: &mut TcpStream, idle: Duration) -> bool {
        LAST_CHECK.with(|c| c.set(Some(tokio::time::Instant::now())));
        let dead = self.check && wharf_tokio::tcp_is_dead(conn, idle >= Duration::from_millis(1));
        if dead {
            self.counts.broken.fetch_add(1, Ordering::SeqCst);
        }
        dead
    }
    fn poll_event(
        &self,
        conn: &mut TcpStream,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<wharf_tokio::ConnEvent> {
        if !self.watch {
            return std::task::Poll::Pending;
        }
        let p = wharf_tokio::tcp_poll_unusable(conn, cx);
        if p.is_ready() {
            self.counts.watched.fetch_add(1, Ordering::SeqCst);
        }
        p.map(|()| wharf_tokio::ConnEvent::PeerClosed)
    }
    fn describe(&self, route: &(String, u16)) -> String {
        format!("{}:{}", route.0, route.1)
    }
}
