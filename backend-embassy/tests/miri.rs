//! A focused run over every `unsafe` block of the crate (all in
//! `src/state.rs`), small enough for Miri (`.ci/steps/45-embassy-miri.sh`):
//! building a pool writes the state's `MaybeUninit` tables and shared part;
//! every connect lends a slot's buffers to a socket (smoltcp then reads and
//! writes them), and every close gives them back for the next connect. Also
//! run by `cargo test`.
//!
//! Everything that holds a reference for the life of the stacks (stack
//! resources, link state, server buffers, the pool state) lives in leaked
//! boxes, as firmware keeps it in statics: no future refers into itself.
//! No short timeouts: under Miri the clock is virtual.

use std::boxed::Box;

use embassy_futures::join::join;
use embassy_futures::select::{select3, Either3};
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_driver_channel as ch;
use embedded_io_async::{Read, Write};
use wharf_embassy::{CloseReason, Config, ConnectFailure, Route, State};

const MTU: usize = 1514;
const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
const PORT: u16 = 7000;

type PoolState = State<2, 2, 1, 512, 512>;

fn leak<T>(t: T) -> &'static mut T {
    Box::leak(Box::new(t))
}

fn ip_config(addr: Ipv4Address) -> embassy_net::Config {
    embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(addr, 24),
        gateway: None,
        dns_servers: Default::default(),
    })
}

async fn pipe(mut tx: ch::TxRunner<'_, MTU>, mut rx: ch::RxRunner<'_, MTU>) -> ! {
    loop {
        let pkt = tx.tx_buf().await;
        let n = pkt.len();
        let dst = rx.rx_buf().await;
        dst[..n].copy_from_slice(pkt);
        rx.rx_done(n);
        tx.tx_done();
    }
}

/// One listening socket of the echo server, buffers in leaked boxes.
async fn echo_server(stack: Stack<'static>) -> ! {
    let rx = leak([0u8; 512]);
    let tx = leak([0u8; 512]);
    loop {
        let mut s = TcpSocket::new(stack, &mut rx[..], &mut tx[..]);
        if s.accept(PORT).await.is_err() {
            continue;
        }
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err() {
                break;
            }
        }
        s.close();
        let _ = s.flush().await;
    }
}

async fn echo(lease: &mut wharf_embassy::Lease<'_>, msg: &[u8]) {
    lease.write_all(msg).await.unwrap();
    lease.flush().await.unwrap();
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < msg.len() {
        let n = lease.read(&mut buf[got..]).await.unwrap();
        assert!(n > 0, "server closed before echoing");
        got += n;
    }
    assert_eq!(&buf[..got], msg);
}

fn config() -> Config {
    Config {
        max_total: 2,
        max_per_route: 2,
        connect_timeout: None,
        idle_timeout: None,
        validate_after_inactivity: None,
        ..Config::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn buffers_are_lent_once_and_given_back() {
    let (link_a, dev_a) = ch::new(
        leak(ch::State::<MTU, 4, 4>::new()),
        ch::driver::HardwareAddress::Ip,
    );
    let (link_b, dev_b) = ch::new(
        leak(ch::State::<MTU, 4, 4>::new()),
        ch::driver::HardwareAddress::Ip,
    );
    let (state_a, rx_a, tx_a) = link_a.split();
    let (state_b, rx_b, tx_b) = link_b.split();
    state_a.set_link_state(ch::driver::LinkState::Up);
    state_b.set_link_state(ch::driver::LinkState::Up);
    // The pool's 2 sockets and DNS: one socket too many would panic.
    let (client, mut net_a) = embassy_net::new(
        dev_a,
        ip_config(CLIENT),
        leak(StackResources::<3>::new()),
        1,
    );
    let (server, mut net_b) = embassy_net::new(
        dev_b,
        ip_config(SERVER),
        leak(StackResources::<3>::new()),
        2,
    );
    let link = join(pipe(tx_a, rx_b), pipe(tx_b, rx_a));
    let nets = join(net_a.run(), net_b.run());
    let state: &'static mut PoolState = leak(PoolState::new());

    let body = async {
        // Every connect lends a slot's buffers, every close gives them back
        // (slots 0 and 1 each lent more than once).
        let (pool, mut runner) = wharf_embassy::new(client, state, config()).unwrap();
        let work = async {
            for round in 0..2u8 {
                let mut a = pool.lease(&Route::ip(SERVER, PORT)).await.unwrap();
                let mut b = pool.lease(&Route::ip(SERVER, PORT)).await.unwrap();
                echo(&mut a, &[b'a', round]).await;
                echo(&mut b, &[b'b', round]).await;
                a.discard(); // RST: its buffers come back
                b.discard();
                while pool.stats().connections > 0 {
                    embassy_futures::yield_now().await;
                }
            }
            // Reuse: an idle connection is lent again without a connect.
            let mut c = pool.lease(&Route::ip(SERVER, PORT)).await.unwrap();
            echo(&mut c, b"c").await;
            let conn = c.id().conn();
            drop(c);
            let mut d = pool.lease(&Route::ip(SERVER, PORT)).await.unwrap();
            assert_eq!(d.id().conn(), conn);
            echo(&mut d, b"d").await;
            assert!(d.socket().local_endpoint().is_some());
            drop(d);
            // Closed by a drain (FIN): its buffers come back too, and a
            // new connection gets a slot.
            pool.drain(None, wharf_embassy::DrainMode::DrainExisting);
            while pool.stats().connections > 0 {
                embassy_futures::yield_now().await;
            }
            let mut e = pool.lease(&Route::ip(SERVER, PORT)).await.unwrap();
            echo(&mut e, b"e").await;
            drop(e);
            let counters = pool.counters();
            assert_eq!(counters.connects, 6);
            assert_eq!(counters.closes_for(CloseReason::Discarded), 4);
            assert_eq!(counters.closes_for(CloseReason::Drained), 1);
            assert_eq!(counters.connect_failures_for(ConnectFailure::Local), 0);
            pool.inspect(|p| p.check_invariants()).unwrap();
        };
        match select3(runner.run(), work, core::future::pending::<()>()).await {
            Either3::Second(()) => {}
            _ => unreachable!(),
        }
    };
    match select3(
        nets,
        join(link, join(echo_server(server), echo_server(server))),
        body,
    )
    .await
    {
        Either3::Third(()) => {}
        _ => unreachable!(),
    }
}
