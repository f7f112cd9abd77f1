//! Audit: bad or extreme input through the public API gives typed errors
//! (never a panic), and a request's route is what the docs say it is:
//! - routes: scheme, host (any case) and port, so `http://h/` and
//!   `http://h:80/` are one route, and the route of `HttpRoute::http(h, 80)`
//!   (as given to `ClientBuilder::route`) is the route of `http://h/`;
//! - zero limits and zero timeouts are refused at build, naming the
//!   setting; `Duration::MAX` everywhere is "unbounded" and serves;
//! - bad URIs, unknown schemes, `https://` without roots and unknown
//!   identities fail before anything is sent;
//! - unknown routes in the pool's per-route calls are answered, a closed
//!   client answers `Closed`.
#![cfg(feature = "http")]

mod http_util;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use http::Request;
use http_util::within;
use wharf_test_servers::Http1Server;
use wharf_tokio::http::{Body, Client, HttpError, HttpRoute, Identity};
use wharf_tokio::{DrainMode, RouteConfig};

fn hash(r: &HttpRoute) -> u64 {
    let mut h = DefaultHasher::new();
    r.hash(&mut h);
    h.finish()
}

fn route_of(client: &Client, uri: &str) -> HttpRoute {
    client
        .route(&Request::get(uri).body(()).unwrap())
        .unwrap_or_else(|e| panic!("{uri}: {e:?}"))
}

#[tokio::test]
async fn the_default_port_is_the_same_route() {
    let client = Client::builder();
    #[cfg(feature = "rustls")]
    let client = client.tls_roots(wharf_tokio::http::rustls::RootCertStore::empty());
    let client = client.build().unwrap();
    for (a, b) in [
        ("http://h/", "http://h:80/"),
        ("http://H:80/x", "http://h/y"),
        ("http://[::1]/", "http://[::1]:80/"),
        ("http://u:p@h/", "http://h:80/"),
    ] {
        let (ra, rb) = (route_of(&client, a), route_of(&client, b));
        assert_eq!(ra, rb, "{a} and {b}: one scheme, host and port");
        assert_eq!(hash(&ra), hash(&rb), "{a} and {b}: equal routes hash alike");
    }
    assert_eq!(
        route_of(&client, "http://h/"),
        HttpRoute::http("h", 80).unwrap()
    );
    assert_eq!(
        hash(&route_of(&client, "http://h/")),
        hash(&HttpRoute::http("h", 80).unwrap())
    );
    assert_ne!(
        route_of(&client, "http://h/"),
        route_of(&client, "http://h:81/")
    );
    #[cfg(feature = "rustls")]
    {
        for (a, b) in [
            ("https://api.example.com/", "https://api.example.com:443/"),
            ("https://API.example.com:443/", "https://api.example.com/x"),
        ] {
            let (ra, rb) = (route_of(&client, a), route_of(&client, b));
            assert_eq!(ra, rb, "{a} and {b}");
            assert_eq!(hash(&ra), hash(&rb), "{a} and {b}");
        }
        let https = HttpRoute::https("api.example.com", 443).unwrap();
        assert_eq!(route_of(&client, "https://api.example.com/"), https);
        assert_eq!(
            hash(&route_of(&client, "https://api.example.com/")),
            hash(&https)
        );
        assert_ne!(
            route_of(&client, "http://h/"),
            route_of(&client, "https://h:80/")
        );
    }
}

/// A route configured with `HttpRoute::http(host, port)` is the route of
/// requests to `http://host:port/`: its settings apply to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_route_applies_to_its_requests() {
    let server = Http1Server::builder().start().await;
    let port = server.addr().port();
    let route = HttpRoute::http("127.0.0.1", port).unwrap();
    let client = Client::builder()
        .max_per_host(4)
        .route(
            route.clone(),
            RouteConfig {
                min_idle: Some(2),
                ..RouteConfig::default()
            },
        )
        .build()
        .unwrap();
    server
        .wait_for("the route's warm-up", |s| s.accepted == 2)
        .await;
    let r = within("a request", client.get(&server.url("/")))
        .await
        .unwrap();
    assert!(r.body().info().reused, "served by a warm connection");
    r.into_body().bytes().await.unwrap();
    let req = Request::get(server.url("/")).body(()).unwrap();
    assert_eq!(client.route(&req).unwrap(), route);
    assert!(client.pool().route_stats(&route).is_some());
}

