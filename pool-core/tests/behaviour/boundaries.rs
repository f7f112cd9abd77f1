//! Rules at their boundaries: each test here pins a comparison or a formula
//! that `cargo mutants` (CONTRIBUTING.md, "Mutation testing") found no test
//! distinguishing from a neighbour (`>` from `>=`, `-` from `+`, a body from
//! `Ok(())`). Each names the rule of `docs/SEMANTICS.md` it comes from and
//! the mutant it kills.

use crate::support::*;
use wharf_core::*;

// ---- §7 `set_max_total` / `set_max_per_route` (pool/limits.rs) ----

/// §7: `max_total` above the connection slots is refused; equal to them is
/// accepted. Kills `>` -> `>=` in `set_max_total`'s storage check.
#[test]
fn max_total_may_be_raised_to_exactly_the_connection_slots() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    assert_eq!(
        p.set_max_total(9, t(0)),
        Err(ConfigError::MaxTotalExceedsStorage)
    );
    p.set_max_total(8, t(0)).unwrap();
    assert_eq!(p.stats().max_total, 8);
    quiet(&mut p);
}

/// §7/§5: the pool is *over* a lowered `max_total` only while the connections
/// exceed it; exactly at it, a released connection goes idle (no
/// `TotalLimit`). Kills `>` -> `>=` in `over_total`'s formula.
#[test]
fn max_total_lowered_to_exactly_the_open_connections_closes_nothing_on_release() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    p.set_max_total(2, t(1)).unwrap();
    quiet(&mut p);
    assert_eq!(release(&mut p, l1, Release::REUSE, t(2)), vec![]);
    assert_eq!(release(&mut p, l2, Release::REUSE, t(3)), vec![]);
    assert_eq!((p.stats().connections, p.stats().idle), (2, 2));
    assert_eq!(p.counters().closes_for(CloseReason::TotalLimit), 0);
}

/// §7: over a lowered `max_total` means "the connections not opened by the
/// starvation guard exceed it": a guard connection does not make the pool
/// over. Kills `-` -> `+` in `total - guard_conns`.
#[test]
fn guard_connections_do_not_count_against_a_lowered_max_total() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 1,
            max_per_route: 1,
            starvation_guard: true,
            ..cfg()
        },
    );
    let la = open(&mut p, A, t(0));
    // B gets a guard connect past the total (§3.3 step 2).
    let lb = open(&mut p, B, t(1));
    assert_eq!(p.counters().guard_connects, 1);
    assert_eq!(p.stats().connections, 2);
    // Set to what it is: one non-guard connection, not over.
    p.set_max_total(1, t(2)).unwrap();
    quiet(&mut p);
    assert_eq!(release(&mut p, la, Release::REUSE, t(3)), vec![]);
    assert_eq!(release(&mut p, lb, Release::REUSE, t(3)), vec![]);
    assert_eq!(p.counters().closes_for(CloseReason::TotalLimit), 0);
    assert_eq!((p.stats().connections, p.stats().idle), (2, 2));
}

/// §7: a default route limit below `min_idle_per_route` is refused
/// (`MinIdleTooLarge`); equal to it is accepted. Kills `>` -> `>=` and
/// `>` -> `==` in `set_max_per_route`'s `min_idle` check.
#[test]
fn max_per_route_may_be_lowered_to_min_idle_but_not_below() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 3,
            min_idle_per_route: 2,
            ..cfg()
        },
    );
    assert_eq!(
        p.set_max_per_route(1, t(0)),
        Err(ConfigError::MinIdleTooLarge)
    );
    p.set_max_per_route(2, t(0)).unwrap();
    quiet(&mut p);
}

/// §7: the same against a route's own `min_idle` override (without a limit
/// override): equal to the new default limit is accepted, above it refused.
/// Kills `>` -> `>=` in the per-route `min_idle` check.
#[test]
fn max_per_route_may_be_lowered_to_a_routes_min_idle_override_but_not_below() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let one = RouteConfig {
        min_idle: Some(1),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, one, t(0)).unwrap();
    let v = acts(&mut p);
    let c = single_connect(&p, &v, A);
    assert_eq!(connect(&mut p, c, 1, t(0)), vec![]);
    p.set_max_per_route(1, t(1)).unwrap();
    quiet(&mut p);
    let two = RouteConfig {
        min_idle: Some(2),
        ..RouteConfig::default()
    };
    p.set_max_per_route(2, t(2)).unwrap();
    p.set_route_config(&A, two, t(2)).unwrap();
    let v = acts(&mut p);
    let c2 = single_connect(&p, &v, A);
    assert_eq!(connect(&mut p, c2, 1, t(2)), vec![]);
    assert_eq!(
        p.set_max_per_route(1, t(3)),
        Err(ConfigError::MinIdleTooLarge)
    );
    assert_eq!(p.route_stats(&A).unwrap().limit, 2);
}

// ---- §7 `cancel` with `CloseExcess` (pool/lease.rs, `close_excess`) ----

/// §7: with `CloseExcess` the oldest connecting connection closes when
/// `(len(queue) + active) * ratio <= connecting_capacity - per_conn + active`.
/// Leases in use count on both sides: one lease out, one waiter with its
/// connect; cancelling the waiter gives `(0 + 1) * 1 <= 1 - 1 + 1`, exactly at
/// the bound: the connect is excess. Kills the mutants of the formula's right
/// side (`<=` -> `>`, `+ active` -> `- active` / `* active`, `* 1000` ->
/// `+ 1000` / `/ 1000`).
#[test]
fn close_excess_counts_leases_in_use_and_closes_at_the_bound() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let _l = open(&mut p, A, t(0));
    let (w, c) = lease_connect(&mut p, A, t(1));
    assert_eq!(
        p.cancel(w, CancelPolicy::CloseExcess, t(2)),
        Ok(Cancelled::Waiting)
    );
    assert_eq!(acts(&mut p), vec![close(c, CloseReason::Excess)]);
    assert_eq!(p.counters().closes_for(CloseReason::Excess), 1);
    let rs = p.route_stats(&A).unwrap();
    assert_eq!((rs.connections, rs.connecting, rs.leased), (1, 0, 1));
}

/// §7 with §1's `per_conn`: a connection counts for `connecting_capacity`
/// waiters while it connects. Two waiters share one connect
/// (`connecting_capacity: 2`); cancelling one leaves `1 * 1 > 2 - 2 + 0`:
/// the connect is still needed. Kills the mutants of `connecting_capacity`
/// (`count * per` -> `count + per` / `count / per`) and of the bound's left
/// side (`* ratio`, `queue + active`, `cc - per` -> `cc + per` / `cc / per`).
#[test]
fn close_excess_keeps_a_connect_shared_by_the_waiters_left() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            connecting_capacity: 2,
            ..cfg()
        },
    );
    let (w1, c) = lease_connect(&mut p, A, t(0));
    let w2 = lease_wait(&mut p, A, None, t(0));
    assert_eq!(p.stats().connecting, 1);
    assert_eq!(
        p.cancel(w2, CancelPolicy::CloseExcess, t(1)),
        Ok(Cancelled::Waiting)
    );
    quiet(&mut p);
    assert_eq!(p.counters().closes_for(CloseReason::Excess), 0);
    let v = connect(&mut p, c, 1, t(2));
    assert_eq!(single_grant(&v, w1).conn(), c);
}

