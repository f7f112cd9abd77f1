//! The pool handle: a cheap, cloneable handle to the shared state, its
//! route-level operations, and shutdown.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use wharf_core::{Counters, DrainMode, DrainScope, PoolStats, RouteConfig, RouteStats};

use crate::connector::{Connector, RouteKey};
use crate::error::{route_error, Error};
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
        self.shared.lock().driver.kick_timer();
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
        let mut g = shared.lock();
        let now = shared.now();
        let r = g
            .driver
            .input(|core| core.set_route_config(route, config, now));
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
        let mut g = shared.lock();
        let now = shared.now();
        let scope = match route {
            Some(k) => DrainScope::Route(k),
            None => DrainScope::All,
        };
        g.driver.input(|core| core.drain(scope, mode, now));
        shared.finish(g);
    }

    /// Graceful shutdown: new leases fail with [`Error::Closed`], idle and
    /// connecting connections close now, and the future completes once every
    /// leased connection was given back and closed.
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

    /// Checks the core's internal invariants (for tests).
    pub fn check_invariants(&self) -> Result<(), wharf_core::InvariantViolation> {
        self.handle.shared.lock().driver.core().check_invariants()
    }
}
