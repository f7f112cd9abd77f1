//! The pool's builder: settings, sizing of the core and the driver's
//! tables, and the start of the timer task.

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

impl<K: RouteKey, C: Connector<K>> Pool<K, C> {
    /// A builder with the defaults listed on [`Builder`].
    pub fn builder(connector: C) -> Builder<K, C> {
        Builder::new(connector)
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
/// | `max_leases` | one per connection slot (`max_total + 2`) |
/// | `connecting_capacity` | 1 |
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
    pub fn build(self) -> Result<Pool<K, C>, Error<C::Error>> {
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
        let leases = conns.max(config.max_leases.unwrap_or(0) as usize);
        let capacity = Capacity {
            conns,
            routes: self.max_routes,
            waiters,
            leases,
        };
        let core = wharf_core::Pool::with_capacity(capacity, config)
            .map_err(|e| Error::Config(ConfigError::Pool(e)))?;
        let settings = Settings {
            cancel_policy: self.cancel_policy,
        };
        let shared = Arc::new(Shared::new(
            core,
            conns,
            waiters,
            self.connector,
            rt.clone(),
            settings,
            core_dur(self.lease_timeout),
        ));
        {
            let mut g = shared.lock();
            let now = shared.now();
            for (key, cfg) in &self.routes {
                if let Err(e) = g.driver.input(|core| core.set_route_config(key, *cfg, now)) {
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
        rt.spawn(timer_task(shared.clone()));
        Ok(Pool::from_shared(shared))
    }
}