// ---- §2 time: due timers in (deadline, sequence) order (pool/timers.rs) ----

/// §2: "Due timers are processed one at a time in order of (deadline,
/// sequence number)", across connections and waiters alike, and a timer not
/// yet due does not fire in the same pass. A waiter's deadline at 10 comes
/// before an idle timeout at 20; a second waiter's deadline at 100 does not
/// fire at 30. Kills `&&` -> `||` and `<` -> `==` / `>` in `fire_due`'s pick
/// of the earliest due entry.
#[test]
fn due_timers_fire_in_deadline_order_across_connections_and_waiters() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            idle_timeout: Some(ms(20)),
            ..cfg()
        },
    );
    let lb = open(&mut p, B, t(0));
    let rb = route(&p, lb.conn());
    put_back(&mut p, lb, t(0));
    let w1 = queued(p.lease(&A, None, t(0), Some(t(10))));
    let v = acts(&mut p);
    single_connect(&p, &v, A);
    let w2 = queued(p.lease(&A, None, t(0), Some(t(100))));
    let v = acts(&mut p);
    single_connect(&p, &v, A);
    assert_eq!(
        tick(&mut p, t(30)),
        vec![
            failed(w1, FailReason::Timeout),
            close(lb.conn(), CloseReason::IdleTimeout),
            route_idle(rb, B),
        ]
    );
    assert_eq!(p.stats().pending, 1);
    assert_eq!(tick(&mut p, t(99)), vec![]);
    assert_eq!(tick(&mut p, t(100)), vec![failed(w2, FailReason::Timeout)]);
}

// ---- §7 `drain`, `set_route_config`, `set_route_limit` (pool/drain.rs) ----

/// §7: `set_route_limit` is `set_route_config` with only the limit changed:
/// it lowers (nothing closes at once, the excess closes on release,
/// `RouteLimit`), clears (`None`: back to `max_per_route`) and keeps the
/// route's other overrides (`min_idle` here). Kills the body replaced by
/// `Ok(())`.
#[test]
fn set_route_limit_changes_only_the_limit() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 3,
            ..cfg()
        },
    );
    let warm = RouteConfig {
        min_idle: Some(1),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, warm, t(0)).unwrap();
    let v = acts(&mut p);
    let c0 = single_connect(&p, &v, A);
    assert_eq!(connect(&mut p, c0, 1, t(0)), vec![]);
    let l1 = granted(p.lease(&A, None, t(1), None));
    let v = acts(&mut p);
    // min_idle 1: warm-up replaces the idle connection just leased.
    let c1 = single_connect(&p, &v, A);
    assert_eq!(connect(&mut p, c1, 1, t(1)), vec![]);
    let l2 = granted(p.lease(&A, None, t(1), None));
    assert_eq!(l2.conn(), c1);
    let v = acts(&mut p);
    let c2 = single_connect(&p, &v, A);
    assert_eq!(connect(&mut p, c2, 1, t(1)), vec![]);
    assert_eq!(p.route_stats(&A).unwrap().connections, 3);

    p.set_route_limit(&A, Some(2), t(2)).unwrap();
    quiet(&mut p);
    let rs = p.route_stats(&A).unwrap();
    assert_eq!((rs.limit, rs.connections), (2, 3));
    assert_eq!(
        release(&mut p, l1, Release::REUSE, t(3)),
        vec![close(l1.conn(), CloseReason::RouteLimit)]
    );
    // At the limit now: the next one goes idle.
    put_back(&mut p, l2, t(3));
    // min_idle was kept: discarding both idle connections warms one up again.
    let l = granted(p.lease(&A, None, t(4), None));
    quiet(&mut p); // one idle left: min_idle holds
    let v = release(&mut p, l, Release::Discard, t(4));
    assert_eq!(v, vec![close(l.conn(), CloseReason::Discarded)]);
    let l = granted(p.lease(&A, None, t(5), None));
    let v = acts(&mut p);
    let c3 = single_connect(&p, &v, A);
    assert_eq!(connect(&mut p, c3, 1, t(5)), vec![]);
    assert_eq!(p.counters().warmups, 4);

    p.set_route_limit(&A, None, t(6)).unwrap();
    quiet(&mut p);
    assert_eq!(p.route_stats(&A).unwrap().limit, 3);
    put_back(&mut p, l, t(7));
    assert_eq!(p.route_stats(&A).unwrap().idle, 2);
}

/// §7 `DrainAndDelete` "always ends with a `RouteIdle` that frees the slot":
/// when the route's notice is still queued (not polled), that one notice
/// serves; no second is queued. Kills `&&` -> `||` in `drain_route`'s
/// `idle_mark` reset (which queued the route's action twice).
#[test]
fn drain_and_delete_with_the_route_idle_notice_unpolled_gives_it_once() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    // Not polled: the Close and the RouteIdle wait in the queue, and B's
    // Connect after them.
    p.release(l, Release::Discard, t(1)).unwrap();
    queued(p.lease(&B, None, t(1), None));
    p.drain(DrainScope::Route(&A), DrainMode::DrainAndDelete, t(2));
    let v = acts(&mut p);
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(
        v[..2].to_vec(),
        vec![close(l.conn(), CloseReason::Discarded), route_idle(ra, A)]
    );
    connect_of(&v[2]);
    assert_eq!(p.route_stats(&A), None);
    assert_eq!(p.route_key(ra), None);
}

/// §7 / §3.2: `set_route_limit` keeps a route's preconnect ratio override as
/// it was (2.0: a lease that finds nothing makes a demand connect and a
/// preconnect). Kills `/ 1000.0` -> `* 1000.0` (a ratio out of range: the
/// call failed) and -> `% 1000.0` (the ratio dropped to off).
#[test]
fn set_route_limit_keeps_the_routes_preconnect_ratio() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let two = RouteConfig {
        preconnect_ratio: Some(2.0),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, two, t(0)).unwrap();
    quiet(&mut p);
    p.set_route_limit(&A, Some(3), t(0)).unwrap();
    quiet(&mut p);
    assert_eq!(p.route_stats(&A).unwrap().limit, 3);
    let _w = queued(p.lease(&A, None, t(1), None));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "a demand connect and a preconnect: {v:?}");
    let n = *p.counters();
    assert_eq!((n.connects, n.preconnects), (2, 1));
}

/// §2 / §9.3: the idle timeout counts from the last release. A connection
/// idle since 0, leased at 500 and released at 600, does not time out at
/// 1000 (its old deadline: timers are re-armed lazily, §2 "`poll_timeout()`
/// may return a time earlier than the next real event"), only at 1600.
/// Kills `fire_due`'s re-key guard `k > e.key()` replaced by `false` and
/// `>` -> `<` (both fired the stale deadline).
#[test]
fn a_stale_timer_entry_is_moved_to_the_real_deadline_not_fired() {
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
    put_back(&mut p, l, t(0));
    let l = granted(p.lease(&A, None, t(500), None));
    quiet(&mut p);
    put_back(&mut p, l, t(600));
    assert_eq!(tick(&mut p, t(1000)), vec![]);
    assert_eq!(p.stats().idle, 1);
    assert_eq!(tick(&mut p, t(1599)), vec![]);
    assert_eq!(
        tick(&mut p, t(1600)),
        vec![close(l.conn(), CloseReason::IdleTimeout), route_idle(ra, A)]
    );
}

// ---- §7 `set_capacity` (pool/connect.rs) ----

