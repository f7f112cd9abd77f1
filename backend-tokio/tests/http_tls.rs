//! The HTTP client over TLS (issue 13), with a PKI made in the test (rcgen,
//! `wharf_test_servers::TestPki`) and the loopback servers:
//! - ALPN picks h2 when the server offers it, http/1.1 when the client
//!   offers only that (or the server only that); the connection speaks
//!   what ALPN picked (checked at the server);
//! - two client identities never share a connection: each request's
//!   identity, as the server saw it on the request's connection, is the one
//!   the request asked for;
//! - a request without a certificate to a server requiring one, and a
//!   server name the certificate does not carry, fail with a typed connect
//!   error naming the route and the TLS step.
#![cfg(feature = "rustls")]

mod http_util;

use http::Request;
use http_util::within;
use wharf_test_servers::{Alpn, ClientAuth, Http1Server, TestPki};
use wharf_tokio::http::{
    Body, Client, ClientBuilder, ConnectError, ConnectStep, HttpError, Identity, TlsServerName,
};

fn tls_client(pki: &TestPki) -> ClientBuilder {
    let (alice, bob) = (pki.alice(), pki.bob());
    Client::builder()
        .tls_roots(pki.root_store())
        .tls_identity("alice", alice.cert_chain.clone(), alice.key())
        .tls_identity("bob", bob.cert_chain.clone(), bob.key())
}

async fn conn_line(
    client: &Client,
    url: &str,
    identity: Option<&str>,
) -> Result<String, HttpError> {
    let mut req = Request::get(url).body(Body::empty()).unwrap();
    if let Some(id) = identity {
        req.extensions_mut().insert(Identity::new(id));
    }
    let r = within("request", client.request(req)).await?;
    let body = r.into_body().bytes().await?;
    Ok(String::from_utf8_lossy(&body).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_picks_h2_or_http1() {
    let pki = TestPki::new();
    let both = Http1Server::builder()
        .tls(pki.server_tls().alpn(Alpn::Both))
        .start()
        .await;
    let only_h1 = Http1Server::builder()
        .tls(pki.server_tls().alpn(Alpn::Http11))
        .start()
        .await;
    let client = tls_client(&pki).build().unwrap();
    let line = conn_line(&client, &both.url("/conn"), None).await.unwrap();
    assert!(line.contains("proto=Http2 alpn=h2"), "{line}");
    let line = conn_line(&client, &only_h1.url("/conn"), None)
        .await
        .unwrap();
    assert!(line.contains("proto=Http1 alpn=http/1.1"), "{line}");
    // A client that offers only http/1.1.
    let h1 = tls_client(&pki).http1_only(true).build().unwrap();
    let line = conn_line(&h1, &both.url("/conn"), None).await.unwrap();
    assert!(line.contains("proto=Http1 alpn=http/1.1"), "{line}");
    // ... unless the request asks for HTTP/2.
    let req = Request::get(both.url("/conn"))
        .version(http::Version::HTTP_2)
        .body(Body::empty())
        .unwrap();
    let r = h1.request(req).await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    let body = r.into_body().bytes().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("alpn=h2"));
    let st = client.stats();
    assert_eq!((st.http1_connections, st.http2_connections), (1, 1));
    // The server saw each connection's protocol as the client did.
    let conns = both.stats().conns;
    let alpns: Vec<_> = conns.iter().map(|c| c.alpn.clone().unwrap()).collect();
    assert_eq!(alpns, ["h2", "http/1.1", "h2"]);
    // The HTTP/2 connection over TLS is multiplexed.
    let route = client
        .route(&Request::get(both.url("/")).body(()).unwrap())
        .unwrap();
    assert_eq!(
        client.pool().lease(&route).await.unwrap().stream_capacity(),
        Some(100)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_never_share_a_connection() {
    let pki = TestPki::new();
    for alpn in [Alpn::H2, Alpn::Http11] {
        let server = Http1Server::builder()
            .tls(
                pki.server_tls()
                    .alpn(alpn.clone())
                    .client_auth(ClientAuth::Required),
            )
            .start()
            .await;
        let client = tls_client(&pki).max_per_host(2).build().unwrap();
        let url = server.url("/conn");
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (client, url) = (client.clone(), url.clone());
            let who = ["alice", "bob"][i % 2];
            tasks.push(tokio::spawn(async move {
                let line = conn_line(&client, &url, Some(who)).await.unwrap();
                (who, line)
            }));
        }
        for t in tasks {
            let (who, line) = within("task", t).await.unwrap();
            assert!(
                line.ends_with(&format!("identity={who}")),
                "{alpn:?}: a request as {who} went on a connection of: {line}"
            );
        }
        let s = server.stats();
        // A connection the pool opened for a waiter that a release then
        // served may still be in its handshake (no identity recorded yet).
        let ids: Vec<_> = s.conns.iter().filter_map(|c| c.identity.clone()).collect();
        assert!(
            ids.iter().any(|i| i == "alice") && ids.iter().any(|i| i == "bob"),
            "{ids:?}"
        );
        assert!(
            s.conns.len() <= 4,
            "{alpn:?}: reused per identity: {} connections",
            s.conns.len()
        );
        assert_eq!(s.tls_failures, 0);
    }
}

fn connect_step(e: &HttpError) -> Option<ConnectStep> {
    let HttpError::Pool(wharf_tokio::Error::ConnectFailed { source, .. }) = e else {
        return None;
    };
    let e: &ConnectError = source.as_deref()?;
    Some(e.step)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_typed() {
    let pki = TestPki::new();
    let server = Http1Server::builder()
        .tls(pki.server_tls().client_auth(ClientAuth::Required))
        .start()
        .await;
    let client = tls_client(&pki).build().unwrap();
    // No client certificate: the server ends the handshake (TLS 1.3: the
    // client learns it at its first read, here waiting for the HTTP/2
    // server's SETTINGS).
    let e = conn_line(&client, &server.url("/conn"), None)
        .await
        .unwrap_err();
    assert!(e.route().unwrap().starts_with("https://localhost:"), "{e}");
    assert_eq!(connect_step(&e), Some(ConnectStep::Tls), "{e:?}");
    assert!(e.to_string().contains("CertificateRequired"), "{e}");
    // A name the certificate does not carry.
    let mut req = Request::get(server.url("/conn"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(Identity::new("alice"));
    req.extensions_mut()
        .insert(TlsServerName("wrong.example".into()));
    let e = client.request(req).await.unwrap_err();
    assert_eq!(connect_step(&e), Some(ConnectStep::Tls), "{e:?}");
    assert!(e.is_connect());
    assert!(
        e.to_string()
            .contains("server name wrong.example, identity alice"),
        "{e}"
    );
    // An identity the client does not know is refused before any connect.
    let mut req = Request::get(server.url("/conn"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(Identity::new("carol"));
    let e = client.request(req).await.unwrap_err();
    assert!(matches!(e, HttpError::InvalidRequest { .. }), "{e:?}");
    assert_eq!(client.pool().counters().connects, 2);
}
