//! One pool logic on a board and on a server, as an executable check.
//!
//! The same scripted scenario (leases on two routes under per-route and total
//! limits, FIFO waiters, reuse of an idle connection, the server closing an
//! idle connection, a connect failure delivered to a waiting lease, an
//! eviction, a lease timeout, a drain) runs four times:
//!
//! - on the core directly (`wharf::Pool`, virtual time; the connects the
//!   core asks for complete when the scenario waits for a lease, refused on
//!   route `F`; the server's close is the input a backend's idle watch
//!   gives, `peer_closed`);
//! - on `wharf-tokio` with a scripted connector (route `F` refuses its
//!   connects with `ConnectionRefused`; its `close` records which connection
//!   the pool closed; its `poll_event` reports `PeerClosed` for the
//!   connections the server-close step marks, and wakes the pool's waker);
//! - on `wharf-embassy` over two embassy-net stacks joined in memory
//!   (`backend-embassy/tests/common`): echo servers for `A` and `B` on the
//!   server stack, no listener for `F` (the server stack answers a RST); a
//!   close is what the server sees (FIN or RST from the connection's port);
//!   `B`'s server closes a connection idle for [`SERVER_IDLE_CLOSE_MS`];
//! - on `wharf-tokio` with its `TcpConnector` over real TCP sockets on
//!   loopback (127.0.0.1): echo servers for `A` and `B` (tokio
//!   `TcpListener`s on ephemeral ports, each accepted connection echoing
//!   until it ends, `B`'s closing one idle for [`SERVER_IDLE_CLOSE_MS`]),
//!   and for `F` a port bound but not listening, kept bound
//!   for the run, so the kernel refuses its connects (`ConnectionRefused`,
//!   which the default classification makes `Remote`); a close is what the
//!   server sees (FIN: a read returned 0, or RST: `ConnectionReset`, from the
//!   connection's client port), as in the embassy run. It is the tokio run
//!   with the scripted connector replaced by the real one: connects, the
//!   hand-out and release checks, idle watching and the close all go
//!   through the kernel's sockets.
//!
//! Each run writes an [`Event`] log through the public API only: grants
//! (lease number, route, connection), failures (the error's kind), closes
//! (the connection the transport saw closing, `Closed` for a FIN and `Reset`
//! for a RST, with the reason the pool's counters gained in the same step;
//! the core and the scripted connector have no wire, so their closes are
//! `Closed`), gauges, and the final counters. Every close of the scenario
//! is a graceful one (an eviction, a drain), so a RST is a difference.
//! Connection ids are renumbered in order of first sight (`conn: 1` is the
//! first connection any lease got). The four logs must equal [`expected`],
//! the scenario's sequence written out once; when one does not, the test
//! prints the sequences side by side and marks the first difference.
//!
//! Shown to fail (each change made by hand, the test run, then reverted; no
//! such change is committed; the step numbers and lease numbers of the
//! first four are from before the server-close step, which added 4 steps
//! before #16 and renumbered leases 7-9 to 8-10):
//! - no idle watch in `TcpConnector` (`poll_event` always `Pending`), and
//!   separately none in wharf-embassy (`sockets.rs`'s `watch` always
//!   `None`): the other three runs "as expected", the changed run's first
//!   difference at #16, `Unpaired { conns: [(3, Server)], reasons: [] }`
//!   instead of `ServerClosed { conn: 3, reason: PeerClosed }` (the server
//!   closed it and the pool did not notice while it was idle);
//! - `backend-embassy/src/runner.rs` classifying a reset connect
//!   (`ConnectError::ConnectionReset`) as `ConnectFailure::Local` instead of
//!   `Remote`: core and tokio "as expected", embassy's first difference at #18,
//!   `Failed { lease: 7, error: ConnectFailed(Local) }`, and its final
//!   counters `connect_failures: [0, 1, 0]` instead of `[0, 0, 1]` (run
//!   before the tokio-tcp run existed; the change is in embassy's code only);
//! - `backend-tokio/src/pool.rs`'s `Pool::drain` passing
//!   `DrainMode::DrainExisting` to the core whatever the caller asked: core
//!   and embassy "as expected", tokio's first difference at #25,
//!   `Granted { lease: 9, route: A, conn: 4 }` instead of
//!   `Failed { lease: 9, error: Closed }`, then its last gauges (a connection
//!   still leased) and counters (5 connects); re-run with the tokio-tcp run:
//!   tokio-tcp the same as tokio, difference for difference;
//! - `backend-tokio/src/connector.rs`'s `TcpConnector::connect_addr`
//!   wrapping the connect error as `io::ErrorKind::Other` (the refusal kept
//!   only as the inner error): core, tokio and embassy "as expected",
//!   tokio-tcp's first difference at #18, `Failed { lease: 7, error:
//!   Other("ConnectFailed { .., reason: Local, .. }") }` (the default
//!   classification no longer sees a refusal), and its final counters
//!   `connect_failures: [0, 1, 0]`;
//! - `backend-tokio/src/connector.rs`'s `tcp_close` setting `SO_LINGER` to
//!   zero and dropping the stream instead of shutting its write side down
//!   (a RST where a FIN is due): core, tokio and embassy "as expected",
//!   tokio-tcp's first difference at #17, `Reset { conn: 3, reason: Evicted }`
//!   instead of `Closed { .. }`, and the same at the two drain closes (#24,
//!   #28). Before closes were told apart by FIN and RST this change passed.
//!
//! The steps are awaited one after the other, so the order is deterministic;
//! the embassy run uses real time (embassy-time's std driver), the tokio runs
//! tokio's real clock, the core virtual time. The one timed wait is a 300 ms
//! lease timeout, far from anything else that happens (connects on the host
//! link take a few milliseconds, on loopback less; the connect timeout is
//! 5 s). The waits for a close the server has not seen yet are bounded (2 s)
//! and only end early: a close that never comes shows as `Unpaired`.

// The embassy backend's host setup (two stacks, the in-memory link, the test
// servers), shared rather than copied; it allows its own dead code.
#[path = "../backend-embassy/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use wharf::{
    Action, CloseReason, ConnId, ConnectFailure, Counters, DrainMode, DrainScope, FailReason,
    LeaseError, LeaseOutcome, PoolStats, Release, WaiterId,
};

// ---------------------------------------------------------------------------
// The scenario, written once.
// ---------------------------------------------------------------------------

/// The scenario's routes: two that serve, one whose connects are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Rt {
    A,
    B,
    /// Nobody listens: every connect is refused.
    F,
}
use Rt::{A, B, F};

/// The lease timeout of the one lease that times out.
const LEASE_TIMEOUT_MS: u64 = 300;

/// How long B's servers (embassy and TCP runs) let a connection sit idle
/// before closing it: far longer than any gap between two uses of B's
/// connections before the server-close step (a few milliseconds), and the
/// only wait of that step.
const SERVER_IDLE_CLOSE_MS: u64 = 250;