/// §7 `set_capacity`: "A connection on the ready list that stays available
/// keeps its place (only `spare` changes); one that is now full leaves it
/// (busy)". Lowered from 4 to 2 with one lease out it stays available
/// (`spare` 1, the next lease is granted on it); lowered to exactly its
/// leases in use (2) it is full: the next lease waits; raised to 3 it is
/// placed again and serves that waiter. Kills `<` -> `<=` / `==` in the
/// "still available" test and the mutants of the `spare` update
/// (`spare + after - before`).
#[test]
fn set_capacity_on_an_available_connection_updates_its_spare_or_makes_it_full() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            ..cfg()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let _l1 = single_grant(&connect(&mut p, c, 4, t(1)), w);
    assert_eq!(p.route_load(&A).spare, 3);
    p.set_capacity(c, 2, t(2)).unwrap();
    quiet(&mut p);
    assert_eq!(p.route_load(&A).spare, 1);
    let l2 = granted(p.lease(&A, None, t(3), None));
    assert_eq!(l2.conn(), c);
    quiet(&mut p);
    assert_eq!(p.route_load(&A).spare, 0);

    p.set_capacity(c, 4, t(4)).unwrap();
    quiet(&mut p);
    assert_eq!(p.route_load(&A).spare, 2);
    // Exactly the leases in use: full, off the ready list.
    p.set_capacity(c, 2, t(5)).unwrap();
    quiet(&mut p);
    assert_eq!(p.route_load(&A).spare, 0);
    let w3 = lease_wait(&mut p, A, None, t(6));
    p.set_capacity(c, 3, t(7)).unwrap();
    assert_eq!(single_grant(&acts(&mut p), w3).conn(), c);
    assert_eq!(p.stats().leased, 3);
}

// ---- §7 `validated` (pool/connect.rs) ----

/// §7 `validated` + §2: "Alive: `updated = now`", so an idle connection's
/// idle timeout counts from the validation. Its old deadline came due (and
/// was dropped) while it validated; the waiter was cancelled, so it goes
/// idle at 1100 and times out at 2100. Kills `== Ready` -> `!= Ready` in
/// `validated`'s re-arm (the connection never timed out).
#[test]
fn an_idle_connection_validated_alive_gets_its_idle_timeout_again() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            idle_timeout: Some(ms(1000)),
            validate_after_inactivity: Some(ms(500)),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    put_back(&mut p, l, t(0));
    let w = queued(p.lease(&A, None, t(600), None));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: l.conn() }]);
    assert_eq!(
        p.cancel(w, CancelPolicy::Default, t(700)),
        Ok(Cancelled::Waiting)
    );
    quiet(&mut p);
    // Validating: no idle timeout.
    assert_eq!(tick(&mut p, t(1000)), vec![]);
    p.validated(l.conn(), Validation::Alive, t(1100)).unwrap();
    quiet(&mut p);
    assert_eq!(p.stats().idle, 1);
    assert!(p.poll_timeout().is_some_and(|d| d <= t(2100)));
    assert_eq!(tick(&mut p, t(2099)), vec![]);
    assert_eq!(
        tick(&mut p, t(2100)),
        vec![close(l.conn(), CloseReason::IdleTimeout), route_idle(ra, A)]
    );
}

// ---- §2 the idle timeout kept for the preconnect ratio (pool/capacity.rs,
// `preconnect_would_reopen`) ----

/// Route `A` with a preconnect ratio of 2.0 and an idle timeout of 1000:
/// one lease made a demand connect and a preconnect; returns the lease (on
/// the first connection) and the idle second connection, idle since `t(1)`.
/// Without anything else, at `t(1001)` the idle one is kept (§2: without it
/// `(0 + 1) * 2 > 0 + 1`).
fn ratio_two_with_one_idle(p: &mut P<'_>) -> (Lease, ConnId) {
    let two = RouteConfig {
        preconnect_ratio: Some(2.0),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, two, t(0)).unwrap();
    quiet(p);
    let w = queued(p.lease(&A, None, t(0), None));
    let v = acts(p);
    assert_eq!(v.len(), 2, "a demand connect and a preconnect: {v:?}");
    let (c1, c2) = (connect_of(&v[0]), connect_of(&v[1]));
    let l = single_grant(&connect(p, c1, 1, t(1)), w);
    assert_eq!(connect(p, c2, 1, t(1)), vec![]);
    assert_eq!(p.route_stats(&A).unwrap().idle, 1);
    (l, c2)
}

fn idle_ratio_cfg() -> Config {
    Config {
        idle_timeout: Some(ms(1000)),
        max_per_route: 4,
        ..cfg()
    }
}

/// The rule itself (§2 "nor below what its preconnect ratio provisions").
#[test]
fn idle_timeout_keeps_the_connection_the_preconnect_ratio_provisions() {
    let mut st = Store::new();
    let mut p = pool(&mut st, idle_ratio_cfg());
    let (_l, _c2) = ratio_two_with_one_idle(&mut p);
    assert_eq!(tick(&mut p, t(1001)), vec![]);
    assert_eq!(p.route_stats(&A).unwrap().idle, 1);
}

/// §2 with §12: an unhealthy route makes no preconnect, so the ratio keeps
/// nothing: the idle connection times out. Kills `||` -> `&&` between
/// `unhealthy` and `deleting` in `preconnect_would_reopen`.
#[test]
fn idle_timeout_of_an_unhealthy_route_ignores_its_preconnect_ratio() {
    let mut st = Store::new();
    let mut p = pool(&mut st, idle_ratio_cfg());
    let (_l, c2) = ratio_two_with_one_idle(&mut p);
    p.set_route_health(&A, false, t(2)).unwrap();
    quiet(&mut p);
    assert_eq!(
        tick(&mut p, t(1001)),
        vec![close(c2, CloseReason::IdleTimeout)]
    );
}

/// §2 with §8: while a retry backoff is pending the route makes no
/// preconnect, so the ratio keeps nothing. Kills `||` -> `&&` around
/// `retry_until.is_some()` in `preconnect_would_reopen`.
#[test]
fn idle_timeout_during_a_retry_backoff_ignores_the_preconnect_ratio() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            retry_backoff: ms(5000),
            ..idle_ratio_cfg()
        },
    );
    let (_l, c2) = ratio_two_with_one_idle(&mut p);
    // A second lease takes the idle one; the ratio asks for two more
    // connections, whose connects fail: a backoff until 5002.
    let l2 = granted(p.lease(&A, None, t(2), None));
    assert_eq!(l2.conn(), c2);
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "two preconnects: {v:?}");
    for a in &v {
        p.connect_failed(connect_of(a), ConnectFailure::Remote, t(2))
            .unwrap();
        quiet(&mut p);
    }
    put_back(&mut p, l2, t(2));
    assert_eq!(
        tick(&mut p, t(1002)),
        vec![close(c2, CloseReason::IdleTimeout)]
    );
}

/// §2: the ratio keeps a connection only if "the idle limits leave room"
/// (§3.2): with `max_idle` 2 and another route's two connects in flight, the
/// global count `idle - 1 + connecting` is at the limit, so the idle
/// connection times out. Kills `&&` -> `||` between the per-route and the
/// global idle limit in `preconnect_would_reopen`.
#[test]
fn idle_timeout_ignores_the_preconnect_ratio_when_max_idle_leaves_no_room() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_idle: Some(2),
            ..idle_ratio_cfg()
        },
    );
    let (_l, c2) = ratio_two_with_one_idle(&mut p);
    let (_wb, _cb) = lease_connect(&mut p, B, t(2));
    let (_wb2, _cb2) = lease_connect(&mut p, B, t(2));
    assert_eq!(
        tick(&mut p, t(1001)),
        vec![close(c2, CloseReason::IdleTimeout)]
    );
}

