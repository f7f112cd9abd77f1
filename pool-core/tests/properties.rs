//! What a user expects of a connection pool, as small deterministic scenarios
//! (issue 10). These do not come from `docs/SEMANTICS.md`: each one is a case
//! where following the rules literally gives a behaviour no user would accept,
//! so the differential model test cannot see it. They are written through the
//! public API only and are the acceptance tests of the fix of the rules.
//!
//! The same expectations run as properties over random sequences in the model
//! test and the fuzz target (`tests/common/props.rs`). Besides the holes named
//! in issue 10, the properties found the cases marked "found by": the first
//! two (a guard route closing its own idle connection, a deleted route's last
//! waiter being granted) are met by the rules as fixed; the last two
//! (preconnect with an idle timeout, the inactivity check at `Instant::MAX`)
//! are not yet. The `eviction-churn` property found the two
//! `yielded_capacity_does_not_go_back_to_the_releasing_route_*` cases, met by
//! the rules as fixed (§3.1 step 2 passes over the settling route, §3.7a moves
//! the route yielded to to the front of the blocked list).

use wharf_core::*;

type Key = u8;
const A: Key = 0;
const B: Key = 1;

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// No timers at all unless a test sets them.
fn quiet(max_total: u32, max_per_route: u32) -> Config {
    Config {
        max_total,
        max_per_route,
        connect_timeout: None,
        idle_timeout: None,
        max_lifetime: None,
        validate_after_inactivity: None,
        ..Config::default()
    }
}

/// Polls every action, checking the invariants after each.
fn drain(p: &mut Pool<'_, Key>) -> Vec<Action<Key>> {
    let mut out = Vec::new();
    while let Some(a) = p.poll_action() {
        out.push(a);
        p.check_invariants().unwrap();
    }
    out
}

fn connects(actions: &[Action<Key>]) -> Vec<ConnId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

fn closes(actions: &[Action<Key>]) -> Vec<(ConnId, CloseReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { conn, reason } => Some((*conn, *reason)),
            _ => None,
        })
        .collect()
}

fn granted(actions: &[Action<Key>], w: WaiterId) -> Option<Lease> {
    actions.iter().find_map(|a| match a {
        Action::Granted { waiter, lease } if *waiter == w => Some(*lease),
        _ => None,
    })
}

fn queued(r: Result<LeaseOutcome, LeaseError>) -> WaiterId {
    match r {
        Ok(LeaseOutcome::Queued(w)) => w,
        other => panic!("expected the lease to queue, got {other:?}"),
    }
}

/// Plays a prompt backend: answers every `Connect` with success (capacity 1)
/// and every `Validate` with alive, until nothing is outstanding or `rounds`
/// answers were given. Returns every action seen.
fn answer_all(p: &mut Pool<'_, Key>, now: Instant, rounds: usize) -> Vec<Action<Key>> {
    let mut seen = drain(p);
    let mut outstanding: Vec<Action<Key>> = seen.clone();
    for _ in 0..rounds {
        let Some(i) = outstanding
            .iter()
            .position(|a| matches!(a, Action::Connect { .. } | Action::Validate { .. }))
        else {
            break;
        };
        match outstanding.remove(i) {
            Action::Connect { conn, .. } => {
                if p.connected(conn, 1, now).is_err() {
                    continue;
                }
            }
            Action::Validate { conn } => {
                if p.validated(conn, Validation::Alive, now).is_err() {
                    continue;
                }
            }
            _ => unreachable!(),
        }
        let new = drain(p);
        // A connection closed before its answer needs none.
        for (c, _) in closes(&new) {
            outstanding.retain(|a| {
                !matches!(a, Action::Connect { conn, .. } | Action::Validate { conn } if *conn == c)
            });
        }
        outstanding.extend(new.iter().cloned());
        seen.extend(new);
    }
    seen
}

