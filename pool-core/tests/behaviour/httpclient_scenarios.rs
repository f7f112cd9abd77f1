//! Apache HttpClient 5's StrictConnPool, Go's Transport and OkHttp
//! (pool-semantics.md §B-§D), reproduced through configuration.

use crate::support::*;
use wharf_core::*;

#[test]
fn httpclient_full_total_closes_exactly_one_idle_connection_from_the_global_available_list() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 3,
            max_per_route: 3,
            ..cfg()
        },
    );
    let ls: Vec<Lease> = (0..3).map(|_| open(&mut p, A, t(0))).collect();
    for (i, l) in ls.iter().enumerate() {
        put_back(&mut p, *l, t(10 * (i as u64 + 1)));
    }
    let w = queued(p.lease(&B, None, t(40), None));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(ls[0].conn(), CloseReason::Evicted));
    let cb = connect_of(&v[1]);
    assert_eq!(p.route_key(route(&p, cb)), Some(&B));
    let s = p.stats();
    assert_eq!((s.connections, s.idle), (3, 2));
    let v = connect(&mut p, cb, 1, t(41));
    single_grant(&v, w);
}

#[test]
fn httpclient_state_matching_prefers_same_state_then_null_state() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    put_back(&mut p, l1, t(10));
    p.release(l2, tagged(T1), t(20)).unwrap();
    quiet(&mut p);
    // Ready list: [c2 (T1), c1 (null)]. A T2 request takes the null-state one.
    assert_eq!(
        granted(p.lease(&A, Some(T2), t(30), None)).conn(),
        l1.conn()
    );
    assert_eq!(
        granted(p.lease(&A, Some(T1), t(31), None)).conn(),
        l2.conn()
    );
    quiet(&mut p);
}

#[test]
fn httpclient_lazy_set_max_per_route_serves_waiters_within_the_new_limit() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    let w = lease_wait(&mut p, A, None, t(1));
    let one = RouteConfig {
        max_connections: Some(1),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, one, t(2)).unwrap();
    quiet(&mut p);
    // Over the lowered limit: the released connection closes instead of
    // serving the waiter; the last one serves it.
    let v = release(&mut p, l1, Release::REUSE, t(3));
    assert_eq!(v, vec![close(l1.conn(), CloseReason::RouteLimit)]);
    let v = release(&mut p, l2, Release::REUSE, t(4));
    assert_eq!(single_grant(&v, w).conn(), l2.conn());
}

#[test]
fn httpclient_update_expiry_with_keep_alive_is_bounded_by_validity() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_lifetime: Some(ms(2000)),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    p.release(l, keep_alive(ms(60_000)), t(100)).unwrap();
    quiet(&mut p);
    // Still valid before 2000 ms.
    let l = granted(p.lease(&A, None, t(1999), None));
    quiet(&mut p);
    put_back(&mut p, l, t(1999));
    // At validity it is not leased again.
    let _w = queued(p.lease(&A, None, t(2000), None));
    let v = acts(&mut p);
    assert_eq!(v[0], close(l.conn(), CloseReason::Expired));
    assert!(matches!(v[1], Action::Connect { .. }), "{v:?}");
}

#[test]
fn go_max_idle_conns_per_host_closes_the_returning_connection() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 3,
            max_idle_per_route: Some(2),
            ..cfg()
        },
    );
    let ls: Vec<Lease> = (0..3).map(|_| open(&mut p, A, t(0))).collect();
    put_back(&mut p, ls[0], t(1));
    put_back(&mut p, ls[1], t(2));
    let v = release(&mut p, ls[2], Release::REUSE, t(3));
    assert_eq!(v, vec![close(ls[2].conn(), CloseReason::IdleLimit)]);
    assert_eq!(p.route_stats(&A).unwrap().idle, 2);
}

#[test]
fn go_dial_completing_after_its_requester_was_served_hands_the_connection_to_the_next_waiter() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 3,
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    // w1 waits and dials c2; then l comes back and serves w1 first.
    let (w1, c2) = lease_connect(&mut p, A, t(1));
    let v = release(&mut p, l, Release::REUSE, t(2));
    let l1 = single_grant(&v, w1);
    assert_eq!(l1.conn(), l.conn());
    // A second request waits for the dial already in progress.
    let w2 = lease_wait(&mut p, A, None, t(3));
    // c2 completes: it serves w2 (a different request).
    let v = connect(&mut p, c2, 1, t(4));
    assert_eq!(single_grant(&v, w2).conn(), c2);
    assert_eq!(p.counters().connects, 2);
}

#[test]
fn okhttp_style_max_idle_closes_the_oldest_idle_connection() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 3,
            max_idle: Some(2),
            ..cfg()
        },
    );
    let ls: Vec<Lease> = (0..3).map(|_| open(&mut p, A, t(0))).collect();
    put_back(&mut p, ls[0], t(1));
    put_back(&mut p, ls[1], t(2));
    let v = release(&mut p, ls[2], Release::REUSE, t(3));
    assert_eq!(v, vec![close(ls[0].conn(), CloseReason::IdleLimit)]);
    assert_eq!(p.stats().idle, 2);
}
