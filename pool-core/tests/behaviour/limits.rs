//! §3.3 route and total limits, eviction, blocking, starvation guard, lazy
//! shrink of a lowered route limit, and §3.10 idle limits.

use crate::support::*;
use wharf_core::*;

#[test]
fn route_limit_queues_leases_beyond_it_without_connecting() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let (w1, c1) = lease_connect(&mut p, A, t(0));
    let (w2, c2) = lease_connect(&mut p, A, t(0));
    let w3 = lease_wait(&mut p, A, None, t(0));
    let rs = p.route_stats(&A).unwrap();
    assert_eq!(
        (rs.connections, rs.connecting, rs.pending, rs.limit),
        (2, 2, 3, 2)
    );
    assert_eq!(p.counters().connects, 2);

    let v = connect(&mut p, c1, 1, t(1));
    let l1 = single_grant(&v, w1);
    let v = connect(&mut p, c2, 1, t(1));
    single_grant(&v, w2);
    let v = release(&mut p, l1, Release::REUSE, t(2));
    assert_eq!(single_grant(&v, w3).conn(), c1);
    assert_eq!(p.counters().connects, 2);
}

#[test]
fn total_limit_evicts_the_lru_idle_connection_of_another_route() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 2,
            ..cfg()
        },
    );
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    put_back(&mut p, l1, t(10));
    put_back(&mut p, l2, t(20));

    let w = queued(p.lease(&B, None, t(30), None));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l1.conn(), CloseReason::Evicted));
    let c3 = connect_of(&v[1]);
    assert_eq!(p.route_key(route(&p, c3)), Some(&B));
    assert_eq!(p.counters().closes_for(CloseReason::Evicted), 1);
    assert_eq!(p.stats().connections, 2);
    assert_eq!(p.route_stats(&A).unwrap().connections, 1);

    let v = connect(&mut p, c3, 1, t(31));
    assert_eq!(single_grant(&v, w).conn(), c3);
    // The most recently used connection of A survived.
    assert_eq!(granted(p.lease(&A, None, t(32), None)).conn(), l2.conn());
    quiet(&mut p);
}

#[test]
fn total_limit_blocks_the_route_until_an_idle_connection_can_be_evicted() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 2,
            ..cfg()
        },
    );
    let l1 = open(&mut p, A, t(0));
    let _l2 = open(&mut p, A, t(0));
    // Nothing idle to evict: B waits without a connect.
    let w = lease_wait(&mut p, B, None, t(1));
    assert_eq!(p.stats().connections, 2);

    // A connection goes idle: unblock() evicts it for the blocked route.
    let v = release(&mut p, l1, Release::REUSE, t(2));
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l1.conn(), CloseReason::Evicted));
    let c3 = connect_of(&v[1]);
    assert_eq!(p.route_key(route(&p, c3)), Some(&B));
    let v = connect(&mut p, c3, 1, t(3));
    assert_eq!(single_grant(&v, w).conn(), c3);
}

#[test]
fn total_limit_unblocks_the_blocked_route_when_a_connection_closes() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 2,
            ..cfg()
        },
    );
    let l1 = open(&mut p, A, t(0));
    let _l2 = open(&mut p, A, t(0));
    let w = lease_wait(&mut p, B, None, t(1));
    let v = release(&mut p, l1, Release::Discard, t(2));
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l1.conn(), CloseReason::Discarded));
    let c3 = connect_of(&v[1]);
    assert_eq!(p.route_key(route(&p, c3)), Some(&B));
    assert_eq!(p.counters().closes_for(CloseReason::Evicted), 0);
    let v = connect(&mut p, c3, 1, t(3));
    single_grant(&v, w);
}

#[test]
fn lowering_the_route_limit_closes_nothing_at_once_and_excess_closes_on_release() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    let one = RouteConfig {
        max_connections: Some(1),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, one, t(1)).unwrap();
    quiet(&mut p);
    let rs = p.route_stats(&A).unwrap();
    assert_eq!((rs.limit, rs.connections, rs.leased), (1, 2, 2));

    let v = release(&mut p, l1, Release::REUSE, t(2));
    assert_eq!(v, vec![close(l1.conn(), CloseReason::RouteLimit)]);
    assert_eq!(p.counters().closes_for(CloseReason::RouteLimit), 1);
    // Now at the limit: the last connection goes idle.
    put_back(&mut p, l2, t(3));
    let rs = p.route_stats(&A).unwrap();
    assert_eq!((rs.connections, rs.idle), (1, 1));
}

