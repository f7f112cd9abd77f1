//! Caller input never panics the core: handles from another pool, absurd
//! capacities, time going backwards, exhausted storage.

use wharf_core::*;

fn pool() -> Pool<'static, u8> {
    let cap = Capacity {
        conns: 4,
        routes: 2,
        waiters: 4,
        leases: 4,
    };
    Pool::with_capacity(
        cap,
        Config {
            max_total: 4,
            max_per_route: 4,
            ..Config::default()
        },
    )
    .unwrap()
}

fn connect_one(p: &mut Pool<'static, u8>, key: u8, capacity: u32) -> (ConnId, Vec<Lease>) {
    p.lease(&key, None, Instant::ZERO, None).unwrap();
    let Some(Action::Connect { conn, .. }) = p.poll_action() else {
        panic!("no connect")
    };
    p.connected(conn, capacity, Instant::ZERO).unwrap();
    let mut leases = Vec::new();
    while let Some(a) = p.poll_action() {
        if let Action::Granted { lease, .. } = a {
            leases.push(lease);
        }
    }
    (conn, leases)
}

#[test]
fn huge_stream_capacity_is_clamped_and_accounting_stays_exact() {
    let mut p = pool();
    let (conn, leases) = connect_one(&mut p, 1, u32::MAX);
    assert_eq!(leases.len(), 1);
    assert_eq!(p.route_load(&1).spare, (Pool::<u8>::MAX_STREAMS - 1) as u64);
    p.release(leases[0], Release::REUSE, Instant::ZERO).unwrap();
    p.check_invariants().unwrap();
    let _ = conn;
}

#[test]
fn handles_from_another_pool_are_typed_errors() {
    let mut big: Pool<'static, u8> = Pool::with_capacity(
        Capacity {
            conns: 64,
            routes: 8,
            waiters: 64,
            leases: 64,
        },
        Config {
            max_total: 64,
            max_per_route: 64,
            ..Config::default()
        },
    )
    .unwrap();
    let mut leases = Vec::new();
    let mut conns = Vec::new();
    let mut waiters = Vec::new();
    for _ in 0..40 {
        if let LeaseOutcome::Queued(w) = big.lease(&1, None, Instant::ZERO, None).unwrap() {
            waiters.push(w);
        }
        while let Some(a) = big.poll_action() {
            if let Action::Connect { conn, .. } = a {
                conns.push(conn);
                big.connected(conn, 1, Instant::ZERO).unwrap();
            }
            if let Action::Granted { lease, .. } = a {
                leases.push(lease);
            }
        }
    }
    let mut small = pool();
    for l in &leases {
        assert_eq!(
            small.release(*l, Release::REUSE, Instant::ZERO),
            Err(ReleaseError::ForeignLease)
        );
    }
    for c in &conns {
        assert!(small.connected(*c, 1, Instant::ZERO).is_err());
        assert!(small.peer_closed(*c, Instant::ZERO).is_err());
        assert!(small
            .validated(*c, Validation::Alive, Instant::ZERO)
            .is_err());
        assert_eq!(small.route_of(*c), None);
    }
    for w in &waiters {
        assert_eq!(
            small.cancel(*w, CancelPolicy::Default, Instant::ZERO),
            Err(CancelError::StaleWaiter)
        );
    }
    small.check_invariants().unwrap();
}

#[test]
fn time_going_backwards_is_the_previous_now() {
    let mut p = pool();
    let (_, leases) = connect_one(&mut p, 1, 1);
    p.release(leases[0], Release::REUSE, Instant::from_secs(10))
        .unwrap();
    // An input "in the past" runs at the latest now (10 s): the connection was
    // used 0 s ago, so no validation is due and it is granted at once.
    let out = p.lease(&1, None, Instant::from_secs(1), None).unwrap();
    assert!(matches!(out, LeaseOutcome::Granted(_)));
    assert_eq!(p.now(), Instant::from_secs(10));
    // And its idle timeout (90 s) counts from 10 s, not from 1 s.
    let LeaseOutcome::Granted(l) = out else {
        unreachable!()
    };
    p.release(l, Release::REUSE, Instant::from_secs(2)).unwrap();
    p.handle_timeout(Instant::from_secs(99));
    assert_eq!(p.stats().idle, 1);
    p.handle_timeout(Instant::from_secs(100));
    assert_eq!(p.stats().idle, 0);
    p.check_invariants().unwrap();
}

