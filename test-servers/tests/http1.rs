//! HTTP/1.1 server behaviours, observed through hyper's client and raw sockets.

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wharf_test_servers::{CloseMode, CloseReason, Http1Server, Protocol};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed_by_the_server_after_the_timeout() {
    let server = Http1Server::builder().idle_timeout(ms(300)).start().await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let r = raw_get(&mut s, "/").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None, "keep-alive response");
    let after_response = Instant::now();
    assert_eq!(read_end(&mut s).await, ReadEnd::Eof, "server FIN on idle");
    assert!(
        after_response.elapsed() >= ms(250),
        "closed after {:?}, before the idle timeout",
        after_response.elapsed()
    );
    let st = server
        .wait_for("closed", |s| s.closed_for(&CloseReason::IdleTimeout) == 1)
        .await;
    let c = &st.conns[0];
    assert_eq!(c.requests, 1);
    assert_eq!(c.protocol, Protocol::Http1);
    assert!(!c.reset_by_server);
    assert_eq!(c.late_bytes, 0, "the client sent nothing after the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_keeps_a_connection_open_past_the_idle_timeout() {
    let server = Http1Server::builder().idle_timeout(ms(1000)).start().await;
    let mut c = h1(server.addr()).await;
    let start = Instant::now();
    let mut ids = Vec::new();
    while start.elapsed() < ms(1600) {
        ids.push(c.get("/").await.unwrap().conn_id());
        tokio::time::sleep(ms(150)).await;
    }
    assert!(
        ids.iter().all(|&i| i == 1),
        "one connection throughout: {ids:?}"
    );
    let st = server.stats();
    assert_eq!((st.accepted, st.open), (1, 1));
    assert_eq!(st.conns[0].requests as usize, ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_a_connection_the_server_closed_is_recorded_as_evidence() {
    let server = Http1Server::builder().idle_timeout(ms(200)).start().await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    assert_eq!(raw_get(&mut s, "/").await.unwrap().status, 200);
    // Wait until the server has closed its side (FIN sent), then reuse the socket like a pool
    // that hands out a dead connection.
    server
        .wait_for("FIN sent", |s| s.server_closed() == 1)
        .await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_end(&mut s).await, ReadEnd::Eof, "no answer, EOF");
    let st = server
        .wait_for("late request seen", |s| s.late_requests == 1)
        .await;
    assert_eq!(st.late_conns, 1);
    assert_eq!(st.requests, 1, "the late request was not served");
    let c = &st.conns[0];
    assert!(c.close_decided_at.unwrap() <= c.server_closed_at.unwrap());
    assert_eq!(c.close, Some(CloseReason::IdleTimeout));
    drop(s);
    server.wait_for("closed", |s| s.open == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_max_requests_the_response_says_connection_close_and_the_next_needs_a_new_connection()
{
    let server = Http1Server::builder()
        .max_requests_per_conn(3)
        .keep_alive_header(5)
        .start()
        .await;
    let mut c = h1(server.addr()).await;
    let r1 = c.get("/").await.unwrap();
    assert_eq!(r1.header("connection"), None);
    assert_eq!(r1.header("keep-alive"), Some("timeout=5, max=2"));
    let r2 = c.get("/").await.unwrap();
    assert_eq!(r2.header("keep-alive"), Some("timeout=5, max=1"));
    let r3 = c.get("/").await.unwrap();
    assert_eq!(r3.header("connection"), Some("close"));
    assert_eq!(r3.header("keep-alive"), None);
    assert_eq!(
        [r1.conn_id(), r2.conn_id(), r3.conn_id()],
        [1, 1, 1],
        "one connection"
    );
    // hyper's client closes after `Connection: close`: the connection is gone.
    within("client connection ends", &mut c.driver)
        .await
        .unwrap()
        .unwrap();
    assert!(
        c.get("/").await.is_err(),
        "no 4th request on that connection"
    );
    let mut c2 = h1(server.addr()).await;
    assert_eq!(c2.get("/").await.unwrap().conn_id(), 2, "a new connection");
    let st = server
        .wait_for("first closed", |s| {
            s.conn(1).is_some_and(|c| !c.is_open()) && s.requests == 4
        })
        .await;
    assert_eq!(st.requests_per_conn(), vec![3, 1]);
    assert_eq!(st.max_requests_per_conn(), 3);
    assert_eq!(st.conns[0].close, Some(CloseReason::MaxRequests));
    assert_eq!(st.late_conns, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_without_header_closes_after_a_keep_alive_looking_response() {
    let server = Http1Server::builder()
        .max_requests_per_conn(2)
        .close_without_header()
        .start()
        .await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    assert_eq!(
        raw_get(&mut s, "/").await.unwrap().header("connection"),
        None
    );
    let r2 = raw_get(&mut s, "/").await.unwrap();
    assert_eq!(r2.status, 200);
    assert_eq!(
        r2.header("connection"),
        None,
        "no Connection: close (sloppy)"
    );
    server
        .wait_for("FIN sent", |s| s.server_closed() == 1)
        .await;
    // The client believes the connection reusable: its 3rd request goes nowhere.
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_end(&mut s).await, ReadEnd::Eof);
    let st = server
        .wait_for("late request", |s| s.late_requests == 1)
        .await;
    assert_eq!(st.requests, 2);
    assert_eq!(st.conns[0].close, Some(CloseReason::MaxRequests));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_client_reusing_a_sloppily_closed_connection_fails() {
    let server = Http1Server::builder()
        .max_requests_per_conn(1)
        .close_without_header()
        .start()
        .await;
    let mut c = h1(server.addr()).await;
    let r = c.get("/").await.unwrap();
    assert_eq!(r.header("connection"), None);
    server
        .wait_for("FIN sent", |s| s.server_closed() == 1)
        .await;
    // Whether hyper noticed the FIN first (closed sender) or sends and sees EOF, the request
    // cannot succeed on this connection.
    assert!(c.get("/").await.is_err());
    assert_eq!(server.stats().requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mode_resets_an_idle_connection() {
    let server = Http1Server::builder()
        .idle_timeout(ms(200))
        .close_mode(CloseMode::Rst)
        .start()
        .await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    assert_eq!(raw_get(&mut s, "/").await.unwrap().status, 200);
    assert_eq!(read_end(&mut s).await, ReadEnd::Reset, "RST, not FIN");
    let st = server.wait_for("closed", |s| s.open == 0).await;
    assert!(st.conns[0].reset_by_server);
    assert_eq!(st.conns[0].close, Some(CloseReason::IdleTimeout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mode_after_max_requests_delivers_the_last_response_then_resets() {
    let server = Http1Server::builder()
        .max_requests_per_conn(2)
        .close_mode(CloseMode::Rst)
        .start()
        .await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    assert_eq!(raw_get(&mut s, "/").await.unwrap().status, 200);
    let r = raw_get(&mut s, "/").await.unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(read_end(&mut s).await, ReadEnd::Reset);
    let st = server.wait_for("closed", |s| s.open == 0).await;
    assert!(st.conns[0].reset_by_server);
    assert_eq!(st.conns[0].requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_all_closes_idle_connections_and_new_ones_work() {
    let server = Http1Server::builder().start().await;
    let mut a = TcpStream::connect(server.addr()).await.unwrap();
    let mut b = TcpStream::connect(server.addr()).await.unwrap();
    raw_get(&mut a, "/").await.unwrap();
    raw_get(&mut b, "/").await.unwrap();
    server.goaway_all();
    assert_eq!(read_end(&mut a).await, ReadEnd::Eof);
    assert_eq!(read_end(&mut b).await, ReadEnd::Eof);
    let mut c = TcpStream::connect(server.addr()).await.unwrap();
    let r = raw_get(&mut c, "/").await.unwrap();
    assert_eq!((r.status, r.conn_id()), (200, 3));
    assert_eq!(r.header("connection"), None, "later connections keep alive");
    drop((a, b));
    let st = server
        .wait_for("two closed", |s| s.closed_for(&CloseReason::GoAway) == 2)
        .await;
    assert!(st.conns[2].is_open());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_during_a_request_closes_after_its_response() {
    let server = Http1Server::builder().start().await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(b"GET /hold HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    server.wait_for("held", |s| s.held == 1).await;
    server.goaway_all();
    // The server has taken the GOAWAY call into account before the response is ready.
    server
        .wait_for("decided", |s| s.conns[0].close_decided_at.is_some())
        .await;
    assert!(server.stats().conns[0].is_open());
    server.release_held(1);
    let r = raw_read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(read_end(&mut s).await, ReadEnd::Eof);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_handler_body_size_and_response_delay() {
    let server = Http1Server::builder()
        .body_size(1000)
        .response_delay(ms(200))
        .handler(|req, ctx| {
            (req.uri().path() == "/hook").then(|| {
                http::Response::new(Bytes::from(format!(
                    "hook {} {}",
                    ctx.conn_id, ctx.request_on_conn
                )))
            })
        })
        .start()
        .await;
    let mut c = h1(server.addr()).await;
    let t = Instant::now();
    let r = c.get("/").await.unwrap();
    assert!(t.elapsed() >= ms(200), "delayed response");
    assert_eq!((r.status, r.body.len()), (200, 1000));
    assert_eq!(c.get("/status/503").await.unwrap().status, 503);
    assert_eq!(c.get("/bytes/7").await.unwrap().body.len(), 7);
    let big = Bytes::from(vec![b'y'; 300_000]);
    let echo = c.request("POST", "/echo", big.clone()).await.unwrap();
    assert_eq!(echo.body, big);
    let e = c
        .request("POST", "/echo", Bytes::from_static(b"echo me"))
        .await
        .unwrap();
    assert_eq!(e.text(), "echo me");
    assert_eq!(c.get("/hook").await.unwrap().text(), "hook 1 6");
    assert_eq!(c.get("/nothing").await.unwrap().status, 404);
    let conn = c.get("/conn").await.unwrap();
    assert_eq!(conn.text(), "id=1 req=8 proto=Http1 alpn=- identity=-\n");
    assert_eq!(conn.header("x-conn-req"), Some("8"));
    let t = Instant::now();
    assert_eq!(c.get("/sleep/300").await.unwrap().status, 200);
    assert!(t.elapsed() >= ms(500), "route sleep adds to the delay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_accepted_open_and_peak_open_connections() {
    let server = Http1Server::builder().start().await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = h1(server.addr()).await;
        c.get("/").await.unwrap();
        conns.push(c);
    }
    let st = server.wait_for("3 open", |s| s.open == 3).await;
    assert_eq!((st.accepted, st.peak_open), (3, 3));
    conns.truncate(1);
    let st = server.wait_for("1 open", |s| s.open == 1).await;
    assert_eq!(st.closed_for(&CloseReason::ClientClosed), 2);
    let mut c = h1(server.addr()).await;
    c.get("/").await.unwrap();
    let st = server.wait_for("2 open", |s| s.open == 2).await;
    assert_eq!((st.accepted, st.peak_open, st.requests), (4, 3, 4));
}

#[test]
fn shutdown_ends_every_task_of_the_server() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let server = Http1Server::builder().start().await;
        let addr = server.addr();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        raw_get(&mut idle, "/").await.unwrap();
        let mut held = TcpStream::connect(addr).await.unwrap();
        held.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        server.wait_for("held", |s| s.held == 1).await;
        assert!(
            metrics.num_alive_tasks() >= before + 3,
            "accept loop + 2 connections"
        );
        let stats = wharf_test_servers::StatsHandle::clone(&server);
        server.shutdown().await;
        assert_eq!(metrics.num_alive_tasks(), before, "no task left behind");
        let st = stats.stats();
        assert_eq!((st.open, st.held), (0, 0));
        assert_eq!(st.closed_for(&CloseReason::Shutdown), 2);
        assert!(matches!(
            read_end(&mut idle).await,
            ReadEnd::Eof | ReadEnd::Reset
        ));
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    });
}
