//! Typed errors: invalid configuration, stale handles, wrong states, a full
//! route table. Every refused input leaves the pool as it was.

use crate::support::*;
use wharf_core::*;

fn refuse(c: Config) -> Option<ConfigError> {
    let mut st = Store::new();
    Pool::new(&mut st, c).err()
}

#[test]
fn invalid_config_is_rejected_with_each_config_error() {
    use ConfigError::*;
    let base = cfg();
    assert_eq!(refuse(base.clone()), None);
    // The default max_total (25) does not fit 8 connection slots.
    assert_eq!(refuse(Config::default()), Some(MaxTotalExceedsStorage));
    assert_eq!(
        refuse(Config {
            max_total: 0,
            ..base.clone()
        }),
        Some(ZeroMaxTotal)
    );
    assert_eq!(
        refuse(Config {
            max_per_route: 0,
            ..base.clone()
        }),
        Some(ZeroMaxPerRoute)
    );
    assert_eq!(
        refuse(Config {
            max_total: 9,
            ..base.clone()
        }),
        Some(MaxTotalExceedsStorage)
    );
    assert_eq!(
        refuse(Config {
            max_pending: Some(9),
            ..base.clone()
        }),
        Some(MaxPendingExceedsStorage)
    );
    assert_eq!(
        refuse(Config {
            max_leases: Some(0),
            ..base.clone()
        }),
        Some(BadMaxLeases)
    );
    assert_eq!(
        refuse(Config {
            max_leases: Some(9),
            ..base.clone()
        }),
        Some(BadMaxLeases)
    );
    assert_eq!(
        refuse(Config {
            connect_timeout: Some(Duration::ZERO),
            ..base.clone()
        }),
        Some(ZeroTimeout)
    );
    assert_eq!(
        refuse(Config {
            idle_timeout: Some(Duration::ZERO),
            ..base.clone()
        }),
        Some(ZeroTimeout)
    );
    assert_eq!(
        refuse(Config {
            max_lifetime: Some(Duration::ZERO),
            ..base.clone()
        }),
        Some(ZeroTimeout)
    );
    assert_eq!(
        refuse(Config {
            preconnect_ratio: 0.9,
            ..base.clone()
        }),
        Some(BadPreconnectRatio)
    );
    assert_eq!(
        refuse(Config {
            preconnect_ratio: 3.1,
            ..base.clone()
        }),
        Some(BadPreconnectRatio)
    );
    assert_eq!(
        refuse(Config {
            preconnect_ratio: f32::NAN,
            ..base.clone()
        }),
        Some(BadPreconnectRatio)
    );
    assert_eq!(
        refuse(Config {
            min_idle_per_route: 3,
            ..base.clone()
        }),
        Some(MinIdleTooLarge)
    );
    assert_eq!(
        refuse(Config {
            min_idle_per_route: 2,
            max_idle_per_route: Some(1),
            ..base.clone()
        }),
        Some(MinIdleTooLarge)
    );
    assert_eq!(
        refuse(Config {
            connecting_capacity: 0,
            ..base.clone()
        }),
        Some(ZeroConnectingCapacity)
    );
    assert_eq!(
        refuse(Config {
            max_leases_per_conn: Some(0),
            ..base.clone()
        }),
        Some(ZeroMaxLeasesPerConn)
    );
    // Bounds that are valid.
    assert_eq!(
        refuse(Config {
            max_total: 8,
            max_pending: Some(8),
            max_leases: Some(8),
            ..base.clone()
        }),
        None
    );
    assert_eq!(
        refuse(Config {
            preconnect_ratio: 3.0,
            validate_after_inactivity: Some(Duration::ZERO),
            ..base
        }),
        None
    );
}

#[test]
fn storage_without_route_or_lease_slots_is_bad_storage() {
    let mut no_routes: Storage<Key, 4, 0, 4, 4> = Storage::new();
    assert_eq!(
        Pool::new(&mut no_routes, cfg()).err(),
        Some(ConfigError::BadStorage)
    );
    let mut no_leases: Storage<Key, 4, 2, 4, 0> = Storage::new();
    assert_eq!(
        Pool::new(&mut no_leases, cfg()).err(),
        Some(ConfigError::BadStorage)
    );
}

