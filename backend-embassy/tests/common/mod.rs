//! Two real embassy-net stacks joined by an in-memory IP link
//! (embassy-net-driver-channel), for tests inside
//! `#[tokio::test(flavor = "current_thread")]`.
//!
//! Client stack 10.0.0.1 (the pool's), server stack 10.0.0.2. Packets to any
//! other address go to the server stack, which drops them: 10.0.0.3 is a host
//! that never answers.
#![allow(dead_code)]

use core::cell::RefCell;
use std::vec::Vec;

use embassy_futures::join::join_array;
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StaticConfigV4};
use embassy_net_driver_channel::{RxRunner, TxRunner};
use embedded_io_async::{Read, Write};

pub const MTU: usize = 1514;
pub const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
pub const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
/// Routed to the server stack, which drops it: no answer ever.
pub const BLACKHOLE: Ipv4Address = Ipv4Address::new(10, 0, 0, 3);

/// Writes `msg` on a pooled connection and reads the echo back (panics if
/// the server closes first or echoes something else).
pub async fn echo<const H: usize>(lease: &mut wharf_embassy::Lease<'_, H>, msg: &[u8]) {
    lease.write_all(msg).await.unwrap();
    lease.flush().await.unwrap();
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < msg.len() {
        let n = lease.read(&mut buf[got..]).await.unwrap();
        assert!(n > 0, "server closed before echoing");
        got += n;
    }
    assert_eq!(&buf[..got], msg);
}

/// A static IPv4 configuration without a DNS server.
pub fn ip_config(addr: Ipv4Address) -> embassy_net::Config {
    embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(addr, 24),
        gateway: None,
        dns_servers: Default::default(),
    })
}

/// A static IPv4 configuration whose DNS server is the server stack
/// ([`dns_server`]).
pub fn ip_config_dns(addr: Ipv4Address) -> embassy_net::Config {
    embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(addr, 24),
        gateway: None,
        dns_servers: [SERVER].into_iter().collect(),
    })
}

/// The names a [`dns_server`] was asked for, in order.
#[derive(Default)]
pub struct DnsLog {
    pub queries: RefCell<Vec<std::string::String>>,
}

impl DnsLog {
    pub fn count(&self, name: &str) -> usize {
        self.queries.borrow().iter().filter(|q| *q == name).count()
    }
}

/// A DNS server on UDP port 53 of `stack`: answers `A` queries for the
/// names in `hosts` with their address, every other name with NXDOMAIN.
pub async fn dns_server(stack: Stack<'_>, hosts: &[(&str, Ipv4Address)], log: &DnsLog) -> ! {
    use embassy_net::udp::{PacketMetadata, UdpSocket};
    let (mut rx_meta, mut tx_meta) = ([PacketMetadata::EMPTY; 4], [PacketMetadata::EMPTY; 4]);
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    let mut sock = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    sock.bind(53).unwrap();
    let mut q = [0u8; 512];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut q).await else {
            continue;
        };
        let q = &q[..n];
        // Header (12 bytes), then the question: labels, type, class.
        let mut at = 12;
        let mut name = std::string::String::new();
        while at < q.len() && q[at] != 0 {
            let len = q[at] as usize;
            let label = &q[at + 1..(at + 1 + len).min(q.len())];
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(core::str::from_utf8(label).unwrap_or("?"));
            at += 1 + len;
        }
        let question_end = (at + 5).min(q.len());
        log.queries.borrow_mut().push(name.clone());
        let addr = hosts.iter().find(|(h, _)| *h == name).map(|(_, a)| *a);
        let mut r = Vec::with_capacity(64);
        r.extend_from_slice(&q[..2]); // id
        r.extend_from_slice(&[0x81, if addr.is_some() { 0x80 } else { 0x83 }]);
        r.extend_from_slice(&[0, 1, 0, u8::from(addr.is_some()), 0, 0, 0, 0]);
        r.extend_from_slice(&q[12..question_end]);
        if let Some(a) = addr {
            // Name (pointer to the question's), A, IN, TTL 60, 4 bytes.
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&a.octets());
        }
        let _ = sock.send_to(&r, from).await;
    }
}

