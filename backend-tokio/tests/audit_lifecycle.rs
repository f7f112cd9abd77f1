//! Audit: the end of a client, seen from the servers:
//! - dropping every handle of a client (no `close`) closes its idle
//!   HTTP/1.1 and HTTP/2 connections: the servers see them all closed;
//! - `close` with a response body still unread waits for it; once the body
//!   is dropped, `close` returns and the server sees every connection
//!   closed;
//! - a drain while requests wait for the only connection: the waiters are
//!   served on new connections, every one once, and the drained connection
//!   closes with its last response.
#![cfg(feature = "http")]

mod http_util;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_util::{until, within};
use wharf_test_servers::{Http1Server, Http2Server};
use wharf_tokio::http::Client;
use wharf_tokio::DrainMode;

async fn ok(client: &Client, url: &str) {
    let r = within("a request", client.get(url)).await.unwrap();
    assert_eq!(r.status(), 200);
    r.into_body().bytes().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_closes_its_connections() {
    let h1 = Http1Server::builder().start().await;
    let h2 = Http2Server::builder().start().await;
    let client = Client::builder().max_per_host(4).build().unwrap();
    let h2_client = Client::builder()
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    // Several connections each: concurrent requests.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c1, c2) = (client.clone(), h2_client.clone());
        let (u1, u2) = (h1.url("/sleep/20"), h2.url("/sleep/20"));
        tasks.push(tokio::spawn(async move {
            ok(&c1, &u1).await;
            ok(&c2, &u2).await;
        }));
    }
    for t in tasks {
        within("requests", t).await.unwrap();
    }
    assert!(h1.stats().accepted >= 2, "{:?}", h1.stats());
    assert!(h1.stats().open >= 2);
    assert!(h2.stats().open >= 1);
    drop((client, h2_client));
    h1.wait_for("HTTP/1.1 connections closed", |s| s.open == 0)
        .await;
    h2.wait_for("HTTP/2 connection closed", |s| s.open == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_an_unread_body() {
    let server = Http1Server::builder().body_size(1 << 20).start().await;
    let client = Client::builder().build().unwrap();
    ok(&client, &server.url("/")).await;
    let r = within("a request", client.get(&server.url("/")))
        .await
        .unwrap();
    assert!(r.body().holds_connection());
    let closing = {
        let client = client.clone();
        tokio::spawn(async move { client.close().await })
    };
    until("the pool is closed", || client.pool().is_closed()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!closing.is_finished(), "close waits for the body");
    drop(r);
    within("close", closing).await.unwrap();
    server
        .wait_for("every connection closed", |s| s.open == 0)
        .await;
    let p = client.pool().stats();
    assert_eq!((p.connections, p.leased, p.pending), (0, 0, 0), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_while_requests_wait() {
    let server = Http1Server::builder().start().await;
    let client = Client::builder().max_per_host(1).build().unwrap();
    let held = {
        let (client, url) = (client.clone(), server.url("/hold"));
        tokio::spawn(async move {
            let r = client.get(&url).await.unwrap();
            let id = r.headers()["x-conn-id"].to_str().unwrap().to_string();
            r.into_body().bytes().await.unwrap();
            id
        })
    };
    server.wait_for("one held", |s| s.held == 1).await;
    let waiting: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), server.url("/"));
            tokio::spawn(async move {
                let r = client.get(&url).await.unwrap();
                let id = r.headers()["x-conn-id"].to_str().unwrap().to_string();
                r.into_body().bytes().await.unwrap();
                id
            })
        })
        .collect();
    until("4 wait", || client.pool().stats().pending == 4).await;
    // The limit, sampled on the pool's side (the server's `peak_open`
    // counts a connection until it sees its end: one the client closed just
    // before opening the next can show there as one more).
    let peak = Arc::new(AtomicU32::new(0));
    let sampler = {
        let (c, p) = (client.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                p.fetch_max(c.pool().stats().connections, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    client.pool().drain(None, DrainMode::DrainExisting);
    server.release_held(1);
    assert_eq!(within("held", held).await.unwrap(), "1");
    for w in waiting {
        assert_eq!(
            within("a waiter", w).await.unwrap(),
            "2",
            "a new connection"
        );
    }
    sampler.abort();
    assert_eq!(peak.load(Ordering::SeqCst), 1, "one connection per host");
    let s = server.stats();
    assert_eq!((s.accepted, s.requests), (2, 5), "{s:?}");
    server
        .wait_for("the drained connection closed", |s| !s.conns[0].is_open())
        .await;
}
