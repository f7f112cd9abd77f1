//! Audit: HTTP/2 combinations against the loopback HTTP/2 server of
//! `wharf-test-servers`:
//! - `MAX_CONCURRENT_STREAMS` 1 and one connection per host, 40 requests
//!   at once: every one answered once, never two streams at once on the
//!   server, nothing refused;
//! - a GOAWAY while requests wait in the pool for the only stream: the
//!   waiters go to a new connection, every request is answered once, the
//!   old connection closes with its last stream;
//! - a GOAWAY while requests wait, with two connections allowed per host:
//!   the limit holds server-side (connections open at once);
//! - closing the client while requests wait: new requests fail `Closed`,
//!   the waiters are served by the connection still out (no new one), then
//!   it closes and `close` returns; the server sees it closed.
#![cfg(feature = "http")]

mod http_util;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_util::{until, within};
use tokio::task::JoinHandle;
use wharf_test_servers::{Http2Server, HttpServer};
use wharf_tokio::http::{Client, HttpError};

fn h2_client(per_host: u32) -> Client {
    Client::builder()
        .max_per_host(per_host)
        .http2_prior_knowledge(true)
        .build()
        .unwrap()
}

/// Samples the pool's connection count (open and connecting) every
/// millisecond until dropped: the most seen. (The server's `peak_open`
/// counts a connection until it sees its end, so a connection the client
/// closed just before opening the next can show there as one more.)
struct Peak {
    max: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Peak {
    fn watch(client: &Client) -> Peak {
        let max = Arc::new(AtomicU64::new(0));
        let (m, client) = (max.clone(), client.clone());
        let task = tokio::spawn(async move {
            loop {
                let p = client.pool().stats();
                m.fetch_max(u64::from(p.connections), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        Peak { max, task }
    }
    fn max(&self) -> u64 {
        self.max.load(Ordering::SeqCst)
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn conn_id<B>(r: &http::Response<B>) -> u64 {
    r.headers()["x-conn-id"].to_str().unwrap().parse().unwrap()
}

/// A request in a task: the connection id that answered it.
fn get(client: &Client, server: &HttpServer, path: &str) -> JoinHandle<Result<u64, HttpError>> {
    let (client, url) = (client.clone(), server.url(path));
    tokio::spawn(async move {
        let r = client.get(&url).await?;
        let id = conn_id(&r);
        r.into_body().bytes().await?;
        Ok(id)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stream_many_waiters() {
    let server = Http2Server::builder()
        .max_concurrent_streams(1)
        .response_delay(Duration::from_millis(2))
        .start()
        .await;
    let client = h2_client(1);
    let tasks: Vec<_> = (0..40).map(|_| get(&client, &server, "/")).collect();
    for t in tasks {
        assert_eq!(within("a request", t).await.unwrap().unwrap(), 1);
    }
    let s = server.stats();
    assert_eq!(s.requests, 40, "{s:?}");
    assert_eq!((s.accepted, s.peak_streams(), s.refused_streams), (1, 1, 0));
    assert_eq!(s.conns[0].streams_over_limit, 0);
    let c = client.stats();
    assert_eq!(
        (c.requests, c.failed, c.retried_unsent),
        (40, 0, 0),
        "{c:?}"
    );
    let p = client.pool().stats();
    assert_eq!((p.leased, p.pending, p.connections), (0, 0, 1), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_while_requests_wait_for_the_only_stream() {
    let server = Http2Server::builder()
        .max_concurrent_streams(1)
        .start()
        .await;
    let client = h2_client(1);
    let peak = Peak::watch(&client);
    let held = get(&client, &server, "/hold");
    server.wait_for("one held", |s| s.held == 1).await;
    let waiting: Vec<_> = (0..5).map(|_| get(&client, &server, "/")).collect();
    until("5 wait in the pool", || client.pool().stats().pending == 5).await;
    server.goaway_all();
    // The waiters cannot use the old connection (it is draining, and its
    // only stream is taken): a new one serves them, within the limit of one
    // connection per host only once the old one closed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.release_held(1);
    assert_eq!(within("the held request", held).await.unwrap().unwrap(), 1);
    for w in waiting {
        let id = within("a waiter", w).await.unwrap().unwrap();
        assert_eq!(id, 2, "the waiters went to the new connection");
    }
    let s = server.stats();
    assert_eq!(s.requests, 6, "{s:?}");
    assert_eq!(s.refused_streams, 0, "{s:?}");
    assert_eq!(s.accepted, 2, "{s:?}");
    assert_eq!(peak.max(), 1, "one connection per host");
    assert!(s.conns[0].goaway_sent);
    server
        .wait_for("the old connection closed", |s| !s.conns[0].is_open())
        .await;
    let c = client.stats();
    assert_eq!((c.requests, c.failed), (6, 0), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_with_waiters_and_two_connections_per_host() {
    let server = Http2Server::builder()
        .max_concurrent_streams(2)
        .start()
        .await;
    let client = h2_client(2);
    let peak = Peak::watch(&client);
    let held: Vec<_> = (0..4).map(|_| get(&client, &server, "/hold")).collect();
    server.wait_for("4 held", |s| s.held == 4).await;
    let waiting: Vec<_> = (0..6).map(|_| get(&client, &server, "/")).collect();
    until("6 wait in the pool", || client.pool().stats().pending == 6).await;
    server.goaway_all();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.release_held(4);
    for h in held {
        let id = within("a held request", h).await.unwrap().unwrap();
        assert!(id <= 2, "{id}");
    }
    for w in waiting {
        let id = within("a waiter", w).await.unwrap().unwrap();
        assert!(id > 2, "a waiter on a connection after the GOAWAY: {id}");
    }
    let s = server.stats();
    assert_eq!((s.requests, s.refused_streams), (10, 0), "{s:?}");
    assert!(s.accepted <= 4, "{s:?}");
    assert!(
        peak.max() <= 2,
        "two connections per host at most: {}",
        peak.max()
    );
    let c = client.stats();
    assert_eq!((c.requests, c.failed), (10, 0), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_while_requests_wait() {
    let server = Http2Server::builder()
        .max_concurrent_streams(1)
        .start()
        .await;
    let client = h2_client(1);
    let held = get(&client, &server, "/hold");
    server.wait_for("one held", |s| s.held == 1).await;
    let waiting: Vec<_> = (0..5).map(|_| get(&client, &server, "/")).collect();
    until("5 wait in the pool", || client.pool().stats().pending == 5).await;
    let closing = {
        let client = client.clone();
        tokio::spawn(async move { client.close().await })
    };
    until("the pool is closed", || client.pool().is_closed()).await;
    // New requests fail at once.
    match within("a new request", client.get(&server.url("/"))).await {
        Err(HttpError::Pool(wharf_tokio::Error::Closed { .. })) => {}
        other => panic!("a request after close: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!closing.is_finished(), "close waits for the request out");
    assert_eq!(client.pool().stats().pending, 5, "the waiters still wait");
    // The connection still out serves the requests that were waiting
    // (Pool::close: no new connection), then closes.
    server.release_held(1);
    for w in waiting {
        assert_eq!(within("a waiter", w).await.unwrap().unwrap(), 1);
    }
    assert_eq!(within("the held request", held).await.unwrap().unwrap(), 1);
    within("close", closing).await.unwrap();
    server
        .wait_for("every connection closed", |s| s.open == 0)
        .await;
    let s = server.stats();
    assert_eq!((s.accepted, s.requests), (1, 6), "{s:?}");
    let p = client.pool().stats();
    assert_eq!((p.leased, p.pending, p.connections), (0, 0, 0), "{p:?}");
}

/// `max_requests_per_connection` on HTTP/2 under concurrency: no connection
/// serves more streams than that, every request is answered once, and each
/// used-up connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_connection_with_concurrent_streams() {
    let server = Http2Server::builder()
        .response_delay(Duration::from_millis(5))
        .start()
        .await;
    let client = Client::builder()
        .max_per_host(2)
        .http2_prior_knowledge(true)
        .max_requests_per_connection(3)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..30).map(|_| get(&client, &server, "/")).collect();
    for t in tasks {
        within("a request", t).await.unwrap().unwrap();
    }
    let s = server.stats();
    assert_eq!(s.requests, 30, "{s:?}");
    assert!(
        s.max_requests_per_conn() <= 3,
        "{:?}",
        s.requests_per_conn()
    );
    assert!(s.accepted >= 10, "{s:?}");
    let c = client.stats();
    assert_eq!((c.requests, c.failed), (30, 0), "{c:?}");
    server
        .wait_for("the used-up connections closed", |s| {
            s.conns
                .iter()
                .filter(|c| c.requests == 3 && c.is_open())
                .count()
                == 0
        })
        .await;
}
