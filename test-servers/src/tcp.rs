//! A raw TCP server with a line protocol and per-connection faults ([`TcpFaultServer`]), and
//! addresses whose connects are refused ([`RefusedPort`]) or hang ([`HangingConnect`]).
//!
//! What works on Linux loopback (verified by this crate's tests):
//! * **refused**: a socket *bound but not listening* holds a port on which every connect fails
//!   at once with `ECONNREFUSED` (no other process can take the port meanwhile, unlike a port
//!   that was merely closed). [`TcpFaultServer::refuse`] swaps its listener for such a socket
//!   (same port) and [`TcpFaultServer::resume`] listens again.
//! * **connect hangs**: Linux completes the TCP handshake in the kernel, before `accept()`, as
//!   long as the listener's accept queue has room (`backlog + 1` connections). When it is full,
//!   SYNs are dropped (`tcp_abort_on_overflow = 0`, the default) and the client retransmits them
//!   (after 1 s, 3 s, 7 s, …): its connect hangs until its own timeout. [`HangingConnect`] is a
//!   listener with backlog 0 whose queue is filled by the server itself and never accepted.
//!   Unroutable ("blackhole") addresses are not used: tests here send traffic to loopback only.
//! * **slow connect**: [`TcpFaultServer::hold_connects`] stops accepting and fills the queue the
//!   same way; [`TcpFaultServer::release_connects`] drains it, and held clients connect at their
//!   next SYN retransmit (about 1 s after their first SYN). Merely accepting late does *not*
//!   slow a connect (the kernel already completed it): for that, use [`Fault::DelayReplies`].

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::net::{bind_socket, Running};
use crate::stats::{CloseReason, Protocol, Recorder, StatsHandle};

/// What the server does with one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Serve normally.
    None,
    /// Close (FIN) when idle (no partial line, no reply pending) for this long.
    CloseIdle(Duration),
    /// Reset (RST) when idle for this long.
    ResetIdle(Duration),
    /// Close (FIN) right after the N-th reply.
    CloseAfter(u64),
    /// Reset (RST) right after the N-th reply.
    ResetAfter(u64),
    /// Reset this long after accept, whatever is going on.
    ResetAfterTime(Duration),
    /// Accept, then reset at once. The client's connect succeeds in the kernel, but the RST
    /// may arrive before the client checks the result: tokio's `TcpStream::connect` then
    /// returns `ECONNRESET` itself; otherwise the first read fails with `ECONNRESET` (a write
    /// may still succeed, or fail with `EPIPE`/`ECONNRESET`).
    ResetOnAccept,
    /// Accept, then close (FIN) at once.
    CloseOnAccept,
    /// Accept and read, never answer (a client's read hangs).
    Hang,
    /// Answer every line after this delay.
    DelayReplies(Duration),
}

/// A seeded random mix of faults for soak tests: each accepted connection draws one.
///
/// ```
/// use std::time::Duration;
/// use wharf_test_servers::{Fault, FaultMix};
/// // 5% reset on accept, 5% reset after 3 replies, 2% hang, the rest normal.
/// let mix = FaultMix::new(42)
///     .with(0.05, Fault::ResetOnAccept)
///     .with(0.05, Fault::ResetAfter(3))
///     .with(0.02, Fault::Hang);
/// # let _ = mix;
/// ```
#[derive(Clone, Debug)]
pub struct FaultMix {
    state: u64,
    entries: Vec<(f64, Fault)>,
}

impl FaultMix {
    /// An empty mix (every connection normal) drawing from a SplitMix64 stream seeded `seed`.
    pub fn new(seed: u64) -> Self {
        FaultMix {
            state: seed,
            entries: Vec::new(),
        }
    }

