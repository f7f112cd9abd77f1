//! The four places where the two backends used to behave differently, now
//! decided once in the driver (issue 11). `backend-embassy/tests/divergences.rs`
//! has the same four tests against embassy-net stacks.

mod common;

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{eventually, request, Opts, Server};
use tokio::net::TcpStream;
use wharf_tokio::Lease;
use wharf_tokio::{
    CancelPolicy, CloseReason, ConnectFailure, Connector, Error, LeaseOptions, Pool, Tag,
    TcpConnector,
};

type Route = (String, u16);

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// A connector whose connects fail with `TimedOut` (a TLS handshake or
/// resolver deadline of its own), or take `delay` before connecting.
struct Scripted {
    timed_out: bool,
    delay: Duration,
}

impl Connector<Route> for Scripted {
    type Conn = TcpStream;
    type Error = io::Error;
    async fn connect(&self, route: &Route) -> io::Result<TcpStream> {
        tokio::time::sleep(self.delay).await;
        if self.timed_out {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake timed out",
            ));
        }
        TcpConnector::new().connect_host(&route.0, route.1).await
    }
}

/// 1. A connect timeout reported by the connector is a `Timeout`, counted
///    with the pool's own connect timeouts (tokio used to rewrite it to
///    `Local`).
#[tokio::test]
async fn a_connect_timeout_is_reported_and_counted_as_a_timeout() {
    let server = Server::start(Opts::default()).await;
    let route = server.route();
    // Reported by the connector.
    let pool = Pool::builder(Scripted {
        timed_out: true,
        delay: Duration::ZERO,
    })
    .build()
    .unwrap();
    match pool.lease(&route).await {
        Err(Error::ConnectFailed { reason, source, .. }) => {
            assert_eq!(reason, ConnectFailure::Timeout);
            let source = source.expect("the connector's error");
            assert_eq!(source.kind(), io::ErrorKind::TimedOut);
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    let c = pool.counters();
    assert_eq!(c.connect_failures_for(ConnectFailure::Timeout), 1);
    assert_eq!(c.connect_failures_for(ConnectFailure::Local), 0);

    // The pool's own connect timeout lands in the same counter.
    let pool = Pool::builder(Scripted {
        timed_out: false,
        delay: Duration::from_secs(5),
    })
    .connect_timeout(Duration::from_millis(50))
    .build()
    .unwrap();
    match pool.lease(&route).await {
        Err(Error::ConnectFailed { reason, .. }) => assert_eq!(reason, ConnectFailure::Timeout),
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    let c = pool.counters();
    assert_eq!(c.connect_failures_for(ConnectFailure::Timeout), 1);
    assert_eq!(c.connect_failures_for(ConnectFailure::Local), 0);
    pool.check_invariants().unwrap();
}

/// 2. A grant whose future was dropped goes back with the tag and the
///    keep-alive its connection was released with (embassy used to lose
///    both).
#[tokio::test]
async fn an_abandoned_grant_keeps_its_tag_and_keep_alive() {
    let server = Server::start(Opts::default()).await;
    let route = server.route();
    let pool = Pool::builder(TcpConnector::new())
        .max_per_route(1)
        .validate_after_inactivity(None)
        .build()
        .unwrap();
    let tagged = LeaseOptions::new().tag(Tag(7));

    // Abandons a grant of the route's one connection, released with tag 7
    // and a keep-alive of `keep_alive`; returns the connection's handle.
    let abandon = |keep_alive: Duration| {
        let pool = pool.clone();
        let route = route.clone();
        async move {
            let mut holder = pool.lease(&route).await.unwrap();
            assert!(request(&mut *holder).await.unwrap().starts_with("OK"));
            let conn = Lease::id(&holder).conn();
            Lease::set_tag(&mut holder, Some(Tag(7)));
            Lease::set_keep_alive(&mut holder, keep_alive);
            let mut waiting = Box::pin(pool.lease_with(&route, tagged));
            assert!(poll_once(waiting.as_mut()).is_pending());
            drop(holder); // granted to the waiting request...
            assert_eq!(pool.stats().leased, 1);
            // ...whose future is dropped before it looks.
            drop(waiting);
            assert_eq!(pool.stats().leased, 0);
            assert_eq!(pool.stats().idle, 1);
            conn
        }
    };

    // The tag stayed: a lease for another tag does not get it (the route's
    // one slot is made free for it: the tagged connection closes).
    let conn = abandon(Duration::from_secs(60)).await;
    let other = pool
        .lease_with(&route, LeaseOptions::new().tag(Tag(8)))
        .await
        .unwrap();
    assert_ne!(Lease::id(&other).conn(), conn, "the tag was lost");
    assert_eq!(pool.counters().closes_for(CloseReason::RouteLimit), 1);
    drop(other);
    pool.drain(None, wharf_tokio::DrainMode::DrainExisting);

    // The keep-alive stayed: the connection expires 150 ms after its release.
    abandon(Duration::from_millis(150)).await;
    assert!(
        eventually(|| pool.counters().closes_for(CloseReason::Expired) == 1).await,
        "the keep-alive was lost: {:?}",
        pool.counters()
    );
    assert_eq!(pool.stats().idle, 0);
    pool.check_invariants().unwrap();
}

/// 3. The cancel policy is the builder's (embassy used to hard-code
///    `Default`): `CloseExcess` aborts a connect no request needs any more.
#[tokio::test]
async fn the_cancel_policy_is_configurable() {
    let server = Server::start(Opts::default()).await;
    let route = server.route();
    for policy in [CancelPolicy::Default, CancelPolicy::CloseExcess] {
        let pool = Pool::builder(Scripted {
            timed_out: false,
            delay: Duration::from_millis(200),
        })
        .cancel_policy(policy)
        .build()
        .unwrap();
        {
            let mut waiting = pin!(pool.lease(&route));
            assert!(poll_once(waiting.as_mut()).is_pending());
            assert_eq!(pool.stats().connecting, 1);
        }
        match policy {
            CancelPolicy::CloseExcess => {
                assert_eq!(pool.stats().connecting, 0);
                assert_eq!(pool.counters().closes_for(CloseReason::Excess), 1);
            }
            _ => {
                assert_eq!(pool.stats().connecting, 1, "the connect goes on");
                assert!(eventually(|| pool.stats().idle == 1).await);
                assert_eq!(pool.counters().closes_for(CloseReason::Excess), 0);
            }
        }
        pool.check_invariants().unwrap();
    }
}

/// 4. A connection the peer closed while it was idle is never handed out,
///    even without a validation due (tokio used to hand it out unchecked).
#[tokio::test]
async fn a_connection_the_peer_closed_while_idle_is_not_handed_out() {
    let server = Server::start(Opts {
        idle_close: Some(Duration::from_millis(50)),
        ..Opts::default()
    })
    .await;
    let route = server.route();
    let pool = Pool::builder(TcpConnector::new())
        .validate_after_inactivity(None)
        .build()
        .unwrap();
    let mut a = pool.lease(&route).await.unwrap();
    assert!(request(&mut *a).await.unwrap().starts_with("OK"));
    let first = Lease::id(&a).conn();
    drop(a);
    assert_eq!(pool.stats().idle, 1);
    // The server closes it (FIN) while it is idle.
    assert_eq!(server.wait_current(0).await, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut b = pool.lease(&route).await.unwrap();
    assert_ne!(Lease::id(&b).conn(), first);
    assert!(request(&mut *b).await.unwrap().starts_with("OK"));
    let c = pool.counters();
    assert_eq!(c.closes_for(CloseReason::PeerClosed), 1);
    assert_eq!(c.validations, 0);
    assert_eq!(server.tracker.accepted(), 2);
    drop(b);
    pool.check_invariants().unwrap();
}
