//! wharf-embassy against real embassy-net stacks: a client stack (the pool's)
//! and a server stack joined by an in-memory link, all inside one
//! current-thread tokio test (embassy-time `std` + `generic-queue`).

mod common;

use core::cell::RefCell;
use std::vec::Vec;

use common::{echo, eventually, server, Log, Mode, BLACKHOLE, SERVER};
use embassy_futures::join::{join, join4};
use embassy_futures::select::{select3, Either3};
use embassy_time::{Duration as EDuration, Instant as EInstant, Timer};
use embedded_io_async::Read;
use wharf_embassy::{
    CloseReason, Config, ConnectFailure, Duration, Error, LeaseOptions, Pool, Route, State, Tag,
};

/// Pool slots in these tests; the client stack gets exactly these plus DNS.
const SLOTS: usize = 4;
type TestState = State<SLOTS, 4, 4, 1024, 1024>;

fn config() -> Config {
    Config {
        max_total: 4,
        max_per_route: 4,
        connect_timeout: Some(Duration::from_millis(300)),
        validate_after_inactivity: None,
        ..Config::default()
    }
}

fn route(port: u16) -> Route {
    Route::ip(SERVER, port)
}

fn check(pool: &Pool<'_>) {
    pool.inspect(|p| p.check_invariants())
        .expect("core invariants");
}

