//! The hot path allocates nothing: 10,000 warm lease/release pairs on an idle
//! connection, counted by a global allocator (its own test binary, so the
//! allocator does not affect other tests).

mod common;
mod counting;

use common::{request, Opts, Server};
use wharf_tokio::{Pool, TcpConnector};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

const PAIRS: u64 = 10_000;

#[test]
fn warm_lease_release_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = Server::start(Opts::default()).await;
        let pool = Pool::builder(TcpConnector::new())
            .max_total(4)
            .max_per_route(2)
            .build()
            .unwrap();
        let route = server.route();
        // Warm up: connect, talk once, and cycle a few times so the driver
        // has armed its timer.
        {
            let mut l = pool.lease(&route).await.unwrap();
            assert!(request(&mut l).await.unwrap().starts_with("OK"));
        }
        for _ in 0..100 {
            drop(pool.lease(&route).await.unwrap());
            tokio::task::yield_now().await;
        }

        assert_eq!(server.wait_current(1).await, 1);
        counting::start();
        for _ in 0..PAIRS {
            let lease = pool.lease(&route).await.unwrap();
            drop(lease);
        }
        let allocs = counting::stop();

        let c = pool.counters();
        assert_eq!(c.connects, 1);
        assert_eq!(c.reuses, 100 + PAIRS);
        assert_eq!(
            allocs, 0,
            "{allocs} allocations over {PAIRS} warm lease/release pairs"
        );
        eprintln!("alloc: {allocs} allocations over {PAIRS} warm lease/release pairs");

        // Waiters: two tasks take turns on one connection, so every other
        // lease queues (a pre-sized waiter slot holding the task's waker).
        let one = Pool::builder(TcpConnector::new())
            .max_total(1)
            .max_per_route(1)
            .build()
            .unwrap();
        drop(one.lease(&route).await.unwrap());
        // The test server has accepted both pools' connections (its own
        // bookkeeping allocates; keep it out of the window).
        assert_eq!(server.wait_current(2).await, 2);
        let start = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let (one, route, start) = (one.clone(), route.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.notified().await;
                for _ in 0..PAIRS / 2 {
                    let lease = one.lease(&route).await.unwrap();
                    tokio::task::yield_now().await;
                    drop(lease);
                }
            }));
        }
        tokio::task::yield_now().await;
        counting::start();
        start.notify_waiters();
        for t in &mut tasks {
            t.await.unwrap();
        }
        let allocs = counting::stop();
        let c = one.counters();
        assert!(c.queued >= PAIRS / 4, "leases queued: {}", c.queued);
        assert_eq!(c.connects, 1);
        assert_eq!(
            allocs, 0,
            "{allocs} allocations over {PAIRS} leases, {} of them queued",
            c.queued
        );
        eprintln!(
            "alloc: {allocs} allocations over {PAIRS} leases, {} of them queued",
            c.queued
        );
    });
}