/// The pool's settings, the same for the three runs: 3 connections in all,
/// 2 per route; no timers but the connect timeout (no idle timeout, no
/// lifetime, no validation), so nothing closes unless the scenario says so.
fn config() -> wharf::Config {
    wharf::Config {
        max_total: 3,
        max_per_route: 2,
        connect_timeout: Some(wharf::Duration::from_secs(5)),
        idle_timeout: None,
        max_lifetime: None,
        validate_after_inactivity: None,
        ..wharf::Config::default()
    }
}

/// Why a lease failed, as far as every backend tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fail {
    Timeout,
    ConnectFailed(ConnectFailure),
    Closed,
    Draining,
    Overflow,
    /// Anything else, as the backend printed it.
    Other(String),
}

/// What a lease came to: granted on a route and connection, or failed.
type Outcome = Result<(Rt, ConnId), Fail>;

/// One observation. `lease` is the scenario's numbering; `conn` numbers
/// connections in order of first sight (0: a connection no lease ever got).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Granted {
        lease: u32,
        route: Rt,
        conn: u32,
    },
    /// Polled, and still waiting.
    Waiting {
        lease: u32,
    },
    Failed {
        lease: u32,
        error: Fail,
    },
    /// The scenario gave the lease back (an input, logged to read the log).
    Released {
        lease: u32,
    },
    /// The scenario drained the pool for deletion (an input).
    Drain,
    /// A leased connection still works (embassy: an echo over it).
    Used {
        lease: u32,
        ok: bool,
    },
    /// The transport saw the connection close gracefully (FIN), and the pool
    /// counted a close for this reason in the same step.
    Closed {
        conn: u32,
        reason: CloseReason,
    },
    /// As `Closed`, but the transport saw the connection reset (RST).
    Reset {
        conn: u32,
        reason: CloseReason,
    },
    /// The server closed the connection first (it was idle), and the pool
    /// counted a close for this reason in the same step.
    ServerClosed {
        conn: u32,
        reason: CloseReason,
    },
    /// Closes seen and reasons counted in one step that do not pair up.
    Unpaired {
        conns: Vec<(u32, Ended)>,
        reasons: Vec<CloseReason>,
    },
    Gauges {
        connections: u32,
        idle: u32,
        leased: u32,
        pending: u32,
    },
    Totals(Totals),
}

/// How the transport saw a connection end. The core and the scripted
/// connector have no wire: the close the pool asked for counts as `Fin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ended {
    Fin,
    Rst,
    /// The server closed it (the core and the scripted connector: the close
    /// the scenario's server-close step made).
    Server,
}

/// The final counters that must agree.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Totals {
    connects: u64,
    connected: u64,
    /// `[Timeout, Local, Remote]`.
    connect_failures: [u64; 3],
    grants: u64,
    reuses: u64,
    queued: u64,
    timeouts: u64,
    cancels: u64,
    overflows: u64,
    /// Non-zero closes by reason.
    closes: Vec<(CloseReason, u64)>,
}

/// What a backend does for the scenario. Leases are named by the scenario's
/// numbers; a backend keeps the lease futures and the leases.
trait Backend {
    /// Starts lease `n` on `route` (polled once: it asked the pool).
    fn start(&mut self, n: u32, route: Rt, timeout_ms: Option<u64>);
    /// Polls lease `n` once: its outcome if it has one.
    async fn poll(&mut self, n: u32) -> Option<Outcome>;
    /// Waits for lease `n`'s outcome.
    async fn wait(&mut self, n: u32) -> Outcome;
    /// Uses granted lease `n`: true if its connection still works.
    async fn use_lease(&mut self, n: u32) -> bool;
    /// Gives lease `n` back for reuse.
    fn release(&mut self, n: u32);
    /// Drains every route for deletion (the pool closes).
    fn drain(&mut self);
    /// The server of `route` closes its idle connection (each run in its
    /// own way: an input of the core, the scripted connector's event, a
    /// server that closes connections idle for [`SERVER_IDLE_CLOSE_MS`]);
    /// returns once the pool counted a `PeerClosed` close (bounded wait).
    async fn server_close(&mut self, route: Rt);
    /// Waits (bounded) until the transport saw `closes` closes in all, and
    /// returns the connections it saw close since the last call (`None`: a
    /// connection no lease got), each with how it ended.
    async fn settle(&mut self, closes: u64) -> Vec<(Option<ConnId>, Ended)>;
    fn stats(&self) -> PoolStats;
    fn counters(&self) -> Counters;
}

/// The scenario. Every step is awaited before the next.
async fn scenario(b: &mut impl Backend) -> Vec<Event> {
    let mut r = Recorder::new(b.counters());

    // Three leases on two routes: A reaches its limit (2), the pool its
    // total (3). Each one waits for a connect.
    r.lease(b, 1, A).await;
    r.lease(b, 2, A).await;
    r.lease(b, 3, B).await;
    r.gauges(b);

    // Two more on A wait (route limit).
    r.start(b, 4, A, None).await;
    r.start(b, 5, A, None).await;
    r.gauges(b);

    // FIFO: lease 1's connection goes straight to lease 4, the first waiter;
    // lease 5 still waits, and gets lease 2's.
    r.release(b, 1).await;
    r.finish(b, 4).await;
    r.check_waiting(b, 5).await;
    r.release(b, 2).await;
    r.finish(b, 5).await;

    // Reuse: B's connection goes idle and serves the next lease on B.
    r.release(b, 3).await;
    r.lease(b, 6, B).await;
    r.release(b, 6).await;
    r.gauges(b);

    // The server closes B's idle connection: the pool sees it while it is
    // idle (idle watching), closes its side and never hands it out; the
    // next lease on B connects anew.
    r.server_close(b, B).await;
    r.gauges(b);
    r.lease(b, 7, B).await;
    r.release(b, 7).await;

    // A connect failure delivered to the waiting lease: F is new, the pool
    // is full (A 2 leased, B 1 idle), so B's idle connection is evicted to
    // make room; lease 8 waits for F's connect, which is refused.
    r.start(b, 8, F, None).await;
    r.finish(b, 8).await;
    r.gauges(b);

    // A lease timeout: A is at its limit and nothing comes back in time.
    r.start(b, 9, A, Some(LEASE_TIMEOUT_MS)).await;
    r.finish(b, 9).await;

    // Drain: the idle connection closes, the lease out still works and its
    // connection closes when it comes back, new leases are refused.
    r.release(b, 5).await;
    r.drain(b).await;
    r.lease(b, 10, A).await;
    r.use_lease(b, 4).await;
    r.release(b, 4).await;
    r.gauges(b);

    r.totals(b);
    r.events
}

