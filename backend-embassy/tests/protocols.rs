//! Real protocol clients over pooled connections, on two embassy-net stacks:
//! reqwless (HTTP/1.1) through the `TcpConnect` adapter against a keep-alive
//! server on the other stack, and rust-mqtt (MQTT 5) over a lease against a
//! minimal broker. Connections are counted at the server.

mod common;

use core::cell::{Cell, RefCell};
use core::num::NonZero;
use std::string::String;
use std::vec::Vec;

use common::{dns_server, DnsLog, SERVER};
use embassy_futures::join::{join, join3, join_array};
use embassy_futures::select::{select3, Either3};
use embassy_net::tcp::TcpSocket;
use embassy_net::Stack;
use embedded_io_async::{Read, Write};
use wharf_embassy::nal::PooledConnect;
use wharf_embassy::{Config, Duration, LeaseOptions, Pool, Route, State};

const SLOTS: usize = 4;
type TestState = State<SLOTS, 4, 4, 1024, 1024>;

fn config() -> Config {
    Config {
        max_total: SLOTS as u32,
        max_per_route: 2,
        connect_timeout: Some(Duration::from_secs(2)),
        validate_after_inactivity: None,
        ..Config::default()
    }
}

fn lease_opts() -> LeaseOptions {
    LeaseOptions {
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// A keep-alive HTTP/1.1 server: `200 OK` with `Content-Length` for every
// request, until the client closes.

#[derive(Default)]
struct HttpLog {
    /// Requests served on each accepted connection, in accept order.
    per_conn: RefCell<Vec<usize>>,
    /// Connections the client closed with a FIN.
    fins: Cell<usize>,
}

impl HttpLog {
    fn connections(&self) -> usize {
        self.per_conn.borrow().len()
    }
    fn requests(&self) -> usize {
        self.per_conn.borrow().iter().sum()
    }
}

async fn http_server(stack: Stack<'_>, port: u16, log: &HttpLog) -> ! {
    let [never, ..] = join_array([0, 1, 2, 3].map(|_| http_conn(stack, port, log))).await;
    never
}

async fn http_conn(stack: Stack<'_>, port: u16, log: &HttpLog) -> ! {
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    loop {
        let mut s = TcpSocket::new(stack, &mut rx, &mut tx);
        if s.accept(port).await.is_err() {
            continue;
        }
        let me = {
            let mut p = log.per_conn.borrow_mut();
            p.push(0);
            p.len() - 1
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 256];
        'conn: loop {
            // Read one request head (GET: no body).
            let end = loop {
                if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match s.read(&mut buf).await {
                    Ok(0) => {
                        log.fins.set(log.fins.get() + 1);
                        break 'conn;
                    }
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                    Err(_) => break 'conn,
                }
            };
            let req = String::from_utf8_lossy(&head[..end]).into_owned();
            head.drain(..end);
            let path = req.split(' ').nth(1).unwrap_or("?").to_owned();
            let n = {
                let mut p = log.per_conn.borrow_mut();
                p[me] += 1;
                p[me]
            };
            let body = format!("{path} #{n} on connection {me}");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(resp.as_bytes()).await.is_err() || s.flush().await.is_err() {
                break;
            }
        }
        s.close();
        let _ = embassy_time::with_timeout(embassy_time::Duration::from_secs(1), s.flush()).await;
    }
}

/// One GET through reqwless; returns the body.
async fn get<T: embedded_nal_async::TcpConnect, D: embedded_nal_async::Dns>(
    client: &mut reqwless::client::HttpClient<'_, T, D>,
    url: &str,
) -> String {
    use reqwless::request::{Method, RequestBuilder};
    let mut rx = [0u8; 1024];
    let mut req = client
        .request(Method::GET, url)
        .await
        .unwrap()
        .headers(&[("Accept", "text/plain")]);
    let resp = req.send(&mut rx).await.unwrap();
    assert_eq!(resp.status.0, 200);
    let body = resp.body().read_to_end().await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
    // `req` (its connection: the pool's lease) is dropped here: back to the pool.
}

/// Runs `$test` with a pool, its runner, the HTTP server on 8080 and a DNS
/// server that knows `web.test`.
macro_rules! http_test {
    (|$client:ident, $pool:ident, $log:ident| $test:expr) => {{
        two_stacks!(dns 5, |$client, server_stack| {
            let $log = HttpLog::default();
            let dns_log = DnsLog::default();
            let state: &'static mut TestState = Box::leak(Box::new(TestState::new()));
            let (pool, mut runner) = wharf_embassy::new($client, state, config()).unwrap();
            let $pool: Pool<'_> = pool;
            let servers = join(
                http_server(server_stack, 8080, &$log),
                dns_server(server_stack, &[("web.test", SERVER)], &dns_log),
            );
            match select3(runner.run(), servers, async { $test }).await {
                Either3::Third(r) => {
                    pool.inspect(|p| p.check_invariants()).expect("invariants");
                    r
                }
                _ => unreachable!(),
            }
        })
    }};
}

#[tokio::test(flavor = "current_thread")]
async fn reqwless_keeps_one_connection_for_twenty_gets() {
    http_test!(|client_stack, pool, log| {
        let tcp = PooledConnect::with_options(pool, lease_opts());
        let dns = embassy_net::dns::DnsSocket::new(client_stack);
        let mut http = reqwless::client::HttpClient::new(&tcp, &dns);
        for i in 0..20 {
            let body = get(&mut http, &format!("http://10.0.0.2:8080/item/{i}")).await;
            assert_eq!(body, format!("/item/{i} #{} on connection 0", i + 1));
        }
        // Each GET was a `connect` of reqwless's: the pool handed out the
        // same kept-alive connection every time.
        assert_eq!(log.connections(), 1, "20 GETs over one TCP connection");
        assert_eq!(log.requests(), 20);
        let c = pool.counters();
        assert_eq!((c.connects, c.grants, c.reuses), (1, 20, 19));
        assert_eq!(pool.stats().idle, 1);

        // A name in the URL: reqwless resolves it (embassy-net's DNS socket,
        // the server stack's DNS server) and connects to the address, whose
        // route already has the idle connection.
        let body = get(&mut http, "http://web.test:8080/by-name").await;
        assert_eq!(body, "/by-name #21 on connection 0");
        assert_eq!(log.connections(), 1);

        // Draining closes the kept connection with a FIN.
        pool.drain(None, wharf_embassy::DrainMode::DrainExisting);
        assert!(common::eventually(2000, || log.fins.get() == 1).await);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn two_reqwless_clients_share_at_most_two_connections() {
    http_test!(|client_stack, pool, log| {
        let tcp = PooledConnect::with_options(pool, lease_opts());
        let dns = embassy_net::dns::DnsSocket::new(client_stack);
        let task = |name: &'static str| {
            let (tcp, dns) = (&tcp, &dns);
            async move {
                let mut http = reqwless::client::HttpClient::new(tcp, dns);
                for i in 0..10 {
                    let body = get(&mut http, &format!("http://10.0.0.2:8080/{name}/{i}")).await;
                    assert!(body.starts_with(&format!("/{name}/{i} #")), "{body}");
                    // Let the other client run between requests.
                    embassy_time::Timer::after_millis(1).await;
                }
            }
        };
        join3(task("a"), task("b"), async {}).await;
        assert_eq!(log.requests(), 20);
        assert!(
            (1..=2).contains(&log.connections()),
            "20 GETs from two clients over {} connections",
            log.connections()
        );
        let c = pool.counters();
        assert_eq!(c.grants, 20);
        // Every connection the pool opened reached the server (its accept
        // is logged a moment after the client's connect completes).
        assert!(
            common::eventually(500, || c.connects as usize == log.connections()).await,
            "pool connects {} vs server accepts {}",
            c.connects,
            log.connections()
        );
        eprintln!(
            "two reqwless clients: 20 GETs over {} connection(s)",
            log.connections()
        );
    })
}

// ---------------------------------------------------------------------------
// A minimal MQTT 5 broker stand-in: CONNECT/CONNACK, PUBLISH QoS 0 and 1
// (PUBACK), PINGREQ/PINGRESP, DISCONNECT (the server then closes).

#[derive(Debug, Clone, PartialEq, Eq)]
struct Published {
    conn: usize,
    qos: u8,
    topic: String,
    payload: Vec<u8>,
}

#[derive(Default)]
struct MqttLog {
    accepted: Cell<usize>,
    connects: Cell<usize>,
    publishes: RefCell<Vec<Published>>,
    pings: Cell<usize>,
    disconnects: Cell<usize>,
    /// The client's FIN seen after the server's close.
    client_fins: Cell<usize>,
    /// Malformed or unexpected packets.
    errors: RefCell<Vec<String>>,
}

async fn read_packet(s: &mut TcpSocket<'_>) -> Option<(u8, Vec<u8>)> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.ok()?;
    let kind = b[0];
    let (mut len, mut shift) = (0usize, 0);
    loop {
        s.read_exact(&mut b).await.ok()?;
        len |= usize::from(b[0] & 0x7f) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 || shift > 21 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((kind, body))
}

/// A variable byte integer at `at`: (value, bytes used).
fn varint(b: &[u8], at: usize) -> (usize, usize) {
    let (mut v, mut i) = (0usize, 0);
    while let Some(&x) = b.get(at + i) {
        v |= usize::from(x & 0x7f) << (7 * i);
        i += 1;
        if x & 0x80 == 0 || i == 4 {
            break;
        }
    }
    (v, i)
}

fn parse_publish(conn: usize, flags: u8, b: &[u8]) -> Option<(Published, Option<u16>)> {
    let qos = (flags >> 1) & 3;
    let tlen = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
    let topic = String::from_utf8(b.get(2..2 + tlen)?.to_vec()).ok()?;
    let mut at = 2 + tlen;
    let pid = if qos > 0 {
        let p = u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]);
        at += 2;
        Some(p)
    } else {
        None
    };
    let (props, used) = varint(b, at);
    at += used + props;
    let payload = b.get(at..)?.to_vec();
    Some((
        Published {
            conn,
            qos,
            topic,
            payload,
        },
        pid,
    ))
}

async fn broker(stack: Stack<'_>, port: u16, log: &MqttLog) -> ! {
    let [never, ..] = join_array([0, 1].map(|_| broker_conn(stack, port, log))).await;
    never
}

async fn broker_conn(stack: Stack<'_>, port: u16, log: &MqttLog) -> ! {
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    loop {
        let mut s = TcpSocket::new(stack, &mut rx, &mut tx);
        if s.accept(port).await.is_err() {
            continue;
        }
        let me = log.accepted.get();
        log.accepted.set(me + 1);
        while let Some((kind, body)) = read_packet(&mut s).await {
            let reply: &[u8] = match kind >> 4 {
                1 => {
                    log.connects.set(log.connects.get() + 1);
                    // CONNACK: no session present, success, no properties.
                    &[0x20, 3, 0, 0, 0]
                }
                3 => match parse_publish(me, kind & 0x0f, &body) {
                    Some((p, pid)) => {
                        log.publishes.borrow_mut().push(p);
                        match pid {
                            Some(pid) => {
                                let [hi, lo] = pid.to_be_bytes();
                                // PUBACK, success (remaining length 2).
                                let ack = [0x40, 2, hi, lo];
                                if s.write_all(&ack).await.is_err() {
                                    break;
                                }
                                &[]
                            }
                            None => &[],
                        }
                    }
                    None => {
                        log.errors
                            .borrow_mut()
                            .push(format!("bad PUBLISH {body:?}"));
                        break;
                    }
                },
                12 => {
                    log.pings.set(log.pings.get() + 1);
                    &[0xd0, 0]
                }
                14 => {
                    log.disconnects.set(log.disconnects.get() + 1);
                    break;
                }
                other => {
                    log.errors
                        .borrow_mut()
                        .push(format!("unexpected packet type {other}"));
                    break;
                }
            };
            if !reply.is_empty() && s.write_all(reply).await.is_err() {
                break;
            }
            let _ = s.flush().await;
        }
        // The server closes (after DISCONNECT, as MQTT has it), then waits
        // for the client's FIN.
        s.close();
        let mut buf = [0u8; 16];
        let end = embassy_time::with_timeout(embassy_time::Duration::from_secs(2), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await;
        if end == Ok(true) {
            log.client_fins.set(log.client_fins.get() + 1);
        }
        let _ = embassy_time::with_timeout(embassy_time::Duration::from_secs(1), s.flush()).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn rust_mqtt_keeps_one_connection_across_publishes() {
    use rust_mqtt::buffer::AllocBuffer;
    use rust_mqtt::client::event::Event;
    use rust_mqtt::client::options::{
        ConnectOptions, DisconnectOptions, PublicationOptions, TopicReference,
    };
    use rust_mqtt::client::Client;
    use rust_mqtt::config::KeepAlive;
    use rust_mqtt::types::{MqttString, TopicName};
    use rust_mqtt::Bytes;

    two_stacks!(5, |client_stack, server_stack| {
        let _ = client_stack;
        let log = MqttLog::default();
        let state: &'static mut TestState = Box::leak(Box::new(TestState::new()));
        let (pool, mut runner) = wharf_embassy::new(client_stack, state, config()).unwrap();
        let broker_route = Route::ip(SERVER, 1883);
        let test = async {
            let lease = pool.lease_with(&broker_route, lease_opts()).await.unwrap();
            let conn = lease.id().conn();
            let mut buffer = AllocBuffer;
            let mut client = Client::<'_, '_, _, _, 1, 1, 1, 1, 4, 0, 1>::new(&mut buffer);
            client
                .connect(
                    lease,
                    &ConnectOptions::new()
                        .clean_start()
                        .keep_alive(KeepAlive::Seconds(NonZero::new(30).unwrap())),
                    Some(MqttString::try_from("wharf-sensor").unwrap()),
                )
                .await
                .unwrap();
            let topic = TopicName::new(MqttString::try_from("wharf/sensor/temp").unwrap()).unwrap();
            for i in 0..10u8 {
                // QoS 0: fire and forget.
                let opts = PublicationOptions::new(TopicReference::Name(topic.as_borrowed()));
                let payload = [b'q', b'0', i];
                assert_eq!(
                    client
                        .publish(&opts, Bytes::from(&payload[..]))
                        .await
                        .unwrap(),
                    None
                );
                // QoS 1: the broker's PUBACK completes it.
                let opts = opts.at_least_once();
                let payload = [b'q', b'1', i];
                let pid = client
                    .publish(&opts, Bytes::from(&payload[..]))
                    .await
                    .unwrap()
                    .expect("a QoS 1 publish has a packet id");
                match client.poll().await.unwrap() {
                    Event::PublishAcknowledged(ack) => assert_eq!(ack.packet_identifier, pid),
                    e => panic!("expected PUBACK, got {e:?}"),
                }
                if i % 5 == 4 {
                    client.ping().await.unwrap();
                    assert!(matches!(client.poll().await.unwrap(), Event::Pingresp));
                }
            }
            client.disconnect(&DisconnectOptions::new()).await.unwrap();
            drop(client); // the lease goes back to the pool...
                          // ...which sees the broker's close and closes with a FIN.
            assert!(common::eventually(2000, || log.client_fins.get() == 1).await);
            assert!(common::eventually(2000, || pool.stats().connections == 0).await);
            conn
        };
        let conn = match select3(runner.run(), broker(server_stack, 1883, &log), test).await {
            Either3::Third(c) => c,
            _ => unreachable!(),
        };
        let published = log.publishes.borrow();
        assert_eq!(log.errors.borrow().len(), 0, "{:?}", log.errors.borrow());
        assert_eq!(log.accepted.get(), 1, "every publish over one connection");
        assert_eq!(log.connects.get(), 1);
        assert_eq!(published.len(), 20);
        assert!(published
            .iter()
            .all(|p| p.conn == 0 && p.topic == "wharf/sensor/temp"));
        for i in 0..10u8 {
            assert_eq!(published[2 * usize::from(i)].payload, [b'q', b'0', i]);
            assert_eq!(published[2 * usize::from(i)].qos, 0);
            assert_eq!(published[2 * usize::from(i) + 1].payload, [b'q', b'1', i]);
            assert_eq!(published[2 * usize::from(i) + 1].qos, 1);
        }
        assert_eq!(log.pings.get(), 2);
        assert_eq!(log.disconnects.get(), 1);
        let c = pool.counters();
        assert_eq!(c.connects, 1);
        assert_eq!(
            c.closes_for(wharf_embassy::CloseReason::PeerClosed),
            1,
            "closed as PeerClosed (conn {conn:?})"
        );
        pool.inspect(|p| p.check_invariants()).expect("invariants");
    })
}
