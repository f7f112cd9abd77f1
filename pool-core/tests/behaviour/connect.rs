//! §6 connect results (failure purge, connect timeout), §7 peer close, stream
//! capacity (multiplexing) and `max_leases_per_conn`.

use crate::support::*;
use wharf_core::*;

#[test]
fn connect_failure_fails_all_queued_waiters_of_the_route() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            ..cfg()
        },
    );
    let (w1, c1) = lease_connect(&mut p, A, t(0));
    let w2 = lease_wait(&mut p, A, None, t(1));
    let w3 = lease_wait(&mut p, A, None, t(2));
    let (wb, cb) = lease_connect(&mut p, B, t(3));
    let ra = route(&p, c1);

    p.connect_failed(c1, ConnectFailure::Remote, t(5)).unwrap();
    let why = FailReason::ConnectFailed(ConnectFailure::Remote);
    assert_eq!(
        acts(&mut p),
        vec![
            failed(w1, why),
            failed(w2, why),
            failed(w3, why),
            route_idle(ra, A)
        ]
    );
    let n = *p.counters();
    assert_eq!(n.connect_failures_for(ConnectFailure::Remote), 1);
    assert_eq!(n.connect_failures, [0, 0, 1]);
    assert_eq!(
        n.closes,
        [0; CloseReason::ALL.len()],
        "a failed connect vanishes without Close"
    );
    assert_eq!(n.connected, 0);
    // The other route is untouched.
    assert_eq!(p.stats().pending, 1);
    assert_eq!(p.stats().connections, 1);
    let v = connect(&mut p, cb, 1, t(6));
    single_grant(&v, wb);
    assert_eq!(p.connected(c1, 1, t(7)), Err(ConnError::StaleConn));
    ok(&p);
}

#[test]
fn connect_failure_reason_is_typed_local() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    let ra = route(&p, c);
    p.connect_failed(c, ConnectFailure::Local, t(1)).unwrap();
    assert_eq!(
        acts(&mut p),
        vec![
            failed(w, FailReason::ConnectFailed(ConnectFailure::Local)),
            route_idle(ra, A)
        ]
    );
    assert_eq!(p.counters().connect_failures, [0, 1, 0]);
}

#[test]
fn demand_connect_after_a_failure_is_not_delayed_by_the_retry_backoff() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    // Per-route configuration keeps the route (and its backoff) alive.
    let two = RouteConfig {
        max_connections: Some(2),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, two, t(0)).unwrap();
    quiet(&mut p);
    let (w, c) = lease_connect(&mut p, A, t(0));
    let ra = route(&p, c);
    p.connect_failed(c, ConnectFailure::Remote, t(10)).unwrap();
    assert_eq!(
        acts(&mut p),
        vec![
            failed(w, FailReason::ConnectFailed(ConnectFailure::Remote)),
            route_idle(ra, A)
        ]
    );
    assert_eq!(
        p.route_key(ra),
        Some(&A),
        "a configured route keeps its slot"
    );
    // Within the backoff (1 s) a waiting lease still connects at once.
    let (w2, c2) = lease_connect(&mut p, A, t(20));
    assert_eq!(route(&p, c2), ra);
    let v = connect(&mut p, c2, 1, t(30));
    single_grant(&v, w2);
}

#[test]
fn connect_timeout_closes_with_connect_timeout_and_fails_waiters_with_timeout() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            connect_timeout: Some(ms(100)),
            ..cfg()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let ra = route(&p, c);
    assert_eq!(p.poll_timeout(), Some(t(100)));
    assert_eq!(tick(&mut p, t(99)), vec![]);
    assert_eq!(
        tick(&mut p, t(100)),
        vec![
            close(c, CloseReason::ConnectTimeout),
            failed(w, FailReason::ConnectFailed(ConnectFailure::Timeout)),
            route_idle(ra, A),
        ]
    );
    let n = *p.counters();
    assert_eq!(n.connect_failures, [1, 0, 0]);
    assert_eq!(n.closes_for(CloseReason::ConnectTimeout), 1);
    assert_eq!(p.stats().connections, 0);
    assert_eq!(p.connected(c, 1, t(101)), Err(ConnError::StaleConn));
    ok(&p);
}

