//! A server that misbehaves while connections are pooled: the pool recovers,
//! and nothing leaks (pool gauges back to the expected counts, the server
//! sees no stray connection).

mod common;

use std::time::Duration;

use common::{eventually, request, Opts, Server};
use tokio::io::AsyncWriteExt;
use wharf_tokio::Lease;
use wharf_tokio::{CloseReason, Pool, TcpConnector};

type TcpPool = Pool<(String, u16), TcpConnector>;

async fn close_and_check<C: wharf_tokio::Connector<(String, u16)>>(
    pool: Pool<(String, u16), C>,
    server: &Server,
) {
    pool.close().await;
    let s = pool.stats();
    assert_eq!(
        (s.connections, s.leased, s.pending, s.closing),
        (0, 0, 0, 0),
        "{s:?}"
    );
    pool.check_invariants().unwrap();
    assert_eq!(
        server.wait_current(0).await,
        0,
        "the server still sees connections"
    );
}

#[tokio::test]
async fn server_closes_idle_connections_the_watch_sees_it() {
    let server = Server::start(Opts {
        idle_close: Some(Duration::from_millis(100)),
        ..Opts::default()
    })
    .await;
    let pool: TcpPool = Pool::builder(TcpConnector::new())
        .max_per_route(2)
        .validate_after_inactivity(Duration::from_millis(20))
        .build()
        .unwrap();
    let route = server.route();
    {
        let mut l = pool.lease(&route).await.unwrap();
        assert!(request(&mut l).await.unwrap().starts_with("OK 0 1"));
    }
    // The server closes the idle connection; the pool's watch sees the FIN
    // and closes it without a lease asking.
    assert_eq!(server.wait_current(0).await, 0);
    assert!(eventually(|| pool.stats().idle == 0).await);
    let c = pool.counters();
    assert_eq!(c.closes_for(CloseReason::PeerClosed), 1);
    {
        let mut l = pool.lease(&route).await.unwrap();
        let reply = request(&mut l).await.unwrap();
        assert!(
            reply.starts_with("OK 1 1"),
            "served by a new connection: {reply}"
        );
    }
    let c = pool.counters();
    assert_eq!((c.connects, c.validations, c.stale), (2, 0, 0));
    close_and_check(pool, &server).await;
}

#[tokio::test]
async fn server_closes_idle_connections_unwatched_the_stale_check_sees_it() {
    let server = Server::start(Opts {
        idle_close: Some(Duration::from_millis(100)),
        ..Opts::default()
    })
    .await;
    // A connector that does not watch idle connections nor check them at
    // hand-out: the stale check after inactivity is what finds the FIN.
    let (probe, _) = common::Probe::new(false, false);
    let pool = Pool::builder(probe)
        .max_per_route(2)
        .validate_after_inactivity(Duration::from_millis(20))
        .build()
        .unwrap();
    let route = server.route();
    {
        let mut l = pool.lease(&route).await.unwrap();
        assert!(request(&mut l).await.unwrap().starts_with("OK 0 1"));
    }
    // The server closes the idle connection; the stale check finds the FIN.
    assert_eq!(server.wait_current(0).await, 0);
    // Past `validate_after_inactivity`, and time for the FIN to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        let mut l = pool.lease(&route).await.unwrap();
        let reply = request(&mut l).await.unwrap();
        assert!(
            reply.starts_with("OK 1 1"),
            "served by a new connection: {reply}"
        );
    }
    let c = pool.counters();
    assert_eq!(c.connects, 2);
    assert_eq!(c.stale, 1);
    assert_eq!(c.closes_for(CloseReason::Stale), 1);
    assert_eq!(server.tracker.accepted(), 2);
    assert_eq!(pool.stats().idle, 1);
    close_and_check(pool, &server).await;
}

#[tokio::test]
async fn server_closes_after_n_requests() {
    let server = Server::start(Opts {
        max_requests: Some(3),
        ..Opts::default()
    })
    .await;
    let pool: TcpPool = Pool::builder(TcpConnector::new())
        .max_per_route(1)
        .build()
        .unwrap();
    let route = server.route();
    for i in 0..10 {
        let mut l = pool.lease(&route).await.unwrap();
        let reply = request(&mut l).await.unwrap();
        assert!(
            reply.starts_with(&format!("OK {} ", i / 3)),
            "request {i}: {reply}"
        );
        if reply.ends_with("close") {
            // `Connection: close`: do not reuse it.
            Lease::discard(&mut l);
        }
    }
    let c = pool.counters();
    assert_eq!(c.connects, 4);
    assert_eq!(c.closes_for(CloseReason::Discarded), 3);
    assert_eq!(c.reuses, 6);
    assert_eq!(server.tracker.max(), 1);
    assert_eq!(server.wait_current(1).await, 1);
    close_and_check(pool, &server).await;
}

