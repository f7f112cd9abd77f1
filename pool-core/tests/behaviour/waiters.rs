//! Waiters: FIFO service (§3.7), overflow (§4, §3.8), deadlines (§2, §9.1),
//! cancel (§7) and connects that complete after their requester left.

use crate::support::*;
use wharf_core::*;

fn one_per_route() -> Config {
    Config {
        max_per_route: 1,
        ..cfg()
    }
}

#[test]
fn waiters_are_served_fifo_on_release() {
    let mut st = Store::new();
    let mut p = pool(&mut st, one_per_route());
    let l = open(&mut p, A, t(0));
    let w1 = lease_wait(&mut p, A, None, t(1));
    let w2 = lease_wait(&mut p, A, None, t(2));
    assert_eq!(p.route_stats(&A).unwrap().pending, 2);

    let v = release(&mut p, l, Release::REUSE, t(3));
    let l1 = single_grant(&v, w1);
    assert_eq!(l1.conn(), l.conn());
    let v = release(&mut p, l1, Release::REUSE, t(4));
    let l2 = single_grant(&v, w2);
    assert_eq!(l2.conn(), l.conn());
    assert_eq!(p.stats().pending, 0);
    assert_eq!(p.counters().grants, 3);
}

#[test]
fn incompatible_waiters_are_skipped_and_keep_their_place() {
    let mut st = Store::new();
    let mut p = pool(&mut st, one_per_route());
    let l = open(&mut p, A, t(0));
    let w1 = lease_wait(&mut p, A, Some(T1), t(1));
    let w2 = lease_wait(&mut p, A, None, t(2));
    let w3 = lease_wait(&mut p, A, Some(T2), t(3));

    // Released tagged T2: only w3 may take it (w1 wants T1, w2 wants untagged).
    let v = release(&mut p, l, tagged(T2), t(4));
    let l3 = single_grant(&v, w3);
    // Released untagged: the first waiter in FIFO order takes it.
    let v = release(&mut p, l3, Release::REUSE, t(5));
    let l1 = single_grant(&v, w1);
    let v = release(&mut p, l1, Release::REUSE, t(6));
    let l2 = single_grant(&v, w2);
    assert_eq!(l2.conn(), l.conn());
    assert_eq!(p.stats().pending, 0);
}

#[test]
fn full_waiter_queue_overflows_synchronously() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_pending: Some(2),
            ..one_per_route()
        },
    );
    let _l = open(&mut p, A, t(0));
    let _w1 = lease_wait(&mut p, A, None, t(1));
    let _w2 = lease_wait(&mut p, A, None, t(2));
    let before = p.stats();

    assert_eq!(refused(p.lease(&A, None, t(3), None)), LeaseError::Overflow);
    quiet(&mut p);
    // A new route is not even created.
    assert_eq!(refused(p.lease(&B, None, t(3), None)), LeaseError::Overflow);
    quiet(&mut p);
    assert_eq!(p.route_stats(&B), None);
    assert_eq!(p.stats(), before);
    assert_eq!(p.stats().pending, 2);
    let n = *p.counters();
    assert_eq!((n.overflows, n.queued), (2, 3));
}

#[test]
fn grant_at_max_leases_fails_the_waiter_with_overflow_and_lease_is_refused() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_leases: Some(1),
            ..cfg()
        },
    );
    let (w1, c1) = lease_connect(&mut p, A, t(0));
    let (w2, c2) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c1, 1, t(1));
    let l1 = single_grant(&v, w1);
    // One lease is in use: the second connection cannot be granted to w2.
    let v = connect(&mut p, c2, 1, t(2));
    assert_eq!(v, vec![failed(w2, FailReason::Overflow)]);
    assert_eq!(p.counters().overflows, 1);
    assert_eq!(
        (p.stats().idle, p.stats().pending, p.stats().leased),
        (1, 0, 1)
    );

    // An idle connection exists but the lease limit is reached: refused at once.
    assert_eq!(refused(p.lease(&A, None, t(3), None)), LeaseError::Overflow);
    quiet(&mut p);
    assert_eq!(p.counters().overflows, 2);

    put_back(&mut p, l1, t(4));
    granted(p.lease(&A, None, t(5), None));
    quiet(&mut p);
}

