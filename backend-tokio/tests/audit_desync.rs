//! Audit: an HTTP/1.1 server that sends more than the response (a second,
//! unasked-for response right behind the first, as a desynchronised or
//! buggy server or proxy does). The extra bytes must never be read as the
//! answer to the next request given that connection: the next request
//! gets the server's own answer to it.
#![cfg(feature = "http")]

mod http_util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_util::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wharf_tokio::http::Client;

/// Answers each request with `fresh <n>`; the first answer on each
/// connection is followed by an extra response `stale`, at once or
/// after `delay`.
async fn desync_server(delay: Option<Duration>) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut first = true;
                loop {
                    let mut b = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&b[..k]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    let i = count.fetch_add(1, Ordering::SeqCst);
                    let body = format!("fresh {i}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let stale = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale";
                    match (first, delay) {
                        (true, None) => {
                            let _ = s.write_all(format!("{resp}{stale}").as_bytes()).await;
                        }
                        (true, Some(d)) => {
                            let _ = s.write_all(resp.as_bytes()).await;
                            tokio::time::sleep(d).await;
                            let _ = s.write_all(stale.as_bytes()).await;
                        }
                        _ => {
                            let _ = s.write_all(resp.as_bytes()).await;
                        }
                    }
                    first = false;
                }
            });
        }
    });
    (url, n)
}

async fn check(delay: Option<Duration>, retry_unsent: u32) {
    let (url, _) = desync_server(delay).await;
    let client = Client::builder()
        .max_per_host(1)
        .retry_unsent(retry_unsent)
        .build()
        .unwrap();
    for i in 0..6 {
        // The extra bytes come while the connection is idle: before the
        // next request is written. (Bytes that come after it was written
        // are, to any HTTP/1.1 client, its response.)
        if delay.is_some() {
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let r = within("a request", client.get(&url)).await;
        match r {
            Ok(r) => {
                let body = within("a body", r.into_body().bytes()).await;
                if let Ok(body) = body {
                    let body = String::from_utf8_lossy(&body).to_string();
                    assert!(body.starts_with("fresh"), "request {i}: read {body:?}");
                }
            }
            Err(e) => panic!("request {i} ({delay:?}): {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_response_in_the_same_write() {
    // In the same write: the response's end reaches the caller (and the
    // connection goes back) before hyper, going idle, finds the extra bytes
    // and closes it; a request handed it at once is refused unsent and
    // retried (`retry_unsent`, as hyper-util's `retry_canceled_requests`).
    check(None, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_response_a_moment_later() {
    check(Some(Duration::from_millis(10)), 3).await;
    // While idle: the connection is closed before any request is given it,
    // so no retry is needed.
    check(Some(Duration::from_millis(10)), 0).await;
}
