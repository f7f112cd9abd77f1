//! Criterion benches of the core's hot operations (for development; the
//! figures reported in docs/PERFORMANCE.md come from `examples/scale.rs`).
//!
//! `cargo bench -p wharf-core`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use wharf_core::{Action, Capacity, Config, Instant, LeaseOutcome, Pool, Release};

fn warm_pool(slots: usize, routes: usize) -> Pool<'static, u32> {
    let cap = Capacity {
        conns: slots + 1,
        routes,
        waiters: 64,
        leases: slots + 1,
    };
    let cfg = Config {
        max_total: slots as u32,
        max_per_route: (slots / routes) as u32,
        ..Config::default()
    };
    let mut p = Pool::with_capacity(cap, cfg).unwrap();
    let t = Instant::ZERO;
    let mut held = Vec::new();
    for r in 0..routes as u32 {
        for _ in 0..slots / routes {
            if let LeaseOutcome::Granted(l) = p.lease(&r, None, t, None).unwrap() {
                held.push(l);
            }
            while let Some(a) = p.poll_action() {
                match a {
                    Action::Connect { conn, .. } => p.connected(conn, 1, t).unwrap(),
                    Action::Granted { lease, .. } => held.push(lease),
                    _ => {}
                }
            }
        }
    }
    for l in held {
        p.release(l, Release::REUSE, t).unwrap();
    }
    p
}

fn warm(c: &mut Criterion) {
    for (slots, routes) in [(8, 1), (1024, 64), (16384, 1024)] {
        let mut p = warm_pool(slots, routes);
        let mut i = 0u32;
        c.bench_function(&format!("lease+release/{slots}x{routes}"), |b| {
            b.iter(|| {
                i = i.wrapping_add(7);
                let key = i % routes as u32;
                let LeaseOutcome::Granted(l) = p.lease(&key, None, Instant::ZERO, None).unwrap()
                else {
                    unreachable!()
                };
                p.release(black_box(l), Release::REUSE, Instant::ZERO)
                    .unwrap();
            })
        });
    }
}

fn waiter(c: &mut Criterion) {
    let mut p = warm_pool(8, 1);
    let mut held: Vec<_> = (0..8)
        .map(|_| match p.lease(&0, None, Instant::ZERO, None).unwrap() {
            LeaseOutcome::Granted(l) => l,
            LeaseOutcome::Queued(_) => unreachable!(),
        })
        .collect();
    let mut k = 0;
    c.bench_function("queue+grant/8", |b| {
        b.iter(|| {
            p.lease(&0, None, Instant::ZERO, None).unwrap();
            k = (k + 1) % held.len();
            p.release(held[k], Release::REUSE, Instant::ZERO).unwrap();
            if let Some(Action::Granted { lease, .. }) = p.poll_action() {
                held[k] = lease;
            }
        })
    });
}

fn timeout(c: &mut Criterion) {
    c.bench_function("handle_timeout/1024 armed", |b| {
        b.iter_batched(
            || {
                let cap = Capacity {
                    conns: 8,
                    routes: 1,
                    waiters: 1024,
                    leases: 8,
                };
                let cfg = Config {
                    max_total: 8,
                    max_per_route: 8,
                    ..Config::default()
                };
                let mut p: Pool<'static, u32> = Pool::with_capacity(cap, cfg).unwrap();
                for i in 0..1024u64 {
                    p.lease(&0, None, Instant::ZERO, Some(Instant::from_micros(10 + i)))
                        .unwrap();
                }
                while p.poll_action().is_some() {}
                p
            },
            |mut p| {
                p.handle_timeout(Instant::from_micros(2_000));
                while black_box(p.poll_action()).is_some() {}
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, warm, waiter, timeout);
criterion_main!(benches);
