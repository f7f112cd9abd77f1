//! Differential test: random operation sequences run against the core and
//! against an independent reference model (`tests/common/model.rs`), comparing every
//! return value, every action (in order, modulo handle mapping), the gauges,
//! the counters and `check_invariants()` after every step.
//!
//! `WHARF_MODEL_CASES=<n>` sets the number of sequences (default 500; each has
//! at least 200 operations). The test prints one line:
//! `model: <sequences> sequences, <operations> operations, 0 divergences, 0 property violations`.
//! A failing sequence is shrunk by proptest and printed as Rust.
//!
//! The same runs check the properties of `tests/common/props.rs` (liveness,
//! fairness, bounded work, churn, "never"), which do not come from the model;
//! a violation is reported as `property <name> violated` with its minimal case.

#[path = "../common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::driver;
use common::harness::{avoid, avoid_cfg, run_case_in, Cfg, Op, RelHow, Size, KEYS, NEVER_MS};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};

static OPS: AtomicU64 = AtomicU64::new(0);

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![1 => Just(None), 3 => s.prop_map(Some)]
}

/// A timeout: mostly in `range`, sometimes none, sometimes so long that every
/// sum with it saturates at `Instant::MAX` ("never", §2).
fn timeout(range: std::ops::Range<u32>) -> impl Strategy<Value = Option<u32>> {
    prop_oneof![2 => Just(None), 5 => range.prop_map(Some), 1 => Just(Some(NEVER_MS))]
}