#[test]
fn starvation_guard_opens_one_connection_for_a_route_with_none() {
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
    let _la = open(&mut p, A, t(0));
    // max_total is reached and nothing is idle, but B has no connection at all.
    let (w, cb) = lease_connect(&mut p, B, t(1));
    let n = *p.counters();
    assert_eq!((n.guard_connects, n.connects, n.preconnects), (1, 2, 0));
    assert_eq!(p.stats().connections, 2);
    // Only one: B now has a connection, so a second waiter on B just waits.
    let _w2 = lease_wait(&mut p, B, None, t(2));
    assert_eq!(p.counters().guard_connects, 1);
    let v = connect(&mut p, cb, 1, t(3));
    assert_eq!(single_grant(&v, w).conn(), cb);
    // Another route with no connection gets its own guard connect.
    let (_wc, _cc) = lease_connect(&mut p, C, t(4));
    assert_eq!(p.counters().guard_connects, 2);
    assert_eq!(p.stats().connections, 3);
}

#[test]
fn without_starvation_guard_a_route_waits_at_the_total_limit() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 1,
            max_per_route: 1,
            ..cfg()
        },
    );
    let la = open(&mut p, A, t(0));
    let ra = route(&p, la.conn());
    let w = lease_wait(&mut p, B, None, t(1));
    assert_eq!(p.counters().guard_connects, 0);
    assert_eq!(p.stats().connections, 1);
    // Blocked until A's connection goes idle and can be evicted; A, now empty,
    // becomes idle (the order of its RouteIdle and B's Connect is not fixed).
    let v = release(&mut p, la, Release::REUSE, t(2));
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(v[0], close(la.conn(), CloseReason::Evicted));
    assert!(v.contains(&route_idle(ra, A)), "{v:?}");
    let cb = v.iter().find_map(|a| match a {
        Action::Connect { conn, .. } => Some(*conn),
        _ => None,
    });
    let cb = cb.expect("a Connect for B");
    assert_eq!(p.route_key(route(&p, cb)), Some(&B));
    let v = connect(&mut p, cb, 1, t(3));
    single_grant(&v, w);
}

#[test]
fn max_idle_per_route_closes_the_returning_connection() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_idle_per_route: Some(1),
            ..cfg()
        },
    );
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    put_back(&mut p, l1, t(1));
    let v = release(&mut p, l2, Release::REUSE, t(2));
    assert_eq!(v, vec![close(l2.conn(), CloseReason::IdleLimit)]);
    assert_eq!(p.counters().closes_for(CloseReason::IdleLimit), 1);
    assert_eq!(granted(p.lease(&A, None, t(3), None)).conn(), l1.conn());
    quiet(&mut p);
}

#[test]
fn max_idle_closes_the_global_lru_idle_connection() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_idle: Some(1),
            ..cfg()
        },
    );
    let la = open(&mut p, A, t(0));
    let lb = open(&mut p, B, t(0));
    let ra = route(&p, la.conn());
    put_back(&mut p, la, t(10));
    // B's connection goes idle: 2 idle > 1, A's (least recently used) closes,
    // and A, now empty, is idle.
    let v = release(&mut p, lb, Release::REUSE, t(20));
    assert_eq!(
        v,
        vec![close(la.conn(), CloseReason::IdleLimit), route_idle(ra, A)]
    );
    assert_eq!(p.counters().closes_for(CloseReason::IdleLimit), 1);
    assert_eq!(p.stats().idle, 1);
    assert_eq!(granted(p.lease(&B, None, t(21), None)).conn(), lb.conn());
    quiet(&mut p);
}

#[test]
fn eviction_waits_for_the_close_to_be_polled_when_no_connection_slot_is_free() {
    // Exactly 2 connection slots for max_total 2.
    let mut st: Storage<Key, 2, 4, 8, 8> = Storage::new();
    let mut p = Pool::new(
        &mut st,
        Config {
            max_total: 2,
            ..cfg()
        },
    )
    .unwrap();
    let drain = |p: &mut Pool<'_, Key>| {
        let mut v = Vec::new();
        while let Some(a) = p.poll_action() {
            v.push(a);
        }
        p.check_invariants().unwrap();
        v
    };
    let mut ls = Vec::new();
    for _ in 0..2 {
        let _w = queued(p.lease(&A, None, t(0), None));
        let v = drain(&mut p);
        let c = connect_of(&v[0]);
        p.connected(c, 1, t(0)).unwrap();
        let v = drain(&mut p);
        ls.push(grant_of(&v[0]).1);
    }
    for (i, l) in ls.iter().enumerate() {
        p.release(*l, Release::REUSE, t(10 + i as u64)).unwrap();
        assert_eq!(drain(&mut p), vec![]);
    }
    let w = queued(p.lease(&B, None, t(20), None));
    p.check_invariants().unwrap();
    // The evicted connection's slot is held by its unpolled Close: B is blocked.
    let s = p.stats();
    assert_eq!((s.connections, s.closing, s.connecting), (1, 1, 0));
    assert_eq!(
        p.poll_action(),
        Some(close(ls[0].conn(), CloseReason::Evicted))
    );
    p.check_invariants().unwrap();
    // Polling the Close freed the slot and unblocked B.
    let cb = match p.poll_action() {
        Some(Action::Connect { conn, .. }) => conn,
        other => panic!("expected Connect, got {other:?}"),
    };
    assert_eq!(p.poll_action(), None);
    assert_eq!(p.route_key(p.route_of(cb).unwrap()), Some(&B));
    p.connected(cb, 1, t(21)).unwrap();
    let v = drain(&mut p);
    assert_eq!(grant_of(&v[0]).0, w);
}

