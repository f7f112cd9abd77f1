//! Pool configuration and its validation.
//!
//! [`Config`] holds every pool-wide setting with the default a production user
//! would pick; [`RouteConfig`] overrides some of them for one route at run time.
//! Both are validated into a [`ConfigError`]; nothing here panics.

use crate::time::Duration;

/// Order in which idle connections of a route are reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReusePolicy {
    /// Most recently released first (HttpClient's default): a few connections
    /// stay hot and the rest idle out.
    #[default]
    Lifo,
    /// Least recently released first: load spreads over all connections.
    Fifo,
}

/// What [`Pool::cancel`](crate::Pool::cancel) does beyond removing the waiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CancelPolicy {
    /// Only remove the waiter.
    #[default]
    Default,
    /// Also close the route's oldest connecting connection if the remaining
    /// demand no longer needs it (Envoy's `CancelPolicy::CloseExcess`).
    CloseExcess,
}

/// Pool-wide settings. `Config::default()` gives the documented defaults.
///
/// ```
/// use wharf_core::{Config, Duration};
/// let cfg = Config {
///     max_total: 8,
///     max_per_route: 4,
///     idle_timeout: Some(Duration::from_secs(30)),
///     ..Config::default()
/// };
/// assert_eq!(cfg.connect_timeout, Some(Duration::from_secs(5)));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Open + connecting connections over all routes (default 25, HttpClient's).
    /// Must fit the storage's connection slots.
    pub max_total: u32,
    /// Default open + connecting connections per route (default 5). Routes can
    /// override it with [`RouteConfig::max_connections`].
    pub max_per_route: u32,
    /// Waiters (lease requests not yet answered) over all routes. A lease that
    /// would exceed it fails at once with `Overflow` and is never queued.
    /// `None` = the storage's waiter slots. `Some(0)` (no lease ever waits)
    /// needs `min_idle_per_route >= 1`, else nothing could ever be served
    /// (`ConfigError::NeverServes`); to not wait for one lease, give it a
    /// deadline of `now` instead.
    pub max_pending: Option<u32>,
    /// Leases in use over all connections (Envoy's `max_requests`). `None` = the
    /// storage's lease slots.
    pub max_leases: Option<u32>,
    /// Reuse order of idle connections (default LIFO).
    pub reuse: ReusePolicy,
    /// Bound on a connect (default 5 s, Envoy's). `None` = unbounded.
    pub connect_timeout: Option<Duration>,
    /// Close a connection idle (no lease) this long (default 90 s, Go's
    /// `IdleConnTimeout`). `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Maximum connection lifetime from connect (TTL; HttpClient's `timeToLive`,
    /// Envoy's `max_connection_duration`). Idle connections past it close; busy
    /// ones drain. `None` (default) = unlimited.
    pub max_lifetime: Option<Duration>,
    /// Validate an idle connection that has been inactive at least this long
    /// before handing it out (default 2 s, HttpClient's). `Some(ZERO)` = always;
    /// `None` = never.
    pub validate_after_inactivity: Option<Duration>,
    /// Envoy's `per_upstream_preconnect_ratio`, 1.0..=3.0 (default 1.0 = no
    /// preconnect; 0 also means off). Applied with 1/1000 precision.
    /// Preconnects never exceed the idle limits (`max_idle_per_route`,
    /// `max_idle`): one that would be closed as excess idle is not made.
    pub preconnect_ratio: f32,
    /// Idle connections to keep per route (warm-up); never exceeds any limit.
    pub min_idle_per_route: u32,
    /// Idle connections allowed per route; a connection that goes idle over it
    /// is closed (Go's `MaxIdleConnsPerHost`). `None` = no limit.
    pub max_idle_per_route: Option<u32>,
    /// Idle connections allowed over all routes; over it the least recently
    /// used idle connection is closed (Go's `MaxIdleConns`). `None` = no limit.
    pub max_idle: Option<u32>,
    /// Stream capacity assumed for a connection still connecting (1 for
    /// HTTP/1, the expected `max_concurrent_streams` for HTTP/2). The real
    /// capacity is given when the connect completes.
    pub connecting_capacity: u32,
    /// Leases one connection may serve in its life (Envoy's
    /// `max_requests_per_connection`); the lease that uses the last one moves
    /// the connection to draining. `None` (default) = unlimited.
    pub max_leases_per_conn: Option<u32>,
    /// Envoy's starvation guard: a route with no connection at all may open one
    /// even when `max_total` is reached (default off).
    pub starvation_guard: bool,
    /// After a failed connect, preconnect and warm-up connects for that route
    /// pause this long (default 1 s). Connects for waiting leases never wait.
    pub retry_backoff: Duration,
    /// Spread of connection lifetimes, in percent of `max_lifetime` (Envoy's
    /// `max_connection_duration_jitter`): each connection's lifetime is
    /// extended by a random amount in `[0, max_lifetime * jitter / 100)`, drawn
    /// at connect from the pool's seeded generator, so connections opened
    /// together do not all reconnect at once. 0..=100, default 0.
    pub max_lifetime_jitter_percent: u8,
    /// Identity-safe tag matching. Off (default, HttpClient's state matching):
    /// a lease tagged `T` prefers a connection tagged `T`, then an untagged
    /// one (which takes the lease's tag on release), and a release may change
    /// a connection's tag. On: a connection's tag is fixed when it connects
    /// ([`Pool::connected_as`](crate::Pool::connected_as)); a lease tagged `T`
    /// takes only connections tagged `T`, an untagged lease only untagged
    /// ones, and the release's tag is ignored. For identities fixed by the
    /// connect (TLS client certificates, database sessions logged in as a
    /// user): such a connection never serves another identity.
    pub strict_tags: bool,
    /// Close a host's idle connections and drain its busy ones when it is
    /// marked unhealthy (`set_route_health(key, false)`), as Envoy's
    /// `close_connections_on_host_health_failure`. Default off (an unhealthy
    /// host only stops preconnecting).
    pub close_on_unhealthy: bool,
    /// Seeds the pool's randomness: the keyed hash (foldhash) that places route
    /// keys in the route table, and the lifetime jitter. When keys come from
    /// the network (a proxy keying routes by a request's `Host`), pick it at
    /// random so nobody can craft keys that share one chain: `wharf-tokio`
    /// does, per pool; firmware can take it from a hardware RNG. Default: a
    /// fixed seed.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_total: 25,
            max_per_route: 5,
            max_pending: None,
            max_leases: None,
            reuse: ReusePolicy::Lifo,
            connect_timeout: Some(Duration::from_secs(5)),
            idle_timeout: Some(Duration::from_secs(90)),
            max_lifetime: None,
            validate_after_inactivity: Some(Duration::from_secs(2)),
            preconnect_ratio: 1.0,
            min_idle_per_route: 0,
            max_idle_per_route: None,
            max_idle: None,
            connecting_capacity: 1,
            max_leases_per_conn: None,
            starvation_guard: false,
            retry_backoff: Duration::from_secs(1),
            max_lifetime_jitter_percent: 0,
            strict_tags: false,
            close_on_unhealthy: false,
            seed: 0x243f_6a88_85a3_08d3,
        }
    }
}

