//! The network inside the image: two embassy-net stacks (client 10.0.0.1,
//! the pool's; server 10.0.0.2) joined by an in-memory IP link, and the
//! servers the scenarios talk to on the server stack.
//!
//! Packets to any other address go to the server stack, which drops them:
//! 10.0.0.3 is a host that never answers.

use core::cell::Cell;

use embassy_futures::join::{join, join3, join_array};
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StaticConfigV4};
use embassy_net_driver_channel::{RxRunner, TxRunner};
use embassy_time::{with_timeout, Duration};
use embedded_io_async::Write;

pub const MTU: usize = 1514;
pub const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
pub const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
/// Routed to the server stack, which drops it: no answer ever.
pub const BLACKHOLE: Ipv4Address = Ipv4Address::new(10, 0, 0, 3);

/// Echo until the client closes.
pub const ECHO: u16 = 7000;
/// Echo the first message, then close (FIN).
pub const ONCE: u16 = 7002;
/// Echo; close (FIN) a connection idle for [`IDLE_CLOSE_MS`].
pub const IDLE: u16 = 7003;
pub const IDLE_CLOSE_MS: u64 = 100;

/// The names the DNS server knows (all the server stack's address).
pub const NAMES: [&str; 2] = ["svc-1.wharf.test", "svc-2.wharf.test"];

/// A static IPv4 configuration, the server stack as DNS server.
pub fn ip_config(addr: Ipv4Address) -> embassy_net::Config {
    embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(addr, 24),
        gateway: None,
        dns_servers: [SERVER].into_iter().collect(),
    })
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

/// What one server port saw.
#[derive(Default)]
pub struct PortLog {
    /// Connections accepted.
    pub accepted: Cell<u32>,
    /// Connections the client closed gracefully (read returned 0).
    pub fins: Cell<u32>,
    /// Connections the client reset.
    pub rsts: Cell<u32>,
    /// Connections the server closed because they were idle.
    pub idle_closed: Cell<u32>,
}

impl PortLog {
    fn bump(c: &Cell<u32>) {
        c.set(c.get() + 1);
    }
    fn reset(&self) {
        for c in [&self.accepted, &self.fins, &self.rsts, &self.idle_closed] {
            c.set(0);
        }
    }
}

/// What the servers saw, per port, and the DNS queries answered.
#[derive(Default)]
pub struct Logs {
    pub echo: PortLog,
    pub once: PortLog,
    pub idle: PortLog,
    pub dns_queries: Cell<u32>,
}

impl Logs {
    /// Forgets what earlier scenarios left.
    pub fn reset(&self) {
        self.echo.reset();
        self.once.reset();
        self.idle.reset();
        self.dns_queries.set(0);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Echo,
    CloseAfterFirst,
    IdleClose,
}

/// All the servers: echo (4 listeners), close-after-first (2), idle-close
/// (2), DNS.
pub async fn servers(stack: Stack<'_>, logs: &Logs) -> ! {
    let echo = join_array([0; 4].map(|_| serve(stack, ECHO, Mode::Echo, &logs.echo)));
    let once = join_array([0; 2].map(|_| serve(stack, ONCE, Mode::CloseAfterFirst, &logs.once)));
    let idle = join_array([0; 2].map(|_| serve(stack, IDLE, Mode::IdleClose, &logs.idle)));
    let ([never, ..], _, _) = join3(echo, once, join(idle, dns(stack, logs))).await;
    never
}

async fn serve(stack: Stack<'_>, port: u16, mode: Mode, log: &PortLog) -> ! {
    let mut rx = [0u8; 1024];
    let mut tx = [0u8; 1024];
    loop {
        let mut s = TcpSocket::new(stack, &mut rx, &mut tx);
        if s.accept(port).await.is_err() {
            continue;
        }
        PortLog::bump(&log.accepted);
        let mut buf = [0u8; 256];
        loop {
            let read = if mode == Mode::IdleClose {
                match with_timeout(Duration::from_millis(IDLE_CLOSE_MS), s.read(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => {
                        PortLog::bump(&log.idle_closed);
                        break;
                    }
                }
            } else {
                s.read(&mut buf).await
            };
            match read {
                Ok(0) => {
                    PortLog::bump(&log.fins);
                    break;
                }
                Ok(n) => {
                    if s.write_all(&buf[..n]).await.is_err() {
                        PortLog::bump(&log.rsts);
                        break;
                    }
                    let _ = s.flush().await;
                    if mode == Mode::CloseAfterFirst {
                        break;
                    }
                }
                Err(_) => {
                    PortLog::bump(&log.rsts);
                    break;
                }
            }
        }
        s.close();
        let _ = with_timeout(Duration::from_secs(1), s.flush()).await;
    }
}

/// A DNS server on UDP port 53: `A` answers for [`NAMES`], NXDOMAIN for
/// every other name.
async fn dns(stack: Stack<'_>, logs: &Logs) -> ! {
    let (mut rx_meta, mut tx_meta) = ([PacketMetadata::EMPTY; 2], [PacketMetadata::EMPTY; 2]);
    let (mut rx, mut tx) = ([0u8; 512], [0u8; 512]);
    let mut sock = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    if sock.bind(53).is_err() {
        loop {
            embassy_time::Timer::after_secs(3600).await;
        }
    }
    let mut q = [0u8; 256];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut q).await else {
            continue;
        };
        let q = &q[..n];
        if q.len() < 12 {
            continue;
        }
        logs.dns_queries.set(logs.dns_queries.get() + 1);
        // The question's name, as dotted text.
        let mut name: heapless::String<64> = heapless::String::new();
        let mut at = 12;
        while at < q.len() && q[at] != 0 {
            let len = usize::from(q[at]);
            let label = q.get(at + 1..at + 1 + len).unwrap_or(&[]);
            if !name.is_empty() {
                let _ = name.push('.');
            }
            let _ = name.push_str(core::str::from_utf8(label).unwrap_or("?"));
            at += 1 + len;
        }
        let question_end = (at + 5).min(q.len());
        let known = NAMES.contains(&name.as_str());
        let mut r: heapless::Vec<u8, 300> = heapless::Vec::new();
        let _ = r.extend_from_slice(&q[..2]); // id
        let _ = r.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
        let _ = r.extend_from_slice(&[0, 1, 0, u8::from(known), 0, 0, 0, 0]);
        let _ = r.extend_from_slice(&q[12..question_end]);
        if known {
            // Name (pointer to the question's), A, IN, TTL 60, 4 bytes.
            let _ = r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            let _ = r.extend_from_slice(&SERVER.octets());
        }
        let _ = sock.send_to(&r, from).await;
    }
}