#[test]
fn completed_connect_cancels_its_connect_timeout() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            connect_timeout: Some(ms(100)),
            ..cfg()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c, 1, t(50));
    single_grant(&v, w);
    assert_eq!(tick(&mut p, t(100)), vec![]);
    assert_eq!(tick(&mut p, t(10_000)), vec![]);
    assert_eq!(p.counters().connect_failures, [0, 0, 0]);
    assert_eq!(p.stats().leased, 1);
}

#[test]
fn connected_with_zero_capacity_is_refused() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    assert_eq!(p.connected(c, 0, t(1)), Err(ConnError::ZeroCapacity));
    quiet(&mut p);
    assert_eq!(p.stats().connecting, 1);
    let v = connect(&mut p, c, 1, t(2));
    single_grant(&v, w);
}

#[test]
fn peer_close_of_an_idle_connection_closes_it() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    put_back(&mut p, l, t(1));
    p.peer_closed(l.conn(), t(2)).unwrap();
    assert_eq!(
        acts(&mut p),
        vec![close(l.conn(), CloseReason::PeerClosed), route_idle(ra, A)]
    );
    assert_eq!(p.counters().closes_for(CloseReason::PeerClosed), 1);
    assert_eq!(p.stats().connections, 0);
}

#[test]
fn peer_close_of_a_busy_connection_drains_it_until_release() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    p.peer_closed(l.conn(), t(1)).unwrap();
    quiet(&mut p);
    assert_eq!(p.stats().connections, 1);
    // Never handed out again: a new lease gets a new connection.
    let (_w, c2) = lease_connect(&mut p, A, t(2));
    assert_ne!(c2, l.conn());
    let v = release(&mut p, l, Release::REUSE, t(3));
    assert_eq!(v, vec![close(l.conn(), CloseReason::PeerClosed)]);
    assert_eq!(p.counters().closes_for(CloseReason::PeerClosed), 1);
}

#[test]
fn peer_close_of_a_connecting_connection_is_wrong_state() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    assert_eq!(p.peer_closed(c, t(1)), Err(ConnError::WrongState));
    quiet(&mut p);
    let v = connect(&mut p, c, 1, t(2));
    single_grant(&v, w);
}

#[test]
fn multiplexed_connection_serves_up_to_its_capacity() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            ..cfg()
        },
    );
    let (w1, c) = lease_connect(&mut p, A, t(0));
    let w2 = lease_wait(&mut p, A, None, t(0));
    let w3 = lease_wait(&mut p, A, None, t(0));
    let v = connect(&mut p, c, 2, t(1));
    assert_eq!(v.len(), 2, "{v:?}");
    let (g1, l1) = grant_of(&v[0]);
    let (g2, l2) = grant_of(&v[1]);
    assert_eq!((g1, g2), (w1, w2));
    assert_eq!((l1.conn(), l2.conn()), (c, c));
    assert_ne!(l1.id(), l2.id());
    assert_eq!(
        (p.stats().leased, p.stats().pending, p.stats().idle),
        (2, 1, 0)
    );

    let v = release(&mut p, l1, Release::REUSE, t(2));
    assert_eq!(single_grant(&v, w3).conn(), c);
    // With spare capacity a new lease is granted at once on the same connection.
    put_back(&mut p, l2, t(3));
    assert_eq!(granted(p.lease(&A, None, t(4), None)).conn(), c);
    quiet(&mut p);
    assert_eq!(p.stats().leased, 2);
}

