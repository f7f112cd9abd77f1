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
