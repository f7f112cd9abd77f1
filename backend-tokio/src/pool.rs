//! The pool handle, its builder and the lease future.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle;
use wharf_core::{
    CancelPolicy, Capacity, Config, Counters, DrainMode, DrainScope, LeaseError, LeaseOutcome,
    PoolStats, ReusePolicy, RouteConfig, RouteError, RouteStats, Tag, WaiterId,
};

use crate::cluster::ClusterHandle;
use crate::error::ConfigError;
use crate::lease::Lease;
use crate::shared::{driver, Answer, Inner, Settings, Shared};
use crate::{Connector, Error};

/// The bounds a route key needs: hashable, cloneable (the core keeps one copy
/// per route), printable for errors, and shareable across tasks.
pub trait RouteKey: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static {}
impl<K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static> RouteKey for K {}

/// A connection pool: a cheap, cloneable handle.
///
/// Built with [`Pool::builder`]. Building starts a driver task on the tokio
/// runtime (timers: lease deadlines, connect timeouts, idle expiry, lifetime,
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
        self.shared.driver_wake.notify_one();
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

/// Options for one lease ([`Pool::lease_with`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LeaseOptions {
    /// Connection state to match (HttpClient's `state`): a connection tagged
    /// with it is preferred, then an untagged one.
    pub tag: Option<Tag>,
    /// How long to wait for a connection; `None` = the pool's lease timeout.
    pub timeout: Option<Duration>,
}

impl LeaseOptions {
    /// No tag, the pool's lease timeout.
    pub const fn new() -> Self {
        LeaseOptions {
            tag: None,
            timeout: None,
        }
    }
    /// Asks for connections tagged `tag` (or untagged ones).
    pub const fn tag(mut self, tag: Tag) -> Self {
        self.tag = Some(tag);
        self
    }
    /// Waits at most `timeout` for a connection.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<K: RouteKey, C: Connector<K>> Pool<K, C> {
    /// The shared state (for the cluster methods).
    pub(crate) fn shared(&self) -> &Arc<Shared<K, C>> {
        &self.handle.shared
    }

    /// A builder with the defaults listed on [`Builder`].
    pub fn builder(connector: C) -> Builder<K, C> {
        Builder::new(connector)
    }

    /// Leases a connection for `route`, waiting (FIFO per route) up to the
    /// pool's lease timeout. Idle connections are reused without waiting;
    /// otherwise a connect starts within the limits.
    ///
    /// Cancel-safe: dropping the future removes its waiter, and a connection
    /// granted at that moment goes back to the pool.
    pub fn lease<'a>(&'a self, route: &'a K) -> LeaseFuture<'a, K, C> {
        self.lease_with(route, LeaseOptions::new())
    }

    /// [`Pool::lease`] with a tag and/or a lease timeout of its own.
    pub fn lease_with<'a>(&'a self, route: &'a K, options: LeaseOptions) -> LeaseFuture<'a, K, C> {
        LeaseFuture::new(&self.handle.shared, Target::Route(route), options)
    }

    /// Pool-wide gauges (connections, connecting, idle, leased, pending...).
    pub fn stats(&self) -> PoolStats {
        self.handle.shared.lock().core.stats()
    }

    /// One route's gauges, if the route is known.
    pub fn route_stats(&self, route: &K) -> Option<RouteStats> {
        self.handle.shared.lock().core.route_stats(route)
    }

    /// Monotonic counters (connects, preconnects, warm-ups, grants, reuses,
    /// validations, closes by reason, timeouts, overflows...).
    pub fn counters(&self) -> Counters {
        *self.handle.shared.lock().core.counters()
    }

