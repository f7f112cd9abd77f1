//! The pool's builder: settings, sizing of the core and the driver's
//! tables, and the start of the timer task.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use wharf_core::{CancelPolicy, Capacity, Config, ReusePolicy, RouteConfig, RouteError};
use wharf_driver::Settings;

use crate::connector::{Connector, RouteKey};
use crate::error::{ConfigError, Error};
use crate::pool::Pool;
use crate::runtime::{timer_task, Shared};
use crate::sizing::{build_bytes, can_allocate, driver_bytes, Slots};

impl<K: RouteKey, C: Connector<K>> Pool<K, C> {
    /// A builder with the defaults listed on [`Builder`].
    pub fn builder(connector: C) -> Builder<K, C> {
        Builder::new(connector)
    }
}

/// Builds a [`Pool`]. Every setting mirrors the core's
/// [`Config`](wharf_core::Config) with std `Duration`s, and has one meaning,
/// checked by [`build`](Builder::build): a setting the pool could not honour
/// is an [`Error::Config`] that names it, returned before anything is
/// allocated or started. Defaults:
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
/// | `max_leases` | one per connection slot (`max_total + 2`) |
/// | `connecting_capacity` | 1 |
/// | `reuse` | LIFO |
/// | `retry_backoff` | 1 s |
/// | `starvation_guard` | off |
/// | `cancel_policy` | `Default` |
/// | `max_lifetime_jitter` | 0 % |
/// | `strict_tags` | off |
/// | `close_on_unhealthy` | off |
/// | `seed` | random, per pool |
/// | `max_total_ceiling` | `max_total` |
/// | `max_storage` | 1 GiB |
/// | `cooperative` | on |
///
/// ## What each setting may be, and what `build` refuses
///
/// | setting | refused with | why |
/// | --- | --- | --- |
/// | `max_pending(0)` with `min_idle_per_route(0)` | [`ConfigError::Pool`]`(NeverServes)` | no lease could wait for a connect and nothing opens connections ahead: no lease could ever be served |
/// | `connect_timeout(ZERO)`, `idle_timeout(ZERO)`, `max_lifetime(ZERO)` | [`ConfigError::Pool`]`(ZeroTimeout)` | a connect, an idle connection or a connection would end as it starts (use `None` for "unbounded") |
/// | more distinct [`route`](Builder::route)s than `max_routes` | [`ConfigError::TooManyRoutes`] | they could not all be held (no lease was made) |
/// | `max_routes(0)`, `max_total_ceiling` below `max_total` | [`ConfigError::Setting`] | |
/// | slots whose memory exceeds [`max_storage`](Builder::max_storage) (e.g. `max_total(1 << 26)`) | [`ConfigError::StorageTooLarge`] | checked from the types' sizes before allocating |
/// | slots the allocator cannot give | [`ConfigError::Pool`]`(OutOfMemory)` | every allocation at build is fallible: never an abort |
/// | `max_lifetime_jitter(p)`, `p > 100` | [`ConfigError::Pool`]`(BadJitter)` | |
/// | the core's other checks (`max_total(0)`, a preconnect ratio outside 1.0..=3.0, `min_idle_per_route` above the route limit...) | [`ConfigError::Pool`] | see [`wharf_core::ConfigError`] |
///
/// **`lease_timeout(Duration::ZERO)` means "do not wait"** (also
/// [`LeaseOptions::timeout`](crate::LeaseOptions::timeout)`(ZERO)` for one
/// lease): an idle connection ready now (no validation due) is granted at
/// once; otherwise the lease fails at once with [`Error::Timeout`] with
/// `waited` zero ("no connection was ready and the lease does not wait"),
/// without queueing, connecting or creating the route.
///
/// ```
/// use std::time::Duration;
/// use wharf_tokio::{ConfigError, Error, Pool, TcpConnector};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // No waiting room and no warm-up: nothing could ever be served.
/// let r = Pool::<(String, u16), _>::builder(TcpConnector::new()).max_pending(0).build();
/// assert!(matches!(
///     r,
///     Err(Error::Config(ConfigError::Pool(wharf_tokio::core::ConfigError::NeverServes)))
/// ));
/// // 2^26 connection slots: refused before allocating, naming the setting.
/// let r = Pool::<(String, u16), _>::builder(TcpConnector::new()).max_total(1 << 26).build();
/// let e = r.unwrap_err();
/// assert!(matches!(e, Error::Config(ConfigError::StorageTooLarge { .. })));
/// assert!(e.to_string().contains("max_total"));
/// # }
/// ```
pub struct Builder<K: RouteKey, C: Connector<K>> {
    connector: C,
    config: Config,
    max_pending: u32,
    max_routes: usize,
    lease_timeout: Option<Duration>,
    cancel_policy: CancelPolicy,
    routes: Vec<(K, RouteConfig)>,
    runtime: Option<Handle>,
    seed: Option<u64>,
    max_total_ceiling: Option<u32>,
    max_storage: usize,
    cooperative: bool,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    metrics_name: String,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    metrics_interval: Option<Duration>,
}