fn cfg_strategy(size: Size) -> impl Strategy<Value = Cfg> {
    let slots = size.slots();
    let conns = slots.conns as u32;
    let waiters = slots.waiters as u32;
    let leases = slots.leases as u32;
    let limits = (
        // Storage with exactly `max_total` connection slots (§3.4's stall).
        prop_oneof![1 => Just(conns), 2 => 1..=conns],
        1..=3u32,
        // `Some(0)`: no lease ever waits (needs warm-up, else `NeverServes`, §4).
        prop_oneof![4 => Just(None), 12 => (1..=waiters).prop_map(Some), 1 => Just(Some(0))],
        opt(1..=leases),
        any::<bool>(),
    );
    let times = (
        timeout(100..3_000u32),
        timeout(200..6_000u32),
        timeout(500..10_000u32),
        prop_oneof![2 => Just(None), 1 => Just(Some(0u32)), 2 => (1..3_000u32).prop_map(Some)],
        prop_oneof![8 => 1..2_000u32, 1 => Just(NEVER_MS)],
    );
    let shape = (
        // 0 is "off", the same as 1.0 (§12).
        prop_oneof![2 => Just(1000u32), 1 => Just(0u32), 4 => 1000..=3000u32],
        0..=2u32,
        // Idle limits, often together with a ratio above 1 (§3.2).
        prop_oneof![3 => Just(None), 2 => (0..=3u32).prop_map(Some)],
        prop_oneof![3 => Just(None), 2 => (0..=4u32).prop_map(Some)],
        prop_oneof![3 => Just(1u32), 2 => 2..=3u32],
        // `max_leases_per_conn` in the capacity math (§1).
        prop_oneof![2 => Just(None), 1 => (1..=4u32).prop_map(Some)],
        any::<bool>(),
    );
    let new = (
        // Lifetime jitter in percent (§2); above 100 is `BadJitter`.
        prop_oneof![16 => Just(0u8), 16 => 1..=100u8, 4 => Just(100u8), 1 => 101..=255u8],
        prop_oneof![1 => Just(0u64), 3 => any::<u64>()],
        prop_oneof![2 => Just(false), 1 => Just(true)],
        any::<bool>(),
    );
    (limits, times, shape, new).prop_map(
        move |(
            (max_total, max_per_route, max_pending, max_leases, fifo),
            (ct, it, life, va, backoff),
            (ratio, min_idle, mipr, mi, cc, mlpc, guard),
            (jitter_percent, seed, strict_tags, close_on_unhealthy),
        )| {
            // Keep the configuration valid: min idle within the limits.
            let min_idle = min_idle.min(max_per_route).min(mipr.unwrap_or(u32::MAX));
            // At most one reason to refuse it (the order of the checks is not
            // in the text): a bad jitter, or `max_pending: Some(0)` without
            // warm-up (`NeverServes`), or neither.
            let max_pending = if jitter_percent > 100 && max_pending == Some(0) && min_idle == 0 {
                None
            } else {
                max_pending
            };
            // Tight storage: exactly max_total connection slots.
            let max_total = match size {
                Size::Tight(n) => n as u32,
                _ => max_total,
            };
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
                jitter_percent,
                seed,
                strict_tags,
                close_on_unhealthy,
            }
        },
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let idx = 0..64usize;
    let key = 0..KEYS;
    let tag = prop_oneof![3 => Just(None), 1 => Just(Some(0u8)), 1 => Just(Some(1u8))];
    let tag_as = tag.clone();
    let keep_alive =
        prop_oneof![2 => Just(None), 6 => (0..3_000u32).prop_map(Some), 1 => Just(Some(NEVER_MS))];
    let rel = prop_oneof![
        6 => (keep_alive, prop_oneof![4 => Just(None), 1 => Just(Some(0u8)), 1 => Just(Some(1u8))])
            .prop_map(|(keep_alive_ms, tag)| RelHow::Reuse { keep_alive_ms, tag }),
        1 => Just(RelHow::Discard),
    ];
    prop_oneof![
        // A deadline of `NEVER_MS` is `Instant::MAX`, the same as none (§2).
        250 => (key.clone(), tag, prop_oneof![6 => Just(None), 2 => Just(Some(0u32)), 6 => (1..4_000u32).prop_map(Some), 1 => Just(Some(NEVER_MS))])
            .prop_map(|(key, tag, deadline_ms)| Op::Lease { key, tag, deadline_ms }),
        150 => (idx.clone(), rel).prop_map(|(idx, how)| Op::Release { idx, how }),
        10 => idx.clone().prop_map(|idx| Op::ReleaseStale { idx }),
        8 => idx.clone().prop_map(|idx| Op::ReleaseForeign { idx }),
        50 => (idx.clone(), any::<bool>()).prop_map(|(idx, excess)| Op::Cancel { idx, excess }),
        150 => (idx.clone(), prop_oneof![10 => 1..=3u32, 1 => Just(0u32)], prop_oneof![9 => Just(false), 1 => Just(true)])
            .prop_map(|(idx, cap, any)| Op::Connected { idx, cap, any }),
        40 => (idx.clone(), 0..3u8, prop_oneof![9 => Just(false), 1 => Just(true)])
            .prop_map(|(idx, reason, any)| Op::ConnectFailed { idx, reason, any }),
        30 => idx.clone().prop_map(|idx| Op::PeerClosed { idx }),
        80 => (idx.clone(), prop_oneof![3 => Just(true), 1 => Just(false)], prop_oneof![9 => Just(false), 1 => Just(true)])
            .prop_map(|(idx, alive, any)| Op::Validated { idx, alive, any }),
        100 => prop_oneof![4 => 0..300u32, 1 => 0..6_000u32].prop_map(|ms| Op::Advance { ms }),
        // To `Instant::MAX`: what is left is "never" and must not fire (§2).
        1 => Just(Op::Advance { ms: NEVER_MS }),
        40 => Just(Op::AdvanceToTimer),
        30 => (0..4u8).prop_map(|n| Op::Partial { n }),
        10 => (0..2_000u32).prop_map(|ms| Op::Backwards { ms }),
        20 => (key.clone(), any::<bool>()).prop_map(|(k, delete)| Op::Drain { key: Some(k), delete }),
        8 => Just(Op::Drain { key: None, delete: false }),
        1 => Just(Op::Drain { key: None, delete: true }),
        20 => (key.clone(), opt(prop_oneof![3 => 1..=4u32, 1 => Just(0u32)]), opt(0..=2u32), opt(prop_oneof![3 => 1000..=3000u32, 1 => 500..=3500u32, 1 => Just(0u32)]))
            .prop_map(|(key, limit, min_idle, ratio_milli)| Op::RouteConfig { key, limit, min_idle, ratio_milli }),
        // §7 HTTP/2 SETTINGS: lowered and raised stream capacities, 0
        // (`ZeroCapacity`) and above `MAX_STREAMS` (clamped).
        40 => (idx.clone(), prop_oneof![12 => 1..=4u32, 1 => Just(0u32), 1 => Just(u32::MAX)], prop_oneof![9 => Just(false), 1 => Just(true)])
            .prop_map(|(idx, cap, any)| Op::SetCapacity { idx, cap, any }),
        // §6 `connected_as`: the intent, or a tag the connector chose.
        40 => (idx.clone(), prop_oneof![12 => 1..=3u32, 1 => Just(u32::MAX)], tag_as, prop_oneof![1 => Just(true), 1 => Just(false)])
            .prop_map(|(idx, cap, tag, intent)| Op::ConnectedAs { idx, cap, tag, intent }),
        // §7 live limits (above the storage's slots: `MaxTotalExceedsStorage`).
        10 => prop_oneof![1 => Just(0u32), 8 => 1..=8u32, 1 => 9..=10u32].prop_map(|n| Op::SetMaxTotal { n }),
        10 => prop_oneof![1 => Just(0u32), 8 => 1..=3u32].prop_map(|n| Op::SetMaxPerRoute { n }),
        // §12 host health (`close_on_unhealthy` drains).
        15 => (key, any::<bool>()).prop_map(|(key, healthy)| Op::RouteHealth { key, healthy }),
    ]
}