    /// Sets per-route overrides (limit, warm-up, preconnect ratio). Lowering a
    /// limit closes nothing at once: excess connections close as they are
    /// released.
    pub fn set_route_config(&self, route: &K, config: RouteConfig) -> Result<(), Error> {
        let shared = &self.handle.shared;
        let mut g = shared.lock();
        let now = shared.now();
        let r = g.core.set_route_config(route, config, now);
        shared.finish(g);
        r.map_err(|e| {
            let route = shared.describe(route);
            route_error(route, e)
        })
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
        g.core.drain(scope, mode, now);
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
            {
                let g = shared.lock();
                let s = g.core.stats();
                if s.connections == 0
                    && s.closing == 0
                    && g.ops.is_empty()
                    && !g.flushing
                    && shared.tasks.load(Ordering::Acquire) == 0
                {
                    return;
                }
            }
            notified.await;
        }
    }

    /// True once the pool was closed ([`Pool::close`] or a drain of all routes
    /// for deletion).
    pub fn is_closed(&self) -> bool {
        self.handle.shared.lock().core.is_closed()
    }

    /// Checks the core's internal invariants (for tests).
    pub fn check_invariants(&self) -> Result<(), wharf_core::InvariantViolation> {
        self.handle.shared.lock().core.check_invariants()
    }
}

/// The error of a route call the core refused.
pub(crate) fn route_error(route: String, e: RouteError) -> Error {
    match e {
        RouteError::Config(error) => Error::Config(ConfigError::Route { route, error }),
        RouteError::RouteTableFull => Error::RouteTableFull { route },
        RouteError::Draining | RouteError::UnknownRoute => Error::Draining { route },
    }
}

/// The error of a lease the core refused at once.
pub(crate) fn lease_error(route: String, e: LeaseError) -> Error {
    match e {
        LeaseError::Overflow => Error::Overflow { route },
        LeaseError::RouteTableFull => Error::RouteTableFull { route },
        LeaseError::Draining => Error::Draining { route },
        LeaseError::Closed => Error::Closed { route },
        LeaseError::Timeout => Error::Timeout {
            route,
            waited: Duration::ZERO,
        },
    }
}

/// What a lease future leases from.
pub(crate) enum Target<'a, K> {
    Route(&'a K),
    Cluster(ClusterHandle),
}

impl<K> Clone for Target<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K> Copy for Target<'_, K> {}

enum State {
    Init,
    Waiting {
        waiter: WaiterId,
        slot: u32,
        started: wharf_core::Instant,
    },
    Done,
}

/// The future of [`Pool::lease`] and [`Pool::lease_cluster`]. Dropping it
/// before it completes removes the request (and gives back a connection
/// granted at that moment).
#[must_use = "futures do nothing unless polled"]
pub struct LeaseFuture<'a, K: RouteKey, C: Connector<K>> {
    shared: &'a Arc<Shared<K, C>>,
    target: Target<'a, K>,
    /// For a cluster lease that queued: the host's route (for errors).
    host: Option<wharf_core::RouteId>,
    tag: Option<Tag>,
    timeout: Option<wharf_core::Duration>,
    state: State,
}

impl<K: RouteKey, C: Connector<K>> fmt::Debug for LeaseFuture<'_, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LeaseFuture");
        match self.target {
            Target::Route(k) => d.field("route", k),
            Target::Cluster(c) => d.field("cluster", &c).field("host", &self.host),
        };
        d.finish_non_exhaustive()
    }
}

// No field is ever pinned (the host key is only read for errors).
impl<K: RouteKey, C: Connector<K>> Unpin for LeaseFuture<'_, K, C> {}

impl<'a, K: RouteKey, C: Connector<K>> LeaseFuture<'a, K, C> {
    pub(crate) fn new(
        shared: &'a Arc<Shared<K, C>>,
        target: Target<'a, K>,
        options: LeaseOptions,
    ) -> Self {
        let timeout = match options.timeout {
            Some(t) => Some(wharf_core::Duration::from(t)),
            None => shared.settings.lease_timeout,
        };
        LeaseFuture {
            shared,
            target,
            host: None,
            tag: options.tag,
            timeout,
            state: State::Init,
        }
    }