/// Runs `$test` (an async block using `pool`, `log`) with a pool over the
/// client stack, its runner, and echo servers on ports 7000 and 7001 (and a
/// close-after-first server on 7002).
macro_rules! pool_test {
    ($cfg:expr, |$pool:ident, $log:ident| $test:expr) => {{
        two_stacks!(5, |client, server_stack| {
            let $log = Log::default();
            // A pool borrows its state for good (as firmware gives it a static).
            let state: &'static mut TestState = Box::leak(Box::new(TestState::new()));
            let (pool, mut runner) = wharf_embassy::new(client, state, $cfg).unwrap();
            let $pool = &pool;
            let servers = join(
                join(
                    server(server_stack, 7000, Mode::Echo, &$log),
                    server(server_stack, 7001, Mode::Echo, &$log),
                ),
                server(server_stack, 7002, Mode::CloseAfterFirst, &$log),
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
async fn a_kept_connection_is_reused() {
    pool_test!(config(), |pool, log| {
        let mut a = pool.lease(&route(7000)).await.unwrap();
        echo(&mut a, b"one").await;
        let first = a.id().conn();
        drop(a);
        let mut b = pool.lease(&route(7000)).await.unwrap();
        assert_eq!(
            b.id().conn(),
            first,
            "the idle connection is handed out again"
        );
        echo(&mut b, b"two").await;
        drop(b);
        assert_eq!(log.accepted(), 1, "one TCP connection for both leases");
        let c = pool.counters();
        assert_eq!((c.connects, c.reuses, c.grants), (1, 1, 2));
        assert_eq!(pool.stats().idle, 1);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn per_route_and_total_limits_hold() {
    let cfg = Config {
        max_total: 3,
        max_per_route: 2,
        ..config()
    };
    pool_test!(cfg, |pool, log| {
        let short = LeaseOptions {
            timeout: Some(Duration::from_millis(150)),
            ..Default::default()
        };
        let a1 = pool.lease(&route(7000)).await.unwrap();
        let a2 = pool.lease(&route(7000)).await.unwrap();
        // Route limit: a third lease on 7000 waits and times out.
        assert_eq!(
            pool.lease_with(&route(7000), short).await.err(),
            Some(Error::Timeout)
        );
        assert_eq!(pool.route_stats(&route(7000)).unwrap().connections, 2);
        // Another route still gets a connection (total 3)...
        let b1 = pool.lease(&route(7001)).await.unwrap();
        // ...but the total limit stops the next one.
        assert_eq!(
            pool.lease_with(&route(7001), short).await.err(),
            Some(Error::Timeout)
        );
        assert_eq!(pool.stats().connections, 3);
        assert!(
            eventually(500, || log.accepted() == 3).await,
            "{:?}",
            log.events()
        );
        // Releasing one on 7000 (kept idle) does not free room for 7001 unless
        // the waiter evicts it: a waiting lease on 7001 evicts the idle one.
        drop(a2);
        let b2 = pool.lease_with(&route(7001), short).await.unwrap();
        assert_eq!(pool.counters().closes_for(CloseReason::Evicted), 1);
        assert_eq!(pool.stats().connections, 3);
        drop((a1, b1, b2));
    })
}

#[tokio::test(flavor = "current_thread")]
async fn waiters_are_served_in_fifo_order() {
    let cfg = Config {
        max_per_route: 1,
        ..config()
    };
    pool_test!(cfg, |pool, log| {
        let holder = pool.lease(&route(7000)).await.unwrap();
        let order = RefCell::new(Vec::new());
        let waiter = |n: u32| {
            let order = &order;
            async move {
                let mut l = pool.lease(&route(7000)).await.unwrap();
                order.borrow_mut().push(n);
                echo(&mut l, b"x").await;
            }
        };
        let release = async {
            Timer::after_millis(50).await;
            assert_eq!(pool.stats().pending, 3, "all three queued");
            drop(holder);
        };
        join4(waiter(1), waiter(2), waiter(3), release).await;
        assert_eq!(*order.borrow(), [1, 2, 3]);
        assert_eq!(log.accepted(), 1, "all served by the one connection");
    })
}

#[tokio::test(flavor = "current_thread")]
async fn overflow_when_the_waiter_queue_is_full() {
    let cfg = Config {
        max_per_route: 1,
        max_pending: Some(2),
        ..config()
    };
    pool_test!(cfg, |pool, _log| {
        let holder = pool.lease(&route(7000)).await.unwrap();
        let w = || async { pool.lease(&route(7000)).await.map(|l| l.id().conn()) };
        let third = async {
            Timer::after_millis(20).await;
            assert_eq!(pool.stats().pending, 2);
            let r = pool.lease(&route(7000)).await.err();
            assert_eq!(pool.counters().overflows, 1);
            drop(holder);
            r
        };
        let (r1, r2, r3) = embassy_futures::join::join3(w(), w(), third).await;
        assert_eq!(r3, Some(Error::Overflow));
        assert!(
            r1.is_ok() && r2.is_ok(),
            "the queued ones are served: {r1:?} {r2:?}"
        );
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_the_peer_closed_while_idle_is_never_handed_out() {
    let cfg = Config {
        validate_after_inactivity: Some(Duration::ZERO),
        ..config()
    };
    pool_test!(cfg, |pool, log| {
        let mut a = pool.lease(&route(7002)).await.unwrap();
        echo(&mut a, b"only once").await;
        let first = a.id().conn();
        drop(a);
        // The server closes after its first echo: the idle watch sees its
        // FIN and closes the connection before any lease asks (so nothing
        // is left for the validation to find).
        Timer::after_millis(100).await;
        assert_eq!(pool.stats().idle, 0, "closed by the watch");
        let mut b = pool.lease(&route(7002)).await.unwrap();
        assert_ne!(b.id().conn(), first, "a new connection");
        echo(&mut b, b"fresh").await;
        let c = pool.counters();
        assert_eq!((c.validations, c.stale), (0, 0));
        assert_eq!(c.closes_for(CloseReason::PeerClosed), 1);
        assert_eq!(log.accepted(), 2);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn connect_timeout_against_a_host_that_does_not_answer() {
    pool_test!(config(), |pool, _log| {
        let start = EInstant::now();
        let r = pool.lease(&Route::ip(BLACKHOLE, 7000)).await.err();
        let took = start.elapsed();
        assert_eq!(r, Some(Error::ConnectFailed(ConnectFailure::Timeout)));
        assert!(
            took >= EDuration::from_millis(290),
            "bounded by the pool's connect timeout: {took:?}"
        );
        assert!(took < EDuration::from_millis(1500), "{took:?}");
        assert_eq!(
            pool.counters()
                .connect_failures_for(ConnectFailure::Timeout),
            1
        );
        assert_eq!(pool.counters().closes_for(CloseReason::ConnectTimeout), 1);
        assert_eq!(pool.stats().connections, 0);
        // The aborted attempt's socket is given back: all slots work.
        let mut leases = Vec::new();
        for _ in 0..SLOTS {
            leases.push(pool.lease(&route(7000)).await.unwrap());
        }
        assert_eq!(leases.len(), SLOTS);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_connect_fails_the_waiters() {
    pool_test!(config(), |pool, _log| {
        let r = pool.lease(&route(7999)).await.err();
        assert_eq!(r, Some(Error::ConnectFailed(ConnectFailure::Remote)));
        assert_eq!(pool.stats().connections, 0);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn connects_for_different_slots_proceed_concurrently() {
    let cfg = Config {
        connect_timeout: Some(Duration::from_secs(2)),
        ..config()
    };
    pool_test!(cfg, |pool, _log| {
        // One slot hangs on a host that never answers...
        let nowhere = Route::ip(BLACKHOLE, 7000);
        let stuck = pool.lease(&nowhere);
        // ...while another connects and serves at once.
        let other = async {
            let start = EInstant::now();
            let mut l = pool.lease(&route(7000)).await.unwrap();
            echo(&mut l, b"meanwhile").await;
            assert!(
                start.elapsed() < EDuration::from_millis(1500),
                "not behind the stuck connect"
            );
            assert_eq!(
                pool.stats().connecting,
                1,
                "the stuck connect is still running"
            );
        };
        match embassy_futures::select::select(stuck, other).await {
            embassy_futures::select::Either::Second(()) => {}
            embassy_futures::select::Either::First(r) => {
                panic!("stuck lease finished first: {r:?}")
            }
        }
    })
}

#[tokio::test(flavor = "current_thread")]
async fn the_peer_sees_a_fin_when_the_pool_closes_a_connection() {
    let cfg = Config {
        idle_timeout: Some(Duration::from_millis(100)),
        ..config()
    };
    pool_test!(cfg, |pool, log| {
        let mut a = pool.lease(&route(7000)).await.unwrap();
        echo(&mut a, b"bye").await;
        drop(a);
        assert!(
            eventually(1000, || log.fins() == 1).await,
            "FIN: {:?}",
            log.events()
        );
        assert_eq!(log.rsts(), 0, "{:?}", log.events());
        assert_eq!(pool.counters().closes_for(CloseReason::IdleTimeout), 1);
        assert_eq!(pool.stats().connections, 0);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn discard_sends_a_rst() {
    pool_test!(config(), |pool, log| {
        let mut a = pool.lease(&route(7000)).await.unwrap();
        echo(&mut a, b"broken").await;
        a.discard();
        assert!(
            eventually(1000, || log.rsts() == 1).await,
            "RST: {:?}",
            log.events()
        );
        assert_eq!(log.fins(), 0, "{:?}", log.events());
        assert_eq!(pool.counters().closes_for(CloseReason::Discarded), 1);
        // The next lease opens a new connection.
        let mut b = pool.lease(&route(7000)).await.unwrap();
        echo(&mut b, b"new").await;
        assert_eq!(log.accepted(), 2);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn drain_closes_idle_connections_with_a_fin() {
    pool_test!(config(), |pool, log| {
        let mut a = pool.lease(&route(7000)).await.unwrap();
        let mut b = pool.lease(&route(7001)).await.unwrap();
        echo(&mut a, b"a").await;
        echo(&mut b, b"b").await;
        drop((a, b));
        pool.drain(None, wharf_embassy::DrainMode::DrainExisting);
        assert!(
            eventually(1000, || log.fins() == 2).await,
            "{:?}",
            log.events()
        );
        assert_eq!(pool.counters().closes_for(CloseReason::Drained), 2);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn host_routes_with_an_ip_literal_need_no_dns_server() {
    pool_test!(config(), |pool, log| {
        // The client stack has no DNS server: a literal is parsed, not queried.
        let mut a = pool.lease(&Route::host("10.0.0.2", 7000)).await.unwrap();
        echo(&mut a, b"literal").await;
        drop(a);
        assert_eq!(log.accepted(), 1);
        // A real name cannot be resolved here: a local connect failure.
        let r = pool.lease(&Route::host("db.invalid", 7000)).await.err();
        assert_eq!(r, Some(Error::ConnectFailed(ConnectFailure::Local)));
    })
}

#[tokio::test(flavor = "current_thread")]
async fn tags_and_keep_alive_follow_the_core() {
    pool_test!(config(), |pool, log| {
        let tagged = LeaseOptions {
            tag: Some(Tag(7)),
            ..Default::default()
        };
        let mut a = pool.lease(&route(7000)).await.unwrap();
        echo(&mut a, b"t").await;
        a.set_tag(Some(Tag(7)));
        let conn = a.id().conn();
        drop(a);
        // An untagged lease does not take the tagged connection.
        let b = pool.lease(&route(7000)).await.unwrap();
        assert_ne!(b.id().conn(), conn);
        drop(b);
        // A lease with the tag does.
        let mut c = pool.lease_with(&route(7000), tagged).await.unwrap();
        assert_eq!(c.id().conn(), conn);
        // Keep-alive: kept at most 50 ms after release, then closed (FIN).
        c.set_keep_alive(Some(Duration::from_millis(50)));
        drop(c);
        assert!(
            eventually(1000, || log.fins() == 1).await,
            "{:?}",
            log.events()
        );
        assert_eq!(pool.counters().closes_for(CloseReason::Expired), 1);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_lease_future_withdraws_its_request() {
    let cfg = Config {
        max_per_route: 1,
        ..config()
    };
    pool_test!(cfg, |pool, _log| {
        let holder = pool.lease(&route(7000)).await.unwrap();
        let gave_up =
            embassy_time::with_timeout(EDuration::from_millis(50), pool.lease(&route(7000))).await;
        assert!(gave_up.is_err());
        assert_eq!(pool.stats().pending, 0);
        assert_eq!(pool.counters().cancels, 1);
        drop(holder);
        assert_eq!(pool.stats().idle, 1);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn churn_never_overruns_the_reserved_sockets() {
    // The client stack has room for exactly SLOTS sockets plus DNS; closing
    // sockets still hold their slot until their RST is out, so new connects
    // wait for them instead of adding sockets (a full set would panic).
    pool_test!(config(), |pool, log| {
        for round in 0..6 {
            let mut held = Vec::new();
            for _ in 0..SLOTS {
                held.push(pool.lease(&route(7000)).await.unwrap());
            }
            for l in held {
                l.discard();
            }
            assert_eq!(pool.stats().connections, 0, "round {round}");
        }
        let all = 6 * SLOTS;
        let seen = eventually(1000, || log.accepted() == all && log.rsts() == all).await;
        assert!(seen, "{} accepted, {:?}", log.accepted(), log.events());
    })
}

#[tokio::test(flavor = "current_thread")]
async fn the_runner_warms_up_idle_connections() {
    pool_test!(config(), |pool, log| {
        let warm = wharf_embassy::RouteConfig {
            min_idle: Some(2),
            ..Default::default()
        };
        pool.set_route_config(&route(7001), warm).unwrap();
        // No lease at all: the runner opens two connections on its own.
        assert!(
            eventually(1000, || pool.stats().idle == 2).await,
            "{:?}",
            pool.stats()
        );
        assert!(
            eventually(500, || log.accepted() == 2).await,
            "{:?}",
            log.events()
        );
        assert_eq!(pool.counters().warmups, 2);
        // A lease takes a warm one at once (no connect), and warm-up refills.
        let mut a = pool.lease(&route(7001)).await.unwrap();
        echo(&mut a, b"warm").await;
        assert_eq!(pool.counters().reuses, 0);
        assert!(
            eventually(1000, || pool.stats().idle == 2).await,
            "{:?}",
            pool.stats()
        );
        assert_eq!(pool.counters().warmups, 3);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_grant_nobody_picked_up_goes_back_to_the_pool() {
    let cfg = Config {
        max_per_route: 1,
        ..config()
    };
    pool_test!(cfg, |pool, log| {
        let holder = pool.lease(&route(7000)).await.unwrap();
        let conn = holder.id().conn();
        let r = route(7000);
        let mut waiting = Box::pin(pool.lease(&r));
        assert!(embassy_futures::poll_once(waiting.as_mut()).is_pending());
        assert_eq!(pool.stats().pending, 1);
        // The release grants the connection to the waiting request...
        drop(holder);
        assert_eq!(pool.stats().leased, 1);
        // ...whose future is dropped before it ever sees the answer.
        drop(waiting);
        assert_eq!(pool.stats().leased, 0);
        assert_eq!(pool.stats().idle, 1);
        let mut again = pool.lease(&route(7000)).await.unwrap();
        assert_eq!(again.id().conn(), conn);
        echo(&mut again, b"still fine").await;
        assert_eq!(log.accepted(), 1);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn without_validation_a_dead_idle_connection_is_still_never_handed_out() {
    // validate_after_inactivity: None (the test config): the backend checks the
    // socket when the core hands the connection out.
    pool_test!(config(), |pool, log| {
        let mut a = pool.lease(&route(7002)).await.unwrap();
        echo(&mut a, b"only once").await;
        let first = a.id().conn();
        drop(a);
        Timer::after_millis(100).await;
        let mut b = pool.lease(&route(7002)).await.unwrap();
        assert_ne!(b.id().conn(), first);
        echo(&mut b, b"fresh").await;
        assert_eq!(pool.counters().closes_for(CloseReason::PeerClosed), 1);
        assert_eq!(pool.counters().validations, 0);
        assert_eq!(log.accepted(), 2);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_lease_whose_peer_closed_is_closed_when_dropped() {
    pool_test!(config(), |pool, log| {
        let mut a = pool.lease(&route(7002)).await.unwrap();
        echo(&mut a, b"last").await;
        // The server closes after its echo: the lease reads the end of stream.
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).await, Ok(0));
        drop(a);
        assert_eq!(pool.counters().closes_for(CloseReason::PeerClosed), 1);
        assert_eq!(pool.counters().closes_for(CloseReason::Discarded), 0);
        assert_eq!(pool.stats().connections, 0);
        // The next lease gets a new connection.
        let mut b = pool.lease(&route(7002)).await.unwrap();
        echo(&mut b, b"next").await;
        assert_eq!(log.accepted(), 2);
    })
}