/// Hole 1 of issue 10. Storage with exactly `max_total` connection slots (the
/// `Storage` docs allow `CONNS >= max_total`), `max_total = 1`,
/// `max_per_route = 1`, no timers: `a` takes the only connection, `b` waits
/// for the total; once `a` gives its connection back it is idle and nothing
/// else needs it, so `b` must get a connection (the idle one is evicted). The
/// rules leave `b` waiting forever with `poll_timeout() == None`.
#[test]
fn blocked_route_is_served_once_the_only_connection_is_idle() {
    let mut storage: Storage<Key, 1, 2, 4, 4> = Storage::new();
    let mut p = Pool::new(&mut storage, quiet(1, 1)).unwrap();
    let wa = queued(p.lease(&A, None, t(0), None));
    let ca = connects(&drain(&mut p));
    assert_eq!(ca.len(), 1, "a connect for a");
    let wb = queued(p.lease(&B, None, t(1), None));
    assert_eq!(drain(&mut p), vec![], "b waits for the total");
    p.connected(ca[0], 1, t(2)).unwrap();
    let la = granted(&drain(&mut p), wa).expect("a granted");
    p.release(la, Release::REUSE, t(3)).unwrap();
    // A prompt backend from here on: b must be granted.
    let seen = answer_all(&mut p, t(4), 10);
    assert!(
        granted(&seen, wb).is_some(),
        "b is never served while a's connection sits idle: actions {seen:?}, stats {:?}, poll_timeout {:?}",
        p.stats(),
        p.poll_timeout()
    );
    assert_eq!(
        closes(&seen).iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![ca[0]],
        "a's idle connection makes room for b"
    );
}

/// Hole 1 with spare slots, once starvation-guard connections have used them
/// up: storage of 2 slots, `max_total = 1`, guard on. `a` and (by the guard)
/// `b` hold a connection each; `c` has none and waits (no slot for another
/// guard connect). When `a` gives its connection back it is idle and nothing
/// else needs it: `c` must get a connection (the idle one is evicted).
#[test]
fn blocked_route_is_served_once_guard_connections_used_the_spare_slots() {
    const C: Key = 2;
    let mut storage: Storage<Key, 2, 3, 4, 4> = Storage::new();
    let cfg = Config {
        starvation_guard: true,
        ..quiet(1, 1)
    };
    let mut p = Pool::new(&mut storage, cfg).unwrap();
    let wa = queued(p.lease(&A, None, t(0), None));
    let ca = connects(&drain(&mut p));
    p.connected(ca[0], 1, t(1)).unwrap();
    let la = granted(&drain(&mut p), wa).expect("a granted");
    let wb = queued(p.lease(&B, None, t(2), None));
    let cb = connects(&drain(&mut p));
    assert_eq!(
        cb.len(),
        1,
        "the starvation guard connects b past the total"
    );
    p.connected(cb[0], 1, t(3)).unwrap();
    granted(&drain(&mut p), wb).expect("b granted");
    let wc = queued(p.lease(&C, None, t(4), None));
    assert_eq!(drain(&mut p), vec![], "c waits: no slot left");
    p.release(la, Release::REUSE, t(5)).unwrap();
    let seen = answer_all(&mut p, t(6), 10);
    assert!(
        granted(&seen, wc).is_some(),
        "c is never served while a's connection sits idle: actions {seen:?}, stats {:?}, poll_timeout {:?}",
        p.stats(),
        p.poll_timeout()
    );
}

