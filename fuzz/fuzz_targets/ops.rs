//! Fuzz target: the shared operation language of `pool-core/tests/common/`
//! (pool operations and cluster operations), decoded from the fuzzer's bytes,
//! run against the core through the shared harness: a pool alone, or (bit 4 of
//! the first byte) a pool with one or two clusters of 2-4 hosts and the
//! cluster operations in the mix. After every input the harness drains every
//! action, calls `check_invariants()` and checks its own safety rules (tag
//! isolation, route isolation, never a discarded/closed/draining connection,
//! every waiter answered exactly once, gauges matching what the backend holds),
//! then the end phase (release all, drain all for deletion, pool empty). The
//! properties of `tests/common/props.rs` (liveness, fairness, bounded work,
//! churn, "never") run too. Any violation panics.
//!
//! `WHARF_FUZZ_MODEL=1` also runs the reference models (pool and cluster) and
//! compares every output (differential fuzzing). `WHARF_MODEL_AVOID` steers
//! away from known bugs as in the model test.
#![no_main]

#[path = "../../pool-core/tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use arbitrary::{Result, Unstructured};
use common::harness::{
    avoid, avoid_cfg, run_case_in, run_cluster_case, Cfg, ClusterSpec, Op, RelHow, Size, HOST_KEYS,
    NEVER_MS,
};
use libfuzzer_sys::fuzz_target;
use wharf_core::Balancer;

fn opt<T>(
    u: &mut Unstructured,
    f: impl FnOnce(&mut Unstructured) -> Result<T>,
) -> Result<Option<T>> {
    Ok(if u.ratio(1, 4)? { None } else { Some(f(u)?) })
}

/// The top of a range stands for `NEVER_MS` (saturating sums, §2).
fn never(top: u32) -> impl Fn(u32) -> u32 {
    move |x| if x == top { NEVER_MS } else { x }
}

fn cfg(u: &mut Unstructured, size: Size) -> Result<Cfg> {
    let s = size.slots();
    let max_per_route = u.int_in_range(1..=3)?;
    let max_idle_per_route = opt(u, |u| u.int_in_range(0..=3))?;
    let min_idle = u
        .int_in_range(0..=2u32)?
        .min(max_per_route)
        .min(max_idle_per_route.unwrap_or(u32::MAX));
    let max_total = u.int_in_range(1..=s.conns as u32)?;
    Ok(Cfg {
        // Tight storage: exactly max_total connection slots.
        max_total: if let Size::Tight(n) = size {
            n as u32
        } else {
            max_total
        },
        max_per_route,
        // 0: no lease ever waits (`NeverServes` without warm-up, §4).
        max_pending: opt(u, |u| u.int_in_range(0..=s.waiters as u32))?,
        max_leases: opt(u, |u| u.int_in_range(1..=s.leases as u32))?,
        fifo: u.arbitrary()?,
        connect_timeout_ms: opt(u, |u| u.int_in_range(100..=3_000).map(never(3_000)))?,
        idle_timeout_ms: opt(u, |u| u.int_in_range(200..=6_000).map(never(6_000)))?,
        max_lifetime_ms: opt(u, |u| u.int_in_range(500..=10_000).map(never(10_000)))?,
        validate_after_ms: opt(u, |u| u.int_in_range(0..=3_000))?,
        // 999 stands for 0 ("off", §12).
        ratio_milli: if u.arbitrary()? {
            1000
        } else {
            match u.int_in_range(999..=3000)? {
                999 => 0,
                r => r,
            }
        },
        min_idle,
        max_idle_per_route,
        max_idle: opt(u, |u| u.int_in_range(0..=4))?,
        connecting_capacity: u.int_in_range(1..=3)?,
        max_leases_per_conn: opt(u, |u| u.int_in_range(1..=4))?,
        starvation_guard: u.arbitrary()?,
        retry_backoff_ms: u.int_in_range(1..=2_000).map(never(2_000))?,
        // Above 100 is `BadJitter` (§2).
        jitter_percent: if u.arbitrary()? { 0 } else { u.arbitrary()? },
        seed: u.arbitrary()?,
        strict_tags: u.ratio(1, 3)?,
        close_on_unhealthy: u.arbitrary()?,
    })
}

