//! Leasing through a cluster on real loopback sockets: one test server per
//! host, connections counted on the server side.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, request, Opts, Server, Tracker};
use wharf_tokio::{
    Balancer, CloseReason, ClusterError, ClusterHandle, ConfigError, Error, Lease, LeaseOptions,
    Pool, TcpConnector, MAX_CLUSTER_HOSTS,
};

type Route = (String, u16);
type TcpPool = Pool<Route, TcpConnector>;

async fn servers(n: usize, global: Option<Arc<Tracker>>) -> Vec<Server> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(
            Server::start(Opts {
                global: global.clone(),
                ..Opts::default()
            })
            .await,
        );
    }
    v
}

fn pool(max_total: u32, per_route: u32) -> TcpPool {
    Pool::builder(TcpConnector::new())
        .max_total(max_total)
        .max_per_route(per_route)
        .build()
        .unwrap()
}

/// How the TCP connector names a route in errors.
fn name(r: &Route) -> String {
    format!("{}:{}", r.0, r.1)
}

fn routes(servers: &[Server]) -> Vec<Route> {
    servers.iter().map(Server::route).collect()
}

/// The host a lease landed on, as the pool says and as the socket says.
fn host_of(lease: &Lease<Route, TcpConnector>, servers: &[Server]) -> usize {
    let port = lease.peer_addr().unwrap().port();
    let route = Lease::route(lease).expect("a leased connection has a route");
    assert_eq!(route.1, port, "the pool's route is the socket's peer");
    servers
        .iter()
        .position(|s| s.port == port)
        .expect("connected to one of the test servers")
}

/// Sends a request; returns the server's connection number and how many
/// requests that connection served.
async fn talk(lease: &mut Lease<Route, TcpConnector>) -> (u64, u64) {
    let line = request(lease).await.unwrap();
    let mut it = line.split(' ');
    assert_eq!(it.next(), Some("OK"), "{line}");
    let conn = it.next().unwrap().parse().unwrap();
    let n = it.next().unwrap().parse().unwrap();
    (conn, n)
}

fn accepted(servers: &[Server]) -> Vec<usize> {
    servers.iter().map(|s| s.tracker.accepted()).collect()
}

#[tokio::test]
async fn round_robin_lands_on_each_host_in_turn_and_reuses() {
    let servers = servers(3, None).await;
    let pool = pool(8, 2);
    let c = pool
        .add_cluster("rr", Balancer::RoundRobin, routes(&servers), 0.0)
        .unwrap();
    assert_eq!(pool.cluster_hosts(c).unwrap(), routes(&servers));
    for round in 0..3u64 {
        for (i, _) in servers.iter().enumerate() {
            let mut l = pool.lease_cluster(c).await.unwrap();
            assert_eq!(host_of(&l, &servers), i, "round {round}");
            // The server's first (and only) connection, one more request each
            // round: the connection is reused.
            assert_eq!(talk(&mut l).await, (0, round + 1));
        }
    }
    for s in &servers {
        assert_eq!(s.wait_current(1).await, 1);
    }
    assert_eq!(accepted(&servers), [1, 1, 1], "one connection per host");
    let k = pool.counters();
    assert_eq!((k.connects, k.reuses, k.grants), (3, 6, 9));
    assert_eq!(pool.cluster_preconnects(c).unwrap(), 0, "preconnect is off");
    for r in routes(&servers) {
        let s = pool.route_stats(&r).unwrap();
        assert_eq!((s.connections, s.idle), (1, 1));
    }
    pool.check_invariants().unwrap();
    pool.close().await;
}

