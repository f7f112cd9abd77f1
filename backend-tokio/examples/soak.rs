//! A soak with faults, on real loopback sockets (issue 16).
//!
//! ```sh
//! cargo run --release -p wharf-tokio --example soak                   # 20,000 leases
//! SOAK_LEASES=1000000 cargo run --release -p wharf-tokio --example soak
//! ```
//!
//! 64 tasks lease from one pool (24 connections, 6 per route) over eight
//! routes, each a real server on 127.0.0.1:
//!
//! - four line servers whose connections draw faults from a seeded mix
//!   (closed or reset when idle, reset or closed after a few replies, reset
//!   or closed at accept, slow replies);
//! - `idler`: closes every connection idle 5 ms (servers that close idle
//!   connections);
//! - `flappy`: refuses connects 100 ms out of every 500 ms (refused connects);
//! - `slow`: stops accepting 300 ms out of every 2 s, so connects made then
//!   complete at the client's SYN retransmit, about 1 s later (slow accepts);
//! - `refused`: every connect refused; `hanging`: every connect hangs past
//!   the pool's 1.5 s connect timeout.
//!
//! Each lease picks a route and what to do, from a seeded generator: a
//! request (`ping`), a request that makes the server reset the connection
//! mid-lease (`!reset`) or close it after the reply (`!close`), a slow one
//! (`!sleep 5`); and cancellations at random points (the lease future
//! dropped before it is polled, or after 0-3 ms of waiting, or the lease
//! dropped with its request in flight), discards.
//!
//! What it checks, printed at the end:
//! - every lease future was answered (a watchdog 10 s past the lease timeout
//!   counts `unanswered`), and no waiter is left;
//! - after `close()`, the pool's gauges are all zero and no connection
//!   object is alive (`leaked_slots`);
//! - the process's open file descriptors (`/proc/self/fd`) are back to
//!   their count at start once the pool, the servers and the runtime are
//!   gone (`leaked_fds`);
//! - limits: the wrapping connector counts the connections alive per route
//!   and in total at every connect (`<= 6` and `<= 24`), and each server
//!   counts the connections its client holds at every accept
//!   (`Stats::peak_live <= 6`); each excess is one `over_limit`.
//!
//! The last line is machine-readable:
//! `summary: leases=<n> granted=<n> failed=<n> unanswered=<n> leaked_slots=<n> leaked_fds=<n> over_limit=<n>`
//! (`leases` = `granted` + `failed` + cancelled + `unanswered`; the line
//! before it gives the failures by reason and the cancellations).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_test_servers::{Fault, FaultMix, HangingConnect, RefusedPort, TcpFaultServer};
use wharf_tokio::{
    tcp_is_dead, tcp_is_unusable, tcp_poll_unusable, CloseReason, ConnEvent, ConnectFailure,
    Connector, Error, Lease, Pool,
};

const TOTAL: u32 = 24;
const PER_ROUTE: u32 = 6;
const LEASE_TIMEOUT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// A lease future not answered this long after its timeout never will be.
const WATCHDOG: Duration = Duration::from_secs(11);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// SplitMix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// What the wrapping connector counts: connection objects alive per route
/// and in total (from a successful connect until the object is dropped,
/// wherever it is: idle in the pool, leased, being validated or disposed of).
struct Counts {
    live: Vec<AtomicU64>,
    peak: Vec<AtomicU64>,
    total: AtomicU64,
    peak_total: AtomicU64,
    over: AtomicU64,
}

/// A connection as the pool holds it: the stream and its place in the
/// counts (decremented when dropped).
struct Counted {
    stream: TcpStream,
    route: usize,
    counts: Arc<Counts>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.counts.live[self.route].fetch_sub(1, Relaxed);
        self.counts.total.fetch_sub(1, Relaxed);
    }
}

/// TCP with counting: the same checks as `TcpConnector` (the recorded
/// readiness, a peek when readable or idle at least 1 ms, the idle watch).
struct Soak {
    index: HashMap<SocketAddr, usize>,
    names: Vec<&'static str>,
    counts: Arc<Counts>,
}

impl Connector<SocketAddr> for Soak {
    type Conn = Counted;
    type Error = io::Error;

