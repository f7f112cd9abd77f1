//! # wharf-embassy
//!
//! A connection pool over an [`embassy_net::Stack`], driven by the sans-I/O
//! [`wharf_core`] state machine. No heap: the core's storage, every socket's
//! receive and transmit buffer and all bookkeeping live in one [`State`] the
//! application provides (a `static` through `StaticCell`, sized by const
//! generics, as embassy-net's `TcpClientState`).
//!
//! - [`new`] returns a [`Pool`] handle (`Copy`, share it between tasks) and a
//!   [`Runner`] the application spawns (embassy's convention). The runner
//!   drives the core's timers, opens connections (preconnect and warm-up
//!   included), and closes them; connects for different slots proceed
//!   concurrently.
//! - [`Pool::lease`] waits for a connection of a [`Route`] and returns a
//!   [`Lease`]: an `embedded-io-async` `Read`/`Write`/`ReadReady`/`WriteReady`
//!   stream. Dropped, it goes back to the pool (or is closed if it is no longer
//!   healthy); [`Lease::discard`] closes it with a RST.
//! - The pool never has more than `N` sockets in the stack's socket set (a full
//!   smoltcp socket set panics): size `StackResources` for `N` plus the DNS
//!   socket plus the application's own sockets.
//! - Closing sends the FIN (`close()` + `flush()`), or a RST on discard
//!   (`abort()` + `flush()`), before the socket is freed. The core's
//!   `connect_timeout` bounds connects (embassy-net's connect can wait forever).
//! - Routes by IP endpoint or by host name (resolved through the stack's DNS;
//!   IP literals are parsed without a query): a `&'static str` in flash
//!   ([`Route::host`]), or a name known at run time copied into the route
//!   ([`Route::name`], a `heapless::String<H>`, no heap; `H` is the last
//!   parameter of [`State`], default 0; [`NameTooLong`] when it does not fit).
//! - Shutdown: [`Pool::close`] refuses new leases ([`Error::Closed`]),
//!   closes idle connections at once and completes when every leased one
//!   came back and every socket is closed (the runner sends the FINs);
//!   [`Pool::is_closed`]. As `wharf-tokio`'s `close` and `is_closed`.
//! - Feature `nal`: `nal::PooledConnect`, `embedded-nal-async`'s
//!   `TcpConnect` over the pool, for protocol crates written against it
//!   (reqwless, ...): each connect is a pooled lease, dropped connections go
//!   back or close with a FIN.
//! - Clusters, the same shape as `wharf-tokio`'s: [`Pool::add_cluster`]
//!   puts up to `HOSTS` hosts (each a [`Route`]) with a [`Balancer`] and
//!   optional predictive preconnect in a [`ClusterSlot`] the application
//!   provides, and returns a `Copy` [`ClusterHandle`] checked against the
//!   pool by every call ([`Error::ForeignCluster`] from another pool,
//!   [`Error::UnknownCluster`] once removed). [`Pool::lease_cluster`]
//!   returns the same [`Lease`] as a route lease ([`Lease::route`] tells the
//!   host); the cluster's part (preconnect, host pick, lease on the host's
//!   route) runs when the method is called, under the pool's lock; the
//!   returned future only waits, cancel-safe like a route lease.
//!   [`Pool::remove_host`] drains a host, [`Pool::set_host_health`] marks
//!   one (un)healthy; cluster failures are [`Error::Cluster`].
//! - Settings: the core's [`Config`], checked by [`new`] (a setting the pool
//!   could not honour is a [`ConfigError`]: `max_pending: Some(0)` with
//!   `min_idle_per_route: 0` is `NeverServes`, zero connect/idle timeouts and
//!   lifetimes are `ZeroTimeout`, a jitter above 100 % is `BadJitter`,
//!   `max_total` above the state's `N` is `MaxTotalExceedsStorage`); the
//!   storage is the static [`State`], sized at compile time. A lease timeout
//!   of zero ([`LeaseOptions::timeout`]) means "do not wait". The core's
//!   `max_lifetime_jitter_percent`, `strict_tags`, `close_on_unhealthy` and
//!   `seed` (take it from a hardware RNG) are `Config` fields.
//!
//! All of it is single-threaded (the stack is `!Send`): run the runner and the
//! lease users on the same executor.
//!
//! It runs the same [`wharf_driver::Driver`] as the tokio backend (action
//! pump, answer tickets, connection table, abandoned-grant and hand-out
//! rules), behind a `RefCell`; this crate adds the socket slots, the runner
//! and the static state.
//!
//! ```text
//! static STATE: StaticCell<wharf_embassy::State<4, 4, 2, 1024, 1024>> = StaticCell::new();
//! let config = Config { max_total: 4, ..Config::default() };
//! let (pool, runner) = wharf_embassy::new(stack, STATE.init_with(State::new), config)?;
//! spawner.spawn(pool_task(runner))?;
//! let mut conn = pool.lease(&Route::host("broker.local", 1883)).await?;
//! conn.write_all(b"...").await?;
//!
//! // Two hosts in turn, connections opened ahead (ratio 1.5):
//! static API: StaticCell<ClusterSlot<2>> = StaticCell::new(); // or a local
//! let hosts = [
//!     Route::ip(Ipv4Address::new(10, 0, 0, 2), 80),
//!     Route::ip(Ipv4Address::new(10, 0, 0, 3), 80),
//! ];
//! let api = pool.add_cluster(API.init(ClusterSlot::new()), Balancer::RoundRobin, hosts, 1.5)?;
//! let mut conn = pool.lease_cluster(api).await?; // 10.0.0.2
//! let other = pool.lease_cluster(api).await?;    // 10.0.0.3
//! ```

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod fmt;

mod clock;
mod cluster;
mod error;
mod lease;
#[cfg(feature = "nal")]
pub mod nal;
mod options;
mod pool;
mod request;
mod route;
mod runner;
mod sockets;
mod state;

pub use cluster::{ClusterHandle, ClusterSlot};
pub use error::Error;
pub use lease::Lease;
pub use options::{LeaseOptions, Options};
pub use pool::{new, new_with_options, Pool};
pub use route::{HostName, NameTooLong, Route};
pub use runner::Runner;
pub use state::{CorePool, State};

pub use wharf_core::{
    Balancer, CancelPolicy, CloseReason, ClusterError, Config, ConfigError, ConnectFailure,
    Counters, DrainMode, Duration, FailReason, Instant, PoolStats, RouteConfig, RouteError,
    RouteStats, Tag,
};