#[test]
fn invalid_route_config_is_rejected_and_creates_no_route() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let bad = [
        (
            RouteConfig {
                max_connections: Some(0),
                ..RouteConfig::default()
            },
            ConfigError::ZeroMaxPerRoute,
        ),
        (
            RouteConfig {
                preconnect_ratio: Some(0.5),
                ..RouteConfig::default()
            },
            ConfigError::BadPreconnectRatio,
        ),
        (
            RouteConfig {
                min_idle: Some(3),
                ..RouteConfig::default()
            },
            ConfigError::MinIdleTooLarge,
        ),
        (
            RouteConfig {
                max_connections: Some(1),
                min_idle: Some(2),
                ..RouteConfig::default()
            },
            ConfigError::MinIdleTooLarge,
        ),
    ];
    for (rc, e) in bad {
        assert_eq!(p.set_route_config(&A, rc, t(0)), Err(RouteError::Config(e)));
        quiet(&mut p);
    }
    // An empty configuration for an unknown route is a no-op.
    p.set_route_config(&A, RouteConfig::default(), t(0))
        .unwrap();
    quiet(&mut p);
    assert_eq!(p.route_stats(&A), None);
    assert_eq!(p.stats().routes, 0);
}

#[test]
fn full_route_table_refuses_new_routes() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    for k in [A, B, C, D] {
        lease_connect(&mut p, k, t(0));
    }
    assert_eq!(p.stats().routes, 4);
    assert_eq!(
        refused(p.lease(&"e", None, t(1), None)),
        LeaseError::RouteTableFull
    );
    quiet(&mut p);
    let one = RouteConfig {
        max_connections: Some(1),
        ..RouteConfig::default()
    };
    assert_eq!(
        p.set_route_config(&"e", one, t(1)),
        Err(RouteError::RouteTableFull)
    );
    quiet(&mut p);
    assert_eq!(p.route_stats(&"e"), None);
    let s = p.stats();
    assert_eq!((s.routes, s.pending, s.connections), (4, 4, 4));
    // Existing routes still work.
    lease_wait(&mut p, A, None, t(2));
}

#[test]
fn double_release_is_stale_lease_and_leaves_the_pool_consistent() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(1));
    let (s, n) = (p.stats(), *p.counters());
    assert_eq!(
        p.release(l, Release::REUSE, t(2)),
        Err(ReleaseError::StaleLease)
    );
    assert_eq!(
        p.release(l, Release::Discard, t(2)),
        Err(ReleaseError::StaleLease)
    );
    quiet(&mut p);
    assert_eq!((p.stats(), *p.counters()), (s, n));
    // The connection is reused by another lease: the old lease is still stale.
    let l2 = granted(p.lease(&A, None, t(3), None));
    assert_eq!(l2.conn(), l.conn());
    assert_eq!(
        p.release(l, Release::REUSE, t(4)),
        Err(ReleaseError::StaleLease)
    );
    quiet(&mut p);
    assert_eq!(p.stats().leased, 1);
    put_back(&mut p, l2, t(5));
    assert_eq!((p.stats().leased, p.stats().idle), (0, 1));
}

#[test]
fn lease_on_a_closed_connection_is_stale() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    let v = release(&mut p, l, Release::Discard, t(1));
    assert_eq!(v[0], close(l.conn(), CloseReason::Discarded));
    assert_eq!(
        p.release(l, Release::REUSE, t(2)),
        Err(ReleaseError::StaleLease)
    );
    quiet(&mut p);
}

#[test]
fn inputs_for_a_closed_connection_are_stale_conn() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(1));
    p.peer_closed(l.conn(), t(2)).unwrap();
    assert_eq!(acts(&mut p)[0], close(l.conn(), CloseReason::PeerClosed));
    let c = l.conn();
    assert_eq!(p.connected(c, 1, t(3)), Err(ConnError::StaleConn));
    assert_eq!(
        p.connect_failed(c, ConnectFailure::Remote, t(3)),
        Err(ConnError::StaleConn)
    );
    assert_eq!(p.peer_closed(c, t(3)), Err(ConnError::StaleConn));
    assert_eq!(
        p.validated(c, Validation::Alive, t(3)),
        Err(ConnError::StaleConn)
    );
    quiet(&mut p);
    assert_eq!(p.route_of(c), None);
    assert_eq!(*p.counters().closes.iter().max().unwrap(), 1);
}

#[test]
fn inputs_for_a_connection_in_another_state_are_wrong_state() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    let c = l.conn();
    // Ready (leased): not connecting, not validating.
    assert_eq!(p.connected(c, 1, t(1)), Err(ConnError::WrongState));
    assert_eq!(
        p.connect_failed(c, ConnectFailure::Local, t(1)),
        Err(ConnError::WrongState)
    );
    assert_eq!(
        p.validated(c, Validation::Stale, t(1)),
        Err(ConnError::WrongState)
    );
    quiet(&mut p);
    // Connecting: no peer close, no validation result.
    let (_w, c2) = lease_connect(&mut p, A, t(2));
    assert_eq!(p.peer_closed(c2, t(3)), Err(ConnError::WrongState));
    assert_eq!(
        p.validated(c2, Validation::Alive, t(3)),
        Err(ConnError::WrongState)
    );
    quiet(&mut p);
    let s = p.stats();
    assert_eq!(
        (s.connections, s.connecting, s.leased, s.pending),
        (2, 1, 1, 1)
    );
    assert_eq!(p.counters().closes, [0; CloseReason::ALL.len()]);
}