#[test]
fn waiter_deadline_fails_the_waiter_with_timeout() {
    let mut st = Store::new();
    let mut p = pool(&mut st, one_per_route());
    let l = open(&mut p, A, t(0));
    let w = queued(p.lease(&A, None, t(1), Some(t(100))));
    quiet(&mut p);
    assert_eq!(p.poll_timeout(), Some(t(100)));

    assert_eq!(tick(&mut p, t(99)), vec![]);
    assert_eq!(p.stats().pending, 1);
    assert_eq!(tick(&mut p, t(100)), vec![failed(w, FailReason::Timeout)]);
    assert_eq!(p.counters().timeouts, 1);
    assert_eq!(p.stats().pending, 0);
    // It is gone: the released connection goes idle instead of to it.
    put_back(&mut p, l, t(101));
    assert_eq!(p.stats().idle, 1);
    assert_eq!(
        p.cancel(w, CancelPolicy::Default, t(102)),
        Err(CancelError::StaleWaiter)
    );
    ok(&p);
}

#[test]
fn due_timers_run_before_the_input() {
    let mut st = Store::new();
    let mut p = pool(&mut st, one_per_route());
    let l = open(&mut p, A, t(0));
    let w = queued(p.lease(&A, None, t(1), Some(t(100))));
    quiet(&mut p);
    // The release at 150 ms first fails the waiter (due at 100 ms), so the
    // connection goes idle rather than to the expired waiter.
    let v = release(&mut p, l, Release::REUSE, t(150));
    assert_eq!(v, vec![failed(w, FailReason::Timeout)]);
    assert_eq!((p.stats().idle, p.stats().leased), (1, 0));
}

#[test]
fn cancel_removes_a_queued_waiter() {
    let mut st = Store::new();
    let mut p = pool(&mut st, one_per_route());
    let l = open(&mut p, A, t(0));
    let w = lease_wait(&mut p, A, None, t(1));
    p.cancel(w, CancelPolicy::Default, t(2)).unwrap();
    quiet(&mut p);
    assert_eq!(p.counters().cancels, 1);
    assert_eq!(p.stats().pending, 0);
    put_back(&mut p, l, t(3));
    assert_eq!(p.stats().idle, 1);
    assert_eq!(
        p.cancel(w, CancelPolicy::Default, t(4)),
        Err(CancelError::StaleWaiter)
    );
    ok(&p);
}

#[test]
fn connect_completing_after_its_waiter_was_cancelled_goes_idle() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    p.cancel(w, CancelPolicy::Default, t(1)).unwrap();
    quiet(&mut p);
    assert_eq!(p.stats().connecting, 1);
    assert_eq!(connect(&mut p, c, 1, t(2)), vec![]);
    assert_eq!((p.stats().idle, p.stats().connections), (1, 1));
    assert_eq!(granted(p.lease(&A, None, t(3), None)).conn(), c);
    quiet(&mut p);
}

#[test]
fn connect_completing_after_its_waiter_was_cancelled_serves_the_next_waiter() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w1, c1) = lease_connect(&mut p, A, t(0));
    let (w2, c2) = lease_connect(&mut p, A, t(0));
    p.cancel(w1, CancelPolicy::Default, t(1)).unwrap();
    quiet(&mut p);
    let v = connect(&mut p, c1, 1, t(2));
    assert_eq!(single_grant(&v, w2).conn(), c1);
    assert_eq!(connect(&mut p, c2, 1, t(3)), vec![]);
    assert_eq!((p.stats().idle, p.stats().leased), (1, 1));
}

#[test]
fn cancel_after_grant_before_poll_gives_the_connection_to_the_next_waiter() {
    let mut st = Store::new();
    let mut p = pool(&mut st, one_per_route());
    let l = open(&mut p, A, t(0));
    let w1 = lease_wait(&mut p, A, None, t(1));
    let w2 = lease_wait(&mut p, A, None, t(2));
    // The release grants w1, but its Granted is not polled before the cancel.
    p.release(l, Release::REUSE, t(3)).unwrap();
    ok(&p);
    p.cancel(w1, CancelPolicy::Default, t(3)).unwrap();
    let v = acts(&mut p);
    assert_eq!(single_grant(&v, w2).conn(), l.conn());
    assert_eq!(p.counters().cancels, 1);
    assert_eq!(
        (p.stats().leased, p.stats().pending, p.stats().idle),
        (1, 0, 0)
    );
}

