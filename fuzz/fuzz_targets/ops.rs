//! Fuzz target: the model test's operation language, decoded from the fuzzer's
//! bytes, run against the core. After every input the harness drains every
//! action, calls `check_invariants()` and checks its own safety rules (tag
//! isolation, route isolation, never a discarded/closed/draining connection,
//! every waiter answered exactly once, gauges matching what the backend holds),
//! then the end phase (release all, drain all for deletion, pool empty). The
//! properties of `tests/model/props.rs` (liveness, fairness, bounded work,
//! churn, "never") run too. Any violation panics.
//!
//! `WHARF_FUZZ_MODEL=1` also runs the reference model and compares every output
//! (differential fuzzing). `WHARF_MODEL_AVOID` steers away from known bugs as
//! in the model test.
#![no_main]

#[path = "../../pool-core/tests/model/mod.rs"]
#[allow(dead_code, unused_imports)]
mod model;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use model::harness::{avoid, avoid_cfg, run_case_in, Cfg, Op, RelHow, Size, KEYS, NEVER_MS};

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
        max_pending: opt(u, |u| u.int_in_range(1..=s.waiters as u32))?,
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
    })
}

fn tag(u: &mut Unstructured) -> Result<Option<u8>> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 | 1 => None,
        t => Some(t - 2),
    })
}

fn op(u: &mut Unstructured) -> Result<Op> {
    let idx = |u: &mut Unstructured| -> Result<usize> { Ok(u.int_in_range(0..=63u8)? as usize) };
    Ok(match u.int_in_range(0..=16u8)? {
        0..=2 => Op::Lease {
            key: u.int_in_range(0..=KEYS - 1)?,
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
                Some(u.int_in_range(0..=KEYS - 1)?)
            },
            delete: u.arbitrary()?,
        },
        16 => Op::ReleaseForeign { idx: idx(u)? },
        _ => Op::RouteConfig {
            key: u.int_in_range(0..=KEYS - 1)?,
            limit: opt(u, |u| u.int_in_range(0..=4))?,
            min_idle: opt(u, |u| u.int_in_range(0..=2))?,
            ratio_milli: opt(u, |u| u.int_in_range(500..=3_500))?,
        },
    })
}

fn decode(data: &[u8]) -> Result<(Size, Cfg, Vec<Op>)> {
    let mut u = Unstructured::new(data);
    // Bit 0 as before (big or small); bits 1-2 both set on a small storage:
    // exactly max_total connection slots (the properties' tight storage), 1
    // or 2 by bit 3.
    let sel: u8 = u.arbitrary()?;
    let size = if sel & 1 == 1 {
        Size::Big
    } else if sel & 0b110 == 0b110 {
        Size::Tight(1 + (sel >> 3 & 1))
    } else {
        Size::Small
    };
    let list = std::env::var("WHARF_MODEL_AVOID").unwrap_or_default();
    let cfg = avoid_cfg(cfg(&mut u, size)?, &list);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 2_000 {
        ops.push(avoid(op(&mut u)?, &list));
    }
    Ok((size, cfg, ops))
}

fuzz_target!(|data: &[u8]| {
    let Ok((size, cfg, ops)) = decode(data) else {
        return;
    };
    let with_model = std::env::var_os("WHARF_FUZZ_MODEL").is_some();
    let (_, verdict) = run_case_in(size, &cfg, &ops, with_model, false);
    if let Err(e) = verdict {
        panic!("{e}\n  size = Size::{size:?}\n  cfg = {cfg:?}\n  ops = vec!{ops:?}");
    }
});
