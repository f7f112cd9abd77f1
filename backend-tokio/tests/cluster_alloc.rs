//! The cluster hot path allocates nothing either: warm lease/release pairs
//! through a cluster (balancer pick, predictive preconnect check, core lease
//! on the host's idle connection), counted by a global allocator (its own
//! test binary, so the allocator does not affect other tests).

mod common;
mod counting;

use common::{request, Opts, Server};
use wharf_tokio::{Balancer, Pool, TcpConnector};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

const PAIRS: u64 = 3_000;

#[test]
fn warm_cluster_lease_release_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let servers = [
            Server::start(Opts::default()).await,
            Server::start(Opts::default()).await,
        ];
        let hosts: Vec<_> = servers.iter().map(Server::route).collect();
        let pool = Pool::builder(TcpConnector::new())
            .max_total(4)
            .max_per_route(1)
            .build()
            .unwrap();
        for (balancer, ratio) in [
            (Balancer::RoundRobin, 0.0),
            (Balancer::LeastActive, 1.5),
            (Balancer::Random { seed: 3 }, 0.0),
        ] {
            let c = pool
                .add_cluster("warm", balancer, hosts.clone(), ratio)
                .unwrap();
            let start = pool.counters();
            // Warm up: one connection per host, each talked to once.
            for _ in 0..2 {
                let mut l = pool.lease_cluster(c).await.unwrap();
                assert!(request(&mut l).await.unwrap().starts_with("OK"));
            }
            for _ in 0..100 {
                drop(pool.lease_cluster(c).await.unwrap());
                tokio::task::yield_now().await;
            }
            for s in &servers {
                assert_eq!(s.wait_current(1).await, 1);
            }
            let before = pool.counters();
            counting::start();
            for _ in 0..PAIRS {
                let lease = pool.lease_cluster(c).await.unwrap();
                drop(lease);
            }
            let allocs = counting::stop();
            let after = pool.counters();
            assert_eq!(
                after.connects - start.connects,
                2,
                "{balancer:?}: the two warm connections"
            );
            assert_eq!(after.reuses - before.reuses, PAIRS, "{balancer:?}");
            assert_eq!(
                allocs, 0,
                "{balancer:?}: {allocs} allocations over {PAIRS} warm cluster lease/release pairs"
            );
            // Removing the cluster drains both hosts; the next one connects anew.
            pool.remove_cluster(c).unwrap();
            for s in &servers {
                assert_eq!(s.wait_current(0).await, 0);
            }
            let mut closed = false;
            for _ in 0..500 {
                if hosts.iter().all(|h| pool.route_stats(h).is_none()) {
                    closed = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert!(closed, "the drained routes are freed");
            pool.check_invariants().unwrap();
        }

        // Waiters: two tasks take turns on one connection through a cluster,
        // so every other lease queues on the host's route.
        let one = Pool::builder(TcpConnector::new())
            .max_total(1)
            .max_per_route(1)
            .build()
            .unwrap();
        let c = one
            .add_cluster("one", Balancer::RoundRobin, [hosts[0].clone()], 0.0)
            .unwrap();
        drop(one.lease_cluster(c).await.unwrap());
        assert_eq!(servers[0].wait_current(1).await, 1);
        let start = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let (one, start) = (one.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.notified().await;
                for _ in 0..PAIRS / 2 {
                    let lease = one.lease_cluster(c).await.unwrap();
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
        let k = one.counters();
        assert!(k.queued >= PAIRS / 4, "leases queued: {}", k.queued);
        assert_eq!(k.connects, 1);
        assert_eq!(
            allocs, 0,
            "{allocs} allocations over {PAIRS} cluster leases, {} of them queued",
            k.queued
        );
    });
}
