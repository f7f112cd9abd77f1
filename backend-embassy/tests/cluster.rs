//! Lease by cluster against real embassy-net stacks: each host of the cluster
//! is an echo server on its own port of the server stack, with its own event
//! log, so the tests count what each host's peer saw.

mod common;

use common::{echo, eventually, polled_every, server, Log, Mode, SERVER};
use embassy_futures::join::join4;
use embassy_futures::select::{select3, Either3};
use embassy_time::Timer;
use wharf_embassy::{
    Balancer, CloseReason, ClusterError, ClusterHandle, ClusterSlot, Config, Duration, Error,
    Lease, LeaseOptions, Pool, Route, State,
};

/// Pool slots in these tests; the client stack gets exactly these plus DNS.
const SLOTS: usize = 4;
type TestState = State<SLOTS, 4, 4, 1024, 1024>;

/// The hosts: one echo server per port; the last one closes each connection
/// after its first echo.
const PORTS: [u16; 4] = [7100, 7101, 7102, 7103];
/// The host whose server closes after the first echo.
const CLOSER: usize = 3;

fn config() -> Config {
    Config {
        max_total: 4,
        max_per_route: 4,
        connect_timeout: Some(Duration::from_millis(300)),
        validate_after_inactivity: None,
        ..Config::default()
    }
}

fn host(i: usize) -> Route {
    Route::ip(SERVER, PORTS[i])
}

/// A cluster of hosts `0..hosts` in `slot`.
fn cluster<'c>(
    pool: &Pool<'_>,
    slot: &'c ClusterSlot<4>,
    hosts: usize,
    balancer: Balancer,
) -> ClusterHandle<'c, 4> {
    pool.add_cluster(slot, balancer, (0..hosts).map(host), 0.0)
        .unwrap()
}

/// The server port the lease's socket is connected to.
fn port(lease: &mut Lease<'_>) -> u16 {
    lease.socket().remote_endpoint().expect("connected").port
}

/// Checks that `lease` is on host `i`, both by its route and by its socket.
fn assert_on(lease: &mut Lease<'_>, i: usize) {
    assert_eq!(lease.route(), host(i));
    assert_eq!(port(lease), PORTS[i]);
}

fn check(pool: &Pool<'_>) {
    pool.inspect(|p| p.check_invariants())
        .expect("core invariants");
}

fn accepted(logs: &[Log; 4]) -> [usize; 4] {
    [0, 1, 2, 3].map(|i| logs[i].accepted())
}

/// Runs `$test` (an async block using `pool` and `logs`, the three hosts'
/// event logs) with a pool over the client stack, its runner, and a server
/// per port of `PORTS`.
macro_rules! cluster_test {
    ($cfg:expr, |$pool:ident, $logs:ident| $test:expr) => {{
        cluster_test!($cfg, |$pool, $logs, server_stack| $test)
    }};
    ($cfg:expr, |$pool:ident, $logs:ident, $server_stack:ident| $test:expr) => {{
        two_stacks!(5, |client, $server_stack| {
            let logs: [Log; 4] = Default::default();
            let $logs = &logs;
            // A pool borrows its state for good (as firmware gives it a static).
            let state: &'static mut TestState = Box::leak(Box::new(TestState::new()));
            let (pool, mut runner) = wharf_embassy::new(client, state, $cfg).unwrap();
            let $pool = &pool;
            let servers = join4(
                server($server_stack, PORTS[0], Mode::Echo, &logs[0]),
                server($server_stack, PORTS[1], Mode::Echo, &logs[1]),
                server($server_stack, PORTS[2], Mode::Echo, &logs[2]),
                server(
                    $server_stack,
                    PORTS[CLOSER],
                    Mode::CloseAfterFirst,
                    &logs[CLOSER],
                ),
            );
            match select3(runner.run(), servers, async { $test }).await {
                Either3::Third(r) => {
                    check(&pool);
                    r
                }
                _ => unreachable!(),
            }
        })
    }};
}