#[test]
fn max_leases_per_conn_drains_the_connection_and_closes_it_when_its_leases_end() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_leases_per_conn: Some(2),
            ..cfg()
        },
    );
    let (w1, c1) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c1, 4, t(1));
    let l1 = single_grant(&v, w1);
    // The second lease uses the last one: c1 starts draining.
    let l2 = granted(p.lease(&A, None, t(2), None));
    quiet(&mut p);
    assert_eq!(l2.conn(), c1);
    // Not handed out again although it has spare capacity.
    let (_w3, c2) = lease_connect(&mut p, A, t(3));
    assert_ne!(c2, c1);
    put_back(&mut p, l1, t(4));
    let v = release(&mut p, l2, Release::REUSE, t(5));
    assert_eq!(v, vec![close(c1, CloseReason::MaxLeases)]);
    assert_eq!(p.counters().closes_for(CloseReason::MaxLeases), 1);
}

#[test]
fn connect_failure_frees_capacity_for_a_blocked_route() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 1,
            ..cfg()
        },
    );
    let (wa, ca) = lease_connect(&mut p, A, t(0));
    let ra = route(&p, ca);
    // B is blocked by max_total (nothing idle to evict).
    let wb = lease_wait(&mut p, B, None, t(1));
    p.connect_failed(ca, ConnectFailure::Remote, t(2)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(
        v[0],
        failed(wa, FailReason::ConnectFailed(ConnectFailure::Remote))
    );
    let cb = connect_of(&v[1]);
    assert_eq!(p.route_key(route(&p, cb)), Some(&B));
    assert_eq!(v[2], route_idle(ra, A));
    let v = connect(&mut p, cb, 1, t(3));
    single_grant(&v, wb);
}

#[test]
fn connect_failure_leaves_validating_waiters_alone() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            validate_after_inactivity: Some(ms(1000)),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    let w1 = queued(p.lease(&A, None, t(5000), None));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l.conn() }]);
    let (w2, c2) = lease_connect(&mut p, A, t(5001));
    p.connect_failed(c2, ConnectFailure::Local, t(5002))
        .unwrap();
    assert_eq!(
        acts(&mut p),
        vec![failed(w2, FailReason::ConnectFailed(ConnectFailure::Local))]
    );
    assert_eq!(p.stats().pending, 1);
    p.validated(l.conn(), Validation::Alive, t(5003)).unwrap();
    let v = acts(&mut p);
    assert_eq!(single_grant(&v, w1).conn(), l.conn());
}

#[test]
fn close_of_a_connection_whose_connect_was_never_polled_vanishes_silently() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    // The Connect for w is queued but never polled.
    let w = queued(p.lease(&A, None, t(0), None));
    ok(&p);
    assert_eq!(p.stats().connecting, 1);
    // (0 queued + 0 active) * 1.0 <= 1 - 1 + 0: the connecting one is excess.
    p.cancel(w, CancelPolicy::CloseExcess, t(1)).unwrap();
    ok(&p);
    let s = p.stats();
    assert_eq!((s.connections, s.connecting, s.closing), (0, 0, 0));
    // Neither a Connect nor a Close is delivered; only the route's idle notice.
    let v = acts(&mut p);
    assert!(
        matches!(v[..], [Action::RouteIdle { key: "a", .. }]),
        "{v:?}"
    );
    assert_eq!(p.counters().connects, 1);
}

fn granted_to(v: &Acts, w: WaiterId) -> Lease {
    single_grant(v, w)
}

#[test]
fn set_capacity_raised_serves_the_waiting_lease() {
    // An HTTP/2 peer's SETTINGS raise MAX_CONCURRENT_STREAMS (§7).
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            ..cfg()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let first = granted_to(&connect(&mut p, c, 4, t(1)), w);
    let mut leases = vec![first];
    for _ in 0..3 {
        leases.push(granted(p.lease(&A, None, t(2), None)));
    }
    let fifth = queued(p.lease(&A, None, t(3), None));
    quiet(&mut p);
    p.set_capacity(c, 5, t(4)).unwrap();
    let l5 = granted_to(&acts(&mut p), fifth);
    assert_eq!(l5.conn(), c);
    assert_eq!(p.stats().leased, 5);
    ok(&p);
}