/// The sequence the scenario must produce on every backend.
fn expected() -> Vec<Event> {
    use Event::*;
    let granted = |lease, route, conn| Granted { lease, route, conn };
    let gauges = |connections, idle, leased, pending| Gauges {
        connections,
        idle,
        leased,
        pending,
    };
    vec![
        granted(1, A, 1),
        granted(2, A, 2),
        granted(3, B, 3),
        gauges(3, 0, 3, 0),
        Waiting { lease: 4 },
        Waiting { lease: 5 },
        gauges(3, 0, 3, 2),
        Released { lease: 1 },
        granted(4, A, 1),
        Waiting { lease: 5 },
        Released { lease: 2 },
        granted(5, A, 2),
        Released { lease: 3 },
        granted(6, B, 3),
        Released { lease: 6 },
        gauges(3, 1, 2, 0),
        ServerClosed {
            conn: 3,
            reason: CloseReason::PeerClosed,
        },
        gauges(2, 0, 2, 0),
        granted(7, B, 4),
        Released { lease: 7 },
        Waiting { lease: 8 },
        Closed {
            conn: 4,
            reason: CloseReason::Evicted,
        },
        Failed {
            lease: 8,
            error: Fail::ConnectFailed(ConnectFailure::Remote),
        },
        gauges(2, 0, 2, 0),
        Waiting { lease: 9 },
        Failed {
            lease: 9,
            error: Fail::Timeout,
        },
        Released { lease: 5 },
        Drain,
        Closed {
            conn: 2,
            reason: CloseReason::Drained,
        },
        Failed {
            lease: 10,
            error: Fail::Closed,
        },
        Used { lease: 4, ok: true },
        Released { lease: 4 },
        Closed {
            conn: 1,
            reason: CloseReason::Drained,
        },
        gauges(0, 0, 0, 0),
        Totals(crate::Totals {
            connects: 5,
            connected: 4,
            connect_failures: [0, 0, 1],
            grants: 7,
            reuses: 3,
            queued: 8,
            timeouts: 1,
            cancels: 0,
            overflows: 0,
            closes: vec![
                (CloseReason::Evicted, 1),
                (CloseReason::PeerClosed, 1),
                (CloseReason::Drained, 2),
            ],
        }),
    ]
}

// ---------------------------------------------------------------------------
// The log: what the scenario observed, normalized.
// ---------------------------------------------------------------------------

struct Recorder {
    events: Vec<Event>,
    /// Connections in order of first sight.
    conns: Vec<ConnId>,
    /// The counters at the end of the last step.
    counters: Counters,
}

impl Recorder {
    fn new(counters: Counters) -> Self {
        Recorder {
            events: Vec::new(),
            conns: Vec::new(),
            counters,
        }
    }

    fn conn(&mut self, c: Option<ConnId>) -> u32 {
        let Some(c) = c else { return 0 };
        let i = match self.conns.iter().position(|&x| x == c) {
            Some(i) => i,
            None => {
                self.conns.push(c);
                self.conns.len() - 1
            }
        };
        i as u32 + 1
    }

    fn outcome(&mut self, lease: u32, o: Outcome) {
        let e = match o {
            Ok((route, c)) => Event::Granted {
                lease,
                route,
                conn: self.conn(Some(c)),
            },
            Err(error) => Event::Failed { lease, error },
        };
        self.events.push(e);
    }

    /// The end of a step: the closes the transport saw, paired with the
    /// reasons the pool's counters gained (both sorted).
    async fn step_end(&mut self, b: &mut impl Backend) {
        let now = b.counters();
        let total: u64 = now.closes.iter().sum();
        let seen = b.settle(total).await;
        let now = b.counters();
        let mut conns: Vec<(u32, Ended)> =
            seen.into_iter().map(|(c, e)| (self.conn(c), e)).collect();
        conns.sort_unstable();
        let mut reasons = Vec::new();
        for reason in CloseReason::ALL {
            let n = now.closes_for(reason) - self.counters.closes_for(reason);
            reasons.extend((0..n).map(|_| reason));
        }
        self.counters = now;
        let one_reason = reasons.windows(2).all(|w| w[0] == w[1]);
        if conns.len() == reasons.len() && one_reason {
            for ((conn, ended), reason) in conns.into_iter().zip(reasons) {
                self.events.push(match ended {
                    Ended::Fin => Event::Closed { conn, reason },
                    Ended::Rst => Event::Reset { conn, reason },
                    Ended::Server => Event::ServerClosed { conn, reason },
                });
            }
        } else {
            self.events.push(Event::Unpaired { conns, reasons });
        }
    }

    /// A lease that is answered without the scenario doing anything more
    /// (a connect, an idle connection, a refusal).
    async fn lease(&mut self, b: &mut impl Backend, n: u32, route: Rt) {
        b.start(n, route, None);
        let o = b.wait(n).await;
        self.outcome(n, o);
        self.step_end(b).await;
    }

    /// Starts a lease expected to wait: `Waiting`, or its outcome.
    async fn start(&mut self, b: &mut impl Backend, n: u32, route: Rt, timeout_ms: Option<u64>) {
        b.start(n, route, timeout_ms);
        self.check_waiting(b, n).await;
    }

    async fn check_waiting(&mut self, b: &mut impl Backend, n: u32) {
        match b.poll(n).await {
            None => self.events.push(Event::Waiting { lease: n }),
            Some(o) => self.outcome(n, o),
        }
        self.step_end(b).await;
    }

    async fn finish(&mut self, b: &mut impl Backend, n: u32) {
        let o = b.wait(n).await;
        self.outcome(n, o);
        self.step_end(b).await;
    }

    async fn use_lease(&mut self, b: &mut impl Backend, n: u32) {
        let ok = b.use_lease(n).await;
        self.events.push(Event::Used { lease: n, ok });
        self.step_end(b).await;
    }

    async fn release(&mut self, b: &mut impl Backend, n: u32) {
        b.release(n);
        self.events.push(Event::Released { lease: n });
        self.step_end(b).await;
    }

    async fn drain(&mut self, b: &mut impl Backend) {
        b.drain();
        self.events.push(Event::Drain);
        self.step_end(b).await;
    }

    async fn server_close(&mut self, b: &mut impl Backend, route: Rt) {
        b.server_close(route).await;
        self.step_end(b).await;
    }

    fn gauges(&mut self, b: &impl Backend) {
        let s = b.stats();
        self.events.push(Event::Gauges {
            connections: s.connections,
            idle: s.idle,
            leased: s.leased,
            pending: s.pending,
        });
    }

