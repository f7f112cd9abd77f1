//! §4.3 search with tag matching (HttpClient's state matching) and §3.3 step 1
//! route-limit shrink for a waiting lease whose tag no idle connection matches.

use crate::support::*;
use wharf_core::*;

#[test]
fn tagged_lease_takes_same_tag_first_then_untagged_and_skips_other_tags() {
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
    let l3 = open(&mut p, A, t(0));
    // Ready list (LIFO): [c3 tagged T1, c2 untagged, c1 tagged T2].
    p.release(l1, tagged(T2), t(10)).unwrap();
    quiet(&mut p);
    put_back(&mut p, l2, t(11));
    p.release(l3, tagged(T1), t(12)).unwrap();
    quiet(&mut p);

    // T2: the connection tagged T2 although it is last in the list.
    assert_eq!(
        granted(p.lease(&A, Some(T2), t(20), None)).conn(),
        l1.conn()
    );
    ok(&p);
    // T3: no connection tagged T3; the untagged one, skipping c3 (T1).
    assert_eq!(
        granted(p.lease(&A, Some(T3), t(21), None)).conn(),
        l2.conn()
    );
    ok(&p);
    // T1: its own connection.
    assert_eq!(
        granted(p.lease(&A, Some(T1), t(22), None)).conn(),
        l3.conn()
    );
    quiet(&mut p);
    assert_eq!(p.counters().reuses, 3);
}

#[test]
fn untagged_lease_takes_only_untagged_connections() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l1 = open(&mut p, A, t(0));
    p.release(l1, tagged(T1), t(10)).unwrap();
    quiet(&mut p);
    // The only idle connection is tagged: the untagged lease waits for a new one
    // (the route is under its limit, so nothing is closed).
    let (w, c2) = lease_connect(&mut p, A, t(11));
    assert_ne!(c2, l1.conn());
    assert_eq!(p.stats().idle, 1);
    let v = connect(&mut p, c2, 1, t(12));
    assert_eq!(single_grant(&v, w).conn(), c2);
    // The tagged connection is still there for a T1 lease.
    assert_eq!(
        granted(p.lease(&A, Some(T1), t(13), None)).conn(),
        l1.conn()
    );
    quiet(&mut p);
}

#[test]
fn release_with_tag_then_untagged_release_clears_the_tag() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l1 = open(&mut p, A, t(0));
    p.release(l1, tagged(T1), t(10)).unwrap();
    quiet(&mut p);
    let l = granted(p.lease(&A, Some(T1), t(11), None));
    put_back(&mut p, l, t(12));
    // Untagged again: an untagged lease takes it at once.
    assert_eq!(granted(p.lease(&A, None, t(13), None)).conn(), l1.conn());
    quiet(&mut p);
}

#[test]
fn route_limit_closes_mismatched_idle_connections_from_the_back_for_a_waiting_lease() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    p.release(l1, tagged(T1), t(10)).unwrap();
    quiet(&mut p);
    p.release(l2, tagged(T2), t(20)).unwrap();
    quiet(&mut p);
    // Ready list (LIFO): [c2 (T2), c1 (T1)]; the route is at its limit of 2.
    let w = queued(p.lease(&A, Some(T3), t(30), None));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l1.conn(), CloseReason::RouteLimit));
    let c3 = connect_of(&v[1]);
    assert_eq!(p.route_of(c3), p.route_of(l2.conn()));
    assert_eq!(p.counters().closes_for(CloseReason::RouteLimit), 1);
    assert_eq!(p.counters().closes_for(CloseReason::Evicted), 0);
    let rs = p.route_stats(&A).unwrap();
    assert_eq!(
        (rs.connections, rs.idle, rs.connecting, rs.pending),
        (2, 1, 1, 1)
    );

    let v = connect(&mut p, c3, 1, t(31));
    assert_eq!(single_grant(&v, w).conn(), c3);
    // c2 (T2) survived.
    assert_eq!(
        granted(p.lease(&A, Some(T2), t(32), None)).conn(),
        l2.conn()
    );
    quiet(&mut p);
}

#[test]
fn waiting_lease_under_the_route_limit_does_not_close_mismatched_connections() {
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
    p.release(l1, tagged(T1), t(10)).unwrap();
    p.release(l2, tagged(T2), t(20)).unwrap();
    quiet(&mut p);
    let (_, c3) = lease_connect(&mut p, A, t(30));
    assert!(c3 != l1.conn() && c3 != l2.conn());
    assert_eq!(p.counters().closes_for(CloseReason::RouteLimit), 0);
    assert_eq!(p.stats().idle, 2);
}