/// §2: at a ratio of 1.0 (no preconnect) nothing is kept for the ratio, even
/// with a waiter queued (for another tag, which the idle connection cannot
/// serve). Kills `||` -> `&&` after `ratio <= 1000` in
/// `preconnect_would_reopen`.
#[test]
fn idle_timeout_without_a_preconnect_ratio_keeps_nothing_for_a_waiter_of_another_tag() {
    let mut st = Store::new();
    let mut p = pool(&mut st, idle_ratio_cfg());
    let l = open(&mut p, A, t(0));
    p.release(l, tagged(T1), t(1)).unwrap();
    quiet(&mut p);
    let w = queued(p.lease(&A, Some(T2), t(2), None));
    let v = acts(&mut p);
    single_connect(&p, &v, A);
    assert_eq!(
        tick(&mut p, t(1001)),
        vec![close(l.conn(), CloseReason::IdleTimeout)]
    );
    assert_eq!(p.stats().pending, 1);
    let _ = w;
}

/// The other side of the global bound: with one connect in flight elsewhere,
/// `idle - 1 + connecting` = 1 < `max_idle` 2: room, the connection is kept.
/// Kills `<` -> `>` and `idle - 1` -> `idle + 1` / `idle / 1` in the global
/// room check (and, with the test above, `<` -> `<=` / `==`, `+` -> `*`).
#[test]
fn idle_timeout_keeps_the_connection_for_the_ratio_while_max_idle_leaves_room() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_idle: Some(2),
            ..idle_ratio_cfg()
        },
    );
    let (_l, _c2) = ratio_two_with_one_idle(&mut p);
    let (_wb, _cb) = lease_connect(&mut p, B, t(2));
    assert_eq!(tick(&mut p, t(1001)), vec![]);
    assert_eq!(p.route_stats(&A).unwrap().idle, 1);
}

/// The per-route bound (`max_idle_per_route` 1): a demand connect of the
/// route itself in flight (a waiter for a tag that, with `strict_tags`, the
/// untagged idle connection cannot serve) leaves `idle - 1 + connecting` =
/// 1, not below 1: no room, the idle connection times out although the
/// ratio (2.0) would want it. Kills `<` -> `<=` / `==`, `+` -> `-` / `*` in
/// the per-route room check.
#[test]
fn idle_timeout_ignores_the_preconnect_ratio_when_max_idle_per_route_leaves_no_room() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_idle_per_route: Some(1),
            strict_tags: true,
            ..idle_ratio_cfg()
        },
    );
    let two = RouteConfig {
        preconnect_ratio: Some(2.0),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, two, t(0)).unwrap();
    quiet(&mut p);
    // The idle limit allows the preconnect only once the demand connect is
    // up.
    let (w1, c1) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c1, 1, t(1));
    assert_eq!(v.len(), 2, "{v:?}");
    single_grant(&v[..1].to_vec(), w1);
    let c2 = connect_of(&v[1]);
    assert_eq!(connect(&mut p, c2, 1, t(1)), vec![]);
    let w = queued(p.lease(&A, Some(T2), t(2), None));
    let v = acts(&mut p);
    single_connect(&p, &v, A);
    assert_eq!(
        tick(&mut p, t(1001)),
        vec![close(c2, CloseReason::IdleTimeout)]
    );
    assert_eq!(p.stats().pending, 1);
    let _ = w;
}

/// The other side of the per-route bound: ratio 3.0, `max_idle_per_route`
/// 2, one lease out, one idle, one preconnect in flight: `idle - 1 +
/// connecting` = 1 < 2, room: the idle one is kept. Kills `<` -> `>` and
/// `idle - 1` -> `idle + 1` / `idle / 1` in the per-route room check.
#[test]
fn idle_timeout_keeps_the_connection_for_the_ratio_while_max_idle_per_route_leaves_room() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_idle_per_route: Some(2),
            ..idle_ratio_cfg()
        },
    );
    let three = RouteConfig {
        preconnect_ratio: Some(3.0),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, three, t(0)).unwrap();
    quiet(&mut p);
    let w = queued(p.lease(&A, None, t(0), None));
    let v = acts(&mut p);
    // A demand connect and one preconnect (the idle limit allows no more).
    assert_eq!(v.len(), 2, "{v:?}");
    let (c1, c2) = (connect_of(&v[0]), connect_of(&v[1]));
    let v = connect(&mut p, c1, 1, t(1));
    // Granted, and the ratio asks for one more (connecting: c2, then c3).
    assert_eq!(v.len(), 2, "{v:?}");
    single_grant(&v[..1].to_vec(), w);
    connect_of(&v[1]);
    assert_eq!(connect(&mut p, c2, 1, t(1)), vec![]);
    let rs = p.route_stats(&A).unwrap();
    assert_eq!((rs.leased, rs.idle, rs.connecting), (1, 1, 1));
    assert_eq!(tick(&mut p, t(1001)), vec![]);
    assert_eq!(p.route_stats(&A).unwrap().idle, 1);
}

/// §2: the ratio keeps only what it provisions, counting the spare streams
/// of the other open connections: ratio 2.0 with one lease out and three
/// idle connections keeps one. Kills `* 1000` -> `+ 1000` in
/// `preconnect_would_reopen`'s ratio check.
#[test]
fn idle_timeout_keeps_only_what_the_preconnect_ratio_provisions() {
    let mut st = Store::new();
    let mut p = pool(&mut st, idle_ratio_cfg());
    let (_l, c2) = ratio_two_with_one_idle(&mut p);
    let l2 = granted(p.lease(&A, None, t(3), None));
    assert_eq!(l2.conn(), c2);
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "two preconnects: {v:?}");
    let (c3, c4) = (connect_of(&v[0]), connect_of(&v[1]));
    assert_eq!(connect(&mut p, c3, 1, t(3)), vec![]);
    assert_eq!(connect(&mut p, c4, 1, t(3)), vec![]);
    put_back(&mut p, l2, t(4));
    assert_eq!(p.route_stats(&A).unwrap().idle, 3);
    assert_eq!(
        tick(&mut p, t(1003)),
        vec![
            close(c3, CloseReason::IdleTimeout),
            close(c4, CloseReason::IdleTimeout)
        ]
    );
    assert_eq!(tick(&mut p, t(1004)), vec![]);
    assert_eq!(p.route_stats(&A).unwrap().idle, 1);
}

// ---- §3.2 / §3.3 connect decisions (pool/capacity.rs) ----

/// §3.2 "Preconnects count against the idle limits": `idle + connecting <
/// max_idle` (pool-wide). Another route's idle connection and this route's
/// demand connect make 2 = `max_idle`: no preconnect. Kills `+` -> `*` in
/// `idle_room`'s global count.
#[test]
fn no_preconnect_when_idle_and_connecting_reach_max_idle() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_idle: Some(2),
            ..cfg()
        },
    );
    let two = RouteConfig {
        preconnect_ratio: Some(2.0),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, two, t(0)).unwrap();
    quiet(&mut p);
    let lb = open(&mut p, B, t(0));
    put_back(&mut p, lb, t(0));
    let (_w, _c) = lease_connect(&mut p, A, t(1));
    assert_eq!(p.counters().preconnects, 0);
}

