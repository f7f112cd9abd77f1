//! The pool handle: leases (route and cluster), hosts, drains, gauges.

use core::future::Future;

use embassy_net::Stack;
use wharf_core::{Config, ConfigError};

use wharf_core::{
    ConnectFailure, Counters, DrainMode, Instant, PoolStats, RouteConfig, RouteError, RouteStats,
    Tag,
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

/// A cluster of up to `HOSTS` hosts (each a [`Route`]) with a
/// [`Balancer`](crate::Balancer): the core's [`wharf_core::Cluster`], a plain
/// value the application keeps beside the pool (in a task, or a `static`
/// behind a `RefCell`/mutex) and lends to [`Pool::lease_cluster`],
/// [`Pool::remove_host`] and [`Pool::set_host_health`]. Add hosts with
/// `Cluster::add_host` and set the predictive preconnect ratio with
/// `Cluster::set_predictive_ratio` directly: they do not touch the pool.
pub type Cluster<const HOSTS: usize, const H: usize = 0> = wharf_core::Cluster<Route<H>, HOSTS>;

/// Creates a pool over `stack` in `state` (borrowed for good: see
/// [`State`]), with the core's `config` and default [`Options`].
///
/// Fails if `config` is invalid for the state's sizes (e.g. `max_total > N`).
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
        // A connection found dead when it is handed out (the peer closed it
        // while it was idle and no validation was due) is closed and the
        // request tried again; each try closes one, so this ends.
        let tries = self.shared.inner.borrow().handout_tries();
        for _ in 0..tries {
            if let Some(lease) = self.lease_once(route, opts.tag, deadline).await? {
                return Ok(lease);
            }
        }
        Err(Error::ConnectFailed(ConnectFailure::Remote))
    }

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

    /// Leases a connection through a cluster: predictive preconnect, a host
    /// pick by the cluster's balancer, then a lease on that host's route (see
    /// [`Pool::lease_cluster_with`]).
    pub fn lease_cluster<const HOSTS: usize>(
        &self,
        cluster: &mut Cluster<HOSTS, H>,
    ) -> impl Future<Output = Result<Lease<'d, H>, Error>> + 'd {
        self.lease_cluster_with(cluster, LeaseOptions::default())
    }

    /// Leases a connection through a cluster, with a tag and/or a timeout.
    ///
    /// The cluster's part runs at once, when this is called (not when the
    /// future is first polled), under the pool's lock: predictive preconnect
    /// (connects for the hosts the next picks will go to), the host pick, and
    /// the lease on the picked host's route. The cluster is not borrowed
    /// afterwards. The returned future only waits for the answer, exactly as a
    /// route lease does; it is cancel-safe: dropping it, polled or not,
    /// withdraws the request (or gives back a connection already granted).
    ///
    /// Errors: [`Error::Cluster`]`(`[`ClusterError::NoHosts`](crate::ClusterError::NoHosts)`)` for an empty
    /// cluster, [`Error::Overflow`] when no answer ticket is free (the cluster
    /// is then left untouched), else what a route lease on the picked host
    /// returns. A granted connection found closed by the peer is closed and
    /// the request is retried on the same host.
    pub fn lease_cluster_with<const HOSTS: usize>(
        &self,
        cluster: &mut Cluster<HOSTS, H>,
        opts: LeaseOptions,
    ) -> impl Future<Output = Result<Lease<'d, H>, Error>> + 'd {
        let deadline = opts.timeout.map(|d| now() + d);
        let mut host = None;
        let started = Request::start(self.shared, |pool, now| {
            let picked = cluster.lease(pool, opts.tag, now, deadline)?;
            host = cluster.host(picked.host).cloned();
            Ok(picked.outcome)
        });
        let pool = *self;
        async move {
            if let Some(lease) = started?.finish().await? {
                return Ok(lease);
            }
            // Dead at hand-out: ask again on the same host.
            let Some(route) = host else {
                return Err(Error::ConnectFailed(ConnectFailure::Remote));
            };
            let tries = pool.shared.inner.borrow().handout_tries();
            for _ in 1..tries {
                if let Some(lease) = pool.lease_once(&route, opts.tag, deadline).await? {
                    return Ok(lease);
                }
            }
            Err(Error::ConnectFailed(ConnectFailure::Remote))
        }
    }

    /// Removes `host` from `cluster`; its route drains for deletion
    /// (`DrainAndDelete`): idle connections close (FIN), leased ones close
    /// when they come back, new route leases on it fail with
    /// [`Error::Draining`], and the route is freed once empty. Later cluster
    /// leases go to the other hosts.
    ///
    /// [`Error::Cluster`]`(`[`ClusterError::UnknownHost`](crate::ClusterError::UnknownHost)`)` if it is not in
    /// the cluster.
    pub fn remove_host<const HOSTS: usize>(
        &self,
        cluster: &mut Cluster<HOSTS, H>,
        host: &Route<H>,
    ) -> Result<(), Error> {
        let now = now();
        let mut inner = self.shared.inner.borrow_mut();
        Ok(inner.input(|core| cluster.remove_host(core, host, now))?)
    }

    /// Marks a cluster host healthy or not. The balancer skips unhealthy
    /// hosts while any host is healthy (all hosts are eligible when none is);
    /// an unhealthy host's route connects only for demand (no preconnect, no
    /// warm-up). The mark is also set on the route in the pool (the core's
    /// `set_route_health`), so route leases see it too.
    ///
    /// [`Error::Cluster`]`(`[`ClusterError::UnknownHost`](crate::ClusterError::UnknownHost)`)` if it is not in
    /// the cluster; [`Error::RouteTableFull`] if the route had to be created
    /// to hold the mark and no route slot is free.
    pub fn set_host_health<const HOSTS: usize>(
        &self,
        cluster: &mut Cluster<HOSTS, H>,
        host: &Route<H>,
        healthy: bool,
    ) -> Result<(), Error> {
        let now = now();
        let mut inner = self.shared.inner.borrow_mut();
        Ok(inner.input(|core| cluster.set_health(core, host, healthy, now))?)
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

    /// Runs `f` on the core pool (diagnostics: `check_invariants`, stats).
    pub fn inspect<T>(&self, f: impl FnOnce(&CorePool<'d, H>) -> T) -> T {
        f(self.shared.inner.borrow().core())
    }
}
