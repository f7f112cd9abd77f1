//! §3.2 preconnect (Envoy's `shouldConnect` with the documented Choice),
//! §3.5 `min_idle` warm-up, §8 retry backoff.

use crate::support::*;
use wharf_core::*;

fn connects(v: &Acts) -> Vec<ConnId> {
    v.iter().map(connect_of).collect()
}

#[test]
fn preconnect_ratio_opens_connections_beyond_the_demand() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            preconnect_ratio: 1.5,
            ..cfg()
        },
    );
    let _w = queued(p.lease(&A, None, t(0), None));
    // Demand: 1 > 0 -> connect. Preconnect: 1 * 1.5 > 1 -> connect; 1.5 > 2 stops.
    let v = acts(&mut p);
    assert_eq!(connects(&v).len(), 2, "{v:?}");
    let n = *p.counters();
    assert_eq!((n.connects, n.preconnects, n.warmups), (2, 1, 0));
}

#[test]
fn ratio_one_never_preconnects() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            preconnect_ratio: 1.0,
            ..cfg()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    let v = connect(&mut p, c, 1, t(1));
    single_grant(&v, w);
    assert_eq!(p.counters().preconnects, 0);
}

#[test]
fn preconnect_makes_at_most_three_connects_per_trigger_and_never_passes_limits() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 8,
            max_per_route: 8,
            ..cfg()
        },
    );
    for _ in 0..3 {
        lease_connect(&mut p, A, t(0));
    }
    // 3 queued, 3 connecting: ratio 3 wants 9 connections' worth of capacity,
    // but one trigger makes at most 3 connects.
    let r3 = RouteConfig {
        preconnect_ratio: Some(3.0),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, r3, t(1)).unwrap();
    let v = acts(&mut p);
    assert_eq!(connects(&v).len(), 3, "{v:?}");
    assert_eq!(p.counters().preconnects, 3);
    assert_eq!(p.stats().connecting, 6);
    // Next trigger: 4 queued * 3 > 6 but only 2 more fit in the limits.
    let _w4 = queued(p.lease(&A, None, t(2), None));
    let v = acts(&mut p);
    assert_eq!(connects(&v).len(), 2, "{v:?}");
    assert_eq!(p.stats().connections, 8);
    assert_eq!(p.counters().preconnects, 5);
    // At the limits: nothing more.
    lease_wait(&mut p, A, None, t(3));
    assert_eq!(p.counters().connects, 8);
}

#[test]
fn preconnect_counts_the_spare_capacity_of_open_connections() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            preconnect_ratio: 1.5,
            ..cfg()
        },
    );
    let w = queued(p.lease(&A, None, t(0), None));
    let v = acts(&mut p);
    let cs = connects(&v);
    assert_eq!(cs.len(), 2);
    let g = connect(&mut p, cs[0], 4, t(1));
    single_grant(&g, w);
    assert_eq!(connect(&mut p, cs[1], 4, t(1)), vec![]);
    // Up to 5 leases on 8 streams: active * 1.5 <= spare + active = 8, so no
    // stream opens a connection (Envoy's per-pool check, counting only
    // connecting capacity, would preconnect on each of them).
    for i in 0..4 {
        granted(p.lease(&A, None, t(2 + i), None));
        quiet(&mut p);
    }
    assert_eq!(p.stats().leased, 5);
    let n = *p.counters();
    assert_eq!((n.connects, n.preconnects), (2, 1));
    // The 6th: 6 * 1.5 = 9 > 2 spare + 6 active: one preconnect (then 9 > 1 + 2 + 6 fails).
    granted(p.lease(&A, None, t(10), None));
    let v = acts(&mut p);
    single_connect(&p, &v, A);
    let n = *p.counters();
    assert_eq!((n.connects, n.preconnects), (3, 2));
}

