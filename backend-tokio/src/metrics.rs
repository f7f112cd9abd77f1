//! Reporting through the `metrics` facade (feature `metrics`); without the
//! feature every type here is empty and every function compiles away.
//!
//! The counters and gauges are the pool's own ([`Counters`], [`PoolStats`],
//! [`RouteStats`](wharf_core::RouteStats)), copied to the facade's handles
//! by [`Pool::export_metrics`](crate::Pool::export_metrics) and by a task
//! every [`Builder::metrics_interval`](crate::Builder::metrics_interval)
//! (off the lease path: the handles are registered once, at build or when a
//! route is first seen). The lease-wait histogram is recorded by each lease
//! future when it completes.

use wharf_core::{Counters, PoolStats};

#[cfg(feature = "metrics")]
pub(crate) use on::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use off::*;

/// The metric names (feature `metrics`).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) mod names {
    pub const CONNECTIONS: &str = "wharf_connections";
    pub const LEASED: &str = "wharf_leased";
    pub const PENDING: &str = "wharf_pending";
    pub const ROUTE_CONNECTIONS: &str = "wharf_route_connections";
    pub const ROUTE_IDLE: &str = "wharf_route_idle";
    pub const ROUTE_LEASED: &str = "wharf_route_leased";
    pub const ROUTE_PENDING: &str = "wharf_route_pending";
    pub const CONNECTS: &str = "wharf_connects_total";
    pub const CONNECT_FAILURES: &str = "wharf_connect_failures_total";
    pub const GRANTS: &str = "wharf_grants_total";
    pub const REUSES: &str = "wharf_reuses_total";
    pub const VALIDATIONS: &str = "wharf_validations_total";
    pub const CLOSES: &str = "wharf_closes_total";
    pub const TIMEOUTS: &str = "wharf_timeouts_total";
    pub const OVERFLOWS: &str = "wharf_overflows_total";
    pub const CANCELS: &str = "wharf_cancels_total";
    pub const LEASE_WAIT: &str = "wharf_lease_wait_seconds";
}

/// A snapshot taken under the pool's lock, reported after it is released.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Snapshot<K> {
    pub stats: PoolStats,
    pub counters: Counters,
    pub routes: Vec<(K, Option<wharf_core::RouteStats>)>,
}

#[cfg(not(feature = "metrics"))]
mod off {
    /// Nothing to report.
    pub(crate) struct Metrics<K>(std::marker::PhantomData<fn(K)>);

    impl<K> Metrics<K> {
        pub fn new(_pool: &str) -> Self {
            Metrics(std::marker::PhantomData)
        }
    }

    /// The routes reported (none).
    pub(crate) struct Routes<K>(std::marker::PhantomData<fn(K)>);

    impl<K> Default for Routes<K> {
        fn default() -> Self {
            Routes(std::marker::PhantomData)
        }
    }

    impl<K> Routes<K> {
        #[inline(always)]
        pub fn seen(&mut self, _key: &K) {}
        #[inline(always)]
        pub fn gone(&mut self, _key: &K) {}
    }
}

#[cfg(feature = "metrics")]
mod on {
    use std::collections::{HashMap, HashSet};
    use std::hash::Hash;

    use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
    use parking_lot::Mutex;
    use wharf_core::{CloseReason, ConnectFailure};

    use super::{names as n, Snapshot};

    /// The routes to report: seen at their first connect, dropped when the
    /// pool frees them (their gauges then go to zero once).
    pub(crate) struct Routes<K> {
        pub live: HashSet<K>,
        pub gone: Vec<K>,
    }

    impl<K> Default for Routes<K> {
        fn default() -> Self {
            Routes {
                live: HashSet::new(),
                gone: Vec::new(),
            }
        }
    }