fn tag(u: &mut Unstructured) -> Result<Option<u8>> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 | 1 => None,
        t => Some(t - 2),
    })
}

/// One operation; route keys are `0..keys` ([`Size::keys`]).
fn op(u: &mut Unstructured, keys: u8) -> Result<Op> {
    let idx = |u: &mut Unstructured| -> Result<usize> { Ok(u.int_in_range(0..=63u8)? as usize) };
    Ok(match u.int_in_range(0..=21u8)? {
        0..=2 => Op::Lease {
            key: u.int_in_range(0..=keys - 1)?,
            tag: tag(u)?,
            deadline_ms: opt(u, |u| u.int_in_range(0..=4_000).map(never(4_000)))?,
        },
        3 | 4 => Op::Release {
            idx: idx(u)?,
            how: if u.ratio(1, 6)? {
                RelHow::Discard
            } else {
                RelHow::Reuse {
                    keep_alive_ms: opt(u, |u| u.int_in_range(0..=3_000).map(never(3_000)))?,
                    tag: tag(u)?,
                }
            },
        },
        5 => Op::ReleaseStale { idx: idx(u)? },
        6 => Op::Cancel {
            idx: idx(u)?,
            excess: u.arbitrary()?,
        },
        7 | 8 => Op::Connected {
            idx: idx(u)?,
            cap: u.int_in_range(0..=3)?,
            any: u.ratio(1, 10)?,
        },
        9 => Op::ConnectFailed {
            idx: idx(u)?,
            reason: u.int_in_range(0..=2)?,
            any: u.ratio(1, 10)?,
        },
        10 => Op::PeerClosed { idx: idx(u)? },
        11 => Op::Validated {
            idx: idx(u)?,
            alive: u.ratio(3, 4)?,
            any: u.ratio(1, 10)?,
        },
        12 => Op::Advance {
            ms: u.int_in_range(0..=6_000).map(never(6_000))?,
        },
        13 => {
            let k: u8 = u.int_in_range(0..=2)?;
            if k == 0 {
                Op::AdvanceToTimer
            } else if k == 1 {
                Op::Partial {
                    n: u.int_in_range(0..=3)?,
                }
            } else {
                Op::Backwards {
                    ms: u.int_in_range(0..=2_000)?,
                }
            }
        }
        14 => Op::Drain {
            key: if u.ratio(1, 8)? {
                None
            } else {
                Some(u.int_in_range(0..=keys - 1)?)
            },
            delete: u.arbitrary()?,
        },
        16 => Op::ReleaseForeign { idx: idx(u)? },
        // §7 HTTP/2 SETTINGS (0: `ZeroCapacity`; `u32::MAX` is clamped).
        17 => Op::SetCapacity {
            idx: idx(u)?,
            cap: match u.int_in_range(0..=5u32)? {
                5 => u32::MAX,
                c => c,
            },
            any: u.ratio(1, 10)?,
        },
        // §6 `connected_as`: the intent or a tag of the connector's.
        18 => Op::ConnectedAs {
            idx: idx(u)?,
            cap: u.int_in_range(1..=3)?,
            tag: tag(u)?,
            intent: u.arbitrary()?,
        },
        19 => {
            let n = u.int_in_range(0..=10)?;
            if u.arbitrary()? {
                Op::SetMaxTotal { n }
            } else {
                Op::SetMaxPerRoute { n: n % 4 }
            }
        }
        20 => Op::RouteHealth {
            key: u.int_in_range(0..=keys - 1)?,
            healthy: u.arbitrary()?,
        },
        _ => Op::RouteConfig {
            key: u.int_in_range(0..=keys - 1)?,
            limit: opt(u, |u| u.int_in_range(0..=4))?,
            min_idle: opt(u, |u| u.int_in_range(0..=2))?,
            ratio_milli: opt(u, |u| u.int_in_range(500..=3_500))?,
        },
    })
}

/// A predictive ratio in 1/1000 (§12): 0 ("off"), valid (1000-3000) or not.
fn ratio(u: &mut Unstructured) -> Result<u32> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => 0,
        1 => u.int_in_range(1..=999)?,
        2 => u.int_in_range(3_001..=4_000)?,
        _ => u.int_in_range(1_000..=3_000)?,
    })
}