#[test]
fn preconnect_is_paused_by_the_retry_backoff() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            preconnect_ratio: 2.0,
            ..cfg()
        },
    );
    let w1 = queued(p.lease(&A, None, t(0), None));
    let v = acts(&mut p);
    let cs = connects(&v);
    assert_eq!(cs.len(), 2, "{v:?}");
    assert_eq!(p.counters().preconnects, 1);
    p.connect_failed(cs[0], ConnectFailure::Remote, t(5))
        .unwrap();
    assert_eq!(
        acts(&mut p),
        vec![failed(
            w1,
            FailReason::ConnectFailed(ConnectFailure::Remote)
        )]
    );
    // 1 queued * 2.0 > 1 connecting would preconnect, but the backoff (until
    // 1005 ms) pauses it; demand (1 > 1) does not ask for one.
    let _w2 = lease_wait(&mut p, A, None, t(10));
    assert_eq!(tick(&mut p, t(1004)), vec![]);
    let v = tick(&mut p, t(1005));
    assert_eq!(connects(&v).len(), 1, "{v:?}");
    let n = *p.counters();
    assert_eq!((n.connects, n.preconnects), (3, 2));
}

#[test]
fn min_idle_warms_up_a_configured_route_within_its_limit() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let warm = RouteConfig {
        min_idle: Some(2),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, warm, t(0)).unwrap();
    let v = acts(&mut p);
    assert_eq!(connects(&v).len(), 2, "{v:?}");
    let n = *p.counters();
    assert_eq!((n.connects, n.warmups, n.preconnects), (2, 2, 0));
    assert_eq!(connect_all(&mut p, &v, 1, t(1)), vec![]);
    assert_eq!(p.route_stats(&A).unwrap().idle, 2);
    // Using one leaves 1 idle < 2, but the route limit (2) is reached.
    granted(p.lease(&A, None, t(2), None));
    quiet(&mut p);
    assert_eq!(p.counters().connects, 2);
}

#[test]
fn global_min_idle_warms_up_after_a_route_is_used() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            min_idle_per_route: 1,
            ..cfg()
        },
    );
    // The connecting connection counts towards min_idle: one connect only.
    let (w, c1) = lease_connect(&mut p, A, t(0));
    assert_eq!(p.counters().warmups, 0);
    let v = connect(&mut p, c1, 1, t(1));
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(grant_of(&v[0]).0, w);
    let c2 = connect_of(&v[1]);
    assert_eq!(route(&p, c2), route(&p, c1));
    assert_eq!(p.counters().warmups, 1);
}

#[test]
fn warm_up_never_passes_the_total_limit_and_never_evicts() {
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_total: 1,
            ..cfg()
        },
    );
    let warm = RouteConfig {
        min_idle: Some(2),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, warm, t(0)).unwrap();
    let v = acts(&mut p);
    let c1 = single_connect(&p, &v, A);
    assert_eq!(connect(&mut p, c1, 1, t(1)), vec![]);
    let one = RouteConfig {
        min_idle: Some(1),
        ..RouteConfig::default()
    };
    p.set_route_config(&B, one, t(2)).unwrap();
    quiet(&mut p);
    assert_eq!(p.stats().connections, 1);
    assert_eq!(p.counters().warmups, 1);
    assert_eq!(p.counters().closes, [0; CloseReason::ALL.len()]);
}

#[test]
fn warm_up_pauses_after_a_connect_failure_until_the_backoff_ends() {
    let mut st = Store::new();
    let mut p = pool(&mut st, cfg());
    let warm = RouteConfig {
        min_idle: Some(1),
        ..RouteConfig::default()
    };
    p.set_route_config(&A, warm, t(0)).unwrap();
    let v = acts(&mut p);
    let c1 = single_connect(&p, &v, A);
    let ra = route(&p, c1);
    p.connect_failed(c1, ConnectFailure::Local, t(10)).unwrap();
    assert_eq!(acts(&mut p), vec![route_idle(ra, A)]);
    assert_eq!(p.poll_timeout(), Some(t(1010)));
    assert_eq!(tick(&mut p, t(1009)), vec![]);
    let v = tick(&mut p, t(1010));
    let c2 = single_connect(&p, &v, A);
    assert_ne!(c2, c1);
    assert_eq!(p.counters().warmups, 2);
}