    async fn connect(&self, route: &SocketAddr) -> io::Result<Counted> {
        let stream = TcpStream::connect(route).await?;
        stream.set_nodelay(true)?;
        let i = self.index[route];
        let c = &self.counts;
        let live = c.live[i].fetch_add(1, Relaxed) + 1;
        let total = c.total.fetch_add(1, Relaxed) + 1;
        c.peak[i].fetch_max(live, Relaxed);
        c.peak_total.fetch_max(total, Relaxed);
        if live > u64::from(PER_ROUTE) || total > u64::from(TOTAL) {
            c.over.fetch_add(1, Relaxed);
        }
        Ok(Counted {
            stream,
            route: i,
            counts: c.clone(),
        })
    }
    async fn is_stale(&self, conn: &mut Counted) -> bool {
        tcp_is_unusable(&conn.stream)
    }
    fn is_broken(&self, conn: &mut Counted) -> bool {
        tcp_is_unusable(&conn.stream)
    }
    fn is_dead_at_handout(&self, conn: &mut Counted, idle: Duration) -> bool {
        tcp_is_dead(&conn.stream, idle >= Duration::from_millis(1))
    }
    fn poll_event(&self, conn: &mut Counted, cx: &mut Context<'_>) -> Poll<ConnEvent> {
        tcp_poll_unusable(&conn.stream, cx).map(|()| ConnEvent::PeerClosed)
    }
    #[allow(clippy::manual_async_fn)] // `'static`: it must not borrow the connector
    fn close(&self, mut conn: Counted) -> impl std::future::Future<Output = ()> + Send + 'static {
        async move {
            let _ = conn.stream.shutdown().await;
        }
    }
    fn describe(&self, route: &SocketAddr) -> String {
        format!("{} ({route})", self.names[self.index[route]])
    }
}

/// What the tasks count.
#[derive(Default)]
struct Tally {
    attempts: AtomicU64,
    granted: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    /// Granted leases whose request was cancelled (counted in `granted`).
    cancelled_mid: AtomicU64,
    unanswered: AtomicU64,
    /// Leases given a fault of their own (a faulty route or an in-band one).
    injected: AtomicU64,
    reasons: Mutex<BTreeMap<String, u64>>,
    use_errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn reason(&self, map: &Mutex<BTreeMap<String, u64>>, key: String) {
        *map.lock().unwrap().entry(key).or_insert(0) += 1;
    }
}

fn reason(e: &Error) -> String {
    match e {
        Error::Timeout { waited, .. } if waited.is_zero() => "timeout_no_wait".into(),
        Error::Timeout { .. } => "timeout".into(),
        Error::Overflow { .. } => "overflow".into(),
        Error::ConnectFailed { reason, .. } => match reason {
            ConnectFailure::Timeout => "connect_timeout".into(),
            ConnectFailure::Remote => "connect_remote".into(),
            ConnectFailure::Local => "connect_local".into(),
        },
        Error::PeerClosed { .. } => "peer_closed".into(),
        Error::Closed { .. } => "closed".into(),
        Error::Draining { .. } => "draining".into(),
        other => format!("other: {other}"),
    }
}

struct Routes {
    good: Vec<SocketAddr>,
    idler: SocketAddr,
    flappy: SocketAddr,
    slow: SocketAddr,
    refused: SocketAddr,
    hanging: SocketAddr,
}

/// Reads one reply line.
async fn reply(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut got = Vec::with_capacity(16);
    let mut buf = [0u8; 64];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        if got.ends_with(b"\n") {
            return Ok(got);
        }
    }
}

