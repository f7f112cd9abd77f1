//! Scale benchmark for the core: cost per operation as the pool grows.
//!
//! `cargo run --release -p wharf-core --example scale`
//!
//! Prints one JSON line per case, then `{"flatness": max/min ns_per_op over the
//! warm cases}`. Cases:
//! - `warm`: lease + release of an idle connection (always available), routes
//!   picked in a pseudo-random order, for several slot and route counts;
//! - `waiter`: a lease that queues, then a release that hands the connection to
//!   it (plus polling the `Granted` action);
//! - `timeout`: `handle_timeout` firing one of many armed waiter deadlines.
//!
//! Times are the best of several rounds, as the machines are shared and noisy:
//! compare ratios within one run.

use std::hint::black_box;
use std::time::Instant as Clock;

use wharf_core::{Action, Capacity, Config, Instant, LeaseOutcome, Pool, Release};

fn rounds() -> usize {
    if quick() {
        1
    } else {
        5
    }
}

/// `WHARF_SCALE_QUICK=1`: few operations, one round (for callgrind).
fn quick() -> bool {
    std::env::var_os("WHARF_SCALE_QUICK").is_some()
}

fn ops(full: usize) -> usize {
    if quick() {
        full >> 6
    } else {
        full
    }
}

fn pool(slots: usize, routes: usize, waiters: usize) -> Pool<'static, u32> {
    let cap = Capacity {
        conns: slots + 1,
        routes,
        waiters,
        leases: slots + 1,
    };
    let config = Config {
        max_total: slots as u32,
        max_per_route: (slots / routes) as u32,
        max_pending: Some(waiters as u32),
        ..Config::default()
    };
    Pool::with_capacity(cap, config).expect("config")
}

/// Opens `per_route` connections on each route and leaves them idle.
fn warm_up(p: &mut Pool<'static, u32>, routes: usize, per_route: usize) {
    let t = Instant::ZERO;
    let mut leases = Vec::new();
    for r in 0..routes as u32 {
        for _ in 0..per_route {
            match p.lease(&r, None, t, None).unwrap() {
                LeaseOutcome::Granted(l) => leases.push(l),
                LeaseOutcome::Queued(_) => {}
            }
            while let Some(a) = p.poll_action() {
                match a {
                    Action::Connect { conn, .. } => p.connected(conn, 1, t).unwrap(),
                    Action::Granted { lease, .. } => leases.push(lease),
                    _ => {}
                }
            }
        }
    }
    loop {
        while let Some(a) = p.poll_action() {
            match a {
                Action::Connect { conn, .. } => p.connected(conn, 1, t).unwrap(),
                Action::Granted { lease, .. } => leases.push(lease),
                _ => {}
            }
        }
        let Some(l) = leases.pop() else { break };
        p.release(l, Release::REUSE, t).unwrap();
    }
    assert_eq!(p.stats().leased, 0);
}

fn best<F: FnMut() -> f64>(mut f: F) -> f64 {
    (0..rounds()).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn warm(slots: usize, routes: usize) -> f64 {
    let mut p = pool(slots, routes, 16);
    warm_up(&mut p, routes, slots / routes);
    // A fixed pseudo-random route order (xorshift), precomputed.
    let mut x = 0x9e37_79b9u32;
    let order: Vec<u32> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x % routes as u32
        })
        .collect();
    let ops = ops(1 << 20);
    let mut tick = 0u64;
    best(|| {
        let start = Clock::now();
        warm_loop(&mut p, &order, ops, &mut tick);
        start.elapsed().as_nanos() as f64 / ops as f64
    })
}

/// The measured loop (a function of its own so callgrind can count just it:
/// `valgrind --tool=callgrind --toggle-collect='scale::warm_loop*'`).
#[inline(never)]
fn warm_loop(p: &mut Pool<'static, u32>, order: &[u32], ops: usize, tick: &mut u64) {
    for i in 0..ops {
        *tick += 1;
        let now = Instant::from_micros(*tick / 64);
        let key = order[i & 4095];
        let LeaseOutcome::Granted(l) = p.lease(&key, None, now, None).unwrap() else {
            panic!("warm lease queued")
        };
        p.release(black_box(l), Release::REUSE, now).unwrap();
    }
}

fn waiter(slots: usize) -> f64 {
    let mut p = pool(slots, 1, 16);
    warm_up(&mut p, 1, slots);
    let t = Instant::ZERO;
    let mut held: Vec<_> = (0..slots)
        .map(|_| match p.lease(&0, None, t, None).unwrap() {
            LeaseOutcome::Granted(l) => l,
            LeaseOutcome::Queued(_) => panic!("expected idle"),
        })
        .collect();
    let ops = ops(1 << 18);
    best(|| {
        let start = Clock::now();
        for i in 0..ops {
            let LeaseOutcome::Queued(_) = p.lease(&0, None, t, None).unwrap() else {
                panic!("expected to queue")
            };
            let slot = i % held.len();
            p.release(held[slot], Release::REUSE, t).unwrap();
            match p.poll_action() {
                Some(Action::Granted { lease, .. }) => held[slot] = lease,
                other => panic!("expected a grant, got {other:?}"),
            }
        }
        start.elapsed().as_nanos() as f64 / ops as f64
    })
}

fn timeout(armed: usize) -> f64 {
    best(|| {
        let mut p = pool(8, 1, armed);
        // Every connect stays pending: all leases queue with distinct deadlines.
        for i in 0..armed as u64 {
            let d = Instant::from_micros(1_000 + i);
            let _ = p.lease(&0, None, Instant::ZERO, Some(d)).unwrap();
            while p.poll_action().is_some() {}
        }
        let start = Clock::now();
        for i in 0..armed as u64 {
            p.handle_timeout(Instant::from_micros(1_000 + i));
            while black_box(p.poll_action()).is_some() {}
        }
        start.elapsed().as_nanos() as f64 / armed as f64
    })
}

/// `WHARF_SCALE_WARM=<slots>:<routes>`: only that warm case (to count its
/// instructions alone under callgrind).
fn only_warm() -> Option<(usize, usize)> {
    let v = std::env::var("WHARF_SCALE_WARM").ok()?;
    let (a, b) = v.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn main() {
    if let Some((slots, routes)) = only_warm() {
        let ns = warm(slots, routes);
        println!(r#"{{"case":"warm","slots":{slots},"routes":{routes},"ns_per_op":{ns:.1}}}"#);
        return;
    }
    let mut warm_cases = Vec::new();
    for &slots in &[8usize, 64, 1024, 16384] {
        for &routes in &[1usize, 64, 1024] {
            if routes > slots {
                continue;
            }
            let ns = warm(slots, routes);
            warm_cases.push(ns);
            println!(r#"{{"case":"warm","slots":{slots},"routes":{routes},"ns_per_op":{ns:.1}}}"#);
        }
    }
    for &slots in &[8usize, 1024, 16384] {
        let ns = waiter(slots);
        println!(r#"{{"case":"waiter","slots":{slots},"routes":1,"ns_per_op":{ns:.1}}}"#);
    }
    for &armed in &[1024usize, 16384] {
        let ns = timeout(armed);
        println!(r#"{{"case":"timeout","slots":{armed},"routes":1,"ns_per_op":{ns:.1}}}"#);
    }
    let max = warm_cases.iter().cloned().fold(0.0, f64::max);
    let min = warm_cases.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(r#"{{"flatness":{:.2}}}"#, max / min);
}
