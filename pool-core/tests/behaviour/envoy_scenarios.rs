//! Envoy's upstream connection pool (pool-semantics.md §A), reproduced through
//! configuration.

use crate::support::*;
use wharf_core::*;

/// HTTP/2-like: a connecting connection is assumed to carry 100 streams.
fn h2() -> Config {
    Config {
        connecting_capacity: 100,
        ..cfg()
    }
}

#[test]
fn envoy_pending_streams_share_one_connecting_http2_connection() {
    let mut st = Store::new();
    let mut p = pool(&mut st, h2());
    let (w1, c) = lease_connect(&mut p, A, t(0));
    let ws: Vec<WaiterId> = (1..5).map(|i| lease_wait(&mut p, A, None, t(i))).collect();
    assert_eq!(p.counters().connects, 1);
    let v = connect(&mut p, c, 100, t(10));
    assert_eq!(v.len(), 5, "{v:?}");
    let mut order = vec![w1];
    order.extend(ws);
    for (a, w) in v.iter().zip(order) {
        let (g, l) = grant_of(a);
        assert_eq!((g, l.conn()), (w, c));
    }
    assert_eq!((p.stats().leased, p.stats().pending), (5, 0));
}

#[test]
fn envoy_connect_failure_fails_all_pending_streams_of_that_pool_then_reconnects() {
    let mut st = Store::new();
    let mut p = pool(&mut st, h2());
    let (w1, c) = lease_connect(&mut p, A, t(0));
    let w2 = lease_wait(&mut p, A, None, t(1));
    let w3 = lease_wait(&mut p, A, None, t(2));
    let ra = route(&p, c);
    p.connect_failed(c, ConnectFailure::Remote, t(3)).unwrap();
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
    // A retry issued after the failure gets a new connect.
    let (w4, c2) = lease_connect(&mut p, A, t(4));
    let v = connect(&mut p, c2, 100, t(5));
    single_grant(&v, w4);
}

#[test]
fn envoy_max_requests_overflow_is_synchronous_even_with_free_streams() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_leases: Some(2),
            ..h2()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c, 100, t(1));
    single_grant(&v, w);
    granted(p.lease(&A, None, t(2), None));
    quiet(&mut p);
    assert_eq!(refused(p.lease(&A, None, t(3), None)), LeaseError::Overflow);
    quiet(&mut p);
    let s = p.stats();
    assert_eq!((s.leased, s.pending), (2, 0));
    assert_eq!((p.counters().overflows, p.counters().queued), (1, 1));
}

#[test]
fn envoy_pending_overflow_is_never_queued() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_pending: Some(1),
            ..h2()
        },
    );
    let (_w, _c) = lease_connect(&mut p, A, t(0));
    assert_eq!(refused(p.lease(&A, None, t(1), None)), LeaseError::Overflow);
    quiet(&mut p);
    assert_eq!(p.stats().pending, 1);
    assert_eq!(p.counters().queued, 1);
}

#[test]
fn envoy_max_connection_duration_drains_then_closes_when_streams_end() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_lifetime: Some(ms(1000)),
            ..h2()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c, 100, t(0));
    let ra = route(&p, c);
    let l1 = single_grant(&v, w);
    let l2 = granted(p.lease(&A, None, t(1), None));
    quiet(&mut p);
    assert_eq!(tick(&mut p, t(1000)), vec![]);
    put_back(&mut p, l1, t(1001));
    let v = release(&mut p, l2, Release::REUSE, t(1002));
    assert_eq!(v, vec![close(c, CloseReason::Expired), route_idle(ra, A)]);
}

#[test]
fn envoy_drain_existing_new_streams_get_new_connections() {
    let mut st = Store::new();
    let mut p = pool(&mut st, h2());
    let (w, c) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c, 100, t(0));
    let l = single_grant(&v, w);
    p.drain(DrainScope::All, DrainMode::DrainExisting, t(1));
    quiet(&mut p);
    assert!(!p.is_closed());
    // c has 99 free streams but is draining.
    let (_w2, c2) = lease_connect(&mut p, A, t(2));
    assert_ne!(c2, c);
    let v = release(&mut p, l, Release::REUSE, t(3));
    assert_eq!(v, vec![close(c, CloseReason::Drained)]);
}