    /// Adds `fault` with probability `p` (probabilities add up; what is left is [`Fault::None`]).
    pub fn with(mut self, p: f64, fault: Fault) -> Self {
        assert!((0.0..=1.0).contains(&p), "probability out of range");
        self.entries.push((p, fault));
        let total: f64 = self.entries.iter().map(|e| e.0).sum();
        assert!(total <= 1.0 + 1e-9, "probabilities add up to more than 1");
        self
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next connection's fault.
    pub fn draw(&mut self) -> Fault {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut acc = 0.0;
        for (p, f) in &self.entries {
            acc += p;
            if u < acc {
                return f.clone();
            }
        }
        Fault::None
    }
}

enum Policy {
    Always(Fault),
    Mix(FaultMix),
}

impl Policy {
    fn draw(&mut self) -> Fault {
        match self {
            Policy::Always(f) => f.clone(),
            Policy::Mix(m) => m.draw(),
        }
    }
}

/// Configures a [`TcpFaultServer`].
#[must_use]
pub struct TcpFaultServerBuilder {
    policy: Policy,
    backlog: u32,
    linger: Duration,
}

impl TcpFaultServerBuilder {
    /// Every connection gets `fault` (default [`Fault::None`]).
    pub fn fault(mut self, fault: Fault) -> Self {
        self.policy = Policy::Always(fault);
        self
    }

    /// Each connection draws its fault from `mix`.
    pub fn mix(mut self, mix: FaultMix) -> Self {
        self.policy = Policy::Mix(mix);
        self
    }

    /// The listen backlog (default 128). [`TcpFaultServer::hold_connects`] fills `backlog + 1`
    /// queue slots, so a small backlog makes it quick.
    pub fn backlog(mut self, n: u32) -> Self {
        self.backlog = n;
        self
    }

    /// After a server-decided FIN, keep reading this long and count what arrives as late bytes
    /// (default 3 s).
    pub fn close_linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }

    /// Binds `127.0.0.1:0` and starts on the current runtime. Panics if it cannot bind.
    pub async fn start(self) -> TcpFaultServer {
        let sock = bind_socket(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        sock.listen(self.backlog as i32).expect("listen");
        let listener = TcpListener::from_std(sock.into()).expect("listener");
        let addr = listener.local_addr().expect("local addr");
        let rec = Recorder::new();
        let shared = Arc::new(LineShared {
            rec: rec.clone(),
            policy: Mutex::new(self.policy),
            linger: self.linger,
            live: Mutex::new((0, std::collections::HashMap::new())),
        });
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let backlog = self.backlog;
        let shared_handle = shared.clone();
        let running = Running::spawn(rec.clone(), move |stop| {
            accept_loop(listener, addr, backlog, shared.clone(), cmd_rx, stop)
        });
        TcpFaultServer {
            addr,
            stats: StatsHandle { rec },
            cmd: cmd_tx,
            shared: shared_handle,
            running,
        }
    }
}

/// The last key given, and each tracked connection's duplicate socket and peer.
type Tracked = (
    u64,
    std::collections::HashMap<u64, (std::os::fd::OwnedFd, SocketAddr)>,
);

struct LineShared {
    rec: Arc<Recorder>,
    policy: Mutex<Policy>,
    linger: Duration,
    /// A duplicate of each connection's socket (by a key of its own), to see at the next
    /// accept whether its client has closed it (`Stats::peak_live`). Removed before the
    /// connection's own socket is dropped, so a reset (`SO_LINGER` 0) still resets.
    live: Mutex<Tracked>,
}

/// Whether the kernel has seen the peer's FIN on the server socket `local` ↔ `peer`, for a
/// socket whose unread bytes hide the FIN from a peek: the socket's TCP state, asked of Linux's
/// `sock_diag` netlink interface for that one socket (a state past the peer's close: TIME_WAIT,
/// CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING). `None` when it cannot tell (not Linux, not IPv4).
fn peer_closed_by_kernel(local: SocketAddr, peer: SocketAddr) -> Option<bool> {
    let (SocketAddr::V4(l), SocketAddr::V4(p)) = (local, peer) else {
        return None;
    };
    const AF_NETLINK: i32 = 16;
    const NETLINK_SOCK_DIAG: i32 = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 1;
    const AF_INET: u8 = 2;
    const IPPROTO_TCP: u8 = 6;
    let sock = socket2::Socket::new(
        socket2::Domain::from(AF_NETLINK),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::from(NETLINK_SOCK_DIAG)),
    )
    .ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    // nlmsghdr (16 bytes), then inet_diag_req_v2: family, protocol, ext, pad, states (u32),
    // inet_diag_sockid: sport, dport (big-endian), src[16], dst[16], if (u32), cookie (2 x u32).
    let mut req = Vec::with_capacity(72);
    req.extend_from_slice(&72u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    req.extend_from_slice(&[AF_INET, IPPROTO_TCP, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&l.port().to_be_bytes());
    req.extend_from_slice(&p.port().to_be_bytes());
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&l.ip().octets());
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&p.ip().octets());
    req.extend_from_slice(&src);
    req.extend_from_slice(&dst);
    req.extend_from_slice(&0u32.to_ne_bytes()); // interface
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // INET_DIAG_NOCOOKIE
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    use std::io::{Read, Write};
    (&sock).write_all(&req).ok()?;
    let mut buf = [0u8; 512];
    let n = (&sock).read(&mut buf).ok()?;
    let bytes = &buf[..n];
    // A reply: nlmsghdr (type SOCK_DIAG_BY_FAMILY), then inet_diag_msg: family, state, ...
    if bytes.len() < 18 || u16::from_ne_bytes([bytes[4], bytes[5]]) != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    // 1 ESTABLISHED, 4/5 FIN_WAIT1/2: the peer has not closed.
    Some(!matches!(bytes[17], 1 | 4 | 5))
}

