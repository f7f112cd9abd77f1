//! The scenarios: the core's main rules, each a function returning an
//! [`Outcome`]. See the crate docs.

use wharf_core::{
    Action, CancelError, CancelPolicy, CloseReason, Config, ConfigError, ConnError, ConnectFailure,
    DrainMode, DrainScope, Duration, FailReason, Instant, Lease, LeaseError, Pool, Release,
    ReleaseError, ReusePolicy, RouteConfig, Storage, Tag, Validation,
};

use crate::check::{granted, invariants, queued, Acts, Failure, Outcome};

type Key = u32;
// 16-bit indices, as wharf-embassy's pools (the core's own behaviour tests
// use the default `u32`; its model runs both).
type P<'a> = Pool<'a, Key, u16>;
type S = Storage<Key, 8, 4, 8, 8, u16>;

const A: Key = 1;
const B: Key = 2;

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Limits that stay out of the way unless a scenario sets them.
fn base() -> Config {
    Config {
        max_total: 8,
        max_per_route: 4,
        connect_timeout: Some(Duration::from_secs(5)),
        idle_timeout: None,
        validate_after_inactivity: None,
        ..Config::default()
    }
}

/// Drains every action (the rule after every input).
#[track_caller]
fn drain(p: &mut P<'_>) -> Result<Acts<Key>, Failure> {
    Acts::drain(p)
}

/// Opens one connection on `key` at `now` and returns its lease.
#[track_caller]
fn open(p: &mut P<'_>, key: Key, now: Instant) -> Result<Lease, Failure> {
    let w = queued(p.lease(&key, None, now, None))?;
    let acts = drain(p)?;
    let Some((conn, _)) = acts.connect() else {
        fail!("no Connect")
    };
    ok!(p.connected(conn, 1, now));
    let acts = drain(p)?;
    match acts.granted(w) {
        Some(l) if l.conn() == conn => Ok(l),
        _ => Err(Failure::here("the waiter was not granted its connection")),
    }
}

// ---------------------------------------------------------------------------

fn lease_connect_grant() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let w = queued(p.lease(&A, None, t(0), None))?;
    let acts = drain(&mut p)?;
    ensure!(acts.n == 1);
    let Some(&Action::Connect { conn, route }) = acts.get(0) else {
        fail!("first action is Connect")
    };
    ensure!(p.route_key(route) == Some(&A));
    ensure!(p.route_of(conn) == Some(route));
    ensure!(p.stats().connecting == 1 && p.stats().pending == 1);
    ok!(p.connected(conn, 1, t(3)));
    let acts = drain(&mut p)?;
    ensure!(acts.n == 1);
    let Some(lease) = acts.granted(w) else {
        fail!("Granted")
    };
    ensure!(lease.conn() == conn);
    let st = p.stats();
    ensure!(st.leased == 1 && st.pending == 0 && st.connecting == 0 && st.connections == 1);
    ensure!(p.counters().connects == 1 && p.counters().connected == 1 && p.counters().grants == 1);
    invariants(&p)
}

fn release_then_reuse() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let l = open(&mut p, A, t(0))?;
    ok!(p.release(l, Release::REUSE, t(10)));
    ensure!(drain(&mut p)?.n == 0);
    ensure!(p.stats().idle == 1);
    let again = granted(p.lease(&A, None, t(20), None))?;
    ensure!(again.conn() == l.conn());
    ensure!(again.id() != l.id());
    ensure!(drain(&mut p)?.n == 0);
    ensure!(p.counters().reuses == 1 && p.counters().connects == 1);
    invariants(&p)
}

fn lifo_and_fifo_reuse_order() -> Outcome {
    for (policy, want_first) in [(ReusePolicy::Lifo, false), (ReusePolicy::Fifo, true)] {
        let mut s = S::new();
        let mut p = ok!(P::new(
            &mut s,
            Config {
                reuse: policy,
                ..base()
            }
        ));
        let l1 = open(&mut p, A, t(0))?;
        let l2 = open(&mut p, A, t(1))?;
        ok!(p.release(l1, Release::REUSE, t(10)));
        ok!(p.release(l2, Release::REUSE, t(20)));
        let next = granted(p.lease(&A, None, t(30), None))?;
        let want = if want_first { l1.conn() } else { l2.conn() };
        ensure!(next.conn() == want);
        invariants(&p)?;
    }
    Ok(())
}