#[tokio::test]
async fn server_close_noticed_on_release_without_discard() {
    // The client forgets to look at `close`; the connector's broken check
    // (a non-blocking peek) catches the FIN when the lease is dropped, or the
    // stale check catches it before the next reuse.
    let server = Server::start(Opts {
        max_requests: Some(1),
        ..Opts::default()
    })
    .await;
    let pool: TcpPool = Pool::builder(TcpConnector::new())
        .max_per_route(1)
        .validate_after_inactivity(Duration::ZERO)
        .build()
        .unwrap();
    let route = server.route();
    let mut failed = 0;
    for _ in 0..5 {
        // The FIN normally arrives before the lease is dropped or at the
        // latest before the stale check; should it be later still, the
        // request fails on the closed connection, which is then discarded.
        loop {
            let mut l = pool.lease(&route).await.unwrap();
            match request(&mut l).await {
                Ok(reply) => {
                    assert!(reply.ends_with(" 1 close"), "{reply}");
                    break;
                }
                Err(_) => {
                    Lease::discard(&mut l);
                    failed += 1;
                    assert!(failed < 5, "the closes are not being noticed");
                }
            }
        }
    }
    // One connection per request: none was reused after the server closed it.
    let c = pool.counters();
    assert_eq!(c.connects, 5 + failed);
    assert_eq!(server.tracker.accepted() as u64, c.connects);
    close_and_check(pool, &server).await;
}

#[tokio::test]
async fn reset_in_the_middle_of_a_lease() {
    let server = Server::start(Opts::default()).await;
    let pool: TcpPool = Pool::builder(TcpConnector::new())
        .max_per_route(1)
        .build()
        .unwrap();
    let route = server.route();
    {
        let mut l = pool.lease(&route).await.unwrap();
        assert!(request(&mut l).await.unwrap().starts_with("OK 0 1"));
        l.write_all(b"RST\n").await.unwrap();
        let err = common::read_line(&mut *l).await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
            ),
            "{err:?}"
        );
        // Dropped without discard(): the broken check sees the reset.
    }
    assert_eq!(pool.counters().closes_for(CloseReason::Discarded), 1);
    assert_eq!(pool.stats().connections, 0);
    let mut l = pool.lease(&route).await.unwrap();
    assert!(request(&mut l).await.unwrap().starts_with("OK 1 1"));
    drop(l);
    assert_eq!(pool.counters().connects, 2);
    close_and_check(pool, &server).await;
}

#[tokio::test]
async fn slow_accept() {
    let server = Server::start(Opts {
        accept_delay: Some(Duration::from_millis(150)),
        ..Opts::default()
    })
    .await;
    let pool: TcpPool = Pool::builder(TcpConnector::new())
        .max_per_route(2)
        .build()
        .unwrap();
    let route = server.route();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = pool.clone();
        let route = route.clone();
        tasks.push(tokio::spawn(async move {
            let mut l = pool.lease(&route).await.unwrap();
            request(&mut l).await.unwrap()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().starts_with("OK"));
    }
    let c = pool.counters();
    assert_eq!(c.connects, 2);
    assert_eq!(c.grants, 8);
    assert_eq!(server.tracker.accepted(), 2);
    assert!(server.tracker.max() <= 2);
    assert_eq!(pool.stats().idle, 2);
    close_and_check(pool, &server).await;
}

#[tokio::test]
async fn server_keep_alive_expires_idle_connection() {
    let server = Server::start(Opts::default()).await;
    let pool: TcpPool = Pool::builder(TcpConnector::new())
        .max_per_route(1)
        .build()
        .unwrap();
    let route = server.route();
    {
        let mut l = pool.lease(&route).await.unwrap();
        request(&mut l).await.unwrap();
        Lease::set_keep_alive(&mut l, Duration::from_millis(50));
    }
    // The driver's timer closes it at the keep-alive expiry.
    assert!(eventually(|| pool.counters().closes_for(CloseReason::Expired) == 1).await);
    assert_eq!(server.wait_current(0).await, 0);
    let mut l = pool.lease(&route).await.unwrap();
    assert!(request(&mut l).await.unwrap().starts_with("OK 1 1"));
    drop(l);
    close_and_check(pool, &server).await;
}

#[tokio::test]
async fn idle_timeout_closes_through_the_driver() {
    let server = Server::start(Opts::default()).await;
    let pool: TcpPool = Pool::builder(TcpConnector::new())
        .max_per_route(2)
        .idle_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let route = server.route();
    {
        let mut a = pool.lease(&route).await.unwrap();
        let mut b = pool.lease(&route).await.unwrap();
        request(&mut a).await.unwrap();
        request(&mut b).await.unwrap();
    }
    assert_eq!(server.tracker.max(), 2);
    assert!(eventually(|| pool.counters().closes_for(CloseReason::IdleTimeout) == 2).await);
    assert_eq!(server.wait_current(0).await, 0);
    assert_eq!(pool.stats().connections, 0);
    close_and_check(pool, &server).await;
}