/// One operation, or now and then a cancel right after an input whose
/// actions were left partly unpolled (`Partial`): the window in which a
/// cancel withdraws an unpolled answer (§7: the grant undone, the failure
/// withdrawn), sometimes after time passed with the answer unpolled (the
/// undone grant's connection past its idle timeout or expiry).
fn step_strategy() -> impl Strategy<Value = Vec<Op>> {
    prop_oneof![
        100 => op_strategy().prop_map(|op| vec![op]),
        2 => (0..2u8, op_strategy(), 0..64usize, any::<bool>())
            .prop_map(|(n, op, idx, excess)| vec![Op::Partial { n }, op, Op::Cancel { idx, excess }]),
        1 => (0..2u8, op_strategy(), 0..6_000u32, 0..64usize, any::<bool>())
            .prop_map(|(n, op, ms, idx, excess)| vec![
                Op::Partial { n },
                op,
                Op::Partial { n: 0 },
                Op::Advance { ms },
                Op::Cancel { idx, excess },
            ]),
    ]
}

/// Operations per sequence. Under Miri (about 0.7 s per operation with all
/// the comparisons) one short sequence is run: Miri is there to check the
/// core's paths for undefined behaviour, the release run for divergences.
const LEN: std::ops::Range<usize> = if cfg!(miri) { 40..60 } else { 200..320 };

/// Storage sizes: mostly small and big; sometimes exactly `max_total`
/// connection slots (1 or 2), the tightest storage allowed.
/// `WHARF_MODEL_SIZES=small,big,tight1,tight2` keeps only the sizes listed.
fn size_strategy() -> impl Strategy<Value = Size> {
    let only = std::env::var("WHARF_MODEL_SIZES").unwrap_or_default();
    let w = |name: &str, weight: u32| {
        if only.is_empty() || only.split(',').any(|s| s.trim() == name) {
            weight
        } else {
            0
        }
    };
    prop_oneof![
        w("small", 8) => Just(Size::Small),
        w("big", 8) => Just(Size::Big),
        w("tight1", 1) => Just(Size::Tight(1)),
        w("tight2", 1) => Just(Size::Tight(2)),
    ]
}