#[test]
fn a_preconnect_ratio_of_zero_is_off_everywhere() {
    // Issue 10: one meaning for 0. Pool-wide and per route it is accepted and
    // makes no preconnect (as 1.0); `preconnect(key, 0)` makes nothing and no
    // route (Envoy's `maybePreconnect(0)`); before, it was BadPreconnectRatio.
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            preconnect_ratio: 0.0,
            ..cfg()
        },
    );
    let (w, c) = lease_connect(&mut p, A, t(0));
    single_grant(&connect(&mut p, c, 1, t(1)), w);
    assert_eq!(p.counters().preconnects, 0);
    let off = RouteConfig {
        preconnect_ratio: Some(0.0),
        ..RouteConfig::default()
    };
    p.set_route_config(&B, off, t(2)).unwrap();
    let (w, c) = lease_connect(&mut p, B, t(3));
    single_grant(&connect(&mut p, c, 1, t(4)), w);
    assert_eq!(p.preconnect(&C, 0.0, t(5)), Ok(false));
    assert_eq!(p.route_id(&C), None, "no route made for an off check");
    assert_eq!(
        p.preconnect(&C, 0.5, t(5)),
        Err(RouteError::Config(ConfigError::BadPreconnectRatio))
    );
    quiet(&mut p);
    assert_eq!(p.counters().preconnects, 0);
}

#[test]
fn preconnects_stay_within_the_idle_limits() {
    // Issue 10: a ratio above 1 with `max_idle_per_route`: before, each
    // preconnect closed `IdleLimit` on connect and the same `connected()`
    // opened the next one, forever. Now a preconnect is made only if it would
    // not be closed as excess idle.
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            preconnect_ratio: 3.0,
            max_idle_per_route: Some(1),
            ..cfg()
        },
    );
    let _w = queued(p.lease(&A, None, t(0), None));
    // Every connect is answered at once; count the cycles.
    let mut closes = 0;
    for i in 0..20 {
        let v = acts(&mut p);
        closes += v
            .iter()
            .filter(|a| matches!(a, Action::Close { .. }))
            .count();
        let cs: Vec<ConnId> = v
            .iter()
            .filter_map(|a| match a {
                Action::Connect { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect();
        if cs.is_empty() {
            break;
        }
        assert!(i < 5, "preconnect churn never stops");
        for c in cs {
            p.connected(c, 1, t(1 + i)).unwrap();
        }
    }
    assert_eq!(closes, 0, "no preconnect closed as excess idle");
    assert_eq!(
        p.stats().idle,
        1,
        "one spare connection, as the idle limit allows"
    );
    ok(&p);
}

#[test]
fn max_leases_per_conn_bounds_the_capacity_counted() {
    // Issue 10: a connection that may serve 2 more leases is counted for 2,
    // not for its 8 free streams, in the spare capacity that preconnect and
    // clusters read; a connecting one for min(connecting_capacity, 2).
    let mut st = Store::new();
    let mut p = pool(
        &mut st,
        Config {
            max_per_route: 4,
            connecting_capacity: 8,
            max_leases_per_conn: Some(2),
            ..cfg()
        },
    );
    let w = queued(p.lease(&A, None, t(0), None));
    let v = acts(&mut p);
    let c = single_connect(&p, &v, A);
    assert_eq!(p.route_load(&A).connecting_capacity, 2);
    let l = single_grant(&connect(&mut p, c, 8, t(1)), w);
    // One lease served, one left: spare 1, not 7.
    assert_eq!(p.route_load(&A).spare, 1);
    p.release(l, Release::REUSE, t(2)).unwrap();
    assert_eq!(p.route_load(&A).spare, 1);
    let _l = granted(p.lease(&A, None, t(3), None));
    // The last lease drained it: no spare capacity left at all.
    assert_eq!(p.route_load(&A).spare, 0);
    ok(&p);
}
