//! Audit: a client talking to many hosts (a crawler, a proxy): more
//! distinct routes than the pool's default route table (64), with
//! connection limits that let every host keep an idle connection (the
//! client sizes its route table from `max_total`); and a route table set
//! smaller than the hosts: a typed error, and a slot freed by a drain
//! serves a new route.
#![cfg(feature = "http")]

mod http_util;

use http_util::within;
use wharf_test_servers::Http1Server;
use wharf_tokio::http::{Client, HttpError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_hosts_than_route_slots() {
    let mut servers = Vec::new();
    for _ in 0..80 {
        servers.push(Http1Server::builder().start().await);
    }
    let client = Client::builder().max_total(200).build().unwrap();
    for round in 0..2 {
        for (i, s) in servers.iter().enumerate() {
            let r = within("a request", client.get(&s.url("/"))).await;
            let r = r.unwrap_or_else(|e| panic!("round {round}, host {i}: {e:?}"));
            r.into_body().bytes().await.unwrap();
        }
    }
    let c = client.stats();
    assert_eq!((c.requests, c.failed), (160, 0), "{c:?}");
}

/// A smaller route table, set by the user: a request to one route more
/// than it holds fails at once, typed; once a route empties, its slot
/// serves another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_route_table_is_a_typed_error() {
    let mut servers = Vec::new();
    for _ in 0..4 {
        servers.push(Http1Server::builder().start().await);
    }
    let client = Client::builder().max_routes(3).build().unwrap();
    for s in &servers[..3] {
        let r = within("a request", client.get(&s.url("/"))).await.unwrap();
        r.into_body().bytes().await.unwrap();
    }
    match within("the 4th route", client.get(&servers[3].url("/"))).await {
        Err(HttpError::Pool(wharf_tokio::Error::RouteTableFull { .. })) => {}
        other => panic!("a 4th route in a table of 3: {other:?}"),
    }
    let first = client.route(&http::Request::get(servers[0].url("/")).body(()).unwrap());
    client
        .pool()
        .drain(Some(&first.unwrap()), wharf_tokio::DrainMode::DrainExisting);
    let r = within("the 4th route", client.get(&servers[3].url("/"))).await;
    r.unwrap().into_body().bytes().await.unwrap();
}
