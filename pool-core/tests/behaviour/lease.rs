//! §4 lease: queueing, immediate grants, reuse order, past deadlines; §5 release.

use crate::support::*;
use wharf_core::*;

#[test]
fn lease_on_empty_route_is_queued_and_asks_for_one_connect() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let w = queued(p.lease(&A, None, t(0), None));
    let v = acts(&mut p);
    let c = single_connect(&p, &v, A);
    let s = p.stats();
    assert_eq!(
        (
            s.connections,
            s.connecting,
            s.idle,
            s.leased,
            s.pending,
            s.routes,
            s.max_total
        ),
        (1, 1, 0, 0, 1, 1, 4)
    );
    let rs = p.route_stats(&A).unwrap();
    assert_eq!(
        (
            rs.connections,
            rs.connecting,
            rs.pending,
            rs.limit,
            rs.connects
        ),
        (1, 1, 1, 2, 1)
    );
    let n = *p.counters();
    assert_eq!(
        (n.connects, n.queued, n.preconnects, n.warmups, n.grants),
        (1, 1, 0, 0, 0)
    );

    // §6 connected: Ready, offered to the queue, the waiter is granted.
    let v = connect(&mut p, c, 1, t(3));
    let l = single_grant(&v, w);
    assert_eq!(l.conn(), c);
    let s = p.stats();
    assert_eq!(
        (s.connections, s.connecting, s.idle, s.leased, s.pending),
        (1, 0, 0, 1, 0)
    );
    let n = *p.counters();
    assert_eq!((n.connected, n.grants, n.reuses), (1, 1, 0));
    assert_eq!(p.route_stats(&A).unwrap().grants, 1);
}

#[test]
fn idle_connection_is_granted_synchronously_and_counted_as_reuse() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(5));
    assert_eq!((p.stats().idle, p.stats().leased), (1, 0));

    let again = granted(p.lease(&A, None, t(6), None));
    quiet(&mut p);
    assert_eq!(again.conn(), l.conn());
    assert_ne!(again.id(), l.id());
    let n = *p.counters();
    assert_eq!((n.grants, n.reuses, n.connects, n.queued), (2, 1, 1, 1));
    assert_eq!((p.stats().idle, p.stats().leased), (0, 1));
}

/// Two idle connections on `A`: `c1` released at 10 ms, then `c2` at 20 ms.
fn two_idle(p: &mut P<'_>) -> (ConnId, ConnId) {
    let l1 = open(p, A, t(0));
    let l2 = open(p, A, t(0));
    assert_ne!(l1.conn(), l2.conn());
    put_back(p, l1, t(10));
    put_back(p, l2, t(20));
    (l1.conn(), l2.conn())
}

#[test]
fn lifo_reuses_most_recently_released() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            reuse: ReusePolicy::Lifo,
            ..cfg()
        },
    );
    let (c1, c2) = two_idle(&mut p);
    assert_eq!(granted(p.lease(&A, None, t(30), None)).conn(), c2);
    ok(&p);
    assert_eq!(granted(p.lease(&A, None, t(31), None)).conn(), c1);
    quiet(&mut p);
}

#[test]
fn fifo_reuses_least_recently_released() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            reuse: ReusePolicy::Fifo,
            ..cfg()
        },
    );
    let (c1, c2) = two_idle(&mut p);
    assert_eq!(granted(p.lease(&A, None, t(30), None)).conn(), c1);
    ok(&p);
    assert_eq!(granted(p.lease(&A, None, t(31), None)).conn(), c2);
    quiet(&mut p);
}

#[test]
fn lease_with_past_deadline_fails_timeout_and_changes_nothing() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    p.handle_timeout(t(100));
    quiet(&mut p);
    assert_eq!(
        refused(p.lease(&A, None, t(100), Some(t(100)))),
        LeaseError::Timeout
    );
    assert_eq!(
        refused(p.lease(&A, None, t(100), Some(t(50)))),
        LeaseError::Timeout
    );
    quiet(&mut p);
    assert_eq!(
        p.stats(),
        PoolStats {
            max_total: 4,
            ..PoolStats::default()
        }
    );
    assert_eq!(p.route_stats(&A), None);
    assert_eq!(*p.counters(), Counters::default());
    // A deadline in the future is accepted.
    queued(p.lease(&A, None, t(100), Some(t(101))));
    assert_eq!(acts(&mut p).len(), 1);
}

#[test]
fn release_discard_closes_the_connection_with_discarded() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    let v = release(&mut p, l, Release::Discard, t(5));
    assert_eq!(
        v,
        vec![close(l.conn(), CloseReason::Discarded), route_idle(ra, A)]
    );
    assert_eq!(p.counters().closes_for(CloseReason::Discarded), 1);
    assert_eq!(p.stats().connections, 0);
    // The next lease needs a new connection.
    let (_, c2) = lease_connect(&mut p, A, t(6));
    assert_ne!(c2, l.conn());
}

#[test]
fn released_connection_serves_the_queued_waiter_not_the_idle_list() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    let w = lease_wait(&mut p, A, None, t(1));
    let v = release(&mut p, l, Release::REUSE, t(2));
    let l2 = single_grant(&v, w);
    assert_eq!(l2.conn(), l.conn());
    assert_eq!(
        (p.stats().idle, p.stats().pending, p.stats().leased),
        (0, 0, 1)
    );
    assert_eq!(p.counters().reuses, 1);
}
