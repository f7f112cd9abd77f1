//! Shrunk sequences on which the core and the reference model once disagreed.
//! Each runs through the same differential harness as `tests/model.rs`
//! (outputs, actions, gauges, counters and `check_invariants()` after every
//! step, then the end phase: release all, drain all for deletion, run past all
//! deadlines, pool empty).
//!
//! Core bugs stay here as failing tests until the core is fixed; divergences
//! that were the model's fault (or an ambiguity of `docs/SEMANTICS.md` that was
//! resolved) stay as passing tests that pin the resolution.

#[path = "model/mod.rs"]
mod model;

use model::harness::{run_case, Cfg, Op, RelHow};
use Op::*;

/// A plain configuration: no timers, no preconnect, no idle limits.
fn basic() -> Cfg {
    Cfg {
        max_total: 4,
        max_per_route: 2,
        max_pending: None,
        max_leases: None,
        fifo: false,
        connect_timeout_ms: None,
        idle_timeout_ms: None,
        max_lifetime_ms: None,
        validate_after_ms: None,
        ratio_milli: 1000,
        min_idle: 0,
        max_idle_per_route: None,
        max_idle: None,
        connecting_capacity: 1,
        max_leases_per_conn: None,
        starvation_guard: false,
        retry_backoff_ms: 1000,
    }
}

fn check(big: bool, cfg: Cfg, ops: &[Op]) {
    // Divergence pins: the properties of tests/model/props.rs have their own
    // tests (tests/properties.rs) and run in the model test.
    model::harness::props::set_enabled(false);
    // WHARF_MODEL_TRACE=1 prints every input and action of every case.
    let trace = std::env::var_os("WHARF_MODEL_TRACE").is_some();
    let (_, verdict) = run_case(big, &cfg, ops, true, trace);
    if let Err(e) = verdict {
        // Replay with a trace of every input and action for the report.
        let _ = run_case(big, &cfg, ops, true, true);
        panic!("{e}");
    }
}

/// CORE BUG (found by the model; fixed in the core by commit 1d0bfc3). §6: `connect_failed(c, reason, now)` makes the connection vanish
/// with no `Close`, whatever the reason; only the core's own connect timeout
/// (§2, §6 last paragraph) queues `Close(c, ConnectTimeout)`. The core queues
/// `Close(c, ConnectTimeout)` (and counts `closes[ConnectTimeout]`) when the
/// backend reports `connect_failed(c, ConnectFailure::Timeout)`.
/// Expected actions after the failure: `Failed(w, ConnectFailed(Timeout))` only.
#[test]
fn connect_failed_with_reason_timeout_queues_no_close() {
    check(
        false,
        basic(),
        &[
            Lease {
                key: 1,
                tag: None,
                deadline_ms: None,
            },
            ConnectFailed {
                idx: 0,
                reason: 0,
                any: false,
            },
        ],
    );
}

/// Ambiguity, resolved as the core does: a route created by configuration
/// alone (§3.6: "no notice until it has been used") still gets its `RouteIdle`
/// (and its slot is freed) once drained for deletion.
#[test]
fn drain_and_delete_frees_a_configured_unused_route() {
    let cfg = Cfg {
        max_total: 2,
        max_per_route: 3,
        ratio_milli: 2099,
        min_idle: 1,
        ..basic()
    };
    check(
        false,
        cfg,
        &[
            Lease {
                key: 0,
                tag: Some(1),
                deadline_ms: None,
            },
            RouteConfig {
                key: 1,
                limit: Some(2),
                min_idle: None,
                ratio_milli: Some(2965),
            },
        ],
    );
}

/// Ambiguity, resolved as the core does: `set_route_config` on a closed pool
/// (after `drain(All, DrainAndDelete)`) fails `Draining` for a new route, and
/// an empty configuration for an absent route stays a no-op.
#[test]
fn set_route_config_on_a_closed_pool() {
    check(
        true,
        basic(),
        &[
            Drain {
                key: None,
                delete: true,
            },
            RouteConfig {
                key: 2,
                limit: None,
                min_idle: Some(1),
                ratio_milli: Some(2613),
            },
            RouteConfig {
                key: 2,
                limit: None,
                min_idle: None,
                ratio_milli: None,
            },
        ],
    );
}

