//! Clusters: many hosts behind one name, with load balancing and Envoy's
//! predictive preconnect.
//!
//! A [`Cluster`] is a fixed set of up to `HOSTS` hosts (route keys of the
//! pool) with a [`Balancer`]. It owns no connection: each host is a route of
//! the [`Pool`], created on first use and freed when idle, exactly as Envoy's
//! cluster manager keeps a pool container per host. The cluster is sans-I/O
//! like the pool: it is a value beside the pool, and every call takes the pool
//! and `now`.
//!
//! Before each cluster lease, predictive preconnect runs (Envoy's
//! `ClusterManagerImpl::maybePreconnect`): when the predictive ratio is above
//! 1.0, up to three times, while the cluster-wide
//! `shouldConnect(pending, active, connecting_and_connected_capacity, ratio,
//! anticipate = true)` holds, it peeks the host the balancer will pick next and
//! asks that host's route to preconnect ([`Pool::preconnect`], which applies the
//! per-host check with its connecting capacity). Peeked picks are stashed, so
//! the leases that follow go to the hosts that were warmed, in order.
//!
//! ```
//! use wharf_core::*;
//!
//! let mut storage: Storage<&str, 8, 4, 8, 8> = Storage::new();
//! let mut pool = Pool::new(&mut storage, Config { max_total: 8, ..Config::default() }).unwrap();
//! let mut cluster: Cluster<&str, 4> = Cluster::new(Balancer::RoundRobin);
//! cluster.add_host("10.0.0.1:80").unwrap();
//! cluster.add_host("10.0.0.2:80").unwrap();
//! let now = Instant::ZERO;
//! let a = cluster.lease(&mut pool, None, now, None).unwrap();
//! let b = cluster.lease(&mut pool, None, now, None).unwrap();
//! assert_eq!(cluster.host(a.host), Some(&"10.0.0.1:80"));
//! assert_eq!(cluster.host(b.host), Some(&"10.0.0.2:80"));
//! ```

use crate::index::Index;
use core::hash::Hash;

use crate::config::ratio_milli;
use crate::error::LeaseError;
use crate::handle::Tag;
use crate::pool::{DrainMode, DrainScope, LeaseOutcome, Pool};
use crate::time::Instant;
use crate::ConfigError;

/// How a cluster picks a host for a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Balancer {
    /// Hosts in turn.
    RoundRobin,
    /// The host with the fewest leases in use (ties: round-robin order).
    LeastActive,
    /// Uniformly at random from a seed the caller gives (xorshift64*).
    Random {
        /// Seed (0 is replaced by a fixed non-zero constant).
        seed: u64,
    },
}

/// Why a cluster call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClusterError {
    /// The cluster has no host.
    NoHosts,
    /// All `HOSTS` slots are taken.
    Full,
    /// The host is already in the cluster.
    Duplicate,
    /// No such host.
    UnknownHost,
    /// The lease on the chosen host failed.
    Lease(LeaseError),
    /// Invalid ratio.
    Config(ConfigError),
}

impl core::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClusterError::NoHosts => f.write_str("cluster has no host"),
            ClusterError::Full => f.write_str("cluster host table full"),
            ClusterError::Duplicate => f.write_str("host already in the cluster"),
            ClusterError::UnknownHost => f.write_str("no such host"),
            ClusterError::Lease(e) => write!(f, "lease failed: {e}"),
            ClusterError::Config(e) => write!(f, "invalid cluster setting: {e}"),
        }
    }
}

impl core::error::Error for ClusterError {}

/// A lease through a cluster: the host picked and the pool's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClusterLease {
    /// Index of the picked host (see [`Cluster::host`]).
    pub host: usize,
    /// The pool's answer for that host's route.
    pub outcome: LeaseOutcome,
}

#[derive(Clone, Debug)]
struct Host<K> {
    key: K,
    healthy: bool,
}

/// A named set of hosts with a balancer and predictive preconnect.
#[derive(Clone, Debug)]
pub struct Cluster<K, const HOSTS: usize> {
    hosts: [Option<Host<K>>; HOSTS],
    len: usize,
    balancer: Balancer,
    next: usize,
    rng: u64,
    stash: [usize; 3],
    stashed: usize,
    ratio_milli: u32,
    preconnects: u64,
    last: Option<usize>,
}