    fn totals(&mut self, b: &impl Backend) {
        let c = b.counters();
        self.events.push(Event::Totals(Totals {
            connects: c.connects,
            connected: c.connected,
            connect_failures: c.connect_failures,
            grants: c.grants,
            reuses: c.reuses,
            queued: c.queued,
            timeouts: c.timeouts,
            cancels: c.cancels,
            overflows: c.overflows,
            closes: CloseReason::ALL
                .into_iter()
                .map(|r| (r, c.closes_for(r)))
                .filter(|&(_, n)| n > 0)
                .collect(),
        }));
    }
}

/// Compares every run with the expected sequence; on a difference, panics
/// with the sequences side by side (`=`: as expected) and the first
/// difference of each run.
fn check(expected: &[Event], runs: &[(&str, Vec<Event>)]) {
    if runs.iter().all(|(_, log)| log == expected) {
        return;
    }
    let rows = runs
        .iter()
        .map(|(_, l)| l.len())
        .chain([expected.len()])
        .max()
        .unwrap_or(0);
    let show = |e: Option<&Event>| e.map_or_else(|| String::from("<none>"), |e| format!("{e:?}"));
    let mut out = String::from("the backends' sequences differ from the expected one\n");
    for (name, log) in runs {
        match (0..rows).find(|&i| log.get(i) != expected.get(i)) {
            Some(i) => {
                out += &format!(
                    "  {name}: first difference at #{i}: expected {}, got {}\n",
                    show(expected.get(i)),
                    show(log.get(i))
                )
            }
            None => out += &format!("  {name}: as expected\n"),
        }
    }
    out += "\n #  | expected";
    for (name, _) in runs {
        out += &format!(" | {name}");
    }
    out += "\n";
    for i in 0..rows {
        out += &format!("{i:>3} | {}", show(expected.get(i)));
        for (_, log) in runs {
            if log.get(i) == expected.get(i) {
                out += " | =";
            } else {
                out += &format!(" | >> {}", show(log.get(i)));
            }
        }
        out += "\n";
    }
    panic!("{out}");
}

/// The test: the scenario on the four runs, one after the other.
#[tokio::test(flavor = "current_thread")]
async fn the_same_scenario_gives_the_same_sequence_on_core_tokio_tcp_and_embassy() {
    let t0 = std::time::Instant::now();
    let core = core_run::run().await;
    let t1 = std::time::Instant::now();
    let tokio = tokio_run::run().await;
    let t2 = std::time::Instant::now();
    let embassy = embassy_run::run().await;
    let t3 = std::time::Instant::now();
    let tokio_tcp = tcp_run::run().await;
    let t4 = std::time::Instant::now();
    eprintln!(
        "cross-backend scenario: core {:?}, tokio {:?}, embassy {:?}, tokio-tcp {:?}",
        t1 - t0,
        t2 - t1,
        t3 - t2,
        t4 - t3
    );
    for e in &core {
        eprintln!("  {e:?}");
    }
    check(
        &expected(),
        &[
            ("core", core),
            ("tokio", tokio),
            ("embassy", embassy),
            ("tokio-tcp", tokio_tcp),
        ],
    );
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

/// A `wharf-tokio` pool over `connector` with the scenario's [`config`] (the
/// scripted and the TCP runs).
fn tokio_pool<K: wharf_tokio::RouteKey, C: wharf_tokio::Connector<K>>(
    connector: C,
) -> wharf_tokio::Pool<K, C> {
    let c = config();
    let std_dur = |d: Option<wharf::Duration>| d.map(std::time::Duration::from);
    wharf_tokio::Pool::builder(connector)
        .max_total(c.max_total)
        .max_per_route(c.max_per_route)
        .connect_timeout(std_dur(c.connect_timeout))
        .idle_timeout(std_dur(c.idle_timeout))
        .max_lifetime(std_dur(c.max_lifetime))
        .validate_after_inactivity(std_dur(c.validate_after_inactivity))
        .lease_timeout(None)
        .build()
        .expect("valid config")
}

/// The lease futures a run started and has not seen answered, by lease
/// number: what `start`, `poll` and `wait` of the tokio and embassy runs do
/// with them.
struct Pending<'a, T> {
    futs: HashMap<u32, Pin<Box<dyn Future<Output = T> + 'a>>>,
}

impl<'a, T: 'a> Pending<'a, T> {
    fn new() -> Self {
        Pending {
            futs: HashMap::new(),
        }
    }

    /// Starts lease `n`, polled once now (an answer at the first poll is
    /// kept for `poll` / `wait`).
    fn start(&mut self, n: u32, fut: impl Future<Output = T> + 'a) {
        let mut fut: Pin<Box<dyn Future<Output = T> + 'a>> = Box::pin(fut);
        if let Poll::Ready(r) = poll_once(&mut fut) {
            fut = Box::pin(std::future::ready(r));
        }
        self.futs.insert(n, fut);
    }

    /// Lease `n`'s answer, if it has come by this poll.
    fn poll(&mut self, n: u32) -> Option<T> {
        let fut = self.futs.get_mut(&n).expect("a started lease");
        let Poll::Ready(r) = poll_once(fut) else {
            return None;
        };
        self.futs.remove(&n);
        Some(r)
    }

    /// Waits for lease `n`'s answer.
    async fn wait(&mut self, n: u32) -> T {
        self.futs.remove(&n).expect("a started lease").await
    }
}

// ---------------------------------------------------------------------------
// 1. The core, driven by hand (sans-I/O): connects answered at once (route F
//    refused), time advanced to the core's next deadline when a lease waits.
// ---------------------------------------------------------------------------

mod core_run {
    use super::*;

    pub async fn run() -> Vec<Event> {
        let mut storage: wharf::Storage<Rt, 4, 4, 4, 4> = wharf::Storage::new();
        let pool = wharf::Pool::new(&mut storage, config()).expect("valid config");
        let mut run = CoreRun {
            pool,
            now: wharf::Instant::ZERO,
            waiters: HashMap::new(),
            answers: HashMap::new(),
            leases: HashMap::new(),
            connecting: Vec::new(),
            closed: Vec::new(),
            released: HashMap::new(),
        };
        scenario(&mut run).await
    }