#[tokio::test]
async fn predictive_preconnect_opens_ahead_within_the_limits() {
    let global = Tracker::new();
    let servers = servers(2, Some(global.clone())).await;
    let pool = pool(4, 2);
    let c = pool
        .add_cluster("ahead", Balancer::RoundRobin, routes(&servers), 2.0)
        .unwrap();
    let within_limits = || {
        let s = pool.stats();
        assert!(s.connections <= 4, "{s:?}");
        for r in routes(&servers) {
            let n = pool.route_stats(&r).map_or(0, |s| s.connections);
            assert!(n <= 2, "{r:?}: {n}");
        }
        for s in &servers {
            assert!(s.tracker.accepted() <= 2, "{:?}", accepted(&servers));
            assert!(s.tracker.max() <= 2);
        }
        assert!(global.max() <= 4, "{}", global.max());
        pool.check_invariants().unwrap();
    };

    // The first lease goes to host 0; preconnect also opened host 1, which
    // no lease asked for yet.
    let mut l0 = pool.lease_cluster(c).await.unwrap();
    assert_eq!(host_of(&l0, &servers), 0);
    let hosts = routes(&servers);
    assert!(
        eventually(|| pool.route_stats(&hosts[1]).is_some_and(|s| s.idle == 1)).await,
        "host 1 connected ahead: {:?}",
        pool.route_stats(&hosts[1])
    );
    assert!(eventually(|| servers[1].tracker.accepted() == 1).await);
    assert!(pool.cluster_preconnects(c).unwrap() >= 1);
    assert!(pool.counters().preconnects >= 1);
    within_limits();

    // The next lease goes to host 1 and is served at once by the connection
    // opened ahead (the server's first); preconnect opens more ahead.
    let mut l1 = pool.lease_cluster(c).await.unwrap();
    assert_eq!(host_of(&l1, &servers), 1);
    assert_eq!(talk(&mut l1).await, (0, 1), "the preconnected connection");
    within_limits();

    // Two more, one per host: the pool is then full.
    let mut l2 = pool.lease_cluster(c).await.unwrap();
    let mut l3 = pool.lease_cluster(c).await.unwrap();
    assert_eq!(host_of(&l2, &servers), 0);
    assert_eq!(host_of(&l3, &servers), 1);
    for l in [&mut l0, &mut l2, &mut l3] {
        talk(l).await;
    }
    within_limits();
    assert_eq!(pool.stats().connections, 4);

    // Nothing more can be opened: a fifth lease waits and times out on the
    // host it was given, and preconnect stays within the limits too.
    let short = LeaseOptions::new().timeout(Duration::from_millis(100));
    match pool.lease_cluster_with(c, short).await {
        Err(Error::Timeout { route, .. }) => {
            assert!(
                routes(&servers).iter().any(|r| route == name(r)),
                "names the host: {route}"
            )
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    within_limits();
    assert!(eventually(|| accepted(&servers) == [2, 2]).await);
    within_limits();
    assert_eq!(pool.counters().connects, 4);
    drop((l0, l1, l2, l3));
    pool.close().await;
    assert!(eventually(|| global.current() == 0).await);
}

#[tokio::test]
async fn removing_a_host_drains_it() {
    let servers = servers(2, None).await;
    let hosts = routes(&servers);
    let pool = pool(8, 2);
    let c = pool
        .add_cluster("drain", Balancer::RoundRobin, hosts.clone(), 0.0)
        .unwrap();
    let mut l0 = pool.lease_cluster(c).await.unwrap();
    let mut l1 = pool.lease_cluster(c).await.unwrap();
    let mut busy = pool.lease_cluster(c).await.unwrap();
    assert_eq!(host_of(&l0, &servers), 0);
    assert_eq!(host_of(&l1, &servers), 1);
    assert_eq!(host_of(&busy, &servers), 0);
    for l in [&mut l0, &mut l1, &mut busy] {
        talk(l).await;
    }
    drop((l0, l1));
    assert_eq!(servers[0].wait_current(2).await, 2);
    assert_eq!(accepted(&servers), [2, 1]);

    pool.remove_host(c, &hosts[0]).unwrap();
    assert_eq!(pool.cluster_hosts(c).unwrap(), [hosts[1].clone()]);
    // The idle connection to host 0 is closed...
    assert_eq!(servers[0].wait_current(1).await, 1);
    // ...the leased one keeps working...
    assert_eq!(talk(&mut busy).await.1, 2);
    // ...and every new lease goes to host 1, on its one connection.
    for n in 2..5 {
        let mut l = pool.lease_cluster(c).await.unwrap();
        assert_eq!(host_of(&l, &servers), 1);
        assert_eq!(talk(&mut l).await, (0, n));
    }
    // Given back, the busy one is closed too, not kept.
    drop(busy);
    assert_eq!(servers[0].wait_current(0).await, 0);
    assert!(
        eventually(|| pool.route_stats(&hosts[0]).is_none()).await,
        "the drained route is freed"
    );
    assert_eq!(accepted(&servers), [2, 1], "no new connection to host 0");
    assert_eq!(pool.counters().closes_for(CloseReason::Drained), 2);
    match pool.remove_host(c, &hosts[0]) {
        Err(Error::Cluster {
            cluster,
            host: Some(host),
            error: ClusterError::UnknownHost,
        }) => {
            assert_eq!(cluster, "drain");
            assert_eq!(host, name(&hosts[0]));
        }
        other => panic!("{other:?}"),
    }
    pool.check_invariants().unwrap();
}

#[tokio::test]
async fn a_lease_queued_on_a_removed_host_fails_naming_it_and_cancels_cleanly() {
    let servers = servers(2, None).await;
    let hosts = routes(&servers);
    let pool = pool(8, 1);
    let c = pool
        .add_cluster("queued", Balancer::RoundRobin, hosts.clone(), 0.0)
        .unwrap();
    let mut h0 = pool.lease_cluster(c).await.unwrap();
    let h1 = pool.lease_cluster(c).await.unwrap();
    assert_eq!(host_of(&h0, &servers), 0);
    assert_eq!(host_of(&h1, &servers), 1);
    talk(&mut h0).await;

    // Both hosts are at their limit: the next lease (host 0's turn) queues.
    let mut waiting = pool.lease_cluster(c);
    assert!(
        tokio::time::timeout(Duration::from_millis(30), &mut waiting)
            .await
            .is_err(),
        "host 0's only connection is held"
    );
    assert_eq!(pool.route_stats(&hosts[0]).unwrap().pending, 1);
    pool.remove_host(c, &hosts[0]).unwrap();
    // The waiter stays while host 0 has a connection that may serve it...
    assert!(
        tokio::time::timeout(Duration::from_millis(30), &mut waiting)
            .await
            .is_err(),
        "host 0's only connection is still held"
    );
    // ...and fails once it has none.
    Lease::discard(&mut h0);
    drop(h0);
    match waiting.await {
        Err(Error::Draining { route }) => assert_eq!(route, name(&hosts[0])),
        other => panic!("expected Draining, got {other:?}"),
    }

    // A waiting cluster lease dropped (host 1's turn now, the only host):
    // its waiter is removed, and the connection given back later serves
    // the next lease.
    let mut dropped = pool.lease_cluster(c);
    assert!(
        tokio::time::timeout(Duration::from_millis(30), &mut dropped)
            .await
            .is_err()
    );
    assert_eq!(pool.stats().pending, 1);
    drop(dropped);
    assert_eq!(pool.stats().pending, 0);
    assert_eq!(pool.counters().cancels, 1);
    drop(h1);
    let l = pool.lease_cluster(c).await.unwrap();
    assert_eq!(host_of(&l, &servers), 1);
    assert_eq!(servers[1].tracker.accepted(), 1);
    drop(l);
    assert_eq!(servers[0].wait_current(0).await, 0);
    assert!(eventually(|| pool.route_stats(&hosts[0]).is_none()).await);
    pool.check_invariants().unwrap();
}

#[tokio::test]
async fn an_unhealthy_host_is_skipped_while_a_healthy_one_exists() {
    let servers = servers(2, None).await;
    let hosts = routes(&servers);
    let pool = pool(8, 2);
    let c = pool
        .add_cluster("health", Balancer::RoundRobin, hosts.clone(), 0.0)
        .unwrap();
    pool.set_host_health(c, &hosts[0], false).unwrap();
    for n in 1..=4 {
        let mut l = pool.lease_cluster(c).await.unwrap();
        assert_eq!(host_of(&l, &servers), 1);
        assert_eq!(talk(&mut l).await, (0, n));
    }
    assert_eq!(accepted(&servers), [0, 1], "nothing sent to host 0");

    // With no healthy host left, every host is eligible again.
    pool.set_host_health(c, &hosts[1], false).unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut l = pool.lease_cluster(c).await.unwrap();
        seen.push(host_of(&l, &servers));
        talk(&mut l).await;
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 1]);

    // Host 0 healthy again, host 1 not: everything goes to host 0.
    pool.set_host_health(c, &hosts[0], true).unwrap();
    for _ in 0..3 {
        let l = pool.lease_cluster(c).await.unwrap();
        assert_eq!(host_of(&l, &servers), 0);
    }
    assert_eq!(accepted(&servers), [1, 1]);

    let stranger = (String::from("127.0.0.1"), 1);
    assert!(matches!(
        pool.set_host_health(c, &stranger, false),
        Err(Error::Cluster {
            error: ClusterError::UnknownHost,
            ..
        })
    ));
    pool.check_invariants().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_through_one_cluster_stay_within_the_limits() {
    const TASKS: usize = 48;
    const ROUNDS: usize = 15;
    const TOTAL: u32 = 5;
    const PER_HOST: u32 = 2;
    let global = Tracker::new();
    let servers = Arc::new(servers(3, Some(global.clone())).await);
    let pool = Pool::builder(TcpConnector::new())
        .max_total(TOTAL)
        .max_per_route(PER_HOST)
        .max_pending(TASKS as u32)
        .lease_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let c = pool
        .add_cluster("busy", Balancer::LeastActive, routes(&servers), 1.5)
        .unwrap();

    // A watcher checks the pool's own gauges while the tasks run.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (pool, stop, hosts) = (pool.clone(), stop.clone(), routes(&servers));
        tokio::spawn(async move {
            let mut checks = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let s = pool.stats();
                assert!(s.connections <= TOTAL, "{s:?}");
                for h in &hosts {
                    let n = pool.route_stats(h).map_or(0, |r| r.connections);
                    assert!(n <= PER_HOST, "{h:?}: {n}");
                }
                checks += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            checks
        })
    };

    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (pool, servers) = (pool.clone(), servers.clone());
        tasks.push(tokio::spawn(async move {
            let mut per_host = [0usize; 3];
            for _ in 0..ROUNDS {
                let mut l = pool.lease_cluster(c).await.unwrap();
                per_host[host_of(&l, &servers)] += 1;
                talk(&mut l).await;
                tokio::task::yield_now().await;
            }
            per_host
        }));
    }
    let mut per_host = [0usize; 3];
    for t in tasks {
        let p = t.await.unwrap();
        for i in 0..3 {
            per_host[i] += p[i];
        }
    }
    stop.store(true, Ordering::SeqCst);
    assert!(watcher.await.unwrap() > 0);

    assert_eq!(per_host.iter().sum::<usize>(), TASKS * ROUNDS);
    assert!(
        per_host.iter().all(|&n| n > 0),
        "every host served: {per_host:?}"
    );
    let k = pool.counters();
    for s in servers.iter() {
        assert!(s.tracker.max() <= PER_HOST as usize, "{}", s.tracker.max());
    }
    // Across servers, a connection the pool closed (to make room on another
    // host) counts until its server task sees the FIN: allow one per close.
    let closes: u64 = k.closes.iter().sum();
    eprintln!(
        "cluster load: per host {per_host:?}, {} connects ({} preconnects), {closes} closes, \
         {} queued, server max {}",
        k.connects,
        k.preconnects,
        k.queued,
        global.max()
    );
    assert!(
        global.max() as u64 <= TOTAL as u64 + closes,
        "{} connections at once, {closes} closes",
        global.max()
    );
    assert_eq!(k.grants, (TASKS * ROUNDS) as u64);
    assert_eq!(k.timeouts, 0);
    let s = pool.stats();
    assert_eq!((s.leased, s.pending), (0, 0));
    pool.check_invariants().unwrap();
    pool.close().await;
    assert!(eventually(|| global.current() == 0).await);
}

