//! §4.4 validate-after-inactivity, §7 `validated`, §7.1 retry of a validating waiter.

use crate::support::*;
use wharf_core::*;

fn validating() -> Config {
    Config {
        validate_after_inactivity: Some(ms(1000)),
        ..cfg()
    }
}

fn validate_of(a: &Action<Key>) -> ConnId {
    match a {
        Action::Validate { conn } => *conn,
        other => panic!("expected Validate, got {other:?}"),
    }
}

#[test]
fn idle_connection_inactive_past_the_threshold_is_validated_before_it_is_granted() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    // Inactive for 490 ms: granted at once.
    let l = granted(p.lease(&A, None, t(500), None));
    quiet(&mut p);
    put_back(&mut p, l, t(600));
    // Inactive for 1000 ms: validated first.
    let w = queued(p.lease(&A, None, t(1600), None));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l.conn() }]);
    assert_eq!(p.counters().validations, 1);
    let s = p.stats();
    assert_eq!((s.pending, s.idle, s.leased, s.connections), (1, 0, 0, 1));

    p.validated(l.conn(), Validation::Alive, t(1601)).unwrap();
    let v = acts(&mut p);
    assert_eq!(single_grant(&v, w).conn(), l.conn());
    assert_eq!((p.stats().pending, p.stats().leased), (0, 1));
    assert_eq!(p.counters().stale, 0);
}

#[test]
fn zero_threshold_validates_every_reuse() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            validate_after_inactivity: Some(Duration::ZERO),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    let _w = queued(p.lease(&A, None, t(10), None));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l.conn() }]);
}

#[test]
fn stale_validation_closes_it_and_the_waiter_tries_the_next_idle_connection() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    put_back(&mut p, l1, t(10));
    put_back(&mut p, l2, t(20));
    let w = queued(p.lease(&A, None, t(5000), None));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l2.conn() }]);

    p.validated(l2.conn(), Validation::Stale, t(5001)).unwrap();
    assert_eq!(
        acts(&mut p),
        vec![
            close(l2.conn(), CloseReason::Stale),
            Action::Validate { conn: l1.conn() }
        ]
    );
    let n = *p.counters();
    assert_eq!(
        (n.stale, n.validations, n.closes_for(CloseReason::Stale)),
        (1, 2, 1)
    );

    p.validated(l1.conn(), Validation::Alive, t(5002)).unwrap();
    let v = acts(&mut p);
    assert_eq!(single_grant(&v, w).conn(), l1.conn());
}

#[test]
fn stale_validation_with_nothing_else_idle_connects_for_the_waiter() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    let w = queued(p.lease(&A, None, t(5000), None));
    let c1 = validate_of(&acts(&mut p)[0]);
    p.validated(c1, Validation::Stale, t(5001)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(c1, CloseReason::Stale));
    let c2 = connect_of(&v[1]);
    assert_eq!(p.stats().pending, 1);
    let v = connect(&mut p, c2, 1, t(5002));
    assert_eq!(single_grant(&v, w).conn(), c2);
}

#[test]
fn validated_before_its_validate_was_polled_is_wrong_state() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    // Ready, not validating.
    assert_eq!(
        p.validated(l.conn(), Validation::Alive, t(11)),
        Err(ConnError::WrongState)
    );
    ok(&p);
    let w = queued(p.lease(&A, None, t(5000), None));
    assert_eq!(
        p.validated(l.conn(), Validation::Alive, t(5000)),
        Err(ConnError::WrongState)
    );
    ok(&p);
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l.conn() }]);
    p.validated(l.conn(), Validation::Alive, t(5001)).unwrap();
    let v = acts(&mut p);
    single_grant(&v, w);
}

#[test]
fn cancelled_validating_waiter_lets_the_validation_finish_and_the_connection_go_idle() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    let w = queued(p.lease(&A, None, t(5000), None));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l.conn() }]);
    p.cancel(w, CancelPolicy::Default, t(5001)).unwrap();
    quiet(&mut p);
    assert_eq!(p.stats().pending, 0);
    p.validated(l.conn(), Validation::Alive, t(5002)).unwrap();
    quiet(&mut p);
    assert_eq!(p.stats().idle, 1);
    // Just validated (updated = 5002): granted without another validation.
    assert_eq!(granted(p.lease(&A, None, t(5003), None)).conn(), l.conn());
    quiet(&mut p);
    assert_eq!(p.counters().validations, 1);
}

#[test]
fn peer_close_of_a_validating_connection_retries_its_waiter() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    let w = queued(p.lease(&A, None, t(5000), None));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l.conn() }]);
    p.peer_closed(l.conn(), t(5001)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l.conn(), CloseReason::PeerClosed));
    let c2 = connect_of(&v[1]);
    let v = connect(&mut p, c2, 1, t(5002));
    assert_eq!(single_grant(&v, w).conn(), c2);
}

#[test]
fn validating_waiter_deadline_fails_it_and_the_connection_goes_idle_after_validation() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    let w = queued(p.lease(&A, None, t(5000), Some(t(5100))));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l.conn() }]);
    assert_eq!(tick(&mut p, t(5100)), vec![failed(w, FailReason::Timeout)]);
    assert_eq!(p.counters().timeouts, 1);
    p.validated(l.conn(), Validation::Alive, t(5200)).unwrap();
    quiet(&mut p);
    assert_eq!((p.stats().idle, p.stats().pending), (1, 0));
}