/// §3.2 "Nothing if `r` is being deleted": a route drained for deletion
/// with waiters left makes no new connect, even when a raised limit would
/// allow one. Kills `||` -> `&&` between `!live()` and `deleting` in
/// `try_create`.
#[test]
fn a_route_being_deleted_makes_no_new_connect_for_its_waiters() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            ..cfg()
        },
    );
    let (_w1, _c1) = lease_connect(&mut p, A, t(0));
    let _w2 = lease_wait(&mut p, A, None, t(0));
    p.drain(DrainScope::Route(&A), DrainMode::DrainAndDelete, t(1));
    quiet(&mut p);
    p.set_max_per_route(2, t(2)).unwrap();
    quiet(&mut p);
    assert_eq!(p.counters().connects, 1);
}

/// §3.3 step 1: at the route limit, demand closes *idle* connections of the
/// route (`RouteLimit`), never one with leases: an HTTP/2 connection with a
/// lease out, available but not idle, which a waiter for another tag cannot
/// use (`strict_tags`), stays, and the waiter waits. Kills `!=` -> `==` in
/// the walk over the ready list for an idle connection.
#[test]
fn route_limit_shrink_never_closes_a_connection_with_leases() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            strict_tags: true,
            ..cfg()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let _l = single_grant(&connect(&mut p, c, 2, t(0)), w);
    let _w2 = lease_wait(&mut p, A, Some(T2), t(1));
    assert_eq!(p.counters().closes_for(CloseReason::RouteLimit), 0);
    let rs = p.route_stats(&A).unwrap();
    assert_eq!((rs.connections, rs.leased, rs.pending), (1, 1, 1));
}

// ---- §3.7a yield(c): cross-route fairness (pool/capacity.rs, `yields`) ----

/// Route `A` with `a` leases out, route `B` with one, the total limit at
/// `a + 1`; then a waiter on `B` (older) and one on `A` (younger), both
/// blocked on the total. Returns `A`'s leases, `B`'s route and the waiters.
fn contended(p: &mut P<'_>, a: usize) -> (Vec<Lease>, WaiterId, WaiterId) {
    let la: Vec<Lease> = (0..a).map(|_| open(p, A, t(0))).collect();
    let _lb = open(p, B, t(0));
    let wb = lease_wait(p, B, None, t(1));
    let wa = lease_wait(p, A, None, t(2));
    (la, wb, wa)
}

/// §3.7a: `B` (1 connection) is *short* against `A` (3): `1 + 1 < 3`, and its
/// waiter is older than `A`'s: the connection `A` releases yields (closes
/// `Evicted`) and `B` connects. Kills `<` -> `>` / `==` in `short`.
#[test]
fn a_release_yields_to_an_older_waiter_of_a_short_route() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 4,
            max_per_route: 4,
            ..cfg()
        },
    );
    let (la, _wb, _wa) = contended(&mut p, 3);
    let c = la[0].conn();
    let v = release(&mut p, la[0], Release::REUSE, t(3));
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(c, CloseReason::Evicted));
    single_connect(&p, &v[1..].to_vec(), B);
}

/// §3.7a "only toward an equal share": `B` (1) is not short against `A` (2):
/// `1 + 1 < 2` is false, so `A`'s released connection serves `A`'s own
/// (younger) waiter. Kills `<` -> `<=` / `==`, `+ 1` -> `- 1` / `* 1` in
/// `short` and `&&` -> `||` after `b != r`.
#[test]
fn a_release_does_not_yield_to_a_route_that_is_not_short() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 3,
            max_per_route: 4,
            ..cfg()
        },
    );
    let (la, _wb, wa) = contended(&mut p, 2);
    let v = release(&mut p, la[0], Release::REUSE, t(3));
    assert_eq!(single_grant(&v, wa).conn(), la[0].conn());
    assert_eq!(p.counters().closes_for(CloseReason::Evicted), 0);
}

/// §3.7a applies "while the total limit binds (`total >= max_total`)": with
/// the total below it (a `Close` not yet polled holds the last connection
/// slot), a released connection stays, and the blocked route connects once
/// the slot comes back. Kills `||` -> `&&` and `<` -> `>` in `yields`'s
/// first test.
#[test]
fn a_release_below_the_total_limit_does_not_yield() {
    let mut st: Storage<Key, 2, 4, 8, 8> = Storage::new();
    let mut p = Pool::new(
        &mut st,
        Config {
            max_total: 2,
            ..cfg()
        },
    )
    .unwrap();
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    let _wb = lease_wait(&mut p, B, None, t(1));
    // Neither release is polled: the first one's Close holds its slot.
    p.release(l1, Release::Discard, t(2)).unwrap();
    p.release(l2, Release::REUSE, t(2)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l1.conn(), CloseReason::Discarded));
    single_connect(&p, &v[1..].to_vec(), B);
    assert_eq!(p.route_stats(&A).unwrap().idle, 1);
}

// ---- storage slots (pool/mod.rs, the free lists made by `from_slots`) ----

/// §4 steps 2/5: "no waiter slot -> `Err(Overflow)`": the storage's 8 waiter
/// slots all serve, and a 9th waiter is refused. (Written for `i + 1 < nw`
/// -> `<=` in the waiters' free list, which it does not kill: `max_pending`
/// refuses the 9th first; CONTRIBUTING lists it as equivalent.)
#[test]
fn every_waiter_slot_serves_and_one_more_waiter_overflows() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    for i in 0..8u64 {
        queued(p.lease(&A, None, t(i), None));
        acts(&mut p);
    }
    assert_eq!(p.stats().pending, 8);
    assert_eq!(refused(p.lease(&A, None, t(9), None)), LeaseError::Overflow);
    assert_eq!(p.counters().overflows, 1);
}

/// §4 step 4: "no lease slot -> `Err(Overflow)`": the storage's 8 lease
/// slots all serve (one HTTP/2 connection with room for 10), a 9th lease is
/// refused. (Written for `i + 1 < nl` -> `<=`, equivalent for the same
/// reason: `max_leases` refuses first.)
#[test]
fn every_lease_slot_serves_and_one_more_lease_overflows() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    single_grant(&connect(&mut p, c, 10, t(0)), w);
    for _ in 1..8 {
        assert_eq!(granted(p.lease(&A, None, t(1), None)).conn(), c);
    }
    quiet(&mut p);
    assert_eq!(p.stats().leased, 8);
    assert_eq!(refused(p.lease(&A, None, t(2), None)), LeaseError::Overflow);
}

/// Storage without waiter slots is allowed (leases are granted or refused at
/// once): a lease that would wait is `Err(Overflow)`. (Written for
/// `nw > 0` -> `>=` for the first free waiter slot, which is equivalent:
/// `max_pending` is 0 and refuses first.)
#[test]
fn storage_without_waiter_slots_refuses_every_lease_that_would_wait() {
    let mut st: Storage<Key, 4, 4, 0, 4> = Storage::new();
    let mut p = Pool::new(&mut st, cfg()).unwrap();
    assert_eq!(refused(p.lease(&A, None, t(0), None)), LeaseError::Overflow);
    quiet(&mut p);
    assert_eq!(p.counters().overflows, 1);
}