    struct CoreRun<'s> {
        pool: wharf::Pool<'s, Rt>,
        now: wharf::Instant,
        waiters: HashMap<WaiterId, u32>,
        answers: HashMap<u32, Outcome>,
        leases: HashMap<u32, wharf::Lease>,
        /// Connects asked for and not answered yet.
        connecting: Vec<(ConnId, Rt)>,
        /// Closes asked for since the last `settle`; a `PeerClosed` one is
        /// the server-close step's (the core has no wire).
        closed: Vec<(ConnId, Ended)>,
        /// The connection each route's last release gave back.
        released: HashMap<Rt, ConnId>,
    }

    fn failed(r: FailReason) -> Fail {
        match r {
            FailReason::Timeout => Fail::Timeout,
            FailReason::ConnectFailed(f) => Fail::ConnectFailed(f),
            FailReason::Overflow => Fail::Overflow,
            FailReason::Draining => Fail::Draining,
        }
    }

    fn refused(e: LeaseError) -> Fail {
        match e {
            LeaseError::Timeout => Fail::Timeout,
            LeaseError::Closed => Fail::Closed,
            LeaseError::Draining => Fail::Draining,
            LeaseError::Overflow => Fail::Overflow,
            e => Fail::Other(format!("{e:?}")),
        }
    }

    impl CoreRun<'_> {
        fn route_of_conn(&self, conn: ConnId) -> Rt {
            self.pool
                .route_of(conn)
                .and_then(|r| self.pool.route_key(r))
                .copied()
                .expect("a leased connection has a route")
        }

        fn granted(&mut self, n: u32, lease: wharf::Lease) {
            let route = self
                .pool
                .route_of(lease.conn())
                .and_then(|r| self.pool.route_key(r))
                .copied()
                .expect("a leased connection has a route");
            self.leases.insert(n, lease);
            self.answers.insert(n, Ok((route, lease.conn())));
        }

        /// Drains the actions after an input. A connect is only noted: it
        /// completes when a lease is waited for (as on the backends, where it
        /// takes a while and progresses when the scenario waits).
        fn pump(&mut self) {
            while let Some(a) = self.pool.poll_action() {
                match a {
                    Action::Connect { conn, route } => {
                        let key = *self.pool.route_key(route).expect("a live route");
                        self.connecting.push((conn, key));
                    }
                    Action::Granted { waiter, lease } => {
                        let n = self.waiters.remove(&waiter).expect("a known waiter");
                        self.granted(n, lease);
                    }
                    Action::Failed { waiter, reason } => {
                        let n = self.waiters.remove(&waiter).expect("a known waiter");
                        self.answers.insert(n, Err(failed(reason)));
                    }
                    Action::Close { conn, reason } => self.closed.push((
                        conn,
                        match reason {
                            CloseReason::PeerClosed => Ended::Server,
                            _ => Ended::Fin,
                        },
                    )),
                    Action::Validate { conn } => panic!("validation of {conn:?} (none set)"),
                    Action::RouteIdle { .. } => {}
                }
            }
            self.pool.check_invariants().expect("core invariants");
        }

        /// The connects in progress complete: refused on `F`, else an
        /// HTTP/1-style connection (one lease at a time).
        fn complete_connects(&mut self) {
            for (conn, route) in std::mem::take(&mut self.connecting) {
                let r = match route {
                    F => self
                        .pool
                        .connect_failed(conn, ConnectFailure::Remote, self.now),
                    _ => self.pool.connected(conn, 1, self.now),
                };
                r.expect("the core asked for this connect");
                self.pump();
            }
        }
    }

    impl Backend for CoreRun<'_> {
        fn start(&mut self, n: u32, route: Rt, timeout_ms: Option<u64>) {
            let deadline = timeout_ms.map(|ms| self.now + wharf::Duration::from_millis(ms));
            match self.pool.lease(&route, None, self.now, deadline) {
                Ok(LeaseOutcome::Granted(l)) => self.granted(n, l),
                Ok(LeaseOutcome::Queued(w)) => {
                    self.waiters.insert(w, n);
                }
                Err(e) => {
                    self.answers.insert(n, Err(refused(e)));
                }
            }
            self.pump();
        }

        async fn poll(&mut self, n: u32) -> Option<Outcome> {
            self.answers.remove(&n)
        }

        async fn wait(&mut self, n: u32) -> Outcome {
            loop {
                if let Some(o) = self.answers.remove(&n) {
                    return o;
                }
                if !self.connecting.is_empty() {
                    self.complete_connects();
                    continue;
                }
                let t = self
                    .pool
                    .poll_timeout()
                    .unwrap_or_else(|| panic!("lease {n} would wait forever"));
                self.now = self.now.max(t);
                self.pool.handle_timeout(self.now);
                self.pump();
            }
        }

        async fn use_lease(&mut self, n: u32) -> bool {
            // No I/O here: the lease is still the pool's live lease.
            let l = self.leases[&n];
            self.pool.route_of(l.conn()).is_some()
        }

        fn release(&mut self, n: u32) {
            let l = self.leases.remove(&n).expect("a granted lease");
            let route = self.route_of_conn(l.conn());
            self.pool
                .release(l, Release::REUSE, self.now)
                .expect("a live lease");
            self.released.insert(route, l.conn());
            self.pump();
        }

        fn drain(&mut self) {
            self.pool
                .drain(DrainScope::All, DrainMode::DrainAndDelete, self.now);
            self.pump();
        }

        async fn server_close(&mut self, route: Rt) {
            // The backend's idle watch would report this: the input it
            // gives the core.
            let conn = self.released[&route];
            self.pool
                .peer_closed(conn, self.now)
                .expect("the route's idle connection");
            self.pump();
        }

        async fn settle(&mut self, _closes: u64) -> Vec<(Option<ConnId>, Ended)> {
            self.closed.drain(..).map(|(c, e)| (Some(c), e)).collect()
        }

        fn stats(&self) -> PoolStats {
            self.pool.stats()
        }

        fn counters(&self) -> Counters {
            *self.pool.counters()
        }
    }
}

// ---------------------------------------------------------------------------
// 2. wharf-tokio with a scripted connector.
// ---------------------------------------------------------------------------

mod tokio_run {
    use super::*;
    use std::time::Duration;
    use wharf_tokio::{ConnEvent, Connector, Error, Lease, LeaseOptions, Pool};

    /// A scripted connection: a serial number.
    pub struct Conn {
        serial: u64,
    }

    /// Connects take 5 ms; route `F` refuses them (`ConnectionRefused`, which
    /// the default classification makes `Remote`). `close` records the
    /// serial of every connection the pool closes. The server-close step
    /// marks a route's connections closed by the server: `poll_event`
    /// reports `PeerClosed` for them (and wakes the waker the pool left).
    #[derive(Default)]
    pub struct Scripted {
        next: AtomicU64,
        closed: Arc<Mutex<Vec<u64>>>,
        /// Connection serial -> its route.
        routes: Mutex<HashMap<u64, Rt>>,
        /// Serials the server closed.
        server_closed: Mutex<std::collections::HashSet<u64>>,
        /// The waker `poll_event` was last given, by serial.
        wakers: Mutex<HashMap<u64, Waker>>,
    }

    impl Scripted {
        /// The server closes every connection of `route` it has.
        fn server_close(&self, route: Rt) {
            let serials: Vec<u64> = self
                .routes
                .lock()
                .unwrap()
                .iter()
                .filter(|&(_, &r)| r == route)
                .map(|(&s, _)| s)
                .collect();
            for s in serials {
                self.server_closed.lock().unwrap().insert(s);
                if let Some(w) = self.wakers.lock().unwrap().remove(&s) {
                    w.wake();
                }
            }
        }
    }

