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
//! use wharf_tokio::{Balancer, Pool, TcpConnector};
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
//! assert_eq!(first.route().as_ref(), Some(&hosts[0]));
//! assert_eq!(second.route().as_ref(), Some(&hosts[1]));
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
//! `std::sync::Mutex`, held only for O(1) transitions (a lease, a release, a
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
//! A connection is checked with the connector's
//! [`is_broken`](Connector::is_broken) when it is handed out (outside the
//! lock): one the peer closed while it was idle is closed (`PeerClosed`) and
//! the lease gets another. A connector's timed-out connect error counts as a
//! [`ConnectFailure::Timeout`], like the pool's own connect timeout.
//!
//! Cancel safety: dropping a pending [`LeaseFuture`] removes its waiter; a
//! connection granted to it at that moment goes back to the pool with the
//! tag and keep-alive it had, and a connect that finishes after its waiter
//! left serves the next one.
//!
//! Connections have a stream capacity of 1 (HTTP/1-like: the connection object
//! moves into the lease). Multiplexed connections (HTTP/2, capacity > 1) are
//! future work: the core supports them, this backend does not yet.
//!
//! ## Features
//! - `tracing`: `tracing` events for connects, connect failures, reuse,
//!   validations, closes (with the core's [`CloseReason`]) and idle routes.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod builder;
mod cluster;
mod cluster_table;
mod connector;
mod error;
mod lease;
mod lease_future;
mod pool;
mod runtime;
mod trace;

pub use builder::Builder;
pub use cluster::MAX_CLUSTER_HOSTS;
pub use cluster_table::ClusterHandle;
pub use connector::{
    tcp_is_dead, tcp_is_unusable, tcp_poll_unusable, Connector, RouteKey, TcpConnector,
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