    /// The core's lease, on the route or through the cluster (under the lock).
    fn start(
        &mut self,
        g: &mut Inner<K, C::Conn>,
        now: wharf_core::Instant,
    ) -> Result<LeaseOutcome, Error> {
        let deadline = self.timeout.map(|t| now + t);
        match self.target {
            Target::Route(key) => g
                .core
                .lease(key, self.tag, now, deadline)
                .map_err(|e| lease_error(self.shared.describe(key), e)),
            Target::Cluster(handle) => {
                let Inner { core, clusters, .. } = g;
                let entry = handle.entry(clusters)?;
                match entry.cluster.lease(core, self.tag, now, deadline) {
                    Ok(picked) => {
                        if let LeaseOutcome::Queued(_) = picked.outcome {
                            self.host = entry
                                .cluster
                                .host(picked.host)
                                .and_then(|k| core.route_id(k));
                        }
                        Ok(picked.outcome)
                    }
                    // Name the host the balancer picked, if it got that far.
                    Err(e) => {
                        let host = entry
                            .cluster
                            .last_pick()
                            .and_then(|h| entry.cluster.host(h));
                        Err(crate::cluster::cluster_error(
                            self.shared,
                            &entry.name,
                            host,
                            e,
                        ))
                    }
                }
            }
        }
    }

    /// The route's name for a failure after queueing (for a cluster lease,
    /// the host's name when the failure was delivered, else the cluster's).
    fn route_name(&self, g: &mut Inner<K, C::Conn>, host: Option<String>) -> String {
        match self.target {
            Target::Route(k) => self.shared.describe(k),
            Target::Cluster(c) => host
                .or_else(|| {
                    let k = g.core.route_key(self.host?)?;
                    Some(self.shared.describe(k))
                })
                .or_else(|| Some(format!("cluster {}", c.entry(&mut g.clusters).ok()?.name)))
                .unwrap_or_else(|| format!("{c:?}")),
        }
    }
}

impl<K: RouteKey, C: Connector<K>> Future for LeaseFuture<'_, K, C> {
    type Output = Result<Lease<K, C>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = this.shared;
        match this.state {
            State::Init => {
                let mut g = shared.lock();
                let now = shared.now();
                match this.start(&mut g, now) {
                    Ok(LeaseOutcome::Granted(l)) => {
                        let lease = Lease::take(shared, &mut g, l);
                        this.state = State::Done;
                        shared.finish(g);
                        Poll::Ready(Ok(lease))
                    }
                    Ok(LeaseOutcome::Queued(waiter)) => {
                        let slot = g.alloc_waiter(waiter, cx.waker().clone());
                        g.waiters[slot as usize].host = this.host;
                        this.state = State::Waiting {
                            waiter,
                            slot,
                            started: now,
                        };
                        shared.process(&mut g);
                        match this.answer(&mut g) {
                            Some(r) => {
                                shared.finish(g);
                                Poll::Ready(r)
                            }
                            None => {
                                shared.finish(g);
                                Poll::Pending
                            }
                        }
                    }
                    Err(e) => {
                        this.state = State::Done;
                        shared.finish(g);
                        Poll::Ready(Err(e))
                    }
                }
            }
            State::Waiting { slot, .. } => {
                let mut g = shared.lock();
                match this.answer(&mut g) {
                    Some(r) => {
                        drop(g);
                        Poll::Ready(r)
                    }
                    None => {
                        let slot = &mut g.waiters[slot as usize];
                        match &mut slot.waker {
                            Some(w) => w.clone_from(cx.waker()),
                            None => slot.waker = Some(cx.waker().clone()),
                        }
                        Poll::Pending
                    }
                }
            }
            State::Done => panic!("LeaseFuture polled after completion"),
        }
    }
}

impl<K: RouteKey, C: Connector<K>> LeaseFuture<'_, K, C> {
    /// Takes the waiter's answer, if it has one (under the lock).
    fn answer(
        &mut self,
        g: &mut crate::shared::Inner<K, C::Conn>,
    ) -> Option<Result<Lease<K, C>, Error>> {
        let State::Waiting { slot, started, .. } = self.state else {
            return None;
        };
        let answer = g.waiters[slot as usize].answer.take()?;
        g.free_waiter(slot);
        self.state = State::Done;
        Some(match answer {
            Answer::Granted(l) => Ok(Lease::take(self.shared, g, l)),
            Answer::Failed(reason, source, host) => {
                let waited = self.shared.now().saturating_duration_since(started);
                let route = self.route_name(g, host);
                Err(self.shared.fail_error(route, reason, source, waited))
            }
        })
    }
}