#[test]
fn validation_needs_a_waiter_slot_and_overflows_without_one() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_pending: Some(1),
            ..validating()
        },
    );
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    let (_wb, _cb) = lease_connect(&mut p, B, t(20));
    assert_eq!(
        refused(p.lease(&A, None, t(5000), None)),
        LeaseError::Overflow
    );
    quiet(&mut p);
    assert_eq!((p.counters().overflows, p.counters().validations), (1, 0));
    assert_eq!(p.stats().idle, 1);
}

#[test]
fn validating_waiter_that_retries_keeps_its_age_in_the_queue() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    put_back(&mut p, l1, t(10));
    let w1 = queued(p.lease(&A, None, t(5000), None));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l1.conn() }]);
    // w2 is younger and waits in the queue (the route is at its limit).
    let w2 = lease_wait(&mut p, A, None, t(5001));
    p.validated(l1.conn(), Validation::Stale, t(5002)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l1.conn(), CloseReason::Stale));
    let c3 = connect_of(&v[1]);
    // w1 re-entered the queue ahead of w2.
    let v = connect(&mut p, c3, 1, t(5003));
    assert_eq!(single_grant(&v, w1).conn(), c3);
    let v = release(&mut p, l2, Release::REUSE, t(5004));
    assert_eq!(single_grant(&v, w2).conn(), l2.conn());
}

#[test]
fn alive_validation_of_a_draining_connection_closes_it_and_the_waiter_retries() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    let w = queued(p.lease(&A, None, t(5000), None));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l.conn() }]);
    // Validating connections start draining.
    p.drain(DrainScope::Route(&A), DrainMode::DrainExisting, t(5001));
    quiet(&mut p);
    p.validated(l.conn(), Validation::Alive, t(5002)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l.conn(), CloseReason::Drained));
    let c2 = connect_of(&v[1]);
    let v = connect(&mut p, c2, 1, t(5003));
    assert_eq!(single_grant(&v, w).conn(), c2);
}

#[test]
fn close_replaces_an_undelivered_validate() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    let w = queued(p.lease(&A, None, t(5000), None));
    ok(&p);
    // The Validate is not polled before the peer closes the connection.
    p.peer_closed(l.conn(), t(5001)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l.conn(), CloseReason::PeerClosed));
    let c2 = connect_of(&v[1]);
    let v = connect(&mut p, c2, 1, t(5002));
    assert_eq!(single_grant(&v, w).conn(), c2);
}

#[test]
fn alive_validation_of_an_expired_connection_closes_it_expired_and_the_waiter_retries() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_lifetime: Some(ms(6000)),
            ..validating()
        },
    );
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(10));
    let w = queued(p.lease(&A, None, t(5000), None));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l.conn() }]);
    p.validated(l.conn(), Validation::Alive, t(6000)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l.conn(), CloseReason::Expired));
    let c2 = connect_of(&v[1]);
    let v = connect(&mut p, c2, 1, t(6001));
    assert_eq!(single_grant(&v, w).conn(), c2);
}

#[test]
fn connection_with_active_leases_is_not_validated() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let (w, c) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c, 2, t(0));
    single_grant(&v, w);
    // Not idle (one lease): no validation however long since its last release.
    assert_eq!(granted(p.lease(&A, None, t(5000), None)).conn(), c);
    quiet(&mut p);
    assert_eq!(p.counters().validations, 0);
}

/// §7.1: a waiter that retries after a stale validation goes back into the
/// queue by age, here into its middle: between an older waiter (which had
/// retried from its own stale validation) and a younger one.
#[test]
fn validating_waiter_that_retries_goes_back_between_older_and_younger_waiters() {
    let mut st = Store::new();
    let mut p = pool(&mut st, validating());
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    put_back(&mut p, l1, t(10));
    put_back(&mut p, l2, t(10));
    // Both idle past the threshold: w0 and w1 are each bound to a validation.
    let w0 = queued(p.lease(&A, None, t(5000), None));
    let w1 = queued(p.lease(&A, None, t(5000), None));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    let (c0, c1) = (validate_of(&v[0]), validate_of(&v[1]));
    // w2 waits in the queue: the route is at its limit.
    let w2 = lease_wait(&mut p, A, None, t(5001));
    // w0's connection is stale: w0 re-enters the queue ahead of w2, and a
    // connect starts for it.
    p.validated(c0, Validation::Stale, t(5002)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(c0, CloseReason::Stale));
    let c3 = connect_of(&v[1]);
    // w1's too: it re-enters between w0 (older) and w2 (younger).
    p.validated(c1, Validation::Stale, t(5003)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(c1, CloseReason::Stale));
    let c4 = connect_of(&v[1]);
    assert_eq!(p.stats().pending, 3);
    // Answered oldest first: w0, w1, then w2 when a lease comes back.
    let v = connect(&mut p, c3, 1, t(5004));
    let g0 = single_grant(&v, w0);
    let v = connect(&mut p, c4, 1, t(5005));
    assert_eq!(single_grant(&v, w1).conn(), c4);
    assert_eq!(p.stats().pending, 1);
    let v = release(&mut p, g0, Release::REUSE, t(5006));
    assert_eq!(single_grant(&v, w2).conn(), c3);
    assert_eq!(p.stats().pending, 0);
}