fn per_route_limit() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(
        &mut s,
        Config {
            max_per_route: 2,
            ..base()
        }
    ));
    let w1 = queued(p.lease(&A, None, t(0), None))?;
    let w2 = queued(p.lease(&A, None, t(0), None))?;
    let w3 = queued(p.lease(&A, None, t(0), None))?;
    let _ = (w1, w2);
    let acts = drain(&mut p)?;
    ensure!(acts.connects() == 2);
    ensure!(p.route_stats(&A).map(|r| r.connections) == Some(2));
    // Connect both; the third waiter waits for a release and reuses.
    let mut conns = acts.iter().filter_map(|a| match a {
        Action::Connect { conn, .. } => Some(*conn),
        _ => None,
    });
    let (Some(c1), Some(c2)) = (conns.next(), conns.next()) else {
        fail!("two connects")
    };
    ok!(p.connected(c1, 1, t(1)));
    ok!(p.connected(c2, 1, t(1)));
    let acts = drain(&mut p)?;
    let (Some(l1), Some(_l2)) = (acts.granted(w1), acts.granted(w2)) else {
        fail!("w1, w2 granted")
    };
    ensure!(p.stats().pending == 1);
    ok!(p.release(l1, Release::REUSE, t(5)));
    let acts = drain(&mut p)?;
    let Some(l3) = acts.granted(w3) else {
        fail!("w3 granted on release")
    };
    ensure!(l3.conn() == l1.conn());
    ensure!(p.counters().connects == 2);
    invariants(&p)
}

fn total_limit_blocks_then_evicts() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(
        &mut s,
        Config {
            max_total: 2,
            max_per_route: 2,
            ..base()
        }
    ));
    let a1 = open(&mut p, A, t(0))?;
    let a2 = open(&mut p, A, t(0))?;
    ok!(p.release(a1, Release::REUSE, t(5)));
    // B needs a connection: the pool is full, so the idle one of A is evicted.
    let wb = queued(p.lease(&B, None, t(10), None))?;
    let acts = drain(&mut p)?;
    ensure!(acts.closed(a1.conn(), CloseReason::Evicted));
    let Some((cb, rb)) = acts.connect() else {
        fail!("Connect for B")
    };
    ensure!(p.route_key(rb) == Some(&B));
    ensure!(p.stats().connections == 2);
    ok!(p.connected(cb, 1, t(11)));
    ensure!(drain(&mut p)?.granted(wb).is_some());
    // Now A waits: nothing idle to evict, so it is blocked (no Connect).
    let wa = queued(p.lease(&A, None, t(20), None))?;
    ensure!(drain(&mut p)?.connects() == 0);
    // A release on A serves the blocked waiter.
    ok!(p.release(a2, Release::REUSE, t(30)));
    let Some(l) = drain(&mut p)?.granted(wa) else {
        fail!("waiter on A granted")
    };
    ensure!(l.conn() == a2.conn());
    ensure!(p.counters().closes_for(CloseReason::Evicted) == 1);
    invariants(&p)
}

fn fifo_waiters() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(
        &mut s,
        Config {
            max_per_route: 1,
            ..base()
        }
    ));
    let w1 = queued(p.lease(&A, None, t(0), None))?;
    let w2 = queued(p.lease(&A, None, t(1), None))?;
    let w3 = queued(p.lease(&A, None, t(2), None))?;
    let acts = drain(&mut p)?;
    ensure!(acts.connects() == 1);
    let Some((c, _)) = acts.connect() else {
        fail!("Connect")
    };
    ok!(p.connected(c, 1, t(3)));
    let Some(l1) = drain(&mut p)?.granted(w1) else {
        fail!("w1 first")
    };
    ok!(p.release(l1, Release::REUSE, t(4)));
    let acts = drain(&mut p)?;
    ensure!(acts.granted(w3).is_none());
    let Some(l2) = acts.granted(w2) else {
        fail!("w2 second")
    };
    ok!(p.release(l2, Release::REUSE, t(5)));
    let Some(l3) = drain(&mut p)?.granted(w3) else {
        fail!("w3 third")
    };
    ensure!(l3.conn() == c);
    ensure!(p.counters().queued == 3 && p.counters().reuses == 2);
    invariants(&p)
}

