//! Audit: limits changed on a live client (`Pool::set_max_per_route`,
//! `Pool::set_max_total`): lowering closes the excess as connections come
//! back (the server sees them closed), and from then on the lower limit
//! holds (sampled on the pool's side); raising lets waiters connect.
#![cfg(feature = "http")]

mod http_util;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_util::{until, within};
use tokio::task::JoinHandle;
use wharf_test_servers::{Http1Server, HttpServer};
use wharf_tokio::http::{Client, HttpError};

fn hold(client: &Client, server: &HttpServer) -> JoinHandle<Result<(), HttpError>> {
    let (c, u) = (client.clone(), server.url("/hold"));
    tokio::spawn(async move { c.get(&u).await?.into_body().bytes().await.map(|_| ()) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_and_raising_the_per_host_limit() {
    let server = Http1Server::builder().start().await;
    let client = Client::builder().max_per_host(4).build().unwrap();
    let held: Vec<_> = (0..4).map(|_| hold(&client, &server)).collect();
    server.wait_for("4 held", |s| s.held == 4).await;
    client.pool().set_max_per_route(1).unwrap();
    server.release_held(4);
    for h in held {
        within("held", h).await.unwrap().unwrap();
    }
    server.wait_for("3 closed", |s| s.open == 1).await;
    // From here one connection at most.
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
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (c, u) = (client.clone(), server.url("/sleep/2"));
            tokio::spawn(async move { c.get(&u).await?.into_body().bytes().await })
        })
        .collect();
    for t in tasks {
        within("a request", t).await.unwrap().unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 1);
    // Raised: waiters connect.
    let held: Vec<_> = (0..3).map(|_| hold(&client, &server)).collect();
    server.wait_for("1 held", |s| s.held == 1).await;
    until("2 wait", || client.pool().stats().pending == 2).await;
    client.pool().set_max_per_route(3).unwrap();
    server.wait_for("3 held", |s| s.held == 3).await;
    sampler.abort();
    server.release_held(3);
    for h in held {
        within("held", h).await.unwrap().unwrap();
    }
    assert!(client.pool().set_max_per_route(0).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_total_limit_across_hosts() {
    let (a, b) = (
        Http1Server::builder().start().await,
        Http1Server::builder().start().await,
    );
    let client = Client::builder()
        .max_total(4)
        .max_per_host(4)
        .build()
        .unwrap();
    let held: Vec<_> = (0..2)
        .flat_map(|_| [hold(&client, &a), hold(&client, &b)])
        .collect();
    a.wait_for("2 held", |s| s.held == 2).await;
    b.wait_for("2 held", |s| s.held == 2).await;
    client.pool().set_max_total(2).unwrap();
    a.release_held(2);
    b.release_held(2);
    for h in held {
        within("held", h).await.unwrap().unwrap();
    }
    until("down to 2", || client.pool().stats().connections <= 2).await;
    let s = (a.stats(), b.stats());
    assert_eq!(s.0.accepted + s.1.accepted, 4);
    a.wait_for("closed", |s| s.open <= 2).await;
    let p = client.pool().stats();
    assert_eq!((p.connections, p.max_total), (2, 2), "{p:?}");
}
