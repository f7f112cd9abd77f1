//! The pool handle: a cheap, cloneable handle to the shared state, its
//! route-level operations, and shutdown.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use wharf_core::{Counters, DrainMode, DrainScope, PoolStats, RouteConfig, RouteStats};

use crate::connector::{Connector, RouteKey};
use crate::error::{route_error, ConfigError, Error};
use crate::lease_future::{LeaseFuture, LeaseOptions, Target};
use crate::runtime::Shared;

/// A connection pool: a cheap, cloneable handle.
///
/// Built with [`Pool::builder`]. Building starts a timer task on the tokio
/// runtime (lease deadlines, connect timeouts, idle expiry, lifetime,
/// warm-up, preconnect); it ends when the last handle is dropped, which also
/// drains the pool (idle connections close at once, leased ones when their
/// lease is dropped).
pub struct Pool<K: RouteKey, C: Connector<K>> {
    handle: Arc<PoolHandle<K, C>>,
}

struct PoolHandle<K: RouteKey, C: Connector<K>> {
    shared: Arc<Shared<K, C>>,
}

impl<K: RouteKey, C: Connector<K>> Drop for PoolHandle<K, C> {
    fn drop(&mut self) {
        self.shared.handles_gone.store(true, Ordering::Release);
        let mut g = self.shared.lock();
        g.driver.kick_timer();
        // The kick is woken after the lock is released.
        self.shared.finish(g);
    }
}

impl<K: RouteKey, C: Connector<K>> Clone for Pool<K, C> {
    fn clone(&self) -> Self {
        Pool {
            handle: self.handle.clone(),
        }
    }
}

impl<K: RouteKey, C: Connector<K>> fmt::Debug for Pool<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<K: RouteKey, C: Connector<K>> Pool<K, C> {
    /// A handle over freshly built shared state (the builder's last step).
    pub(crate) fn from_shared(shared: Arc<Shared<K, C>>) -> Self {
        Pool {
            handle: Arc::new(PoolHandle { shared }),
        }
    }

    /// The shared state (for the cluster methods).
    pub(crate) fn shared(&self) -> &Arc<Shared<K, C>> {
        &self.handle.shared
    }

    /// Leases a connection for `route`, waiting (FIFO per route) up to the
    /// pool's lease timeout. Idle connections are reused without waiting;
    /// otherwise a connect starts within the limits. A connection found
    /// closed by the peer when it is handed out (the connector's
    /// [`is_broken`](Connector::is_broken)) is closed and another one taken.
    ///
    /// Cancel-safe: dropping the future removes its waiter, and a connection
    /// granted at that moment goes back to the pool with its tag and
    /// keep-alive.
    pub fn lease<'a>(&'a self, route: &'a K) -> LeaseFuture<'a, K, C> {
        self.lease_with(route, LeaseOptions::new())
    }

    /// [`Pool::lease`] with a tag and/or a lease timeout of its own.
    pub fn lease_with<'a>(&'a self, route: &'a K, options: LeaseOptions) -> LeaseFuture<'a, K, C> {
        LeaseFuture::new(&self.handle.shared, Target::Route(route), options)
    }

    /// Pool-wide gauges (connections, connecting, idle, leased, pending...).
    pub fn stats(&self) -> PoolStats {
        self.handle.shared.lock().driver.core().stats()
    }

    /// One route's gauges, if the route is known.
    pub fn route_stats(&self, route: &K) -> Option<RouteStats> {
        self.handle.shared.lock().driver.core().route_stats(route)
    }

    /// Monotonic counters (connects, preconnects, warm-ups, grants, reuses,
    /// validations, closes by reason, timeouts, overflows...).
    pub fn counters(&self) -> Counters {
        *self.handle.shared.lock().driver.core().counters()
    }

    /// Sets per-route overrides (limit, warm-up, preconnect ratio). Lowering a
    /// limit closes nothing at once: excess connections close as they are
    /// released.
    pub fn set_route_config(&self, route: &K, config: RouteConfig) -> Result<(), Error<C::Error>> {
        let shared = &self.handle.shared;
        let now = shared.now();
        let mut g = shared.lock();
        let r = g
            .driver
            .input(|core| core.set_route_config(route, config, now));
        shared.finish(g);
        r.map_err(|e| route_error(shared.describe(route), e))
    }