/// `Pool::with_capacity` refuses storage without connection, route or lease
/// slots (`BadStorage`) before it looks at the configuration: a
/// `max_leases` that no lease slot could hold is not what is reported.
/// Kills `||` -> `&&` around `leases == 0` in `with_capacity`'s check.
#[test]
fn with_capacity_refuses_zero_slots_before_checking_the_config() {
    let c = Config {
        max_leases: Some(1),
        ..cfg()
    };
    let cap = |conns, routes, leases| Capacity {
        conns,
        routes,
        waiters: 4,
        leases,
    };
    for (conns, routes, leases) in [(0, 4, 4), (4, 0, 4), (4, 4, 0)] {
        assert_eq!(
            P::with_capacity(cap(conns, routes, leases), c.clone()).err(),
            Some(ConfigError::BadStorage),
            "{conns} {routes} {leases}"
        );
    }
    assert!(P::with_capacity(cap(4, 4, 4), c).is_ok());
}

/// §7 / §5: a route stays *over* a lowered limit until enough connections
/// closed, one per release: from 3 connections to a limit of 1, the first
/// release leaves it still over (2), and `check_invariants` (run after every
/// step) must still accept it. Kills `<=` -> `>` where a close clears the
/// route's over-limit mark.
#[test]
fn a_route_two_over_its_lowered_limit_closes_one_connection_per_release() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 3,
            ..cfg()
        },
    );
    let l: Vec<Lease> = (0..3).map(|_| open(&mut p, A, t(0))).collect();
    p.set_route_limit(&A, Some(1), t(1)).unwrap();
    quiet(&mut p);
    for (i, lease) in l.iter().enumerate() {
        let v = release(&mut p, *lease, Release::REUSE, t(2 + i as u64));
        if i < 2 {
            assert_eq!(v, vec![close(lease.conn(), CloseReason::RouteLimit)]);
        } else {
            assert_eq!(v, vec![]);
        }
        ok(&p);
    }
    let rs = p.route_stats(&A).unwrap();
    assert_eq!((rs.limit, rs.connections, rs.idle), (1, 1, 1));
}

// ---- the warm path (pool/fast.rs) must do what the general path does ----

/// §3.8: a lease on an idle HTTP/2 connection leaves it available (`active
/// < capacity`), so the next lease is granted on it too, without a connect.
/// Kills `capacity != 1` -> `== 1` and `||` -> `&&` after `tag.is_some()`
/// in `lease_fast`'s test (the warm path is for single-stream connections:
/// it files the connection as full).
#[test]
fn an_idle_http2_connection_serves_a_second_lease_at_once() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    let l = single_grant(&connect(&mut p, c, 2, t(0)), w);
    put_back(&mut p, l, t(1));
    let l1 = granted(p.lease(&A, None, t(2), None));
    quiet(&mut p);
    let l2 = granted(p.lease(&A, None, t(2), None));
    quiet(&mut p);
    assert_eq!((l1.conn(), l2.conn()), (c, c));
    assert_eq!(p.counters().connects, 1);
}

/// §3.1 step 4 / §3.5: a lease that takes a route's last idle connection
/// settles the route, and pool-wide `min_idle_per_route` warms up a
/// replacement. Kills `delete !` before `quiet()` and `||` -> `&&` after it
/// in `lease_fast` (the warm path ran, and skipped the warm-up).
#[test]
fn leasing_the_last_idle_connection_warms_up_a_replacement() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            min_idle_per_route: 1,
            max_per_route: 3,
            ..cfg()
        },
    );
    let (w, c1) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c1, 1, t(0));
    // Granted; min_idle 1 warms up one more.
    assert_eq!(v.len(), 2, "{v:?}");
    single_grant(&v[..1].to_vec(), w);
    let c2 = connect_of(&v[1]);
    assert_eq!(connect(&mut p, c2, 1, t(1)), vec![]);
    let l = granted(p.lease(&A, None, t(2), None));
    assert_eq!(l.conn(), c2);
    let v = acts(&mut p);
    single_connect(&p, &v, A);
    assert_eq!(p.counters().warmups, 2);
}

/// §3.8 "counted as a reuse when the connection had served a lease before":
/// a connection whose waiter was cancelled before it came up has served
/// none: its first lease is no reuse, its second is. Kills `served > 0` ->
/// `>=` and `served += 1` -> `*= 1` in the warm path.
#[test]
fn the_first_lease_of_a_connection_is_no_reuse_and_the_second_is() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w, c) = lease_connect(&mut p, A, t(0));
    p.cancel(w, CancelPolicy::Default, t(0)).unwrap();
    quiet(&mut p);
    assert_eq!(connect(&mut p, c, 1, t(1)), vec![]);
    let l = granted(p.lease(&A, None, t(2), None));
    assert_eq!(l.conn(), c);
    assert_eq!((p.counters().grants, p.counters().reuses), (1, 0));
    put_back(&mut p, l, t(3));
    let l = granted(p.lease(&A, None, t(4), None));
    assert_eq!(l.conn(), c);
    assert_eq!((p.counters().grants, p.counters().reuses), (2, 1));
}

/// §7 `peer_closed` / §5 step 3: a connection the peer closed while leased
/// drains, and closes with its drain reason when its lease comes back, even
/// when released for reuse. Kills `||` -> `&&` between `draining` and the
/// state test in `release_fast` (the warm path put it back idle).
#[test]
fn a_reuse_release_of_a_draining_connection_closes_it() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    p.peer_closed(l.conn(), t(1)).unwrap();
    quiet(&mut p);
    assert_eq!(
        release(&mut p, l, Release::REUSE, t(2)),
        vec![close(l.conn(), CloseReason::PeerClosed), route_idle(ra, A)]
    );
    assert_eq!(p.stats().connections, 0);
}

// ---- the route table (pool/routes.rs, `free_route`) ----

/// §3.6: "When `RouteIdle` is polled, the route's slot is freed"; every
/// other route is still found by its key, whatever its place in the hash
/// chains. Four routes in four buckets share chains under most seeds; each
/// is freed in turn, in several orders, and the rest must stay reachable.
/// Kills `i != NIL` -> `==` and `n == r` -> `!=` in the unlinking of a route
/// that is not first in its chain.
#[test]
fn freeing_a_route_keeps_every_other_route_reachable() {
    let keys = [A, B, C, D];
    let orders = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]];
    for seed in 0..8u64 {
        for order in orders {
            let mut st = Store::new();
            let mut p = pool(
                &mut st,
                Config {
                    seed,
                    max_total: 4,
                    max_per_route: 1,
                    ..cfg()
                },
            );
            let leases: Vec<Lease> = keys.iter().map(|k| open(&mut p, k, t(0))).collect();
            for (n, &i) in order.iter().enumerate() {
                let v = release(&mut p, leases[i], Release::Discard, t(1));
                assert_eq!(v.len(), 2, "seed {seed} {order:?}: {v:?}");
                for (j, k) in keys.iter().enumerate() {
                    let freed = order[..=n].contains(&j);
                    assert_eq!(
                        p.route_stats(k).is_none(),
                        freed,
                        "seed {seed} order {order:?} after {n}: route {k}"
                    );
                }
            }
            // The slots come back for the same keys.
            for k in keys {
                let l = open(&mut p, k, t(2));
                assert_eq!(p.route_key(route(&p, l.conn())), Some(&k));
            }
        }
    }
}

