//! Reference model of a `Cluster` (docs/SEMANTICS.md §12), written from the
//! document only, on top of the reference pool model.

use super::harness::event;
use super::model::{MOutcome, Model};
use wharf_core::{Balancer, ClusterError, ConfigError, Instant, LeaseError, RouteError, Tag};

/// Seed used instead of 0 (xorshift64* must not start at 0).
const SEED0: u64 = 0x2545_f491_4f6c_dd1d;
const MUL: u64 = 0x2545_f491_4f6c_dd1d;

#[derive(Clone, Debug)]
struct MHost {
    key: u8,
    healthy: bool,
}

/// The cluster model.
#[derive(Clone, Debug)]
pub struct MCluster {
    cap: usize,
    hosts: Vec<MHost>,
    balancer: Balancer,
    cursor: usize,
    rng: u64,
    stash: Vec<usize>,
    /// Predictive ratio in 1/1000 (0 = off).
    ratio: u32,
    ratio_f: f32,
    preconnects: u64,
    last: Option<usize>,
}

/// A cluster lease in model terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MClusterLease {
    pub host: usize,
    pub outcome: MOutcome,
}

fn route_err(e: RouteError) -> ClusterError {
    match e {
        RouteError::Config(c) => ClusterError::Config(c),
        // Ambiguity: §12 does not say how a route error of the health hook
        // is reported through the cluster; the pool being closed or the
        // route deleted reads as the lease error it would give.
        RouteError::Draining => ClusterError::Lease(LeaseError::Draining),
        RouteError::RouteTableFull => ClusterError::Lease(LeaseError::RouteTableFull),
        RouteError::UnknownRoute => ClusterError::UnknownHost,
    }
}

impl MCluster {
    pub fn new(cap: usize, balancer: Balancer) -> Self {
        let rng = match balancer {
            Balancer::Random { seed: 0 } => SEED0,
            Balancer::Random { seed } => seed,
            _ => 0,
        };
        MCluster {
            cap,
            hosts: Vec::new(),
            balancer,
            cursor: 0,
            rng,
            stash: Vec::new(),
            ratio: 0,
            ratio_f: 0.0,
            preconnects: 0,
            last: None,
        }
    }

    pub fn set_predictive_ratio(&mut self, ratio: f32) -> Result<(), ClusterError> {
        if ratio == 0.0 {
            self.ratio = 0;
            self.ratio_f = 0.0;
            return Ok(());
        }
        if !(1.0..=3.0).contains(&ratio) {
            return Err(ClusterError::Config(ConfigError::BadPreconnectRatio));
        }
        self.ratio = (ratio * 1000.0 + 0.5) as u32;
        self.ratio_f = ratio;
        Ok(())
    }

    fn position(&self, key: u8) -> Option<usize> {
        self.hosts.iter().position(|h| h.key == key)
    }

    pub fn add_host(&mut self, key: u8) -> Result<(), ClusterError> {
        if self.position(key).is_some() {
            return Err(ClusterError::Duplicate);
        }
        if self.hosts.len() >= self.cap {
            return Err(ClusterError::Full);
        }
        self.hosts.push(MHost { key, healthy: true });
        self.stash.clear();
        Ok(())
    }

    pub fn remove_host(
        &mut self,
        pool: &mut Model,
        key: u8,
        now: Instant,
    ) -> Result<(), ClusterError> {
        let i = self.position(key).ok_or(ClusterError::UnknownHost)?;
        self.hosts.remove(i);
        // Ambiguity: §12 does not say where the cursor goes; the hosts after
        // the removed one move down one place and the cursor follows them.
        if self.cursor > i {
            self.cursor -= 1;
        }
        self.stash.clear();
        pool.drain(Some(key), wharf_core::DrainMode::DrainAndDelete, now);
        Ok(())
    }

    pub fn set_health(
        &mut self,
        pool: &mut Model,
        key: u8,
        healthy: bool,
        now: Instant,
    ) -> Result<(), ClusterError> {
        let i = self.position(key).ok_or(ClusterError::UnknownHost)?;
        if !self.stash.is_empty() {
            event("model: set_health with a non-empty stash");
        }
        pool.set_route_health(key, healthy, now)
            .map_err(|e| match e {
                // A closed pool: the lease error it gives (tests/cluster.rs).
                RouteError::Draining if pool.is_closed() => ClusterError::Lease(LeaseError::Closed),
                e => route_err(e),
            })?;
        self.hosts[i].healthy = healthy;
        self.stash.clear();
        Ok(())
    }

