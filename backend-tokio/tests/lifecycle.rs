//! Cancel safety, lease timeouts, overflow, warm-up, tags, drain, close and
//! the driver's end.

mod common;

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use common::{eventually, request, Opts, Server};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use wharf_tokio::Lease;
use wharf_tokio::{
    CloseReason, Connector, DrainMode, Error, LeaseOptions, Pool, RouteConfig, Tag, TcpConnector,
};

type TcpPool = Pool<(String, u16), TcpConnector>;

/// Polls a future once; `Some` if it completed.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

fn tcp_pool(per_route: u32) -> TcpPool {
    Pool::builder(TcpConnector::new())
        .max_total(8)
        .max_per_route(per_route)
        .build()
        .unwrap()
}

#[tokio::test]
async fn dropping_a_waiting_lease_removes_its_waiter() {
    let server = Server::start(Opts::default()).await;
    let pool = tcp_pool(1);
    let route = server.route();
    let held = pool.lease(&route).await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(50), pool.lease(&route)).await;
    assert!(r.is_err(), "the only connection is held");
    let s = pool.stats();
    assert_eq!((s.pending, s.leased, s.connections), (0, 1, 1));
    assert_eq!(pool.counters().cancels, 1);
    drop(held);
    assert_eq!(pool.stats().idle, 1);
    pool.check_invariants().unwrap();
}

#[tokio::test]
async fn a_connection_granted_to_a_dropped_future_goes_back() {
    let server = Server::start(Opts::default()).await;
    let pool = tcp_pool(1);
    let route = server.route();
    let held = pool.lease(&route).await.unwrap();
    let mut waiting = Box::pin(pool.lease(&route));
    assert!(poll_once(&mut waiting).await.is_none());
    assert_eq!(pool.stats().pending, 1);
    // The release grants the connection to the waiter ...
    drop(held);
    assert_eq!(pool.stats().leased, 1);
    // ... which is dropped before it looks.
    drop(waiting);
    let s = pool.stats();
    assert_eq!((s.pending, s.leased, s.idle, s.connections), (0, 0, 1, 1));
    let mut l = pool.lease(&route).await.unwrap();
    assert!(request(&mut l).await.unwrap().starts_with("OK 0 1"));
    assert_eq!(pool.counters().connects, 1);
    pool.check_invariants().unwrap();
}

/// A TCP connector whose connects wait for a permit.
struct Gated {
    gate: Arc<Semaphore>,
}

impl Connector<(String, u16)> for Gated {
    type Conn = TcpStream;
    type Error = io::Error;
    async fn connect(&self, route: &(String, u16)) -> io::Result<TcpStream> {
        self.gate.acquire().await.unwrap().forget();
        TcpConnector::new().connect_host(&route.0, route.1).await
    }
}

#[tokio::test]
async fn a_connect_that_finishes_after_its_waiter_left_serves_the_next() {
    let server = Server::start(Opts::default()).await;
    let gate = Arc::new(Semaphore::new(0));
    let pool = Pool::builder(Gated { gate: gate.clone() })
        .max_per_route(1)
        .build()
        .unwrap();
    let route = server.route();
    {
        let mut first = pin!(pool.lease(&route));
        assert!(poll_once(&mut first).await.is_none());
        assert_eq!(pool.stats().connecting, 1);
    } // dropped: its waiter leaves, the connect goes on
    assert_eq!(pool.stats().pending, 0);
    let mut second = Box::pin(pool.lease(&route));
    assert!(poll_once(&mut second).await.is_none());
    assert_eq!(pool.counters().connects, 1, "no second connect");
    gate.add_permits(1);
    let mut l = second.await.unwrap();
    assert!(request(&mut l).await.unwrap().starts_with("OK 0 1"));
    assert_eq!(pool.counters().connects, 1);
    drop(l);
    assert_eq!(server.tracker.accepted(), 1);
}

#[tokio::test]
async fn a_connect_nobody_waits_for_any_more_goes_idle() {
    let server = Server::start(Opts::default()).await;
    let gate = Arc::new(Semaphore::new(0));
    let pool = Pool::builder(Gated { gate: gate.clone() })
        .max_per_route(1)
        .build()
        .unwrap();
    let route = server.route();
    {
        let mut first = pin!(pool.lease(&route));
        assert!(poll_once(&mut first).await.is_none());
    }
    gate.add_permits(1);
    assert!(eventually(|| pool.stats().idle == 1).await);
    assert_eq!(pool.stats().connections, 1);
    pool.close().await;
    assert_eq!(server.wait_current(0).await, 0);
}

