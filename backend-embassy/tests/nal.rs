//! The `embedded-nal-async` adapter (`wharf_embassy::nal::PooledConnect`):
//! connects are pooled leases, reused; dropped connections go back or close
//! with a FIN; failures are typed and map to `embedded-io` error kinds. Side
//! by side, embassy-net's own `TcpClient` opens one connection per connect.

mod common;

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use common::{eventually, server, Ev, Log, Mode, BLACKHOLE, SERVER};
use embassy_futures::join::{join, join3};
use embassy_futures::select::{select3, Either3};
use embedded_io_async::{Error as _, ErrorKind, Read, Write};
use embedded_nal_async::TcpConnect;
use wharf_embassy::nal::{Connection, Error as NalError, PooledConnect};
use wharf_embassy::{CloseReason, Config, ConnectFailure, Duration, Error, LeaseOptions, State};

const SLOTS: usize = 4;
type TestState = State<SLOTS, 4, 4, 1024, 1024>;

fn config() -> Config {
    Config {
        max_total: SLOTS as u32,
        max_per_route: 2,
        connect_timeout: Some(Duration::from_millis(300)),
        validate_after_inactivity: None,
        ..Config::default()
    }
}

fn addr(ip: embassy_net::Ipv4Address, port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::from(ip.octets()).into(), port)
}

async fn echo(conn: &mut Connection<'_>, msg: &[u8]) {
    conn.write_all(msg).await.unwrap();
    conn.flush().await.unwrap();
    let mut buf = [0u8; 64];
    conn.read_exact(&mut buf[..msg.len()]).await.unwrap();
    assert_eq!(&buf[..msg.len()], msg);
}