    pub fn host(&self, i: usize) -> Option<u8> {
        self.hosts.get(i).map(|h| h.key)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn last_pick(&self) -> Option<usize> {
        self.last
    }

    pub fn preconnects(&self) -> u64 {
        self.preconnects
    }

    /// Eligible host indices in host order: the healthy ones, or all.
    fn eligible(&self) -> Vec<usize> {
        let healthy: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| self.hosts[i].healthy)
            .collect();
        if healthy.is_empty() {
            (0..self.hosts.len()).collect()
        } else {
            healthy
        }
    }

    /// Eligible hosts starting at the cursor, wrapping around.
    fn eligible_from_cursor(&self) -> Vec<usize> {
        let el = self.eligible();
        let (after, before): (Vec<usize>, Vec<usize>) =
            el.into_iter().partition(|&i| i >= self.cursor);
        after.into_iter().chain(before).collect()
    }

    fn pick(&mut self, pool: &Model) -> usize {
        match self.balancer {
            Balancer::RoundRobin => {
                let h = self.eligible_from_cursor()[0];
                self.advance(h);
                h
            }
            Balancer::LeastActive => {
                let order = self.eligible_from_cursor();
                let mut best = order[0];
                let mut best_active = pool.route_load(self.hosts[best].key).active;
                for &h in &order[1..] {
                    let a = pool.route_load(self.hosts[h].key).active;
                    if a < best_active {
                        best = h;
                        best_active = a;
                    }
                }
                self.advance(best);
                best
            }
            Balancer::Random { .. } => {
                let mut s = self.rng;
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                self.rng = s;
                let el = self.eligible();
                if el.len() < self.hosts.len() {
                    event("model: random pick among the healthy hosts only");
                }
                let n = s.wrapping_mul(MUL) % el.len() as u64;
                el[n as usize]
            }
        }
    }

    /// `cursor = pick + 1`. Ambiguity (reported): §12 does not say when the
    /// cursor wraps; the core wraps it when it is set (modulo the hosts at
    /// that time), so after the last host the next pick starts at host 0
    /// even if a host was appended in between.
    fn advance(&mut self, pick: usize) {
        self.cursor = (pick + 1) % self.hosts.len();
    }

    /// Picks and stashes; `None` when the stash is full.
    fn peek(&mut self, pool: &Model) -> Option<usize> {
        if self.stash.len() >= 3 {
            event("model: peek on a full stash");
            return None;
        }
        let h = self.pick(pool);
        self.stash.push(h);
        Some(h)
    }

    fn choose(&mut self, pool: &Model) -> usize {
        if self.stash.is_empty() {
            self.pick(pool)
        } else {
            self.stash.remove(0)
        }
    }

    /// §12 cluster sums `(pending, active, capacity)`.
    fn load(&self, pool: &Model) -> (u64, u64, u64) {
        let mut s = (0, 0, 0);
        for h in &self.hosts {
            let l = pool.route_load(h.key);
            s.0 += l.queued as u64;
            s.1 += l.active as u64;
            s.2 += l.connecting_capacity + l.spare;
        }
        s
    }

    pub fn lease(
        &mut self,
        pool: &mut Model,
        tag: Option<Tag>,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Result<MClusterLease, ClusterError> {
        self.last = None;
        if self.hosts.is_empty() {
            return Err(ClusterError::NoHosts);
        }
        if self.ratio > 1000 {
            for _ in 0..3 {
                let (pending, active, capacity) = self.load(pool);
                if (pending + active + 1) * self.ratio as u64 <= (capacity + active) * 1000 {
                    break;
                }
                let Some(h) = self.peek(pool) else { break };
                let key = self.hosts[h].key;
                // Ambiguity: §12 does not say what a refused preconnect
                // (route table full, route deleted) does: it stops the loop.
                if pool.backoff_pending_key(key) {
                    event("model: predictive preconnect on a host in retry backoff");
                }
                match pool.preconnect(key, self.ratio_f, now) {
                    Ok(true) => self.preconnects += 1,
                    Ok(false) => break,
                    Err(e) => {
                        event(format!("model: predictive preconnect refused {e:?}"));
                        break;
                    }
                }
            }
        }
        if deadline.is_some_and(|d| d <= now) && !self.stash.is_empty() {
            event("model: expired deadline still consumes a stashed pick");
        }
        let h = self.choose(pool);
        self.last = Some(h);
        let key = self.hosts[h].key;
        let outcome = pool
            .lease(key, tag, now, deadline)
            .map_err(ClusterError::Lease)?;
        Ok(MClusterLease { host: h, outcome })
    }
}