/// The default of [`Builder::max_storage`]: 1 GiB.
pub const DEFAULT_MAX_STORAGE: usize = 1 << 30;

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
            seed: None,
            max_total_ceiling: None,
            max_storage: DEFAULT_MAX_STORAGE,
            cooperative: true,
            metrics_name: String::from("default"),
            metrics_interval: Some(Duration::from_secs(1)),
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
    /// with [`Error::Overflow`]. Sizes the pre-allocated waiter slots. `0`
    /// (no lease ever waits) needs `min_idle_per_route >= 1` (connections
    /// opened ahead), else `build` fails with `NeverServes`; to not wait in
    /// one lease, give it a zero timeout instead.
    pub fn max_pending(mut self, n: u32) -> Self {
        self.max_pending = n;
        self
    }
    /// Routes known at once (route slots, allocated once; at least 1, and at
    /// least the distinct routes given to [`route`](Builder::route)).
    pub fn max_routes(mut self, n: usize) -> Self {
        self.max_routes = n;
        self
    }
    /// Default bound on how long a lease waits for a connection (`None` =
    /// unbounded). `Duration::ZERO` means "do not wait": a ready idle
    /// connection is granted, otherwise the lease fails at once with
    /// [`Error::Timeout`] (`waited` zero).
    pub fn lease_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.lease_timeout = t.into();
        self
    }
    /// Bound on one connect (`None` = unbounded; zero is refused).
    pub fn connect_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.config.connect_timeout = core_dur(t.into());
        self
    }
    /// Close connections idle this long (`None` = never; zero is refused).
    pub fn idle_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.config.idle_timeout = core_dur(t.into());
        self
    }
    /// Maximum connection lifetime (TTL; `None` = unlimited; zero is
    /// refused).
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
    /// Leases out at once over all connections (Envoy's `max_requests`); it
    /// also sizes the lease slots (allocated once). Default: one per
    /// connection slot, which is right for exclusive connections; for
    /// multiplexed ones ([`Connector::multiplexed`]) set it to about
    /// `max_total` times the streams per connection. A lease beyond it fails
    /// with [`Error::Overflow`].
    pub fn max_leases(mut self, n: u32) -> Self {
        self.config.max_leases = Some(n);
        self
    }
    /// Stream capacity counted for a connection still connecting (1 for
    /// HTTP/1; the expected streams per connection for HTTP/2), so demand
    /// does not open one connection per waiting lease. The real capacity
    /// comes from the connection ([`Connector::multiplexed`]).
    pub fn connecting_capacity(mut self, streams: u32) -> Self {
        self.config.connecting_capacity = streams;
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
    /// What dropping a waiting lease future does beyond removing the waiter
    /// ([`CancelPolicy::CloseExcess`] also closes a connect the remaining
    /// requests no longer need).
    pub fn cancel_policy(mut self, policy: CancelPolicy) -> Self {
        self.cancel_policy = policy;
        self
    }
    /// Per-route overrides applied when the pool is built.
    pub fn route(mut self, route: K, config: RouteConfig) -> Self {
        self.routes.push((route, config));
        self
    }
    /// Spreads connection lifetimes (Envoy's
    /// `max_connection_duration_jitter`): each connection's `max_lifetime` is
    /// extended by a random amount below `percent`% of it, drawn at connect
    /// from the pool's seeded generator, so connections opened together do
    /// not all reconnect at once. 0..=100 (default 0; above 100 is refused).
    pub fn max_lifetime_jitter(mut self, percent: u8) -> Self {
        self.config.max_lifetime_jitter_percent = percent;
        self
    }
    /// Identity-safe tag matching (off by default). On: a connection's tag
    /// is fixed when it connects: a connect made for a lease tagged `T` is
    /// opened by [`Connector::connect_as`] with `T` (the connector logs in
    /// as that identity: a TLS client certificate, a database user) and the
    /// connection keeps `T` for life; a lease tagged `T` takes only
    /// connections tagged `T` (never an untagged one), an untagged lease only
    /// untagged ones, and [`Lease::set_tag`](crate::Lease::set_tag) has no
    /// effect. Preconnects and warm-up open untagged connections.
    ///
    /// Off (HttpClient's state matching): a lease tagged `T` prefers a
    /// connection tagged `T`, then takes an untagged one, which goes back
    /// with the lease's tag.
    pub fn strict_tags(mut self, on: bool) -> Self {
        self.config.strict_tags = on;
        self
    }
    /// Whether lease futures spend tokio's cooperative budget (on by
    /// default): one unit per 128 lease polls on a thread. A task whose
    /// budget is spent gets `Pending` and is polled again after it yielded.
    /// A lease granted at once never waits, so without the budget a task
    /// that only leases and releases in a loop never yields: it starves the
    /// other tasks and timers of its worker for good (with every worker in
    /// such a loop, the runtime's timers stop). With it, such a loop yields
    /// within 16,384 leases (~1.5 ms); a task that also does I/O yields as
    /// its sockets spend the budget.
    ///
    /// Off, a get + drop costs about 6 instructions less and a task in such
    /// a loop stays on its worker (no yields: on a multi-thread runtime a
    /// yield can move the task between workers); bb8's warm `get` spends no
    /// budget, deadpool's a unit per `get` (docs/PERFORMANCE.md measures
    /// all three). Turn it off only when every task that leases also awaits
    /// something that yields.
    pub fn cooperative(mut self, on: bool) -> Self {
        self.cooperative = on;
        self
    }
    /// Closes a host's idle connections and drains its busy ones when it is
    /// marked unhealthy ([`Pool::set_route_health`],
    /// [`Pool::set_host_health`]), as Envoy's
    /// `close_connections_on_host_health_failure`. Off by default: an
    /// unhealthy host only stops preconnecting and warming up.
    pub fn close_on_unhealthy(mut self, on: bool) -> Self {
        self.config.close_on_unhealthy = on;
        self
    }
    /// Seeds the pool's randomness (the keyed hash of the route table, the
    /// lifetime jitter). Default: a random seed per pool, so route keys that
    /// come from the network cannot be crafted to share one hash chain; set
    /// it for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self.config.seed = seed;
        self
    }
    /// The highest `max_total` that [`Pool::set_max_total`] may set later
    /// (connection slots are allocated once, at build, for this many; default
    /// `max_total`). Below `max_total` is refused.
    pub fn max_total_ceiling(mut self, n: u32) -> Self {
        self.max_total_ceiling = Some(n);
        self
    }
    /// The most memory `build` may allocate for the pool's slots (the core's
    /// connection, route, waiter and lease slots, the driver's tables and
    /// this backend's per-connection state), computed from the types' sizes
    /// before anything is allocated; more is
    /// [`ConfigError::StorageTooLarge`]. Default [`DEFAULT_MAX_STORAGE`]
    /// (1 GiB: about two million connection slots).
    pub fn max_storage(mut self, bytes: usize) -> Self {
        self.max_storage = bytes;
        self
    }
    /// The value of the `pool` label on every metric this pool reports
    /// (feature `metrics`; default `"default"`), to tell pools apart.
    #[cfg(feature = "metrics")]
    pub fn metrics_name(mut self, name: impl Into<String>) -> Self {
        self.metrics_name = name.into();
        self
    }
    /// How often a task copies the pool's gauges and counters to the
    /// `metrics` facade (feature `metrics`; default 1 s; `None`: only when
    /// [`Pool::export_metrics`] is called). The lease-wait histogram is
    /// recorded as leases complete, whatever this is.
    #[cfg(feature = "metrics")]
    pub fn metrics_interval(mut self, every: impl Into<Option<Duration>>) -> Self {
        self.metrics_interval = every.into().filter(|d| !d.is_zero());
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
    ///
    /// Every setting is checked first (see the table on [`Builder`]); an
    /// error names the setting, and nothing is allocated or started.
    pub fn build(self) -> Result<Pool<K, C>, Error<C::Error>> {
        let rt = match self.runtime {
            Some(h) => h,
            None => Handle::try_current().map_err(|_| Error::Config(ConfigError::NoRuntime))?,
        };
        let mut config = self.config;
        config.max_pending = Some(self.max_pending);
        config.seed = self.seed.unwrap_or_else(random_seed);
        let seed = config.seed;
        let strict_tags = config.strict_tags;
        if self.max_routes == 0 {
            return Err(setting("max_routes", "must be at least 1"));
        }
        let distinct: HashSet<&K> = self.routes.iter().map(|(k, _)| k).collect();
        if distinct.len() > self.max_routes {
            return Err(Error::Config(ConfigError::TooManyRoutes {
                configured: distinct.len(),
                max_routes: self.max_routes,
            }));
        }
        let ceiling = self.max_total_ceiling.unwrap_or(config.max_total);
        if ceiling < config.max_total {
            return Err(setting("max_total_ceiling", "must be at least max_total"));
        }
        // Two spare connection slots: a connect may start while the Close of
        // the connection it replaces is being delivered.
        let conns = ceiling as usize + 2;
        let waiters = self.max_pending.max(1) as usize;
        let leases = conns.max(config.max_leases.unwrap_or(0) as usize);
        let slots = Slots {
            conns,
            routes: self.max_routes,
            waiters,
            leases,
        };
        let bytes = build_bytes::<K, C>(slots);
        if bytes > self.max_storage {
            return Err(Error::Config(ConfigError::StorageTooLarge {
                bytes,
                limit: self.max_storage,
                conns,
                routes: slots.routes,
                waiters,
                leases,
            }));
        }
        let capacity = Capacity {
            conns,
            routes: self.max_routes,
            waiters,
            leases,
        };
        // The core checks its settings before it allocates its slots (its
        // allocations are fallible: `OutOfMemory`).
        let core = wharf_core::Pool::with_capacity(capacity, config)
            .map_err(|e| Error::Config(ConfigError::Pool(e)))?;
        let settings = Settings {
            cancel_policy: self.cancel_policy,
        };
        if !can_allocate(driver_bytes::<K, C>(slots)) {
            return Err(Error::Config(ConfigError::Pool(
                wharf_core::ConfigError::OutOfMemory,
            )));
        }
        let shared = Shared::new(
            core,
            conns,
            waiters,
            self.connector,
            rt.clone(),
            settings,
            core_dur(self.lease_timeout),
            ceiling,
            seed,
        )
        .ok_or(Error::Config(ConfigError::Pool(
            wharf_core::ConfigError::OutOfMemory,
        )))?;
        let mut shared = shared;
        shared.strict_tags = strict_tags;
        shared.cooperative = self.cooperative;
        #[cfg(feature = "metrics")]
        {
            shared.metrics = crate::metrics::Metrics::new(&self.metrics_name);
        }
        let shared = Arc::new(shared);
        {
            let now = shared.now();
            let mut g = shared.lock();
            for (key, cfg) in &self.routes {
                if let Err(e) = g.driver.input(|core| core.set_route_config(key, *cfg, now)) {
                    let route = shared.describe(key);
                    shared.finish(g);
                    return Err(match e {
                        RouteError::Config(error) => {
                            Error::Config(ConfigError::Route { route, error })
                        }
                        // Counted above; kept for a core that refuses more.
                        _ => Error::Config(ConfigError::TooManyRoutes {
                            configured: distinct.len(),
                            max_routes: self.max_routes,
                        }),
                    });
                }
            }
            shared.finish(g);
        }
        rt.spawn(timer_task(shared.clone()));
        #[cfg(feature = "metrics")]
        if let Some(every) = self.metrics_interval {
            rt.spawn(crate::runtime::metrics_task(shared.clone(), every));
        }
        Ok(Pool::from_shared(shared))
    }
}

fn setting<E>(setting: &'static str, reason: &'static str) -> Error<E> {
    Error::Config(ConfigError::Setting { setting, reason })
}

/// A random seed per pool: std's per-process random hash keys, and a
/// counter so that two pools built at once differ.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static BUILT: AtomicU64 = AtomicU64::new(0);
    let n = BUILT.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one((n, std::time::SystemTime::now()))
}