/// One cluster's initial shape: a balancer and 2-4 distinct hosts.
fn cluster(u: &mut Unstructured) -> Result<ClusterSpec> {
    let balancer = match u.int_in_range(0..=2u8)? {
        0 => Balancer::RoundRobin,
        1 => Balancer::LeastActive,
        _ => Balancer::Random {
            seed: if u.ratio(1, 4)? { 0 } else { u.arbitrary()? },
        },
    };
    let mut keys: Vec<u8> = (0..HOST_KEYS).collect();
    let n = u.int_in_range(2..=4usize)?;
    let mut hosts = Vec::new();
    for _ in 0..n {
        hosts.push(keys.remove(u.choose_index(keys.len())?));
    }
    let ratio_milli = if u.arbitrary()? {
        0
    } else {
        u.int_in_range(1_000..=3_000)?
    };
    Ok(ClusterSpec {
        balancer,
        hosts,
        ratio_milli,
    })
}

/// With clusters: a cluster operation (on cluster 0 or 1, modulo the
/// clusters) or, two times in three, a pool operation.
fn cluster_op(u: &mut Unstructured, keys: u8) -> Result<Op> {
    if u.ratio(2, 3)? {
        return op(u, keys);
    }
    let c = u.int_in_range(0..=1u8)?;
    let key = u.int_in_range(0..=keys - 1)?;
    Ok(match u.int_in_range(0..=6u8)? {
        0..=2 => Op::ClusterLease {
            c,
            tag: tag(u)?,
            deadline_ms: opt(u, |u| u.int_in_range(0..=4_000).map(never(4_000)))?,
        },
        3 => Op::AddHost { c, key },
        4 => Op::RemoveHost { c, key },
        5 => Op::SetHealth {
            c,
            key,
            healthy: u.arbitrary()?,
        },
        _ => {
            let ratio_milli = ratio(u)?;
            if u.arbitrary()? {
                Op::SetRatio { c, ratio_milli }
            } else {
                Op::Preconnect { key, ratio_milli }
            }
        }
    })
}

/// A case: the storage, the configuration, the clusters (none: the pool
/// alone) and the operations.
type Case = (Size, Cfg, Vec<ClusterSpec>, Vec<Op>);

fn decode(data: &[u8]) -> Result<Case> {
    let mut u = Unstructured::new(data);
    // Bit 0 as before (big or small); bits 1-2 both set on a small storage:
    // exactly max_total connection slots (the properties' tight storage), 1
    // or 2 by bit 3. Bit 4: with clusters (then on the storage for clusters,
    // big or small by bit 0).
    let sel: u8 = u.arbitrary()?;
    let with_clusters = sel & 0x10 != 0;
    let size = if with_clusters {
        Size::hosts(sel & 1 == 1)
    } else if sel & 1 == 1 {
        Size::Big
    } else if sel & 0b110 == 0b110 {
        Size::Tight(1 + (sel >> 3 & 1))
    } else {
        Size::Small
    };
    let list = std::env::var("WHARF_MODEL_AVOID").unwrap_or_default();
    let cfg = avoid_cfg(cfg(&mut u, size)?, &list);
    let mut clusters = Vec::new();
    if with_clusters {
        for _ in 0..u.int_in_range(1..=2u8)? {
            clusters.push(cluster(&mut u)?);
        }
    }
    let keys = size.keys();
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 2_000 {
        let op = if with_clusters {
            cluster_op(&mut u, keys)?
        } else {
            op(&mut u, keys)?
        };
        ops.push(avoid(op, &list));
    }
    Ok((size, cfg, clusters, ops))
}

fuzz_target!(|data: &[u8]| {
    let Ok((size, cfg, clusters, ops)) = decode(data) else {
        return;
    };
    let with_model = std::env::var_os("WHARF_FUZZ_MODEL").is_some();
    let (_, verdict) = if clusters.is_empty() {
        run_case_in(size, &cfg, &ops, with_model, false)
    } else {
        let big = size == Size::HostsBig;
        run_cluster_case(big, &cfg, &clusters, &ops, with_model, false)
    };
    if let Err(e) = verdict {
        panic!(
            "{e}\n  size = Size::{size:?}\n  cfg = {cfg:?}\n  clusters = {clusters:?}\n  ops = vec!{ops:?}"
        );
    }
});