impl LineShared {
    /// A connection was accepted: counts the connections the client holds (this one and
    /// every tracked one whose peek shows no FIN or RST) and tracks this one.
    fn track(&self, stream: &TcpStream, local: SocketAddr, peer: SocketAddr) -> Option<u64> {
        use std::os::fd::AsFd;
        let dup = stream.as_fd().try_clone_to_owned().ok()?;
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 1u64;
        for (fd, peer) in live.1.values() {
            let sock = socket2::SockRef::from(fd);
            let mut b = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            match sock.peek(&mut b) {
                // A FIN.
                Ok(0) => {}
                // Unread bytes come before a FIN: ask the kernel for the state.
                Ok(_) => n += u64::from(!peer_closed_by_kernel(local, *peer).unwrap_or(false)),
                // Nothing to read: alive.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => n += 1,
                // A reset.
                Err(_) => {}
            }
        }
        live.0 += 1;
        let key = live.0;
        live.1.insert(key, (dup, peer));
        drop(live);
        self.rec.note_live(n);
        Some(key)
    }

    fn untrack(&self, key: Option<u64>) {
        if let Some(key) = key {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            live.1.remove(&key);
        }
    }
}

enum Cmd {
    Refuse(bool, oneshot::Sender<io::Result<()>>),
    Hold(bool, oneshot::Sender<io::Result<usize>>),
}

/// A raw TCP server speaking a line protocol: the client sends a line (`\n`-terminated), the
/// server answers with the same line. Commands: `!who` → `conn <id> req <n>`, `!sleep <ms>` →
/// `slept` after the delay, `!close` → `bye` then FIN, `!reset` → RST without an answer.
/// Each connection gets a [`Fault`] from the policy; counters as for the HTTP servers
/// (`requests` = lines answered; `peak_open` = exact peak of concurrent connections).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
/// use wharf_test_servers::{Fault, TcpFaultServer};
/// let server = TcpFaultServer::builder()
///     .fault(Fault::CloseIdle(Duration::from_millis(200)))
///     .start()
///     .await;
/// let mut s = BufReader::new(tokio::net::TcpStream::connect(server.addr()).await.unwrap());
/// s.get_mut().write_all(b"ping\n").await.unwrap();
/// let mut line = String::new();
/// s.read_line(&mut line).await.unwrap();
/// assert_eq!(line, "ping\n");
/// line.clear();
/// assert_eq!(s.read_line(&mut line).await.unwrap(), 0); // EOF once idle 200 ms
/// # }
/// ```
pub struct TcpFaultServer {
    addr: SocketAddr,
    stats: StatsHandle,
    cmd: mpsc::UnboundedSender<Cmd>,
    shared: Arc<LineShared>,
    running: Running,
}

impl std::ops::Deref for TcpFaultServer {
    type Target = StatsHandle;
    fn deref(&self) -> &StatsHandle {
        &self.stats
    }
}

impl TcpFaultServer {
    /// A builder (every connection [`Fault::None`], backlog 128).
    pub fn builder() -> TcpFaultServerBuilder {
        TcpFaultServerBuilder {
            policy: Policy::Always(Fault::None),
            backlog: 128,
            linger: Duration::from_secs(3),
        }
    }