// ---- §7.1 retry of a validating waiter (pool/waiters.rs, `retry`) ----

/// §7.1: a validating waiter that finds nothing "re-enters `queue(r)` in
/// sequence-number order (it keeps its age)", here behind an older waiter:
/// the next connection goes to the older one. Kills `<` -> `==` in the
/// walk for its place (it went to the front).
#[test]
fn a_retried_validating_waiter_queues_behind_older_waiters() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            validate_after_inactivity: Some(ms(1000)),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    let c1 = l.conn();
    p.release(l, tagged(T1), t(0)).unwrap();
    quiet(&mut p);
    // An older waiter for T2 (the T1 connection is not for it) connects.
    let w1 = queued(p.lease(&A, Some(T2), t(10), None));
    let v = acts(&mut p);
    let c2 = single_connect(&p, &v, A);
    // A younger one for T1 validates the idle T1 connection: stale.
    let w2 = queued(p.lease(&A, Some(T1), t(2000), None));
    assert_eq!(acts(&mut p), vec![Action::Validate { conn: c1 }]);
    p.validated(c1, Validation::Stale, t(2001)).unwrap();
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(c1, CloseReason::Stale));
    connect_of(&v[1]);
    // c2 comes up untagged: both could take it; the older waiter does.
    let v = connect(&mut p, c2, 1, t(2002));
    assert_eq!(single_grant(&v, w1).conn(), c2);
    assert_eq!(p.stats().pending, 1);
    let _ = w2;
}

// ---- §12 host health and `Pool::preconnect` (pool/hosts.rs) ----

/// §12 `set_route_health`: marking an unknown route healthy changes nothing;
/// marking it unhealthy creates it; a pool closed for good refuses a new
/// route (`Draining`); with `close_on_unhealthy`, only a route that
/// *becomes* unhealthy is drained. Kills the `closed` match guard mutants,
/// the `healthy` guard replaced by `true`, and `&&` -> `||` in `fell` (the
/// `healthy` guard replaced by `false` is still missed: CONTRIBUTING).
#[test]
fn set_route_health_creates_only_unhealthy_routes_and_drains_only_on_a_fall() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            close_on_unhealthy: true,
            ..cfg()
        },
    );
    p.set_route_health(&A, true, t(0)).unwrap();
    quiet(&mut p);
    assert_eq!(p.route_stats(&A), None);
    p.set_route_health(&A, false, t(0)).unwrap();
    quiet(&mut p);
    assert!(p.route_stats(&A).is_some());
    // Healthy and staying healthy: its idle connection stays.
    let l = open(&mut p, B, t(1));
    put_back(&mut p, l, t(1));
    p.set_route_health(&B, true, t(2)).unwrap();
    quiet(&mut p);
    assert_eq!(p.route_stats(&B).unwrap().idle, 1);
    p.drain(DrainScope::All, DrainMode::DrainAndDelete, t(3));
    acts(&mut p);
    assert_eq!(
        p.set_route_health(&C, false, t(4)),
        Err(RouteError::Draining)
    );
}

/// §12 `Pool::preconnect`: one connection if `(queued + active + 1) *
/// ratio > connecting_capacity + active` and the idle limits leave room.
/// One lease out: `2 > 1`, a preconnect (kills `ratio == 0` -> `!= 0`); a
/// route with an idle connection at `max_idle_per_route` 1: no room, none
/// (aimed at `&&` -> `||` before `idle_room`, still missed: CONTRIBUTING).
#[test]
fn host_preconnect_opens_one_connection_within_the_idle_limits() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_idle_per_route: Some(1),
            ..cfg()
        },
    );
    let _l = open(&mut p, A, t(0));
    assert_eq!(p.preconnect(&A, 1.0, t(1)), Ok(true));
    let v = acts(&mut p);
    let c = single_connect(&p, &v, A);
    assert_eq!(connect(&mut p, c, 1, t(1)), vec![]);
    assert_eq!(p.route_stats(&A).unwrap().idle, 1);
    assert_eq!(p.preconnect(&A, 1.0, t(2)), Ok(false));
    quiet(&mut p);
    assert_eq!(p.preconnect(&A, 0.0, t(2)), Ok(false));
}

/// §12 `Pool::preconnect` at its bound: one lease out and one preconnect in
/// flight give `(0 + 1 + 1) * 1 > 1 + 1`, false: no second one; with
/// `connecting_capacity` 2 the connect in flight counts for 2. Kills most
/// mutants of the formula (`>=` and `* connecting_capacity` -> `/` are
/// still missed: CONTRIBUTING).
#[test]
fn host_preconnect_stops_at_its_bound() {
    for per in [1u32, 2] {
        let mut st = Store::new();
        let mut p = pool(
            &mut st,
            Config {
                connecting_capacity: per,
                ..cfg()
            },
        );
        let _l = open(&mut p, A, t(0));
        assert_eq!(p.preconnect(&A, 1.0, t(1)), Ok(true), "per {per}");
        let v = acts(&mut p);
        single_connect(&p, &v, A);
        assert_eq!(p.preconnect(&A, 1.0, t(2)), Ok(false), "per {per}");
        quiet(&mut p);
        assert_eq!(p.counters().preconnects, 1);
    }
}

/// §12 `Pool::preconnect` "creates the route if needed" and keeps it only if
/// a connection was opened: an unknown route gets its preconnect (and is
/// kept); an unhealthy one connects only for `queued > connecting_capacity`
/// (`0 > 0`: no) and stays, being known; an unknown route at the total
/// limit gets nothing and is not kept. Kills `&&` -> `||` and
/// `== Created::Yes` -> `!=` for `created`, and the mutants of the "not
/// kept" test (`&&` -> `||`, `== 0` -> `!= 0`); the unhealthy bound
/// (`queued > cc`) is still missed: CONTRIBUTING.
#[test]
fn host_preconnect_keeps_a_route_it_made_only_if_it_connected() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 2,
            ..cfg()
        },
    );
    let _l = open(&mut p, A, t(0));
    assert_eq!(p.preconnect(&B, 1.0, t(1)), Ok(true));
    let v = acts(&mut p);
    single_connect(&p, &v, B);
    assert_eq!(p.route_stats(&B).unwrap().connecting, 1);
    p.set_route_health(&C, false, t(2)).unwrap();
    quiet(&mut p);
    assert_eq!(p.preconnect(&C, 1.0, t(3)), Ok(false));
    quiet(&mut p);
    assert!(p.route_stats(&C).is_some());
    // The total (2) is reached: nothing for D, and D is not kept.
    assert_eq!(p.preconnect(&D, 1.0, t(4)), Ok(false));
    quiet(&mut p);
    assert_eq!(p.route_stats(&D), None);
}

/// §3.3 step 2: the evicted connection's route "only gets `check_idle`, so
/// its `RouteIdle`, if any, comes right after the `Close` and before the new
/// `Connect`". Kills `vr != r` -> `==` in `create`'s eviction.
#[test]
fn eviction_of_a_routes_last_connection_gives_its_route_idle_before_the_connect() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 1,
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    let ra = route(&p, l.conn());
    put_back(&mut p, l, t(1));
    let _w = queued(p.lease(&B, None, t(2), None));
    let v = acts(&mut p);
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(
        v[..2].to_vec(),
        vec![close(l.conn(), CloseReason::Evicted), route_idle(ra, A)]
    );
    single_connect(&p, &v[2..].to_vec(), B);
}