fn waiter_deadline() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let w = queued(p.lease(&A, None, t(0), Some(t(100))))?;
    let Some((c, _)) = drain(&mut p)?.connect() else {
        fail!("Connect")
    };
    ensure!(p.poll_timeout().is_some_and(|d| d <= t(100)));
    p.handle_timeout(t(99));
    ensure!(drain(&mut p)?.n == 0);
    p.handle_timeout(t(100));
    let acts = drain(&mut p)?;
    ensure!(acts.has(&Action::Failed {
        waiter: w,
        reason: FailReason::Timeout
    }));
    ensure!(p.counters().timeouts == 1 && p.stats().pending == 0);
    // The connect goes on; once done the connection is idle.
    ensure!(p.stats().connecting == 1);
    ok!(p.connected(c, 1, t(150)));
    ensure!(drain(&mut p)?.n == 0);
    ensure!(p.stats().idle == 1);
    // A deadline already reached means "do not wait": the idle connection is
    // granted at once; with nothing ready it is refused at once.
    let l = granted(p.lease(&A, None, t(200), Some(t(200))))?;
    ensure!(l.conn() == c);
    ensure!(p.lease(&A, None, t(201), Some(t(150))) == Err(LeaseError::Timeout));
    ensure!(drain(&mut p)?.n == 0 && p.stats().pending == 0);
    invariants(&p)
}

fn connect_timeout() -> Outcome {
    let mut s = S::new();
    let cfg = Config {
        connect_timeout: Some(Duration::from_secs(1)),
        ..base()
    };
    let mut p = ok!(P::new(&mut s, cfg));
    let w = queued(p.lease(&A, None, t(0), None))?;
    let Some((c, _)) = drain(&mut p)?.connect() else {
        fail!("Connect")
    };
    p.handle_timeout(t(999));
    ensure!(drain(&mut p)?.n == 0);
    p.handle_timeout(t(1000));
    let acts = drain(&mut p)?;
    ensure!(acts.closed(c, CloseReason::ConnectTimeout));
    let failed = FailReason::ConnectFailed(ConnectFailure::Timeout);
    ensure!(acts.has(&Action::Failed {
        waiter: w,
        reason: failed
    }));
    // A late success for the aborted connect is refused.
    ensure!(p.connected(c, 1, t(1001)) == Err(ConnError::StaleConn));
    ensure!(p.counters().connect_failures_for(ConnectFailure::Timeout) == 1);
    ensure!(p.stats().connections == 0);
    invariants(&p)
}

fn connect_failure_purges_the_queue() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(
        &mut s,
        Config {
            max_per_route: 1,
            ..base()
        }
    ));
    let ws = [
        queued(p.lease(&A, None, t(0), None))?,
        queued(p.lease(&A, None, t(1), None))?,
        queued(p.lease(&A, None, t(2), None))?,
    ];
    let Some((c, _)) = drain(&mut p)?.connect() else {
        fail!("Connect")
    };
    ok!(p.connect_failed(c, ConnectFailure::Remote, t(10)));
    let acts = drain(&mut p)?;
    let reason = FailReason::ConnectFailed(ConnectFailure::Remote);
    for (i, w) in ws.iter().enumerate() {
        // In FIFO order, and no Close for a connection that never opened.
        ensure!(acts.get(i) == Some(&Action::Failed { waiter: *w, reason }));
    }
    ensure!(acts.count(|a| matches!(a, Action::Close { .. })) == 0);
    ensure!(p.stats().pending == 0 && p.stats().connections == 0);
    ensure!(p.connected(c, 1, t(11)).is_err());
    // Demand connects are not delayed by the retry backoff.
    let _w = queued(p.lease(&A, None, t(12), None))?;
    ensure!(drain(&mut p)?.connects() == 1);
    invariants(&p)
}

