//! A tiny test "backend": it drains every action after each input into a `Vec`,
//! checks the pool's invariants after every step, and offers shorthands for the
//! common request/connect handshakes.

#![allow(dead_code)]

use wharf_core::*;

pub type Key = &'static str;
pub type Store = Storage<Key, 8, 4, 8, 8>;
pub type P<'a> = Pool<'a, Key>;
pub type Acts = Vec<Action<Key>>;

pub const A: Key = "a";
pub const B: Key = "b";
pub const C: Key = "c";
pub const D: Key = "d";

pub const T1: Tag = Tag(1);
pub const T2: Tag = Tag(2);
pub const T3: Tag = Tag(3);

/// `ms` milliseconds after the epoch.
pub fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// `ms` milliseconds.
pub fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// A quiet configuration: 4 connections in total, 2 per route, no timers at all
/// (no connect/idle timeout, no lifetime, no validation) unless a test asks.
pub fn cfg() -> Config {
    Config {
        max_total: 4,
        max_per_route: 2,
        connect_timeout: None,
        idle_timeout: None,
        max_lifetime: None,
        validate_after_inactivity: None,
        ..Config::default()
    }
}

pub fn pool(st: &mut Store, c: Config) -> P<'_> {
    match Pool::new(st, c) {
        Ok(p) => {
            ok(&p);
            p
        }
        Err(e) => panic!("config refused: {e:?}"),
    }
}

/// The pool's invariants hold.
pub fn ok(p: &P<'_>) {
    if let Err(e) = p.check_invariants() {
        panic!("invariant violated: {e:?}");
    }
}

/// Poll every action (the backend's duty after each input), then check invariants.
pub fn acts(p: &mut P<'_>) -> Acts {
    let mut v = Vec::new();
    while let Some(a) = p.poll_action() {
        v.push(a);
        assert!(v.len() < 10_000, "poll_action never returns None");
    }
    ok(p);
    v
}

/// No action is pending.
#[track_caller]
pub fn quiet(p: &mut P<'_>) {
    assert_eq!(acts(p), Vec::<Action<Key>>::new());
}

/// `handle_timeout(now)` and the actions it produced.
pub fn tick(p: &mut P<'_>, now: Instant) -> Acts {
    p.handle_timeout(now);
    acts(p)
}

#[track_caller]
pub fn queued(r: Result<LeaseOutcome, LeaseError>) -> WaiterId {
    match r {
        Ok(LeaseOutcome::Queued(w)) => w,
        Ok(LeaseOutcome::Granted(l)) => panic!("expected Queued, got Granted({l:?})"),
        Err(e) => panic!("expected Queued, got Err({e:?})"),
    }
}

#[track_caller]
pub fn granted(r: Result<LeaseOutcome, LeaseError>) -> Lease {
    match r {
        Ok(LeaseOutcome::Granted(l)) => l,
        Ok(LeaseOutcome::Queued(w)) => panic!("expected Granted, got Queued({w:?})"),
        Err(e) => panic!("expected Granted, got Err({e:?})"),
    }
}

#[track_caller]
pub fn refused(r: Result<LeaseOutcome, LeaseError>) -> LeaseError {
    match r {
        Err(e) => e,
        Ok(LeaseOutcome::Queued(w)) => panic!("expected Err, got Queued({w:?})"),
        Ok(LeaseOutcome::Granted(l)) => panic!("expected Err, got Granted({l:?})"),
    }
}

/// The connection of a `Connect` action.
#[track_caller]
pub fn connect_of(a: &Action<Key>) -> ConnId {
    match a {
        Action::Connect { conn, .. } => *conn,
        other => panic!("expected Connect, got {other:?}"),
    }
}

/// The waiter and lease of a `Granted` action.
#[track_caller]
pub fn grant_of(a: &Action<Key>) -> (WaiterId, Lease) {
    match a {
        Action::Granted { waiter, lease } => (*waiter, *lease),
        other => panic!("expected Granted, got {other:?}"),
    }
}