/// Per-route overrides; `None` fields follow the pool's [`Config`].
///
/// Set with [`Pool::set_route_config`](crate::Pool::set_route_config). Lowering
/// `max_connections` closes nothing at once: excess connections close as they
/// are released (HttpClient's lazy `setMaxPerRoute`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RouteConfig {
    /// Open + connecting connections for this route (>= 1).
    pub max_connections: Option<u32>,
    /// Idle connections to keep warm for this route.
    pub min_idle: Option<u32>,
    /// Preconnect ratio for this route, 1.0..=3.0 (0 = off, as 1.0).
    pub preconnect_ratio: Option<f32>,
}

impl RouteConfig {
    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.max_connections.is_none() && self.min_idle.is_none() && self.preconnect_ratio.is_none()
    }
}

/// Why a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// `max_total` is 0.
    ZeroMaxTotal,
    /// `max_per_route` (or a route's `max_connections`) is 0.
    ZeroMaxPerRoute,
    /// `max_total` exceeds the storage's connection slots.
    MaxTotalExceedsStorage,
    /// `max_pending` exceeds the storage's waiter slots.
    MaxPendingExceedsStorage,
    /// `max_leases` is 0 or exceeds the storage's lease slots.
    BadMaxLeases,
    /// A timeout or lifetime of zero where zero makes no sense.
    ZeroTimeout,
    /// A preconnect ratio that is neither 0 (off) nor within 1.0..=3.0 (or not
    /// a number).
    BadPreconnectRatio,
    /// `min_idle` exceeds the route limit or the idle limit.
    MinIdleTooLarge,
    /// `connecting_capacity` is 0 or above 65,536.
    ZeroConnectingCapacity,
    /// `max_leases_per_conn` is `Some(0)`.
    ZeroMaxLeasesPerConn,
    /// A storage with no connection, route or lease slot, or more of any kind
    /// than its index width names (2^30 - 1 for `u32`; a `u16` [`Storage`](crate::Storage)
    /// past 8,191 does not compile).
    BadStorage,
    /// `max_pending` is 0 and `min_idle_per_route` is 0: a lease could never
    /// wait for a connect and nothing opens connections ahead, so no lease
    /// could ever be served.
    NeverServes,
    /// The storage could not be allocated (`Pool::with_capacity`).
    OutOfMemory,
    /// `max_lifetime_jitter_percent` above 100.
    BadJitter,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            ConfigError::ZeroMaxTotal => "max_total must be at least 1",
            ConfigError::ZeroMaxPerRoute => "max connections per route must be at least 1",
            ConfigError::MaxTotalExceedsStorage => "max_total exceeds the connection slots",
            ConfigError::MaxPendingExceedsStorage => "max_pending exceeds the waiter slots",
            ConfigError::BadMaxLeases => "max_leases must be in 1..=lease slots",
            ConfigError::ZeroTimeout => "timeouts and lifetimes must be positive",
            ConfigError::BadPreconnectRatio => {
                "preconnect ratio must be 0 (off) or within 1.0..=3.0"
            }
            ConfigError::MinIdleTooLarge => "min idle exceeds the route or idle limit",
            ConfigError::ZeroConnectingCapacity => "connecting_capacity must be in 1..=65536",
            ConfigError::ZeroMaxLeasesPerConn => "max_leases_per_conn must be at least 1",
            ConfigError::BadStorage => {
                "storage needs 1..=2^30-1 connection, route and lease slots (u16 indices: 8191)"
            }
            ConfigError::NeverServes => {
                "max_pending is 0 and min_idle_per_route is 0: no lease could ever be served \
                 (a lease cannot wait for a connect and nothing opens connections ahead)"
            }
            ConfigError::OutOfMemory => "the pool's storage could not be allocated",
            ConfigError::BadJitter => "max_lifetime_jitter_percent must be within 0..=100",
        };
        f.write_str(s)
    }
}