fn idle_timeout_closes() -> Outcome {
    let mut s = S::new();
    let cfg = Config {
        idle_timeout: Some(Duration::from_secs(10)),
        ..base()
    };
    let mut p = ok!(P::new(&mut s, cfg));
    let l = open(&mut p, A, t(0))?;
    ok!(p.release(l, Release::REUSE, t(1000)));
    ensure!(drain(&mut p)?.n == 0);
    ensure!(p.poll_timeout().is_some_and(|d| d <= t(11_000)));
    p.handle_timeout(t(10_999));
    ensure!(drain(&mut p)?.n == 0);
    p.handle_timeout(t(11_000));
    let acts = drain(&mut p)?;
    ensure!(acts.closed(l.conn(), CloseReason::IdleTimeout));
    // The route has nothing left: the backend is told it can forget it.
    ensure!(acts.count(|a| matches!(a, Action::RouteIdle { key: A, .. })) == 1);
    ensure!(p.stats().connections == 0);
    invariants(&p)
}

fn validation_finds_stale() -> Outcome {
    let mut s = S::new();
    let cfg = Config {
        validate_after_inactivity: Some(Duration::from_secs(1)),
        ..base()
    };
    let mut p = ok!(P::new(&mut s, cfg));
    let l = open(&mut p, A, t(0))?;
    ok!(p.release(l, Release::REUSE, t(10)));
    // Recently used: handed out without a check.
    let l = granted(p.lease(&A, None, t(500), None))?;
    ok!(p.release(l, Release::REUSE, t(600)));
    // Inactive for 1 s: validated first.
    let w = queued(p.lease(&A, None, t(1600), None))?;
    let acts = drain(&mut p)?;
    ensure!(acts.n == 1 && acts.has(&Action::Validate { conn: l.conn() }));
    ok!(p.validated(l.conn(), Validation::Stale, t(1601)));
    let acts = drain(&mut p)?;
    ensure!(acts.closed(l.conn(), CloseReason::Stale));
    let Some((fresh, _)) = acts.connect() else {
        fail!("a new connect for the waiter")
    };
    ok!(p.connected(fresh, 1, t(1602)));
    let Some(got) = drain(&mut p)?.granted(w) else {
        fail!("granted the new one")
    };
    ensure!(got.conn() == fresh);
    ensure!(p.counters().validations == 1 && p.counters().stale == 1);
    invariants(&p)
}

fn validation_alive_grants() -> Outcome {
    let mut s = S::new();
    let cfg = Config {
        validate_after_inactivity: Some(Duration::ZERO),
        ..base()
    };
    let mut p = ok!(P::new(&mut s, cfg));
    let l = open(&mut p, A, t(0))?;
    ok!(p.release(l, Release::REUSE, t(10)));
    let w = queued(p.lease(&A, None, t(20), None))?;
    ensure!(drain(&mut p)?.has(&Action::Validate { conn: l.conn() }));
    ensure!(p.stats().idle == 0);
    // Answering before the Validate was polled would be WrongState; now it is fine.
    ok!(p.validated(l.conn(), Validation::Alive, t(21)));
    let Some(got) = drain(&mut p)?.granted(w) else {
        fail!("granted after validation")
    };
    ensure!(got.conn() == l.conn());
    ensure!(p.counters().stale == 0 && p.counters().connects == 1);
    invariants(&p)
}

fn tags_match_state() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let l = open(&mut p, A, t(0))?;
    ok!(p.release(
        l,
        Release::Reuse {
            keep_alive: None,
            tag: Some(Tag(7))
        },
        t(1)
    ));
    // Untagged leases take only untagged connections.
    let _w = queued(p.lease(&A, None, t(2), None))?;
    ensure!(drain(&mut p)?.connects() == 1);
    // A lease with the tag gets the tagged connection at once.
    let got = granted(p.lease(&A, Some(Tag(7)), t(3), None))?;
    ensure!(got.conn() == l.conn());
    invariants(&p)
}