    /// Sets `max_total` on the live pool (HttpClient's `setMaxTotal`), from 1
    /// up to [`Builder::max_total_ceiling`](crate::Builder::max_total_ceiling)
    /// (the connection slots are allocated at build). Raising it takes effect
    /// at once (waiting leases may connect); lowering it closes nothing now:
    /// each connection released while the pool is over the new limit closes
    /// (`CloseReason::TotalLimit`).
    ///
    /// Errors: [`Error::Config`] with
    /// [`ConfigError::Pool`](crate::ConfigError::Pool)`(ZeroMaxTotal)` for 0,
    /// `(MaxTotalExceedsStorage)` above the ceiling; nothing changes.
    ///
    /// ```
    /// use wharf_tokio::{Pool, TcpConnector};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), wharf_tokio::Error> {
    /// let pool = Pool::<(String, u16), _>::builder(TcpConnector::new())
    ///     .max_total(4)
    ///     .max_total_ceiling(16)
    ///     .build()?;
    /// pool.set_max_total(16)?;
    /// assert_eq!(pool.stats().max_total, 16);
    /// assert!(pool.set_max_total(17).is_err());
    /// pool.set_max_per_route(8)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_max_total(&self, max_total: u32) -> Result<(), Error<C::Error>> {
        let shared = &self.handle.shared;
        if max_total > shared.max_total_ceiling {
            return Err(Error::Config(ConfigError::Pool(
                wharf_core::ConfigError::MaxTotalExceedsStorage,
            )));
        }
        let now = shared.now();
        let mut g = shared.lock();
        let r = g.driver.input(|core| core.set_max_total(max_total, now));
        shared.finish(g);
        r.map_err(|e| Error::Config(ConfigError::Pool(e)))
    }

    /// Sets the default connection limit of routes without an override
    /// (HttpClient's `setDefaultMaxPerRoute`), at least 1 and at least
    /// `min_idle_per_route`. Raising it takes effect at once; lowering it
    /// closes nothing now: a connection released while its route is over
    /// the limit closes (`CloseReason::RouteLimit`).
    ///
    /// Errors: [`Error::Config`] with
    /// [`ConfigError::Pool`](crate::ConfigError::Pool)`(ZeroMaxPerRoute)` or
    /// `(MinIdleTooLarge)`; nothing changes.
    pub fn set_max_per_route(&self, max_per_route: u32) -> Result<(), Error<C::Error>> {
        let shared = &self.handle.shared;
        let now = shared.now();
        let mut g = shared.lock();
        let r = g
            .driver
            .input(|core| core.set_max_per_route(max_per_route, now));
        shared.finish(g);
        r.map_err(|e| Error::Config(ConfigError::Pool(e)))
    }

    /// Marks a route (host) healthy or not (the core's `set_route_health`).
    /// An unhealthy route connects only for demand (no preconnect, no
    /// warm-up); with [`Builder::close_on_unhealthy`](crate::Builder::close_on_unhealthy)
    /// its idle connections also close at once and its leased ones close
    /// when they come back. Cluster hosts: [`Pool::set_host_health`].
    ///
    /// [`Error::RouteTableFull`] if the route had to be created to hold the
    /// mark and no route slot is free; [`Error::Draining`] if the pool is
    /// closed.
    pub fn set_route_health(&self, route: &K, healthy: bool) -> Result<(), Error<C::Error>> {
        let shared = &self.handle.shared;
        let now = shared.now();
        let mut g = shared.lock();
        let r = g
            .driver
            .input(|core| core.set_route_health(route, healthy, now));
        shared.finish(g);
        r.map_err(|e| route_error(shared.describe(route), e))
    }

    /// Drains one route (`Some(route)`) or all of them (`None`):
    /// [`DrainMode::DrainExisting`] retires the existing connections (idle ones
    /// close now, leased ones when released) while new leases get new
    /// connections; [`DrainMode::DrainAndDelete`] also refuses new leases on
    /// the route (and, for all routes, closes the pool).
    pub fn drain(&self, route: Option<&K>, mode: DrainMode) {
        let shared = &self.handle.shared;
        let now = shared.now();
        let mut g = shared.lock();
        let scope = match route {
            Some(k) => DrainScope::Route(k),
            None => DrainScope::All,
        };
        g.driver.input(|core| core.drain(scope, mode, now));
        shared.finish(g);
    }

    /// Graceful shutdown: new leases fail with [`Error::Closed`], idle
    /// connections close now, and the future completes once every leased
    /// connection was given back and closed.
    ///
    /// Leases already waiting are not failed at once: no new connection is
    /// made for them, but a connection of their route given back (or a
    /// stream of it, or a connect already under way) still serves them,
    /// oldest first; once their route has no connection left they fail with
    /// [`Error::Draining`] (or at their lease timeout). Connecting
    /// connections close now when no lease waits on their route.
    pub async fn close(&self) {
        self.drain(None, DrainMode::DrainAndDelete);
        let shared = &self.handle.shared;
        loop {
            let notified = shared.closed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if shared.quiet(&shared.lock()) {
                return;
            }
            notified.await;
        }
    }

    /// True once the pool was closed ([`Pool::close`] or a drain of all routes
    /// for deletion).
    pub fn is_closed(&self) -> bool {
        self.handle.shared.lock().driver.core().is_closed()
    }

    /// Copies the pool's gauges and counters to the `metrics` facade now
    /// (feature `metrics`; a task also does it every
    /// [`Builder::metrics_interval`](crate::Builder::metrics_interval)).
    ///
    /// Reported, each with the label `pool`
    /// ([`Builder::metrics_name`](crate::Builder::metrics_name)):
    ///
    /// | metric | kind | labels | from |
    /// | --- | --- | --- | --- |
    /// | `wharf_connections` | gauge | `state`: `connecting`, `idle`, `busy` (leased, validating or draining), `closing` | [`Pool::stats`] |
    /// | `wharf_leased`, `wharf_pending` | gauge | | [`Pool::stats`] |
    /// | `wharf_route_connections`, `wharf_route_idle`, `wharf_route_leased`, `wharf_route_pending` | gauge | `route` (the connector's `describe`) | [`Pool::route_stats`], for each route that has connected; zero once the pool frees it |
    /// | `wharf_connects_total`, `wharf_grants_total`, `wharf_reuses_total`, `wharf_validations_total`, `wharf_timeouts_total`, `wharf_overflows_total`, `wharf_cancels_total` | counter | | [`Pool::counters`] |
    /// | `wharf_connect_failures_total` | counter | `reason`: `timeout`, `local`, `remote` | [`Pool::counters`] |
    /// | `wharf_closes_total` | counter | `reason`: `discarded`, `expired`, `idle_timeout`, `evicted`, `route_limit`, `idle_limit`, `max_leases`, `stale`, `peer_closed`, `drained`, `connect_timeout`, `excess`, `total_limit` | [`Pool::counters`] |
    /// | `wharf_lease_wait_seconds` | histogram | | each lease future, when it completes (granted or failed; not when dropped) |
    #[cfg(feature = "metrics")]
    pub fn export_metrics(&self) {
        self.handle.shared.export_metrics();
    }

    /// The connector the pool opens its connections with.
    pub fn connector(&self) -> &C {
        &self.handle.shared.connector
    }

    /// The seed of the pool's randomness (the route table's keyed hash, the
    /// lifetime jitter): [`Builder::seed`](crate::Builder::seed)'s, or the
    /// one drawn at random for this pool.
    pub fn seed(&self) -> u64 {
        self.handle.shared.seed
    }

    /// Checks the core's internal invariants (for tests).
    pub fn check_invariants(&self) -> Result<(), wharf_core::InvariantViolation> {
        self.handle.shared.lock().driver.core().check_invariants()
    }
}
