//! Audit: the client on a current-thread runtime (the runtime of the
//! docs' examples, where the pool reads tokio's clock and every task,
//! the pool's, hyper's and the servers', shares one thread):
//! - HTTP/2 with one stream per connection, 20 requests at once and a
//!   GOAWAY in the middle: all answered once;
//! - HTTP/1.1 with the server's idle timeout equal to the client's, at
//!   pauses of that length: no GET fails;
//! - an abandoned HTTP/1.1 request with a waiter behind it (no retries):
//!   the waiter is served.
#![cfg(feature = "http")]

mod http_util;

use std::time::Duration;

use http_util::{until, within};
use wharf_test_servers::{Http1Server, Http2Server};
use wharf_tokio::http::Client;

#[tokio::test(flavor = "current_thread")]
async fn h2_one_stream_with_a_goaway() {
    let server = Http2Server::builder()
        .max_concurrent_streams(1)
        .response_delay(Duration::from_millis(2))
        .start()
        .await;
    let client = Client::builder()
        .max_per_host(1)
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (client.clone(), server.url("/"));
            tokio::spawn(async move { client.get(&url).await?.into_body().bytes().await })
        })
        .collect();
    server.wait_for("some served", |s| s.requests >= 5).await;
    server.goaway_all();
    for t in tasks {
        within("a request", t).await.unwrap().unwrap();
    }
    let s = server.stats();
    assert_eq!(s.requests, 20, "{s:?}");
    assert!(s.accepted >= 2, "{s:?}");
    assert_eq!(client.stats().failed, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn h1_equal_idle_timeouts() {
    let server = Http1Server::builder()
        .idle_timeout(Duration::from_millis(50))
        .start()
        .await;
    let client = Client::builder()
        .idle_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    for i in 0..20u64 {
        tokio::time::sleep(Duration::from_millis(46 + i % 9)).await;
        let r = within("a GET", client.get(&server.url("/"))).await;
        let r = r.unwrap_or_else(|e| panic!("GET {i}: {e:?}"));
        r.into_body().bytes().await.unwrap();
    }
    assert_eq!(client.stats().failed, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn h1_abandoned_request_with_a_waiter() {
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
    server.wait_for("held", |s| s.held == 1).await;
    let waiter = {
        let (client, url) = (client.clone(), server.url("/"));
        tokio::spawn(async move { client.get(&url).await?.into_body().bytes().await })
    };
    until("the waiter waits", || client.pool().stats().pending == 1).await;
    held.abort();
    within("the waiter", waiter).await.unwrap().unwrap();
    server.release_held(1);
}