#[tokio::test(flavor = "current_thread")]
async fn round_robin_lands_on_each_host_in_turn_and_reuses() {
    cluster_test!(config(), |pool, logs| {
        let slot = ClusterSlot::new();
        let c = cluster(pool, &slot, 3, Balancer::RoundRobin);
        // Three leases held at once: one connection per host, in order.
        let mut held = Vec::new();
        for i in 0..3 {
            let mut l = pool.lease_cluster(c).await.unwrap();
            assert_on(&mut l, i);
            echo(&mut l, b"first").await;
            held.push(l);
        }
        let conns: Vec<_> = held.iter().map(|l| l.id().conn()).collect();
        drop(held);
        assert_eq!(pool.stats().idle, 3);
        // Two more rounds, one lease at a time: still in turn, and each host's
        // idle connection is the one handed out again.
        for _ in 0..2 {
            for (i, conn) in conns.iter().enumerate() {
                let mut l = pool.lease_cluster(c).await.unwrap();
                assert_on(&mut l, i);
                assert_eq!(l.id().conn(), *conn, "host {i}'s connection reused");
                echo(&mut l, b"again").await;
            }
        }
        assert_eq!(accepted(logs), [1, 1, 1, 0], "one TCP connection per host");
        let k = pool.counters();
        assert_eq!((k.connects, k.reuses, k.grants), (3, 6, 9));
        assert_eq!(
            pool.cluster_preconnects(c).unwrap(),
            0,
            "predictive preconnect is off"
        );
    })
}

#[tokio::test(flavor = "current_thread")]
async fn predictive_preconnect_opens_ahead_within_the_limits() {
    let cfg = Config {
        max_total: 4,
        max_per_route: 2,
        ..config()
    };
    cluster_test!(cfg, |pool, logs| {
        let slot = ClusterSlot::new();
        let c = cluster(pool, &slot, 2, Balancer::RoundRobin);
        pool.set_cluster_predictive_ratio(c, 2.0).unwrap();
        let within_limits = || {
            let s = pool.stats();
            let per_route = [0, 1].map(|i| pool.route_stats(&host(i)).map_or(0, |r| r.connections));
            let seen = accepted(logs);
            assert!(s.connections <= 4, "{s:?}");
            assert!(per_route.iter().all(|&n| n <= 2), "{per_route:?}");
            assert!(seen.iter().sum::<usize>() <= 4, "{seen:?}");
            assert!(seen.iter().all(|&n| n <= 2), "{seen:?}");
        };
        // The first lease goes to host 0; preconnect also opened host 1,
        // which no lease has asked for yet.
        let mut l0 = pool.lease_cluster(c).await.unwrap();
        assert_on(&mut l0, 0);
        assert!(
            eventually(500, || logs[1].accepted() == 1).await,
            "host 1 connected ahead: {:?}",
            accepted(logs)
        );
        assert!(pool.cluster_preconnects(c).unwrap() >= 1);
        assert!(pool.counters().preconnects >= 1);
        within_limits();
        // The next lease goes to host 1 and gets the connection opened ahead.
        let mut l1 = pool.lease_cluster(c).await.unwrap();
        assert_on(&mut l1, 1);
        assert_eq!(logs[1].accepted(), 1, "served by the preconnected one");
        within_limits();
        // Two more: each finds a connection; the pool is then full.
        let mut l2 = pool.lease_cluster(c).await.unwrap();
        let mut l3 = pool.lease_cluster(c).await.unwrap();
        assert_on(&mut l2, 0);
        assert_on(&mut l3, 1);
        for l in [&mut l0, &mut l1, &mut l2, &mut l3] {
            echo(l, b"x").await;
        }
        within_limits();
        assert_eq!(accepted(logs), [2, 2, 0, 0]);
        // Nothing more can be opened: a fifth lease waits and times out,
        // and preconnect does not go over the limits either.
        let short = LeaseOptions {
            timeout: Some(Duration::from_millis(150)),
            ..Default::default()
        };
        assert_eq!(
            pool.lease_cluster_with(c, short).await.err(),
            Some(Error::Timeout)
        );
        Timer::after_millis(50).await;
        within_limits();
        assert_eq!(pool.stats().connections, 4);
        assert_eq!(pool.counters().connects, 4);
        drop((l0, l1, l2, l3));
    })
}

