//! §7 drain (DrainExisting, DrainAndDelete, drain all) and §3.6 route idle
//! notices.

use crate::support::*;
use wharf_core::*;

#[test]
fn drain_existing_closes_idle_and_connecting_and_drains_busy_connections() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 3,
            ..cfg()
        },
    );
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    let (w3, c3) = lease_connect(&mut p, A, t(0));
    p.cancel(w3, CancelPolicy::Default, t(1)).unwrap();
    quiet(&mut p);
    put_back(&mut p, l1, t(2));
    // c1 idle, c2 leased, c3 connecting, nothing queued.
    p.drain(DrainScope::Route(&A), DrainMode::DrainExisting, t(3));
    assert_eq!(
        acts(&mut p),
        vec![
            close(l1.conn(), CloseReason::Drained),
            close(c3, CloseReason::Drained)
        ]
    );
    let rs = p.route_stats(&A).unwrap();
    assert_eq!(
        (rs.connections, rs.idle, rs.connecting, rs.leased),
        (1, 0, 0, 1)
    );

    // New leases get new connections; the route is not deleted.
    let (w4, c4) = lease_connect(&mut p, A, t(4));
    assert_ne!(c4, l2.conn());
    let v = release(&mut p, l2, Release::REUSE, t(5));
    assert_eq!(v, vec![close(l2.conn(), CloseReason::Drained)]);
    let v = connect(&mut p, c4, 1, t(6));
    assert_eq!(single_grant(&v, w4).conn(), c4);
    assert_eq!(p.counters().closes_for(CloseReason::Drained), 3);
}

#[test]
fn drain_existing_keeps_connecting_connections_while_requests_wait() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    p.drain(DrainScope::Route(&A), DrainMode::DrainExisting, t(1));
    quiet(&mut p);
    assert_eq!(p.stats().connecting, 1);
    let v = connect(&mut p, c, 1, t(2));
    assert_eq!(single_grant(&v, w).conn(), c);
}

#[test]
fn drain_existing_only_touches_the_route_in_scope() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let la = open(&mut p, A, t(0));
    let lb = open(&mut p, B, t(0));
    let ra = route(&p, la.conn());
    put_back(&mut p, la, t(1));
    put_back(&mut p, lb, t(1));
    p.drain(DrainScope::Route(&A), DrainMode::DrainExisting, t(2));
    assert_eq!(
        acts(&mut p),
        vec![close(la.conn(), CloseReason::Drained), route_idle(ra, A)]
    );
    assert_eq!(granted(p.lease(&B, None, t(3), None)).conn(), lb.conn());
    quiet(&mut p);
}

#[test]
fn drain_and_delete_refuses_new_leases_and_frees_the_route_when_empty() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    let ra = route(&p, l1.conn());
    put_back(&mut p, l2, t(1));
    p.drain(DrainScope::Route(&A), DrainMode::DrainAndDelete, t(2));
    assert_eq!(acts(&mut p), vec![close(l2.conn(), CloseReason::Drained)]);
    assert_eq!(refused(p.lease(&A, None, t(3), None)), LeaseError::Draining);
    let one = RouteConfig {
        max_connections: Some(1),
        ..RouteConfig::default()
    };
    assert_eq!(p.set_route_config(&A, one, t(3)), Err(RouteError::Draining));
    quiet(&mut p);

    // The busy connection closes when it goes idle; then the route is idle
    // and its slot freed.
    let v = release(&mut p, l1, Release::REUSE, t(4));
    assert_eq!(
        v,
        vec![close(l1.conn(), CloseReason::Drained), route_idle(ra, A)]
    );
    assert_eq!(p.route_key(ra), None);
    assert_eq!(p.route_stats(&A), None);
    assert_eq!(p.stats().routes, 0);
    // The key can be used again: a new route.
    let (_w, c) = lease_connect(&mut p, A, t(5));
    assert_ne!(route(&p, c), ra);
}

#[test]
fn drain_and_delete_creates_no_connection_and_fails_waiters_when_none_is_left() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    let w = lease_wait(&mut p, A, None, t(1));
    p.drain(DrainScope::Route(&A), DrainMode::DrainAndDelete, t(2));
    quiet(&mut p);
    let v = release(&mut p, l, Release::Discard, t(3));
    assert_eq!(
        v,
        vec![
            close(l.conn(), CloseReason::Discarded),
            failed(w, FailReason::Draining),
            route_idle(ra, A)
        ]
    );
    assert_eq!(p.counters().connects, 1);
    assert_eq!(p.stats().routes, 0);
}

#[test]
fn drain_all_and_delete_closes_the_pool() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let la = open(&mut p, A, t(0));
    let lb = open(&mut p, B, t(0));
    let (ra, rb) = (route(&p, la.conn()), route(&p, lb.conn()));
    put_back(&mut p, la, t(1));
    assert!(!p.is_closed());
    p.drain(DrainScope::All, DrainMode::DrainAndDelete, t(2));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(la.conn(), CloseReason::Drained));
    assert_eq!(v[1], route_idle(ra, A));
    assert!(p.is_closed());
    assert_eq!(refused(p.lease(&A, None, t(3), None)), LeaseError::Closed);
    assert_eq!(refused(p.lease(&C, None, t(3), None)), LeaseError::Closed);
    quiet(&mut p);
    let v = release(&mut p, lb, Release::REUSE, t(4));
    assert_eq!(
        v,
        vec![close(lb.conn(), CloseReason::Drained), route_idle(rb, B)]
    );
    let s = p.stats();
    assert_eq!((s.connections, s.routes, s.pending), (0, 0, 0));
}