/// A ratio in thousandths: 0 (off) or 1000..=3000.
pub(crate) fn ratio_milli(r: f32) -> Result<u32, ConfigError> {
    if r == 0.0 {
        return Ok(0);
    }
    // `!(a <= r && r <= b)` also rejects NaN.
    if !(1.0..=3.0).contains(&r) {
        return Err(ConfigError::BadPreconnectRatio);
    }
    // r in [1, 3] so r * 1000 + 0.5 is in [1000.5, 3000.5]; the cast truncates.
    Ok((r * 1000.0 + 0.5) as u32)
}

fn positive(d: Option<Duration>) -> Result<(), ConfigError> {
    match d {
        Some(d) if d.is_zero() => Err(ConfigError::ZeroTimeout),
        _ => Ok(()),
    }
}

/// Validated settings in the form the pool uses.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub max_total: u32,
    pub max_per_route: u32,
    pub max_pending: u32,
    pub max_leases: u32,
    pub reuse: ReusePolicy,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub max_lifetime: Option<Duration>,
    pub validate_after: Option<Duration>,
    pub ratio_milli: u32,
    pub min_idle: u32,
    pub max_idle_per_route: Option<u32>,
    pub max_idle: Option<u32>,
    pub connecting_capacity: u32,
    pub max_leases_per_conn: Option<u32>,
    pub starvation_guard: bool,
    pub retry_backoff: Duration,
    pub jitter_percent: u8,
    pub strict_tags: bool,
    pub close_on_unhealthy: bool,
    pub seed: u64,
}

