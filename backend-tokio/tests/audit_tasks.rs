//! Audit: a client's tasks end with it. The client runs on a runtime of its
//! own (`ClientBuilder::runtime`), the servers on another; after HTTP/1.1,
//! HTTP/2 and failed requests, closing the client (or only dropping it)
//! leaves no task alive on the client's runtime: the pool's timer task,
//! the connect tasks and hyper's connection tasks all ended.
#![cfg(feature = "http")]

use std::time::Duration;

use tokio::runtime::{Builder, Runtime};
use wharf_test_servers::{Http1Server, Http2Server, RefusedPort};
use wharf_tokio::http::Client;

fn rt() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn alive_after(rt: &Runtime, what: &str) {
    for _ in 0..1000 {
        if rt.metrics().num_alive_tasks() == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!(
        "{what}: {} tasks still alive on the client's runtime",
        rt.metrics().num_alive_tasks()
    );
}

fn run(close: bool) {
    let servers = rt();
    let (h1, h2, refused) = servers.block_on(async {
        (
            Http1Server::builder().start().await,
            Http2Server::builder().start().await,
            RefusedPort::new(),
        )
    });
    let (u1, u2, u3) = (
        h1.url("/"),
        h2.url("/"),
        format!("http://{}/", refused.addr()),
    );
    let client_rt = rt();
    client_rt.block_on(async {
        let c1 = Client::builder()
            .runtime(tokio::runtime::Handle::current())
            .build()
            .unwrap();
        let c2 = Client::builder()
            .http2_prior_knowledge(true)
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (c1, c2) = (c1.clone(), c2.clone());
            let (u1, u2, u3) = (u1.clone(), u2.clone(), u3.clone());
            tasks.push(tokio::spawn(async move {
                c1.get(&u1)
                    .await
                    .unwrap()
                    .into_body()
                    .bytes()
                    .await
                    .unwrap();
                c2.get(&u2)
                    .await
                    .unwrap()
                    .into_body()
                    .bytes()
                    .await
                    .unwrap();
                assert!(c1.get(&u3).await.is_err());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        if close {
            c1.close().await;
            c2.close().await;
        }
    });
    alive_after(&client_rt, if close { "closed" } else { "dropped" });
    servers.block_on(async {
        h1.wait_for("HTTP/1.1 closed", |s| s.open == 0).await;
        h2.wait_for("HTTP/2 closed", |s| s.open == 0).await;
    });
}

#[test]
fn closing_the_client_ends_its_tasks() {
    run(true);
}

#[test]
fn dropping_the_client_ends_its_tasks() {
    run(false);
}
