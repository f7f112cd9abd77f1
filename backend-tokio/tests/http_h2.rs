//! The HTTP client over HTTP/2 with prior knowledge (h2c) (issue 13),
//! against the loopback HTTP/2 server of `wharf-test-servers`:
//! - the stream capacity comes from the server's SETTINGS
//!   (`MAX_CONCURRENT_STREAMS` 4): 4 requests share one connection and a
//!   5th waits in the pool (not in h2) until a stream is free;
//! - a SETTINGS change lowering the capacity (4 -> 1) while 3 streams are
//!   out: no new stream until under it; raising it serves the waiter;
//! - a server without a limit is capped by `h2_max_streams`;
//! - GOAWAY drains: the streams in flight finish, new requests go to a new
//!   connection, the old one closes with its last stream;
//! - a server that sends GOAWAY after every 10 streams (refusing later
//!   ones): 0 failed requests under concurrency.
#![cfg(feature = "http")]

mod http_util;

use std::time::Duration;

use http_util::{until, within};
use tokio::task::JoinHandle;
use wharf_test_servers::{Http2Server, HttpServer};
use wharf_tokio::http::{Client, HttpError};
use wharf_tokio::CloseReason;

fn h2_client(per_host: u32) -> Client {
    Client::builder()
        .max_per_host(per_host)
        .http2_prior_knowledge(true)
        .build()
        .unwrap()
}