#[test]
fn blocked_routes_are_unblocked_in_the_order_they_were_blocked() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 2,
            ..cfg()
        },
    );
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    let _wc = lease_wait(&mut p, C, None, t(1));
    let _wb = lease_wait(&mut p, B, None, t(2));
    let v = release(&mut p, l1, Release::Discard, t(3));
    assert_eq!(v[0], close(l1.conn(), CloseReason::Discarded));
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(p.route_key(route(&p, connect_of(&v[1]))), Some(&C));
    let v = release(&mut p, l2, Release::Discard, t(4));
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(v[0], close(l2.conn(), CloseReason::Discarded));
    let cb = v.iter().find_map(|a| match a {
        Action::Connect { conn, .. } => Some(*conn),
        _ => None,
    });
    assert_eq!(p.route_key(route(&p, cb.unwrap())), Some(&B));
}

#[test]
fn raising_the_route_limit_connects_for_queued_waiters() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let _l1 = open(&mut p, A, t(0));
    let _l2 = open(&mut p, A, t(0));
    let w = lease_wait(&mut p, A, None, t(1));
    let three = RouteConfig {
        max_connections: Some(3),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, three, t(2)).unwrap();
    let v = acts(&mut p);
    let c3 = single_connect(&p, &v, A);
    let v = connect(&mut p, c3, 1, t(3));
    single_grant(&v, w);
    assert_eq!(p.route_stats(&A).unwrap().limit, 3);
}

#[test]
fn returned_connection_serves_a_waiter_before_idle_limits_apply() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 1,
            max_idle_per_route: Some(0),
            ..cfg()
        },
    );
    let l = open(&mut p, A, t(0));
    let w = lease_wait(&mut p, A, None, t(1));
    let v = release(&mut p, l, Release::REUSE, t(2));
    let l2 = single_grant(&v, w);
    assert_eq!(p.counters().closes_for(CloseReason::IdleLimit), 0);
    let v = release(&mut p, l2, Release::REUSE, t(3));
    assert_eq!(v[0], close(l.conn(), CloseReason::IdleLimit));
}

#[test]
fn route_idle_frees_the_slot_of_an_unconfigured_route() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let la = open(&mut p, A, t(0));
    let ra = route(&p, la.conn());
    for k in [B, C, D] {
        lease_connect(&mut p, k, t(0));
    }
    assert_eq!(
        refused(p.lease(&"e", None, t(1), None)),
        LeaseError::RouteTableFull
    );
    let v = release(&mut p, la, Release::Discard, t(2));
    assert_eq!(
        v,
        vec![close(la.conn(), CloseReason::Discarded), route_idle(ra, A)]
    );
    assert_eq!(p.route_key(ra), None);
    assert_eq!(p.stats().routes, 3);
    // The freed slot takes a new route.
    queued(p.lease(&"e", None, t(3), None));
    ok(&p);
    assert_eq!(p.stats().routes, 4);
}

#[test]
fn total_limit_eviction_may_take_the_routes_own_mismatched_idle_connection() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 2,
            max_per_route: 3,
            ..cfg()
        },
    );
    let l1 = open(&mut p, A, t(0));
    let _l2 = open(&mut p, A, t(0));
    p.release(l1, tagged(T1), t(10)).unwrap();
    quiet(&mut p);
    // Under the route limit (2 < 3) but at max_total: the global LRU idle
    // connection, here A's own (tagged T1), is evicted (HttpClient: any route,
    // this one included).
    let w = queued(p.lease(&A, None, t(20), None));
    let v = acts(&mut p);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0], close(l1.conn(), CloseReason::Evicted));
    let c3 = connect_of(&v[1]);
    assert_eq!(p.counters().closes_for(CloseReason::RouteLimit), 0);
    let v = connect(&mut p, c3, 1, t(21));
    single_grant(&v, w);
}

