//! Differential test of the cluster layer and the host hooks (§12): random
//! operation sequences over a pool with one or two clusters of 2-4 hosts
//! (possibly sharing hosts) run against the core and against the reference
//! model (`tests/common/`: the pool model with the host hooks, and an
//! independent cluster model, through the shared harness's cluster layer), comparing every return value, the host
//! picked, every action (in order, modulo handle mapping), the gauges, the
//! counters, `route_load`, `Cluster::preconnects()` and `check_invariants()`
//! after every step.
//!
//! `WHARF_CLUSTER_MODEL_CASES=<n>` sets the number of sequences (default 300;
//! each has at least 100 operations); `WHARF_CLUSTER_MODEL_SEED=<u64>` replays
//! a run. The test prints one line:
//! `model_cluster: <sequences> sequences, <operations> operations, 0 divergences, 0 property violations`.
//!
//! The properties of `tests/common/props.rs` run here too (the end phase runs
//! their no-demand phases; the run to `Instant::MAX` is the pool model test's).

#[path = "../common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::driver;
use common::harness::{
    avoid, run_cluster_case, Cfg, ClusterSpec, Op, RelHow, Size, HOST_KEYS as KEYS,
};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};
use wharf_core::Balancer;

static OPS: AtomicU64 = AtomicU64::new(0);

/// A predictive ratio in 1/1000: mostly off or valid, sometimes invalid.
fn ratio() -> impl Strategy<Value = u32> {
    prop_oneof![2 => Just(0u32), 1 => Just(1000u32), 4 => 1000..=3000u32, 1 => Just(3000u32), 1 => 3001..4000u32, 1 => 1..1000u32]
}

fn balancer() -> impl Strategy<Value = Balancer> {
    prop_oneof![
        Just(Balancer::RoundRobin),
        Just(Balancer::LeastActive),
        prop_oneof![1 => Just(0u64), 3 => any::<u64>()].prop_map(|seed| Balancer::Random { seed }),
    ]
}

fn cluster_strategy() -> impl Strategy<Value = ClusterSpec> {
    (
        balancer(),
        Just((0..KEYS).collect::<Vec<u8>>()).prop_shuffle(),
        2..=4usize,
        prop_oneof![1 => Just(0u32), 2 => 1000..=3000u32],
    )
        .prop_map(|(balancer, keys, n, ratio_milli)| ClusterSpec {
            balancer,
            hosts: keys[..n].to_vec(),
            ratio_milli,
        })
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![1 => Just(None), 3 => s.prop_map(Some)]
}