#[test]
fn exhausted_route_and_waiter_storage_answer_with_errors() {
    let mut p = pool();
    for k in 0..2u8 {
        p.lease(&k, None, Instant::ZERO, None).unwrap();
    }
    assert_eq!(
        p.lease(&9, None, Instant::ZERO, None),
        Err(LeaseError::RouteTableFull)
    );
    p.lease(&0, None, Instant::ZERO, None).unwrap();
    p.lease(&1, None, Instant::ZERO, None).unwrap();
    assert_eq!(
        p.lease(&0, None, Instant::ZERO, None),
        Err(LeaseError::Overflow)
    );
    while p.poll_action().is_some() {}
    p.check_invariants().unwrap();
    assert_eq!(p.stats().pending, 4);
}

#[test]
fn out_of_range_config_values_are_refused() {
    let cap = Capacity {
        conns: 4,
        routes: 2,
        waiters: 4,
        leases: 4,
    };
    let bad = [
        Config {
            connecting_capacity: 1 << 20,
            ..Config::default()
        },
        Config {
            preconnect_ratio: f32::NAN,
            ..Config::default()
        },
        Config {
            max_total: 5,
            ..Config::default()
        },
    ];
    for cfg in bad {
        assert!(Pool::<u8>::with_capacity(
            cap,
            Config {
                max_per_route: 2,
                ..cfg
            }
        )
        .is_err());
    }
    let empty = Capacity {
        conns: 0,
        routes: 1,
        waiters: 0,
        leases: 1,
    };
    assert_eq!(
        Pool::<u8>::with_capacity(
            empty,
            Config {
                max_total: 1,
                ..Config::default()
            }
        )
        .err(),
        Some(ConfigError::BadStorage)
    );
}

#[test]
fn a_timeout_reported_by_the_backend_is_an_ordinary_failure_without_close() {
    let mut p = pool();
    p.lease(&1, None, Instant::ZERO, None).unwrap();
    let Some(Action::Connect { conn, .. }) = p.poll_action() else {
        panic!("no connect")
    };
    p.connect_failed(conn, ConnectFailure::Timeout, Instant::from_millis(5))
        .unwrap();
    let actions: Vec<_> = std::iter::from_fn(|| p.poll_action()).collect();
    assert!(
        actions.iter().all(|a| !matches!(a, Action::Close { .. })),
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Failed {
            reason: FailReason::ConnectFailed(ConnectFailure::Timeout),
            ..
        }
    )));
    assert_eq!(
        p.counters().connect_failures_for(ConnectFailure::Timeout),
        1
    );
    assert_eq!(p.counters().closes_for(CloseReason::ConnectTimeout), 0);
    p.check_invariants().unwrap();
}

#[test]
fn warm_up_never_fights_the_idle_limit() {
    // min_idle 2 on each of 2 routes, but at most 3 idle connections in all.
    let cap = Capacity {
        conns: 8,
        routes: 2,
        waiters: 4,
        leases: 8,
    };
    let cfg = Config {
        max_total: 8,
        max_per_route: 4,
        min_idle_per_route: 2,
        max_idle: Some(3),
        ..Config::default()
    };
    let mut p: Pool<'static, u8> = Pool::with_capacity(cap, cfg).unwrap();
    for k in 0..2u8 {
        p.set_route_config(
            &k,
            RouteConfig {
                max_connections: Some(4),
                ..Default::default()
            },
            Instant::ZERO,
        )
        .unwrap();
    }
    // Answer every connect at once, many times over: the pool settles at the
    // idle limit instead of closing and reopening connections forever.
    for round in 0..20u64 {
        let now = Instant::from_millis(round);
        p.handle_timeout(now);
        while let Some(a) = p.poll_action() {
            if let Action::Connect { conn, .. } = a {
                p.connected(conn, 1, now).unwrap();
            }
        }
        p.check_invariants().unwrap();
    }
    assert_eq!(p.stats().idle, 3);
    assert_eq!(p.counters().closes_for(CloseReason::IdleLimit), 0);
    assert_eq!(p.counters().connects, 3);
}

#[test]
fn storage_beyond_what_u32_indices_name_is_refused_before_allocating() {
    let cfg = Config {
        max_total: 1,
        ..Config::default()
    };
    let too_many = 1usize << 30;
    for cap in [
        Capacity {
            conns: too_many,
            routes: 1,
            waiters: 1,
            leases: 1,
        },
        Capacity {
            conns: 1,
            routes: too_many,
            waiters: 1,
            leases: 1,
        },
        Capacity {
            conns: 1,
            routes: 1,
            waiters: too_many,
            leases: 1,
        },
        Capacity {
            conns: 1,
            routes: 1,
            waiters: 1,
            leases: too_many,
        },
    ] {
        assert_eq!(
            Pool::<u8>::with_capacity(cap, cfg.clone()).err(),
            Some(ConfigError::BadStorage),
            "{cap:?}"
        );
    }
}

