//! Audit: HTTP/1.1 responses without a body (`HEAD`, `204`, `304`, a
//! zero `Content-Length`) give their connection back at once, even when
//! the caller drops the response without reading it (the usual way with a
//! `HEAD`): the next request reuses the connection.
#![cfg(feature = "http")]

mod http_util;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_util::within;
use wharf_test_servers::Http1Server;
use wharf_tokio::http::{Body, Client};

fn conn_id<B>(r: &http::Response<B>) -> u64 {
    r.headers()["x-conn-id"].to_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_responses_dropped_unread_keep_the_connection() {
    let server = Http1Server::builder()
        .handler(|req, _| match req.uri().path() {
            "/empty" => Some(http::Response::new(Bytes::new())),
            "/not-modified" => Some(
                http::Response::builder()
                    .status(StatusCode::NOT_MODIFIED)
                    .body(Bytes::new())
                    .unwrap(),
            ),
            _ => None,
        })
        .start()
        .await;
    let client = Client::builder().max_per_host(1).build().unwrap();
    let cases = [
        (Method::HEAD, "/"),
        (Method::GET, "/status/204"),
        (Method::GET, "/not-modified"),
        (Method::GET, "/empty"),
    ];
    for (method, path) in cases {
        let req = Request::builder()
            .method(method.clone())
            .uri(server.url(path))
            .body(Body::empty())
            .unwrap();
        let r = within("a request", client.request(req)).await.unwrap();
        assert_eq!(conn_id(&r), 1, "{method} {path}: {:?}", r.status());
        assert!(
            !r.body().holds_connection(),
            "{method} {path} ({}): nothing to read, the connection is back",
            r.status()
        );
        drop(r);
    }
    let r = within("a GET", client.get(&server.url("/"))).await.unwrap();
    assert_eq!(conn_id(&r), 1, "reused");
    assert_eq!(&r.into_body().bytes().await.unwrap()[..], b"ok\n");
    assert_eq!(server.stats().accepted, 1);
}