/// Runs `$test` with an adapter over a pool, echo servers on 7000 and 7001
/// and a close-after-first server on 7002.
macro_rules! nal_test {
    (|$tcp:ident, $log:ident, $client:ident| $test:expr) => {{
        two_stacks!(5, |$client, server_stack| {
            let $log = Log::default();
            let state: &'static mut TestState = Box::leak(Box::new(TestState::new()));
            let (pool, mut runner) = wharf_embassy::new($client, state, config()).unwrap();
            let $tcp = PooledConnect::new(pool);
            let servers = join3(
                server(server_stack, 7000, Mode::Echo, &$log),
                server(server_stack, 7001, Mode::Echo, &$log),
                server(server_stack, 7002, Mode::CloseAfterFirst, &$log),
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
async fn connects_are_pooled_and_reused() {
    nal_test!(|tcp, log, _client| {
        let server = addr(SERVER, 7000);
        let mut ids = Vec::new();
        for i in 0..5u8 {
            let mut c = tcp.connect(server).await.unwrap();
            ids.push(c.lease().id().conn());
            echo(&mut c, &[b'm', i]).await;
            // dropped: back to the pool
        }
        assert!(ids.iter().all(|&c| c == ids[0]), "{ids:?}");
        assert_eq!(log.accepted(), 1, "five connects over one TCP connection");
        let c = tcp.pool().counters();
        assert_eq!((c.connects, c.grants, c.reuses), (1, 5, 4));

        // Two at once: two connections; per address, its own route.
        let (a, b) = join(tcp.connect(server), tcp.connect(server)).await;
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        assert_ne!(a.lease().id().conn(), b.lease().id().conn());
        let mut other = tcp.connect(addr(SERVER, 7001)).await.unwrap();
        assert_eq!(
            other.lease().route(),
            wharf_embassy::Route::ip(SERVER, 7001)
        );
        echo(&mut a, b"a").await;
        echo(&mut b, b"b").await;
        echo(&mut other, b"o").await;
        drop((a, b, other));
        assert_eq!(log.accepted(), 3);
        assert_eq!(tcp.pool().stats().idle, 3);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn dropped_connections_close_with_a_fin_when_not_reusable() {
    nal_test!(|tcp, log, _client| {
        // The server closes after its answer: the pool sees it and closes
        // its side with a FIN (never hands it out again).
        let mut c = tcp.connect(addr(SERVER, 7002)).await.unwrap();
        let port = c.lease().socket().local_endpoint().unwrap().port;
        echo(&mut c, b"once").await;
        let mut buf = [0u8; 8];
        assert_eq!(c.read(&mut buf).await.unwrap(), 0, "the server's FIN");
        drop(c);
        assert!(eventually(1000, || tcp.pool().stats().connections == 0).await);
        assert_eq!(tcp.pool().counters().closes_for(CloseReason::PeerClosed), 1);

        // Unread bytes left: not reusable, closed with a FIN (the server
        // reads 0), not a RST.
        let mut c = tcp.connect(addr(SERVER, 7000)).await.unwrap();
        let port2 = c.lease().socket().local_endpoint().unwrap().port;
        c.write_all(b"left unread").await.unwrap();
        c.flush().await.unwrap();
        assert!(eventually(1000, || c.lease().socket().can_recv()).await);
        drop(c);
        assert!(eventually(1000, || log.events().contains(&Ev::Fin(port2))).await);
        assert!(!log.events().contains(&Ev::Rst(port2)));
        assert_eq!(tcp.pool().counters().closes_for(CloseReason::Discarded), 1);

        // `discard` closes with a RST.
        let mut c = tcp.connect(addr(SERVER, 7000)).await.unwrap();
        let port3 = c.lease().socket().local_endpoint().unwrap().port;
        echo(&mut c, b"bye").await;
        c.discard();
        assert!(eventually(1000, || log.events().contains(&Ev::Rst(port3))).await);
        let _ = port;
    })
}

#[tokio::test(flavor = "current_thread")]
async fn failures_are_typed_and_have_io_kinds() {
    nal_test!(|tcp, _log, _client| {
        // Nobody listens: refused.
        let e = tcp.connect(addr(SERVER, 7999)).await.err().unwrap();
        assert_eq!(
            e,
            NalError::Pool(Error::ConnectFailed(ConnectFailure::Remote))
        );
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);

        // A host that never answers: the pool's connect timeout.
        let e = tcp.connect(addr(BLACKHOLE, 7000)).await.err().unwrap();
        assert_eq!(
            e,
            NalError::Pool(Error::ConnectFailed(ConnectFailure::Timeout))
        );
        assert_eq!(e.kind(), ErrorKind::TimedOut);

        // IPv6 on an IPv4-only build: refused before the pool is asked.
        let v6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 7000);
        let e = tcp.connect(v6).await.err().unwrap();
        assert_eq!(e, NalError::Unsupported);
        assert_eq!(e.kind(), ErrorKind::Unsupported);

        // The lease timeout of the adapter's options.
        let short = PooledConnect::with_options(
            tcp.pool(),
            LeaseOptions {
                timeout: Some(Duration::from_millis(100)),
                ..Default::default()
            },
        );
        let server = addr(SERVER, 7000);
        let (a, b) = (
            short.connect(server).await.unwrap(),
            short.connect(server).await.unwrap(),
        );
        // max_per_route 2: a third waits and times out.
        let e = short.connect(server).await.err().unwrap();
        assert_eq!(e, NalError::Pool(Error::Timeout));
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        drop((a, b));
        // A reset connection's I/O error is the socket's.
        assert_eq!(
            NalError::Tcp(embassy_net::tcp::Error::ConnectionReset).kind(),
            ErrorKind::ConnectionReset
        );
        // Nothing was leaked: every slot still connects.
        let mut all = Vec::new();
        for p in [7000, 7000, 7001, 7001] {
            all.push(tcp.connect(addr(SERVER, p)).await.unwrap());
        }
        assert_eq!(tcp.pool().stats().leased, 4);
    })
}

/// embassy-net's `TcpClient` (the usual `TcpConnect`) for comparison: four
/// sequential connects open four TCP connections, and since its dropped
/// connection frees the socket before the FIN goes out (embassy issue
/// #6130) the server never learns they closed: its four listeners stay
/// taken and a fifth connect is refused.
#[tokio::test(flavor = "current_thread")]
async fn embassy_tcp_client_opens_a_connection_per_connect() {
    two_stacks!(5, |client, server_stack| {
        let log = Log::default();
        let state = embassy_net::tcp::client::TcpClientState::<1, 1024, 1024>::new();
        let tcp = embassy_net::tcp::client::TcpClient::new(client, &state);
        let test = async {
            for i in 0..4u8 {
                let mut c = tcp.connect(addr(SERVER, 7000)).await.unwrap();
                c.write_all(&[b'm', i]).await.unwrap();
                let mut buf = [0u8; 2];
                c.read_exact(&mut buf).await.unwrap();
                drop(c);
                embassy_time::Timer::after_millis(20).await;
            }
            assert_eq!(log.accepted(), 4, "no reuse: one connection per connect");
            embassy_time::Timer::after_millis(200).await;
            assert_eq!(log.fins(), 0, "no FIN ever reached the server");
            assert!(tcp.connect(addr(SERVER, 7000)).await.is_err());
        };
        match embassy_futures::select::select(server(server_stack, 7000, Mode::Echo, &log), test)
            .await
        {
            embassy_futures::select::Either::Second(()) => {}
            embassy_futures::select::Either::First(never) => never,
        }
    })
}