impl<K: RouteKey, C: Connector<K>> Drop for LeaseFuture<'_, K, C> {
    fn drop(&mut self) {
        if let State::Waiting { waiter, slot, .. } = self.state {
            self.shared.cancel(waiter, slot);
        }
    }
}

/// Builds a [`Pool`]. Every setting mirrors the core's
/// [`Config`](wharf_core::Config) with std `Duration`s. Defaults:
///
/// | setting | default |
/// | --- | --- |
/// | `max_total` | 25 |
/// | `max_per_route` | 5 |
/// | `max_pending` | 1024 (Envoy's) |
/// | `max_routes` | 64 |
/// | `lease_timeout` | 30 s |
/// | `connect_timeout` | 5 s |
/// | `idle_timeout` | 90 s |
/// | `max_lifetime` | none |
/// | `validate_after_inactivity` | 2 s |
/// | `preconnect_ratio` | 1.0 (no preconnect) |
/// | `min_idle_per_route` | 0 |
/// | `max_idle_per_route`, `max_idle` | none |
/// | `max_leases_per_conn` | none |
/// | `reuse` | LIFO |
/// | `retry_backoff` | 1 s |
/// | `starvation_guard` | off |
/// | `cancel_policy` | `Default` |
pub struct Builder<K: RouteKey, C: Connector<K>> {
    connector: C,
    config: Config,
    max_pending: u32,
    max_routes: usize,
    lease_timeout: Option<Duration>,
    cancel_policy: CancelPolicy,
    routes: Vec<(K, RouteConfig)>,
    runtime: Option<Handle>,
}

impl<K: RouteKey, C: Connector<K>> fmt::Debug for Builder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("max_pending", &self.max_pending)
            .field("max_routes", &self.max_routes)
            .field("lease_timeout", &self.lease_timeout)
            .finish_non_exhaustive()
    }
}

fn core_dur(d: Option<Duration>) -> Option<wharf_core::Duration> {
    d.map(wharf_core::Duration::from)
}