#[test]
fn max_total_raised_at_run_time_lets_a_blocked_route_connect() {
    // Issue 16: live limits (HttpClient's setMaxTotal), within the storage.
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 1,
            ..cfg()
        },
    );
    let _a = open(&mut p, A, t(0));
    let w = queued(p.lease(&B, None, t(1), None));
    quiet(&mut p);
    assert_eq!(p.set_max_total(0, t(2)), Err(ConfigError::ZeroMaxTotal));
    assert_eq!(
        p.set_max_total(9, t(2)),
        Err(ConfigError::MaxTotalExceedsStorage)
    );
    p.set_max_total(2, t(2)).unwrap();
    let v = acts(&mut p);
    let cb = single_connect(&p, &v, B);
    single_grant(&connect(&mut p, cb, 1, t(3)), w);
    assert_eq!(p.stats().max_total, 2);
    ok(&p);
}

#[test]
fn max_total_lowered_at_run_time_closes_excess_as_leases_come_back() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 3,
            max_per_route: 3,
            ..cfg()
        },
    );
    let l1 = open(&mut p, A, t(0));
    let l2 = open(&mut p, A, t(0));
    let l3 = open(&mut p, A, t(0));
    p.set_max_total(1, t(1)).unwrap();
    quiet(&mut p);
    assert_eq!(p.stats().connections, 3, "nothing closes at once");
    let c1 = l1.conn();
    assert_eq!(
        release(&mut p, l1, Release::REUSE, t(2)),
        vec![close(c1, CloseReason::TotalLimit)]
    );
    let c2 = l2.conn();
    assert_eq!(
        release(&mut p, l2, Release::REUSE, t(3)),
        vec![close(c2, CloseReason::TotalLimit)]
    );
    // Back at the limit: the last one stays.
    assert_eq!(release(&mut p, l3, Release::REUSE, t(4)), vec![]);
    assert_eq!((p.stats().connections, p.stats().idle), (1, 1));
    ok(&p);
}

#[test]
fn max_per_route_changed_at_run_time() {
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
    assert_eq!(
        p.set_max_per_route(0, t(2)),
        Err(ConfigError::ZeroMaxPerRoute)
    );
    p.set_max_per_route(2, t(2)).unwrap();
    let v = acts(&mut p);
    let c2 = single_connect(&p, &v, A);
    let l2 = single_grant(&connect(&mut p, c2, 1, t(3)), w);
    assert_eq!(p.route_stats(&A).unwrap().limit, 2);
    // Lowered back: the first connection released over the limit closes.
    p.set_max_per_route(1, t(4)).unwrap();
    quiet(&mut p);
    let c1 = l1.conn();
    assert_eq!(
        release(&mut p, l1, Release::REUSE, t(5)),
        vec![close(c1, CloseReason::RouteLimit)]
    );
    assert_eq!(release(&mut p, l2, Release::REUSE, t(6)), vec![]);
    ok(&p);
}

#[test]
fn lifetime_jitter_spreads_expiry_within_its_bound_and_is_seeded() {
    // Issue 16: Envoy's max_connection_duration_jitter. Connections opened at
    // once expire at different instants, all within [lifetime, lifetime*1.5).
    let expiries = |seed: u64| {
        let mut st: Storage<Key, 16, 4, 16, 16> = Storage::new();
        let mut p = Pool::new(
            &mut st,
            Config {
                max_total: 16,
                max_per_route: 16,
                max_lifetime: Some(ms(10_000)),
                max_lifetime_jitter_percent: 50,
                seed,
                ..cfg()
            },
        )
        .unwrap();
        let mut leases = Vec::new();
        for _ in 0..16 {
            let w = queued(p.lease(&A, None, t(0), None));
            let mut c = None;
            while let Some(a) = p.poll_action() {
                if let Action::Connect { conn, .. } = a {
                    c = Some(conn);
                }
            }
            p.connected(c.unwrap(), 1, t(0)).unwrap();
            match p.poll_action() {
                Some(Action::Granted { waiter, lease }) if waiter == w => leases.push(lease),
                other => panic!("{other:?}"),
            }
        }
        for l in leases {
            p.release(l, Release::REUSE, t(1)).unwrap();
        }
        // Step through time and note when each connection closes Expired.
        let mut at = Vec::new();
        let mut now = 1;
        while let Some(next) = p.poll_timeout() {
            now = next.as_millis().max(now);
            p.handle_timeout(next);
            while let Some(a) = p.poll_action() {
                if let Action::Close {
                    reason: CloseReason::Expired,
                    ..
                } = a
                {
                    at.push(now);
                }
            }
        }
        at
    };
    let a = expiries(7);
    assert_eq!(a.len(), 16);
    assert!(a.iter().all(|&t| (10_000..15_000).contains(&t)), "{a:?}");
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert!(distinct.len() >= 12, "expiries not spread: {a:?}");
    assert_eq!(expiries(7), a, "same seed, same spread");
    assert_ne!(expiries(8), a, "another seed, another spread");
}
