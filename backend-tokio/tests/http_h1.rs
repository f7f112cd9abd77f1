//! The HTTP client over HTTP/1.1 (issue 13), against the loopback servers of
//! `wharf-test-servers`:
//! - keep-alive reuse: one connection serves requests in turn;
//! - a lease is held until the response body is read to the end: a second
//!   request meanwhile opens a second connection; a body dropped in the
//!   middle closes its connection;
//! - `Connection: close` discards the connection (and a server that closes
//!   without saying so is never sent a request on the dead connection);
//! - `Keep-Alive: timeout=N` sets the connection's keep-alive (the control:
//!   without the header the idle connection is reused);
//! - a server idle timeout (150 ms) shorter than `validate_after_inactivity`
//!   (2 s default): 0 failed requests over 2,400 requests with random pauses;
//!   the control (no watch, no hand-out check, no retries) fails requests.
#![cfg(feature = "http")]

mod http_util;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_util::{until, within, Blind};
use wharf_test_servers::{CloseMode, CloseReason, Http1Server};
use wharf_tokio::http::{Body, Client};

fn conn_id<B>(r: &http::Response<B>) -> u64 {
    r.headers()["x-conn-id"].to_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_one_connection() {
    let server = Http1Server::builder().start().await;
    let client = Client::builder().build().unwrap();
    for i in 1..=10u64 {
        let r = within("get", client.get(&server.url("/"))).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(conn_id(&r), 1, "request {i} on the first connection");
        assert_eq!(r.headers()["x-conn-req"], i.to_string().as_str());
        assert_eq!(r.body().info().reused, i > 1);
        assert_eq!(&r.into_body().bytes().await.unwrap()[..], b"ok\n");
    }
    assert_eq!(server.stats().accepted, 1);
    let s = client.stats();
    assert_eq!((s.requests, s.failed, s.http1_connections), (10, 0, 1));
    assert_eq!(client.pool().counters().reuses, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_held_until_the_body_is_read() {
    let server = Http1Server::builder().start().await;
    let client = Client::builder().build().unwrap();
    let url = server.url("/bytes/200000");
    let first = client.get(&url).await.unwrap();
    assert!(first.body().holds_connection());
    assert_eq!(
        client.pool().stats().leased,
        1,
        "the unread body holds its lease"
    );
    // Meanwhile a second request needs a connection of its own.
    let second = client.get(&url).await.unwrap();
    assert_eq!((conn_id(&first), conn_id(&second)), (1, 2));
    assert_eq!(client.pool().stats().leased, 2);
    let body = first.into_body().bytes().await.unwrap();
    assert_eq!(body.len(), 200_000);
    assert_eq!(client.pool().stats().leased, 1, "read to the end: released");
    // A body dropped in the middle: hyper stops reading it, so the
    // connection is closed, not reused.
    drop(second);
    assert_eq!(client.pool().stats().leased, 0);
    until("the dropped body's connection closes", || {
        client.pool().stats().connections == 1
    })
    .await;
    let c = client.pool().counters();
    assert_eq!(c.closes_for(wharf_tokio::CloseReason::Discarded), 1);
    // The next request reuses the connection read to the end.
    let r = client.get(&server.url("/")).await.unwrap();
    assert_eq!(conn_id(&r), 1);
    r.into_body().bytes().await.unwrap();
    assert_eq!(server.stats().accepted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_discards() {
    // The 3rd response of each connection says `Connection: close`.
    let server = Http1Server::builder()
        .max_requests_per_conn(3)
        .start()
        .await;
    let client = Client::builder().build().unwrap();
    let mut conns = Vec::new();
    for _ in 0..9 {
        let r = within("get", client.get(&server.url("/"))).await.unwrap();
        conns.push(conn_id(&r));
        r.into_body().bytes().await.unwrap();
    }
    assert_eq!(conns, [1, 1, 1, 2, 2, 2, 3, 3, 3]);
    let c = client.pool().counters();
    assert_eq!(
        c.closes_for(wharf_tokio::CloseReason::Discarded),
        3,
        "each `Connection: close` response discarded its connection at release: {c:?}"
    );
    let s = server.stats();
    assert_eq!((s.accepted, s.late_requests), (3, 0));
    assert_eq!(client.stats().retried_unsent, 0);
    // A request saying `Connection: close` discards its connection too.
    let req = Request::get(server.url("/"))
        .header("connection", "close")
        .body(Body::empty())
        .unwrap();
    let r = client.request(req).await.unwrap();
    assert_eq!(conn_id(&r), 4);
    r.into_body().bytes().await.unwrap();
    let r = client.get(&server.url("/")).await.unwrap();
    assert_eq!(conn_id(&r), 5, "not reused after `Connection: close`");
    r.into_body().bytes().await.unwrap();
    let c = client.pool().counters();
    assert_eq!(
        c.closes_for(wharf_tokio::CloseReason::Discarded),
        4,
        "{c:?}"
    );
    assert_eq!(client.stats().retried_unsent, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sloppy_close_is_seen_before_the_next_request() {
    // Closes after the 2nd response without `Connection: close`.
    let server = Http1Server::builder()
        .max_requests_per_conn(2)
        .close_without_header()
        .close_linger(Duration::from_secs(1))
        .start()
        .await;
    let client = Client::builder().build().unwrap();
    for i in 0..6 {
        let r = within("get", client.get(&server.url("/"))).await.unwrap();
        r.into_body().bytes().await.unwrap();
        if i % 2 == 1 {
            // The server's FIN reaches the connection task, which tells the
            // pool: the connection leaves the idle list.
            until("the closed connection leaves the pool", || {
                client.pool().stats().idle == 0
            })
            .await;
        }
    }
    let s = server.stats();
    assert_eq!(s.accepted, 3);
    assert_eq!(
        s.late_requests, 0,
        "no request written on a closed connection"
    );
    // Seen at release (the connection task already ended: `Discarded`) or
    // while idle (the watch: `PeerClosed`); never by a request.
    let c = client.pool().counters();
    assert_eq!(
        c.closes_for(wharf_tokio::CloseReason::PeerClosed)
            + c.closes_for(wharf_tokio::CloseReason::Discarded),
        3,
        "{c:?}"
    );
    let st = client.stats();
    assert_eq!((st.failed, st.retried_unsent, st.retried_reused), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_header_sets_the_keep_alive() {
    for announce in [true, false] {
        let mut b = Http1Server::builder();
        if announce {
            b = b.keep_alive_header(1);
        }
        let server = b.start().await;
        let client = Client::builder().build().unwrap();
        let r = client.get(&server.url("/")).await.unwrap();
        r.into_body().bytes().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let r = client.get(&server.url("/")).await.unwrap();
        let second = conn_id(&r);
        r.into_body().bytes().await.unwrap();
        let expired = client
            .pool()
            .counters()
            .closes_for(wharf_tokio::CloseReason::Expired);
        if announce {
            assert_eq!(second, 2, "`Keep-Alive: timeout=1`: not reused after 1.3 s");
            assert_eq!(expired, 1);
        } else {
            assert_eq!(second, 1, "the control: no header, reused");
            assert_eq!(expired, 0);
        }
    }
}

/// `tasks` tasks send `per_task` GETs each to `servers` (closing idle
/// connections after 150 ms, by FIN and by RST), pausing 0-400 ms at random
/// before each. Returns (failed requests, client).
async fn under_idle_closes<C>(
    client: Client<C>,
    servers: &[wharf_test_servers::HttpServer],
    tasks: usize,
    per_task: usize,
) -> (u64, Client<C>)
where
    C: wharf_tokio::http::HttpConnect,
{
    let failed = Arc::new(AtomicU64::new(0));
    let urls: Vec<String> = servers.iter().map(|s| s.url("/")).collect();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (client, urls, failed) = (client.clone(), urls.clone(), failed.clone());
        handles.push(tokio::spawn(async move {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64).wrapping_mul(0x2545_f491);
            for i in 0..per_task {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                tokio::time::sleep(Duration::from_millis(seed % 400)).await;
                let url = &urls[(t + i) % urls.len()];
                let req = Request::get(url.as_str()).body(Body::empty()).unwrap();
                // A failure is counted and printed (with `--nocapture`), so
                // that a rare one says what it was.
                match client.request(req).await {
                    Ok(r) if r.status() == 200 => {
                        if let Err(e) = r.into_body().bytes().await {
                            eprintln!("request {t}/{i}: body failed: {e:?}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    other => {
                        eprintln!("request {t}/{i}: failed: {:?}", other.map(|r| r.status()));
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for h in handles {
        within("tasks", h).await.unwrap();
    }
    (failed.load(Ordering::Relaxed), client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_shorter_than_validation_fails_no_request() {
    let mut servers = Vec::new();
    for mode in [CloseMode::Fin, CloseMode::Rst] {
        servers.push(
            Http1Server::builder()
                .idle_timeout(Duration::from_millis(150))
                .close_mode(mode)
                .close_linger(Duration::from_millis(200))
                .start()
                .await,
        );
    }
    // Defaults: validate_after_inactivity 2 s, far above the servers' 150 ms.
    let client = Client::builder()
        .max_total(64)
        .max_per_host(32)
        .build()
        .unwrap();
    let (failed, client) = under_idle_closes(client, &servers, 60, 40).await;
    let s = client.stats();
    let closed_idle: u64 = servers
        .iter()
        .map(|sv| sv.stats().closed_for(&CloseReason::IdleTimeout))
        .sum();
    let late: u64 = servers.iter().map(|sv| sv.stats().late_requests).sum();
    println!(
        "2,400 requests: failed {failed}, client {s:?}, server idle closes {closed_idle}, late requests {late}"
    );
    assert_eq!(s.requests, 2400);
    assert!(
        closed_idle >= 20,
        "the servers closed idle connections: {closed_idle}"
    );
    assert_eq!(failed, 0, "no request failed: {s:?}");
    assert_eq!(s.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_control_without_the_checks_fails_requests() {
    let server = Http1Server::builder()
        .idle_timeout(Duration::from_millis(150))
        .close_linger(Duration::from_millis(200))
        .start()
        .await;
    let client = Client::builder()
        .max_total(16)
        .max_per_host(16)
        .retry_unsent(0)
        .retry_idempotent(false)
        .build_with(Blind)
        .unwrap();
    let (failed, client) = under_idle_closes(client, std::slice::from_ref(&server), 4, 20).await;
    println!("control: failed {failed} of 80, {:?}", client.stats());
    assert!(
        failed > 0,
        "without watch, hand-out check and retries, requests fail"
    );
}
