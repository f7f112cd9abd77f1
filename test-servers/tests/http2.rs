//! HTTP/2 server behaviours, observed through hyper's HTTP/2 client and a raw frame client.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_test_servers::{CloseReason, Http2Server, Protocol};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_serves_many_requests_on_one_connection() {
    let server = Http2Server::builder().start().await;
    let (c, _driver) = h2(server.addr()).await;
    for i in 1..=5u64 {
        let r = c.get("/conn").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.conn_id(), 1);
        assert_eq!(r.header("x-conn-req"), Some(i.to_string().as_str()));
        assert_eq!(
            r.text(),
            format!("id=1 req={i} proto=Http2 alpn=- identity=-\n")
        );
    }
    // Bodies larger than the flow-control windows, both ways, through the frame relay.
    let big = bytes::Bytes::from(vec![b'y'; 300_000]);
    let echo = c.request("POST", "/echo", big.clone()).await.unwrap();
    assert_eq!(echo.body, big);
    assert_eq!(c.get("/bytes/1000000").await.unwrap().body.len(), 1_000_000);
    let st = server.stats();
    assert_eq!((st.accepted, st.requests), (1, 7));
    assert_eq!(st.conns[0].protocol, Protocol::Http2);
    assert_eq!(st.conns[0].max_streams_advertised, Some(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_waits_for_a_stream_slot_beyond_max_concurrent_streams() {
    let server = Http2Server::builder()
        .max_concurrent_streams(2)
        .start()
        .await;
    let (c, _driver) = h2(server.addr()).await;
    // One round trip first: the server's SETTINGS (first frame it sends) has arrived.
    c.get("/").await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { c.get("/hold").await }));
    }
    server.wait_for("2 held", |s| s.held == 2).await;
    // The 3rd must not reach the server (nor be refused) while 2 are in flight.
    let third = server
        .wait_for_timeout(ms(500), |s| s.held > 2 || s.refused_streams > 0)
        .await;
    assert!(third.is_err(), "a 3rd stream was opened: {:?}", third.ok());
    server.release_held(1);
    // One finished: the waiting request takes the slot.
    server
        .wait_for("third held", |s| s.requests == 2 && s.held == 2)
        .await;
    server.release_held(2);
    for t in tasks {
        assert_eq!(within("held", t).await.unwrap().unwrap().status, 200);
    }
    let st = server.stats();
    assert_eq!(st.accepted, 1);
    assert_eq!(st.conns[0].peak_streams, 2);
    assert_eq!(st.refused_streams, 0);
}