/// Found by the liveness property (beyond the four holes of issue 10): a
/// route served by the starvation guard closes its own idle connection to
/// make room for a waiter of another tag, and the guard is never tried again.
/// Storage of 2 slots, `max_total = 1`, `max_per_route = 1`, guard on: `a`
/// holds the total; `b` gets a guard connection, gives it back tagged 1; a
/// lease on `b` with tag 0 closes it (`RouteLimit`): once that `Close` is
/// polled a slot is free and `b` has no connection, exactly what the guard is
/// for, but nothing retries (the unblock step wants the total below
/// `max_total` or an idle connection) and `poll_timeout()` is `None`.
#[test]
fn guard_route_is_served_after_closing_its_own_idle_connection() {
    let mut storage: Storage<Key, 2, 2, 4, 4> = Storage::new();
    let cfg = Config {
        starvation_guard: true,
        ..quiet(1, 1)
    };
    let mut p = Pool::new(&mut storage, cfg).unwrap();
    let wa = queued(p.lease(&A, None, t(0), None));
    let ca = connects(&drain(&mut p));
    p.connected(ca[0], 1, t(1)).unwrap();
    granted(&drain(&mut p), wa).expect("a granted");
    let wb = queued(p.lease(&B, None, t(2), None));
    let cb = connects(&drain(&mut p));
    assert_eq!(
        cb.len(),
        1,
        "the starvation guard connects b past the total"
    );
    p.connected(cb[0], 1, t(3)).unwrap();
    let lb = granted(&drain(&mut p), wb).expect("b granted");
    p.release(
        lb,
        Release::Reuse {
            keep_alive: None,
            tag: Some(Tag(1)),
        },
        t(4),
    )
    .unwrap();
    drain(&mut p);
    let wb2 = queued(p.lease(&B, Some(Tag(0)), t(5), None));
    let seen = answer_all(&mut p, t(6), 10);
    assert!(
        granted(&seen, wb2).is_some(),
        "b's tag-0 waiter is never served after b's tag-1 connection was closed for it: actions {seen:?}, stats {:?}, route b {:?}, poll_timeout {:?}",
        p.stats(),
        p.route_stats(&B),
        p.poll_timeout()
    );
}

/// Hole 2 of issue 10: `preconnect_ratio > 1` with `max_idle_per_route`. One
/// lease, a prompt backend: the preconnected connection must not be closed
/// `IdleLimit` the moment it connects only for the same `connected()` to open
/// the next one. Churn stops: a handful of connects, then nothing pending.
#[test]
fn preconnect_with_max_idle_per_route_does_not_churn() {
    let cfg = Config {
        preconnect_ratio: 3.0,
        max_idle_per_route: Some(0),
        ..quiet(4, 4)
    };
    churn_stops(cfg);
}

/// Hole 2 with the pool-wide `max_idle`.
#[test]
fn preconnect_with_max_idle_does_not_churn() {
    let cfg = Config {
        preconnect_ratio: 2.0,
        max_idle: Some(0),
        ..quiet(4, 4)
    };
    churn_stops(cfg);
}

fn churn_stops(cfg: Config) {
    let mut storage: Storage<Key, 4, 2, 4, 4> = Storage::new();
    let mut p = Pool::new(&mut storage, cfg).unwrap();
    let w = queued(p.lease(&A, None, t(0), None));
    let seen = answer_all(&mut p, t(1), 200);
    assert!(granted(&seen, w).is_some(), "the lease is served");
    let n_connects = connects(&seen).len();
    let n_closes = closes(&seen).len();
    assert!(
        n_connects <= 4 && n_closes <= 4,
        "one lease, no new demand: {n_connects} connects and {n_closes} closes in 200 prompt answers (closes: {:?}...)",
        &closes(&seen)[..closes(&seen).len().min(6)]
    );
    assert_eq!(
        p.stats().connecting,
        0,
        "churn stops: no connect pending once every connect is answered ({:?})",
        p.counters()
    );
}