fn stale_release_is_an_error() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let l = open(&mut p, A, t(0))?;
    ok!(p.release(l, Release::REUSE, t(1)));
    ensure!(p.release(l, Release::REUSE, t(2)) == Err(ReleaseError::StaleLease));
    ensure!(p.release(l, Release::Discard, t(3)) == Err(ReleaseError::StaleLease));
    // Nothing changed: the connection is still idle and reusable.
    ensure!(p.stats().idle == 1 && drain(&mut p)?.n == 0);
    invariants(&p)
}

fn overflow_when_waiters_full() -> Outcome {
    let mut s = S::new();
    let cfg = Config {
        max_per_route: 1,
        max_pending: Some(2),
        ..base()
    };
    let mut p = ok!(P::new(&mut s, cfg));
    let _w1 = queued(p.lease(&A, None, t(0), None))?;
    let _w2 = queued(p.lease(&A, None, t(0), None))?;
    ensure!(p.lease(&A, None, t(0), None) == Err(LeaseError::Overflow));
    ensure!(p.lease(&B, None, t(0), None) == Err(LeaseError::Overflow));
    ensure!(p.counters().overflows == 2 && p.stats().pending == 2);
    invariants(&p)
}

fn drain_existing() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let idle = open(&mut p, A, t(0))?;
    let busy = open(&mut p, A, t(0))?;
    ok!(p.release(idle, Release::REUSE, t(1)));
    p.drain(DrainScope::All, DrainMode::DrainExisting, t(2));
    let acts = drain(&mut p)?;
    ensure!(acts.closed(idle.conn(), CloseReason::Drained));
    ensure!(acts.n == 1);
    // The leased one closes when it comes back, and is not reused.
    ok!(p.release(busy, Release::REUSE, t(3)));
    ensure!(drain(&mut p)?.closed(busy.conn(), CloseReason::Drained));
    // New leases get new connections.
    let _w = queued(p.lease(&A, None, t(4), None))?;
    ensure!(drain(&mut p)?.connects() == 1);
    invariants(&p)
}

fn drain_and_delete_closes_the_pool() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let l = open(&mut p, A, t(0))?;
    ok!(p.release(l, Release::REUSE, t(1)));
    p.drain(DrainScope::All, DrainMode::DrainAndDelete, t(2));
    ensure!(drain(&mut p)?.closed(l.conn(), CloseReason::Drained));
    ensure!(p.lease(&A, None, t(3), None) == Err(LeaseError::Closed));
    ensure!(p.lease(&B, None, t(3), None) == Err(LeaseError::Closed));
    invariants(&p)
}

fn discard_closes() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let l = open(&mut p, A, t(0))?;
    ok!(p.release(l, Release::Discard, t(1)));
    ensure!(drain(&mut p)?.closed(l.conn(), CloseReason::Discarded));
    ensure!(p.stats().connections == 0);
    ensure!(p.counters().closes_for(CloseReason::Discarded) == 1);
    invariants(&p)
}

fn cancel_a_waiter() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let w = queued(p.lease(&A, None, t(0), None))?;
    let Some((c, _)) = drain(&mut p)?.connect() else {
        fail!("Connect")
    };
    ok!(p.cancel(w, CancelPolicy::Default, t(1)));
    ensure!(p.cancel(w, CancelPolicy::Default, t(2)) == Err(CancelError::StaleWaiter));
    ensure!(p.counters().cancels == 1 && p.stats().pending == 0);
    // The connect goes on and parks idle.
    ok!(p.connected(c, 1, t(3)));
    ensure!(drain(&mut p)?.count(|a| matches!(a, Action::Granted { .. })) == 0);
    ensure!(p.stats().idle == 1);
    invariants(&p)
}

fn max_lifetime_expires() -> Outcome {
    let mut s = S::new();
    let cfg = Config {
        max_lifetime: Some(Duration::from_secs(5)),
        ..base()
    };
    let mut p = ok!(P::new(&mut s, cfg));
    let l = open(&mut p, A, t(0))?;
    // Leased past its lifetime: closed when it comes back, never reused.
    ok!(p.release(l, Release::REUSE, t(6000)));
    ensure!(drain(&mut p)?.closed(l.conn(), CloseReason::Expired));
    ensure!(p.stats().connections == 0);
    invariants(&p)
}