#[tokio::test]
async fn cluster_errors_name_the_cluster_and_host() {
    let servers = servers(2, None).await;
    let hosts = routes(&servers);
    let pool = pool(8, 2);

    // Refused settings add nothing.
    match pool.add_cluster(
        "dup",
        Balancer::RoundRobin,
        [hosts[0].clone(), hosts[0].clone()],
        0.0,
    ) {
        Err(e @ Error::Cluster { .. }) => {
            assert_eq!(e.cluster(), Some("dup"));
            assert_eq!(e.route(), Some(name(&hosts[0]).as_str()));
            assert!(matches!(
                e,
                Error::Cluster {
                    error: ClusterError::Duplicate,
                    ..
                }
            ));
        }
        other => panic!("{other:?}"),
    }
    match pool.add_cluster("ratio", Balancer::RoundRobin, hosts.clone(), 5.0) {
        Err(Error::Config(ConfigError::Cluster { cluster, .. })) => assert_eq!(cluster, "ratio"),
        other => panic!("{other:?}"),
    }
    let too_many = (0..=MAX_CLUSTER_HOSTS as u16).map(|p| (String::from("127.0.0.1"), p + 1));
    assert!(matches!(
        pool.add_cluster("big", Balancer::RoundRobin, too_many, 0.0),
        Err(Error::Cluster {
            error: ClusterError::Full,
            ..
        })
    ));

    // An empty cluster has nothing to lease from; hosts can be added later.
    let c: ClusterHandle = pool
        .add_cluster("later", Balancer::Random { seed: 7 }, [], 0.0)
        .unwrap();
    match pool.lease_cluster(c).await {
        Err(e @ Error::Cluster { .. }) => {
            assert_eq!(e.cluster(), Some("later"));
            assert!(e.to_string().contains("later"), "{e}");
            assert!(matches!(
                e,
                Error::Cluster {
                    host: None,
                    error: ClusterError::NoHosts,
                    ..
                }
            ));
        }
        other => panic!("{other:?}"),
    }
    pool.add_host(c, hosts[1].clone()).unwrap();
    assert!(matches!(
        pool.add_host(c, hosts[1].clone()),
        Err(Error::Cluster {
            error: ClusterError::Duplicate,
            ..
        })
    ));
    let l = pool.lease_cluster(c).await.unwrap();
    assert_eq!(host_of(&l, &servers), 1);
    drop(l);
    pool.set_cluster_predictive_ratio(c, 1.5).unwrap();
    assert!(matches!(
        pool.set_cluster_predictive_ratio(c, 0.5),
        Err(Error::Config(ConfigError::Cluster { .. }))
    ));

    // Removing the cluster drains its hosts; its handle is then stale, even
    // once the slot is reused.
    pool.remove_cluster(c).unwrap();
    assert_eq!(servers[1].wait_current(0).await, 0);
    assert!(eventually(|| pool.route_stats(&hosts[1]).is_none()).await);
    let other = pool
        .add_cluster("next", Balancer::RoundRobin, [hosts[0].clone()], 0.0)
        .unwrap();
    assert_ne!(other, c);
    assert!(matches!(
        pool.lease_cluster(c).await,
        Err(Error::UnknownCluster)
    ));
    assert!(matches!(pool.remove_cluster(c), Err(Error::UnknownCluster)));
    assert!(matches!(pool.cluster_hosts(c), Err(Error::UnknownCluster)));
    let l = pool.lease_cluster(other).await.unwrap();
    assert_eq!(host_of(&l, &servers), 0);

    // A lease refused at once names the host the balancer picked (host 0's
    // route is being deleted: its connection is still leased).
    pool.drain(Some(&hosts[0]), wharf_tokio::DrainMode::DrainAndDelete);
    let host0 = format!(":{}", hosts[0].1);
    match pool.lease_cluster(other).await {
        Err(Error::Draining { route }) => assert!(route.ends_with(&host0), "{route}"),
        other => panic!("{other:?}"),
    }
    drop(l);
    pool.check_invariants().unwrap();
}