/// Hole 3 of issue 10: with the total binding, a released connection first
/// serves its own route's queue, so `b`, blocked on the total, waits while
/// `a`'s younger waiters are served one release after another. Expected: `b`
/// (older than them) is served within a bounded number of releases (the
/// properties' bound: one overtake per connection slot).
#[test]
fn route_blocked_on_the_total_is_served_within_the_bound() {
    const SLOTS: usize = 4;
    let mut storage: Storage<Key, SLOTS, 2, 8, 4> = Storage::new();
    let mut p = Pool::new(&mut storage, quiet(1, 1)).unwrap();
    let wa = queued(p.lease(&A, None, t(0), None));
    let ca = connects(&drain(&mut p));
    p.connected(ca[0], 1, t(1)).unwrap();
    let mut held = granted(&drain(&mut p), wa).expect("a granted");
    // b queues first, blocked on the total (a holds the only connection).
    let wb = queued(p.lease(&B, None, t(2), None));
    assert_eq!(drain(&mut p), vec![], "b waits for the total");
    let mut now = 3;
    for round in 0..=SLOTS {
        // A younger waiter of a, then a gives its connection back.
        let wa2 = queued(p.lease(&A, None, t(now), None));
        p.release(held, Release::REUSE, t(now + 1)).unwrap();
        let seen = answer_all(&mut p, t(now + 2), 10);
        now += 3;
        if granted(&seen, wb).is_some() {
            return;
        }
        held = granted(&seen, wa2).unwrap_or_else(|| {
            panic!("neither b nor a's waiter served in round {round}: {seen:?}")
        });
    }
    panic!(
        "b (queued first) was overtaken by {} younger waiters of route a and still waits: stats {:?}, route b {:?}",
        SLOTS + 1,
        p.stats(),
        p.route_stats(&B)
    );
}

/// Hole 4 of issue 10: after `DrainAndDelete`, cancelling the route's last
/// waiter must close its connection still connecting at once (Envoy's
/// `DrainWhileConnecting`): nothing can ever use it, and it holds a
/// `max_total` slot and the route's `RouteIdle`.
#[test]
fn drain_and_delete_then_cancel_closes_the_connecting_connection() {
    let mut storage: Storage<Key, 4, 2, 4, 4> = Storage::new();
    let mut p = Pool::new(&mut storage, quiet(4, 2)).unwrap();
    let w = queued(p.lease(&A, None, t(0), None));
    let c = connects(&drain(&mut p));
    assert_eq!(c.len(), 1);
    p.drain(DrainScope::Route(&A), DrainMode::DrainAndDelete, t(1));
    drain(&mut p);
    p.cancel(w, CancelPolicy::Default, t(2)).unwrap();
    let seen = drain(&mut p);
    assert!(
        closes(&seen).iter().any(|&(x, _)| x == c[0]),
        "the connecting connection of the deleted route stays open after its last waiter left: actions {seen:?}, stats {:?}",
        p.stats()
    );
    assert_eq!(p.stats().connections, 0, "its max_total slot is free again");
    assert!(
        seen.iter()
            .any(|a| matches!(a, Action::RouteIdle { key: A, .. })),
        "the route is removed at once: {seen:?}"
    );
}

/// Hole 4, with the waiter's deadline passing instead of a cancel.
#[test]
fn drain_and_delete_then_deadline_closes_the_connecting_connection() {
    let mut storage: Storage<Key, 4, 2, 4, 4> = Storage::new();
    let mut p = Pool::new(&mut storage, quiet(4, 2)).unwrap();
    queued(p.lease(&A, None, t(0), Some(t(100))));
    let c = connects(&drain(&mut p));
    p.drain(DrainScope::Route(&A), DrainMode::DrainAndDelete, t(1));
    drain(&mut p);
    p.handle_timeout(t(100));
    let seen = drain(&mut p);
    assert!(
        seen.iter().any(|a| matches!(
            a,
            Action::Failed {
                reason: FailReason::Timeout,
                ..
            }
        )),
        "the waiter times out: {seen:?}"
    );
    assert!(
        closes(&seen).iter().any(|&(x, _)| x == c[0]),
        "the connecting connection of the deleted route stays open after its last waiter timed out: actions {seen:?}, stats {:?}",
        p.stats()
    );
}

/// Hole 4 when the last waiter is served rather than withdrawn: with
/// preconnect, a deleted route's waiter is granted the first connection that
/// completes; the second connect can never be used and must close at once.
#[test]
fn drain_and_delete_then_grant_closes_the_extra_connecting_connection() {
    let mut storage: Storage<Key, 4, 2, 4, 4> = Storage::new();
    let cfg = Config {
        preconnect_ratio: 2.0,
        ..quiet(4, 2)
    };
    let mut p = Pool::new(&mut storage, cfg).unwrap();
    let w = queued(p.lease(&A, None, t(0), None));
    let c = connects(&drain(&mut p));
    assert_eq!(c.len(), 2, "a demand connect and a preconnect");
    p.drain(DrainScope::Route(&A), DrainMode::DrainAndDelete, t(1));
    drain(&mut p);
    p.connected(c[0], 1, t(2)).unwrap();
    let seen = drain(&mut p);
    assert!(
        granted(&seen, w).is_some(),
        "the waiter is served: {seen:?}"
    );
    assert!(
        closes(&seen).iter().any(|&(x, _)| x == c[1]),
        "the second connect of the deleted route stays open after its last waiter was served: actions {seen:?}, route {:?}",
        p.route_stats(&A)
    );
}