    impl Connector<Rt> for Scripted {
        type Conn = Conn;
        type Error = io::Error;
        async fn connect(&self, route: &Rt) -> io::Result<Conn> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            match route {
                F => Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "scripted: nobody listens on F",
                )),
                _ => {
                    let serial = self.next.fetch_add(1, Ordering::SeqCst);
                    self.routes.lock().unwrap().insert(serial, *route);
                    Ok(Conn { serial })
                }
            }
        }
        fn poll_event(&self, conn: &mut Conn, cx: &mut Context<'_>) -> Poll<ConnEvent> {
            if self.server_closed.lock().unwrap().contains(&conn.serial) {
                return Poll::Ready(ConnEvent::PeerClosed);
            }
            self.wakers
                .lock()
                .unwrap()
                .insert(conn.serial, cx.waker().clone());
            Poll::Pending
        }
        fn close(&self, conn: Conn) -> impl Future<Output = ()> + Send + 'static {
            self.routes.lock().unwrap().remove(&conn.serial);
            self.closed.lock().unwrap().push(conn.serial);
            async {}
        }
    }

    struct TokioRun {
        pool: Pool<Rt, Scripted>,
        pending: Pending<'static, Result<Lease<Rt, Scripted>, Error>>,
        leases: HashMap<u32, Lease<Rt, Scripted>>,
        /// Connection serial -> the core's connection id (seen at grant).
        by_serial: HashMap<u64, ConnId>,
        seen: usize,
    }

    pub async fn run() -> Vec<Event> {
        let pool = tokio_pool(Scripted::default());
        let mut run = TokioRun {
            pool,
            pending: Pending::new(),
            leases: HashMap::new(),
            by_serial: HashMap::new(),
            seen: 0,
        };
        let events = scenario(&mut run).await;
        run.pool.check_invariants().expect("core invariants");
        events
    }

    impl TokioRun {
        fn outcome(&mut self, n: u32, r: Result<Lease<Rt, Scripted>, Error>) -> Outcome {
            match r {
                Ok(lease) => {
                    let conn = Lease::id(&lease).conn();
                    let route = Lease::route(&lease).expect("a leased connection has a route");
                    self.by_serial.insert(lease.serial, conn);
                    self.leases.insert(n, lease);
                    Ok((route, conn))
                }
                Err(Error::Timeout { .. }) => Err(Fail::Timeout),
                Err(Error::Closed { .. }) => Err(Fail::Closed),
                Err(Error::Draining { .. }) => Err(Fail::Draining),
                Err(Error::Overflow { .. }) => Err(Fail::Overflow),
                // The connector's error arrives typed.
                Err(Error::ConnectFailed {
                    reason,
                    source: Some(e),
                    ..
                }) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    Err(Fail::ConnectFailed(reason))
                }
                Err(e) => Err(Fail::Other(format!("{e:?}"))),
            }
        }
    }

    impl Backend for TokioRun {
        fn start(&mut self, n: u32, route: Rt, timeout_ms: Option<u64>) {
            let pool = self.pool.clone();
            let mut opts = LeaseOptions::new();
            if let Some(ms) = timeout_ms {
                opts = opts.timeout(Duration::from_millis(ms));
            }
            self.pending
                .start(n, async move { pool.lease_with(&route, opts).await });
        }

        async fn poll(&mut self, n: u32) -> Option<Outcome> {
            let r = self.pending.poll(n)?;
            Some(self.outcome(n, r))
        }

        async fn wait(&mut self, n: u32) -> Outcome {
            let r = self.pending.wait(n).await;
            self.outcome(n, r)
        }

        async fn use_lease(&mut self, n: u32) -> bool {
            // The scripted connection has no I/O: it is still in the lease.
            self.leases.contains_key(&n)
        }

        fn release(&mut self, n: u32) {
            drop(self.leases.remove(&n).expect("a granted lease"));
        }

        fn drain(&mut self) {
            self.pool.drain(None, DrainMode::DrainAndDelete);
        }

        async fn server_close(&mut self, route: Rt) {
            let before = self.pool.counters().closes_for(CloseReason::PeerClosed);
            self.pool.connector().server_close(route);
            for _ in 0..2000 {
                if self.pool.counters().closes_for(CloseReason::PeerClosed) > before {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }

        async fn settle(&mut self, closes: u64) -> Vec<(Option<ConnId>, Ended)> {
            let closed = self.pool.connector().closed.clone();
            for _ in 0..2000 {
                if closed.lock().unwrap().len() as u64 >= closes {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let closed = closed.lock().unwrap();
            let by_server = self.pool.connector().server_closed.lock().unwrap();
            let new = closed[self.seen..]
                .iter()
                .map(|s| {
                    let ended = match by_server.contains(s) {
                        true => Ended::Server,
                        false => Ended::Fin,
                    };
                    (self.by_serial.get(s).copied(), ended)
                })
                .collect();
            self.seen = closed.len();
            new
        }

        fn stats(&self) -> PoolStats {
            self.pool.stats()
        }

        fn counters(&self) -> Counters {
            self.pool.counters()
        }
    }
}

// ---------------------------------------------------------------------------
// 3. wharf-embassy over two embassy-net stacks joined in memory.
// ---------------------------------------------------------------------------

mod embassy_run {
    use super::*;
    use crate::two_stacks;
    use common::{server, Ev, Log, Mode, SERVER};
    use embassy_futures::join::join;
    use embassy_futures::select::{select3, Either3};
    use embedded_io_async::{Read, Write};
    use wharf_embassy::{Error, Lease, LeaseOptions, Pool, Route, State};

    /// 4 sockets, 4 waiters, 4 routes, 1 KiB buffers.
    type EmbassyState = State<4, 4, 4, 1024, 1024>;

    const PORT_A: u16 = 7000;
    const PORT_B: u16 = 7001;
    /// No listener on the server stack: it answers a connect with a RST.
    const PORT_F: u16 = 7009;

    fn route(rt: Rt) -> Route {
        let port = match rt {
            A => PORT_A,
            B => PORT_B,
            F => PORT_F,
        };
        Route::ip(SERVER, port)
    }

    fn rt_of(route: &Route) -> Rt {
        match route {
            Route::Ip(ep) if ep.port == PORT_A => A,
            Route::Ip(ep) if ep.port == PORT_B => B,
            Route::Ip(ep) if ep.port == PORT_F => F,
            other => panic!("not a route of the scenario: {other:?}"),
        }
    }

    struct EmbassyRun<'d, 'l> {
        pool: Pool<'d>,
        log: &'l Log,
        pending: Pending<'d, Result<Lease<'d>, Error>>,
        leases: HashMap<u32, Lease<'d>>,
        /// The connection's local port -> the core's connection id.
        by_port: HashMap<u16, ConnId>,
        /// Server events looked at so far.
        seen: usize,
    }

    pub async fn run() -> Vec<Event> {
        two_stacks!(5, |client, server_stack| {
            let log = Log::default();
            // A pool borrows its state for good (firmware gives it a static).
            let state: &'static mut EmbassyState = Box::leak(Box::new(EmbassyState::new()));
            let (pool, mut runner) = wharf_embassy::new(client, state, config()).unwrap();
            let servers = join(
                server(server_stack, PORT_A, Mode::Echo, &log),
                server(
                    server_stack,
                    PORT_B,
                    Mode::IdleClose(SERVER_IDLE_CLOSE_MS),
                    &log,
                ),
            );
            let mut run = EmbassyRun {
                pool,
                log: &log,
                pending: Pending::new(),
                leases: HashMap::new(),
                by_port: HashMap::new(),
                seen: 0,
            };
            match select3(runner.run(), servers, scenario(&mut run)).await {
                Either3::Third(events) => {
                    pool.inspect(|p| p.check_invariants())
                        .expect("core invariants");
                    events
                }
                _ => unreachable!(),
            }
        })
    }

    async fn echo(lease: &mut Lease<'_>, msg: &[u8]) -> bool {
        if lease.write_all(msg).await.is_err() || lease.flush().await.is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < msg.len() {
            match lease.read(&mut buf[got..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => got += n,
            }
        }
        &buf[..got] == msg
    }

    impl<'d> EmbassyRun<'d, '_> {
        async fn outcome(&mut self, n: u32, r: Result<Lease<'d>, Error>) -> Outcome {
            match r {
                Ok(mut lease) => {
                    let conn = lease.id().conn();
                    let route = rt_of(&lease.route());
                    let port = lease.socket().local_endpoint().expect("connected").port;
                    self.by_port.insert(port, conn);
                    assert!(echo(&mut lease, b"granted").await, "lease {n}: no echo");
                    self.leases.insert(n, lease);
                    Ok((route, conn))
                }
                Err(Error::Timeout) => Err(Fail::Timeout),
                Err(Error::Closed) => Err(Fail::Closed),
                Err(Error::Draining) => Err(Fail::Draining),
                Err(Error::Overflow) => Err(Fail::Overflow),
                Err(Error::ConnectFailed(f)) => Err(Fail::ConnectFailed(f)),
                Err(e) => Err(Fail::Other(format!("{e:?}"))),
            }
        }
    }

    impl Backend for EmbassyRun<'_, '_> {
        fn start(&mut self, n: u32, rt: Rt, timeout_ms: Option<u64>) {
            let pool = self.pool;
            let opts = LeaseOptions {
                timeout: timeout_ms.map(wharf::Duration::from_millis),
                ..LeaseOptions::default()
            };
            self.pending.start(n, async move {
                let route = route(rt);
                pool.lease_with(&route, opts).await
            });
        }

        async fn poll(&mut self, n: u32) -> Option<Outcome> {
            let r = self.pending.poll(n)?;
            Some(self.outcome(n, r).await)
        }

        async fn wait(&mut self, n: u32) -> Outcome {
            let r = self.pending.wait(n).await;
            self.outcome(n, r).await
        }

        async fn use_lease(&mut self, n: u32) -> bool {
            let lease = self.leases.get_mut(&n).expect("a granted lease");
            echo(lease, b"still here").await
        }

        fn release(&mut self, n: u32) {
            drop(self.leases.remove(&n).expect("a granted lease"));
        }

        fn drain(&mut self) {
            self.pool.drain(None, DrainMode::DrainAndDelete);
        }

        async fn server_close(&mut self, _route: Rt) {
            // B's server closes a connection idle for SERVER_IDLE_CLOSE_MS.
            let before = self.pool.counters().closes_for(CloseReason::PeerClosed);
            common::eventually(SERVER_IDLE_CLOSE_MS + 2000, || {
                self.pool.counters().closes_for(CloseReason::PeerClosed) > before
            })
            .await;
        }

        async fn settle(&mut self, closes: u64) -> Vec<(Option<ConnId>, Ended)> {
            let ended = |e: &Ev| matches!(e, Ev::Fin(_) | Ev::Rst(_) | Ev::IdleClosed(_));
            common::eventually(2000, || {
                self.log.events().iter().filter(|e| ended(e)).count() as u64 >= closes
            })
            .await;
            let events = self.log.events();
            let new = events[self.seen..]
                .iter()
                .filter_map(|e| match e {
                    Ev::Fin(p) => Some((self.by_port.get(p).copied(), Ended::Fin)),
                    Ev::Rst(p) => Some((self.by_port.get(p).copied(), Ended::Rst)),
                    Ev::IdleClosed(p) => Some((self.by_port.get(p).copied(), Ended::Server)),
                    _ => None,
                })
                .collect();
            self.seen = events.len();
            new
        }

        fn stats(&self) -> PoolStats {
            self.pool.stats()
        }

        fn counters(&self) -> Counters {
            self.pool.counters()
        }
    }
}

// ---------------------------------------------------------------------------
// 4. wharf-tokio over real TCP sockets on loopback.
// ---------------------------------------------------------------------------

mod tcp_run {
    use super::*;
    use common::Ev;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket, TcpStream};
    use tokio::task::JoinHandle;
    use wharf_tokio::{Error, Lease, LeaseOptions, Pool, TcpConnector};

    /// What the servers saw, in order (the embassy run's observations).
    type ServerLog = Arc<Mutex<Vec<Ev>>>;

    /// Accepts connections on `listener`, each served by its own task;
    /// with `idle_close`, a connection idle that long is closed.
    async fn server(listener: TcpListener, log: ServerLog, idle_close: Option<Duration>) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            log.lock().unwrap().push(Ev::Accepted(peer.port()));
            tokio::spawn(echo_until_end(stream, peer.port(), log.clone(), idle_close));
        }
    }

    /// Echoes until the client ends the connection and records how: FIN
    /// (a read returned 0) or RST (a read or write failed with
    /// `ConnectionReset`). Any other error records nothing, so the run's
    /// bounded wait for the close gives up and the step shows `Unpaired`.
    /// With `idle_close`, a connection with nothing to read for that long
    /// is closed by the server (FIN: nothing unread, so no RST) and
    /// recorded as `IdleClosed`.
    async fn echo_until_end(
        mut stream: TcpStream,
        port: u16,
        log: ServerLog,
        idle_close: Option<Duration>,
    ) {
        let mut buf = [0u8; 256];
        let reset = |e: &io::Error| e.kind() == io::ErrorKind::ConnectionReset;
        let end = loop {
            let read = match idle_close {
                Some(idle) => match tokio::time::timeout(idle, stream.read(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => break Ev::IdleClosed(port),
                },
                None => stream.read(&mut buf).await,
            };
            match read {
                Ok(0) => break Ev::Fin(port),
                Ok(n) => match stream.write_all(&buf[..n]).await {
                    Ok(()) => {}
                    Err(e) if reset(&e) => break Ev::Rst(port),
                    Err(_) => return,
                },
                Err(e) if reset(&e) => break Ev::Rst(port),
                Err(_) => return,
            }
        };
        log.lock().unwrap().push(end);
    }

    type TcpLease = Lease<SocketAddr, TcpConnector>;

    struct TcpRun {
        pool: Pool<SocketAddr, TcpConnector>,
        /// The scenario's routes' addresses: `A`, `B`, `F`.
        addrs: [SocketAddr; 3],
        log: ServerLog,
        pending: Pending<'static, Result<TcpLease, Error>>,
        leases: HashMap<u32, TcpLease>,
        /// The connection's local (client) port -> the core's connection id.
        by_port: HashMap<u16, ConnId>,
        /// Server events looked at so far.
        seen: usize,
    }

    pub async fn run() -> Vec<Event> {
        let log = ServerLog::default();
        let listen = || TcpListener::bind("127.0.0.1:0");
        let (a, b) = (listen().await.unwrap(), listen().await.unwrap());
        // F: a port bound but not listening, kept bound for the whole run,
        // so the kernel refuses every connect to it (RST:
        // `ConnectionRefused`) and nothing else can take the port meanwhile.
        let f = TcpSocket::new_v4().unwrap();
        f.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addrs = [
            a.local_addr().unwrap(),
            b.local_addr().unwrap(),
            f.local_addr().unwrap(),
        ];
        let idle_close = Duration::from_millis(SERVER_IDLE_CLOSE_MS);
        let servers: [JoinHandle<()>; 2] = [
            tokio::spawn(server(a, log.clone(), None)),
            tokio::spawn(server(b, log.clone(), Some(idle_close))),
        ];
        let pool = tokio_pool(TcpConnector::new());
        let mut run = TcpRun {
            pool,
            addrs,
            log,
            pending: Pending::new(),
            leases: HashMap::new(),
            by_port: HashMap::new(),
            seen: 0,
        };
        let events = scenario(&mut run).await;
        run.pool.check_invariants().expect("core invariants");
        for s in servers {
            s.abort();
        }
        drop(f);
        events
    }

    /// Writes `msg` and reads it back: true if the echo came back whole.
    async fn echo(stream: &mut TcpStream, msg: &[u8]) -> bool {
        if stream.write_all(msg).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < msg.len() {
            match stream.read(&mut buf[got..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => got += n,
            }
        }
        &buf[..got] == msg
    }

    impl TcpRun {
        fn addr(&self, rt: Rt) -> SocketAddr {
            self.addrs[rt as usize]
        }

        fn rt_of(&self, addr: SocketAddr) -> Rt {
            match self.addrs.iter().position(|&a| a == addr) {
                Some(0) => A,
                Some(1) => B,
                Some(2) => F,
                _ => panic!("not a route of the scenario: {addr}"),
            }
        }

        async fn outcome(&mut self, n: u32, r: Result<TcpLease, Error>) -> Outcome {
            match r {
                Ok(mut lease) => {
                    let conn = Lease::id(&lease).conn();
                    let addr = Lease::route(&lease).expect("a leased connection has a route");
                    let route = self.rt_of(addr);
                    let port = lease.local_addr().expect("connected").port();
                    self.by_port.insert(port, conn);
                    assert!(echo(&mut lease, b"granted").await, "lease {n}: no echo");
                    self.leases.insert(n, lease);
                    Ok((route, conn))
                }
                Err(Error::Timeout { .. }) => Err(Fail::Timeout),
                Err(Error::Closed { .. }) => Err(Fail::Closed),
                Err(Error::Draining { .. }) => Err(Fail::Draining),
                Err(Error::Overflow { .. }) => Err(Fail::Overflow),
                // The kernel's refusal arrives typed.
                Err(Error::ConnectFailed {
                    reason,
                    source: Some(e),
                    ..
                }) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    Err(Fail::ConnectFailed(reason))
                }
                Err(e) => Err(Fail::Other(format!("{e:?}"))),
            }
        }
    }

    impl Backend for TcpRun {
        fn start(&mut self, n: u32, rt: Rt, timeout_ms: Option<u64>) {
            let pool = self.pool.clone();
            let addr = self.addr(rt);
            let mut opts = LeaseOptions::new();
            if let Some(ms) = timeout_ms {
                opts = opts.timeout(Duration::from_millis(ms));
            }
            self.pending
                .start(n, async move { pool.lease_with(&addr, opts).await });
        }

        async fn poll(&mut self, n: u32) -> Option<Outcome> {
            let r = self.pending.poll(n)?;
            Some(self.outcome(n, r).await)
        }

        async fn wait(&mut self, n: u32) -> Outcome {
            let r = self.pending.wait(n).await;
            self.outcome(n, r).await
        }

        async fn use_lease(&mut self, n: u32) -> bool {
            let lease = self.leases.get_mut(&n).expect("a granted lease");
            echo(lease, b"still here").await
        }

        fn release(&mut self, n: u32) {
            drop(self.leases.remove(&n).expect("a granted lease"));
        }

        fn drain(&mut self) {
            self.pool.drain(None, DrainMode::DrainAndDelete);
        }

        async fn server_close(&mut self, _route: Rt) {
            // B's server closes a connection idle for SERVER_IDLE_CLOSE_MS.
            let before = self.pool.counters().closes_for(CloseReason::PeerClosed);
            for _ in 0..(SERVER_IDLE_CLOSE_MS + 2000) / 5 {
                if self.pool.counters().closes_for(CloseReason::PeerClosed) > before {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        async fn settle(&mut self, closes: u64) -> Vec<(Option<ConnId>, Ended)> {
            let ended = |e: &Ev| matches!(e, Ev::Fin(_) | Ev::Rst(_) | Ev::IdleClosed(_));
            for _ in 0..400 {
                if self.log.lock().unwrap().iter().filter(|e| ended(e)).count() as u64 >= closes {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let events = self.log.lock().unwrap().clone();
            let new = events[self.seen..]
                .iter()
                .filter_map(|e| match e {
                    Ev::Fin(p) => Some((self.by_port.get(p).copied(), Ended::Fin)),
                    Ev::Rst(p) => Some((self.by_port.get(p).copied(), Ended::Rst)),
                    Ev::IdleClosed(p) => Some((self.by_port.get(p).copied(), Ended::Server)),
                    _ => None,
                })
                .collect();
            self.seen = events.len();
            new
        }

        fn stats(&self) -> PoolStats {
            self.pool.stats()
        }

        fn counters(&self) -> Counters {
            self.pool.counters()
        }
    }
}