fn keep_alive_expires() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let l = open(&mut p, A, t(0))?;
    let keep = Release::Reuse {
        keep_alive: Some(Duration::from_secs(2)),
        tag: None,
    };
    ok!(p.release(l, keep, t(100)));
    p.handle_timeout(t(2099));
    ensure!(drain(&mut p)?.n == 0);
    p.handle_timeout(t(2100));
    ensure!(drain(&mut p)?.closed(l.conn(), CloseReason::Expired));
    invariants(&p)
}

fn warm_up_keeps_min_idle() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let cfg = RouteConfig {
        min_idle: Some(2),
        ..RouteConfig::default()
    };
    ok!(p.set_route_config(&A, cfg, t(0)));
    let acts = drain(&mut p)?;
    ensure!(acts.connects() == 2);
    ensure!(p.counters().warmups == 2);
    for a in acts.iter() {
        if let Action::Connect { conn, .. } = a {
            ok!(p.connected(*conn, 1, t(1)));
        }
    }
    ensure!(drain(&mut p)?.connects() == 0);
    ensure!(p.stats().idle == 2);
    // Taking one leaves one idle: warm-up opens another.
    let _l = granted(p.lease(&A, None, t(2), None))?;
    ensure!(drain(&mut p)?.connects() == 1);
    invariants(&p)
}

fn peer_closed_connections() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let idle = open(&mut p, A, t(0))?;
    let busy = open(&mut p, A, t(0))?;
    ok!(p.release(idle, Release::REUSE, t(1)));
    ok!(p.peer_closed(idle.conn(), t(2)));
    ensure!(drain(&mut p)?.closed(idle.conn(), CloseReason::PeerClosed));
    // Leased: it drains, and closes when it comes back.
    ok!(p.peer_closed(busy.conn(), t(3)));
    ensure!(drain(&mut p)?.n == 0);
    ok!(p.release(busy, Release::REUSE, t(4)));
    ensure!(drain(&mut p)?.closed(busy.conn(), CloseReason::PeerClosed));
    ensure!(p.stats().connections == 0);
    invariants(&p)
}

fn max_leases_per_connection() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(
        &mut s,
        Config {
            max_leases_per_conn: Some(2),
            ..base()
        }
    ));
    let l1 = open(&mut p, A, t(0))?;
    ok!(p.release(l1, Release::REUSE, t(1)));
    let l2 = granted(p.lease(&A, None, t(2), None))?;
    ensure!(l2.conn() == l1.conn());
    ok!(p.release(l2, Release::REUSE, t(3)));
    ensure!(drain(&mut p)?.closed(l1.conn(), CloseReason::MaxLeases));
    invariants(&p)
}

fn config_is_validated() -> Outcome {
    let mut s = S::new();
    let too_many = Config {
        max_total: 9,
        ..base()
    };
    ensure!(P::new(&mut s, too_many).err() == Some(ConfigError::MaxTotalExceedsStorage));
    let ratio = Config {
        preconnect_ratio: 0.5,
        ..base()
    };
    ensure!(P::new(&mut s, ratio).err() == Some(ConfigError::BadPreconnectRatio));
    let zero = Config {
        max_per_route: 0,
        ..base()
    };
    ensure!(P::new(&mut s, zero).err() == Some(ConfigError::ZeroMaxPerRoute));
    ensure!(P::new(&mut s, base()).is_ok());
    Ok(())
}

fn preconnect_ratio_opens_ahead() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(
        &mut s,
        Config {
            preconnect_ratio: 2.0,
            ..base()
        }
    ));
    // One request with ratio 2: one connect for demand, one ahead of it.
    let _w = queued(p.lease(&A, None, t(0), None))?;
    ensure!(drain(&mut p)?.connects() == 2);
    ensure!(p.counters().preconnects == 1);
    invariants(&p)
}