/// Ambiguity, resolved as the core does: clearing the configuration of an
/// unused configured route frees the route at once (no `RouteIdle`, no
/// warm-up for it even though `min_idle_per_route` is 1).
#[test]
fn clearing_the_config_of_an_unused_route_frees_it() {
    let cfg = Cfg {
        max_total: 3,
        max_per_route: 1,
        min_idle: 1,
        ..basic()
    };
    check(
        false,
        cfg,
        &[
            Lease {
                key: 0,
                tag: Some(1),
                deadline_ms: None,
            },
            RouteConfig {
                key: 1,
                limit: Some(3),
                min_idle: Some(0),
                ratio_milli: Some(1806),
            },
            RouteConfig {
                key: 1,
                limit: None,
                min_idle: None,
                ratio_milli: None,
            },
        ],
    );
}

/// Ambiguity, resolved as the core does: a lease answered `Queued` because its
/// connection is being validated (§4.4) does not count in `Counters::queued`.
#[test]
fn a_validation_waiter_is_not_counted_as_queued() {
    let cfg = Cfg {
        validate_after_ms: Some(0),
        ..basic()
    };
    check(
        true,
        cfg,
        &[
            Lease {
                key: 1,
                tag: None,
                deadline_ms: None,
            },
            Connected {
                idx: 0,
                cap: 1,
                any: false,
            },
            Release {
                idx: 0,
                how: RelHow::Reuse {
                    keep_alive_ms: None,
                    tag: None,
                },
            },
            Lease {
                key: 1,
                tag: Some(1),
                deadline_ms: Some(2165),
            },
            Validated {
                idx: 0,
                alive: true,
                any: false,
            },
        ],
    );
}

/// Ambiguity, resolved as the core does: a connection whose `Connect` was never
/// polled vanishes silently when closed (§3.11) and is not counted under
/// `closes` (here: its connect timeout fires while `Connect` is unpolled; the
/// connect failure is still counted).
#[test]
fn a_connection_vanishing_unpolled_is_not_counted_as_closed() {
    let cfg = Cfg {
        connect_timeout_ms: Some(285),
        ..basic()
    };
    check(
        true,
        cfg,
        &[
            Partial { n: 0 },
            Lease {
                key: 0,
                tag: None,
                deadline_ms: None,
            },
            Advance { ms: 300 },
        ],
    );
}

/// §7 cancel of a waiter granted but not yet polled: the `Granted` is
/// withdrawn and the lease goes back as `Reuse` (the connection is idle again).
#[test]
fn cancel_withdraws_an_unpolled_grant() {
    check(
        true,
        basic(),
        &[
            Lease {
                key: 0,
                tag: None,
                deadline_ms: None,
            },
            Partial { n: 0 },
            Connected {
                idx: 0,
                cap: 1,
                any: false,
            },
            Cancel {
                idx: 0,
                excess: false,
            },
            Lease {
                key: 0,
                tag: None,
                deadline_ms: None,
            },
        ],
    );
}

/// §7 cancel of a waiter failed but not yet polled: the `Failed` is withdrawn.
#[test]
fn cancel_withdraws_an_unpolled_failure() {
    check(
        true,
        basic(),
        &[
            Lease {
                key: 0,
                tag: None,
                deadline_ms: None,
            },
            Partial { n: 0 },
            ConnectFailed {
                idx: 0,
                reason: 2,
                any: false,
            },
            Cancel {
                idx: 0,
                excess: false,
            },
        ],
    );
}

/// §10: a `Close` after an undelivered `Validate` replaces it (moved to the
/// back of the queue); the connection slot stays held until it is polled, and
/// the waiter retries (§7.1).
#[test]
fn close_replaces_an_unpolled_validate() {
    let cfg = Cfg {
        validate_after_ms: Some(0),
        max_total: 1,
        ..basic()
    };
    check(
        false,
        cfg,
        &[
            Lease {
                key: 0,
                tag: None,
                deadline_ms: None,
            },
            Connected {
                idx: 0,
                cap: 1,
                any: false,
            },
            Release {
                idx: 0,
                how: RelHow::Reuse {
                    keep_alive_ms: None,
                    tag: None,
                },
            },
            Partial { n: 0 },
            Lease {
                key: 0,
                tag: None,
                deadline_ms: None,
            },
            PeerClosed { idx: 0 },
            Lease {
                key: 1,
                tag: None,
                deadline_ms: None,
            },
        ],
    );
}