/// "Never" of issue 10: a lease deadline of `Instant::MAX` never fires, even
/// when `now` reaches `Instant::MAX`; `poll_timeout()` says `None` and
/// `handle_timeout(Instant::MAX)` must then do nothing.
#[test]
fn lease_deadline_of_instant_max_never_fires() {
    let mut storage: Storage<Key, 1, 2, 4, 4> = Storage::new();
    let mut p = Pool::new(&mut storage, quiet(1, 1)).unwrap();
    // a holds the only connection; b waits with a "never" deadline.
    queued(p.lease(&A, None, t(0), None));
    let ca = connects(&drain(&mut p));
    p.connected(ca[0], 1, t(1)).unwrap();
    drain(&mut p);
    let wb = queued(p.lease(&B, None, t(2), Some(Instant::MAX)));
    drain(&mut p);
    assert!(
        p.poll_timeout().is_none_or(|d| d == Instant::MAX),
        "nothing is due before the end of time: {:?}",
        p.poll_timeout()
    );
    p.handle_timeout(Instant::MAX);
    let seen = drain(&mut p);
    assert_eq!(
        seen,
        vec![],
        "handle_timeout(Instant::MAX) after poll_timeout() == None (waiter {wb:?} has deadline Instant::MAX)"
    );
    assert_eq!(
        p.route_stats(&B).map(|s| s.pending),
        Some(1),
        "b still waits"
    );
}

/// "Never" with saturating timers: `now + d` that lands on `Instant::MAX`
/// (here `Duration::MAX` timeouts and lifetime) never fires, even at
/// `Instant::MAX`; an idle connection with no lifetime is not expired then.
#[test]
fn saturated_timers_never_fire() {
    let mut storage: Storage<Key, 2, 2, 4, 4> = Storage::new();
    let cfg = Config {
        connect_timeout: Some(Duration::MAX),
        idle_timeout: Some(Duration::MAX),
        max_lifetime: Some(Duration::MAX),
        ..quiet(2, 2)
    };
    let mut p = Pool::new(&mut storage, cfg).unwrap();
    // One idle connection (released with a keep-alive that saturates too).
    let w = queued(p.lease(&A, None, t(0), None));
    let c = connects(&drain(&mut p));
    p.connected(c[0], 1, t(1)).unwrap();
    let l = granted(&drain(&mut p), w).unwrap();
    p.release(
        l,
        Release::Reuse {
            keep_alive: Some(Duration::MAX),
            tag: None,
        },
        t(2),
    )
    .unwrap();
    drain(&mut p);
    // One connect still in progress.
    queued(p.lease(&B, None, t(3), None));
    let cb = connects(&drain(&mut p));
    assert_eq!(cb.len(), 1);
    assert!(
        p.poll_timeout().is_none_or(|d| d == Instant::MAX),
        "every timer saturates: nothing is due before the end of time: {:?}",
        p.poll_timeout()
    );
    p.handle_timeout(Instant::MAX);
    assert_eq!(drain(&mut p), vec![], "nothing fires at Instant::MAX");
    p.check_invariants().unwrap();
    assert_eq!(p.stats().idle, 1);
    assert_eq!(p.stats().connecting, 1);
}