// ---- §3.7a *wants capacity* and a route's own limit ----

/// §3.7a: a blocked route its own route limit holds back does not *want
/// capacity*: a release on another route does not evict for it (it could not
/// use what the eviction frees). Before, route B blocked on the total, then
/// its limit lowered to the one connection it has: a release of A's lease
/// closed that connection `Evicted` for B and reconnected for A's own waiter.
#[test]
fn a_route_held_back_by_its_own_limit_is_not_yielded_to() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 4,
            max_per_route: 4,
            ..cfg()
        },
    );
    let a1 = open(&mut p, A, t(0));
    let _a2 = open(&mut p, A, t(0));
    let _a3 = open(&mut p, A, t(0));
    let _b1 = open(&mut p, B, t(0));
    // B waits: the total binds, B is under its limit (4).
    let _wb = lease_wait(&mut p, B, None, t(1));
    // B's limit lowered to what it has: it can no longer use more capacity.
    let one = RouteConfig {
        max_connections: Some(1),
        ..RouteConfig::default()
    };
    p.set_route_config(&B, one, t(2)).unwrap();
    quiet(&mut p);
    // A waits too (younger than B's waiter).
    let wa = lease_wait(&mut p, A, None, t(3));
    let c = a1.conn();
    let v = release(&mut p, a1, Release::REUSE, t(4));
    let l = single_grant(&v, wa);
    assert_eq!(
        l.conn(),
        c,
        "A's waiter reuses the released connection: {v:?}"
    );
    assert_eq!(v.len(), 1, "no eviction, no connect: {v:?}");
    assert_eq!(p.counters().closes_for(CloseReason::Evicted), 0);
    ok(&p);
}

// ---- §12 `Pool::preconnect` and `set_route_health` (pool/hosts.rs) ----

/// §12: `preconnect` opens one only if `(queued + active + 1) * ratio >
/// (connecting_capacity + active)`: at ratio 1.0 with one connect in flight
/// and nothing else, `1000 > 1000` is false. Kills, in that formula, `>` ->
/// `>=`, `(..) * ratio` -> `+`, `(cc + active)` -> `*` and `* 1000` -> `/`.
#[test]
fn preconnect_at_ratio_one_with_a_connect_in_flight_opens_no_second() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            ..cfg()
        },
    );
    assert_eq!(p.preconnect(&A, 1.0, t(0)), Ok(true));
    let v = acts(&mut p);
    assert_eq!(v.len(), 1, "one connect: {v:?}");
    assert_eq!(p.preconnect(&A, 1.0, t(1)), Ok(false));
    assert_eq!(acts(&mut p), vec![]);
    assert_eq!(p.stats().connecting, 1);
}

/// §12: the connects in flight count `connecting_capacity` streams each: at
/// ratio 2.0 with one connect of capacity 2 in flight, `2000 > 2000` is
/// false. Kills `len * connecting_capacity` -> `/` in `preconnect`.
#[test]
fn preconnect_counts_each_connect_in_flight_at_its_connecting_capacity() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            connecting_capacity: 2,
            ..cfg()
        },
    );
    assert_eq!(p.preconnect(&A, 2.0, t(0)), Ok(true));
    quiet_or_connects(&mut p, 1);
    assert_eq!(p.preconnect(&A, 2.0, t(1)), Ok(false));
    assert_eq!(p.stats().connecting, 1);
}

/// §12: an unhealthy host gets a connect from `preconnect` only for waiters
/// beyond its connects in flight (`queued > connecting_capacity`): with one
/// connect in flight and no waiter, none. Kills `>` -> `<` there.
#[test]
fn preconnect_on_an_unhealthy_host_with_a_connect_in_flight_and_no_waiter_opens_none() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            ..cfg()
        },
    );
    assert_eq!(p.preconnect(&A, 1.0, t(0)), Ok(true));
    quiet_or_connects(&mut p, 1);
    p.set_route_health(&A, false, t(1)).unwrap();
    quiet_or_connects(&mut p, 0);
    assert_eq!(p.preconnect(&A, 3.0, t(2)), Ok(false));
    assert_eq!(p.stats().connecting, 1);
}

/// §12: marking an unknown route healthy is a no-op, even with every route
/// slot taken (no route is made for it, so no `RouteTableFull`). Kills the
/// `None if healthy` guard -> `false` in `set_route_health`.
#[test]
fn marking_an_unknown_route_healthy_with_a_full_route_table_is_a_no_op() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 4,
            max_per_route: 1,
            ..cfg()
        },
    );
    let _l: Vec<Lease> = [A, B, C, D].iter().map(|k| open(&mut p, k, t(0))).collect();
    assert_eq!(p.stats().routes, 4);
    assert_eq!(p.set_route_health(&"e", true, t(1)), Ok(()));
    assert_eq!(p.stats().routes, 4);
    quiet(&mut p);
}

/// The actions so far are exactly `n` connects (and nothing else).
#[track_caller]
fn quiet_or_connects(p: &mut P<'_>, n: usize) {
    let v = acts(p);
    assert_eq!(v.len(), n, "{v:?}");
    assert!(
        v.iter().all(|a| matches!(a, Action::Connect { .. })),
        "{v:?}"
    );
}

/// §12: the same with nothing in flight and no waiter (`0 > 0`): an unhealthy
/// host gets no connect ahead of demand. Kills `>` -> `>=` and `==` there.
#[test]
fn preconnect_on_an_idle_unhealthy_host_opens_none() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            ..cfg()
        },
    );
    p.set_route_health(&A, false, t(0)).unwrap();
    quiet(&mut p);
    assert_eq!(p.preconnect(&A, 3.0, t(1)), Ok(false));
    quiet(&mut p);
    assert_eq!(p.stats().connecting, 0);
}

/// §3.3, §9: a route freed while on the blocked list leaves it, so its slot
/// can serve a new route (kills `Routes::unblock_one` replaced by `()`: the
/// reused slot would stay linked on the blocked list, unmarked).
#[test]
fn a_blocked_route_that_goes_idle_leaves_the_blocked_list_when_freed() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 1,
            max_per_route: 1,
            ..cfg()
        },
    );
    let a = open(&mut p, A, t(0));
    // B waits for total capacity: blocked (A's only connection is leased).
    let w = queued(p.lease(&B, None, t(1), Some(t(100))));
    quiet(&mut p);
    // Its deadline passes: it fails, B has nothing left and goes idle.
    p.handle_timeout(t(100));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], failed(w, FailReason::Timeout));
    assert!(matches!(v[1], Action::RouteIdle { key: B, .. }), "{v:?}");
    assert_eq!(p.stats().routes, 1, "B's slot is free");
    // A new route takes B's slot; nothing is blocked any more.
    let wc = queued(p.lease(&C, None, t(101), None));
    quiet(&mut p);
    let v = release(&mut p, a, Release::REUSE, t(102));
    // A's idle connection makes room for C (evicted), C connects (on B's
    // old slot), and A, now empty, goes idle.
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(v[0], close(a.conn(), CloseReason::Evicted));
    let c = connect_of(&v[1]);
    assert!(matches!(v[2], Action::RouteIdle { key: A, .. }), "{v:?}");
    let v = connect(&mut p, c, 1, t(103));
    assert_eq!(single_grant(&v, wc).conn(), c);
}