    /// The address (`127.0.0.1:port`); it stays the same across [`refuse`](Self::refuse).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted from now on get `fault` (also ones whose handshake the kernel
    /// completed before this call but that the server accepts after it).
    pub fn set_fault(&self, fault: Fault) {
        *self.shared.policy.lock().unwrap_or_else(|e| e.into_inner()) = Policy::Always(fault);
    }

    /// Connections accepted from now on draw from `mix`.
    pub fn set_mix(&self, mix: FaultMix) {
        *self.shared.policy.lock().unwrap_or_else(|e| e.into_inner()) = Policy::Mix(mix);
    }

    async fn call<T>(
        &self,
        f: impl FnOnce(oneshot::Sender<io::Result<T>>) -> Cmd,
    ) -> io::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(f(tx))
            .map_err(|_| io::Error::other("server stopped"))?;
        rx.await.map_err(|_| io::Error::other("server stopped"))?
    }

    /// Closes the listener: once this returns, connects to [`addr`](Self::addr) fail at once
    /// with `ECONNREFUSED` (the port is held by a bound, non-listening socket). Connections
    /// already accepted go on; ones queued but not yet accepted are reset.
    pub async fn refuse(&self) -> io::Result<()> {
        self.call(|tx| Cmd::Refuse(true, tx)).await
    }

    /// Listens again on the same port after [`refuse`](Self::refuse).
    pub async fn resume(&self) -> io::Result<()> {
        self.call(|tx| Cmd::Refuse(false, tx)).await
    }

    /// Stops accepting and fills the accept queue: once this returns, new connects hang (SYNs
    /// dropped) until [`release_connects`](Self::release_connects). Returns the number of
    /// filler connections (at most `backlog + 1`; they never show in the counters).
    pub async fn hold_connects(&self) -> io::Result<usize> {
        self.call(|tx| Cmd::Hold(true, tx)).await
    }

    /// Drains the fillers and accepts again; held clients connect at their next SYN
    /// retransmit.
    pub async fn release_connects(&self) -> io::Result<()> {
        self.call(|tx| Cmd::Hold(false, tx)).await.map(|_| ())
    }

    /// Stops accepting, aborts every connection and waits until all tasks have ended.
    pub async fn shutdown(mut self) {
        self.running.shutdown().await;
    }
}