/// A minimal HTTP/2 client writing frames by hand (it ignores the server's SETTINGS).
struct RawH2 {
    s: TcpStream,
    buf: Vec<u8>,
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[ty, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

impl RawH2 {
    async fn connect(addr: std::net::SocketAddr) -> RawH2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        s.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
        RawH2 { s, buf: Vec::new() }
    }

    /// GET `path` on `stream` (HPACK: indexed :method GET and :scheme http, literal :path and
    /// :authority without indexing).
    async fn get(&mut self, stream: u32, path: &str) {
        let mut h = vec![0x82, 0x86, 0x04, path.len() as u8];
        h.extend_from_slice(path.as_bytes());
        h.extend_from_slice(&[0x01, 9]);
        h.extend_from_slice(b"localhost");
        self.s
            .write_all(&frame(0x1, 0x5, stream, &h))
            .await
            .unwrap();
    }

    /// The next frame: (type, flags, stream, payload); ACKs SETTINGS and PINGs on the way.
    async fn next(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    if f[3] == 0x4 && f[4] & 1 == 0 {
                        let _ = self.s.write_all(&frame(0x4, 1, 0, &[])).await;
                    }
                    if f[3] == 0x6 && f[4] & 1 == 0 {
                        let _ = self.s.write_all(&frame(0x6, 1, 0, &f[9..])).await;
                    }
                    return Some((f[3], f[4], stream, f[9..].to_vec()));
                }
            }
            let mut b = [0u8; 4096];
            let n = within("frame", self.s.read(&mut b)).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&b[..n]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_streams_above_max_concurrent_streams() {
    let server = Http2Server::builder()
        .max_concurrent_streams(2)
        .start()
        .await;
    let mut c = RawH2::connect(server.addr()).await;
    c.get(1, "/hold").await;
    c.get(3, "/hold").await;
    server.wait_for("2 held", |s| s.held == 2).await;
    c.get(5, "/hold").await;
    let refused = loop {
        match c.next().await {
            Some((0x3, _, 5, p)) => break u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
            Some(_) => continue,
            None => panic!("connection closed before RST_STREAM"),
        }
    };
    assert_eq!(refused, 0x7, "REFUSED_STREAM");
    let st = server.wait_for("refused", |s| s.refused_streams == 1).await;
    assert_eq!(st.conns[0].streams_over_limit, 1);
    assert_eq!(st.held, 2);
    server.release_held(2);
    server.wait_for("served", |s| s.requests == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_conn_sends_goaway_and_in_flight_streams_finish() {
    let server = Http2Server::builder()
        .max_requests_per_conn(2)
        .start()
        .await;
    let (c, driver) = h2(server.addr()).await;
    let a = {
        let c = c.clone();
        tokio::spawn(async move { c.get("/hold").await })
    };
    let b = {
        let c = c.clone();
        tokio::spawn(async move { c.get("/hold").await })
    };
    server.wait_for("2 held", |s| s.held == 2).await;
    let st = server
        .wait_for("GOAWAY sent", |s| s.conns[0].goaway_sent)
        .await;
    assert!(st.conns[0].is_open(), "open while streams are in flight");
    // A new stream on this connection fails (client saw GOAWAY, or the server refused it).
    assert!(c.get("/").await.is_err());
    server.release_held(2);
    assert_eq!(within("a", a).await.unwrap().unwrap().status, 200);
    assert_eq!(within("b", b).await.unwrap().unwrap().status, 200);
    within("client connection ends", driver).await.unwrap().ok();
    let st = server.wait_for("closed", |s| s.open == 0).await;
    assert_eq!(st.conns[0].close, Some(CloseReason::MaxRequests));
    assert_eq!(st.requests, 2);
    // The next request needs a new connection.
    let (c2, _d2) = h2(server.addr()).await;
    assert_eq!(c2.get("/").await.unwrap().conn_id(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_on_demand_lets_the_in_flight_stream_finish_and_stops_new_ones() {
    let server = Http2Server::builder().start().await;
    let (c1, d1) = h2(server.addr()).await;
    let (c2, d2) = h2(server.addr()).await;
    c2.get("/").await.unwrap();
    let held = {
        let c1 = c1.clone();
        tokio::spawn(async move { c1.get("/hold").await })
    };
    server.wait_for("held", |s| s.held == 1).await;
    server.goaway_all();
    server
        .wait_for("GOAWAY on both", |s| s.conns.iter().all(|c| c.goaway_sent))
        .await;
    // The idle connection closes; the busy one waits for its stream.
    within("idle connection ends", d2).await.unwrap().ok();
    let still = server
        .wait_for_timeout(ms(300), |s| s.conns[0].server_closed_at.is_some())
        .await;
    assert!(still.is_err(), "closed before its stream finished");
    assert!(c1.get("/").await.is_err(), "new stream after GOAWAY");
    server.release_held(1);
    assert_eq!(within("held", held).await.unwrap().unwrap().status, 200);
    within("busy connection ends", d1).await.unwrap().ok();
    let st = server.wait_for("both closed", |s| s.open == 0).await;
    assert_eq!(st.closed_for(&CloseReason::GoAway), 2);
    assert_eq!(st.requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_update_lowers_the_limit_on_a_live_connection() {
    let server = Http2Server::builder()
        .max_concurrent_streams(3)
        .start()
        .await;
    let (c, _driver) = h2(server.addr()).await;
    c.get("/").await.unwrap();
    server.set_max_concurrent_streams(1);
    let st = server
        .wait_for("ACK of 1", |s| s.conns[0].max_streams_acked == Some(1))
        .await;
    assert_eq!(st.conns[0].max_streams_advertised, Some(1));
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get("/hold").await })
        })
        .collect();
    server.wait_for("1 held", |s| s.held == 1).await;
    let more = server
        .wait_for_timeout(ms(500), |s| s.held > 1 || s.refused_streams > 0)
        .await;
    assert!(
        more.is_err(),
        "the client opened more than 1 stream: {:?}",
        more.ok()
    );
    for served in 2..=4 {
        server.release_held(1);
        server
            .wait_for("next", |s| {
                s.requests == served && (s.held == 1 || served == 4)
            })
            .await;
    }
    for t in tasks {
        assert_eq!(within("t", t).await.unwrap().unwrap().status, 200);
    }
    let st = server.stats();
    assert_eq!(st.conns[0].peak_streams, 1);
    assert_eq!(st.refused_streams, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_update_raises_the_limit_on_a_live_connection() {
    let server = Http2Server::builder()
        .max_concurrent_streams(1)
        .start()
        .await;
    let (c, _driver) = h2(server.addr()).await;
    c.get("/").await.unwrap();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get("/hold").await })
        })
        .collect();
    server.wait_for("1 held", |s| s.held == 1).await;
    let more = server.wait_for_timeout(ms(300), |s| s.held > 1).await;
    assert!(more.is_err(), "limit 1 not respected");
    server.set_max_concurrent_streams(3);
    // The queued streams start once the client has the new value.
    let st = server.wait_for("3 held", |s| s.held == 3).await;
    assert_eq!(st.conns[0].max_streams_acked, Some(3));
    server.release_held(3);
    for t in tasks {
        assert_eq!(within("t", t).await.unwrap().unwrap().status, 200);
    }
    assert_eq!(server.stats().conns[0].peak_streams, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_gets_goaway_and_closes() {
    let server = Http2Server::builder().idle_timeout(ms(300)).start().await;
    let (c, driver) = h2(server.addr()).await;
    let t = std::time::Instant::now();
    c.get("/").await.unwrap();
    within("client connection ends", driver).await.unwrap().ok();
    assert!(t.elapsed() >= ms(300));
    let st = server.wait_for("closed", |s| s.open == 0).await;
    assert!(st.conns[0].goaway_sent);
    assert_eq!(st.conns[0].close, Some(CloseReason::IdleTimeout));
    assert_eq!(st.late_conns, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_delay_holds_streams_open_concurrently() {
    let server = Http2Server::builder()
        .response_delay(ms(1500))
        .start()
        .await;
    let (c, _driver) = h2(server.addr()).await;
    c.get("/status/204").await.unwrap();
    let t = std::time::Instant::now();
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get("/").await })
        })
        .collect();
    server
        .wait_for("5 in flight", |s| s.conns[0].in_flight == 5)
        .await;
    for t in tasks {
        assert_eq!(within("t", t).await.unwrap().unwrap().status, 200);
    }
    assert!(t.elapsed() >= ms(1500));
    let st = server.stats();
    assert_eq!(st.conns[0].peak_streams, 5);
    assert_eq!(st.conns[0].in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_client_sees_settings_goaway_frames() {
    let server = Http2Server::builder()
        .max_concurrent_streams(7)
        .start()
        .await;
    let mut c = RawH2::connect(server.addr()).await;
    // The first frame is the server's SETTINGS, carrying the advertised limit (id 3).
    let (ty, flags, _, p) = c.next().await.unwrap();
    assert_eq!((ty, flags & 1), (0x4, 0));
    let mcs: Vec<u32> = p
        .chunks(6)
        .filter(|e| e[..2] == [0, 3])
        .map(|e| u32::from_be_bytes([e[2], e[3], e[4], e[5]]))
        .collect();
    assert_eq!(mcs, vec![7]);
    server
        .wait_for("ACK seen", |s| s.conns[0].max_streams_acked == Some(7))
        .await;
    server.set_max_concurrent_streams(2);
    let injected = loop {
        let (ty, flags, _, p) = c.next().await.unwrap();
        if ty == 0x4 && flags & 1 == 0 {
            break p;
        }
    };
    assert_eq!(injected, vec![0, 3, 0, 0, 0, 2]);
    server
        .wait_for("ACK of 2", |s| s.conns[0].max_streams_acked == Some(2))
        .await;
    // The server keeps working after our ACK of its injected SETTINGS (no protocol error).
    c.get(1, "/").await;
    let mut got_headers = false;
    while let Some((ty, _, stream, _)) = c.next().await {
        if ty == 0x1 && stream == 1 {
            got_headers = true;
            break;
        }
        assert_ne!(ty, 0x7, "GOAWAY: the server rejected the ACK");
    }
    assert!(got_headers);
    server.goaway_all();
    let goaway = loop {
        let (ty, _, _, p) = c.next().await.expect("GOAWAY before close");
        if ty == 0x7 {
            break p;
        }
    };
    assert_eq!(goaway[4..8], [0, 0, 0, 0], "NO_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_arriving_after_the_request_limit_are_refused() {
    let server = Http2Server::builder()
        .max_requests_per_conn(1)
        .start()
        .await;
    let mut c = RawH2::connect(server.addr()).await;
    c.get(1, "/hold").await;
    c.get(3, "/").await;
    let (mut refused, mut goaway) = (None, false);
    while refused.is_none() || !goaway {
        match c.next().await.expect("frames before close") {
            (0x3, _, 3, p) => refused = Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]])),
            (0x7, ..) => goaway = true,
            (0x1, _, 1, _) => panic!("stream 1 answered before release"),
            _ => {}
        }
    }
    assert_eq!(refused, Some(0x7), "REFUSED_STREAM for the 2nd stream");
    server.release_held(1);
    let mut answered = false;
    while let Some((ty, _, stream, _)) = c.next().await {
        answered |= ty == 0x1 && stream == 1;
    }
    assert!(
        answered,
        "the in-flight stream was answered before the close"
    );
    let st = server.wait_for("closed", |s| s.open == 0).await;
    assert_eq!((st.requests, st.refused_streams), (1, 1));
    assert_eq!(st.conns[0].streams_over_limit, 0);
    assert_eq!(st.conns[0].close, Some(CloseReason::MaxRequests));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_the_server_closed_is_recorded_as_evidence() {
    let server = Http2Server::builder().idle_timeout(ms(200)).start().await;
    let mut c = RawH2::connect(server.addr()).await;
    let mut goaway = false;
    // GOAWAY, PING (acknowledged), final GOAWAY, then EOF.
    while let Some((ty, ..)) = c.next().await {
        goaway |= ty == 0x7;
    }
    assert!(goaway);
    // A client that ignored all of it sends a request on the closed connection.
    c.get(1, "/").await;
    let st = server
        .wait_for("late request", |s| s.late_requests == 1)
        .await;
    assert_eq!(st.late_conns, 1);
    assert_eq!(st.requests, 0);
    assert_eq!(st.conns[0].close, Some(CloseReason::IdleTimeout));
}