fn starvation_guard_connects_past_max_total() -> Outcome {
    let mut s = S::new();
    let cfg = Config {
        max_total: 1,
        starvation_guard: true,
        ..base()
    };
    let mut p = ok!(P::new(&mut s, cfg));
    let _a = open(&mut p, A, t(0))?;
    // B has no connection at all: the guard lets it open one past max_total.
    let _w = queued(p.lease(&B, None, t(1), None))?;
    ensure!(drain(&mut p)?.connects() == 1);
    ensure!(p.counters().guard_connects == 1);
    ensure!(p.stats().connections == 2);
    invariants(&p)
}

fn lowered_route_limit_closes_on_release() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let l1 = open(&mut p, A, t(0))?;
    let l2 = open(&mut p, A, t(0))?;
    let one = RouteConfig {
        max_connections: Some(1),
        ..RouteConfig::default()
    };
    ok!(p.set_route_config(&A, one, t(1)));
    // Nothing closes at once (lazy, as HttpClient's setMaxPerRoute)...
    ensure!(drain(&mut p)?.n == 0);
    ensure!(p.route_stats(&A).map(|r| (r.connections, r.limit)) == Some((2, 1)));
    // ...but the first one released over the limit closes.
    ok!(p.release(l1, Release::REUSE, t(2)));
    ensure!(drain(&mut p)?.closed(l1.conn(), CloseReason::RouteLimit));
    ok!(p.release(l2, Release::REUSE, t(3)));
    ensure!(drain(&mut p)?.n == 0);
    ensure!(p.stats().idle == 1);
    invariants(&p)
}

fn cancel_close_excess() -> Outcome {
    let mut s = S::new();
    let mut p = ok!(P::new(&mut s, base()));
    let w = queued(p.lease(&A, None, t(0), None))?;
    let Some((c, _)) = drain(&mut p)?.connect() else {
        fail!("Connect")
    };
    // Nobody needs the connect any more: it is closed (aborted).
    ok!(p.cancel(w, CancelPolicy::CloseExcess, t(1)));
    ensure!(drain(&mut p)?.closed(c, CloseReason::Excess));
    ensure!(p.stats().connections == 0);
    ensure!(p.connected(c, 1, t(2)) == Err(ConnError::StaleConn));
    invariants(&p)
}

fn route_idle_frees_the_route() -> Outcome {
    let mut s = S::new();
    let cfg = Config {
        idle_timeout: Some(Duration::from_secs(1)),
        ..base()
    };
    let mut p = ok!(P::new(&mut s, cfg));
    let w = queued(p.lease(&A, None, t(0), None))?;
    let Some((c, route)) = drain(&mut p)?.connect() else {
        fail!("Connect")
    };
    ok!(p.connected(c, 1, t(0)));
    let Some(l) = drain(&mut p)?.granted(w) else {
        fail!("Granted")
    };
    ok!(p.release(l, Release::REUSE, t(0)));
    p.handle_timeout(t(1000));
    let acts = drain(&mut p)?;
    ensure!(acts.has(&Action::RouteIdle { route, key: A }));
    // Polled: the route's slot is free and its id stale.
    ensure!(p.route_key(route).is_none());
    ensure!(p.stats().routes == 0);
    invariants(&p)
}