impl<K: Eq + Hash + Clone, const HOSTS: usize> Cluster<K, HOSTS> {
    /// An empty cluster; predictive preconnect off.
    pub fn new(balancer: Balancer) -> Self {
        let rng = match balancer {
            Balancer::Random { seed: 0 } => 0x2545_f491_4f6c_dd1d,
            Balancer::Random { seed } => seed,
            _ => 0,
        };
        Cluster {
            hosts: core::array::from_fn(|_| None),
            len: 0,
            balancer,
            next: 0,
            rng,
            stash: [0; 3],
            stashed: 0,
            ratio_milli: 0,
            preconnects: 0,
            last: None,
        }
    }

    /// Envoy's `predictive_preconnect_ratio`: 0.0 turns it off, otherwise 1.0..=3.0.
    pub fn set_predictive_ratio(&mut self, ratio: f32) -> Result<(), ClusterError> {
        self.ratio_milli = if ratio == 0.0 {
            0
        } else {
            ratio_milli(ratio).map_err(ClusterError::Config)?
        };
        Ok(())
    }

    /// Adds a healthy host.
    pub fn add_host(&mut self, key: K) -> Result<(), ClusterError> {
        if self.position(&key).is_some() {
            return Err(ClusterError::Duplicate);
        }
        if self.len == HOSTS {
            return Err(ClusterError::Full);
        }
        self.hosts[self.len] = Some(Host { key, healthy: true });
        self.len += 1;
        self.stashed = 0;
        Ok(())
    }

    /// Removes a host; its route drains for deletion (busy connections finish,
    /// idle ones close, the route is freed when empty).
    pub fn remove_host<I: Index>(
        &mut self,
        pool: &mut Pool<'_, K, I>,
        key: &K,
        now: Instant,
    ) -> Result<(), ClusterError> {
        let i = self.position(key).ok_or(ClusterError::UnknownHost)?;
        let host = self.hosts[i].take();
        for j in i..self.len - 1 {
            self.hosts[j] = self.hosts[j + 1].take();
        }
        self.len -= 1;
        if self.next > i {
            self.next -= 1;
        }
        self.stashed = 0;
        if let Some(h) = host {
            pool.drain(DrainScope::Route(&h.key), DrainMode::DrainAndDelete, now);
        }
        Ok(())
    }

    /// Sets a host's health (forwarded to the pool with [`Pool::set_route_health`]).
    pub fn set_health<I: Index>(
        &mut self,
        pool: &mut Pool<'_, K, I>,
        key: &K,
        healthy: bool,
        now: Instant,
    ) -> Result<(), ClusterError> {
        let i = self.position(key).ok_or(ClusterError::UnknownHost)?;
        pool.set_route_health(key, healthy, now)
            .map_err(|e| match e {
                crate::RouteError::Config(c) => ClusterError::Config(c),
                crate::RouteError::RouteTableFull => {
                    ClusterError::Lease(LeaseError::RouteTableFull)
                }
                crate::RouteError::Draining if pool.is_closed() => {
                    ClusterError::Lease(LeaseError::Closed)
                }
                crate::RouteError::Draining => ClusterError::Lease(LeaseError::Draining),
                crate::RouteError::UnknownRoute => ClusterError::UnknownHost,
            })?;
        // Only once the pool agreed: the cluster and the pool never disagree.
        if let Some(h) = self.hosts[i].as_mut() {
            h.healthy = healthy;
        }
        self.stashed = 0;
        Ok(())
    }