#[tokio::test]
async fn lease_timeout_names_the_route_and_the_wait() {
    let server = Server::start(Opts::default()).await;
    let pool = tcp_pool(1);
    let route = server.route();
    let _held = pool.lease(&route).await.unwrap();
    let err = pool
        .lease_with(
            &route,
            LeaseOptions::new().timeout(Duration::from_millis(80)),
        )
        .await
        .unwrap_err();
    match &err {
        Error::Timeout { route: r, waited } => {
            assert_eq!(r, &format!("127.0.0.1:{}", server.port));
            assert!(*waited >= Duration::from_millis(80), "{waited:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(err.is_timeout());
    assert_eq!(pool.counters().timeouts, 1);
    assert_eq!(pool.stats().pending, 0);
}

#[tokio::test]
async fn overflow_is_immediate() {
    let server = Server::start(Opts::default()).await;
    let pool: TcpPool = Pool::builder(TcpConnector::new())
        .max_per_route(1)
        .max_pending(1)
        .build()
        .unwrap();
    let route = server.route();
    let held = pool.lease(&route).await.unwrap();
    let mut waiting = Box::pin(pool.lease(&route));
    assert!(poll_once(&mut waiting).await.is_none());
    let err = pool.lease(&route).await.unwrap_err();
    assert!(matches!(err, Error::Overflow { .. }), "{err:?}");
    assert_eq!(pool.counters().overflows, 1);
    drop(held);
    let l = waiting.await.unwrap();
    drop(l);
    assert_eq!(pool.stats().idle, 1);
}

#[tokio::test]
async fn warm_up_opens_connections_before_any_lease() {
    let server = Server::start(Opts::default()).await;
    let route = server.route();
    let pool: TcpPool = Pool::builder(TcpConnector::new())
        .max_per_route(4)
        .route(
            route.clone(),
            RouteConfig {
                min_idle: Some(2),
                ..RouteConfig::default()
            },
        )
        .build()
        .unwrap();
    assert_eq!(server.wait_current(2).await, 2);
    assert!(eventually(|| pool.stats().idle == 2).await);
    assert_eq!(pool.counters().warmups, 2);
    let mut l = pool.lease(&route).await.unwrap();
    request(&mut l).await.unwrap();
    // One warm connection was taken: warm-up opens another to keep two idle.
    assert_eq!(server.wait_current(3).await, 3);
    drop(l);
    assert_eq!(pool.counters().connects, 3);
    assert_eq!(pool.counters().warmups, 3);
    drop(pool);
    // The last handle is gone: the driver drains the pool and ends.
    assert_eq!(server.wait_current(0).await, 0);
}

#[tokio::test]
async fn tags_select_connections() {
    let server = Server::start(Opts::default()).await;
    let pool = tcp_pool(2);
    let route = server.route();
    {
        let mut l = pool
            .lease_with(&route, LeaseOptions::new().tag(Tag(7)))
            .await
            .unwrap();
        request(&mut l).await.unwrap();
        Lease::set_tag(&mut l, Some(Tag(7)));
    }
    // An untagged lease does not take the connection tagged 7.
    let mut u = pool.lease(&route).await.unwrap();
    assert!(request(&mut u).await.unwrap().starts_with("OK 1 1"));
    // A lease for tag 7 does.
    let mut t = pool
        .lease_with(&route, LeaseOptions::new().tag(Tag(7)))
        .await
        .unwrap();
    assert!(request(&mut t).await.unwrap().starts_with("OK 0 2"));
    assert_eq!(Lease::tag(&t), Some(Tag(7)));
}

#[tokio::test]
async fn close_waits_for_leases_and_refuses_new_ones() {
    let server = Server::start(Opts::default()).await;
    let pool = tcp_pool(2);
    let route = server.route();
    let mut held = pool.lease(&route).await.unwrap();
    {
        let _idle = pool.lease(&route).await.unwrap();
    }
    assert_eq!(server.wait_current(2).await, 2);
    let closing = pool.clone();
    let closer = tokio::spawn(async move { closing.close().await });
    assert!(eventually(|| pool.is_closed()).await);
    // The idle connection closed; the leased one is still usable.
    assert_eq!(server.wait_current(1).await, 1);
    assert!(request(&mut held).await.unwrap().starts_with("OK"));
    let err = pool.lease(&route).await.unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "{err:?}");
    assert!(!closer.is_finished());
    drop(held);
    closer.await.unwrap();
    assert_eq!(pool.stats().connections, 0);
    assert_eq!(server.wait_current(0).await, 0);
}

#[tokio::test]
async fn drain_existing_replaces_connections() {
    let server = Server::start(Opts::default()).await;
    let pool = tcp_pool(2);
    let route = server.route();
    let mut held = pool.lease(&route).await.unwrap();
    {
        let _idle = pool.lease(&route).await.unwrap();
    }
    pool.drain(Some(&route), DrainMode::DrainExisting);
    assert_eq!(server.wait_current(1).await, 1);
    request(&mut held).await.unwrap();
    drop(held); // draining: closed on release
    assert_eq!(server.wait_current(0).await, 0);
    let mut l = pool.lease(&route).await.unwrap();
    assert!(request(&mut l).await.unwrap().starts_with("OK 2 1"));
    assert_eq!(pool.counters().closes_for(CloseReason::Drained), 2);
}

#[tokio::test]
async fn detach_takes_the_connection_out() {
    let server = Server::start(Opts::default()).await;
    let pool = tcp_pool(1);
    let route = server.route();
    let l = pool.lease(&route).await.unwrap();
    let mut s = Lease::detach(l);
    assert_eq!(pool.stats().connections, 0);
    assert!(request(&mut s).await.unwrap().starts_with("OK 0 1"));
    let mut l = pool.lease(&route).await.unwrap();
    assert!(request(&mut l).await.unwrap().starts_with("OK 1 1"));
}

#[tokio::test]
async fn config_errors_are_typed() {
    let err = Pool::<(String, u16), _>::builder(TcpConnector::new())
        .max_total(0)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let err = Pool::<(String, u16), _>::builder(TcpConnector::new())
        .preconnect_ratio(9.0)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("preconnect"), "{err}");
}

#[test]
fn build_outside_a_runtime_is_a_config_error() {
    let err = Pool::<(String, u16), _>::builder(TcpConnector::new())
        .build()
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(wharf_tokio::ConfigError::NoRuntime)),
        "{err:?}"
    );
}