/// Copies packets from one device's transmit queue to the other's receive queue.
pub async fn pipe(mut tx: TxRunner<'_, MTU>, mut rx: RxRunner<'_, MTU>) -> ! {
    loop {
        let pkt = tx.tx_buf().await;
        let n = pkt.len();
        let dst = rx.rx_buf().await;
        dst[..n].copy_from_slice(pkt);
        rx.rx_done(n);
        tx.tx_done();
    }
}

/// Sets up the two stacks and runs `$body` (an expression using `$client` and
/// `$server`, the two `Stack`s) with the stacks and the link running.
/// The client stack has `$client_socks` socket slots: the pool's connection
/// slots plus one for DNS (so a pool that overruns its reservation panics).
#[macro_export]
macro_rules! two_stacks {
    ($client_socks:literal, |$client:ident, $server:ident| $body:expr) => {
        two_stacks!(common::ip_config, $client_socks, |$client, $server| $body)
    };
    // With the server stack as the client's DNS server.
    (dns $client_socks:literal, |$client:ident, $server:ident| $body:expr) => {
        two_stacks!(common::ip_config_dns, $client_socks, |$client, $server| {
            $body
        })
    };
    ($config:path, $client_socks:literal, |$client:ident, $server:ident| $body:expr) => {{
        use embassy_futures::select::{select4, Either4};
        let mut ch_a = embassy_net_driver_channel::State::<{ common::MTU }, 4, 4>::new();
        let mut ch_b = embassy_net_driver_channel::State::<{ common::MTU }, 4, 4>::new();
        let (link_a, dev_a) = embassy_net_driver_channel::new(
            &mut ch_a,
            embassy_net_driver_channel::driver::HardwareAddress::Ip,
        );
        let (link_b, dev_b) = embassy_net_driver_channel::new(
            &mut ch_b,
            embassy_net_driver_channel::driver::HardwareAddress::Ip,
        );
        let (state_a, rx_a, tx_a) = link_a.split();
        let (state_b, rx_b, tx_b) = link_b.split();
        state_a.set_link_state(embassy_net_driver_channel::driver::LinkState::Up);
        state_b.set_link_state(embassy_net_driver_channel::driver::LinkState::Up);
        let mut res_a = embassy_net::StackResources::<$client_socks>::new();
        let mut res_b = embassy_net::StackResources::<24>::new();
        let ($client, mut net_a) = embassy_net::new(dev_a, $config(common::CLIENT), &mut res_a, 1);
        let ($server, mut net_b) =
            embassy_net::new(dev_b, common::ip_config(common::SERVER), &mut res_b, 2);
        let link = embassy_futures::join::join(common::pipe(tx_a, rx_b), common::pipe(tx_b, rx_a));
        match select4(net_a.run(), net_b.run(), link, async { $body }).await {
            Either4::Fourth(r) => r,
            _ => unreachable!(),
        }
    }};
}

/// What a test server saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ev {
    /// A connection from this client port.
    Accepted(u16),
    /// The client closed it gracefully (FIN: read returned 0).
    Fin(u16),
    /// The client reset it (RST).
    Rst(u16),
    /// The server closed it (FIN) after it was idle.
    IdleClosed(u16),
}

/// How a test server treats its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Echo everything until the client closes.
    Echo,
    /// Echo the first message, then close the connection (FIN).
    CloseAfterFirst,
    /// Echo; close (FIN) a connection idle this many milliseconds.
    IdleClose(u64),
    /// Echo; send `PUSH` (bytes nobody asked for) on a connection idle this
    /// many milliseconds, once.
    PushAfter(u64),
}

#[derive(Default)]
pub struct Log {
    pub events: RefCell<Vec<Ev>>,
    /// When the server closed an idle connection: (client port, instant).
    pub idle_closed_at: RefCell<Vec<(u16, embassy_time::Instant)>>,
}