/// "Never" for the connection that has no lifetime at all: at `Instant::MAX`
/// it is still a healthy idle connection (the core's own invariants agree).
#[test]
fn idle_connection_without_lifetime_is_not_expired_at_instant_max() {
    let mut storage: Storage<Key, 2, 2, 4, 4> = Storage::new();
    let mut p = Pool::new(&mut storage, quiet(2, 2)).unwrap();
    let w = queued(p.lease(&A, None, t(0), None));
    let c = connects(&drain(&mut p));
    p.connected(c[0], 1, t(1)).unwrap();
    let l = granted(&drain(&mut p), w).unwrap();
    p.release(l, Release::REUSE, t(2)).unwrap();
    drain(&mut p);
    assert!(p.poll_timeout().is_none_or(|d| d == Instant::MAX));
    p.handle_timeout(Instant::MAX);
    assert_eq!(drain(&mut p), vec![]);
    assert_eq!(
        p.check_invariants()
            .map_err(|v| format!("invariant {}: {}", v.invariant, v.what)),
        Ok(())
    );
    // And it is handed out again.
    let again = p.lease(&A, None, Instant::MAX, None);
    assert!(
        matches!(again, Ok(LeaseOutcome::Granted(l)) if l.conn() == c[0]),
        "the idle connection is reused at Instant::MAX: {again:?}"
    );
}

/// Found by the churn property on the rules as fixed for issue 10 (not one of
/// the holes): with `preconnect_ratio > 1` and an idle timeout, a held
/// lease keeps one preconnected spare connection; the idle timeout closes the
/// spare and the same settle preconnects it again: one connect and one close
/// per idle timeout, for as long as the lease is held (the pattern the rules
/// now stop for `min_idle` by keeping the connection). Expected: churn stops.
#[test]
fn preconnect_with_idle_timeout_does_not_churn() {
    let mut storage: Storage<Key, 4, 2, 4, 4> = Storage::new();
    let cfg = Config {
        preconnect_ratio: 2.0,
        idle_timeout: Some(Duration::from_secs(1)),
        ..quiet(4, 4)
    };
    let mut p = Pool::new(&mut storage, cfg).unwrap();
    let w = queued(p.lease(&A, None, t(0), None));
    let seen = answer_all(&mut p, t(1), 10);
    assert!(
        granted(&seen, w).is_some(),
        "the lease is served (and held)"
    );
    // No new demand: time runs from deadline to deadline, connects answered.
    let (mut n_connects, mut n_closes, mut rounds) = (0, 0, 0);
    while let Some(d) = p.poll_timeout() {
        if rounds == 20 {
            break;
        }
        rounds += 1;
        p.handle_timeout(d);
        let seen = answer_all(&mut p, d, 10);
        n_connects += connects(&seen).len();
        n_closes += closes(&seen).len();
    }
    assert!(
        n_connects + n_closes <= 4,
        "one lease held, no new demand: {n_connects} connects and {n_closes} closes over {rounds} idle timeouts ({:?})",
        p.counters()
    );
}

/// "Never" for the inactivity check (found by the never property on the rules
/// as fixed for issue 10): at `now == Instant::MAX`, `updated +
/// validate_after_inactivity` saturates there, so a connection released at
/// `Instant::MAX` has been inactive for no time at all and is never due for a
/// validation (time does not pass any more).
#[test]
fn validate_after_inactivity_is_never_due_at_instant_max() {
    let mut storage: Storage<Key, 2, 2, 4, 4> = Storage::new();
    let cfg = Config {
        validate_after_inactivity: Some(Duration::from_millis(100)),
        ..quiet(2, 2)
    };
    let mut p = Pool::new(&mut storage, cfg).unwrap();
    let end = Instant::MAX;
    p.handle_timeout(end);
    let w = queued(p.lease(&A, None, end, None));
    let c = connects(&drain(&mut p));
    p.connected(c[0], 1, end).unwrap();
    let l = granted(&drain(&mut p), w).expect("granted");
    p.release(l, Release::REUSE, end).unwrap();
    drain(&mut p);
    let again = p.lease(&A, None, end, None);
    let seen = drain(&mut p);
    assert!(
        matches!(again, Ok(LeaseOutcome::Granted(l)) if l.conn() == c[0]),
        "released at Instant::MAX, leased again at Instant::MAX: inactive for no time, no validation due: {again:?}, actions {seen:?}"
    );
}