#[tokio::test(flavor = "current_thread")]
async fn removing_a_host_drains_it() {
    cluster_test!(config(), |pool, logs| {
        let slot = ClusterSlot::new();
        let c = cluster(pool, &slot, 2, Balancer::RoundRobin);
        let mut l0 = pool.lease_cluster(c).await.unwrap();
        let mut l1 = pool.lease_cluster(c).await.unwrap();
        let mut busy = pool.lease_cluster(c).await.unwrap();
        assert_on(&mut l0, 0);
        assert_on(&mut l1, 1);
        assert_on(&mut busy, 0);
        echo(&mut l0, b"x").await;
        echo(&mut l1, b"x").await;
        echo(&mut busy, b"x").await;
        drop((l0, l1));
        assert_eq!(accepted(logs), [2, 1, 0, 0]);

        pool.remove_host(c, &host(0)).unwrap();
        assert_eq!(pool.cluster_len(c).unwrap(), 1);
        // The idle connection to host 0 is closed with a FIN...
        assert!(
            eventually(1000, || logs[0].fins() == 1).await,
            "{:?}",
            logs[0].events()
        );
        // ...the leased one keeps working...
        echo(&mut busy, b"still here").await;
        // ...and every new lease goes to host 1, on its one connection.
        for _ in 0..3 {
            let mut l = pool.lease_cluster(c).await.unwrap();
            assert_on(&mut l, 1);
            echo(&mut l, b"y").await;
        }
        // Given back, the busy one is closed too (FIN), not kept.
        drop(busy);
        assert!(
            eventually(1000, || logs[0].fins() == 2).await,
            "{:?}",
            logs[0].events()
        );
        assert!(
            eventually(1000, || pool.route_stats(&host(0)).is_none()).await,
            "the drained route is freed"
        );
        assert_eq!(accepted(logs), [2, 1, 0, 0], "no new connection to host 0");
        assert_eq!(pool.counters().closes_for(CloseReason::Drained), 2);
        assert_eq!(
            pool.remove_host(c, &host(0)),
            Err(Error::Cluster(ClusterError::UnknownHost))
        );
    })
}

#[tokio::test(flavor = "current_thread")]
async fn an_unhealthy_host_is_skipped_while_a_healthy_one_exists() {
    cluster_test!(config(), |pool, logs| {
        let slot = ClusterSlot::new();
        let c = cluster(pool, &slot, 2, Balancer::RoundRobin);
        pool.set_host_health(c, &host(0), false).unwrap();
        for _ in 0..4 {
            let mut l = pool.lease_cluster(c).await.unwrap();
            assert_on(&mut l, 1);
            echo(&mut l, b"x").await;
        }
        assert_eq!(accepted(logs), [0, 1, 0, 0], "nothing sent to host 0");
        // With no healthy host left, every host is eligible again.
        pool.set_host_health(c, &host(1), false).unwrap();
        let mut ports = Vec::new();
        for _ in 0..2 {
            let mut l = pool.lease_cluster(c).await.unwrap();
            ports.push(port(&mut l));
            echo(&mut l, b"x").await;
        }
        ports.sort_unstable();
        assert_eq!(ports, [PORTS[0], PORTS[1]]);
        // Host 0 healthy again, host 1 not: everything goes to host 0.
        pool.set_host_health(c, &host(0), true).unwrap();
        for _ in 0..3 {
            let mut l = pool.lease_cluster(c).await.unwrap();
            assert_on(&mut l, 0);
        }
        assert_eq!(accepted(logs), [1, 1, 0, 0]);
        assert_eq!(
            pool.set_host_health(c, &host(2), false),
            Err(Error::Cluster(ClusterError::UnknownHost))
        );
    })
}

