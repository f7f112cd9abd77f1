//! Audit: connects that fail after TCP, typed and bounded:
//! - a TLS server whose certificate another CA signed: `ConnectFailed`
//!   at the TLS step, remote, one connect per request (no retry loop);
//! - `https://` to a plaintext HTTP/1.1 server: the TLS step, no hang;
//! - a server that accepts and never speaks: the connect timeout covers
//!   the TLS handshake and the wait for HTTP/2 SETTINGS
//!   (`ConnectFailure::Timeout`);
//! - HTTP/2 with prior knowledge to an HTTP/1.1 server: the handshake
//!   step, no hang; the route serves again once asked properly.
#![cfg(feature = "rustls")]

mod http_util;

use std::time::Duration;

use http_util::within;
use tokio::net::TcpListener;
use wharf_test_servers::{Http1Server, TestPki};
use wharf_tokio::http::{Client, ConnectError, ConnectStep, HttpError};
use wharf_tokio::ConnectFailure;

/// The step and the reason of a connect failure.
fn failure(e: &HttpError) -> Option<(ConnectStep, ConnectFailure)> {
    let HttpError::Pool(wharf_tokio::Error::ConnectFailed { source, reason, .. }) = e else {
        return None;
    };
    let step = source.as_deref().map(|e: &ConnectError| e.step);
    Some((step?, *reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ca_fails_the_tls_step() {
    let (ours, theirs) = (TestPki::new(), TestPki::new());
    let server = Http1Server::builder()
        .tls(theirs.server_tls())
        .start()
        .await;
    let client = Client::builder()
        .tls_roots(ours.root_store())
        .build()
        .unwrap();
    for i in 0..3 {
        let e = within("a request", client.get(&server.url("/")))
            .await
            .unwrap_err();
        assert_eq!(
            failure(&e),
            Some((ConnectStep::Tls, ConnectFailure::Remote)),
            "{e:?}"
        );
        assert_eq!(client.pool().counters().connects, i + 1);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.pool().counters().connects, 3, "no retry loop");
    assert_eq!(server.stats().tls_failures, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plaintext_server() {
    let pki = TestPki::new();
    let server = Http1Server::builder().start().await;
    let client = Client::builder()
        .tls_roots(pki.root_store())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/", server.addr().port());
    let e = within("a request", client.get(&url)).await.unwrap_err();
    assert_eq!(failure(&e).map(|f| f.0), Some(ConnectStep::Tls), "{e:?}");
    assert!(e.is_connect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_bounded_by_the_connect_timeout() {
    let pki = TestPki::new();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    // Accepts, holds, never writes a byte.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let client = Client::builder()
        .tls_roots(pki.root_store())
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/");
    let e = within("a request", client.get(&url)).await.unwrap_err();
    match &e {
        HttpError::Pool(wharf_tokio::Error::ConnectFailed { reason, source, .. }) => {
            assert_eq!(*reason, ConnectFailure::Timeout, "{e:?}");
            assert!(source.is_none(), "the pool's own timeout: {e:?}");
        }
        other => panic!("a silent TLS server: {other:?}"),
    }
    let c = client.pool().counters();
    assert_eq!(c.connect_failures_for(ConnectFailure::Timeout), 1, "{c:?}");
    assert_eq!(client.pool().stats().connections, 0);
    // HTTP/2 with prior knowledge: the connect waits for the server's
    // SETTINGS, within the same bound.
    let h2c = Client::builder()
        .http2_prior_knowledge(true)
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = within(
        "an h2c request",
        h2c.get(&format!("http://127.0.0.1:{port}/")),
    )
    .await
    .unwrap_err();
    match &e {
        HttpError::Pool(wharf_tokio::Error::ConnectFailed { reason, .. }) => {
            assert_eq!(*reason, ConnectFailure::Timeout, "{e:?}")
        }
        other => panic!("a silent h2c server: {other:?}"),
    }
    assert_eq!(h2c.pool().stats().connections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prior_knowledge_to_an_http1_server() {
    let server = Http1Server::builder().start().await;
    let h2 = Client::builder()
        .http2_prior_knowledge(true)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let e = within("an h2c request", h2.get(&server.url("/")))
        .await
        .unwrap_err();
    assert_eq!(
        failure(&e).map(|f| f.0),
        Some(ConnectStep::Handshake),
        "{e:?}"
    );
    let h1 = Client::builder().build().unwrap();
    let r = within("an HTTP/1.1 request", h1.get(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