enum Listen {
    On(TcpListener),
    Refusing(socket2::Socket),
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    backlog: u32,
    shared: Arc<LineShared>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut listen = Listen::On(listener);
    let mut conns = JoinSet::new();
    let mut fillers: Vec<std::net::TcpStream> = Vec::new();
    let mut filler_peers: HashSet<SocketAddr> = HashSet::new();
    let mut holding = false;
    loop {
        let accepting = match &listen {
            Listen::On(l) if !holding => Some(l),
            _ => None,
        };
        tokio::select! {
            _ = &mut stop => break,
            r = async { accepting.expect("guarded").accept().await }, if accepting.is_some() => {
                let Ok((stream, peer)) = r else { continue };
                if filler_peers.remove(&peer) {
                    continue;
                }
                let fault = shared
                    .policy
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .draw();
                let key = shared.track(&stream, addr, peer);
                conns.spawn(serve_line(stream, peer, fault, shared.clone(), key));
            }
            Some(cmd) = cmds.recv() => match cmd {
                Cmd::Refuse(true, tx) => {
                    let r = match std::mem::replace(&mut listen, Listen::Refusing(placeholder())) {
                        Listen::Refusing(sock) => {
                            listen = Listen::Refusing(sock);
                            Ok(())
                        }
                        Listen::On(old) => {
                            // Close the listener first, then hold the port without listening.
                            drop(old);
                            bind_socket(addr).map(|sock| listen = Listen::Refusing(sock))
                        }
                    };
                    let _ = tx.send(r);
                }
                Cmd::Refuse(false, tx) => {
                    let r = match std::mem::replace(&mut listen, Listen::Refusing(placeholder())) {
                        Listen::On(l) => {
                            listen = Listen::On(l);
                            Ok(())
                        }
                        Listen::Refusing(sock) => match relisten(sock, backlog) {
                            Ok(l) => {
                                listen = Listen::On(l);
                                Ok(())
                            }
                            Err(e) => Err(e),
                        },
                    };
                    let _ = tx.send(r);
                }
                Cmd::Hold(true, tx) => {
                    holding = true;
                    let r = fill_queue(addr, backlog, &mut fillers, &mut filler_peers).await;
                    let _ = tx.send(r);
                }
                Cmd::Hold(false, tx) => {
                    holding = false;
                    fillers.clear();
                    let _ = tx.send(Ok(0));
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listen);
    conns.shutdown().await;
}

/// A socket that is nothing yet (replaced right away).
fn placeholder() -> socket2::Socket {
    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket")
}

fn relisten(sock: socket2::Socket, backlog: u32) -> io::Result<TcpListener> {
    sock.listen(backlog as i32)?;
    TcpListener::from_std(sock.into())
}

/// Connects to `addr` until a connect does not complete within a short time: the accept queue
/// is then full and further SYNs are dropped. Blocking connects with a kernel-side timeout
/// (`connect_timeout`, on a blocking thread), so a slow scheduler cannot fake a full queue.
async fn fill_queue(
    addr: SocketAddr,
    backlog: u32,
    fillers: &mut Vec<std::net::TcpStream>,
    peers: &mut HashSet<SocketAddr>,
) -> io::Result<usize> {
    let max = backlog as usize + 8;
    for _ in 0..max {
        let probe = tokio::task::spawn_blocking(move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(250))
        })
        .await
        .map_err(io::Error::other)?;
        match probe {
            Ok(s) => {
                peers.insert(s.local_addr()?);
                fillers.push(s);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(fillers.len()),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "accept queue of {addr} not full after {max} connects"
    )))
}

/// Writes `reply`, returning false if the client is gone.
async fn send(stream: &mut TcpStream, reply: &[u8]) -> bool {
    stream.write_all(reply).await.is_ok()
}

enum End {
    ClientGone,
    Fin(CloseReason),
    Rst(CloseReason),
}

async fn serve_line(
    mut stream: TcpStream,
    peer: SocketAddr,
    fault: Fault,
    shared: Arc<LineShared>,
    key: Option<u64>,
) {
    let _ = stream.set_nodelay(true);
    let rec = shared.rec.clone();
    let id = rec.open(peer, Protocol::Line);
    rec.update(id, |c| c.fault = Some(fault.clone()));
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let end = 'serve: {
        match fault {
            Fault::ResetOnAccept => break 'serve End::Rst(CloseReason::Fault),
            Fault::CloseOnAccept => break 'serve End::Fin(CloseReason::Fault),
            _ => {}
        }
        let lifetime = match fault {
            Fault::ResetAfterTime(d) => Some(Instant::now() + d),
            _ => None,
        };
        let (idle, idle_rst) = match fault {
            Fault::CloseIdle(d) => (Some(d), false),
            Fault::ResetIdle(d) => (Some(d), true),
            _ => (None, false),
        };
        let mut idle_since = Instant::now();
        let mut served = 0u64;
        let mut chunk = vec![0u8; 8 * 1024];
        loop {
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = buf.drain(..=pos).collect();
                if fault == Fault::Hang {
                    continue;
                }
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end_matches(['\n', '\r']);
                if let Fault::DelayReplies(d) = fault {
                    tokio::time::sleep(d).await;
                }
                let reply = if line == "!who" {
                    format!("conn {id} req {}\n", served + 1)
                } else if let Some(ms) = line.strip_prefix("!sleep ") {
                    let ms = ms.trim().parse().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "slept\n".to_string()
                } else if line == "!close" {
                    let _ = send(&mut stream, b"bye\n").await;
                    served += 1;
                    rec.update(id, |c| c.requests = served);
                    break 'serve End::Fin(CloseReason::Fault);
                } else if line == "!reset" {
                    break 'serve End::Rst(CloseReason::Fault);
                } else {
                    format!("{line}\n")
                };
                if !send(&mut stream, reply.as_bytes()).await {
                    break 'serve End::ClientGone;
                }
                served += 1;
                rec.update(id, |c| {
                    c.requests = served;
                    c.peak_streams = 1;
                });
                idle_since = Instant::now();
                match fault {
                    Fault::CloseAfter(n) if served >= n => {
                        break 'serve End::Fin(CloseReason::MaxRequests)
                    }
                    Fault::ResetAfter(n) if served >= n => {
                        break 'serve End::Rst(CloseReason::MaxRequests)
                    }
                    _ => {}
                }
            }
            let idle_deadline = idle.filter(|_| buf.is_empty()).map(|d| idle_since + d);
            tokio::select! {
                r = stream.read(&mut chunk) => match r {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => break 'serve End::ClientGone,
                },
                _ = sleep_until_opt(idle_deadline) => {
                    break 'serve if idle_rst {
                        End::Rst(CloseReason::IdleTimeout)
                    } else {
                        End::Fin(CloseReason::IdleTimeout)
                    };
                }
                _ = sleep_until_opt(lifetime) => break 'serve End::Rst(CloseReason::Fault),
            }
        }
    };
    match end {
        End::ClientGone => {
            shared.untrack(key);
            rec.close(id, CloseReason::ClientClosed)
        }
        End::Rst(reason) => {
            rec.decide_close(id, reason.clone());
            // Unserved lines already received, and whatever is in the socket now, came late.
            let mut late = std::mem::take(&mut buf);
            let mut b = vec![0u8; 16 * 1024];
            while let Ok(n) = stream.try_read(&mut b) {
                if n == 0 {
                    break;
                }
                late.extend_from_slice(&b[..n]);
            }
            record_late(&rec, id, &late);
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            // The duplicate first: the socket is reset when its last descriptor closes.
            shared.untrack(key);
            drop(stream);
            rec.server_closed(id, true);
            rec.close(id, reason);
        }
        End::Fin(reason) => {
            rec.decide_close(id, reason.clone());
            record_late(&rec, id, &buf);
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
            rec.server_closed(id, false);
            let deadline = Instant::now() + shared.linger;
            let mut b = vec![0u8; 16 * 1024];
            while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut b)).await {
                if n == 0 {
                    break;
                }
                record_late(&rec, id, &b[..n]);
            }
            shared.untrack(key);
            rec.close(id, reason);
        }
    }
}