fn case_strategy() -> impl Strategy<Value = (Size, Cfg, Vec<Op>)> {
    let list = std::env::var("WHARF_MODEL_AVOID").unwrap_or_default();
    let general = size_strategy().prop_flat_map(move |size| {
        let list = list.clone();
        let cfg_list = list.clone();
        (
            Just(size),
            cfg_strategy(size).prop_map(move |cfg| avoid_cfg(cfg, &cfg_list)),
            prop::collection::vec(step_strategy(), LEN).prop_map(move |steps| {
                steps
                    .into_iter()
                    .flatten()
                    .map(|op| avoid(op, &list))
                    .collect::<Vec<_>>()
            }),
        )
    });
    let hot = std::env::var("WHARF_MODEL_HOT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1u32);
    prop_oneof![
        24 => general,
        hot => hot_route_case(),
    ]
}

/// A targeted family for the fairness property (`WHARF_MODEL_HOT=<weight>`,
/// default 1 in 25 sequences): the total limit binds (`max_total` 1 or 2 in a
/// storage with spare slots), no timer, and one hot route (key 0) whose leases
/// come and go while the other routes lease now and then, without deadlines.
fn hot_route_case() -> impl Strategy<Value = (Size, Cfg, Vec<Op>)> {
    let cfg = (
        prop_oneof![Just(Size::Small), Just(Size::Big)],
        1..=2u32,
        1..=2u32,
        any::<bool>(),
    );
    let op = prop_oneof![
        40 => Just(Op::Lease { key: 0, tag: None, deadline_ms: None }),
        6 => (1..KEYS).prop_map(|key| Op::Lease { key, tag: None, deadline_ms: None }),
        40 => (0..64usize).prop_map(|idx| Op::Release { idx, how: RelHow::Reuse { keep_alive_ms: None, tag: None } }),
        30 => (0..64usize).prop_map(|idx| Op::Connected { idx, cap: 1, any: false }),
        5 => (0..300u32).prop_map(|ms| Op::Advance { ms }),
    ];
    (cfg, prop::collection::vec(op, LEN)).prop_map(
        |((size, max_total, max_per_route, fifo), ops)| {
            let cfg = Cfg {
                max_total,
                max_per_route,
                max_pending: None,
                max_leases: None,
                fifo,
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
                jitter_percent: 0,
                seed: 0,
                strict_tags: false,
                close_on_unhealthy: false,
            };
            (size, cfg, ops)
        },
    )
}

/// Delta debugging over the sequence, keeping the failure's kind
/// (`common::driver::shrink`).
pub fn shrink(size: Size, cfg: &Cfg, ops: Vec<Op>) -> Vec<Op> {
    driver::shrink(ops, |ops| run_case_in(size, cfg, ops, true, false).1)
}

#[test]
fn model_agrees_with_core() {
    // Under Miri one sequence (about 300 operations) takes a minute or two.
    let default_cases = if cfg!(miri) { 1 } else { 500 };
    let cases: u32 = std::env::var("WHARF_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    // WHARF_MODEL_SEED=<u64> replays a run; by default every run explores a
    // new seed (printed on failure).
    let seed = driver::seed("WHARF_MODEL_SEED");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig {
            cases,
            failure_persistence: None,
            // Shrinking is done below by delta debugging over the whole sequence
            // (proptest's vec shrinker cannot go below the 200-operation minimum).
            max_shrink_iters: 0,
            max_global_rejects: 0,
            ..RunnerConfig::default()
        },
        rng,
    );
    let result = runner.run(&case_strategy(), |(size, cfg, ops)| {
        let (n, verdict) = run_case_in(size, &cfg, &ops, true, false);
        OPS.fetch_add(n, Ordering::Relaxed);
        verdict.map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) if std::env::var_os("WHARF_MODEL_COVERAGE").is_some() => {
            let cover = common::harness::COVERAGE.lock().unwrap();
            println!(
                "model: {cases} sequences, {} operations, 0 divergences, 0 property violations",
                OPS.load(Ordering::Relaxed)
            );
            let c = &cover.1;
            println!("coverage over {} sequences: {c:?}", cover.0);
            println!(
                "  fairness: most overtakes of one waiter, by connection slots: {:?}",
                common::props::MAX_OVERTAKES.lock().unwrap()
            );
            for r in wharf_core::CloseReason::ALL {
                println!("  closes {r:?}: {}", c.closes_for(r));
            }
            // The model's rare paths (the rules of issue 10 among them).
            for (k, v) in common::harness::EVENTS.lock().unwrap().iter() {
                println!("  {k}: {v}");
            }
        }
        Ok(()) => println!(
            "model: {cases} sequences, {} operations, 0 divergences, 0 property violations",
            OPS.load(Ordering::Relaxed)
        ),
        Err(TestError::Fail(why, (size, cfg, ops))) => {
            // Shrinking runs the case thousands of times: not under Miri.
            let ops = if cfg!(miri) {
                ops
            } else {
                shrink(size, &cfg, ops)
            };
            // Replay the minimal case with a trace for the report.
            let (_, verdict) = run_case_in(size, &cfg, &ops, true, true);
            let verdict = verdict.err().unwrap_or_default();
            let what = match driver::kind(&verdict) {
                k if k.starts_with("property ") => format!("{k} violated"),
                _ => "divergence".to_string(),
            };
            panic!(
                "{what} (WHARF_MODEL_SEED={seed}): {why}\nminimal case ({verdict}):\n  size = Size::{size:?}\n  cfg = {cfg:?}\n  ops = vec!{ops:?}"
            );
        }
        Err(e) => panic!("{e}"),
    }
}

/// `work-per-input` can fail: today's core never goes over its bound (one
/// `Connect` and one `Close` per connection slot and input, implied by the
/// slots as long as no connect is closed within the input that polled it), so
/// this feeds the checker the 8 connects of one warm-up input of an 8-slot
/// pool while telling it the storage has 4 slots.
#[test]
fn work_per_input_property_can_fail() {
    use common::props::Props;
    use wharf_core::{Config, Instant, Pool, RouteConfig, Storage};
    let cfg = Config {
        max_total: 8,
        max_per_route: 8,
        ..Config::default()
    };
    let mut storage: Storage<u8, 8, 2, 4, 4> = Storage::new();
    let mut pool = Pool::new(&mut storage, cfg.clone()).unwrap();
    let mut props = Props::new(&cfg);
    props.set_storage(4);
    props.begin_input(&pool, false, true);
    let warm = RouteConfig {
        min_idle: Some(8),
        ..RouteConfig::default()
    };
    pool.set_route_config(&0, warm, Instant::ZERO).unwrap();
    let mut connects = 0;
    while let Some(a) = pool.poll_action() {
        connects += 1;
        props.on_action(&pool, &a).unwrap();
    }
    assert_eq!(connects, 8, "one input, eight warm-up connects");
    let verdict = props.end_input(&pool, true);
    assert!(
        verdict
            .as_ref()
            .is_err_and(|e| e.contains("property work-per-input violated")),
        "{verdict:?}"
    );
}