    impl<K: Eq + Hash + Clone> Routes<K> {
        /// A connect for `key` (under the pool's lock; allocates only the
        /// first time a route is seen).
        #[inline]
        pub fn seen(&mut self, key: &K) {
            if !self.live.contains(key) {
                self.live.insert(key.clone());
            }
        }
        /// The pool freed the route.
        pub fn gone(&mut self, key: &K) {
            if self.live.remove(key) {
                self.gone.push(key.clone());
            }
        }
        /// The routes to report (`true`: live) and the ones gone since the
        /// last report (`false`).
        pub fn take(&mut self) -> impl Iterator<Item = (K, bool)> + '_ {
            let gone = std::mem::take(&mut self.gone);
            self.live
                .iter()
                .map(|k| (k.clone(), true))
                .chain(gone.into_iter().map(|k| (k, false)))
        }
    }

    struct RouteGauges {
        connections: Gauge,
        idle: Gauge,
        leased: Gauge,
        pending: Gauge,
    }

    /// The pool's handles, registered once at build.
    pub(crate) struct Metrics<K> {
        pool: String,
        connecting: Gauge,
        idle: Gauge,
        busy: Gauge,
        closing: Gauge,
        leased: Gauge,
        pending: Gauge,
        connects: Counter,
        failures: [Counter; 3],
        grants: Counter,
        reuses: Counter,
        validations: Counter,
        closes: Vec<Counter>,
        timeouts: Counter,
        overflows: Counter,
        cancels: Counter,
        lease_wait: Histogram,
        routes: Mutex<HashMap<K, RouteGauges>>,
    }

    /// `Discarded` -> `discarded`, `IdleTimeout` -> `idle_timeout`.
    fn snake(name: &str) -> String {
        let mut s = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    s.push('_');
                }
                s.push(c.to_ascii_lowercase());
            } else {
                s.push(c);
            }
        }
        s
    }

    impl<K: Eq + Hash + Clone> Metrics<K> {
        pub fn new(pool: &str) -> Self {
            let p = pool.to_owned();
            let conns =
                |state: &'static str| gauge!(n::CONNECTIONS, "pool" => p.clone(), "state" => state);
            let failure = |f: ConnectFailure| {
                let reason = match f {
                    ConnectFailure::Timeout => "timeout",
                    ConnectFailure::Local => "local",
                    ConnectFailure::Remote => "remote",
                };
                counter!(n::CONNECT_FAILURES, "pool" => p.clone(), "reason" => reason)
            };
            Metrics {
                connecting: conns("connecting"),
                idle: conns("idle"),
                busy: conns("busy"),
                closing: conns("closing"),
                leased: gauge!(n::LEASED, "pool" => p.clone()),
                pending: gauge!(n::PENDING, "pool" => p.clone()),
                connects: counter!(n::CONNECTS, "pool" => p.clone()),
                failures: [
                    failure(ConnectFailure::Timeout),
                    failure(ConnectFailure::Local),
                    failure(ConnectFailure::Remote),
                ],
                grants: counter!(n::GRANTS, "pool" => p.clone()),
                reuses: counter!(n::REUSES, "pool" => p.clone()),
                validations: counter!(n::VALIDATIONS, "pool" => p.clone()),
                closes: CloseReason::ALL
                    .iter()
                    .map(|r| {
                        let reason = snake(&format!("{r:?}"));
                        counter!(n::CLOSES, "pool" => p.clone(), "reason" => reason)
                    })
                    .collect(),
                timeouts: counter!(n::TIMEOUTS, "pool" => p.clone()),
                overflows: counter!(n::OVERFLOWS, "pool" => p.clone()),
                cancels: counter!(n::CANCELS, "pool" => p.clone()),
                lease_wait: histogram!(n::LEASE_WAIT, "pool" => p.clone()),
                routes: Mutex::new(HashMap::new()),
                pool: p,
            }
        }

        /// A lease future completed after waiting `micros` (no allocation:
        /// one call on the registered handle).
        #[inline]
        pub fn lease_wait(&self, micros: u64) {
            self.lease_wait.record(micros as f64 / 1e6);
        }

        /// Copies a snapshot to the handles (outside the pool's lock).
        pub fn report(&self, s: Snapshot<K>, describe: impl Fn(&K) -> String) {
            let st = s.stats;
            self.connecting.set(f64::from(st.connecting));
            self.idle.set(f64::from(st.idle));
            let busy = st.connections.saturating_sub(st.connecting + st.idle);
            self.busy.set(f64::from(busy));
            self.closing.set(f64::from(st.closing));
            self.leased.set(f64::from(st.leased));
            self.pending.set(f64::from(st.pending));
            let c = s.counters;
            self.connects.absolute(c.connects);
            for (h, v) in self.failures.iter().zip(c.connect_failures) {
                h.absolute(v);
            }
            self.grants.absolute(c.grants);
            self.reuses.absolute(c.reuses);
            self.validations.absolute(c.validations);
            for (h, v) in self.closes.iter().zip(c.closes) {
                h.absolute(v);
            }
            self.timeouts.absolute(c.timeouts);
            self.overflows.absolute(c.overflows);
            self.cancels.absolute(c.cancels);
            let mut routes = self.routes.lock();
            for (key, rs) in s.routes {
                let g = routes.entry(key.clone()).or_insert_with(|| {
                    let route = describe(&key);
                    let g = |name: &'static str| {
                        gauge!(name, "pool" => self.pool.clone(), "route" => route.clone())
                    };
                    RouteGauges {
                        connections: g(n::ROUTE_CONNECTIONS),
                        idle: g(n::ROUTE_IDLE),
                        leased: g(n::ROUTE_LEASED),
                        pending: g(n::ROUTE_PENDING),
                    }
                });
                let rs = rs.unwrap_or_default();
                g.connections.set(f64::from(rs.connections));
                g.idle.set(f64::from(rs.idle));
                g.leased.set(f64::from(rs.leased));
                g.pending.set(f64::from(rs.pending));
                if rs == wharf_core::RouteStats::default() {
                    // Gone (reported at zero once): forget its handles.
                    routes.remove(&key);
                }
            }
        }
    }
}
