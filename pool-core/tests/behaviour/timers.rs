//! §2 time: idle timeout, keep-alive expiry, lifetime (TTL), time going
//! backwards, `poll_timeout`.

use crate::support::*;
use wharf_core::*;

#[test]
fn idle_timeout_closes_an_idle_connection() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            idle_timeout: Some(ms(1000)),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    put_back(&mut p, l, t(100));
    assert_eq!(tick(&mut p, t(1099)), vec![]);
    assert_eq!(
        tick(&mut p, t(1100)),
        vec![close(l.conn(), CloseReason::IdleTimeout), route_idle(ra, A)]
    );
    assert_eq!(p.counters().closes_for(CloseReason::IdleTimeout), 1);
    assert_eq!(p.stats().connections, 0);
}

#[test]
fn idle_timeout_counts_from_the_last_release() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            idle_timeout: Some(ms(1000)),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(100));
    let l = granted(p.lease(&A, None, t(900), None));
    quiet(&mut p);
    // Leased: no idle timeout while in use.
    assert_eq!(tick(&mut p, t(1500)), vec![]);
    put_back(&mut p, l, t(1600));
    assert_eq!(tick(&mut p, t(2599)), vec![]);
    assert_eq!(
        tick(&mut p, t(2600))[0],
        close(l.conn(), CloseReason::IdleTimeout)
    );
}

#[test]
fn keep_alive_sets_the_expiry_of_a_released_connection() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_lifetime: Some(ms(10_000)),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    p.release(l, keep_alive(ms(3000)), t(1000)).unwrap();
    quiet(&mut p);
    assert_eq!(tick(&mut p, t(3999)), vec![]);
    assert_eq!(
        tick(&mut p, t(4000)),
        vec![close(l.conn(), CloseReason::Expired), route_idle(ra, A)]
    );
    assert_eq!(p.counters().closes_for(CloseReason::Expired), 1);
}

#[test]
fn keep_alive_never_extends_past_the_lifetime() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_lifetime: Some(ms(10_000)),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    p.release(l, keep_alive(ms(5000)), t(8000)).unwrap();
    quiet(&mut p);
    assert_eq!(tick(&mut p, t(9999)), vec![]);
    assert_eq!(
        tick(&mut p, t(10_000)),
        vec![close(l.conn(), CloseReason::Expired), route_idle(ra, A)]
    );
}

#[test]
fn release_with_zero_keep_alive_closes_expired_at_once() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    let v = release(&mut p, l, keep_alive(Duration::ZERO), t(5));
    assert_eq!(
        v,
        vec![close(l.conn(), CloseReason::Expired), route_idle(ra, A)]
    );
}

#[test]
fn expired_idle_connection_is_never_leased() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_lifetime: Some(ms(1000)),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(500));
    // At 1000 ms the lifetime ends: the lease first closes it, then needs a new one
    // (the route is in use again, so no RouteIdle is delivered).
    let w = queued(p.lease(&A, None, t(1000), None));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l.conn(), CloseReason::Expired));
    let c2 = connect_of(&v[1]);
    let v = connect(&mut p, c2, 1, t(1001));
    single_grant(&v, w);
}

#[test]
fn lifetime_drains_a_connection_with_leases_and_closes_it_on_release() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_lifetime: Some(ms(1000)),
            ..cfg()
        },
    );
    let (w, c1) = lease_connect(&mut p, A, t(0));
    // Capacity 2: still available while it carries one lease.
    let v = connect(&mut p, c1, 2, t(0));
    let l = single_grant(&v, w);
    // Available with one lease: a second lease is granted on it, then returned.
    let l2 = granted(p.lease(&A, None, t(10), None));
    quiet(&mut p);
    assert_eq!(l2.conn(), c1);
    put_back(&mut p, l2, t(12));
    assert_eq!(tick(&mut p, t(1000)), vec![]);
    // Draining: a new lease needs a new connection.
    let (_w2, c2) = lease_connect(&mut p, A, t(1100));
    assert_ne!(c2, c1);
    let v = release(&mut p, l, Release::REUSE, t(1200));
    assert_eq!(v, vec![close(c1, CloseReason::Expired)]);
    assert_eq!(p.counters().closes_for(CloseReason::Expired), 1);
}

#[test]
fn idle_timeout_never_takes_a_route_below_min_idle() {
    // SEMANTICS §2 (HikariCP's minimumIdle): the idle timeout does not close a
    // connection the route needs for `min_idle`; it would only be reopened.
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            idle_timeout: Some(ms(1000)),
            ..cfg()
        },
    );
    let warm = RouteConfig {
        min_idle: Some(1),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, warm, t(0)).unwrap();
    let v = acts(&mut p);
    let c1 = single_connect(&p, &v, A);
    assert_eq!(connect(&mut p, c1, 1, t(0)), vec![]);
    assert_eq!(p.counters().warmups, 1);
    // The idle timeout passes: kept, nothing closes, nothing reconnects, and
    // no timer is left for it (no lifetime, no keep-alive).
    assert_eq!(tick(&mut p, t(1000)), vec![]);
    assert_eq!(tick(&mut p, t(100_000)), vec![]);
    assert_eq!(p.poll_timeout(), None);
    let n = *p.counters();
    assert_eq!(
        (
            n.warmups,
            n.connects,
            n.closes[CloseReason::IdleTimeout.index()]
        ),
        (1, 1, 0)
    );
    // A second idle connection above min_idle still times out; once used and
    // released, the kept one counts its idle timeout again.
    let l1 = granted(p.lease(&A, None, t(100_001), None));
    let w = queued(p.lease(&A, None, t(100_001), None));
    let v = acts(&mut p);
    let c2 = single_connect(&p, &v, A);
    let v = connect(&mut p, c2, 1, t(100_002));
    assert_eq!(v.len(), 1, "{v:?}");
    let l2 = match v[0] {
        Action::Granted { waiter, lease } if waiter == w => lease,
        ref a => panic!("{a:?}"),
    };
    p.release(l1, Release::REUSE, t(100_003)).unwrap();
    p.release(l2, Release::REUSE, t(100_004)).unwrap();
    assert_eq!(acts(&mut p), vec![]);
    // c1 (idle since 100_003) times out first: two idle, min 1: it closes.
    assert_eq!(
        tick(&mut p, t(101_003)),
        vec![close(c1, CloseReason::IdleTimeout)]
    );
    // c2 is the last one: kept.
    assert_eq!(tick(&mut p, t(101_004)), vec![]);
    assert_eq!(p.stats().idle, 1);
    ok(&p);
}