#[test]
fn route_limit_shrink_takes_the_back_of_the_ready_list_under_fifo() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            reuse: ReusePolicy::Fifo,
            ..cfg()
        },
    );
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    p.release(l1, tagged(T1), t(10)).unwrap();
    p.release(l2, tagged(T2), t(20)).unwrap();
    quiet(&mut p);
    // Ready list (FIFO): [c1 (T1), c2 (T2)]: the back is c2.
    let _w = queued(p.lease(&A, Some(T3), t(30), None));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l2.conn(), CloseReason::RouteLimit));
    connect_of(&v[1]);
    assert_eq!(
        granted(p.lease(&A, Some(T1), t(31), None)).conn(),
        l1.conn()
    );
    quiet(&mut p);
}

#[test]
fn tagged_waiter_is_served_by_a_fresh_untagged_connection() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let w = queued(p.lease(&A, Some(T1), t(0), None));
    let v = acts(&mut p);
    let c = single_connect(&p, &v, A);
    let v = connect(&mut p, c, 1, t(1));
    assert_eq!(single_grant(&v, w).conn(), c);
}

fn strict() -> Config {
    Config {
        strict_tags: true,
        max_per_route: 2,
        ..cfg()
    }
}

#[test]
fn strict_tags_never_serve_another_identity_nor_an_untagged_connection() {
    // Issue 16: identity fixed at connect. Prefer mode would hand an untagged
    // (or T1's, once released untagged) connection to a T2 lease.
    let mut st = Store::new();
    let mut p = pool(&mut st, strict());
    // An untagged lease connects untagged.
    let (w0, c0) = lease_connect(&mut p, A, t(0));
    let l0 = single_grant(&connect(&mut p, c0, 1, t(1)), w0);
    put_back(&mut p, l0, t(2));
    // A T1 lease does not take the idle untagged connection: it connects for T1.
    let w1 = queued(p.lease(&A, Some(T1), t(3), None));
    let v = acts(&mut p);
    let c1 = single_connect(&p, &v, A);
    assert_eq!(p.connect_tag(c1), Some(T1));
    let l1 = single_grant(&connect(&mut p, c1, 1, t(4)), w1);
    assert_eq!(l1.conn(), c1);
    // Released with no tag: in strict mode it keeps T1 ...
    put_back(&mut p, l1, t(5));
    // ... so an untagged lease gets c0, never c1, and a T2 lease gets neither.
    let l = granted(p.lease(&A, None, t(6), None));
    assert_eq!(l.conn(), c0);
    let w2 = queued(p.lease(&A, Some(T2), t(7), None));
    // At the route limit (2): the idle T1 connection is closed for T2's demand.
    let v = acts(&mut p);
    assert_eq!(v[0], close(c1, CloseReason::RouteLimit), "{v:?}");
    let c2 = connect_of(&v[1]);
    assert_eq!(p.connect_tag(c2), Some(T2));
    let l2 = single_grant(&connect(&mut p, c2, 1, t(8)), w2);
    assert_eq!(l2.conn(), c2);
    ok(&p);
}

#[test]
fn strict_connect_intent_is_the_oldest_identity_not_yet_connecting() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 3,
            ..strict()
        },
    );
    let _w1 = queued(p.lease(&A, Some(T1), t(0), None));
    let v = acts(&mut p);
    let c1 = single_connect(&p, &v, A);
    let _w1b = queued(p.lease(&A, Some(T1), t(1), None));
    let v = acts(&mut p);
    let c1b = single_connect(&p, &v, A);
    let _w2 = queued(p.lease(&A, Some(T2), t(2), None));
    let v = acts(&mut p);
    let c2 = single_connect(&p, &v, A);
    // Oldest waiters first; T1 is covered by c1 when c1b is made, so c1b goes
    // to ... the first waiter whose tag nobody connects for: none (T1 is
    // covered) -> the oldest waiter's tag, T1; then T2 for the T2 waiter.
    assert_eq!(
        (p.connect_tag(c1), p.connect_tag(c1b), p.connect_tag(c2)),
        (Some(T1), Some(T1), Some(T2))
    );
    // A connector that decides another identity reports it. A T3 connection
    // serves no T1/T2 waiter; at the route limit it is closed for the T2
    // waiter's demand, which connects for T2 again.
    p.connected_as(c2, 1, Some(T3), t(3)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v[0], close(c2, CloseReason::RouteLimit), "{v:?}");
    let c3 = connect_of(&v[1]);
    assert_eq!(p.connect_tag(c3), Some(T2));
    ok(&p);
}
