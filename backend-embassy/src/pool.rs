//! The pool handle: leases (route and cluster), hosts, drains, gauges.

use embassy_net::Stack;
use wharf_core::{Config, ConfigError};

use wharf_core::{
    Counters, DrainMode, Instant, PoolStats, RouteConfig, RouteError, RouteStats, Tag,
};

use crate::clock::now;
use crate::error::Error;
use crate::lease::Lease;
use crate::options::LeaseOptions;
use crate::options::Options;
use crate::request::Request;
use crate::route::Route;
use crate::runner::Runner;
use crate::state::{CorePool, Shared, State};

/// Creates a pool over `stack` in `state` (borrowed for good: see
/// [`State`]), with the core's `config` and default [`Options`].
///
/// Every setting has one meaning, checked here: a setting the pool could
/// not honour is a typed [`ConfigError`], and nothing starts.
///
/// | setting | refused with |
/// | --- | --- |
/// | `max_pending: Some(0)` with `min_idle_per_route: 0` (no lease could wait, nothing opens connections ahead) | `NeverServes` |
/// | a zero `connect_timeout`, `idle_timeout` or `max_lifetime` (`None` is "unbounded") | `ZeroTimeout` |
/// | `max_total` above the state's `N`, `max_pending` above `W` | `MaxTotalExceedsStorage`, `MaxPendingExceedsStorage` |
/// | `max_lifetime_jitter_percent` above 100 | `BadJitter` |
/// | the core's other checks (ratio, `min_idle`, ...) | see [`ConfigError`] |
///
/// The storage is the state, sized at compile time: it cannot fail to be
/// allocated. A lease timeout of zero ([`LeaseOptions::timeout`]) means "do
/// not wait". `max_lifetime_jitter_percent`, `strict_tags`,
/// `close_on_unhealthy` and `seed` (from a hardware RNG, if the firmware has
/// one) are fields of the core's [`Config`].
pub fn new<
    'd,
    const N: usize,
    const W: usize,
    const R: usize,
    const TX: usize,
    const RX: usize,
    const H: usize,
>(
    stack: Stack<'d>,
    state: &'static mut State<N, W, R, TX, RX, H>,
    config: Config,
) -> Result<(Pool<'d, H>, Runner<'d, N, H>), ConfigError> {
    new_with_options(stack, state, config, Options::default())
}

/// [`new`] with socket and cancel [`Options`].
pub fn new_with_options<
    'd,
    const N: usize,
    const W: usize,
    const R: usize,
    const TX: usize,
    const RX: usize,
    const H: usize,
>(
    stack: Stack<'d>,
    state: &'static mut State<N, W, R, TX, RX, H>,
    config: Config,
    opts: Options,
) -> Result<(Pool<'d, H>, Runner<'d, N, H>), ConfigError> {
    let shared = state.init(stack, config, opts)?;
    Ok((Pool::new(shared), Runner::new(shared)))
}

/// A handle to the pool: `Copy`, share it between the tasks of one executor.
pub struct Pool<'d, const H: usize = 0> {
    shared: &'d Shared<'d, H>,
}

impl<const H: usize> Clone for Pool<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<const H: usize> Copy for Pool<'_, H> {}

impl<'d, const H: usize> Pool<'d, H> {
    fn new(shared: &'d Shared<'d, H>) -> Self {
        Pool { shared }
    }

    /// The shared state (for the cluster methods).
    pub(crate) fn shared(&self) -> &'d Shared<'d, H> {
        self.shared
    }

