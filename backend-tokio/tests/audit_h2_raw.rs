//! Audit: the HTTP/2 retry rules against a raw `h2` server that answers
//! each stream as told (answer, `REFUSED_STREAM`, `INTERNAL_ERROR` reset,
//! an abrupt GOAWAY with an error):
//! - a refused stream was not processed: a POST is sent again (and served
//!   once);
//! - a stream reset with an error, or cut by an abrupt GOAWAY that covers
//!   it, may have been processed: a POST fails, not retried; a GET on a
//!   reused connection cut by the GOAWAY is retried once.
#![cfg(feature = "http")]

mod http_util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_util::within;
use tokio::net::TcpListener;
use wharf_tokio::http::{Body, Client, HttpError};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Answer,
    Refuse,
    Reset,
    /// GOAWAY(INTERNAL_ERROR) covering this stream, then the connection ends.
    Abrupt,
}

/// A raw h2c server: the n-th stream (over all connections, from 0) gets
/// `plan(n)`. Returns its address and the count of streams it saw.
async fn raw_h2(plan: fn(usize) -> Act) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let n = s.fetch_add(1, Ordering::SeqCst);
                    match plan(n) {
                        Act::Answer => {
                            let resp = http::Response::new(());
                            if let Ok(mut send) = respond.send_response(resp, false) {
                                let _ = send.send_data(Bytes::from_static(b"ok"), true);
                            }
                        }
                        Act::Refuse => respond.send_reset(h2::Reason::REFUSED_STREAM),
                        Act::Reset => respond.send_reset(h2::Reason::INTERNAL_ERROR),
                        Act::Abrupt => {
                            conn.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
                            // Drive the GOAWAY out and the connection to its end.
                            while conn.accept().await.is_some() {}
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, seen)
}

fn client() -> Client {
    Client::builder()
        .max_per_host(1)
        .http2_prior_knowledge(true)
        .build()
        .unwrap()
}

async fn send(client: &Client, method: Method, url: &str) -> Result<Bytes, HttpError> {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(Body::from("payload"))
        .unwrap();
    let r = within("a request", client.request(req)).await?;
    r.into_body().bytes().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_post_is_sent_again() {
    let (url, seen) = raw_h2(|n| if n == 0 { Act::Refuse } else { Act::Answer }).await;
    let client = client();
    assert_eq!(&send(&client, Method::POST, &url).await.unwrap()[..], b"ok");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    let s = client.stats();
    assert_eq!((s.requests, s.failed, s.retried_unsent), (1, 0, 1), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_reset_with_an_error_is_not_retried() {
    let (url, seen) = raw_h2(|n| if n == 0 { Act::Reset } else { Act::Answer }).await;
    let client = client();
    match send(&client, Method::POST, &url).await {
        Err(HttpError::Request { attempts: 1, .. }) => {}
        other => panic!("a reset POST: {other:?}"),
    }
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    // The connection serves on.
    assert_eq!(&send(&client, Method::POST, &url).await.unwrap()[..], b"ok");
    assert_eq!(client.stats().http2_connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abrupt_goaway_over_a_post_is_not_retried() {
    let (url, seen) = raw_h2(|n| if n == 1 { Act::Abrupt } else { Act::Answer }).await;
    let client = client();
    assert_eq!(&send(&client, Method::POST, &url).await.unwrap()[..], b"ok");
    // Stream 2 on the reused connection: the server took it, then went away.
    match send(&client, Method::POST, &url).await {
        Err(HttpError::Request { attempts: 1, .. }) => {}
        other => panic!("a POST cut by an abrupt GOAWAY: {other:?}"),
    }
    assert_eq!(seen.load(Ordering::SeqCst), 2, "not sent again");
    // The next request gets a new connection.
    assert_eq!(&send(&client, Method::POST, &url).await.unwrap()[..], b"ok");
    assert_eq!(client.stats().http2_connections, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abrupt_goaway_over_a_get_on_a_reused_connection_is_retried() {
    let (url, seen) = raw_h2(|n| if n == 1 { Act::Abrupt } else { Act::Answer }).await;
    let client = client();
    assert_eq!(&send(&client, Method::GET, &url).await.unwrap()[..], b"ok");
    assert_eq!(&send(&client, Method::GET, &url).await.unwrap()[..], b"ok");
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    let s = client.stats();
    assert_eq!(
        (s.failed, s.retried_reused, s.http2_connections),
        (0, 1, 2),
        "{s:?}"
    );
}