impl<K: RouteKey, C: Connector<K>> Builder<K, C> {
    /// A builder with the defaults in the table above.
    pub fn new(connector: C) -> Self {
        Builder {
            connector,
            config: Config::default(),
            max_pending: 1024,
            max_routes: 64,
            lease_timeout: Some(Duration::from_secs(30)),
            cancel_policy: CancelPolicy::Default,
            routes: Vec::new(),
            runtime: None,
        }
    }
    /// Open + connecting connections over all routes.
    pub fn max_total(mut self, n: u32) -> Self {
        self.config.max_total = n;
        self
    }
    /// Open + connecting connections per route (routes can override it).
    pub fn max_per_route(mut self, n: u32) -> Self {
        self.config.max_per_route = n;
        self
    }
    /// Lease requests waiting at once over all routes; one more fails at once
    /// with [`Error::Overflow`]. Sizes the pre-allocated waiter slots.
    pub fn max_pending(mut self, n: u32) -> Self {
        self.max_pending = n;
        self
    }
    /// Routes known at once (route slots, allocated once).
    pub fn max_routes(mut self, n: usize) -> Self {
        self.max_routes = n;
        self
    }
    /// Default bound on how long a lease waits for a connection (`None` =
    /// unbounded).
    pub fn lease_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.lease_timeout = t.into();
        self
    }
    /// Bound on one connect (`None` = unbounded).
    pub fn connect_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.config.connect_timeout = core_dur(t.into());
        self
    }
    /// Close connections idle this long (`None` = never).
    pub fn idle_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.config.idle_timeout = core_dur(t.into());
        self
    }
    /// Maximum connection lifetime (TTL; `None` = unlimited).
    pub fn max_lifetime(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.config.max_lifetime = core_dur(t.into());
        self
    }
    /// Run the connector's stale check on a connection idle at least this long
    /// before handing it out (`Some(ZERO)` = always, `None` = never).
    pub fn validate_after_inactivity(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.config.validate_after_inactivity = core_dur(t.into());
        self
    }
    /// Envoy's per-upstream preconnect ratio, 1.0..=3.0 (1.0 = none).
    pub fn preconnect_ratio(mut self, ratio: f32) -> Self {
        self.config.preconnect_ratio = ratio;
        self
    }
    /// Idle connections kept warm per route.
    pub fn min_idle_per_route(mut self, n: u32) -> Self {
        self.config.min_idle_per_route = n;
        self
    }
    /// Idle connections allowed per route (Go's `MaxIdleConnsPerHost`).
    pub fn max_idle_per_route(mut self, n: impl Into<Option<u32>>) -> Self {
        self.config.max_idle_per_route = n.into();
        self
    }
    /// Idle connections allowed over all routes (Go's `MaxIdleConns`).
    pub fn max_idle(mut self, n: impl Into<Option<u32>>) -> Self {
        self.config.max_idle = n.into();
        self
    }
    /// Leases one connection may serve (Envoy's `max_requests_per_connection`).
    pub fn max_leases_per_conn(mut self, n: impl Into<Option<u32>>) -> Self {
        self.config.max_leases_per_conn = n.into();
        self
    }
    /// Reuse order of idle connections (LIFO by default).
    pub fn reuse(mut self, policy: ReusePolicy) -> Self {
        self.config.reuse = policy;
        self
    }
    /// Envoy's starvation guard (a route with no connection may exceed
    /// `max_total` by one).
    pub fn starvation_guard(mut self, on: bool) -> Self {
        self.config.starvation_guard = on;
        self
    }
    /// Pause of preconnects and warm-ups for a route after a failed connect.
    pub fn retry_backoff(mut self, t: Duration) -> Self {
        self.config.retry_backoff = t.into();
        self
    }
    /// What dropping a waiting lease future does beyond removing the waiter.
    pub fn cancel_policy(mut self, policy: CancelPolicy) -> Self {
        self.cancel_policy = policy;
        self
    }
    /// Per-route overrides applied when the pool is built.
    pub fn route(mut self, route: K, config: RouteConfig) -> Self {
        self.routes.push((route, config));
        self
    }
    /// The runtime the driver and the connection tasks run on (default: the
    /// current one).
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }
    /// The core's configuration as it stands.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Builds the pool and starts its driver task.
    pub fn build(self) -> Result<Pool<K, C>, Error> {
        let rt = match self.runtime {
            Some(h) => h,
            None => Handle::try_current().map_err(|_| Error::Config(ConfigError::NoRuntime))?,
        };
        let mut config = self.config;
        config.max_pending = Some(self.max_pending);
        // Two spare connection slots: a connect may start while the Close of
        // the connection it replaces is being delivered.
        let conns = config.max_total as usize + 2;
        let waiters = self.max_pending.max(1) as usize;
        let capacity = Capacity {
            conns,
            routes: self.max_routes,
            waiters,
            leases: conns,
        };
        let core = wharf_core::Pool::with_capacity(capacity, config)
            .map_err(|e| Error::Config(ConfigError::Pool(e)))?;
        let settings = Settings {
            lease_timeout: core_dur(self.lease_timeout),
            cancel_policy: self.cancel_policy,
        };
        let shared = Arc::new(Shared::new(
            core,
            conns,
            waiters,
            self.connector,
            rt.clone(),
            settings,
        ));
        {
            let mut g = shared.lock();
            let now = shared.now();
            for (key, cfg) in &self.routes {
                if let Err(e) = g.core.set_route_config(key, *cfg, now) {
                    let route = shared.describe(key);
                    return Err(match e {
                        RouteError::Config(error) => {
                            Error::Config(ConfigError::Route { route, error })
                        }
                        _ => Error::RouteTableFull { route },
                    });
                }
            }
            shared.finish(g);
        }
        rt.spawn(driver(shared.clone()));
        Ok(Pool {
            handle: Arc::new(PoolHandle { shared }),
        })
    }
}