    /// Leases a connection of `route`, waiting for one if needed.
    pub async fn lease(&self, route: &Route<H>) -> Result<Lease<'d, H>, Error> {
        self.lease_with(route, LeaseOptions::default()).await
    }

    /// Leases a connection with a tag and/or a timeout.
    ///
    /// Cancel-safe: dropping the future withdraws the request (and gives back a
    /// connection granted but not yet picked up, with its tag and keep-alive).
    pub async fn lease_with(
        &self,
        route: &Route<H>,
        opts: LeaseOptions,
    ) -> Result<Lease<'d, H>, Error> {
        let deadline = opts.timeout.map(|d| now() + d);
        self.lease_retrying(route, opts.tag, deadline, 0).await
    }

    /// The dead-at-hand-out retry, for route and cluster leases: a connection
    /// found dead when it is handed out (the peer closed it while it was idle
    /// and no validation was due) is closed and the request asked again on
    /// `route`, up to the driver's `handout_tries` tries in all, of which the
    /// caller already made `tried`; then [`Error::PeerClosed`]. Each try
    /// closes one connection, so this ends.
    pub(crate) async fn lease_retrying(
        &self,
        route: &Route<H>,
        tag: Option<Tag>,
        deadline: Option<Instant>,
        tried: usize,
    ) -> Result<Lease<'d, H>, Error> {
        let tries = self.shared.inner.borrow().handout_tries();
        for _ in tried..tries {
            if let Some(lease) = self.lease_once(route, tag, deadline).await? {
                return Ok(lease);
            }
        }
        Err(Error::PeerClosed)
    }

    /// One try: `None` when the connection handed out was found dead.
    async fn lease_once(
        &self,
        route: &Route<H>,
        tag: Option<Tag>,
        deadline: Option<Instant>,
    ) -> Result<Option<Lease<'d, H>>, Error> {
        let request = Request::start(self.shared, |pool, now| {
            pool.lease(route, tag, now, deadline).map_err(Error::from)
        })?;
        request.finish().await
    }

    /// Pool-wide gauges.
    pub fn stats(&self) -> PoolStats {
        self.shared.inner.borrow().core().stats()
    }

    /// One route's gauges (`None` if the route is not in the table).
    pub fn route_stats(&self, route: &Route<H>) -> Option<RouteStats> {
        self.shared.inner.borrow().core().route_stats(route)
    }

    /// The core's counters.
    pub fn counters(&self) -> Counters {
        *self.shared.inner.borrow().core().counters()
    }

    /// Per-route overrides (limit, warm-up, preconnect ratio).
    pub fn set_route_config(&self, route: &Route<H>, cfg: RouteConfig) -> Result<(), RouteError> {
        let now = now();
        let mut inner = self.shared.inner.borrow_mut();
        inner.input(|core| core.set_route_config(route, cfg, now))
    }

    /// Drains one route (`Some`) or all of them (`None`); see the core's
    /// `DrainMode`.
    pub fn drain(&self, route: Option<&Route<H>>, mode: DrainMode) {
        let now = now();
        let mut inner = self.shared.inner.borrow_mut();
        let scope = match route {
            Some(r) => wharf_core::DrainScope::Route(r),
            None => wharf_core::DrainScope::All,
        };
        inner.input(|core| core.drain(scope, mode, now));
    }

    /// Graceful shutdown: new leases fail with [`Error::Closed`], idle and
    /// connecting connections close now, and the future completes once every
    /// leased connection was given back and every socket slot is free again
    /// (its close, FIN or reset, done by the runner, which must keep running
    /// meanwhile). Calling it again, or after a drain of all routes for
    /// deletion, waits the same way; up to four tasks wait in it without
    /// extra wake-ups.
    pub async fn close(&self) {
        self.drain(None, DrainMode::DrainAndDelete);
        core::future::poll_fn(|cx| {
            let mut inner = self.shared.inner.borrow_mut();
            let s = inner.core().stats();
            if s.connections == 0 && s.closing == 0 && inner.io().quiet() {
                return core::task::Poll::Ready(());
            }
            inner.io_mut().close_wakers.register(cx.waker());
            core::task::Poll::Pending
        })
        .await
    }

    /// True once the pool was closed ([`Pool::close`] or a drain of all
    /// routes for deletion).
    pub fn is_closed(&self) -> bool {
        self.shared.inner.borrow().core().is_closed()
    }

    /// Runs `f` on the core pool (diagnostics: `check_invariants`, stats).
    pub fn inspect<T>(&self, f: impl FnOnce(&CorePool<'d, H>) -> T) -> T {
        f(self.shared.inner.borrow().core())
    }
}
