//! The HTTP client's retry rules (issue 13), on loopback servers:
//! - a request hyper hands back unsent (its connection closed before it was
//!   written) is retried on another connection: HTTP/1 (the connection
//!   task saw the server's FIN) and HTTP/2 (`try_send_request` gives the
//!   request back after a GOAWAY ended the connection); the pool's watch
//!   and hand-out check are hidden here (they would keep such connections
//!   from being handed out at all), and the control without retries fails;
//! - a non-idempotent request that was sent is not retried;
//! - an idempotent request on a reused connection that got EOF before any
//!   response byte is retried once (and only once; the control with the
//!   rule off fails);
//! - not retried: a response that had started (a byte came), and a fresh
//!   connection (Go's rule asks for a reused one);
//! - "reused" includes a connection that never served a request but sat
//!   idle in the pool (opened for a request another connection served, or
//!   for warm-up): the server closing it as the request comes is retried
//!   (the control with the rule off fails).
#![cfg(feature = "http")]

mod http_util;

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use http::{Method, Request};
use http_util::{flaky_server, scripted_server, until, within, Blind, Reply, Then};
use wharf_test_servers::{Http1Server, Http2Server};
use wharf_tokio::http::{Body, Client, HttpError};
use wharf_tokio::{Lease, RouteConfig};