/// The single action of `v`, which must be a `Connect` for `key`.
#[track_caller]
pub fn single_connect(p: &P<'_>, v: &Acts, key: Key) -> ConnId {
    assert_eq!(v.len(), 1, "expected exactly one Connect, got {v:?}");
    let c = connect_of(&v[0]);
    let Action::Connect { route, .. } = v[0] else {
        unreachable!()
    };
    assert_eq!(p.route_key(route), Some(&key));
    assert_eq!(p.route_of(c), Some(route));
    c
}

/// The single action of `v`, which must be `Granted` for `waiter`.
#[track_caller]
pub fn single_grant(v: &Acts, waiter: WaiterId) -> Lease {
    assert_eq!(v.len(), 1, "expected exactly one Granted, got {v:?}");
    let (w, l) = grant_of(&v[0]);
    assert_eq!(w, waiter);
    l
}

/// A lease on `key` that finds nothing idle: it is queued and exactly one
/// connect is asked for. Returns the waiter and the new connection.
#[track_caller]
pub fn lease_connect(p: &mut P<'_>, key: Key, now: Instant) -> (WaiterId, ConnId) {
    let w = queued(p.lease(&key, None, now, None));
    let v = acts(p);
    let c = single_connect(p, &v, key);
    (w, c)
}

/// A queued lease on `key` that asks for no connect.
#[track_caller]
pub fn lease_wait(p: &mut P<'_>, key: Key, tag: Option<Tag>, now: Instant) -> WaiterId {
    let w = queued(p.lease(&key, tag, now, None));
    quiet(p);
    w
}

/// `connected(conn, capacity, now)` must succeed; its actions.
#[track_caller]
pub fn connect(p: &mut P<'_>, conn: ConnId, capacity: u32, now: Instant) -> Acts {
    p.connected(conn, capacity, now).unwrap();
    acts(p)
}

/// A fresh HTTP/1 connection on `key` serving a new lease: lease (queued),
/// `Connect`, `connected(1)`, `Granted`.
#[track_caller]
pub fn open(p: &mut P<'_>, key: Key, now: Instant) -> Lease {
    let (w, c) = lease_connect(p, key, now);
    let v = connect(p, c, 1, now);
    let l = single_grant(&v, w);
    assert_eq!(l.conn(), c);
    l
}

/// Answer every `Connect` in `v` with `connected(capacity)`; all actions produced.
pub fn connect_all(p: &mut P<'_>, v: &Acts, capacity: u32, now: Instant) -> Acts {
    let mut out = Vec::new();
    for a in v {
        if let Action::Connect { conn, .. } = a {
            out.extend(connect(p, *conn, capacity, now));
        }
    }
    out
}

/// `release(lease, how, now)` must succeed; its actions.
#[track_caller]
pub fn release(p: &mut P<'_>, lease: Lease, how: Release, now: Instant) -> Acts {
    p.release(lease, how, now).unwrap();
    acts(p)
}

/// Release for reuse with no keep-alive and no tag; no action expected.
#[track_caller]
pub fn put_back(p: &mut P<'_>, lease: Lease, now: Instant) {
    p.release(lease, Release::REUSE, now).unwrap();
    quiet(p);
}

/// Release for reuse with a tag.
pub fn tagged(tag: Tag) -> Release {
    Release::Reuse {
        keep_alive: None,
        tag: Some(tag),
    }
}

/// Release for reuse with a keep-alive.
pub fn keep_alive(d: Duration) -> Release {
    Release::Reuse {
        keep_alive: Some(d),
        tag: None,
    }
}

pub fn close(conn: ConnId, reason: CloseReason) -> Action<Key> {
    Action::Close { conn, reason }
}

pub fn failed(waiter: WaiterId, reason: FailReason) -> Action<Key> {
    Action::Failed { waiter, reason }
}

pub fn route_idle(route: RouteId, key: Key) -> Action<Key> {
    Action::RouteIdle { route, key }
}

/// The route of a connection.
#[track_caller]
pub fn route(p: &P<'_>, conn: ConnId) -> RouteId {
    p.route_of(conn).expect("connection has a route")
}
