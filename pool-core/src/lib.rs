//! # wharf-core
//!
//! A connection pool as a pure state machine: `#![no_std]`, no allocation after
//! construction, no clock, no sockets. The same code keeps three MQTT
//! connections warm on a Cortex-M0 and thousands of upstream connections in a
//! proxy.
//!
//! Its semantics follow Envoy's upstream connection pool (connection states,
//! `shouldConnect` preconnect, stream capacity, overflow, drain, idle routes) and
//! Apache HttpClient 5's `StrictConnPool` (per-route and total limits, FIFO
//! waiters with deadlines, LIFO/FIFO reuse, state matching, TTL and keep-alive,
//! cross-route eviction). `docs/SEMANTICS.md` states every rule.
//!
//! ## Driving it (sans-I/O, as quinn-proto and str0m)
//!
//! Inputs are method calls that carry `now`; outputs are [`Action`]s drained
//! with [`Pool::poll_action`] until `None` after **every** input; then the
//! backend sleeps until [`Pool::poll_timeout`] and calls
//! [`Pool::handle_timeout`]. Connections, leases, waiters and routes are named by
//! generational handles, so stale handles are typed errors.
//!
//! ```
//! use wharf_core::*;
//!
//! let mut storage: Storage<&str, 4, 2, 4, 4> = Storage::new();
//! let config = Config { max_total: 4, max_per_route: 2, ..Config::default() };
//! let mut pool = Pool::new(&mut storage, config).unwrap();
//! let t0 = Instant::from_millis(0);
//!
//! // No connection yet: the request waits and the pool asks for a connect.
//! let LeaseOutcome::Queued(waiter) = pool.lease(&"db:5432", None, t0, None).unwrap() else {
//!     unreachable!()
//! };
//! let Some(Action::Connect { conn, route }) = pool.poll_action() else { unreachable!() };
//! assert_eq!(pool.route_key(route), Some(&"db:5432"));
//! assert_eq!(pool.poll_action(), None);
//!
//! // The backend connected (an HTTP/1 connection: one stream at a time).
//! pool.connected(conn, 1, Instant::from_millis(3)).unwrap();
//! let Some(Action::Granted { waiter: w, lease }) = pool.poll_action() else { unreachable!() };
//! assert_eq!((w, lease.conn()), (waiter, conn));
//!
//! // Done with it: it goes back idle, and the next lease reuses it at once.
//! pool.release(lease, Release::REUSE, Instant::from_millis(9)).unwrap();
//! let again = pool.lease(&"db:5432", None, Instant::from_millis(10), None).unwrap();
//! assert!(matches!(again, LeaseOutcome::Granted(l) if l.conn() == conn));
//! assert_eq!(pool.counters().reuses, 1);
//! pool.check_invariants().unwrap();
//! ```
//!
//! ## Storage
//!
//! [`Storage`] (const generics, firmware) or [`Capacity`] with
//! `Pool::with_capacity` (feature `alloc`, servers). Lease, release, grant and
//! cancel are O(1) in the number of connections and routes: index-linked lists
//! (per-route ready lists in reuse order, a global idle LRU, per-route FIFO
//! waiter queues) and indexed binary heaps for timers (O(log n)). Matching a
//! *tagged* lease walks the route's ready list.
//!
//! ## Features
//! - `alloc`: runtime-sized storage.
//! - `defmt`: `defmt::Format` on public types and defmt logging.
//! - `log`: logging through `log` on hosts.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod fmt;

mod action;
mod cluster;
mod config;
mod error;
mod handle;
mod invariant;
mod stats;
mod storage;
mod time;

mod hash;
mod heap;
mod index;
mod list;
mod slot;

mod pool;
mod tables;

pub use action::{Action, CloseReason, ConnectFailure, FailReason};
pub use cluster::{Balancer, Cluster, ClusterError, ClusterLease};
pub use config::{CancelPolicy, Config, ConfigError, ReusePolicy, RouteConfig};
pub use error::{CancelError, ConnError, LeaseError, ReleaseError, RouteError};
pub use handle::{ConnId, Lease, LeaseId, RouteId, Tag, WaiterId};
pub use index::Index;
pub use invariant::InvariantViolation;
pub use pool::{
    Cancelled, DrainMode, DrainScope, LeaseOutcome, Pool, Release, RouteLoad, Validation,
};
pub use stats::{Counters, PoolStats, RouteStats};
pub use storage::{Capacity, Storage};
pub use time::{Duration, Instant};