fn record_late(rec: &Recorder, id: u64, late: &[u8]) {
    if late.is_empty() {
        return;
    }
    let lines = late.iter().filter(|b| **b == b'\n').count() as u64;
    rec.update(id, |c| {
        c.late_bytes += late.len() as u64;
        c.late_requests += lines;
    });
}

async fn sleep_until_opt(d: Option<Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A port on `127.0.0.1` where every connect fails at once with `ECONNREFUSED`: a socket bound
/// to it but not listening (so no one else can take the port while this lives).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use wharf_test_servers::RefusedPort;
/// let refused = RefusedPort::new();
/// let err = tokio::net::TcpStream::connect(refused.addr()).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
/// # }
/// ```
pub struct RefusedPort {
    addr: SocketAddr,
    _sock: socket2::Socket,
}

impl RefusedPort {
    /// Binds a fresh port (panics if it cannot).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let sock = bind_socket(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let addr = sock
            .local_addr()
            .expect("local addr")
            .as_socket()
            .expect("inet");
        RefusedPort { addr, _sock: sock }
    }

    /// The refusing address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// An address on `127.0.0.1` where connects hang (SYNs dropped) until the client's own
/// timeout: a listener with backlog 0, its accept queue filled by this value's own connections
/// and never accepted. Lives until dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use wharf_test_servers::HangingConnect;
/// let hang = HangingConnect::new().await;
/// let r = tokio::time::timeout(
///     Duration::from_millis(300),
///     tokio::net::TcpStream::connect(hang.addr()),
/// )
/// .await;
/// assert!(r.is_err(), "connect should still be pending");
/// # }
/// ```
pub struct HangingConnect {
    addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<std::net::TcpStream>,
}

impl HangingConnect {
    /// Makes the listener and fills its queue (panics if the queue does not fill up).
    pub async fn new() -> Self {
        let sock = bind_socket(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        sock.listen(0).expect("listen");
        let listener = TcpListener::from_std(sock.into()).expect("listener");
        let addr = listener.local_addr().expect("addr");
        let mut fillers = Vec::new();
        let mut peers = HashSet::new();
        fill_queue(addr, 0, &mut fillers, &mut peers)
            .await
            .expect("fill the accept queue");
        HangingConnect {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }

    /// The address whose connects hang.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