async fn one(pool: &Pool<SocketAddr, Soak>, routes: &Routes, rng: &mut Rng, t: &Tally) {
    let pick = rng.below(1000);
    let route = match pick {
        0..=14 => routes.refused,
        15..=19 => routes.hanging,
        20..=39 => routes.flappy,
        40..=59 => routes.slow,
        60..=69 => routes.idler,
        _ => routes.good[rng.below(routes.good.len() as u64) as usize],
    };
    if pick < 20 {
        t.injected.fetch_add(1, Relaxed);
    }
    let cancel = rng.below(1000);
    let fut = pool.lease(&route);
    if cancel < 5 {
        // Cancelled before it is polled.
        drop(fut);
        t.cancelled.fetch_add(1, Relaxed);
        return;
    }
    let answered = if cancel < 25 {
        // Cancelled at a random point of its wait (or answered before).
        let wait = Duration::from_micros(rng.below(3000));
        match tokio::time::timeout(wait, fut).await {
            Ok(r) => r,
            Err(_) => {
                t.cancelled.fetch_add(1, Relaxed);
                return;
            }
        }
    } else {
        match tokio::time::timeout(WATCHDOG, fut).await {
            Ok(r) => r,
            Err(_) => {
                t.unanswered.fetch_add(1, Relaxed);
                return;
            }
        }
    };
    let mut lease = match answered {
        Ok(lease) => lease,
        Err(e) => {
            t.failed.fetch_add(1, Relaxed);
            t.reason(&t.reasons, reason(&e));
            return;
        }
    };
    t.granted.fetch_add(1, Relaxed);
    let action = rng.below(1000);
    let (line, expect): (&[u8], &[u8]) = match action {
        0..=11 => (b"!reset\n", b""),
        12..=19 => (b"!close\n", b"bye\n"),
        20..=24 => (b"!sleep 5\n", b"slept\n"),
        _ => (b"ping\n", b"ping\n"),
    };
    if action < 25 {
        t.injected.fetch_add(1, Relaxed);
    }
    let stream = &mut lease.stream;
    if let Err(e) = stream.write_all(line).await {
        t.reason(&t.use_errors, format!("write {:?}", e.kind()));
        Lease::discard(&mut lease);
        return;
    }
    // A request cancelled at a random point (0-200 µs): its connection is in
    // an unknown state (a reply may be on its way), so it is discarded, as
    // an HTTP client does. (Dropped without the discard, a reply still in
    // flight would reach the next lease: no check at release can see bytes
    // that have not arrived yet.)
    let limit = if (25..35).contains(&action) {
        Duration::from_micros(rng.below(200))
    } else {
        Duration::from_secs(5)
    };
    match tokio::time::timeout(limit, reply(stream)).await {
        Err(_) if (25..35).contains(&action) => {
            t.cancelled_mid.fetch_add(1, Relaxed);
            Lease::discard(&mut lease);
        }
        Ok(Ok(got)) if got == expect => {}
        Ok(Ok(got)) => {
            t.reason(&t.use_errors, format!("wrong reply {got:?}"));
            Lease::discard(&mut lease);
        }
        Ok(Err(e)) => {
            // Expected after `!reset`; otherwise a connection the server
            // closed (a fault of the mix) while it was leased.
            let what = if action < 12 { "reset (asked)" } else { "read" };
            t.reason(&t.use_errors, format!("{what} {:?}", e.kind()));
            Lease::discard(&mut lease);
        }
        Err(_) => {
            t.reason(&t.use_errors, "reply timed out".into());
            Lease::discard(&mut lease);
        }
    }
    if (35..40).contains(&action) {
        Lease::discard(&mut lease);
    }
}

struct Servers {
    good: Vec<TcpFaultServer>,
    idler: TcpFaultServer,
    flappy: TcpFaultServer,
    slow: TcpFaultServer,
}

impl Servers {
    fn all(&self) -> impl Iterator<Item = (&'static str, &TcpFaultServer)> {
        const GOOD: [&str; 4] = ["mix0", "mix1", "mix2", "mix3"];
        GOOD.into_iter().zip(self.good.iter()).chain([
            ("idler", &self.idler),
            ("flappy", &self.flappy),
            ("slow", &self.slow),
        ])
    }
}