#[test]
fn time_going_backwards_is_treated_as_the_previous_now() {
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
    let w = queued(p.lease(&A, None, t(1), Some(t(100))));
    quiet(&mut p);
    assert_eq!(tick(&mut p, t(200)), vec![failed(w, FailReason::Timeout)]);
    // "50 ms" is taken as 200 ms: a deadline of 100 ms has passed.
    assert_eq!(
        refused(p.lease(&A, None, t(50), Some(t(100)))),
        LeaseError::Timeout
    );
    ok(&p);
    // A release "at 10 ms" with a 500 ms keep-alive expires at 200 + 500.
    p.release(l, keep_alive(ms(500)), t(10)).unwrap();
    quiet(&mut p);
    assert_eq!(tick(&mut p, t(699)), vec![]);
    assert_eq!(
        tick(&mut p, t(700)),
        vec![close(l.conn(), CloseReason::Expired), route_idle(ra, A)]
    );
}

#[test]
fn poll_timeout_is_none_without_any_deadline() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    assert_eq!(p.poll_timeout(), None);
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(1));
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn poll_timeout_reports_the_earliest_deadline() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            idle_timeout: Some(ms(5000)),
            ..cfg()
        },
    );
    let lb = open(&mut p, B, t(0));
    let la = open(&mut p, A, t(0));
    // Idle since 10 ms: its idle deadline is 5010 ms.
    put_back(&mut p, lb, t(10));
    // A waiter with an earlier deadline.
    let w = queued(p.lease(&A, None, t(20), Some(t(300))));
    quiet(&mut p);
    let next = p.poll_timeout().expect("a deadline is pending");
    assert!(next <= t(300), "{next:?}");
    // Calling early is harmless; the waiter fails exactly at 300 ms.
    let mut now = next;
    while now < t(300) {
        assert_eq!(tick(&mut p, now), vec![]);
        now = p.poll_timeout().expect("still pending").max(now + ms(1));
    }
    assert_eq!(tick(&mut p, t(300)), vec![failed(w, FailReason::Timeout)]);
    let next = p.poll_timeout().expect("idle deadline");
    assert!(next > t(300) && next <= t(5010), "{next:?}");
    put_back(&mut p, la, t(400));
}

#[test]
fn expiry_is_checked_before_the_idle_timeout_at_the_same_instant() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            idle_timeout: Some(ms(1000)),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    p.release(l, keep_alive(ms(1000)), t(100)).unwrap();
    quiet(&mut p);
    assert_eq!(
        tick(&mut p, t(1100))[0],
        close(l.conn(), CloseReason::Expired)
    );
    assert_eq!(p.counters().closes_for(CloseReason::IdleTimeout), 0);
}

#[test]
fn expired_release_of_a_multiplexed_connection_drains_it_until_its_last_lease() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c, 2, t(0));
    let l1 = single_grant(&v, w);
    let l2 = granted(p.lease(&A, None, t(1), None));
    quiet(&mut p);
    // Keep-alive 0: expired, but another lease is active: draining.
    p.release(l1, keep_alive(Duration::ZERO), t(2)).unwrap();
    quiet(&mut p);
    let (_w3, c3) = lease_connect(&mut p, A, t(3));
    assert_ne!(c3, c);
    let v = release(&mut p, l2, Release::REUSE, t(4));
    assert_eq!(v, vec![close(c, CloseReason::Expired)]);
}

#[test]
fn due_timers_are_processed_in_deadline_then_creation_order() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            ..cfg()
        },
    );
    let _l = open(&mut p, A, t(0));
    let w1 = queued(p.lease(&A, None, t(1), Some(t(100))));
    let w2 = queued(p.lease(&A, None, t(2), Some(t(50))));
    let w3 = queued(p.lease(&A, None, t(3), Some(t(100))));
    quiet(&mut p);
    assert_eq!(
        tick(&mut p, t(200)),
        vec![
            failed(w2, FailReason::Timeout),
            failed(w1, FailReason::Timeout),
            failed(w3, FailReason::Timeout),
        ]
    );
    assert_eq!(p.counters().timeouts, 3);
}

#[test]
fn lifetime_counts_from_connect_completion() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_lifetime: Some(ms(1000)),
            ..cfg()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let ra = route(&p, c);
    let v = connect(&mut p, c, 1, t(500));
    let l = single_grant(&v, w);
    put_back(&mut p, l, t(600));
    assert_eq!(tick(&mut p, t(1000)), vec![]);
    assert_eq!(tick(&mut p, t(1499)), vec![]);
    assert_eq!(
        tick(&mut p, t(1500)),
        vec![close(c, CloseReason::Expired), route_idle(ra, A)]
    );
}