/// Every slot of a `u16` storage at its largest (8,191 of each kind) is
/// used at once: connections and routes up to index 8,190 connect and
/// grant, 8,191 waiters queue and are granted by releases, then every
/// connection closes and every route goes idle. The action queue
/// links these slots with their kind in the bits above the index, so an
/// index that reached those bits would answer the wrong slot.
#[test]
fn a_u16_storage_at_its_largest_serves_every_slot() {
    assert_eq!(<u16 as Index>::MAX_SLOTS, 8191);
    // Under Miri (about 30,000 inputs would take hours) the same sequence on
    // 64 slots of each kind: the core has no `unsafe`, Miri checks the rest.
    if cfg!(miri) {
        every_slot_of_a_u16_storage_serves::<64>();
    } else {
        every_slot_of_a_u16_storage_serves::<8191>();
    }
}

fn every_slot_of_a_u16_storage_serves<const N: usize>() {
    // About 2.6 MB of storage at 8,191: built on a thread with room for it.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let mut storage: Box<Storage<u16, N, N, N, N, u16>> = Box::new(Storage::new());
            let cfg = Config {
                max_total: N as u32,
                max_per_route: 1,
                max_pending: Some(N as u32),
                validate_after_inactivity: None,
                ..Config::default()
            };
            let mut p = Pool::new(&mut storage, cfg).unwrap();
            let t = Instant::ZERO;
            let mut conns = std::collections::HashMap::new();
            for k in 0..N as u16 {
                assert!(matches!(
                    p.lease(&k, None, t, None).unwrap(),
                    LeaseOutcome::Queued(_)
                ));
                let Some(Action::Connect { conn, route }) = p.poll_action() else {
                    panic!("no connect for route {k}")
                };
                assert_eq!(p.route_key(route), Some(&k));
                assert_eq!(p.poll_action(), None);
                conns.insert(k, conn);
            }
            let mut leases = Vec::new();
            for k in 0..N as u16 {
                p.connected(conns[&k], 1, t).unwrap();
                let Some(Action::Granted { lease, .. }) = p.poll_action() else {
                    panic!("no grant on route {k}")
                };
                assert_eq!(lease.conn(), conns[&k]);
                leases.push((k, lease));
            }
            assert_eq!(p.stats().connections, N as u32);
            let mut waiters = Vec::new();
            for k in 0..N as u16 {
                let LeaseOutcome::Queued(w) = p.lease(&k, None, t, None).unwrap() else {
                    panic!("route {k} is at its limit: the lease waits")
                };
                waiters.push(w);
            }
            assert_eq!(p.poll_action(), None);
            p.check_invariants().unwrap();
            let mut granted = Vec::new();
            for (i, (k, lease)) in leases.into_iter().enumerate() {
                p.release(lease, Release::REUSE, t).unwrap();
                let Some(Action::Granted { waiter, lease }) = p.poll_action() else {
                    panic!("the release on route {k} granted nothing")
                };
                assert_eq!((waiter, lease.conn()), (waiters[i], conns[&k]));
                assert_eq!(p.poll_action(), None);
                granted.push((k, lease));
            }
            assert_eq!(p.stats().leased, N as u32);
            p.check_invariants().unwrap();
            // Every connection discarded: each closes and its route goes
            // idle (route slots up to 8,190 in the action queue).
            for (k, lease) in granted {
                p.release(lease, Release::Discard, t).unwrap();
                let mut closed = false;
                let mut idle = false;
                while let Some(a) = p.poll_action() {
                    match a {
                        Action::Close { conn, .. } => {
                            assert_eq!(conn, conns[&k]);
                            closed = true;
                        }
                        Action::RouteIdle { key, .. } => {
                            assert_eq!(key, k);
                            idle = true;
                        }
                        other => panic!("route {k}: {other:?}"),
                    }
                }
                assert!(closed && idle, "route {k}: closed {closed}, idle {idle}");
            }
            let s = p.stats();
            assert_eq!((s.connections, s.routes), (0, 0), "{s:?}");
            p.check_invariants().unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}