/// Refuses `flappy` 100 ms of every 500 ms; stops `slow` accepting 300 ms of
/// every 2 s.
async fn chaos(servers: Arc<Servers>, stop: Arc<AtomicBool>) -> (u64, u64) {
    let (mut refusals, mut holds) = (0, 0);
    let started = Instant::now();
    let mut next_hold = Duration::from_millis(700);
    while !stop.load(Relaxed) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if stop.load(Relaxed) {
            break;
        }
        if servers.flappy.refuse().await.is_ok() {
            refusals += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = servers.flappy.resume().await;
        if started.elapsed() >= next_hold && !stop.load(Relaxed) {
            if servers.slow.hold_connects().await.is_ok() {
                holds += 1;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = servers.slow.release_connects().await;
            next_hold = started.elapsed() + Duration::from_secs(2);
        }
    }
    (refusals, holds)
}

fn main() {
    let leases = env("SOAK_LEASES", 20_000);
    let tasks = env("SOAK_TASKS", 64).max(1);
    let seed = env("SOAK_SEED", 1);
    let fds_before = open_fds();
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(run(leases, tasks, seed));
    rt.shutdown_timeout(Duration::from_secs(10));
    let fds_after = open_fds();
    let leaked_fds = fds_after.saturating_sub(fds_before);
    let wall = started.elapsed();
    println!("{report}");
    println!(
        "file descriptors: {fds_before} at start, {fds_after} at the end; wall time {:.1} s \
         ({:.0} leases/s)",
        wall.as_secs_f64(),
        leases as f64 / wall.as_secs_f64()
    );
    println!(
        "{} leaked_fds={leaked_fds} over_limit={}",
        report.summary, report.over_limit
    );
    if report.broken {
        eprintln!("soak: the core's invariants failed or the outcomes do not add up");
        std::process::exit(1);
    }
}

struct Report {
    text: String,
    summary: String,
    over_limit: u64,
    /// The core's invariants failed, or the outcomes do not add up.
    broken: bool,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

async fn run(leases: u64, tasks: u64, seed: u64) -> Report {
    let mix = |s: u64| {
        FaultMix::new(seed.wrapping_mul(31).wrapping_add(s))
            .with(0.02, Fault::CloseIdle(Duration::from_millis(30)))
            .with(0.02, Fault::ResetIdle(Duration::from_millis(40)))
            .with(0.01, Fault::ResetAfter(4))
            .with(0.01, Fault::CloseAfter(6))
            .with(0.005, Fault::ResetOnAccept)
            .with(0.005, Fault::CloseOnAccept)
            .with(0.01, Fault::DelayReplies(Duration::from_millis(2)))
    };
    let linger = Duration::from_millis(200);
    let mut good = Vec::new();
    for i in 0..4 {
        let s = TcpFaultServer::builder()
            .mix(mix(i))
            .close_linger(linger)
            .start()
            .await;
        good.push(s);
    }
    let servers = Arc::new(Servers {
        good,
        idler: TcpFaultServer::builder()
            .fault(Fault::CloseIdle(Duration::from_millis(5)))
            .close_linger(linger)
            .start()
            .await,
        flappy: TcpFaultServer::builder().close_linger(linger).start().await,
        slow: TcpFaultServer::builder()
            .backlog(2)
            .close_linger(linger)
            .start()
            .await,
    });
    let refused = RefusedPort::new();
    let hanging = HangingConnect::new().await;
    let routes = Arc::new(Routes {
        good: servers.good.iter().map(|s| s.addr()).collect(),
        idler: servers.idler.addr(),
        flappy: servers.flappy.addr(),
        slow: servers.slow.addr(),
        refused: refused.addr(),
        hanging: hanging.addr(),
    });
    let mut names = vec!["mix0", "mix1", "mix2", "mix3"];
    let mut all: Vec<SocketAddr> = routes.good.clone();
    for (name, addr) in [
        ("idler", routes.idler),
        ("flappy", routes.flappy),
        ("slow", routes.slow),
        ("refused", routes.refused),
        ("hanging", routes.hanging),
    ] {
        names.push(name);
        all.push(addr);
    }
    let counts = Arc::new(Counts {
        live: all.iter().map(|_| AtomicU64::new(0)).collect(),
        peak: all.iter().map(|_| AtomicU64::new(0)).collect(),
        total: AtomicU64::new(0),
        peak_total: AtomicU64::new(0),
        over: AtomicU64::new(0),
    });
    let connector = Soak {
        index: all.iter().enumerate().map(|(i, a)| (*a, i)).collect(),
        names,
        counts: counts.clone(),
    };
    let pool = Pool::builder(connector)
        .max_total(TOTAL)
        .max_per_route(PER_ROUTE)
        .max_routes(16)
        .max_pending(512)
        .lease_timeout(LEASE_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .idle_timeout(Duration::from_secs(1))
        .max_lifetime(Duration::from_secs(2))
        .max_lifetime_jitter(50)
        .validate_after_inactivity(Duration::from_millis(200))
        .retry_backoff(Duration::from_millis(100))
        .seed(seed)
        .build()
        .expect("pool");

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let chaos_task = tokio::spawn(chaos(servers.clone(), stop.clone()));
    let began = Instant::now();
    let mut workers = Vec::new();
    for i in 0..tasks {
        let pool = pool.clone();
        let routes = routes.clone();
        let t = tally.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(seed ^ (i + 1).wrapping_mul(0xA076_1D64_78BD_642F));
            while t.attempts.fetch_add(1, Relaxed) < leases {
                one(&pool, &routes, &mut rng, &t).await;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let leasing = began.elapsed();
    stop.store(true, Relaxed);
    let (refusals, holds) = chaos_task.await.expect("chaos");

    // Waiters left (none should be: every future above completed).
    let before_close = pool.stats();
    let invariants = pool.check_invariants();
    let counters = pool.counters();
    let closed = tokio::time::timeout(Duration::from_secs(30), pool.close())
        .await
        .is_ok();
    let s = pool.stats();
    let alive = counts.total.load(Relaxed);
    let leaked_slots =
        u64::from(s.connections + s.connecting + s.idle + s.leased + s.pending + s.closing) + alive;
    drop(pool);

    let mut over_limit = counts.over.load(Relaxed);
    let mut text = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        text,
        "soak: {leases} leases from {tasks} tasks in {:.1} s, seed {seed}; pool {TOTAL} \
         connections, {PER_ROUTE} per route",
        leasing.as_secs_f64()
    );
    let _ = writeln!(
        text,
        "servers (peak_live = connections the client held at an accept):"
    );
    let mut accepted = 0;
    let mut server_faults = 0;
    for (name, server) in servers.all() {
        let st = server.stats();
        accepted += st.accepted;
        let faulty = st
            .conns
            .iter()
            .filter(|c| c.fault.as_ref().is_some_and(|f| *f != Fault::None))
            .count() as u64;
        server_faults += faulty;
        if st.peak_live > u64::from(PER_ROUTE) {
            over_limit += 1;
        }
        let _ = writeln!(
            text,
            "  {name:>7}: accepted {:>6}, requests {:>8}, peak_live {} (limit {PER_ROUTE}), \
             connections with a fault {faulty}, peak_open {}",
            st.accepted, st.requests, st.peak_live, st.peak_open
        );
    }
    let peaks: Vec<u64> = counts.peak.iter().map(|p| p.load(Relaxed)).collect();
    let _ = writeln!(
        text,
        "connector: peak alive per route {peaks:?} (limit {PER_ROUTE}), peak in total {} \
         (limit {TOTAL}), over a limit at a connect {}",
        counts.peak_total.load(Relaxed),
        counts.over.load(Relaxed)
    );
    let granted = tally.granted.load(Relaxed);
    let failed = tally.failed.load(Relaxed);
    let cancelled = tally.cancelled.load(Relaxed);
    let unanswered = tally.unanswered.load(Relaxed) + u64::from(before_close.pending);
    let injected = tally.injected.load(Relaxed);
    let _ = writeln!(
        text,
        "faults: {injected} leases given one ({:.1}%: refused or hanging route, server \
         reset/close/slow reply asked), {server_faults} server connections with a fault of \
         the mix, flappy refused {refusals} times, slow held {holds} times",
        100.0 * injected as f64 / leases as f64
    );
    let closes: Vec<String> = CloseReason::ALL
        .iter()
        .filter(|r| counters.closes[**r as usize] > 0)
        .map(|r| format!("{r:?}={}", counters.closes[*r as usize]))
        .collect();
    let _ = writeln!(
        text,
        "pool: {} connects ({} connect failures), {} reuses, {} closes ({}), {} timeouts, {} \
         cancels; servers accepted {accepted}",
        counters.connects,
        counters.connect_failures.iter().sum::<u64>(),
        counters.reuses,
        counters.closes.iter().sum::<u64>(),
        closes.join(" "),
        counters.timeouts,
        counters.cancels
    );
    let _ = writeln!(text, "use errors: {:?}", tally.use_errors.lock().unwrap());
    let _ = writeln!(
        text,
        "before close: {before_close:?}; invariants {}; closed {}; after close: {s:?}, \
         connection objects alive {alive}",
        if invariants.is_ok() {
            "hold"
        } else {
            "VIOLATED"
        },
        if closed { "in time" } else { "NOT within 30 s" }
    );
    let by_reason: Vec<String> = tally
        .reasons
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = write!(
        text,
        "outcomes: granted={granted} (requests cancelled mid-way {}) failed={failed} ({}) \
         cancelled={cancelled} unanswered={unanswered}; accounted {} of {leases}",
        tally.cancelled_mid.load(Relaxed),
        by_reason.join(" "),
        granted + failed + cancelled + tally.unanswered.load(Relaxed)
    );

    let servers = Arc::try_unwrap(servers).ok().expect("servers still shared");
    for s in servers.good {
        s.shutdown().await;
    }
    servers.idler.shutdown().await;
    servers.flappy.shutdown().await;
    servers.slow.shutdown().await;
    drop((refused, hanging));

    let summary = format!(
        "summary: leases={leases} granted={granted} failed={failed} unanswered={unanswered} \
         leaked_slots={}",
        leaked_slots + u64::from(!closed)
    );
    Report {
        text,
        summary,
        over_limit,
        broken: invariants.is_err()
            || granted + failed + cancelled + tally.unanswered.load(Relaxed) != leases,
    }
}
