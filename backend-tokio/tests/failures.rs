//! Connect failures: each case asserts the typed error and that nothing leaks.

mod common;

use std::error::Error as _;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use common::{eventually, request, Opts, Server};
use wharf_tokio::{CloseReason, ConnectFailure, Error, Pool, TcpConnector};

fn pool(connect_timeout: Duration) -> Pool<(String, u16), TcpConnector> {
    Pool::builder(TcpConnector::new())
        .max_total(4)
        .max_per_route(2)
        .connect_timeout(connect_timeout)
        .lease_timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn assert_clean(pool: &Pool<(String, u16), TcpConnector>) {
    let s = pool.stats();
    assert_eq!(
        (s.connections, s.connecting, s.leased, s.pending, s.closing),
        (0, 0, 0, 0, 0),
        "{s:?}"
    );
    pool.check_invariants().unwrap();
}

#[tokio::test]
async fn connection_refused() {
    // A port nobody listens on: bind, note the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let pool = pool(Duration::from_secs(5));
    let route = (String::from("127.0.0.1"), port);
    let err = pool.lease(&route).await.unwrap_err();
    match &err {
        Error::ConnectFailed {
            route: r,
            reason,
            source,
        } => {
            assert_eq!(r, &format!("127.0.0.1:{port}"));
            assert_eq!(*reason, ConnectFailure::Remote);
            let source = source.as_ref().expect("the connector's error");
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    assert!(err.source().is_some());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(
        pool.counters().connect_failures_for(ConnectFailure::Remote),
        1
    );
    assert_clean(&pool);

    // The pool recovers once something listens (the demand connect is not
    // delayed by the retry backoff).
    let server = Server::start(Opts::default()).await;
    let mut lease = pool.lease(&server.route()).await.unwrap();
    assert!(request(&mut lease).await.unwrap().starts_with("OK"));
}

/// A connect that never completes, deterministically and on loopback only:
/// a listener with a backlog of 1 that never accepts. Once its accept queue
/// is full (filled below with plain connects until one of them hangs), the
/// kernel drops further SYNs, so the pool's connect can only end by the
/// pool's connect timeout.
#[tokio::test]
async fn connect_never_completes_is_bounded_by_connect_timeout() {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(1).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    // Fill the accept queue.
    let mut fillers = Vec::new();
    let mut full = false;
    for _ in 0..64 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("filler connect failed: {e}"),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the accept queue never filled");

    let pool = pool(Duration::from_millis(300));
    let route = (String::from("127.0.0.1"), addr.port());
    let started = std::time::Instant::now();
    let err = pool.lease(&route).await.unwrap_err();
    match &err {
        Error::ConnectFailed { reason, source, .. } => {
            assert_eq!(*reason, ConnectFailure::Timeout);
            assert!(
                source.is_none(),
                "the pool's own timeout: no connector error"
            );
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    let c = pool.counters();
    assert_eq!(c.connect_failures_for(ConnectFailure::Timeout), 1);
    assert_eq!(c.closes_for(CloseReason::ConnectTimeout), 1);
    assert_clean(&pool);
    drop(listener);
}

#[tokio::test]
async fn unresolvable_name() {
    let pool = pool(Duration::from_secs(5));
    let route = (String::from("no-such-host.invalid"), 80);
    let err = pool.lease(&route).await.unwrap_err();
    match &err {
        Error::ConnectFailed { route, reason, .. } => {
            assert_eq!(route, "no-such-host.invalid:80");
            assert_eq!(*reason, ConnectFailure::Local);
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    assert_eq!(
        pool.counters().connect_failures_for(ConnectFailure::Local),
        1
    );
    assert_clean(&pool);
}

#[tokio::test]
async fn every_waiter_of_a_failed_route_fails_and_nothing_leaks() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let pool = pool(Duration::from_secs(5));
    let route = (String::from("127.0.0.1"), port);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let pool = pool.clone();
        let route = route.clone();
        tasks.push(tokio::spawn(
            async move { pool.lease(&route).await.map(drop) },
        ));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert!(
            matches!(
                r,
                Err(Error::ConnectFailed {
                    reason: ConnectFailure::Remote,
                    ..
                })
            ),
            "{r:?}"
        );
    }
    assert!(eventually(|| pool.stats().connections == 0).await);
    assert_clean(&pool);
}
