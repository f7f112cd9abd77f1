//! Live limits: `max_total` and the default per-route limit changed on a
//! running pool (HttpClient's `setMaxTotal` / `setDefaultMaxPerRoute`), within
//! the storage's slots. Raising takes effect at once (blocked routes and
//! routes at their limit may connect); lowering closes nothing now: excess
//! connections close as their leases come back (§7), as a lowered route
//! override does.

use crate::index::Index;
use core::hash::Hash;

use super::Pool;
use crate::config::ConfigError;
use crate::slot::NIL;
use crate::time::Instant;

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    /// Sets `max_total` (1..= the storage's connection slots). Lowering it
    /// below the connections open closes nothing now: each one released while
    /// the pool is over the new limit closes (`CloseReason::TotalLimit`).
    pub fn set_max_total(&mut self, max_total: u32, now: Instant) -> Result<(), ConfigError> {
        self.advance(now);
        if max_total == 0 {
            return Err(ConfigError::ZeroMaxTotal);
        }
        if max_total as usize > self.conns.len() {
            return Err(ConfigError::MaxTotalExceedsStorage);
        }
        self.cfg.max_total = max_total;
        self.over_total = self.conns.total - self.conns.guards > max_total;
        self.set_warm();
        self.settle_all();
        Ok(())
    }

    /// Sets the default connection limit of routes without an override (>= 1
    /// and at least `min_idle_per_route`). Lowering it closes nothing now: a
    /// connection released while its route is over the limit closes
    /// (`CloseReason::RouteLimit`).
    pub fn set_max_per_route(
        &mut self,
        max_per_route: u32,
        now: Instant,
    ) -> Result<(), ConfigError> {
        self.advance(now);
        if max_per_route == 0 {
            return Err(ConfigError::ZeroMaxPerRoute);
        }
        if self.cfg.min_idle > max_per_route {
            return Err(ConfigError::MinIdleTooLarge);
        }
        // A route whose own min_idle override exceeds the new default limit
        // (and has no limit override) would be refused by `set_route_config`.
        let mut r = self.routes.all.head();
        while r != NIL {
            let s = &self.routes[r as usize];
            if s.overrides.max_connections().is_none()
                && s.overrides.min_idle().is_some_and(|m| m > max_per_route)
            {
                return Err(ConfigError::MinIdleTooLarge);
            }
            r = s.all.next();
        }
        self.cfg.max_per_route = max_per_route;
        let mut r = self.routes.all.head();
        while r != NIL {
            if self.routes[r as usize].allocated > self.limit(r) {
                self.routes[r as usize].set_over_limit(true);
            }
            r = self.routes[r as usize].all.next();
        }
        self.settle_all();
        Ok(())
    }

    /// Settles every route, in creation order (after a limit changed).
    fn settle_all(&mut self) {
        let mut r = self.routes.all.head();
        while r != NIL {
            let next = self.routes[r as usize].all.next();
            self.settle(r);
            r = next;
        }
    }
}
