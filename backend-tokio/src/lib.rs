//! # wharf-tokio
//!
//! An async connection pool for tokio, driven by the sans-I/O
//! [`wharf_core`] state machine: per-route and total limits, FIFO waiters with
//! deadlines, LIFO/FIFO reuse, idle timeout, TTL, keep-alive expiry,
//! validate-after-inactivity, warm-up (`min_idle`), Envoy's preconnect,
//! clusters (load balancing and predictive preconnect over many hosts),
//! drain and graceful close.
//!
//! - [`Pool`]: a cloneable handle, built with [`Pool::builder`].
//!   [`Pool::lease`] / [`Pool::lease_with`] return a [`Lease`].
//! - [`Connector`]: what the pool holds (TCP, TLS, a database client...).
//!   [`TcpConnector`] is ready for `(host, port)` routes.
//! - [`Lease`]: `Deref`/`DerefMut` to the connection, `AsyncRead` /
//!   `AsyncWrite` when the connection is; dropped, it goes back to the pool.
//! - [`Error`]: typed, naming the route (and the cluster).
//! - Clusters: [`Pool::add_cluster`] puts up to [`MAX_CLUSTER_HOSTS`] hosts
//!   (each a route of the pool) behind a [`ClusterHandle`], with a
//!   [`Balancer`] and optional predictive preconnect;
//!   [`Pool::lease_cluster`] / [`Pool::lease_cluster_with`] return the same
//!   [`Lease`] as a route lease. See [Clusters](#clusters).
//!
//! ```
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use wharf_tokio::{Pool, TcpConnector};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A loopback echo server to talk to.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let port = listener.local_addr()?.port();
//! tokio::spawn(async move {
//!     while let Ok((mut s, _)) = listener.accept().await {
//!         tokio::spawn(async move {
//!             let mut buf = [0u8; 64];
//!             while let Ok(n @ 1..) = s.read(&mut buf).await {
//!                 if s.write_all(&buf[..n]).await.is_err() { break }
//!             }
//!         });
//!     }
//! });
//!
//! let pool = Pool::builder(TcpConnector::new())
//!     .max_total(8)
//!     .max_per_route(2)
//!     .build()?;
//! let route = (String::from("127.0.0.1"), port);
//!
//! for _ in 0..3 {
//!     let mut conn = pool.lease(&route).await?;
//!     conn.write_all(b"ping").await?;
//!     let mut buf = [0u8; 4];
//!     conn.read_exact(&mut buf).await?;
//!     assert_eq!(&buf, b"ping");
//!     // Dropping the lease gives the connection back.
//! }
//! // One connection served all three leases.
//! assert_eq!(pool.counters().connects, 1);
//! assert_eq!(pool.counters().reuses, 2);
//! pool.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Clusters
//!
//! A cluster is the core's [`wharf_core::Cluster`] kept in the pool's shared
//! state, so every clone of the pool (every task) leases through the same
//! balancer. Each host is an ordinary route: the pool's per-route and total
//! limits, reuse, timeouts and drains apply to it as to any route.
//!
//! ```
//! # use tokio::net::TcpListener;
//! use wharf_tokio::{Balancer, Lease, Pool, TcpConnector};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let a = TcpListener::bind("127.0.0.1:0").await?;
//! # let b = TcpListener::bind("127.0.0.1:0").await?;
//! # let (port_a, port_b) = (a.local_addr()?.port(), b.local_addr()?.port());
//! # tokio::spawn(async move { let mut k = Vec::new(); while let Ok((s, _)) = a.accept().await { k.push(s) } });
//! # tokio::spawn(async move { let mut k = Vec::new(); while let Ok((s, _)) = b.accept().await { k.push(s) } });
//! let pool = Pool::builder(TcpConnector::new()).max_per_route(2).build()?;
//! let hosts = [
//!     (String::from("127.0.0.1"), port_a),
//!     (String::from("127.0.0.1"), port_b),
//! ];
//! // Hosts in turn; predictive preconnect opens connections ahead (ratio 1.5).
//! let api = pool.add_cluster("api", Balancer::RoundRobin, hosts.clone(), 1.5)?;
//! let first = pool.lease_cluster(api).await?;
//! let second = pool.lease_cluster(api).await?;
//! assert_eq!(Lease::route(&first).as_ref(), Some(&hosts[0]));
//! assert_eq!(Lease::route(&second).as_ref(), Some(&hosts[1]));
//!
//! pool.set_host_health(api, &hosts[0], false)?; // skipped while host 1 is healthy
//! pool.remove_host(api, &hosts[1])?;            // drained: idle connections close
//! # drop((first, second));
//! # Ok(())
//! # }
//! ```
//!
//! The cluster's part of a lease (predictive preconnect, the balancer's pick
//! among the healthy hosts, the core's lease on the picked host's route) runs
//! under the pool's lock when the [`LeaseFuture`] is first polled; from there
//! it is a route lease: granted at once from an idle connection (no
//! allocation) or queued FIFO on the host's route, cancel-safe. Cluster
//! failures are [`Error::Cluster`] (naming the cluster and host),
//! [`Error::UnknownCluster`] for a removed cluster, or the error a route lease
//! on the picked host gives.
//!
//! ## How it runs
//!
//! The pool is the [`wharf_driver::Driver`] (the same driver the embassy
//! backend runs: action pump, answer tickets, connection table) behind one
//! `parking_lot::Mutex`, held only for O(1) transitions (a lease, a release, a
//! grant) and never across an `.await`. Answer tickets hold the waiting
//! futures' wakers, and connection objects live in pre-sized slots indexed
//! by the core's handles: leasing an idle connection and dropping the lease
//! allocate nothing.
//!
//! Connects, validations and closes run outside the lock, in the order the
//! core asked for them (a close happens before the connect that replaces
//! it); connects and validations are tasks on the pool's runtime. A timer
//! task feeds the core's timers (lease deadlines, connect timeouts, idle
//! expiry, lifetime, retry backoff). It ends when the last [`Pool`] handle is
//! dropped, draining the pool.
//!
//! The pool's clock is read once per operation, before the lock. On Linux on
//! a multi-thread runtime it is `CLOCK_MONOTONIC_COARSE` (a few nanoseconds
//! to read; the kernel's tick as resolution, 1-10 ms, `clock_getres`), read
//! as an upper bound: a lease never times out early (up to a few ticks
//! late), and the pool's other timers (connect and idle timeouts, lifetime,
//! keep-alive, backoff) and the idle time given to the hand-out check are
//! exact to a tick or two. Elsewhere, and on a current-thread runtime (the
//! only kind whose clock tokio can pause), it is `tokio::time::Instant`, so
//! `tokio::time::pause` and `start_paused` drive the pool's timers as they
//! drive tokio's.
//!
//! A connector's timed-out connect error counts as a
//! [`ConnectFailure::Timeout`], like the pool's own connect timeout.
//!
//! Cancel safety: dropping a pending [`LeaseFuture`] removes its waiter; a
//! connection granted to it at that moment goes back to the pool with the
//! tag and keep-alive it had, and a connect that finishes after its waiter
//! left serves the next one.
//!
//! ## What the pool checks before it hands a connection out
//!
//! - **Idle watching** ([`Connector::poll_event`]). While a connection is
//!   idle, the pool holds it with read interest registered with the reactor
//!   (one waker per connection slot, made once: no task and no allocation
//!   per connection). A FIN, a RST or bytes nobody asked for wake the pool's
//!   timer task, which closes the connection at once (`PeerClosed`): it
//!   leaves the idle list before any lease asks, and a waiter gets another.
//! - **The hand-out check** ([`Connector::is_dead_at_handout`], from the
//!   idle list and when a release hands the connection straight to a
//!   waiting lease). [`TcpConnector`] reads the readiness the reactor
//!   already recorded (no system call when nothing arrived) and confirms
//!   with a non-blocking peek only when the socket is readable, or when the
//!   connection was idle at least [`TcpConnector::peek_after_idle`] (1 ms):
//!   the reactor records readiness when it turns, so a FIN that reached the
//!   kernel since then is only seen by asking the kernel. A connection
//!   reused at once (the warm path) costs no system call. A dead one is
//!   closed and the lease gets another.
//! - **Validation after inactivity** (`validate_after_inactivity`, 2 s by
//!   default): the connector's [`is_stale`](Connector::is_stale) check for
//!   connectors that cannot watch.
//! - **The release check** ([`Connector::is_broken`]): a connection given
//!   back with bytes unread, or closed, is closed instead of reused.
//!
//! One race no pool can close: a server that closes an idle connection at
//! the very moment a request is written on it (the FIN crosses the request
//! on the wire). The HTTP layer handles it by retrying a request that was
//! never sent.
//!
//! ## Multiplexed connections
//!
//! A [`Connector`] declares a connection multiplexed (HTTP/2, gRPC) with
//! [`multiplexed`](Connector::multiplexed): its stream capacity, asked once
//! after the connect (for HTTP/2, h2's `SendRequest::current_max_send_streams()`).
//! The connection then stays in the pool and up to that many leases share
//! it, each with a handle of its own made by [`share`](Connector::share) (a
//! clone of hyper's `SendRequest`). The pool watches it for its whole life
//! through [`poll_event`](Connector::poll_event): what the connection's
//! task saw (a SETTINGS frame changing `MAX_CONCURRENT_STREAMS`: a
//! [`ConnEvent::Capacity`]; a GOAWAY: [`ConnEvent::PeerClosed`], the leases
//! out finish and no new one starts) reaches the pool by waking the waker
//! `poll_event` was given. With `max_leases_per_conn`, the lease that uses
//! the last one drains the connection. Size the lease slots with
//! [`Builder::max_leases`] and the demand with
//! [`Builder::connecting_capacity`].
//!
//! ```
//! use std::io;
//! use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
//! use std::sync::{Arc, Mutex};
//! use std::task::{Context, Poll, Waker};
//! use std::time::Duration;
//! use wharf_tokio::{ConnEvent, Connector, Lease, Pool};
//!
//! /// What an HTTP/2 connection's task saw: SETTINGS and GOAWAY.
//! #[derive(Default)]
//! struct Frames {
//!     max_streams: AtomicU32,
//!     settings: AtomicBool,
//!     goaway: AtomicBool,
//!     waker: Mutex<Option<Waker>>,
//! }
//! impl Frames {
//!     /// The connection task got a frame: wake the pool's watch.
//!     fn seen(&self) {
//!         if let Some(w) = self.waker.lock().unwrap().take() { w.wake() }
//!     }
//! }
//!
//! /// A lease's handle (a clone per lease, as hyper's `SendRequest`).
//! #[derive(Clone)]
//! struct H2 { frames: Arc<Frames> }
//!
//! /// A fake HTTP/2 connector; `last` lets this example play the server.
//! #[derive(Default)]
//! struct H2Connector { last: Mutex<Option<Arc<Frames>>> }
//!
//! impl Connector<&'static str> for H2Connector {
//!     type Conn = H2;
//!     type Error = io::Error;
//!     async fn connect(&self, _route: &&'static str) -> io::Result<H2> {
//!         // Real: TCP, the h2 handshake, spawn the connection task (which
//!         // updates `Frames` and calls `seen()`).
//!         let frames = Arc::new(Frames::default());
//!         frames.max_streams.store(4, SeqCst);
//!         *self.last.lock().unwrap() = Some(frames.clone());
//!         Ok(H2 { frames })
//!     }
//!     fn multiplexed(&self, c: &H2) -> Option<u32> {
//!         Some(c.frames.max_streams.load(SeqCst)) // current_max_send_streams()
//!     }
//!     fn share(&self, c: &H2) -> Option<H2> {
//!         Some(c.clone()) // SendRequest::clone()
//!     }
//!     fn poll_event(&self, c: &mut H2, cx: &mut Context<'_>) -> Poll<ConnEvent> {
//!         let f = &c.frames;
//!         *f.waker.lock().unwrap() = Some(cx.waker().clone());
//!         if f.goaway.load(SeqCst) {
//!             Poll::Ready(ConnEvent::PeerClosed)
//!         } else if f.settings.swap(false, SeqCst) {
//!             Poll::Ready(ConnEvent::Capacity(f.max_streams.load(SeqCst)))
//!         } else {
//!             Poll::Pending
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), wharf_tokio::Error> {
//! let pool = Pool::builder(H2Connector::default())
//!     .max_per_route(1)
//!     .max_leases(16)
//!     .connecting_capacity(4)
//!     .build()?;
//! let route = "api";
//! let mut leases = Vec::new();
//! for _ in 0..4 {
//!     leases.push(pool.lease(&route).await?);
//! }
//! // Four streams at once on one connection.
//! assert!(leases.iter().all(|l| Lease::id(&l).conn() == Lease::id(&leases[0]).conn()));
//! assert_eq!(pool.counters().connects, 1);
//!
//! // The peer's SETTINGS lowers MAX_CONCURRENT_STREAMS to 2.
//! let frames = leases[0].frames.clone();
//! frames.max_streams.store(2, SeqCst);
//! frames.settings.store(true, SeqCst);
//! frames.seen();
//! tokio::time::sleep(Duration::from_millis(10)).await;
//! // Four out, capacity 2: a new lease waits until fewer than 2 are out.
//! leases.truncate(2);
//! let quick = wharf_tokio::LeaseOptions::new().timeout(Duration::from_millis(20));
//! assert!(pool.lease_with(&route, quick).await.is_err_and(|e| e.is_timeout()));
//! leases.pop();
//! let third = pool.lease(&route).await?;
//!
//! // A GOAWAY: the leases out finish, no new one starts on it; it closes
//! // with its last lease and the next lease gets a new connection.
//! frames.goaway.store(true, SeqCst);
//! frames.seen();
//! tokio::time::sleep(Duration::from_millis(10)).await;
//! drop((leases, third));
//! let fresh = pool.lease(&route).await?;
//! assert!(!Arc::ptr_eq(&fresh.frames, &frames));
//! assert_eq!(pool.counters().connects, 2);
//! # Ok(())
//! # }
//! ```
//!
//! ## Features
//! - `tracing`: `tracing` events for connects, connect failures, reuse,
//!   validations, closes (with the core's [`CloseReason`]) and idle routes.
//! - `metrics`: gauges (connections by state, leased, pending, per route),
//!   counters (connects, failures by reason, grants, reuses, closes by
//!   reason, timeouts, overflows, cancels) and a lease-wait histogram through
//!   the [`metrics`](https://docs.rs/metrics/0.24) facade; see
//!   `Pool::export_metrics`.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod builder;
mod clock;
mod cluster;
mod cluster_table;
mod connector;
mod error;
#[cfg(feature = "http")]
pub mod http;
mod lease;
mod lease_future;
mod metrics;
mod pool;
mod runtime;
mod sizing;
mod trace;
mod unwind;

pub use builder::{Builder, DEFAULT_MAX_STORAGE};
pub use cluster::MAX_CLUSTER_HOSTS;
pub use cluster_table::ClusterHandle;
pub use connector::{
    classify_io, tcp_is_dead, tcp_is_unusable, tcp_poll_unusable, Connector, RouteKey, TcpConnector,
};
pub use error::{ConfigError, Error};
pub use lease::Lease;
pub use lease_future::{LeaseFuture, LeaseOptions};
pub use pool::Pool;
pub use wharf_driver::ConnEvent;

pub use wharf_core::{
    Balancer, CancelPolicy, CloseReason, ClusterError, ConnectFailure, Counters, DrainMode,
    PoolStats, ReusePolicy, RouteConfig, RouteStats, Tag,
};

/// The core state machine this crate drives.
pub use wharf_core as core;