    /// The key of host `i`.
    pub fn host(&self, i: usize) -> Option<&K> {
        self.hosts.get(i)?.as_ref().map(|h| &h.key)
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True with no host.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host picked by the last [`Cluster::lease`], also when the pool
    /// refused that lease (to name the host in an error). `None` before the
    /// first pick or when the cluster had no host.
    pub fn last_pick(&self) -> Option<usize> {
        self.last
    }

    /// Connections started by predictive preconnect.
    pub fn preconnects(&self) -> u64 {
        self.preconnects
    }

    /// Leases through the cluster: predictive preconnect, then a host pick, then
    /// [`Pool::lease`] on that host's route.
    pub fn lease<I: Index>(
        &mut self,
        pool: &mut Pool<'_, K, I>,
        tag: Option<Tag>,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Result<ClusterLease, ClusterError> {
        self.last = None;
        if self.len == 0 {
            return Err(ClusterError::NoHosts);
        }
        self.maybe_preconnect(pool, now);
        let host = self.choose(pool).ok_or(ClusterError::NoHosts)?;
        self.last = Some(host);
        let key = &self.hosts[host].as_ref().ok_or(ClusterError::NoHosts)?.key;
        let outcome = pool
            .lease(key, tag, now, deadline)
            .map_err(ClusterError::Lease)?;
        Ok(ClusterLease { host, outcome })
    }

    /// Cluster-wide `(pending, active, connecting_and_connected_capacity)`.
    fn load<I: Index>(&self, pool: &Pool<'_, K, I>) -> (u64, u64, u64) {
        let (mut p, mut a, mut c) = (0u64, 0u64, 0u64);
        for h in self.hosts[..self.len].iter().flatten() {
            let l = pool.route_load(&h.key);
            p += l.queued as u64;
            a += l.active as u64;
            c += l.connecting_capacity + l.spare;
        }
        (p, a, c)
    }

    fn maybe_preconnect<I: Index>(&mut self, pool: &mut Pool<'_, K, I>, now: Instant) {
        if self.ratio_milli <= 1000 {
            return;
        }
        let ratio = self.ratio_milli as u64;
        for _ in 0..3 {
            let (pending, active, capacity) = self.load(pool);
            if (pending + active + 1) * ratio <= (capacity + active) * 1000 {
                return;
            }
            let Some(i) = self.peek(pool) else { return };
            let key = &self.hosts[i].as_ref().expect("peeked host exists").key;
            match pool.preconnect(key, self.ratio_milli as f32 / 1000.0, now) {
                Ok(true) => self.preconnects += 1,
                _ => return,
            }
        }
    }

    /// Picks the next host and stashes it for the next `choose`.
    fn peek<I: Index>(&mut self, pool: &Pool<'_, K, I>) -> Option<usize> {
        if self.stashed == self.stash.len() {
            return None;
        }
        let i = self.pick(pool)?;
        self.stash[self.stashed] = i;
        self.stashed += 1;
        Some(i)
    }

    fn choose<I: Index>(&mut self, pool: &Pool<'_, K, I>) -> Option<usize> {
        if self.stashed > 0 {
            let i = self.stash[0];
            self.stash.copy_within(1.., 0);
            self.stashed -= 1;
            return Some(i);
        }
        self.pick(pool)
    }

    /// The balancer's pick among healthy hosts (all hosts if none is healthy).
    fn pick<I: Index>(&mut self, pool: &Pool<'_, K, I>) -> Option<usize> {
        let n = self.len;
        if n == 0 {
            return None;
        }
        let any_healthy = self.hosts[..n].iter().flatten().any(|h| h.healthy);
        let eligible = |h: &Option<Host<K>>| h.as_ref().is_some_and(|h| h.healthy || !any_healthy);
        match self.balancer {
            Balancer::RoundRobin => {
                let i = (0..n)
                    .map(|k| (self.next + k) % n)
                    .find(|&i| eligible(&self.hosts[i]))?;
                self.next = (i + 1) % n;
                Some(i)
            }
            Balancer::LeastActive => {
                let mut best: Option<(u32, usize)> = None;
                for k in 0..n {
                    let i = (self.next + k) % n;
                    if let Some(h) = self.hosts[i].as_ref().filter(|_| eligible(&self.hosts[i])) {
                        let active = pool.route_load(&h.key).active;
                        if best.is_none_or(|(a, _)| active < a) {
                            best = Some((active, i));
                        }
                    }
                }
                let (_, i) = best?;
                self.next = (i + 1) % n;
                Some(i)
            }
            Balancer::Random { .. } => {
                let count = self.hosts[..n].iter().filter(|h| eligible(h)).count();
                self.rng ^= self.rng >> 12;
                self.rng ^= self.rng << 25;
                self.rng ^= self.rng >> 27;
                let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
                let mut k = (r % count as u64) as usize;
                (0..n).find(|&i| {
                    if eligible(&self.hosts[i]) {
                        if k == 0 {
                            return true;
                        }
                        k -= 1;
                    }
                    false
                })
            }
        }
    }

    fn position(&self, key: &K) -> Option<usize> {
        self.hosts[..self.len]
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| &h.key == key))
    }
}
