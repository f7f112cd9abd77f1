//! Audit: requests that end early on the client's side (a request timeout,
//! a caller that drops the request future), against the loopback servers
//! of `wharf-test-servers`:
//! - HTTP/1.1: the connection of a request abandoned while its response is
//!   still pending is not handed to the next request (which would wait
//!   behind the abandoned response, or read it);
//! - HTTP/2 with `MAX_CONCURRENT_STREAMS` 1: an abandoned stream frees its
//!   place, the next request is served on the same connection;
//! - the pool ends clean after either: nothing leased, nothing pending.
#![cfg(feature = "http")]

mod http_util;

use std::time::Duration;

use http_util::within;
use wharf_test_servers::{Http1Server, Http2Server};
use wharf_tokio::http::{Client, HttpError};

fn conn_id<B>(r: &http::Response<B>) -> u64 {
    r.headers()["x-conn-id"].to_str().unwrap().parse().unwrap()
}

/// The caller drops the request future while the server holds the
/// response; the next request must not be given that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_dropped_request_does_not_hold_up_the_next() {
    let server = Http1Server::builder().start().await;
    let client = Client::builder().max_per_host(1).build().unwrap();
    // Warm: one connection that served a request, idle in the pool.
    let r = client.get(&server.url("/")).await.unwrap();
    assert_eq!(conn_id(&r), 1);
    r.into_body().bytes().await.unwrap();

    let held = {
        let (client, url) = (client.clone(), server.url("/hold"));
        tokio::spawn(async move { client.get(&url).await.map(|_| ()) })
    };
    server
        .wait_for("the request is held", |s| s.held == 1)
        .await;
    held.abort();
    let _ = held.await;

    // The held response never comes: a request given that connection
    // would wait for ever (or read the held response as its own).
    let r = within("the next request", client.get(&server.url("/"))).await;
    let r = r.unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(conn_id(&r), 1, "served on the abandoned connection");
    r.into_body().bytes().await.unwrap();
    let p = client.pool().stats();
    assert_eq!((p.leased, p.pending), (0, 0), "{p:?}");
    server.release_held(1);
}

/// Same with the client's request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_request_timeout_does_not_hold_up_the_next() {
    let server = Http1Server::builder().start().await;
    let client = Client::builder()
        .max_per_host(1)
        .request_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let r = client.get(&server.url("/")).await.unwrap();
    r.into_body().bytes().await.unwrap();

    let held = {
        let (client, url) = (client.clone(), server.url("/hold"));
        tokio::spawn(async move { client.get(&url).await.map(|_| ()) })
    };
    // (1 s of request timeout: time for the request to reach the server
    // on a loaded machine.)
    server
        .wait_for("the request was sent", |s| s.held == 1)
        .await;
    let e = within("the held request", held).await.unwrap().unwrap_err();
    assert!(matches!(e, HttpError::Timeout { .. }), "{e:?}");

    for _ in 0..3 {
        let r = within("a later request", client.get(&server.url("/"))).await;
        let r = r.unwrap_or_else(|e| panic!("a later request failed: {e:?}"));
        assert_ne!(conn_id(&r), 1, "served on the abandoned connection");
        r.into_body().bytes().await.unwrap();
    }
    let s = client.stats();
    assert_eq!((s.requests, s.failed), (5, 1), "{s:?}");
    server.release_held(1);
}

/// HTTP/2, one stream per connection, one connection per host: an
/// abandoned stream frees the only stream; the next request gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_dropped_stream_frees_the_only_stream() {
    let server = Http2Server::builder()
        .max_concurrent_streams(1)
        .start()
        .await;
    let client = Client::builder()
        .max_per_host(1)
        .http2_prior_knowledge(true)
        .request_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for _ in 0..2 {
        let e = within("the held request", client.get(&server.url("/hold")))
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Timeout { .. }), "{e:?}");
        // The test server counts a stream against its limit until its
        // handler saw the reset (h2 itself frees it at the RST_STREAM): on
        // a loaded machine a stream sent at once could be refused by it.
        server
            .wait_for("the server freed the stream", |s| s.conns[0].in_flight == 0)
            .await;
        let r = within("the next request", client.get(&server.url("/"))).await;
        let r = r.unwrap_or_else(|e| panic!("the next request failed: {e:?}"));
        assert_eq!(conn_id(&r), 1, "one connection serves on");
        r.into_body().bytes().await.unwrap();
    }
    let p = client.pool().stats();
    assert_eq!((p.leased, p.pending, p.connections), (0, 0, 1), "{p:?}");
    assert_eq!(server.stats().accepted, 1);
    server.release_held(2);
}

/// A request waits for the only connection while the request on it is
/// abandoned mid-response: the waiter must not be handed that connection
/// (hyper closes it: the waiter's request could not be sent). With the
/// retries of unsent requests off, it would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_abandoned_connection_is_not_handed_to_a_waiter() {
    for round in 0..5 {
        let server = Http1Server::builder().start().await;
        let client = Client::builder()
            .max_per_host(1)
            .retry_unsent(0)
            .build()
            .unwrap();
        let held = {
            let (client, url) = (client.clone(), server.url("/hold"));
            tokio::spawn(async move { client.get(&url).await.map(|_| ()) })
        };
        server
            .wait_for("the request is held", |s| s.held == 1)
            .await;
        let waiter = {
            let (client, url) = (client.clone(), server.url("/"));
            tokio::spawn(async move {
                let r = client.get(&url).await?;
                r.into_body().bytes().await
            })
        };
        http_util::until("the waiter waits", || client.pool().stats().pending == 1).await;
        held.abort();
        let r = within("the waiter", waiter).await.unwrap();
        assert!(r.is_ok(), "round {round}: the waiter failed: {r:?}");
        let s = client.stats();
        assert_eq!(
            (s.requests, s.failed, s.http1_connections),
            (2, 0, 2),
            "{s:?}"
        );
        server.release_held(1);
    }
}