#[test]
fn route_idle_is_emitted_once_when_a_route_becomes_empty() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    // Configured: the route keeps its slot after RouteIdle.
    let two = RouteConfig {
        max_connections: Some(2),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, two, t(0)).unwrap();
    quiet(&mut p);
    let l = open(&mut p, A, t(1));
    let ra = route(&p, l.conn());
    let v = release(&mut p, l, Release::Discard, t(2));
    assert_eq!(
        v,
        vec![close(l.conn(), CloseReason::Discarded), route_idle(ra, A)]
    );
    assert_eq!(p.route_key(ra), Some(&A));
    // Further inputs on the empty route give no second notice.
    p.set_route_config(&A, two, t(3)).unwrap();
    quiet(&mut p);
    assert_eq!(tick(&mut p, t(4)), vec![]);
    p.drain(DrainScope::Route(&A), DrainMode::DrainExisting, t(5));
    quiet(&mut p);
    // Used again and emptied again: one new notice.
    let l = open(&mut p, A, t(6));
    assert_eq!(route(&p, l.conn()), ra);
    let v = release(&mut p, l, Release::Discard, t(7));
    assert_eq!(
        v,
        vec![close(l.conn(), CloseReason::Discarded), route_idle(ra, A)]
    );
}

#[test]
fn route_created_by_configuration_alone_gets_no_idle_notice() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let one = RouteConfig {
        max_connections: Some(1),
        ..RouteConfig::default()
    };
    p.set_route_config(&B, one, t(0)).unwrap();
    quiet(&mut p);
    assert_eq!(p.stats().routes, 1);
    assert_eq!(p.route_stats(&B).unwrap().limit, 1);
    assert_eq!(tick(&mut p, t(1)), vec![]);
}

#[test]
fn unpolled_route_idle_is_withdrawn_when_the_route_is_used_again() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    put_back(&mut p, l, t(1));
    // The close queues Close + RouteIdle; a lease comes before they are polled.
    p.peer_closed(l.conn(), t(2)).unwrap();
    ok(&p);
    let _w = queued(p.lease(&A, None, t(2), None));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l.conn(), CloseReason::PeerClosed));
    let c2 = connect_of(&v[1]);
    assert_eq!(route(&p, c2), ra);
    assert_eq!(p.route_key(ra), Some(&A));
}

#[test]
fn drain_all_existing_closes_idle_connections_route_by_route_in_creation_order() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let lb = open(&mut p, B, t(0));
    let la = open(&mut p, A, t(0));
    let (ra, rb) = (route(&p, la.conn()), route(&p, lb.conn()));
    put_back(&mut p, la, t(1));
    put_back(&mut p, lb, t(2));
    p.drain(DrainScope::All, DrainMode::DrainExisting, t(3));
    let v = acts(&mut p);
    let closes: Vec<_> = v
        .iter()
        .filter(|a| matches!(a, Action::Close { .. }))
        .cloned()
        .collect();
    // B was created first.
    assert_eq!(
        closes,
        vec![
            close(lb.conn(), CloseReason::Drained),
            close(la.conn(), CloseReason::Drained)
        ]
    );
    assert_eq!(v.len(), 4, "{v:?}");
    assert!(
        v.contains(&route_idle(ra, A)) && v.contains(&route_idle(rb, B)),
        "{v:?}"
    );
    assert!(!p.is_closed());
}

#[test]
fn drain_and_delete_lets_a_connecting_connection_serve_queued_waiters() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    let ra = route(&p, c);
    p.drain(DrainScope::Route(&A), DrainMode::DrainAndDelete, t(1));
    quiet(&mut p);
    let v = connect(&mut p, c, 1, t(2));
    let l = single_grant(&v, w);
    let v = release(&mut p, l, Release::REUSE, t(3));
    assert_eq!(v, vec![close(c, CloseReason::Drained), route_idle(ra, A)]);
}

#[test]
fn drain_and_delete_frees_even_a_configured_route() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let one = RouteConfig {
        max_connections: Some(1),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, one, t(0)).unwrap();
    quiet(&mut p);
    let l = open(&mut p, A, t(1));
    let ra = route(&p, l.conn());
    p.drain(DrainScope::Route(&A), DrainMode::DrainAndDelete, t(2));
    quiet(&mut p);
    let v = release(&mut p, l, Release::REUSE, t(3));
    assert_eq!(
        v,
        vec![close(l.conn(), CloseReason::Drained), route_idle(ra, A)]
    );
    assert_eq!(p.route_key(ra), None);
    assert_eq!(p.route_stats(&A), None);
    // A new route for the key has the default limit again.
    let (_w, _c) = lease_connect(&mut p, A, t(4));
    assert_eq!(p.route_stats(&A).unwrap().limit, 2);
}