async fn text<C>(client: &Client<C>, method: Method, url: &str) -> Result<String, HttpError>
where
    C: wharf_tokio::http::HttpConnect,
{
    let body = if method == Method::POST {
        Body::from("payload")
    } else {
        Body::empty()
    };
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(body)
        .unwrap();
    let r = within("request", client.request(req)).await?;
    let b = r.into_body().bytes().await?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_request_is_retried_http1() {
    for retry in [true, false] {
        let server = Http1Server::builder()
            .idle_timeout(Duration::from_millis(50))
            .close_linger(Duration::ZERO)
            .start()
            .await;
        let client = Client::builder()
            .retry_unsent(if retry { 3 } else { 0 })
            .build_with(Blind)
            .unwrap();
        let url = server.url("/");
        assert_eq!(text(&client, Method::POST, &url).await.unwrap(), "ok\n");
        server
            .wait_for("idle close", |s| s.server_closed() == 1)
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The pool (blind) hands out the dead connection; hyper refuses to
        // send on it and gives the request back.
        let r = text(&client, Method::POST, &url).await;
        let st = client.stats();
        if retry {
            assert_eq!(r.unwrap(), "ok\n", "retried on a new connection");
            assert_eq!(st.retried_unsent, 1);
            assert_eq!(server.stats().accepted, 2);
        } else {
            let e = r.unwrap_err();
            assert!(matches!(e, HttpError::Request { attempts: 1, .. }), "{e:?}");
            assert_eq!(st.retried_unsent, 0);
        }
        assert_eq!(
            server.stats().late_requests,
            0,
            "never written on the dead one"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_request_is_retried_http2() {
    for retry in [true, false] {
        let server = Http2Server::builder().start().await;
        let client = Client::builder()
            .http2_prior_knowledge(true)
            .retry_unsent(if retry { 3 } else { 0 })
            .build_with(Blind)
            .unwrap();
        let url = server.url("/");
        assert_eq!(text(&client, Method::POST, &url).await.unwrap(), "ok\n");
        server.goaway_all();
        server
            .wait_for("the GOAWAY'd connection closed", |s| s.closed() == 1)
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = text(&client, Method::POST, &url).await;
        if retry {
            assert_eq!(r.unwrap(), "ok\n");
            assert_eq!(client.stats().retried_unsent, 1);
            assert_eq!(server.stats().accepted, 2);
        } else {
            let e = r.unwrap_err();
            assert!(matches!(e, HttpError::Request { attempts: 1, .. }), "{e:?}");
        }
        assert_eq!(server.stats().requests, 1 + u64::from(retry));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_post_is_not_retried() {
    // Each connection answers its first request, then reads the second and
    // closes without a byte.
    let (addr, counts) = flaky_server(1, Then::Close).await;
    let client = Client::builder().build().unwrap();
    let url = format!("http://{addr}/");
    assert_eq!(
        text(&client, Method::POST, &url).await.unwrap(),
        "conn 1 req 1"
    );
    let e = text(&client, Method::POST, &url).await.unwrap_err();
    match &e {
        HttpError::Request {
            route, attempts, ..
        } => {
            assert_eq!(*attempts, 1);
            assert_eq!(route, &format!("http://127.0.0.1:{}", addr.port()));
        }
        e => panic!("{e:?}"),
    }
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!((counts.conns(), counts.requests()), (1, 2), "sent once");
    let st = client.stats();
    assert_eq!((st.retried_unsent, st.retried_reused, st.failed), (0, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_on_reused_connection_is_retried_once() {
    for rule in [true, false] {
        let (addr, counts) = flaky_server(1, Then::Close).await;
        let client = Client::builder().retry_idempotent(rule).build().unwrap();
        let url = format!("http://{addr}/");
        assert_eq!(
            text(&client, Method::GET, &url).await.unwrap(),
            "conn 1 req 1"
        );
        let r = text(&client, Method::GET, &url).await;
        if rule {
            assert_eq!(r.unwrap(), "conn 2 req 1", "retried on a new connection");
            assert_eq!(client.stats().retried_reused, 1);
            assert_eq!((counts.conns(), counts.requests()), (2, 3));
        } else {
            assert!(r.is_err(), "the control: no retry, the request fails");
            assert_eq!((counts.conns(), counts.requests()), (1, 2));
        }
    }
    // Once: two reused connections that both fail; the retry is on the
    // second, and then it stops.
    let (addr, counts) = flaky_server(1, Then::Close).await;
    let client = Client::builder().build().unwrap();
    let url = format!("http://{addr}/");
    // Two connections, each serving one request: both responses are taken
    // before either body is read, so both leases are held at once. (Reading
    // each body as its response came let the first connection go idle while
    // the second request still waited for its connect: the pool granted it
    // the idle one, the server closed that on its second request, and the
    // retry went to the second connection, leaving one idle: about 1 run in
    // 20 under load.)
    let get = || {
        Request::builder()
            .method(Method::GET)
            .uri(&url)
            .body(Body::empty())
            .unwrap()
    };
    let (a, b) = within("two requests", async {
        tokio::join!(client.request(get()), client.request(get()))
    })
    .await;
    let (a, b) = (a.unwrap(), b.unwrap());
    let a = a.into_body().bytes().await.unwrap();
    let b = b.into_body().bytes().await.unwrap();
    let mut first = [
        String::from_utf8_lossy(&a).into_owned(),
        String::from_utf8_lossy(&b).into_owned(),
    ];
    first.sort();
    assert_eq!(first, ["conn 1 req 1", "conn 2 req 1"]);
    assert_eq!(client.stats().retried_reused, 0);
    assert_eq!(client.pool().stats().idle, 2);
    let e = text(&client, Method::GET, &url).await.unwrap_err();
    assert!(matches!(e, HttpError::Request { attempts: 2, .. }), "{e:?}");
    assert_eq!(client.stats().retried_reused, 1);
    until("both requests read", || counts.requests() == 4).await;
    assert_eq!(counts.conns(), 2, "no third connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_response_or_fresh_connection_is_not_retried() {
    // A byte of the response came: not "EOF before any response byte".
    let (addr, counts) = flaky_server(1, Then::Partial).await;
    let client = Client::builder().build().unwrap();
    let url = format!("http://{addr}/");
    text(&client, Method::GET, &url).await.unwrap();
    let e = text(&client, Method::GET, &url).await.unwrap_err();
    assert!(matches!(e, HttpError::Request { attempts: 1, .. }), "{e:?}");
    assert_eq!((counts.conns(), counts.requests()), (1, 2));
    // A fresh connection: the failure is the server's answer, not a stale
    // connection.
    let (addr, counts) = flaky_server(0, Then::Close).await;
    let e = text(&client, Method::GET, &format!("http://{addr}/"))
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::Request { attempts: 1, .. }), "{e:?}");
    assert_eq!((counts.conns(), counts.requests()), (1, 1));
    assert_eq!(client.stats().retried_reused, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn never_used_idle_connection_is_reused_and_retried() {
    // Connection 1 opened for a lease held here; a request queues behind it
    // and its own connect (connection 2) starts; connection 1 comes back
    // and serves that request (current-thread runtime: connection 2's
    // connect task has not run yet). Connection 2 then lands with no
    // request left: idle, never used. The server's script: the 1st request
    // answered with `Connection: close` (connection 1 leaves), the 2nd read
    // and closed without a byte (connection 2: closed by the server as the
    // request came, as an idle timeout crossing it), the rest answered.
    for rule in [true, false] {
        let (addr, script) = scripted_server(&[Reply::AnswerClose, Reply::Close]).await;
        let client = Client::builder()
            .max_per_host(2)
            .retry_idempotent(rule)
            .build()
            .unwrap();
        let url = format!("http://{addr}/");
        let route = client
            .route(&Request::get(url.as_str()).body(()).unwrap())
            .unwrap();
        let held = within("lease", client.pool().lease(&route)).await.unwrap();
        assert!(!Lease::is_reused(&held), "straight from its connect");
        let mut queued = std::pin::pin!(text(&client, Method::GET, &url));
        let first = std::future::poll_fn(|cx| Poll::Ready(queued.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "the request waits for a connection");
        assert_eq!(client.pool().stats().connecting, 1, "its connect started");
        drop(held);
        assert_eq!(queued.await.unwrap(), "conn 1 req 1");
        until("connection 2 idle, connection 1 closed", || {
            let s = client.pool().stats();
            (s.idle, s.connections, s.connecting) == (1, 1, 0)
        })
        .await;
        assert_eq!((script.counts.conns(), script.counts.requests()), (2, 1));
        let r = text(&client, Method::GET, &url).await;
        let st = client.stats();
        if rule {
            assert_eq!(r.unwrap(), "conn 3 req 1", "retried on a new connection");
            assert_eq!((st.retried_reused, st.failed), (1, 0));
        } else {
            assert!(
                matches!(r, Err(HttpError::Request { attempts: 1, .. })),
                "the control: no retry, the request fails: {r:?}"
            );
            assert_eq!((st.retried_reused, st.failed), (0, 1));
        }
        let per_conn = if rule { vec![1, 1, 1] } else { vec![1, 1] };
        until("the server read every request", || {
            script.per_conn() == per_conn
        })
        .await;
        assert_eq!(st.http1_connections, per_conn.len() as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmed_up_connection_is_reused_and_retried() {
    // A connection opened for warm-up (min idle 1) serves no request until
    // one comes; the server closes it as that request comes.
    for rule in [true, false] {
        let (addr, script) = scripted_server(&[Reply::Close]).await;
        let client = Client::builder().retry_idempotent(rule).build().unwrap();
        let url = format!("http://{addr}/");
        let route = client
            .route(&Request::get(url.as_str()).body(()).unwrap())
            .unwrap();
        let warm = RouteConfig {
            min_idle: Some(1),
            ..RouteConfig::default()
        };
        client.pool().set_route_config(&route, warm).unwrap();
        until("the warm-up connection idle", || {
            client.pool().stats().idle == 1
        })
        .await;
        let r = text(&client, Method::GET, &url).await;
        let st = client.stats();
        if rule {
            let body = r.unwrap();
            assert!(body.ends_with(" req 1") && body != "conn 1 req 1", "{body}");
            assert_eq!((st.retried_reused, st.failed), (1, 0));
            until("both requests read", || script.counts.requests() == 2).await;
        } else {
            assert!(
                matches!(r, Err(HttpError::Request { attempts: 1, .. })),
                "the control: no retry, the request fails: {r:?}"
            );
            assert_eq!((st.retried_reused, st.failed), (0, 1));
        }
        // The warm-up connection got exactly the one request it failed.
        assert_eq!(script.per_conn()[0], 1);
        assert_eq!(script.counts.requests(), if rule { 2 } else { 1 });
    }
}
