//! Conformance suite of the driver against a scripted fake I/O (no runtime):
//! grants, queues, cancels at every point, each kind of connect failure,
//! abandoned grants, validation, hand-out checks, release paths, close
//! ordering, the timer re-arm rule and the answer table's bounds.

mod fake;

use std::task::Poll;

use fake::*;
use wharf_core::{
    CancelPolicy, CloseReason, Config, ConnectFailure, DrainMode, DrainScope, Duration, FailReason,
    LeaseError, Tag, Validation,
};
use wharf_driver::{Answer, Returned, Settings, StartError, Started};

fn granted(a: Answer<Obj, &'static str, u32>) -> wharf_driver::Handout<Obj> {
    match a {
        Answer::Granted(h) => h,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn failed(a: Answer<Obj, &'static str, u32>) -> (FailReason, Option<&'static str>, u32) {
    match a {
        Answer::Failed {
            reason,
            error,
            note,
        } => (reason, error, note),
        other => panic!("expected a failure, got {other:?}"),
    }
}

// ---------------------------------------------------------------- grant

#[test]
fn a_queued_request_gets_the_new_connection_then_it_is_reused() {
    let mut d = driver(config(), Settings::default());
    let (w, count) = waker();
    let ticket = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    assert_eq!(events(&mut d), vec![Ev::Connect(conn, "a")]);
    assert!(d.poll_answer(ticket, &w).is_pending());
    assert_eq!(count.wakes(), 0);

    d.connected(conn, Obj(1), t(1)).unwrap();
    assert_eq!(count.wakes(), 1, "the waiting future is woken once");
    let h = granted(answer(&mut d, ticket));
    assert_eq!((h.conn.0, d.served(h.lease.conn()), h.tag), (1, 1, None));
    assert_eq!(h.lease.conn(), conn);
    d.release(h.lease, h.conn, Returned::REUSE, t(2));

    let Ok(Started::Granted(h)) = d.lease(&"a", None, t(3), None) else {
        panic!("an idle connection is granted at once")
    };
    assert_eq!((h.conn.0, d.served(h.lease.conn())), (1, 2));
    assert_eq!(d.core().counters().reuses, 1);
    check(&d, 1, &[1]);
    d.release(h.lease, h.conn, Returned::REUSE, t(4));
    check(&d, 1, &[]);
    assert!(events(&mut d).is_empty(), "no I/O on the warm path");
}

#[test]
fn a_handout_is_a_reuse_unless_straight_from_its_connect() {
    let mut d = driver(config(), Settings::default());
    // Granted at its connect to the request it was opened for: fresh.
    let w1 = queue(&mut d, "a", t(0));
    let w2 = queue(&mut d, "a", t(0));
    let (c1, c2) = (d.io().connects[0], d.io().connects[1]);
    d.connected(c1, Obj(1), t(1)).unwrap();
    let h1 = granted(answer(&mut d, w1));
    assert_eq!(
        (h1.conn.0, d.served(h1.lease.conn()), h1.reused),
        (1, 1, false)
    );
    // It goes back and serves the second request before that one's own
    // connect lands: a reuse (it served before).
    d.release(h1.lease, h1.conn, Returned::REUSE, t(2));
    let h2 = granted(answer(&mut d, w2));
    assert_eq!(
        (h2.conn.0, d.served(h2.lease.conn()), h2.reused),
        (1, 2, true)
    );
    // The second connection lands with no request left: it sits idle, so
    // its first lease is a reuse although it never served one.
    d.connected(c2, Obj(2), t(3)).unwrap();
    assert_eq!(d.core().stats().idle, 1);
    let Ok(Started::Granted(h3)) = d.lease(&"a", None, t(4), None) else {
        panic!("the idle connection is granted at once")
    };
    assert_eq!(
        (h3.conn.0, d.served(h3.lease.conn()), h3.reused),
        (2, 1, true)
    );
    d.release(h2.lease, h2.conn, Returned::REUSE, t(5));
    d.release(h3.lease, h3.conn, Returned::REUSE, t(5));

    // A grant at its connect whose future was dropped before it looked
    // (the abandoned-grant rule): back in the pool, its next lease is a
    // reuse.
    let w = queue(&mut d, "b", t(6));
    d.connected(last_connect(&d), Obj(3), t(7)).unwrap();
    d.cancel(w, t(8));
    let Ok(Started::Granted(h)) = d.lease(&"b", None, t(9), None) else {
        panic!("the abandoned connection is granted at once")
    };
    assert_eq!((h.conn.0, d.served(h.lease.conn()), h.reused), (3, 1, true));
    d.release(h.lease, h.conn, Returned::REUSE, t(10));

    // Warm-up: connected with no request at all.
    d.input(|core| {
        let warm = wharf_core::RouteConfig {
            min_idle: Some(1),
            ..Default::default()
        };
        core.set_route_config(&"c", warm, t(11))
    })
    .unwrap();
    d.connected(last_connect(&d), Obj(4), t(12)).unwrap();
    let Ok(Started::Granted(h)) = d.lease(&"c", None, t(13), None) else {
        panic!("the warmed-up connection is granted at once")
    };
    assert_eq!((h.conn.0, d.served(h.lease.conn()), h.reused), (4, 1, true));
    d.release(h.lease, h.conn, Returned::REUSE, t(14));
    check(&d, 4, &[]);
}

#[test]
fn a_lease_starts_with_the_tag_its_connection_was_released_with() {
    let mut d = driver(config(), Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    d.connected(last_connect(&d), Obj(1), t(1)).unwrap();
    let h = granted(answer(&mut d, ticket));
    let tagged = Returned::Reuse {
        keep_alive: None,
        tag: Some(Tag(5)),
    };
    d.release(h.lease, h.conn, tagged, t(2));
    let Ok(Started::Granted(h)) = d.lease(&"a", Some(Tag(5)), t(3), None) else {
        panic!()
    };
    assert_eq!(h.tag, Some(Tag(5)));
    d.release(h.lease, h.conn, Returned::REUSE, t(4));
    check(&d, 1, &[]);
}

// ---------------------------------------------------------------- queue

#[test]
fn queued_requests_are_answered_in_order() {
    let cfg = Config {
        max_per_route: 1,
        ..config()
    };
    let mut d = driver(cfg, Settings::default());
    let first = queue(&mut d, "a", t(0));
    let second = queue(&mut d, "a", t(1));
    let third = queue(&mut d, "a", t(2));
    assert_eq!(d.core().stats().pending, 3);
    d.connected(last_connect(&d), Obj(1), t(3)).unwrap();
    assert!(d.poll_answer(second, std::task::Waker::noop()).is_pending());
    let h = granted(answer(&mut d, first));
    d.release(h.lease, h.conn, Returned::REUSE, t(4));
    assert!(d.poll_answer(third, std::task::Waker::noop()).is_pending());
    let h = granted(answer(&mut d, second));
    d.release(h.lease, h.conn, Returned::REUSE, t(5));
    let h = granted(answer(&mut d, third));
    assert_eq!(h.conn.0, 1);
    d.release(h.lease, h.conn, Returned::REUSE, t(6));
    assert_eq!(d.core().counters().connects, 1);
    check(&d, 1, &[]);
}

// ---------------------------------------------------------------- cancel

#[test]
fn cancel_while_waiting_withdraws_the_request_and_the_connect_goes_on() {
    let mut d = driver(config(), Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    d.cancel(ticket, t(1));
    assert_eq!(d.core().stats().pending, 0);
    assert_eq!(d.core().counters().cancels, 1);
    assert!(
        d.is_connecting(conn),
        "CancelPolicy::Default keeps the connect"
    );
    d.connected(conn, Obj(1), t(2)).unwrap();
    assert_eq!(d.core().stats().idle, 1);
    // A second cancel of the freed ticket changes nothing.
    d.cancel(ticket, t(3));
    assert_eq!(d.core().counters().cancels, 1);
    check(&d, 1, &[]);
}

#[test]
fn cancel_with_close_excess_aborts_the_connect() {
    let settings = Settings {
        cancel_policy: CancelPolicy::CloseExcess,
    };
    let mut d = driver(config(), settings);
    let ticket = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    events(&mut d);
    d.cancel(ticket, t(1));
    assert_eq!(
        events(&mut d),
        vec![
            Ev::Close(conn, CloseReason::Excess, None),
            Ev::RouteIdle("a")
        ]
    );
    assert!(!d.is_connecting(conn));
    // The connect finishing anyway: its object is disposed of.
    assert!(d.connected(conn, Obj(1), t(2)).is_err());
    assert_eq!(events(&mut d), vec![Ev::Dispose(1)]);
    assert_eq!(d.core().stats().connections, 0);
    check(&d, 1, &[]);
}

#[test]
fn cancel_before_the_connect_lands_lets_the_next_request_have_it() {
    let cfg = Config {
        max_per_route: 1,
        ..config()
    };
    let mut d = driver(cfg, Settings::default());
    let first = queue(&mut d, "a", t(0));
    let second = queue(&mut d, "a", t(1));
    d.cancel(first, t(2));
    d.connected(last_connect(&d), Obj(1), t(3)).unwrap();
    let h = granted(answer(&mut d, second));
    assert_eq!(h.conn.0, 1);
    d.release(h.lease, h.conn, Returned::REUSE, t(4));
    check(&d, 1, &[]);
}

#[test]
fn cancel_after_a_failure_only_frees_the_ticket() {
    let mut d = driver(config(), Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    d.connect_failed(conn, ConnectFailure::Remote, "refused", t(1))
        .unwrap();
    let counters = *d.core().counters();
    d.cancel(ticket, t(2));
    assert_eq!(*d.core().counters(), counters, "the core is not touched");
    // The ticket is free again: a fixed table of one would refuse otherwise.
    let again = queue(&mut d, "a", t(3));
    d.cancel(again, t(4));
    check(&d, 0, &[]);
}

#[test]
fn cancel_during_a_validation_leaves_the_connection_idle() {
    let cfg = Config {
        validate_after_inactivity: Some(Duration::ZERO),
        ..config()
    };
    let mut d = driver(cfg, Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    d.connected(last_connect(&d), Obj(1), t(1)).unwrap();
    let h = granted(answer(&mut d, ticket));
    d.release(h.lease, h.conn, Returned::REUSE, t(2));
    d.io_mut().check = Check::Later;
    let ticket = queue(&mut d, "a", t(3));
    let (conn, obj) = d.io_mut().checking.pop().expect("validation asked for");
    d.cancel(ticket, t(4));
    d.validated(conn, obj, Validation::Alive, t(5)).unwrap();
    assert_eq!(d.core().stats().idle, 1);
    assert_eq!(d.core().stats().leased, 0);
    check(&d, 1, &[]);
}

// ---------------------------------------------------------------- abandoned grant

#[test]
fn an_abandoned_grant_goes_back_with_its_tag_and_remaining_keep_alive() {
    let cfg = Config {
        max_per_route: 2,
        ..config()
    };
    let mut d = driver(cfg, Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    d.connected(last_connect(&d), Obj(1), t(1)).unwrap();
    let holder = granted(answer(&mut d, ticket));
    let conn = holder.lease.conn();
    // A tagged request waits (the route's second connect is refused by
    // nothing: but its connect stays pending, so the release serves it).
    let waiting = match d.lease(&"a", Some(Tag(7)), t(2), None) {
        Ok(Started::Queued(t)) => t,
        other => panic!("{other:?}"),
    };
    let pending_connect = last_connect(&d);
    assert_ne!(pending_connect, conn);
    // The holder goes back tagged with a 50 ms keep-alive: granted to the
    // waiting request, whose future is dropped before it looks.
    let back = Returned::Reuse {
        keep_alive: Some(Duration::from_millis(50)),
        tag: Some(Tag(7)),
    };
    d.release(holder.lease, holder.conn, back, t(10));
    assert_eq!(d.core().stats().leased, 1, "granted to the waiting request");
    d.cancel(waiting, t(20));
    assert_eq!(d.core().stats().leased, 0);
    assert_eq!(d.core().route_stats(&"a").unwrap().idle, 1);
    // Its tag stayed: an untagged request does not get it.
    let _ = d.connect_failed(pending_connect, ConnectFailure::Local, "x", t(21));
    match d.lease(&"a", None, t(22), None) {
        Ok(Started::Queued(tk)) => d.cancel(tk, t(23)),
        other => panic!("the tagged connection went to an untagged lease: {other:?}"),
    }
    // Its keep-alive stayed: it expires 50 ms after the holder's release.
    events(&mut d);
    d.handle_timeout(t(59));
    assert!(!events(&mut d)
        .iter()
        .any(|e| matches!(e, Ev::Close(c, _, _) if *c == conn)));
    d.handle_timeout(t(60));
    assert!(events(&mut d).contains(&Ev::Close(conn, CloseReason::Expired, Some(1))));
    check(&d, 1, &[]);
}

#[test]
fn an_abandoned_grant_whose_keep_alive_passed_closes_as_expired() {
    let cfg = Config {
        max_per_route: 1,
        ..config()
    };
    let mut d = driver(cfg, Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    d.connected(conn, Obj(1), t(1)).unwrap();
    let holder = granted(answer(&mut d, ticket));
    let waiting = queue(&mut d, "a", t(2));
    let back = Returned::Reuse {
        keep_alive: Some(Duration::from_millis(5)),
        tag: None,
    };
    d.release(holder.lease, holder.conn, back, t(10));
    events(&mut d);
    // Dropped after the keep-alive passed (no timer ran in between).
    d.cancel(waiting, t(30));
    assert_eq!(
        events(&mut d),
        vec![
            Ev::Close(conn, CloseReason::Expired, Some(1)),
            Ev::RouteIdle("a")
        ]
    );
    check(&d, 1, &[]);
}

// ---------------------------------------------------------------- connect failures

#[test]
fn every_kind_of_connect_failure_is_kept_as_the_backend_reports_it() {
    for reason in [
        ConnectFailure::Timeout,
        ConnectFailure::Local,
        ConnectFailure::Remote,
    ] {
        let mut d = driver(config(), Settings::default());
        let a = queue(&mut d, "a", t(0));
        let b = queue(&mut d, "a", t(0));
        let (w, count) = waker();
        assert!(d.poll_answer(b, &w).is_pending());
        let conn = last_connect(&d);
        d.connect_failed(conn, reason, "boom", t(1)).unwrap();
        assert_eq!(count.wakes(), 1);
        for ticket in [a, b] {
            let (r, error, note) = failed(answer(&mut d, ticket));
            assert_eq!(r, FailReason::ConnectFailed(reason));
            assert_eq!(
                error,
                Some("boom"),
                "the backend's error reaches every request"
            );
            assert_eq!(note, 1, "Io::failed saw the failure once");
        }
        assert_eq!(d.core().counters().connect_failures_for(reason), 1);
        let others: u64 = d.core().counters().connect_failures.iter().sum();
        assert_eq!(others, 1, "{reason:?} counted as itself only");
        check(&d, 0, &[]);
    }
}

#[test]
fn a_lost_connect_fails_every_request_without_an_error_and_frees_the_slot() {
    // One connect for the route's two requests.
    let cfg = Config {
        max_per_route: 1,
        ..config()
    };
    let mut d = driver(cfg, Settings::default());
    let a = queue(&mut d, "a", t(0));
    let b = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    d.connect_lost(conn, ConnectFailure::Local, t(1)).unwrap();
    for ticket in [a, b] {
        let (r, error, note) = failed(answer(&mut d, ticket));
        assert_eq!(r, FailReason::ConnectFailed(ConnectFailure::Local));
        assert_eq!(error, None, "a lost connect has no error to hand on");
        assert_eq!(note, 1);
    }
    assert_eq!(d.core().stats().connecting, 0);
    // Once only: a second report, or a result after it, is unwanted.
    assert!(d.connect_lost(conn, ConnectFailure::Local, t(2)).is_err());
    assert!(d.connected(conn, Obj(1), t(3)).is_err());
    // The late object was disposed of, not kept.
    check(&d, 1, &[]);
}

#[test]
fn the_cores_connect_timeout_aborts_the_connect_and_late_results_are_disposed_of() {
    let mut d = driver(config(), Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    events(&mut d);
    d.handle_timeout(t(100));
    let evs = events(&mut d);
    assert_eq!(evs[0], Ev::Close(conn, CloseReason::ConnectTimeout, None));
    let (r, error, _) = failed(answer(&mut d, ticket));
    assert_eq!(r, FailReason::ConnectFailed(ConnectFailure::Timeout));
    assert_eq!(error, None, "no backend error for the core's own timeout");
    // The backend's results come too late.
    assert!(d
        .connect_failed(conn, ConnectFailure::Local, "late", t(101))
        .is_err());
    assert!(d.connected(conn, Obj(1), t(102)).is_err());
    assert_eq!(events(&mut d), vec![Ev::Dispose(1)]);
    assert_eq!(
        d.core()
            .counters()
            .connect_failures_for(ConnectFailure::Timeout),
        1
    );
    assert_eq!(
        d.core()
            .counters()
            .connect_failures_for(ConnectFailure::Local),
        0
    );
    check(&d, 1, &[]);
}

#[test]
fn a_result_for_an_older_connection_in_the_same_slot_is_not_mixed_up() {
    let mut d = driver(config(), Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    let old = last_connect(&d);
    d.handle_timeout(t(100)); // times out; the slot is free again
    let _ = failed(answer(&mut d, ticket));
    let ticket = queue(&mut d, "a", t(200));
    let new = last_connect(&d);
    assert_eq!(new.index(), old.index(), "the slot is reused");
    assert!(d.connected(old, Obj(1), t(201)).is_err());
    assert!(d.is_connecting(new));
    d.connected(new, Obj(2), t(202)).unwrap();
    let h = granted(answer(&mut d, ticket));
    assert_eq!(h.conn.0, 2);
    d.release(h.lease, h.conn, Returned::REUSE, t(203));
    check(&d, 2, &[]);
}

// ---------------------------------------------------------------- validation

#[test]
fn a_validation_answered_at_once_grants_within_the_same_input() {
    let cfg = Config {
        validate_after_inactivity: Some(Duration::ZERO),
        ..config()
    };
    let mut d = driver(cfg, Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    d.connected(conn, Obj(1), t(1)).unwrap();
    let h = granted(answer(&mut d, ticket));
    d.release(h.lease, h.conn, Returned::REUSE, t(2));
    events(&mut d);
    let ticket = queue(&mut d, "a", t(3));
    assert_eq!(events(&mut d), vec![Ev::Validate(conn, 1)]);
    let h = granted(answer(&mut d, ticket));
    assert_eq!(h.conn.0, 1);
    d.release(h.lease, h.conn, Returned::REUSE, t(4));
    // Stale: closed, and the request gets a new connection.
    d.io_mut().check = Check::Now(Validation::Stale);
    let ticket = queue(&mut d, "a", t(5));
    let evs = events(&mut d);
    assert_eq!(evs[0], Ev::Validate(conn, 1));
    assert_eq!(evs[1], Ev::Close(conn, CloseReason::Stale, Some(1)));
    assert!(matches!(evs[2], Ev::Connect(_, "a")));
    d.connected(last_connect(&d), Obj(2), t(6)).unwrap();
    let h = granted(answer(&mut d, ticket));
    assert_eq!(h.conn.0, 2);
    d.release(h.lease, h.conn, Returned::REUSE, t(7));
    check(&d, 2, &[]);
}

#[test]
fn a_validation_answered_later_and_one_answered_after_a_drain() {
    let cfg = Config {
        validate_after_inactivity: Some(Duration::ZERO),
        ..config()
    };
    let mut d = driver(cfg, Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    d.connected(conn, Obj(1), t(1)).unwrap();
    let h = granted(answer(&mut d, ticket));
    d.release(h.lease, h.conn, Returned::REUSE, t(2));
    d.io_mut().check = Check::Later;
    let ticket = queue(&mut d, "a", t(3));
    assert!(d.poll_answer(ticket, std::task::Waker::noop()).is_pending());
    let (c, obj) = d.io_mut().checking.pop().unwrap();
    assert_eq!(c, conn);
    d.validated(c, obj, Validation::Alive, t(4)).unwrap();
    let h = granted(answer(&mut d, ticket));
    d.release(h.lease, h.conn, Returned::REUSE, t(5));

    // Out for validation when the peer closes it: closed without its
    // object, the request is served by a new connection, and the object
    // coming back is disposed of.
    let ticket = queue(&mut d, "a", t(6));
    let (c, obj) = d.io_mut().checking.pop().unwrap();
    events(&mut d);
    d.input(|core| core.peer_closed(c, t(7))).unwrap();
    let evs = events(&mut d);
    assert_eq!(
        evs[0],
        Ev::Close(conn, CloseReason::PeerClosed, None),
        "{evs:?}"
    );
    assert!(matches!(evs[1], Ev::Connect(_, "a")), "{evs:?}");
    assert!(d.validated(c, obj, Validation::Alive, t(8)).is_err());
    assert_eq!(events(&mut d), vec![Ev::Dispose(1)]);
    d.connected(last_connect(&d), Obj(2), t(9)).unwrap();
    let h = granted(answer(&mut d, ticket));
    assert_eq!(h.conn.0, 2);
    d.release(h.lease, h.conn, Returned::REUSE, t(10));

    // Out for validation when the route drains: it closes (with its object)
    // once it is back, and the request gets a new connection.
    d.io_mut().check = Check::Later;
    let ticket = queue(&mut d, "a", t(11));
    let (c, obj) = d.io_mut().checking.pop().unwrap();
    events(&mut d);
    d.input(|core| core.drain(DrainScope::All, DrainMode::DrainExisting, t(12)));
    d.validated(c, obj, Validation::Alive, t(13)).unwrap();
    let evs = events(&mut d);
    assert_eq!(
        evs[0],
        Ev::Close(c, CloseReason::Drained, Some(2)),
        "{evs:?}"
    );
    assert!(matches!(evs[1], Ev::Connect(_, "a")), "{evs:?}");
    d.connected(last_connect(&d), Obj(3), t(14)).unwrap();
    let h = granted(answer(&mut d, ticket));
    assert_eq!(h.conn.0, 3);
    d.release(h.lease, h.conn, Returned::REUSE, t(15));
    check(&d, 3, &[]);
}

// ---------------------------------------------------------------- hand-out check

#[test]
fn a_connection_dead_at_hand_out_is_closed_as_peer_closed_and_the_request_asks_again() {
    let mut d = driver(config(), Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    d.connected(conn, Obj(1), t(1)).unwrap();
    let h = granted(answer(&mut d, ticket));
    d.release(h.lease, h.conn, Returned::REUSE, t(2));
    events(&mut d);
    let Ok(Started::Granted(h)) = d.lease(&"a", None, t(3), None) else {
        panic!()
    };
    d.dead_at_handout(h, t(3));
    let evs = events(&mut d);
    assert_eq!(evs[0], Ev::Close(conn, CloseReason::PeerClosed, Some(1)));
    assert_eq!(d.core().counters().closes_for(CloseReason::PeerClosed), 1);
    // Asking again: a new connection.
    let ticket = queue(&mut d, "a", t(4));
    d.connected(last_connect(&d), Obj(2), t(5)).unwrap();
    let h = granted(answer(&mut d, ticket));
    assert_eq!(h.conn.0, 2);
    d.release(h.lease, h.conn, Returned::REUSE, t(6));
    assert_eq!(d.handout_tries(), 8, "connection slots + 2");
    check(&d, 2, &[]);
}

// ---------------------------------------------------------------- release

#[test]
fn release_paths_discard_peer_closed_stale_and_detach() {
    let mut d = driver(config(), Settings::default());
    let a = queue(&mut d, "a", t(0));
    let b = queue(&mut d, "a", t(0));
    let (ca, cb) = {
        let evs = events(&mut d);
        let c: Vec<_> = evs
            .iter()
            .filter_map(|e| match e {
                Ev::Connect(c, _) => Some(*c),
                _ => None,
            })
            .collect();
        (c[0], c[1])
    };
    d.connected(ca, Obj(1), t(1)).unwrap();
    d.connected(cb, Obj(2), t(1)).unwrap();
    let ha = granted(answer(&mut d, a));
    let hb = granted(answer(&mut d, b));
    let (la, lb) = (ha.lease, hb.lease);
    let c1 = ha.lease.conn();
    d.release(ha.lease, ha.conn, Returned::Discard, t(2));
    d.release(hb.lease, hb.conn, Returned::PeerClosed, t(2));
    let evs = events(&mut d);
    assert!(evs.contains(&Ev::Close(c1, CloseReason::Discarded, Some(1))));
    assert!(evs.contains(&Ev::Close(lb.conn(), CloseReason::PeerClosed, Some(2))));
    // A second release of the same lease: the core refuses it (its one
    // check of the lease), the object is disposed of, nothing else changes.
    let counters = *d.core().counters();
    d.release(la, Obj(3), Returned::REUSE, t(3));
    assert_eq!(events(&mut d), vec![Ev::Dispose(3)]);
    assert_eq!(*d.core().counters(), counters);
    // Detach: the caller keeps the object; the pool forgets the connection.
    let c = queue(&mut d, "a", t(4));
    let cc = last_connect(&d);
    d.connected(cc, Obj(4), t(5)).unwrap();
    let hc = granted(answer(&mut d, c));
    events(&mut d);
    d.detach(hc.lease, t(6));
    let evs = events(&mut d);
    assert_eq!(evs[0], Ev::Close(cc, CloseReason::Discarded, None));
    assert_eq!(d.core().stats().connections, 0);
    check(&d, 4, &[4]);
}

#[test]
fn a_stale_release_while_the_connection_is_leased_again_leaves_the_new_lease_alone() {
    let mut d = driver(config(), Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    d.connected(last_connect(&d), Obj(1), t(1)).unwrap();
    let first = granted(answer(&mut d, ticket));
    let stale = first.lease;
    d.release(first.lease, first.conn, Returned::REUSE, t(2));
    // The same connection, leased again: a new lease on the same slot.
    let Ok(Started::Granted(second)) = d.lease(&"a", None, t(3), None) else {
        panic!("the idle connection is granted at once")
    };
    assert_eq!(second.lease.conn(), stale.conn());
    events(&mut d);
    // The first lease given back a second time: the core refuses it, its
    // object is disposed of and the slot stays lent to the second lease.
    d.release(stale, Obj(9), Returned::REUSE, t(4));
    assert_eq!(events(&mut d), vec![Ev::Dispose(9)]);
    assert_eq!(d.core().stats().leased, 1);
    // The second lease's release puts its object back, and it is reused.
    d.release(second.lease, second.conn, Returned::REUSE, t(5));
    assert!(events(&mut d).is_empty());
    let Ok(Started::Granted(third)) = d.lease(&"a", None, t(6), None) else {
        panic!("the idle connection is granted at once")
    };
    assert_eq!((third.conn.0, d.served(third.lease.conn())), (1, 3));
    d.release(third.lease, third.conn, Returned::REUSE, t(7));
    // Objects 1 (idle) and 9 (disposed of).
    check(&d, 2, &[]);
}

// ---------------------------------------------------------------- close ordering

#[test]
fn a_close_runs_before_the_connect_that_replaces_it() {
    let cfg = Config {
        max_total: 1,
        max_per_route: 1,
        ..config()
    };
    let mut d = driver(cfg, Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    let ca = last_connect(&d);
    d.connected(ca, Obj(1), t(1)).unwrap();
    let h = granted(answer(&mut d, ticket));
    d.release(h.lease, h.conn, Returned::REUSE, t(2));
    events(&mut d);
    // Total limit reached by an idle connection of another route: evicted.
    let ticket = queue(&mut d, "b", t(3));
    let evs = events(&mut d);
    let close = evs
        .iter()
        .position(|e| *e == Ev::Close(ca, CloseReason::Evicted, Some(1)))
        .expect("the idle connection of route a is evicted");
    let connect = evs
        .iter()
        .position(|e| matches!(e, Ev::Connect(_, "b")))
        .expect("a connect for route b");
    assert!(close < connect, "{evs:?}");
    d.connected(last_connect(&d), Obj(2), t(4)).unwrap();
    let h = granted(answer(&mut d, ticket));
    let other_tag = Returned::Reuse {
        keep_alive: None,
        tag: Some(Tag(2)),
    };
    d.release(h.lease, h.conn, other_tag, t(5));

    // Same on one route: a request for another tag closes the idle
    // connection to make room (route limit), then connects.
    events(&mut d);
    let ticket = match d.lease(&"b", Some(Tag(1)), t(6), None) {
        Ok(Started::Queued(t)) => t,
        other => panic!("{other:?}"),
    };
    let evs = events(&mut d);
    let close = evs
        .iter()
        .position(|e| matches!(e, Ev::Close(_, _, Some(2))))
        .expect("the connection of the other tag is closed");
    let connect = evs
        .iter()
        .position(|e| matches!(e, Ev::Connect(_, "b")))
        .expect("a connect for the tagged request");
    assert!(close < connect, "{evs:?}");
    d.cancel(ticket, t(7));
    check(&d, 2, &[]);
}

// ---------------------------------------------------------------- timer

#[test]
fn the_timer_is_woken_only_when_the_next_deadline_moves_earlier() {
    let mut d = driver(config(), Settings::default());
    let (w, count) = waker();
    assert_eq!(d.arm_timer(), None);
    assert!(d.poll_timer(&w).is_pending());
    // A lease with a deadline: earlier than "never".
    let a = match d.lease(&"a", None, t(0), Some(t(500))) {
        Ok(Started::Queued(t)) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(count.wakes(), 1);
    assert!(d.poll_timer(&w).is_ready());
    // The timer task arms for the connect timeout (100 ms).
    assert_eq!(d.arm_timer(), Some(t(100)));
    assert!(d.poll_timer(&w).is_pending());
    // Later deadlines do not disturb it.
    let b = match d.lease(&"a", None, t(1), Some(t(900))) {
        Ok(Started::Queued(t)) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(count.wakes(), 1);
    assert!(d.poll_timer(&w).is_pending());
    // An earlier one does (a new route's connect times out at 102 ms, but
    // the lease deadline at 50 ms is the earliest).
    let c = match d.lease(&"b", None, t(2), Some(t(50))) {
        Ok(Started::Queued(t)) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(count.wakes(), 2);
    assert!(d.poll_timer(&w).is_ready());
    assert_eq!(d.arm_timer(), Some(t(50)));
    d.handle_timeout(t(50));
    let (r, _, _) = failed(answer(&mut d, c));
    assert_eq!(r, FailReason::Timeout);
    // kick_timer wakes it whatever the deadline.
    d.arm_timer();
    assert!(d.poll_timer(&w).is_pending());
    d.kick_timer();
    assert_eq!(count.wakes(), 3);
    d.cancel(a, t(60));
    d.cancel(b, t(60));
    check(&d, 0, &[]);
}

#[test]
fn deferred_wakes_wait_for_take_waker_and_each_is_taken_once() {
    let mut d = driver(config(), Settings::default());
    d.defer_wakes(true);
    let (tw, timer) = waker();
    assert_eq!(d.arm_timer(), None);
    assert!(d.poll_timer(&tw).is_pending());
    // Two queued requests, their futures waiting.
    let (wa, a_count) = waker();
    let (wb, b_count) = waker();
    let a = match d.lease(&"a", None, t(0), Some(t(500))) {
        Ok(Started::Queued(t)) => t,
        other => panic!("{other:?}"),
    };
    let b = match d.lease(&"a", None, t(0), Some(t(500))) {
        Ok(Started::Queued(t)) => t,
        other => panic!("{other:?}"),
    };
    // The first lease moved the deadline earlier: the timer's kick waits.
    assert_eq!(timer.wakes(), 0);
    assert!(d.has_wakes());
    d.take_waker().expect("the timer's kick").wake();
    assert_eq!(timer.wakes(), 1);
    assert!(!d.has_wakes() && d.take_waker().is_none());
    assert!(d.poll_timer(&tw).is_ready());
    assert!(d.poll_answer(a, &wa).is_pending());
    assert!(d.poll_answer(b, &wb).is_pending());
    let conns: Vec<_> = events(&mut d)
        .into_iter()
        .filter_map(|e| match e {
            Ev::Connect(c, _) => Some(c),
            _ => None,
        })
        .collect();
    // Both connects succeed: both answers are stored, no future woken yet.
    d.connected(conns[0], Obj(1), t(1)).unwrap();
    d.connected(conns[1], Obj(2), t(1)).unwrap();
    assert_eq!((a_count.wakes(), b_count.wakes()), (0, 0));
    assert!(d.has_wakes());
    let mut taken = 0;
    while let Some(w) = d.take_waker() {
        w.wake();
        taken += 1;
    }
    assert_eq!(taken, 2);
    assert_eq!((a_count.wakes(), b_count.wakes()), (1, 1));
    let ha = granted(answer(&mut d, a));
    let hb = granted(answer(&mut d, b));
    // A listed ticket whose answer was picked up before its wake was taken
    // (its future polled again meanwhile) wakes nobody.
    let (wc, c_count) = waker();
    let c = match d.lease(&"a", None, t(2), None) {
        Ok(Started::Queued(t)) => t,
        other => panic!("{other:?}"),
    };
    assert!(d.poll_answer(c, &wc).is_pending());
    d.release(ha.lease, ha.conn, Returned::REUSE, t(3));
    let hc = granted(answer(&mut d, c));
    assert!(d.take_waker().is_none() && !d.has_wakes());
    assert_eq!(c_count.wakes(), 0);
    d.release(hb.lease, hb.conn, Returned::REUSE, t(4));
    d.release(hc.lease, hc.conn, Returned::REUSE, t(5));
    check(&d, 2, &[]);
}

// ---------------------------------------------------------------- answer table

#[test]
fn a_fixed_answer_table_refuses_before_asking_the_core_and_an_owned_one_grows() {
    let mut d = fixed_driver(config(), 1);
    let first = queue(&mut d, "a", t(0));
    let queued = d.core().counters().queued;
    assert!(matches!(
        d.lease(&"a", None, t(1), None),
        Err(StartError::NoTicket)
    ));
    assert_eq!(d.core().counters().queued, queued, "the core was not asked");
    // A failure not picked up yet keeps its ticket.
    d.connect_failed(last_connect(&d), ConnectFailure::Local, "x", t(2))
        .unwrap();
    assert!(matches!(
        d.lease(&"a", None, t(3), None),
        Err(StartError::NoTicket)
    ));
    let _ = failed(answer(&mut d, first));
    let again = queue(&mut d, "a", t(4));
    d.cancel(again, t(5));

    // Owned tables: 8 waiters + 6 connections to start with; failures nobody
    // picked up make it grow instead of refusing.
    let cfg = Config {
        max_total: 1,
        max_per_route: 1,
        ..config()
    };
    let mut d = driver(cfg, Settings::default());
    let mut tickets = Vec::new();
    for round in 0..3 {
        for i in 0..8 {
            tickets.push(queue(&mut d, "a", t(round * 10 + i)));
        }
        let conn = last_connect(&d);
        d.connect_failed(conn, ConnectFailure::Remote, "no", t(round * 10 + 9))
            .unwrap();
    }
    assert_eq!(tickets.len(), 24);
    for ticket in tickets {
        let (r, _, _) = failed(answer(&mut d, ticket));
        assert_eq!(r, FailReason::ConnectFailed(ConnectFailure::Remote));
    }
    check(&d, 0, &[]);
}

#[test]
fn refusals_of_the_core_are_typed_and_drain_the_timers_they_ran() {
    let cfg = Config {
        max_pending: Some(1),
        ..config()
    };
    let mut d = driver(cfg, Settings::default());
    let a = match d.lease(&"a", None, t(0), Some(t(10))) {
        Ok(Started::Queued(t)) => t,
        other => panic!("{other:?}"),
    };
    // The refused lease ran the timers due at its `now`: the first request
    // timed out, and its failure was delivered in the same drain.
    let (w, count) = waker();
    assert!(d.poll_answer(a, &w).is_pending());
    assert!(matches!(
        d.lease(&"a", None, t(5), None),
        Err(StartError::Refused(LeaseError::Overflow))
    ));
    let r = d.lease(&"a", None, t(20), Some(t(20)));
    assert!(matches!(r, Err(StartError::Refused(LeaseError::Timeout))));
    assert_eq!(count.wakes(), 1);
    let (reason, _, _) = failed(answer(&mut d, a));
    assert_eq!(reason, FailReason::Timeout);
    check(&d, 0, &[]);
}

#[test]
fn an_idle_route_is_reported_to_the_io() {
    let mut d = driver(config(), Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    d.connect_failed(last_connect(&d), ConnectFailure::Local, "x", t(1))
        .unwrap();
    let _ = failed(answer(&mut d, ticket));
    assert!(events(&mut d).contains(&Ev::RouteIdle("a")));
    let _ = Poll::<()>::Pending;
}

// ---------------------------------------------------------------- watch

#[test]
fn an_idle_connection_is_watched_and_closed_at_once_when_its_watcher_reports_it() {
    let mut d = driver(config(), Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    d.connected(conn, Obj(1), t(1)).unwrap();
    // Granted at once to the waiter: watched as it came in, nothing seen.
    assert_eq!(d.io().watched, vec![(conn, 1)]);
    let h = granted(answer(&mut d, ticket));
    d.release(h.lease, h.conn, Returned::REUSE, t(5));
    assert_eq!(d.io().watched, vec![(conn, 1), (conn, 1)], "watched again");
    events(&mut d);
    // The watcher's waker fired: the peer closed it. Closed at once.
    d.io_mut()
        .seen
        .insert(1, wharf_driver::ConnEvent::PeerClosed);
    assert!(d.watch(conn.index(), t(9)));
    assert_eq!(
        events(&mut d),
        vec![
            Ev::Close(conn, CloseReason::PeerClosed, Some(1)),
            Ev::RouteIdle("a")
        ]
    );
    assert!(!d.watch(conn.index(), t(10)), "nothing held any more");
    // The next lease connects anew.
    let _ticket = queue(&mut d, "a", t(11));
    assert_eq!(d.core().counters().connects, 2);
    check(&d, 1, &[]);
}

#[test]
fn a_close_the_watcher_knows_at_release_closes_the_connection_there() {
    let mut d = driver(config(), Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    let conn = last_connect(&d);
    d.connected(conn, Obj(1), t(1)).unwrap();
    let h = granted(answer(&mut d, ticket));
    events(&mut d);
    d.io_mut()
        .seen
        .insert(1, wharf_driver::ConnEvent::PeerClosed);
    d.release(h.lease, h.conn, Returned::REUSE, t(2));
    assert_eq!(
        events(&mut d),
        vec![
            Ev::Close(conn, CloseReason::PeerClosed, Some(1)),
            Ev::RouteIdle("a")
        ]
    );
    assert_eq!(d.core().stats().connections, 0);
    check(&d, 1, &[]);
}

#[test]
fn a_handout_carries_the_time_its_connection_was_idle() {
    let mut d = driver(config(), Settings::default());
    let ticket = queue(&mut d, "a", t(0));
    d.connected(last_connect(&d), Obj(1), t(1)).unwrap();
    let h = granted(answer(&mut d, ticket));
    assert_eq!(h.idle, Duration::ZERO);
    d.release(h.lease, h.conn, Returned::REUSE, t(10));
    let Ok(Started::Granted(h)) = d.lease(&"a", None, t(35), None) else {
        panic!()
    };
    assert_eq!(h.idle, Duration::from_millis(25));
    d.release(h.lease, h.conn, Returned::REUSE, t(36));
    check(&d, 1, &[]);
}

// ---------------------------------------------------------------- multiplexed

#[test]
fn a_multiplexed_connection_lends_handles_up_to_its_capacity_and_follows_its_watcher() {
    let mut cfg = config();
    cfg.max_per_route = 1;
    cfg.max_total = 1;
    let mut d = driver(cfg, Settings::default());
    let tickets: Vec<_> = (0..3).map(|i| queue(&mut d, "a", t(i))).collect();
    let conn = last_connect(&d);
    d.connected_multiplexed(conn, Obj(1), 2, t(3)).unwrap();
    let a = granted(answer(&mut d, tickets[0]));
    let b = granted(answer(&mut d, tickets[1]));
    // Each lease has a handle of its own; the object stays in the table.
    assert_eq!((a.conn.0, b.conn.0), (1001, 2001));
    assert_eq!((a.lease.conn(), b.lease.conn()), (conn, conn));
    assert!(d
        .poll_answer(tickets[2], std::task::Waker::noop())
        .is_pending());
    // The peer raises its capacity: the third is served on the same connection.
    d.io_mut()
        .seen
        .insert(1, wharf_driver::ConnEvent::Capacity(3));
    assert!(d.watch(conn.index(), t(4)));
    let c = granted(answer(&mut d, tickets[2]));
    assert_eq!((c.conn.0, c.lease.conn()), (3001, conn));
    // Lowered to 1 with 3 out: no new lease until fewer than 1 are out.
    d.io_mut()
        .seen
        .insert(1, wharf_driver::ConnEvent::Capacity(1));
    d.watch(conn.index(), t(5));
    d.release(a.lease, a.conn, Returned::REUSE, t(6));
    d.release(b.lease, b.conn, Returned::REUSE, t(6));
    let waiting = queue(&mut d, "a", t(7));
    assert!(d
        .poll_answer(waiting, std::task::Waker::noop())
        .is_pending());
    d.release(c.lease, c.conn, Returned::REUSE, t(8));
    let e = granted(answer(&mut d, waiting));
    assert_eq!(e.lease.conn(), conn);
    // A GOAWAY with a lease out: it drains; closes with its last lease.
    events(&mut d);
    d.io_mut()
        .seen
        .insert(1, wharf_driver::ConnEvent::PeerClosed);
    d.watch(conn.index(), t(9));
    assert!(events(&mut d).is_empty(), "a lease is out: it drains");
    d.release(e.lease, e.conn, Returned::REUSE, t(10));
    assert_eq!(
        events(&mut d),
        vec![
            Ev::Close(conn, CloseReason::PeerClosed, Some(1)),
            Ev::RouteIdle("a")
        ]
    );
    assert!(
        !d.io().gone.iter().any(|&n| n > 1000),
        "handles are dropped, not closed"
    );
    d.core().check_invariants().unwrap();
}