// ---- an eviction is for another route (props.rs `eviction`, `eviction-churn`) ----

/// Leases a new connection of `key` (connect, connected, granted).
fn open(p: &mut Pool<'_, Key>, key: Key, now: Instant) -> Lease {
    let w = queued(p.lease(&key, None, now, None));
    let c = connects(&drain(p));
    assert_eq!(c.len(), 1, "one connect for route {key}");
    p.connected(c[0], 1, now).unwrap();
    granted(&drain(p), w).expect("granted on its new connection")
}

/// The `eviction` properties over the actions of one input, with untagged
/// waiters: each `Close(v, Evicted)` is followed by a `Connect`, and the
/// first one after it is for another route than `v`'s (`route_of`: the
/// route of every connection made so far, updated from `actions`).
fn evictions_make_room_for_another_route(
    p: &Pool<'_, Key>,
    route_of: &mut std::collections::HashMap<ConnId, Key>,
    actions: &[Action<Key>],
) -> Result<(), String> {
    for a in actions {
        if let Action::Connect { conn, route } = a {
            route_of.insert(*conn, *p.route_key(*route).expect("a live route"));
        }
    }
    for (i, a) in actions.iter().enumerate() {
        let Action::Close {
            conn,
            reason: CloseReason::Evicted,
        } = a
        else {
            continue;
        };
        let evicted = route_of[conn];
        let next = actions[i + 1..].iter().find_map(|a| match a {
            Action::Connect { conn, .. } => Some(route_of[conn]),
            _ => None,
        });
        match next {
            None => return Err(format!("Close({conn:?}, Evicted) followed by no Connect: {actions:?}")),
            Some(k) if k == evicted => {
                return Err(format!(
                    "Close({conn:?}, Evicted) of route {evicted}'s connection, then a Connect for route {k} again: {actions:?}"
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Found by the mutation-testing engineer, fixed in 464f05a (SEMANTICS §3.7a:
/// a blocked route wants capacity only under its own route limit); the
/// `eviction` property of `props.rs` catches it. Route B waits for the total,
/// then its limit is lowered to the one connection it has: it can no longer
/// use a connection an eviction would free. A release on A must then serve
/// A's waiter; the rules closed the released connection `Evicted` "for" B and
/// reconnected for A's waiter instead (an eviction for nobody, and a
/// reconnect for the route that lost the connection).
#[test]
fn no_eviction_for_a_route_its_own_limit_holds_back() {
    let mut storage: Storage<Key, 8, 2, 8, 8> = Storage::new();
    let mut p = Pool::new(&mut storage, quiet(4, 4)).unwrap();
    let mut route_of = std::collections::HashMap::new();
    let a1 = open(&mut p, A, t(0));
    let _a2 = open(&mut p, A, t(0));
    let _a3 = open(&mut p, A, t(0));
    let _b1 = open(&mut p, B, t(0));
    for l in [a1, _a2, _a3] {
        route_of.insert(l.conn(), A);
    }
    route_of.insert(_b1.conn(), B);
    // B waits: the total binds, B is under its limit (4).
    let _wb = queued(p.lease(&B, None, t(1), None));
    assert_eq!(drain(&mut p), vec![], "B waits for the total");
    // B's limit lowered to what it has.
    let one = RouteConfig {
        max_connections: Some(1),
        ..RouteConfig::default()
    };
    p.set_route_config(&B, one, t(2)).unwrap();
    assert_eq!(drain(&mut p), vec![]);
    // A waits too, younger than B's waiter.
    let wa = queued(p.lease(&A, None, t(3), None));
    assert_eq!(drain(&mut p), vec![]);
    let c = a1.conn();
    p.release(a1, Release::REUSE, t(4)).unwrap();
    let v = drain(&mut p);
    evictions_make_room_for_another_route(&p, &mut route_of, &v).unwrap();
    assert_eq!(
        granted(&v, wa).map(|l| l.conn()),
        Some(c),
        "A's waiter reuses the released connection: {v:?}"
    );
}

/// Found by the `eviction-churn` property (props.rs); fixed by §3.1 step 2
/// (`unblock` passes over the settling route when the blocked routes go
/// first) and §3.7a (the route yielded to goes to the front of the blocked
/// list). Before: the capacity a release yields (§3.7a) went to the routes
/// on the blocked list in order, and the releasing route could be first on
/// it. `max_total` 1: A is blocked (a second waiter while its only
/// connection connects), then B. A's older waiter leaves; A's release yields
/// to B (no connection, an older waiter than A's), the connection closes
/// `Evicted`, and `unblock` then serves A, first on the list: a reconnect for
/// the route whose connection A's waiter could have reused, and B still waits.
#[test]
fn yielded_capacity_does_not_go_back_to_the_releasing_route_first_on_the_blocked_list() {
    let mut storage: Storage<Key, 4, 2, 8, 4> = Storage::new();
    let mut p = Pool::new(&mut storage, quiet(1, 2)).unwrap();
    let mut route_of = std::collections::HashMap::new();
    let w1 = queued(p.lease(&A, None, t(0), None));
    let c = connects(&drain(&mut p));
    route_of.insert(c[0], A);
    // A's second waiter: A has demand beyond its connect, the total binds: A
    // is blocked. Then B, blocked too (behind A).
    let w2 = queued(p.lease(&A, None, t(0), None));
    let _wb = queued(p.lease(&B, None, t(0), None));
    let _w3 = queued(p.lease(&A, None, t(0), None));
    assert_eq!(drain(&mut p), vec![]);
    p.cancel(w2, CancelPolicy::Default, t(1)).unwrap();
    p.connected(c[0], 1, t(1)).unwrap();
    let l1 = granted(&drain(&mut p), w1).expect("w1 granted");
    // B's waiter is now older than every waiter of A.
    p.release(l1, Release::REUSE, t(2)).unwrap();
    let v = drain(&mut p);
    evictions_make_room_for_another_route(&p, &mut route_of, &v).unwrap();
}

/// Found by the `eviction-churn` property (props.rs); fixed by §3.7a (the
/// route yielded to goes to the front of the blocked list, so §3.1 step 2
/// compares with its waiter, older than every waiter of the releasing route).
/// Before: after a release yielded (to a short route with an older waiter),
/// the releasing route connected first if its oldest waiter was older than
/// that of the *first* blocked route that wants capacity, which need not be
/// the short route yielded to. A and B hold two connections each
/// (`max_total` 4), C has none; the blocked list is B (whose waiter is
/// younger than A's), C, A. A's release yields to C, then A reconnects.
#[test]
fn yielded_capacity_does_not_go_back_to_the_releasing_route_with_an_older_waiter() {
    const C: Key = 2;
    let mut storage: Storage<Key, 8, 4, 8, 8> = Storage::new();
    let mut p = Pool::new(&mut storage, quiet(4, 4)).unwrap();
    let mut route_of = std::collections::HashMap::new();
    let a1 = open(&mut p, A, t(0));
    let a2 = open(&mut p, A, t(0));
    let b1 = open(&mut p, B, t(0));
    let b2 = open(&mut p, B, t(0));
    for (l, k) in [(a1, A), (a2, A), (b1, B), (b2, B)] {
        route_of.insert(l.conn(), k);
    }
    // B blocks first (its waiter leaves later), then C, then A.
    let wb0 = queued(p.lease(&B, None, t(1), None));
    let _wc = queued(p.lease(&C, None, t(1), None));
    let _wa = queued(p.lease(&A, None, t(1), None));
    p.cancel(wb0, CancelPolicy::Default, t(1)).unwrap();
    // B's new waiter is the youngest; B still wants capacity.
    let _wb = queued(p.lease(&B, None, t(1), None));
    assert_eq!(drain(&mut p), vec![]);
    p.release(a1, Release::REUSE, t(2)).unwrap();
    let v = drain(&mut p);
    evictions_make_room_for_another_route(&p, &mut route_of, &v).unwrap();
}