#[test]
fn a_lease_from_another_pool_is_foreign_and_changes_nothing() {
    // Issue 10: handles carry their pool's identity. Two pools with the same
    // shape hand out leases with the same index and generation; before, the
    // second pool accepted the first pool's lease and released its own.
    let (mut s1, mut s2) = (Store::new(), Store::new());
    let mut p1 = pool(&mut s1, cfg());
    let mut p2 = pool(&mut s2, cfg());
    let l1 = open(&mut p1, A, t(0));
    let l2 = open(&mut p2, A, t(0));
    assert_eq!(
        (l1.id().index(), l1.id().generation()),
        (l2.id().index(), l2.id().generation())
    );
    assert_eq!(
        p2.release(l1, Release::REUSE, t(1)),
        Err(ReleaseError::ForeignLease)
    );
    assert_eq!(p2.stats().leased, 1, "p2's own lease is still out");
    quiet(&mut p2);
    p2.release(l2, Release::REUSE, t(2)).unwrap();
    p1.release(l1, Release::REUSE, t(2)).unwrap();
    assert_eq!((p1.stats().idle, p2.stats().idle), (1, 1));
    ok(&p1);
    ok(&p2);
}

#[test]
fn a_lease_of_an_earlier_pool_in_the_same_storage_is_refused() {
    // A pool rebuilt in the same storage (firmware restarting its pool) is
    // another pool: the old pool's leases are foreign here.
    let mut st = Store::new();
    let old = {
        let mut p = pool(&mut st, cfg());
        open(&mut p, A, t(0))
    };
    let mut p = pool(&mut st, cfg());
    let mine = open(&mut p, A, t(0));
    assert_eq!(
        p.release(old, Release::REUSE, t(1)),
        Err(ReleaseError::ForeignLease)
    );
    assert_eq!(p.stats().leased, 1);
    p.release(mine, Release::REUSE, t(2)).unwrap();
    ok(&p);
}

#[test]
fn a_lease_that_may_not_wait_is_granted_a_ready_connection_or_times_out() {
    // Issue 16: a deadline of `now` means "do not wait". Before, it failed
    // `Timeout` even with an idle connection ready.
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let l = open(&mut p, A, t(0));
    put_back(&mut p, l, t(1));
    let l = granted(p.lease(&A, None, t(2), Some(t(2))));
    // Nothing ready now: Timeout at once, nothing queued or connected, and no
    // route made for a key never seen.
    assert_eq!(
        refused(p.lease(&A, None, t(3), Some(t(3)))),
        LeaseError::Timeout
    );
    assert_eq!(
        refused(p.lease(&B, None, t(3), Some(t(1)))),
        LeaseError::Timeout
    );
    quiet(&mut p);
    assert_eq!((p.stats().pending, p.stats().connections), (0, 1));
    assert_eq!(p.route_id(&B), None);
    p.release(l, Release::REUSE, t(4)).unwrap();
    ok(&p);
}

#[test]
fn no_waiting_room_and_no_warm_up_is_a_config_error() {
    // Issue 16: max_pending 0 with nothing warming connections could never
    // serve a lease; with warm-up it means "grant an idle one or fail".
    let mut st = Store::new();
    let none = Config {
        max_pending: Some(0),
        ..cfg()
    };
    assert_eq!(
        Pool::new(&mut st, none.clone()).err(),
        Some(ConfigError::NeverServes)
    );
    let warm = Config {
        min_idle_per_route: 1,
        ..none
    };
    assert!(Pool::new(&mut st, warm).is_ok());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri backs every allocation with host memory and interprets its zeroing byte by byte: \
              the tables this test asks for (GiBs) do not fit; it runs natively in every test run"
)]
fn storage_too_large_to_allocate_is_a_typed_error() {
    // Issue 16: before, `with_capacity` aborted the process.
    let cap = Capacity {
        conns: (1 << 30) - 1,
        routes: 1 << 20,
        waiters: 1 << 20,
        leases: (1 << 30) - 1,
    };
    let cfg = Config {
        max_total: 1 << 29,
        ..Config::default()
    };
    let r: Result<Pool<'static, u32>, _> = Pool::with_capacity(cap, cfg);
    assert_eq!(r.err(), Some(ConfigError::OutOfMemory));
}