impl Log {
    /// When the server closed the idle connection from client port `port`
    /// (the latest such close), if it did.
    pub fn idle_closed(&self, port: u16) -> Option<embassy_time::Instant> {
        self.idle_closed_at
            .borrow()
            .iter()
            .rev()
            .find(|(p, _)| *p == port)
            .map(|&(_, at)| at)
    }
    pub fn events(&self) -> Vec<Ev> {
        self.events.borrow().clone()
    }
    pub fn accepted(&self) -> usize {
        self.events
            .borrow()
            .iter()
            .filter(|e| matches!(e, Ev::Accepted(_)))
            .count()
    }
    pub fn fins(&self) -> usize {
        self.events
            .borrow()
            .iter()
            .filter(|e| matches!(e, Ev::Fin(_)))
            .count()
    }
    pub fn idle_closes(&self) -> usize {
        self.events
            .borrow()
            .iter()
            .filter(|e| matches!(e, Ev::IdleClosed(_)))
            .count()
    }
    pub fn rsts(&self) -> usize {
        self.events
            .borrow()
            .iter()
            .filter(|e| matches!(e, Ev::Rst(_)))
            .count()
    }
}

/// Accepts connections on `port` with 4 listening sockets.
pub async fn server(stack: Stack<'_>, port: u16, mode: Mode, log: &Log) -> ! {
    let [never, ..] = join_array([0, 1, 2, 3].map(|_| serve_one(stack, port, mode, log))).await;
    never
}

async fn serve_one(stack: Stack<'_>, port: u16, mode: Mode, log: &Log) -> ! {
    let mut rx = [0u8; 1024];
    let mut tx = [0u8; 1024];
    loop {
        let mut s = TcpSocket::new(stack, &mut rx, &mut tx);
        if s.accept(port).await.is_err() {
            continue;
        }
        let peer = s.remote_endpoint().map(|e| e.port).unwrap_or(0);
        log.events.borrow_mut().push(Ev::Accepted(peer));
        let mut buf = [0u8; 256];
        let mut pushed = false;
        loop {
            let idle = match mode {
                Mode::IdleClose(ms) => Some(ms),
                Mode::PushAfter(ms) if !pushed => Some(ms),
                _ => None,
            };
            let read = match idle {
                Some(ms) => {
                    match embassy_time::with_timeout(
                        embassy_time::Duration::from_millis(ms),
                        s.read(&mut buf),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) if matches!(mode, Mode::PushAfter(_)) => {
                            pushed = true;
                            let _ = s.write_all(b"PUSH").await;
                            let _ = s.flush().await;
                            continue;
                        }
                        Err(_) => {
                            log.events.borrow_mut().push(Ev::IdleClosed(peer));
                            log.idle_closed_at
                                .borrow_mut()
                                .push((peer, embassy_time::Instant::now()));
                            break;
                        }
                    }
                }
                None => s.read(&mut buf).await,
            };
            match read {
                Ok(0) => {
                    log.events.borrow_mut().push(Ev::Fin(peer));
                    break;
                }
                Ok(n) => {
                    if s.write_all(&buf[..n]).await.is_err() {
                        log.events.borrow_mut().push(Ev::Rst(peer));
                        break;
                    }
                    let _ = s.flush().await;
                    if mode == Mode::CloseAfterFirst {
                        break;
                    }
                }
                Err(_) => {
                    log.events.borrow_mut().push(Ev::Rst(peer));
                    break;
                }
            }
        }
        s.close();
        let _ = embassy_time::with_timeout(embassy_time::Duration::from_secs(1), s.flush()).await;
    }
}

/// Waits until `cond` holds (checked every 5 ms), at most `ms` milliseconds.
pub async fn eventually(ms: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = embassy_time::Instant::now() + embassy_time::Duration::from_millis(ms);
    while embassy_time::Instant::now() < end {
        if cond() {
            return true;
        }
        embassy_time::Timer::after_millis(5).await;
    }
    cond()
}

/// Runs `f`, but polls it only once every `ms` milliseconds: an answer that
/// arrives meanwhile (a connection granted to a waiting lease) waits in its
/// ticket, so the connection is handed out only after what the server sent
/// right after accepting it has arrived.
pub async fn polled_every<F: core::future::Future>(ms: u64, f: F) -> F::Output {
    let mut f = core::pin::pin!(f);
    loop {
        let poll = core::future::poll_fn(|cx| core::task::Poll::Ready(f.as_mut().poll(cx))).await;
        if let core::task::Poll::Ready(v) = poll {
            return v;
        }
        embassy_time::Timer::after_millis(ms).await;
    }
}
