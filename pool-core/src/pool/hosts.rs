//! Route-level hooks for clusters: host health, load figures and Envoy's
//! per-host `maybePreconnect(global_ratio)`.

use crate::index::Index;
use core::hash::Hash;

use super::capacity::{Created, Purpose};
use super::Pool;
use crate::config::ratio_milli;
use crate::error::RouteError;
use crate::time::Instant;

/// Load figures of one route, the inputs of Envoy's `shouldConnect`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RouteLoad {
    /// Waiters queued for a connection.
    pub queued: u32,
    /// Leases in use.
    pub active: u32,
    /// Stream capacity of connections still connecting.
    pub connecting_capacity: u64,
    /// Unused stream capacity of open, available connections.
    pub spare: u64,
    /// Host health.
    pub healthy: bool,
}

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    /// Load figures of a route (zeros and healthy if it is not in the table).
    pub fn route_load(&self, key: &K) -> RouteLoad {
        match self.find_route(key) {
            None => RouteLoad {
                healthy: true,
                ..RouteLoad::default()
            },
            Some(r) => {
                let s = &self.routes[r as usize];
                RouteLoad {
                    queued: s.queue.len(),
                    active: s.active,
                    connecting_capacity: s.connecting.len() as u64
                        * self.cfg.connecting_capacity as u64,
                    spare: s.spare,
                    healthy: !s.unhealthy(),
                }
            }
        }
    }

    /// Marks a route (host) healthy or not. An unhealthy route connects only
    /// while its queued leases exceed its connecting capacity: no preconnect,
    /// no warm-up (Envoy). The mark is kept while the route is idle; marking a
    /// route that is not in the table unhealthy creates it. With
    /// [`Config::close_on_unhealthy`](crate::Config::close_on_unhealthy), a
    /// route that becomes unhealthy also has its idle connections closed and
    /// its busy ones drained (as [`DrainMode::DrainExisting`](crate::DrainMode)).
    pub fn set_route_health(
        &mut self,
        key: &K,
        healthy: bool,
        now: Instant,
    ) -> Result<(), RouteError> {
        self.advance(now);
        let r = match self.find_route(key) {
            Some(r) => r,
            None if healthy => return Ok(()),
            None if self.closed => return Err(RouteError::Draining),
            None => self.create_route(key).ok_or(RouteError::RouteTableFull)?,
        };
        let fell = !healthy && !self.routes[r as usize].unhealthy();
        self.routes[r as usize].set_unhealthy(!healthy);
        if fell && self.cfg.close_on_unhealthy {
            // Envoy's `close_connections_on_host_health_failure`: idle ones
            // close, busy ones drain (§12).
            self.drain_route(r, super::DrainMode::DrainExisting);
        }
        if self.forget_if_unused(r) {
            return Ok(());
        }
        self.settle(r);
        Ok(())
    }

    /// Envoy's `maybePreconnect(global_ratio)` for one host: creates the route if
    /// needed, then opens one connection if
    /// `(queued + active + 1) * ratio > connecting_capacity + active` (an
    /// unhealthy host: `queued > connecting_capacity`), within every limit,
    /// without eviction, and only if the idle limits leave room for it. A
    /// ratio of 0 is off: `Ok(false)`, nothing made. Returns whether a
    /// connection was started.
    pub fn preconnect(&mut self, key: &K, ratio: f32, now: Instant) -> Result<bool, RouteError> {
        self.advance(now);
        let ratio = ratio_milli(ratio)? as u64;
        if ratio == 0 {
            // Off, as Envoy's `maybePreconnect(0)` (§12).
            return Ok(false);
        }
        if self.closed {
            return Err(RouteError::Draining);
        }
        let existing = self.find_route(key);
        let r = match existing {
            Some(r) => r,
            None => self.create_route(key).ok_or(RouteError::RouteTableFull)?,
        };
        let s = &self.routes[r as usize];
        if s.deleting() {
            return Err(RouteError::Draining);
        }
        let queued = s.queue.len() as u64;
        let active = s.active as u64;
        let cc = s.connecting.len() as u64 * self.cfg.connecting_capacity as u64;
        let should = if s.unhealthy() {
            queued > cc
        } else {
            (queued + active + 1) * ratio > (cc + active) * 1000
        } && self.idle_room(r);
        let created = should && self.create(r, Purpose::Preconnect) == Created::Yes;
        if existing.is_none() && self.routes[r as usize].allocated == 0 {
            // Nothing was opened: a route made only for the check is not kept.
            self.free_route(r);
        } else {
            self.check_idle(r);
        }
        Ok(created)
    }
}