#[tokio::test(flavor = "current_thread")]
async fn cluster_leases_are_cancel_safe_and_borrow_the_cluster_only_at_call_time() {
    let cfg = Config {
        max_per_route: 1,
        ..config()
    };
    cluster_test!(cfg, |pool, logs| {
        let empty_slot = ClusterSlot::<2>::new();
        let empty = pool
            .add_cluster(&empty_slot, Balancer::RoundRobin, [], 0.0)
            .unwrap();
        assert_eq!(
            pool.lease_cluster(empty).await.err(),
            Some(Error::Cluster(ClusterError::NoHosts))
        );

        let slot = ClusterSlot::new();
        let c = cluster(pool, &slot, 1, Balancer::RoundRobin);
        let holder = pool.lease_cluster(c).await.unwrap();
        // Queued at call time, before any poll; the cluster is free again.
        let queued = pool.lease_cluster(c);
        assert_eq!(pool.stats().pending, 1);
        assert_eq!(pool.cluster_len(c).unwrap(), 1);
        // A second request on the same cluster while the first one waits.
        let short = LeaseOptions {
            timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        assert_eq!(
            pool.lease_cluster_with(c, short).await.err(),
            Some(Error::Timeout)
        );
        // Dropped without a poll: the request is withdrawn.
        drop(queued);
        assert_eq!(pool.stats().pending, 0);
        check(pool);
        drop(holder);
        assert_eq!(pool.stats().idle, 1);
        // Granted at call time, dropped without a poll: the connection goes back.
        let granted = pool.lease_cluster(c);
        assert_eq!(pool.stats().leased, 1);
        drop(granted);
        assert_eq!((pool.stats().leased, pool.stats().idle), (0, 1));
        // A queued request that is polled gets the connection when it is
        // given back.
        let holder = pool.lease_cluster(c).await.unwrap();
        let conn = holder.id().conn();
        let waiting = pool.lease_cluster(c);
        let release = async {
            Timer::after_millis(30).await;
            drop(holder);
        };
        let (got, ()) = embassy_futures::join::join(waiting, release).await;
        let mut got = got.unwrap();
        assert_eq!(got.id().conn(), conn);
        echo(&mut got, b"x").await;
        assert_eq!(accepted(logs), [1, 0, 0, 0], "one connection all along");
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_dead_connection_is_replaced_on_the_same_host() {
    // validate_after_inactivity: None: the backend finds the dead connection
    // when the core grants it, closes it and asks the picked host again.
    cluster_test!(config(), |pool, logs| {
        let slot = ClusterSlot::<4>::new();
        let c = pool
            .add_cluster(&slot, Balancer::RoundRobin, [host(CLOSER), host(1)], 0.0)
            .unwrap();
        let mut a = pool.lease_cluster(c).await.unwrap();
        assert_on(&mut a, CLOSER);
        echo(&mut a, b"only once").await;
        let dead = a.id().conn();
        drop(a);
        // The server's FIN arrives while the connection is idle.
        Timer::after_millis(100).await;
        let mut b = pool.lease_cluster(c).await.unwrap();
        assert_on(&mut b, 1);
        drop(b);
        // The pick is the closer host again: its idle connection is dead, so
        // the lease gets a new connection there, not a turn of the balancer.
        let mut a2 = pool.lease_cluster(c).await.unwrap();
        assert_on(&mut a2, CLOSER);
        assert_ne!(a2.id().conn(), dead);
        echo(&mut a2, b"fresh").await;
        drop(a2);
        assert_eq!(pool.counters().closes_for(CloseReason::PeerClosed), 1);
        assert_eq!(accepted(logs), [0, 1, 0, 2]);
        // The balancer's turn is unchanged: host 1 is next.
        let mut b2 = pool.lease_cluster(c).await.unwrap();
        assert_on(&mut b2, 1);
    })
}

/// The dead-at-hand-out retry of a cluster lease gives up as a route lease
/// does: on a host whose server sends bytes nobody asked for as soon as it
/// accepts, every connection is unusable by the time it is handed out (the
/// lease is polled only every 50 ms). The cluster's request is the first
/// try, the retries go to the same host, and after the driver's
/// `handout_tries` tries (4 connection slots + 2) the lease fails with
/// `Error::PeerClosed`.
#[tokio::test(flavor = "current_thread")]
async fn a_cluster_lease_whose_every_hand_out_is_dead_fails_peer_closed() {
    const TRIES: usize = SLOTS + 2;
    const PUSH_PORT: u16 = 7104;
    cluster_test!(config(), |pool, logs, server_stack| {
        let log = Log::default();
        let pusher = server(server_stack, PUSH_PORT, Mode::PushAfter(0), &log);
        let test = async {
            let slot = ClusterSlot::<4>::new();
            let c = pool
                .add_cluster(
                    &slot,
                    Balancer::RoundRobin,
                    [Route::ip(SERVER, PUSH_PORT)],
                    0.0,
                )
                .unwrap();
            let got = polled_every(50, pool.lease_cluster(c)).await;
            assert_eq!(got.err(), Some(Error::PeerClosed));
            assert_eq!(
                log.accepted(),
                TRIES,
                "one connection per try, all on the host"
            );
            let counters = pool.counters();
            assert_eq!(counters.connects, TRIES as u64, "{counters:?}");
            assert!(
                eventually(2000, || pool.stats().connections == 0).await,
                "every connection closed: {:?}",
                pool.stats()
            );
            assert_eq!(
                pool.counters().closes_for(CloseReason::PeerClosed),
                TRIES as u64
            );
            assert_eq!(accepted(logs), [0; 4], "no other host tried");
        };
        match embassy_futures::select::select(pusher, test).await {
            embassy_futures::select::Either::Second(()) => {}
            embassy_futures::select::Either::First(never) => never,
        }
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_handle_is_checked_against_its_pool() {
    cluster_test!(config(), |pool, logs, server_stack| {
        // A second pool (over the server's stack, which has socket slots to
        // spare; its runner is not needed: every call below is refused
        // before it would connect).
        let other_state: &'static mut TestState = Box::leak(Box::new(TestState::new()));
        let (other, _runner) = wharf_embassy::new(server_stack, other_state, config()).unwrap();
        let slot = ClusterSlot::new();
        let c = cluster(pool, &slot, 2, Balancer::RoundRobin);
        // In use: the slot holds a cluster.
        assert_eq!(
            pool.add_cluster(&slot, Balancer::RoundRobin, [host(2)], 0.0),
            Err(Error::ClusterSlotInUse)
        );
        // Another pool's handle: typed, nothing changes on either pool.
        assert_eq!(
            other.lease_cluster(c).await.err(),
            Some(Error::ForeignCluster)
        );
        assert_eq!(other.add_host(c, host(2)), Err(Error::ForeignCluster));
        assert_eq!(other.remove_host(c, &host(0)), Err(Error::ForeignCluster));
        assert_eq!(
            other.set_host_health(c, &host(0), false),
            Err(Error::ForeignCluster)
        );
        assert_eq!(
            other.set_cluster_predictive_ratio(c, 2.0),
            Err(Error::ForeignCluster)
        );
        assert_eq!(other.remove_cluster(c), Err(Error::ForeignCluster));
        assert_eq!(other.stats().pending + other.stats().connections, 0);
        let mut l = pool.lease_cluster(c).await.unwrap();
        assert_on(&mut l, 0);
        echo(&mut l, b"x").await;
        drop(l);
        assert_eq!(pool.cluster_len(c), Ok(2));
        assert_eq!(pool.cluster_host(c, 1), Ok(Some(host(1))));
        assert_eq!(pool.cluster_host(c, 2), Ok(None));
        // Removed: every call with the handle is `UnknownCluster`, even once
        // the slot holds a new cluster; its hosts are drained.
        pool.remove_cluster(c).unwrap();
        assert_eq!(
            pool.lease_cluster(c).await.err(),
            Some(Error::UnknownCluster)
        );
        assert_eq!(pool.add_host(c, host(2)), Err(Error::UnknownCluster));
        assert_eq!(pool.remove_cluster(c), Err(Error::UnknownCluster));
        let again = cluster(pool, &slot, 1, Balancer::RoundRobin);
        assert_ne!(again, c);
        assert_eq!(pool.cluster_len(c), Err(Error::UnknownCluster));
        assert_eq!(pool.cluster_len(again), Ok(1));
        assert!(
            eventually(1000, || pool.route_stats(&host(1)).is_none()).await,
            "the removed cluster's hosts were drained"
        );
        assert_eq!(accepted(logs)[0], 1);
    })
}