#[test]
fn cancel_after_grant_before_poll_with_no_other_waiter_returns_the_connection_idle() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    p.connected(c, 1, t(1)).unwrap();
    ok(&p);
    p.cancel(w, CancelPolicy::Default, t(1)).unwrap();
    quiet(&mut p);
    assert_eq!(
        (p.stats().leased, p.stats().pending, p.stats().idle),
        (0, 0, 1)
    );
    assert_eq!(granted(p.lease(&A, None, t(2), None)).conn(), c);
    quiet(&mut p);
}

#[test]
fn cancel_after_the_answer_was_polled_is_stale_waiter() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c, 1, t(1));
    let l = single_grant(&v, w);
    assert_eq!(
        p.cancel(w, CancelPolicy::Default, t(2)),
        Err(CancelError::StaleWaiter)
    );
    quiet(&mut p);
    assert_eq!(p.counters().cancels, 0);
    // The caller still owns the lease.
    assert_eq!(p.stats().leased, 1);
    put_back(&mut p, l, t(3));
    assert_eq!(p.stats().idle, 1);
}

#[test]
fn cancel_of_a_failed_unpolled_waiter_withdraws_the_failure() {
    let mut st = Store::new();
    let mut p = pool(&mut st, one_per_route());
    let _l = open(&mut p, A, t(0));
    let w = queued(p.lease(&A, None, t(1), Some(t(100))));
    quiet(&mut p);
    p.handle_timeout(t(100));
    ok(&p);
    p.cancel(w, CancelPolicy::Default, t(100)).unwrap();
    quiet(&mut p);
    assert_eq!(p.stats().pending, 0);
    assert_eq!(
        p.cancel(w, CancelPolicy::Default, t(101)),
        Err(CancelError::StaleWaiter)
    );
}

#[test]
fn close_excess_cancel_closes_the_oldest_connecting_connection() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w1, c1) = lease_connect(&mut p, A, t(0));
    let (w2, c2) = lease_connect(&mut p, A, t(0));
    // (1 queued + 0 active) * 1.0 <= 2 connecting - 1 + 0: one connect is excess.
    p.cancel(w2, CancelPolicy::CloseExcess, t(1)).unwrap();
    assert_eq!(acts(&mut p), vec![close(c1, CloseReason::Excess)]);
    assert_eq!(p.counters().closes_for(CloseReason::Excess), 1);
    assert_eq!(p.stats().connecting, 1);
    assert_eq!(p.connected(c1, 1, t(2)), Err(ConnError::StaleConn));
    ok(&p);
    let v = connect(&mut p, c2, 1, t(2));
    assert_eq!(single_grant(&v, w1).conn(), c2);
}

#[test]
fn close_excess_cancel_keeps_connecting_connections_still_needed() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (_w1, _c1) = lease_connect(&mut p, A, t(0));
    let (_w2, _c2) = lease_connect(&mut p, A, t(0));
    let w3 = lease_wait(&mut p, A, None, t(0));
    // (2 queued + 0 active) * 1.0 > 2 - 1 + 0: both connects are still needed.
    p.cancel(w3, CancelPolicy::CloseExcess, t(1)).unwrap();
    quiet(&mut p);
    assert_eq!(p.stats().connecting, 2);
    assert_eq!(p.counters().closes_for(CloseReason::Excess), 0);
}

#[test]
fn cancel_after_grant_before_poll_keeps_the_connection_tag() {
    let mut st = Store::new();
    let mut p = pool(&mut st, one_per_route());
    let l = open(&mut p, A, t(0));
    let w1 = lease_wait(&mut p, A, Some(T1), t(1));
    // Released tagged T1: granted to w1, not polled, then cancelled. The
    // connection goes back as Reuse { keep_alive: None, tag: Some(T1) }.
    p.release(l, tagged(T1), t(2)).unwrap();
    ok(&p);
    p.cancel(w1, CancelPolicy::Default, t(2)).unwrap();
    quiet(&mut p);
    assert_eq!(p.stats().idle, 1);
    // Still tagged T1: an untagged lease cannot take it and, at the route
    // limit, closes it to make room.
    let _w = queued(p.lease(&A, None, t(3), None));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l.conn(), CloseReason::RouteLimit));
    connect_of(&v[1]);
}

