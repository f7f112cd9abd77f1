//! TLS: ALPN picks the protocol, client certificates name the identity of each connection.

mod common;

use std::sync::Arc;

use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use wharf_test_servers::rustls::ClientConfig;
use wharf_test_servers::tokio_rustls::{client::TlsStream, TlsConnector};
use wharf_test_servers::{
    Alpn, ClientAuth, CloseReason, Http1Server, Http2Server, Protocol, TestPki,
};

async fn tls(
    addr: std::net::SocketAddr,
    pki: &TestPki,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(cfg)
        .connect(pki.server_name(), tcp)
        .await
}

fn alpn_of(s: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    s.get_ref().1.alpn_protocol().map(|p| p.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_both_serves_h2_to_an_h2_client_and_http11_to_an_http11_client() {
    let pki = TestPki::new();
    let server = Http1Server::builder()
        .tls(pki.server_tls().alpn(Alpn::Both))
        .start()
        .await;
    assert!(server.url("/").starts_with("https://localhost:"));
    let s = tls(
        server.addr(),
        &pki,
        pki.client_config(&["h2", "http/1.1"], None),
    )
    .await
    .unwrap();
    assert_eq!(
        alpn_of(&s).as_deref(),
        Some(&b"h2"[..]),
        "server prefers h2"
    );
    let (c, _d) = h2_over(s).await;
    let r = c.get("/conn").await.unwrap();
    assert_eq!(r.text(), "id=1 req=1 proto=Http2 alpn=h2 identity=-\n");

    let s = tls(server.addr(), &pki, pki.client_config(&["http/1.1"], None))
        .await
        .unwrap();
    assert_eq!(alpn_of(&s).as_deref(), Some(&b"http/1.1"[..]));
    let mut c = h1_over(s).await;
    let r = c.get("/conn").await.unwrap();
    assert_eq!(
        r.text(),
        "id=2 req=1 proto=Http1 alpn=http/1.1 identity=-\n"
    );

    let st = server.stats();
    assert_eq!(st.conns[0].protocol, Protocol::Http2);
    assert_eq!(st.conns[0].alpn.as_deref(), Some("h2"));
    assert_eq!(st.conns[1].protocol, Protocol::Http1);
    assert_eq!(st.conns[1].alpn.as_deref(), Some("http/1.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_alpn_the_builder_protocol_is_spoken() {
    let pki = TestPki::new();
    let server = Http2Server::builder()
        .tls(pki.server_tls().alpn(Alpn::None))
        .start()
        .await;
    let s = tls(server.addr(), &pki, pki.client_config(&["h2"], None))
        .await
        .unwrap();
    assert_eq!(alpn_of(&s), None, "the server offered no ALPN");
    let (c, _d) = h2_over(s).await;
    assert_eq!(c.get("/").await.unwrap().status, 200);
    let st = server.stats();
    assert_eq!(
        (st.conns[0].protocol, st.conns[0].alpn.clone()),
        (Protocol::Http2, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_only_server_fails_the_handshake_of_an_http11_only_client() {
    let pki = TestPki::new();
    let server = Http2Server::builder()
        .tls(pki.server_tls().alpn(Alpn::H2))
        .start()
        .await;
    let r = tls(server.addr(), &pki, pki.client_config(&["http/1.1"], None)).await;
    assert!(r.is_err(), "handshake should fail (no common protocol)");
    let st = server
        .wait_for("failure counted", |s| s.tls_failures == 1)
        .await;
    assert!(matches!(
        st.conns[0].close,
        Some(CloseReason::TlsHandshake(_))
    ));
    assert_eq!(st.open, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identities_are_recorded_per_connection() {
    let pki = TestPki::new();
    let server = Http2Server::builder()
        .tls(pki.server_tls().client_auth(ClientAuth::Required))
        .start()
        .await;
    let (alice, bob) = (pki.alice(), pki.bob());
    let sa = tls(
        server.addr(),
        &pki,
        pki.client_config(&["h2"], Some(&alice)),
    )
    .await
    .unwrap();
    let sb = tls(server.addr(), &pki, pki.client_config(&["h2"], Some(&bob)))
        .await
        .unwrap();
    let (ca, _da) = h2_over(sa).await;
    let (cb, _db) = h2_over(sb).await;
    for _ in 0..3 {
        assert!(ca
            .get("/conn")
            .await
            .unwrap()
            .text()
            .ends_with("identity=alice\n"));
        assert!(cb
            .get("/conn")
            .await
            .unwrap()
            .text()
            .ends_with("identity=bob\n"));
    }
    let carol = pki.client("carol");
    let sc = tls(
        server.addr(),
        &pki,
        pki.client_config(&["http/1.1"], Some(&carol)),
    )
    .await
    .unwrap();
    let mut cc = h1_over(sc).await;
    assert!(cc
        .get("/conn")
        .await
        .unwrap()
        .text()
        .ends_with("identity=carol\n"));
    let st = server.stats();
    let ids: Vec<_> = st
        .conns
        .iter()
        .map(|c| c.identity.clone().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "bob", "carol"]);
    assert_eq!(st.requests_per_conn(), vec![3, 3, 1]);
    assert_eq!(
        pki.client("alice").cert_pem,
        alice.cert_pem,
        "same identity, same cert"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_client_certificate_is_enforced() {
    let pki = TestPki::new();
    let server = Http1Server::builder()
        .tls(pki.server_tls().client_auth(ClientAuth::Required))
        .start()
        .await;
    // No certificate: with TLS 1.3 the client finishes its handshake before the server's
    // verdict, so the failure shows on the first read at the latest.
    let no_cert = async {
        let mut s = tls(server.addr(), &pki, pki.client_config(&["http/1.1"], None)).await?;
        let mut b = [0u8; 16];
        s.read(&mut b).await
    };
    assert!(!matches!(no_cert.await, Ok(n) if n > 0));
    // A certificate from another CA.
    let other = TestPki::new();
    let foreign = async {
        let cfg = pki.client_config(&["http/1.1"], Some(&other.alice()));
        let mut s = tls(server.addr(), &pki, cfg).await?;
        let mut b = [0u8; 16];
        s.read(&mut b).await
    };
    assert!(!matches!(foreign.await, Ok(n) if n > 0));
    let st = server.wait_for("2 failures", |s| s.tls_failures == 2).await;
    assert!(st
        .conns
        .iter()
        .all(|c| matches!(c.close, Some(CloseReason::TlsHandshake(_)))));
    assert_eq!(st.requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_auth_accepts_anonymous_and_named_clients() {
    let pki = TestPki::new();
    let server = Http1Server::builder()
        .tls(pki.server_tls().client_auth(ClientAuth::Optional))
        .start()
        .await;
    let s = tls(server.addr(), &pki, pki.client_config(&[], None))
        .await
        .unwrap();
    let mut anon = h1_over(s).await;
    assert!(anon
        .get("/conn")
        .await
        .unwrap()
        .text()
        .ends_with("alpn=- identity=-\n"));
    let s = tls(
        server.addr(),
        &pki,
        pki.client_config(&[], Some(&pki.bob())),
    )
    .await
    .unwrap();
    let mut bob = h1_over(s).await;
    assert!(bob
        .get("/conn")
        .await
        .unwrap()
        .text()
        .ends_with("identity=bob\n"));
    let st = server.stats();
    assert_eq!(st.conns[0].identity, None);
    assert_eq!(st.conns[1].identity.as_deref(), Some("bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_http11_max_requests_closes_the_connection() {
    let pki = TestPki::new();
    let server = Http1Server::builder()
        .max_requests_per_conn(1)
        .tls(pki.server_tls().alpn(Alpn::Http11))
        .start()
        .await;
    let s = tls(server.addr(), &pki, pki.client_config(&["http/1.1"], None))
        .await
        .unwrap();
    let mut c = h1_over(s).await;
    let r = c.get("/").await.unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    within("client connection ends", &mut c.driver)
        .await
        .unwrap()
        .unwrap();
    let st = server.wait_for("closed", |s| s.open == 0).await;
    assert_eq!(st.conns[0].close, Some(CloseReason::MaxRequests));
}

#[test]
fn pem_exports_are_well_formed() {
    let pki = TestPki::new();
    assert!(pki.ca_pem().contains("BEGIN CERTIFICATE"));
    let server = pki.server_identity();
    assert!(server.cert_pem.contains("BEGIN CERTIFICATE"));
    assert!(server.key_pem.contains("BEGIN PRIVATE KEY"));
    assert_eq!(pki.alice().name, "alice");
    assert_ne!(pki.alice().cert_pem, pki.bob().cert_pem);
    assert_eq!(
        pki.identity_of(&pki.bob().cert_chain[0]).as_deref(),
        Some("bob")
    );
    assert_eq!(pki.identity_of(&pki.ca_der()), None);
}