fn cfg_strategy(big: bool) -> impl Strategy<Value = Cfg> {
    let slots = Size::hosts(big).slots();
    let conns = slots.conns as u32;
    let waiters = slots.waiters as u32;
    let leases = slots.leases as u32;
    let limits = (
        1..=conns,
        1..=3u32,
        opt(1..=waiters),
        opt(1..=leases),
        any::<bool>(),
    );
    let times = (
        opt(100..3_000u32),
        opt(200..6_000u32),
        opt(500..10_000u32),
        prop_oneof![2 => Just(None), 1 => Just(Some(0u32)), 2 => (1..3_000u32).prop_map(Some)],
        1..2_000u32,
    );
    let shape = (
        // 0 is "off", the same as 1.0 (§12).
        prop_oneof![2 => Just(1000u32), 1 => Just(0u32), 3 => 1000..=3000u32],
        0..=2u32,
        prop_oneof![3 => Just(None), 1 => (0..=3u32).prop_map(Some)],
        prop_oneof![3 => Just(None), 1 => (0..=4u32).prop_map(Some)],
        prop_oneof![4 => Just(1u32), 1 => 2..=3u32],
        prop_oneof![3 => Just(None), 1 => (1..=4u32).prop_map(Some)],
        any::<bool>(),
    );
    (limits, times, shape, any::<bool>()).prop_map(
        |(
            (max_total, max_per_route, max_pending, max_leases, fifo),
            (ct, it, life, va, backoff),
            (ratio, min_idle, mipr, mi, cc, mlpc, guard),
            close_on_unhealthy,
        )| {
            // Keep the configuration valid: min idle within the limits.
            let min_idle = min_idle.min(max_per_route).min(mipr.unwrap_or(u32::MAX));
            Cfg {
                max_total,
                max_per_route,
                max_pending,
                max_leases,
                fifo,
                connect_timeout_ms: ct,
                idle_timeout_ms: it,
                max_lifetime_ms: life,
                validate_after_ms: va,
                ratio_milli: ratio,
                min_idle,
                max_idle_per_route: mipr,
                max_idle: mi,
                connecting_capacity: cc,
                max_leases_per_conn: mlpc,
                starvation_guard: guard,
                retry_backoff_ms: backoff,
                // The defaults of `Config` (this test draws none of them).
                jitter_percent: 0,
                seed: wharf_core::Config::default().seed,
                strict_tags: false,
                close_on_unhealthy,
            }
        },
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let idx = 0..64usize;
    let key = 0..KEYS;
    let tag = prop_oneof![3 => Just(None), 1 => Just(Some(0u8)), 1 => Just(Some(1u8))];
    let tag_c = tag.clone();
    let rel = prop_oneof![
        6 => (opt(0..3_000u32), prop_oneof![4 => Just(None), 1 => Just(Some(0u8)), 1 => Just(Some(1u8))])
            .prop_map(|(keep_alive_ms, tag)| RelHow::Reuse { keep_alive_ms, tag }),
        1 => Just(RelHow::Discard),
    ];
    prop_oneof![
        120 => (key.clone(), tag, prop_oneof![3 => Just(None), 1 => Just(Some(0u32)), 3 => (1..4_000u32).prop_map(Some)])
            .prop_map(|(key, tag, deadline_ms)| Op::Lease { key, tag, deadline_ms }),
        150 => (idx.clone(), rel).prop_map(|(idx, how)| Op::Release { idx, how }),
        10 => idx.clone().prop_map(|idx| Op::ReleaseStale { idx }),
        50 => (idx.clone(), any::<bool>()).prop_map(|(idx, excess)| Op::Cancel { idx, excess }),
        220 => (idx.clone(), prop_oneof![10 => 1..=3u32, 1 => Just(0u32)], prop_oneof![9 => Just(false), 1 => Just(true)])
            .prop_map(|(idx, cap, any)| Op::Connected { idx, cap, any }),
        40 => (idx.clone(), 0..3u8, prop_oneof![9 => Just(false), 1 => Just(true)])
            .prop_map(|(idx, reason, any)| Op::ConnectFailed { idx, reason, any }),
        30 => idx.clone().prop_map(|idx| Op::PeerClosed { idx }),
        80 => (idx.clone(), prop_oneof![3 => Just(true), 1 => Just(false)], prop_oneof![9 => Just(false), 1 => Just(true)])
            .prop_map(|(idx, alive, any)| Op::Validated { idx, alive, any }),
        100 => prop_oneof![4 => 0..300u32, 1 => 0..6_000u32].prop_map(|ms| Op::Advance { ms }),
        40 => Just(Op::AdvanceToTimer),
        30 => (0..4u8).prop_map(|n| Op::Partial { n }),
        10 => (0..2_000u32).prop_map(|ms| Op::Backwards { ms }),
        20 => (key.clone(), any::<bool>()).prop_map(|(k, delete)| Op::Drain { key: Some(k), delete }),
        8 => Just(Op::Drain { key: None, delete: false }),
        1 => Just(Op::Drain { key: None, delete: true }),
        20 => (key.clone(), opt(prop_oneof![3 => 1..=4u32, 1 => Just(0u32)]), opt(0..=2u32), opt(prop_oneof![3 => 1000..=3000u32, 1 => 500..=3500u32, 1 => Just(0u32)]))
            .prop_map(|(key, limit, min_idle, ratio_milli)| Op::RouteConfig { key, limit, min_idle, ratio_milli }),
        // §12: clusters and host hooks.
        150 => (0..2u8, tag_c, prop_oneof![3 => Just(None), 1 => Just(Some(0u32)), 3 => (1..4_000u32).prop_map(Some)])
            .prop_map(|(c, tag, deadline_ms)| Op::ClusterLease { c, tag, deadline_ms }),
        12 => (0..2u8, key.clone()).prop_map(|(c, key)| Op::AddHost { c, key }),
        10 => (0..2u8, key.clone()).prop_map(|(c, key)| Op::RemoveHost { c, key }),
        40 => (0..2u8, key.clone(), prop_oneof![1 => Just(true), 1 => Just(false)])
            .prop_map(|(c, key, healthy)| Op::SetHealth { c, key, healthy }),
        15 => (0..2u8, ratio()).prop_map(|(c, ratio_milli)| Op::SetRatio { c, ratio_milli }),
        15 => (key.clone(), any::<bool>()).prop_map(|(key, healthy)| Op::RouteHealth { key, healthy }),
        15 => (key, ratio()).prop_map(|(key, ratio_milli)| Op::Preconnect { key, ratio_milli }),
    ]
}

/// Operations per sequence.
/// Under Miri one short sequence is enough (it checks the core's memory, not the semantics).
const LEN: std::ops::Range<usize> = if cfg!(miri) { 30..40 } else { 100..180 };

type Case = (bool, Cfg, Vec<ClusterSpec>, Vec<Op>);

fn case_strategy() -> impl Strategy<Value = Case> {
    let list = std::env::var("WHARF_MODEL_AVOID").unwrap_or_default();
    any::<bool>().prop_flat_map(move |big| {
        let list = list.clone();
        (
            Just(big),
            cfg_strategy(big),
            prop::collection::vec(cluster_strategy(), 1..=2),
            prop::collection::vec(op_strategy(), LEN).prop_map(move |ops| {
                ops.into_iter()
                    .map(|op| avoid(op, &list))
                    .collect::<Vec<_>>()
            }),
        )
    })
}

/// Delta debugging over the sequence, keeping the failure's kind
/// (`common::driver::shrink`).
fn shrink(big: bool, cfg: &Cfg, clusters: &[ClusterSpec], ops: Vec<Op>) -> Vec<Op> {
    driver::shrink(ops, |ops| {
        run_cluster_case(big, cfg, clusters, ops, true, false).1
    })
}

#[test]
fn cluster_model_agrees_with_core() {
    let cases: u32 = std::env::var("WHARF_CLUSTER_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(miri) { 1 } else { 300 });
    let seed = driver::seed("WHARF_CLUSTER_MODEL_SEED");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig {
            cases,
            failure_persistence: None,
            max_shrink_iters: 0,
            max_global_rejects: 0,
            ..RunnerConfig::default()
        },
        rng,
    );
    let result = runner.run(&case_strategy(), |(big, cfg, clusters, ops)| {
        let (n, verdict) = run_cluster_case(big, &cfg, &clusters, &ops, true, false);
        OPS.fetch_add(n, Ordering::Relaxed);
        verdict.map_err(TestCaseError::fail)
    });
    if std::env::var_os("WHARF_CLUSTER_MODEL_COVERAGE").is_some() {
        for (k, v) in common::harness::EVENTS.lock().unwrap().iter() {
            println!("  {k}: {v}");
        }
    }
    match result {
        Ok(()) => println!(
            "model_cluster: {cases} sequences, {} operations, 0 divergences, 0 property violations",
            OPS.load(Ordering::Relaxed)
        ),
        Err(TestError::Fail(why, (big, cfg, clusters, ops))) => {
            let ops = shrink(big, &cfg, &clusters, ops);
            let (_, verdict) = run_cluster_case(big, &cfg, &clusters, &ops, true, true);
            let verdict = verdict.err().unwrap_or_default();
            let what = match driver::kind(&verdict) {
                k if k.starts_with("property ") => format!("{k} violated"),
                _ => "divergence".to_string(),
            };
            panic!(
                "{what} (WHARF_CLUSTER_MODEL_SEED={seed}): {why}\nminimal case ({verdict}):\n  big = {big}\n  cfg = {cfg:?}\n  clusters = {clusters:?}\n  ops = vec!{ops:?}"
            );
        }
        Err(e) => panic!("{e}"),
    }
}

// ----- regressions: core divergences the model test found (fixed in 0073b61) --

mod regressions {
    use wharf_core::*;

    type P = Pool<'static, &'static str>;

    fn pool(max_total: u32, guard: bool) -> P {
        Pool::with_capacity(
            Capacity {
                conns: 8,
                routes: 8,
                waiters: 8,
                leases: 8,
            },
            Config {
                max_total,
                max_per_route: 2,
                starvation_guard: guard,
                ..Config::default()
            },
        )
        .unwrap()
    }

    fn drain(p: &mut P) -> Vec<Action<&'static str>> {
        let mut out = Vec::new();
        while let Some(a) = p.poll_action() {
            out.push(a);
        }
        p.check_invariants().unwrap();
        out
    }

    /// §12: `preconnect` does `create(r, demand = false)` and "returns whether
    /// a connection was created"; §3.3 step 2: the starvation guard is for
    /// demand only. Found by the model test: with the pool full and
    /// `starvation_guard`, the core used to guard-connect on a fresh route
    /// (past `max_total`) and still answer `false` (so `Cluster::preconnects`
    /// missed it and the predictive loop stopped early).
    #[test]
    fn preconnect_never_passes_max_total_and_answers_truthfully() {
        let mut p = pool(1, true);
        p.lease(&"a", None, Instant::ZERO, None).unwrap();
        drain(&mut p);
        let made = p.preconnect(&"b", 2.0, Instant::ZERO);
        let actions = drain(&mut p);
        let connects = actions
            .iter()
            .filter(|a| matches!(a, Action::Connect { .. }))
            .count();
        assert_eq!(
            made,
            Ok(connects == 1),
            "preconnect's answer must say whether it started a connection"
        );
        assert_eq!(made, Ok(false), "a preconnect never passes max_total");
        assert_eq!(p.counters().guard_connects, 0);
        assert_eq!(p.stats().connections, 1);
        // "A route created only for this check and left without a connection
        // is removed again (no RouteIdle)."
        assert!(p.route_stats(&"b").is_none());
        assert!(actions.is_empty(), "{actions:?}");
    }

    /// §2: "Every input that takes `now` first processes all timers due at
    /// `now`", errors included (§4: "Errors change nothing (but timers due at
    /// `now` ran)"). Found by the model test: `preconnect` with an invalid
    /// ratio used to return its error without running the connect timeout
    /// that was due.
    #[test]
    fn preconnect_with_a_bad_ratio_still_runs_due_timers() {
        let mut p: P = Pool::with_capacity(
            Capacity {
                conns: 8,
                routes: 8,
                waiters: 8,
                leases: 8,
            },
            Config {
                max_total: 4,
                max_per_route: 2,
                connect_timeout: Some(Duration::from_millis(100)),
                ..Config::default()
            },
        )
        .unwrap();
        p.lease(&"a", None, Instant::ZERO, None).unwrap();
        let conn = drain(&mut p)
            .into_iter()
            .find_map(|a| match a {
                Action::Connect { conn, .. } => Some(conn),
                _ => None,
            })
            .unwrap();
        let late = Instant::from_millis(200);
        assert_eq!(
            p.preconnect(&"b", 0.5, late),
            Err(RouteError::Config(ConfigError::BadPreconnectRatio))
        );
        let actions = drain(&mut p);
        assert!(
            actions.contains(&Action::Close {
                conn,
                reason: CloseReason::ConnectTimeout
            }),
            "the connect timeout due at 100 ms did not run at 200 ms: {actions:?}"
        );
    }
}