impl Config {
    pub(crate) fn validate(
        &self,
        conns: usize,
        waiters: usize,
        leases: usize,
    ) -> Result<Settings, ConfigError> {
        if self.max_total == 0 {
            return Err(ConfigError::ZeroMaxTotal);
        }
        if self.max_per_route == 0 {
            return Err(ConfigError::ZeroMaxPerRoute);
        }
        if self.max_total as usize > conns {
            return Err(ConfigError::MaxTotalExceedsStorage);
        }
        let max_pending = match self.max_pending {
            Some(p) if p as usize > waiters => return Err(ConfigError::MaxPendingExceedsStorage),
            Some(0) if self.min_idle_per_route == 0 => return Err(ConfigError::NeverServes),
            Some(p) => p,
            None => waiters as u32,
        };
        let max_leases = match self.max_leases {
            Some(l) if l == 0 || l as usize > leases => return Err(ConfigError::BadMaxLeases),
            Some(l) => l,
            None => leases as u32,
        };
        positive(self.connect_timeout)?;
        positive(self.idle_timeout)?;
        positive(self.max_lifetime)?;
        // 0 means off, the same as 1.0 (SEMANTICS §12).
        let ratio_milli = ratio_milli(self.preconnect_ratio)?.max(1000);
        if self.min_idle_per_route > self.max_per_route
            || self
                .max_idle_per_route
                .is_some_and(|m| self.min_idle_per_route > m)
        {
            return Err(ConfigError::MinIdleTooLarge);
        }
        if self.connecting_capacity == 0 || self.connecting_capacity > 1 << 16 {
            return Err(ConfigError::ZeroConnectingCapacity);
        }
        if self.max_leases_per_conn == Some(0) {
            return Err(ConfigError::ZeroMaxLeasesPerConn);
        }
        if self.max_lifetime_jitter_percent > 100 {
            return Err(ConfigError::BadJitter);
        }
        Ok(Settings {
            max_total: self.max_total,
            max_per_route: self.max_per_route,
            max_pending,
            max_leases,
            reuse: self.reuse,
            connect_timeout: self.connect_timeout,
            idle_timeout: self.idle_timeout,
            max_lifetime: self.max_lifetime,
            validate_after: self.validate_after_inactivity,
            ratio_milli,
            min_idle: self.min_idle_per_route,
            max_idle_per_route: self.max_idle_per_route,
            max_idle: self.max_idle,
            // A connection never serves more than `max_leases_per_conn`
            // leases, so it is never counted for more (SEMANTICS §1).
            connecting_capacity: self
                .connecting_capacity
                .min(self.max_leases_per_conn.unwrap_or(u32::MAX)),
            max_leases_per_conn: self.max_leases_per_conn,
            starvation_guard: self.starvation_guard,
            retry_backoff: self.retry_backoff,
            jitter_percent: self.max_lifetime_jitter_percent,
            strict_tags: self.strict_tags,
            close_on_unhealthy: self.close_on_unhealthy,
            seed: self.seed,
        })
    }
}

/// A validated [`RouteConfig`], kept in every route slot: each field is a
/// `u32` with `u32::MAX` for "not set" (12 bytes instead of 24; a set value
/// is at most `max_total`, or 3000 for the ratio in thousandths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RouteOverrides {
    max_connections: u32,
    min_idle: u32,
    ratio_milli: u32,
}

const UNSET: u32 = u32::MAX;

impl RouteOverrides {
    pub(crate) const NONE: RouteOverrides = RouteOverrides {
        max_connections: UNSET,
        min_idle: UNSET,
        ratio_milli: UNSET,
    };
    /// All fields zero bytes (for `Storage::new`; `Pool::new` resets them).
    pub(crate) const ZEROED: RouteOverrides = RouteOverrides {
        max_connections: 0,
        min_idle: 0,
        ratio_milli: 0,
    };
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        // All three `UNSET` (all bits set): one comparison on the warm path.
        self.max_connections & self.min_idle & self.ratio_milli == UNSET
    }
    #[inline(always)]
    pub(crate) fn max_connections(&self) -> Option<u32> {
        Some(self.max_connections).filter(|&v| v != UNSET)
    }
    #[inline(always)]
    pub(crate) fn min_idle(&self) -> Option<u32> {
        Some(self.min_idle).filter(|&v| v != UNSET)
    }
    #[inline(always)]
    pub(crate) fn ratio_milli(&self) -> Option<u32> {
        Some(self.ratio_milli).filter(|&v| v != UNSET)
    }
}

impl RouteConfig {
    pub(crate) fn validate(&self, s: &Settings) -> Result<RouteOverrides, ConfigError> {
        if self.max_connections == Some(0) {
            return Err(ConfigError::ZeroMaxPerRoute);
        }
        let limit = self.max_connections.unwrap_or(s.max_per_route);
        let min_idle = self.min_idle.unwrap_or(s.min_idle);
        if min_idle > limit || s.max_idle_per_route.is_some_and(|m| min_idle > m) {
            return Err(ConfigError::MinIdleTooLarge);
        }
        let ratio_milli = match self.preconnect_ratio {
            Some(r) => Some(ratio_milli(r)?.max(1000)),
            None => None,
        };
        // `u32::MAX` reads as "not set": a limit or min idle of `u32::MAX`
        // is kept as `u32::MAX - 1`, the same in effect (a pool has at most
        // 2^30 connection slots).
        let set = |v: Option<u32>| v.map_or(UNSET, |v| v.min(UNSET - 1));
        Ok(RouteOverrides {
            max_connections: set(self.max_connections),
            min_idle: set(self.min_idle),
            ratio_milli: ratio_milli.unwrap_or(UNSET),
        })
    }
}
