//! Drains and per-route configuration.

use crate::index::Index;
use core::hash::Hash;

use super::Pool;
use crate::action::CloseReason;
use crate::config::RouteConfig;
use crate::error::RouteError;
use crate::slot::{RouteListKind, NIL};
use crate::time::Instant;

/// Which routes a drain applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainScope<'k, K> {
    /// Every route in the table (in creation order).
    All,
    /// One route.
    Route(&'k K),
}

/// Envoy's `DrainBehavior`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DrainMode {
    /// Close idle connections, drain busy ones; new leases get new connections.
    DrainExisting,
    /// As above, and no new lease or connection: the route is removed once empty
    /// (`RouteIdle`). For `DrainScope::All` the pool closes for good.
    DrainAndDelete,
}

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    /// Drains one route or all of them (§7). Unknown routes are ignored.
    pub fn drain(&mut self, scope: DrainScope<'_, K>, mode: DrainMode, now: Instant) {
        self.advance(now);
        match scope {
            DrainScope::Route(key) => {
                if let Some(r) = self.find_route(key) {
                    self.drain_route(r, mode);
                    self.settle(r);
                }
            }
            DrainScope::All => {
                if mode == DrainMode::DrainAndDelete {
                    self.closed = true;
                    self.set_warm();
                }
                let mut r = self.routes.all.head();
                while r != NIL {
                    self.drain_route(r, mode);
                    r = self.routes[r as usize].all.next();
                }
                let mut r = self.routes.all.head();
                while r != NIL {
                    let next = self.routes[r as usize].all.next();
                    self.settle(r);
                    r = next;
                }
            }
        }
    }

    pub(crate) fn drain_route(&mut self, r: u32, mode: DrainMode) {
        let existing = mode == DrainMode::DrainExisting;
        if !existing {
            // Deletion always ends with a `RouteIdle` that frees the slot, even
            // for a route that was idle (configured but unused, or notified).
            let s = &mut self.routes[r as usize];
            s.set_deleting(true);
            if s.idle_mark() && !self.act_queued(Self::route_entity(r)) {
                self.routes[r as usize].set_idle_mark(false);
            }
        }
        let mut c = self.routes[r as usize].ready.head();
        while c != NIL {
            let next = self.conns[c as usize].rlink.next();
            if self.conns[c as usize].active == 0 {
                self.close(c, CloseReason::Drained);
            } else if existing {
                self.start_draining(c, CloseReason::Drained);
            }
            c = next;
        }
        if self.routes[r as usize].queue.is_empty() {
            while self.routes[r as usize].connecting.head() != NIL {
                let c = self.routes[r as usize].connecting.head();
                self.close(c, CloseReason::Drained);
            }
        }
        if existing {
            // Busy connections are on no list: scan the slots (drains are rare).
            for c in 0..self.conns.len() as u32 {
                let cs = &self.conns[c as usize];
                if cs.route.get() == r && cs.list == RouteListKind::Busy && cs.allocated() {
                    self.start_draining(c, CloseReason::Drained);
                }
            }
        }
    }

    /// Sets (or clears, with `RouteConfig::default()`) a route's overrides:
    /// its connection limit, min idle, preconnect ratio (§7). Lowering the limit
    /// closes nothing now; excess connections close as they are released.
    pub fn set_route_config(
        &mut self,
        key: &K,
        config: RouteConfig,
        now: Instant,
    ) -> Result<(), RouteError> {
        self.advance(now);
        let ov = config.validate(&self.cfg)?;
        let r = match self.find_route(key) {
            Some(r) => r,
            None if ov.is_empty() => return Ok(()),
            None if self.closed => return Err(RouteError::Draining),
            None => self.create_route(key).ok_or(RouteError::RouteTableFull)?,
        };
        if self.routes[r as usize].deleting() {
            return Err(RouteError::Draining);
        }
        self.routes[r as usize].set_overrides(ov);
        if self.routes[r as usize].allocated > self.limit(r) {
            self.routes[r as usize].set_over_limit(true);
        }
        if self.forget_if_unused(r) {
            return Ok(());
        }
        self.settle(r);
        Ok(())
    }

    /// Convenience for `set_route_config` with only a limit (`None` clears it).
    pub fn set_route_limit(
        &mut self,
        key: &K,
        limit: Option<u32>,
        now: Instant,
    ) -> Result<(), RouteError> {
        let mut cfg = match self.find_route(key) {
            Some(r) => {
                let o = self.routes[r as usize].overrides;
                RouteConfig {
                    max_connections: o.max_connections(),
                    min_idle: o.min_idle(),
                    preconnect_ratio: o.ratio_milli().map(|m| m as f32 / 1000.0),
                }
            }
            None => RouteConfig::default(),
        };
        cfg.max_connections = limit;
        self.set_route_config(key, cfg, now)
    }

    /// Keys of the routes in the table, in creation order.
    pub fn routes(&self) -> impl Iterator<Item = &K> + '_ {
        let mut r = self.routes.all.head();
        core::iter::from_fn(move || {
            while r != NIL {
                let s = &self.routes[r as usize];
                r = s.all.next();
                if let Some(k) = s.key.as_ref() {
                    return Some(k);
                }
            }
            None
        })
    }
}