/// A request to `/hold` in a task: its connection id, once released.
fn hold(client: &Client, server: &HttpServer) -> JoinHandle<Result<u64, HttpError>> {
    let (client, url) = (client.clone(), server.url("/hold"));
    tokio::spawn(async move {
        let r = client.get(&url).await?;
        let id = r.headers()["x-conn-id"].to_str().unwrap().parse().unwrap();
        r.into_body().bytes().await?;
        Ok(id)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_from_settings_queues_the_fifth() {
    let server = Http2Server::builder()
        .max_concurrent_streams(4)
        .start()
        .await;
    let client = h2_client(1);
    let held: Vec<_> = (0..4).map(|_| hold(&client, &server)).collect();
    server.wait_for("4 streams held", |s| s.held == 4).await;
    let fifth = hold(&client, &server);
    until("the 5th waits in the pool", || {
        client.pool().stats().pending == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let p = client.pool().stats();
    assert_eq!((p.leased, p.pending, p.connections), (4, 1, 1), "{p:?}");
    assert_eq!(server.stats().held, 4, "the 5th was not sent");
    server.release_held(1);
    server
        .wait_for("the 5th took the free stream", |s| {
            s.held == 4 && s.requests == 1
        })
        .await;
    server.release_held(4);
    for h in held.into_iter().chain([fifth]) {
        assert_eq!(
            within("held", h).await.unwrap().unwrap(),
            1,
            "all on one connection"
        );
    }
    let s = server.stats();
    assert_eq!((s.accepted, s.peak_streams(), s.refused_streams), (1, 4, 0));
    assert_eq!(client.stats().max_streams_in_use, 4);
    assert_eq!(client.pool().counters().connects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_lower_and_raise_the_capacity() {
    let server = Http2Server::builder()
        .max_concurrent_streams(4)
        .start()
        .await;
    let client = h2_client(1);
    let first: Vec<_> = (0..3).map(|_| hold(&client, &server)).collect();
    server.wait_for("3 streams held", |s| s.held == 3).await;
    server.set_max_concurrent_streams(1);
    server
        .wait_for("SETTINGS 1 acknowledged", |s| {
            s.conns[0].max_streams_acked == Some(1)
        })
        .await;
    // The pool learns it from the connection task.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fourth = hold(&client, &server);
    until("the 4th waits", || client.pool().stats().pending == 1).await;
    server.release_held(2);
    server.wait_for("2 released", |s| s.requests == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let p = client.pool().stats();
    assert_eq!(
        (p.leased, p.pending),
        (1, 1),
        "1 stream out = the capacity: {p:?}"
    );
    assert_eq!(server.stats().held, 1);
    // Back under the capacity: the 4th goes.
    server.release_held(1);
    server
        .wait_for("the 4th held", |s| s.requests == 3 && s.held == 1)
        .await;
    assert_eq!(client.pool().stats().pending, 0);
    // Raised to 3: three more at once.
    server.set_max_concurrent_streams(3);
    server
        .wait_for("SETTINGS 3 acknowledged", |s| {
            s.conns[0].max_streams_acked == Some(3)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let more: Vec<_> = (0..2).map(|_| hold(&client, &server)).collect();
    server
        .wait_for("3 held after the raise", |s| s.held == 3)
        .await;
    server.release_held(3);
    for h in first.into_iter().chain([fourth]).chain(more) {
        assert_eq!(within("held", h).await.unwrap().unwrap(), 1);
    }
    let s = server.stats();
    assert_eq!((s.accepted, s.refused_streams), (1, 0));
    assert_eq!(s.conns[0].streams_over_limit, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_server_is_capped() {
    let server = Http2Server::builder().unlimited_streams().start().await;
    let client = Client::builder()
        .max_per_host(1)
        .http2_prior_knowledge(true)
        .h2_max_streams(3)
        .build()
        .unwrap();
    let held: Vec<_> = (0..4).map(|_| hold(&client, &server)).collect();
    server.wait_for("3 held", |s| s.held == 3).await;
    until("the 4th waits in the pool", || {
        client.pool().stats().pending == 1
    })
    .await;
    assert_eq!(server.stats().held, 3);
    server.release_held(4);
    for h in held {
        within("held", h).await.unwrap().unwrap();
    }
    assert_eq!(client.stats().max_streams_in_use, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_drains() {
    let server = Http2Server::builder()
        .max_concurrent_streams(10)
        .start()
        .await;
    let client = h2_client(2);
    // One connection, then two streams on it.
    client
        .get(&server.url("/"))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    let held: Vec<_> = (0..2).map(|_| hold(&client, &server)).collect();
    server.wait_for("2 held", |s| s.held == 2).await;
    assert_eq!(server.stats().accepted, 1);
    server.goaway_all();
    server
        .wait_for("GOAWAY sent", |s| s.conns[0].goaway_sent)
        .await;
    // The connection task reads the GOAWAY and the pool drains the
    // connection: a new request goes to a new connection, unrefused.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = within("new", client.get(&server.url("/"))).await.unwrap();
    assert_eq!(r.headers()["x-conn-id"], "2");
    r.into_body().bytes().await.unwrap();
    // The streams in flight finish on the old one, which then closes.
    server.release_held(2);
    for h in held {
        assert_eq!(within("held", h).await.unwrap().unwrap(), 1);
    }
    until("the drained connection closes", || {
        client.pool().counters().closes_for(CloseReason::PeerClosed) == 1
    })
    .await;
    let p = client.pool().stats();
    assert_eq!((p.connections, p.idle), (1, 1), "{p:?}");
    let c = client.stats();
    assert_eq!((c.failed, c.retried_unsent), (0, 0), "{c:?}");
    assert_eq!(server.stats().refused_streams, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_every_ten_streams_fails_nothing() {
    let server = Http2Server::builder()
        .max_concurrent_streams(8)
        .max_requests_per_conn(10)
        .response_delay(Duration::from_millis(2))
        .start()
        .await;
    let client = h2_client(4);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, url) = (client.clone(), server.url("/"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let r = client.get(&url).await?;
                r.into_body().bytes().await?;
            }
            Ok::<_, HttpError>(())
        }));
    }
    for t in tasks {
        within("tasks", t).await.unwrap().unwrap();
    }
    let (c, s) = (client.stats(), server.stats());
    println!(
        "400 requests: {c:?}; server: {} connections, {} refused streams",
        s.accepted, s.refused_streams
    );
    assert_eq!(c.failed, 0);
    // Refused streams were not processed (retried, any method); a GET whose
    // connection shut down before its response may have been (retried once
    // as idempotent: served twice at most).
    assert!(
        (400..=400 + c.retried_reused).contains(&s.requests),
        "served {} for 400 requests, {} retried as idempotent",
        s.requests,
        c.retried_reused
    );
    assert!(
        s.accepted >= 40,
        "GOAWAY after 10 streams: {} connections",
        s.accepted
    );
    assert!(s.max_requests_per_conn() <= 10);
}