#[test]
fn set_capacity_lowered_takes_no_new_lease_until_back_under() {
    // Lowered from 4 to 1 while 3 leases are out: they stay; no new lease
    // until fewer than 1 is out.
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            ..cfg()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let l1 = granted_to(&connect(&mut p, c, 4, t(1)), w);
    let l2 = granted(p.lease(&A, None, t(2), None));
    let l3 = granted(p.lease(&A, None, t(2), None));
    p.set_capacity(c, 1, t(3)).unwrap();
    quiet(&mut p);
    assert_eq!(p.route_load(&A).spare, 0);
    let w4 = queued(p.lease(&A, None, t(4), None));
    quiet(&mut p);
    release(&mut p, l1, Release::REUSE, t(5));
    release(&mut p, l2, Release::REUSE, t(6));
    assert_eq!(p.stats().leased, 1, "still at the lowered capacity");
    let v = release(&mut p, l3, Release::REUSE, t(7));
    let l4 = granted_to(&v, w4);
    assert_eq!(l4.conn(), c);
    assert_eq!(p.stats().leased, 1);
    // And the capacity raised again gives spare streams back.
    p.set_capacity(c, 3, t(8)).unwrap();
    quiet(&mut p);
    assert_eq!(p.route_load(&A).spare, 2);
    ok(&p);
}

#[test]
fn set_capacity_refuses_bad_input_and_changes_nothing() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let w = queued(p.lease(&A, None, t(0), None));
    let v = acts(&mut p);
    let c = single_connect(&p, &v, A);
    assert_eq!(p.set_capacity(c, 2, t(1)), Err(ConnError::WrongState));
    let l = granted_to(&connect(&mut p, c, 2, t(1)), w);
    assert_eq!(p.set_capacity(c, 0, t(2)), Err(ConnError::ZeroCapacity));
    assert_eq!(p.route_load(&A).spare, 1);
    p.release(l, Release::Discard, t(3)).unwrap();
    let _ = acts(&mut p);
    assert_eq!(p.set_capacity(c, 2, t(4)), Err(ConnError::StaleConn));
    ok(&p);
}

#[test]
fn a_graceful_shutdown_drains_leases_finish_and_no_new_one_starts() {
    // HTTP/2 GOAWAY: the backend reports `peer_closed`; leases out finish, no
    // new lease gets the connection, it closes with the last one (§7).
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 2,
            ..cfg()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let l1 = granted_to(&connect(&mut p, c, 4, t(1)), w);
    let l2 = granted(p.lease(&A, None, t(2), None));
    p.peer_closed(c, t(3)).unwrap();
    quiet(&mut p);
    // A new lease does not get c: it waits for a new connection.
    let w3 = queued(p.lease(&A, None, t(4), None));
    let v = acts(&mut p);
    let c2 = single_connect(&p, &v, A);
    assert_ne!(c2, c);
    release(&mut p, l1, Release::REUSE, t(5));
    let v = release(&mut p, l2, Release::REUSE, t(6));
    assert_eq!(v, vec![close(c, CloseReason::PeerClosed)]);
    granted_to(&connect(&mut p, c2, 4, t(7)), w3);
    ok(&p);
}

#[test]
fn a_release_above_a_lowered_capacity_leaves_the_connection_busy() {
    // Found by the model: capacity 2 with two leases, lowered to 1, one lease
    // back: still full. The warm path took it for the last lease and counted
    // it idle (and a lease of another route then evicted it with a lease out).
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 1,
            ..cfg()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let l1 = single_grant(&connect(&mut p, c, 2, t(1)), w);
    let l2 = granted(p.lease(&A, None, t(2), None));
    p.set_capacity(c, 1, t(3)).unwrap();
    assert_eq!(release(&mut p, l1, Release::REUSE, t(4)), vec![]);
    assert_eq!((p.stats().idle, p.stats().leased), (0, 1));
    let _wb = queued(p.lease(&B, None, t(5), None));
    quiet(&mut p);
    release(&mut p, l2, Release::REUSE, t(6));
    ok(&p);
}