#[tokio::test]
async fn validation_of_a_live_connection_hands_it_out() {
    let server = Server::start(Opts::default()).await;
    let pool: TcpPool = Pool::builder(TcpConnector::new())
        .max_per_route(1)
        .validate_after_inactivity(Duration::ZERO)
        .build()
        .unwrap();
    let route = server.route();
    for i in 1..=5 {
        let mut l = pool.lease(&route).await.unwrap();
        assert_eq!(request(&mut l).await.unwrap(), format!("OK 0 {i}"));
    }
    let c = pool.counters();
    assert_eq!(c.connects, 1);
    assert_eq!(c.validations, 4);
    assert_eq!(c.stale, 0);
    pool.check_invariants().unwrap();
}

/// Many tasks give up on their leases at random moments (timeouts around
/// the lease future) on a multi-threaded runtime: whatever the interleaving,
/// no lease or waiter leaks and every connection comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_storm_leaks_nothing() {
    let server = Server::start(Opts::default()).await;
    let pool: TcpPool = Pool::builder(TcpConnector::new())
        .max_per_route(2)
        .max_pending(512)
        .validate_after_inactivity(Duration::from_millis(1))
        .build()
        .unwrap();
    let route = server.route();
    let mut tasks = Vec::new();
    for t in 0..200u64 {
        let (pool, route) = (pool.clone(), route.clone());
        tasks.push(tokio::spawn(async move {
            let mut served = 0;
            for i in 0..20u64 {
                let wait = Duration::from_micros((t * 31 + i * 17) % 1500);
                if let Ok(r) = tokio::time::timeout(wait, pool.lease(&route)).await {
                    let mut l = r.unwrap();
                    if (t + i) % 3 == 0 {
                        request(&mut l).await.unwrap();
                    }
                    served += 1;
                }
            }
            served
        }));
    }
    let mut served = 0;
    for t in tasks {
        served += t.await.unwrap();
    }
    let s = pool.stats();
    assert_eq!((s.leased, s.pending), (0, 0), "{s:?}");
    assert!(s.connections <= 2);
    let c = pool.counters();
    eprintln!("cancel storm: {c:?}");
    assert!(c.cancels > 0, "no lease was cancelled while waiting");
    assert!(
        served > 0 && served <= c.grants,
        "served {served}, grants {}",
        c.grants
    );
    pool.check_invariants().unwrap();
    pool.close().await;
    assert_eq!(server.wait_current(0).await, 0);
}
