//! # wharf-tokio
//!
//! An async connection pool for tokio, driven by the sans-I/O
//! [`wharf_core`] state machine: per-route and total limits, FIFO waiters with
//! deadlines, LIFO/FIFO reuse, idle timeout, TTL, keep-alive expiry,
//! validate-after-inactivity, warm-up (`min_idle`), Envoy's preconnect,
//! drain and graceful close.
//!
//! - [`Pool`]: a cloneable handle, built with [`Pool::builder`].
//!   [`Pool::lease`] / [`Pool::lease_with`] return a [`Lease`].
//! - [`Connector`]: what the pool holds (TCP, TLS, a database client...).
//!   [`TcpConnector`] is ready for `(host, port)` routes.
//! - [`Lease`]: `Deref`/`DerefMut` to the connection, `AsyncRead` /
//!   `AsyncWrite` when the connection is; dropped, it goes back to the pool.
//! - [`Error`]: typed, naming the route.
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
//! ## How it runs
//!
//! The core sits behind one `std::sync::Mutex`, held only for O(1)
//! transitions (a lease, a release, a grant) and never across an `.await`.
//! Waiters live in pre-sized slots holding their wakers, and connection
//! objects in pre-sized slots indexed by the core's handles: leasing an idle
//! connection and dropping the lease allocate nothing.
//!
//! Connects, validations and closes run outside the lock, in the order the
//! core asked for them (a close happens before the connect that replaces
//! it); connects and validations are tasks on the pool's runtime. A driver
//! task feeds the core's timers (lease deadlines, connect timeouts, idle
//! expiry, lifetime, retry backoff). It ends when the last [`Pool`] handle is
//! dropped, draining the pool.
//!
//! Cancel safety: dropping a pending [`LeaseFuture`] removes its waiter; a
//! connection granted to it at that moment goes back to the pool, and a
//! connect that finishes after its waiter left serves the next one.
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

mod cluster;
mod connector;
mod error;
mod lease;
mod pool;
mod shared;
mod trace;

pub use cluster::{ClusterHandle, MAX_CLUSTER_HOSTS};
pub use connector::{tcp_is_unusable, Connector, TcpConnector};
pub use error::{ConfigError, Error};
pub use lease::Lease;
pub use pool::{Builder, LeaseFuture, LeaseOptions, Pool, RouteKey};

pub use wharf_core::{
    Balancer, CancelPolicy, CloseReason, ClusterError, ConnectFailure, Counters, DrainMode,
    PoolStats, ReusePolicy, RouteConfig, RouteStats, Tag,
};

/// The core state machine this crate drives.
pub use wharf_core as core;