#[test]
fn lease_processes_due_timers_before_checking_overflow() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_pending: Some(1),
            ..one_per_route()
        },
    );
    let _l = open(&mut p, A, t(0));
    let w1 = queued(p.lease(&A, None, t(1), Some(t(100))));
    quiet(&mut p);
    assert_eq!(
        refused(p.lease(&A, None, t(99), None)),
        LeaseError::Overflow
    );
    quiet(&mut p);
    // At 100 ms w1 times out first, which frees the waiter slot.
    let w2 = queued(p.lease(&A, None, t(100), None));
    assert_ne!(w2, w1);
    assert_eq!(acts(&mut p), vec![failed(w1, FailReason::Timeout)]);
    assert_eq!(p.stats().pending, 1);
}

#[test]
fn cancel_says_what_it_withdrew() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    // A waiter still waiting.
    let (w, c) = lease_connect(&mut p, A, t(0));
    assert_eq!(
        p.cancel(w, CancelPolicy::Default, t(1)),
        Ok(Cancelled::Waiting)
    );
    // A grant not yet polled: the lease it withdrew, back in the pool.
    let w = queued(p.lease(&A, None, t(2), None));
    p.connected(c, 1, t(3)).unwrap();
    let Ok(Cancelled::Grant(lease)) = p.cancel(w, CancelPolicy::Default, t(4)) else {
        panic!("expected the unpolled grant")
    };
    assert_eq!(lease.conn(), c);
    assert_eq!((p.stats().leased, p.stats().idle), (0, 1));
    assert_eq!(
        acts(&mut p),
        vec![],
        "the withdrawn Granted is not delivered"
    );
    // A failure not yet polled, with its reason.
    let w = queued(p.lease(&B, None, t(5), Some(t(6))));
    let v = acts(&mut p);
    let cb = single_connect(&p, &v, B);
    p.handle_timeout(t(6));
    assert_eq!(
        p.cancel(w, CancelPolicy::Default, t(6)),
        Ok(Cancelled::Failure(FailReason::Timeout))
    );
    assert_eq!(acts(&mut p), vec![]);
    p.connect_failed(cb, ConnectFailure::Remote, t(7)).unwrap();
    let rb = p.route_id(&B).unwrap();
    assert_eq!(acts(&mut p), vec![route_idle(rb, B)]);
}

#[test]
fn a_cancelled_unpolled_grant_is_undone_and_keeps_the_keep_alive() {
    // The grant never reached its requester: the connection is back as the
    // release left it, so the keep-alive the server announced still counts.
    // Before, the undo released it as `Reuse { keep_alive: None }`, which
    // dropped the keep-alive and kept a connection the server would close.
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            ..cfg()
        },
    );
    let l1 = open(&mut p, A, t(0));
    let w = queued(p.lease(&A, None, t(1), None));
    quiet(&mut p);
    p.release(l1, keep_alive(ms(100)), t(10)).unwrap();
    // The release granted it to `w`; `w` goes away before polling it.
    assert!(matches!(
        p.cancel(w, CancelPolicy::Default, t(11)),
        Ok(Cancelled::Grant(_))
    ));
    quiet(&mut p);
    assert_eq!(p.stats().idle, 1);
    let c = l1.conn();
    assert_eq!(tick(&mut p, t(109)), vec![]);
    let ra = p.route_id(&A).unwrap();
    assert_eq!(
        tick(&mut p, t(110)),
        vec![close(c, CloseReason::Expired), route_idle(ra, A)]
    );
    ok(&p);
}

#[test]
fn an_undone_grant_past_its_idle_timeout_closes_in_the_cancel() {
    // Found by the model: the grant waited unpolled past the connection's
    // idle timeout; undone, the connection is past it at once.
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            idle_timeout: Some(ms(1000)),
            ..cfg()
        },
    );
    let w = queued(p.lease(&A, None, t(0), None));
    let v = acts(&mut p);
    let c = single_connect(&p, &v, A);
    p.connected(c, 1, t(1000)).unwrap();
    // The Granted stays unpolled; time passes the idle timeout (2000).
    p.handle_timeout(t(2500));
    assert!(matches!(
        p.cancel(w, CancelPolicy::Default, t(2500)),
        Ok(Cancelled::Grant(_))
    ));
    let ra = p.route_id(&A).unwrap();
    assert_eq!(
        acts(&mut p),
        vec![close(c, CloseReason::IdleTimeout), route_idle(ra, A)]
    );
}