/// A named scenario.
pub type Scenario = (&'static str, fn() -> Outcome);

/// Every scenario, in order.
pub const SCENARIOS: &[Scenario] = &[
    ("lease_connect_grant", lease_connect_grant),
    ("release_then_reuse", release_then_reuse),
    ("lifo_and_fifo_reuse_order", lifo_and_fifo_reuse_order),
    ("per_route_limit", per_route_limit),
    (
        "total_limit_blocks_then_evicts",
        total_limit_blocks_then_evicts,
    ),
    ("fifo_waiters", fifo_waiters),
    ("waiter_deadline", waiter_deadline),
    ("connect_timeout", connect_timeout),
    (
        "connect_failure_purges_the_queue",
        connect_failure_purges_the_queue,
    ),
    ("idle_timeout_closes", idle_timeout_closes),
    ("validation_finds_stale", validation_finds_stale),
    ("validation_alive_grants", validation_alive_grants),
    ("tags_match_state", tags_match_state),
    ("stale_release_is_an_error", stale_release_is_an_error),
    ("overflow_when_waiters_full", overflow_when_waiters_full),
    ("drain_existing", drain_existing),
    (
        "drain_and_delete_closes_the_pool",
        drain_and_delete_closes_the_pool,
    ),
    ("discard_closes", discard_closes),
    ("cancel_a_waiter", cancel_a_waiter),
    ("max_lifetime_expires", max_lifetime_expires),
    ("keep_alive_expires", keep_alive_expires),
    ("warm_up_keeps_min_idle", warm_up_keeps_min_idle),
    ("peer_closed_connections", peer_closed_connections),
    ("max_leases_per_connection", max_leases_per_connection),
    ("config_is_validated", config_is_validated),
    ("preconnect_ratio_opens_ahead", preconnect_ratio_opens_ahead),
    (
        "starvation_guard_connects_past_max_total",
        starvation_guard_connects_past_max_total,
    ),
    (
        "lowered_route_limit_closes_on_release",
        lowered_route_limit_closes_on_release,
    ),
    ("cancel_close_excess", cancel_close_excess),
    ("route_idle_frees_the_route", route_idle_frees_the_route),
];

/// RAM of the core's [`Storage`] on this target (key `u32`), and the cost of
/// one more slot of each kind, measured with `size_of` (the slot types are
/// private): for each index width (`u16`, as wharf-embassy uses, then the
/// default `u32`), `(base 8 conns/4 routes/8 waiters/8 leases, per conn, per
/// route, per waiter, per lease)` in bytes. Per-slot costs are averaged over
/// 16 slots to hide alignment padding.
pub fn storage_sizes() -> [(&'static str, usize); 10] {
    use core::mem::size_of;
    macro_rules! sizes {
        ($i:ty, $name:literal) => {{
            let base = size_of::<Storage<u32, 8, 4, 8, 8, $i>>();
            let per = |bigger: usize| (bigger - base) / 16;
            [
                (concat!("Storage<u32, 8, 4, 8, 8, ", $name, ">"), base),
                (
                    concat!("per connection slot (", $name, " indices)"),
                    per(size_of::<Storage<u32, 24, 4, 8, 8, $i>>()),
                ),
                (
                    concat!("per route slot (u32 key, ", $name, " indices)"),
                    per(size_of::<Storage<u32, 8, 20, 8, 8, $i>>()),
                ),
                (
                    concat!("per waiter slot (", $name, " indices)"),
                    per(size_of::<Storage<u32, 8, 4, 24, 8, $i>>()),
                ),
                (
                    concat!("per lease slot (", $name, " indices)"),
                    per(size_of::<Storage<u32, 8, 4, 8, 24, $i>>()),
                ),
            ]
        }};
    }
    let [a, b, c, d, e] = sizes!(u16, "u16");
    let [f, g, h, i, j] = sizes!(u32, "u32");
    [a, b, c, d, e, f, g, h, i, j]
}

/// Runs every scenario, reporting each through `report`; returns
/// `(passed, failed)`.
pub fn run_all(mut report: impl FnMut(&str, &Outcome)) -> (u32, u32) {
    let (mut passed, mut failed) = (0, 0);
    for (name, f) in SCENARIOS {
        let r = f();
        report(name, &r);
        if r.is_ok() {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    (passed, failed)
}

/// A check that fails on purpose (a lease that is granted at once, checked as
/// queued), and the line of that check: the host test checks that the
/// failure names this line, not the helper's (`#[track_caller]`).
pub fn failing_example() -> (u32, Outcome) {
    let mut s = S::new();
    let mut run = || -> Outcome {
        let mut p = ok!(P::new(&mut s, base()));
        let l = open(&mut p, A, t(0))?;
        ok!(p.release(l, Release::REUSE, t(1)));
        queued(p.lease(&A, None, t(2), None))?;
        Ok(())
    };
    (line!() - 3, run())
}