#[tokio::test]
async fn zero_limits_and_timeouts_are_config_errors() {
    let cases: Vec<(&str, Result<Client, HttpError>)> = vec![
        ("max_total(0)", Client::builder().max_total(0).build()),
        ("max_per_host(0)", Client::builder().max_per_host(0).build()),
        ("max_pending(0)", Client::builder().max_pending(0).build()),
        (
            "connect_timeout(0)",
            Client::builder().connect_timeout(Duration::ZERO).build(),
        ),
        (
            "idle_timeout(0)",
            Client::builder().idle_timeout(Duration::ZERO).build(),
        ),
        (
            "max_lifetime(0)",
            Client::builder().max_lifetime(Duration::ZERO).build(),
        ),
        (
            "max_per_host above max_total with min_idle",
            Client::builder()
                .max_total(1)
                .max_per_host(1)
                .min_idle_per_host(2)
                .build(),
        ),
        (
            "preconnect_ratio(7)",
            Client::builder().preconnect_ratio(7.0).build(),
        ),
        (
            "preconnect_ratio(NaN)",
            Client::builder().preconnect_ratio(f32::NAN).build(),
        ),
    ];
    let mut cases = cases;
    cases.push((
        "max_total(u32::MAX)",
        Client::builder().max_total(u32::MAX).build(),
    ));
    cases.push(("max_routes(0)", Client::builder().max_routes(0).build()));
    cases.push((
        "max_routes(usize::MAX)",
        Client::builder().max_routes(usize::MAX).build(),
    ));
    for (what, r) in cases {
        match r {
            Err(HttpError::Config { .. }) => {}
            Err(e) => panic!("{what}: not a config error: {e:?}"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_durations_serve() {
    let server = Http1Server::builder()
        .keep_alive_header(u64::MAX)
        .start()
        .await;
    let client = Client::builder()
        .pool_timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .request_timeout(Duration::MAX)
        .idle_timeout(Duration::MAX)
        .validate_after_inactivity(Duration::MAX)
        .max_lifetime(Duration::MAX)
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = within("a request", client.get(&server.url("/")))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.into_body().bytes().await.unwrap();
    }
    assert_eq!(client.stats().http1_connections, 1);
    // A request that waits with an unbounded pool timeout waits, and is
    // served (the deadline saturates, it does not wrap).
    let client = Client::builder()
        .max_per_host(1)
        .pool_timeout(Duration::MAX)
        .request_timeout(Duration::MAX)
        .build()
        .unwrap();
    let held = {
        let (client, url) = (client.clone(), server.url("/hold"));
        tokio::spawn(async move { client.get(&url).await?.into_body().bytes().await })
    };
    server.wait_for("held", |s| s.held == 1).await;
    let waiter = {
        let (client, url) = (client.clone(), server.url("/"));
        tokio::spawn(async move { client.get(&url).await?.into_body().bytes().await })
    };
    http_util::until("the waiter waits", || client.pool().stats().pending == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "{:?}", client.pool().stats());
    server.release_held(1);
    within("held", held).await.unwrap().unwrap();
    within("the waiter", waiter).await.unwrap().unwrap();
    // The largest stream cap: a client that serves.
    let client = Client::builder().h2_max_streams(u32::MAX).build().unwrap();
    let r = within("a request", client.get(&server.url("/")))
        .await
        .unwrap();
    r.into_body().bytes().await.unwrap();
    // Zero request timeout: an answer, not a panic.
    let client = Client::builder()
        .request_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let _ = within("a zero timeout", client.get(&server.url("/"))).await;
}

#[tokio::test]
async fn bad_requests_fail_before_anything_is_sent() {
    let client = Client::builder().build().unwrap();
    for uri in [
        "not a uri",
        "/relative",
        "ftp://h/",
        "http://",
        "h:80",
        "http://:80/",
        "http://h:99999/",
        "",
    ] {
        match within(uri, client.get(uri)).await {
            Err(HttpError::InvalidRequest { .. }) => {}
            other => panic!("{uri:?}: {other:?}"),
        }
    }
    // https without roots; an unknown identity; an identity on http://.
    match client.get("https://h/").await {
        Err(HttpError::InvalidRequest { .. }) => {}
        other => panic!("https without roots: {other:?}"),
    }
    let mut req = Request::get("https://h/").body(Body::empty()).unwrap();
    req.extensions_mut().insert(Identity::new("nobody"));
    assert!(matches!(
        client.request(req).await,
        Err(HttpError::InvalidRequest { .. })
    ));
    let mut req = Request::get("http://h/").body(Body::empty()).unwrap();
    req.extensions_mut().insert(Identity::new("nobody"));
    assert!(matches!(
        client.request(req).await,
        Err(HttpError::InvalidRequest { .. })
    ));
    // Every call counts as a request asked for, and as failed: the 8 URIs
    // (3 of them not even URIs, refused by `get` itself) and the 3 requests.
    let s = client.stats();
    assert_eq!((s.requests, s.failed), (11, 11), "{s:?}");
    assert_eq!(client.pool().counters().connects, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_a_closed_client() {
    let server = Http1Server::builder().start().await;
    let client = Client::builder().build().unwrap();
    let unknown = HttpRoute::http("unknown.invalid", 1).unwrap();
    let pool = client.pool();
    assert!(pool.route_stats(&unknown).is_none());
    pool.drain(Some(&unknown), DrainMode::DrainExisting);
    pool.drain(Some(&unknown), DrainMode::DrainAndDelete);
    pool.set_route_health(&unknown, true).unwrap();
    pool.check_invariants().unwrap();
    let r = within("a request", client.get(&server.url("/")))
        .await
        .unwrap();
    r.into_body().bytes().await.unwrap();
    within("close", client.close()).await;
    match within("after close", client.get(&server.url("/"))).await {
        Err(HttpError::Pool(wharf_tokio::Error::Closed { .. })) => {}
        other => panic!("after close: {other:?}"),
    }
    server
        .wait_for("the server saw the close", |s| s.open == 0)
        .await;
}
