//! The route table (a chained hash index threaded through the route slots),
//! per-route settings, idle notices and `settle`, the step every input ends with.

use crate::index::Index;
use core::hash::Hash;

use super::Pool;
use crate::action::{CloseReason, FailReason};
use crate::slot::NIL;

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    #[inline]
    pub(crate) fn find_route(&self, key: &K) -> Option<u32> {
        self.routes.find(key)
    }

    /// A new route for `key`; `None` when the table is full.
    pub(crate) fn create_route(&mut self, key: &K) -> Option<u32> {
        if self.routes.free == NIL {
            return None;
        }
        let seq = self.next_seq();
        self.routes.insert(key, seq)
    }

    /// Removes route `r` from the table (and its `RouteIdle`, if unpolled)
    /// and returns its key.
    pub(crate) fn free_route(&mut self, r: u32) -> Option<K> {
        let key = self.routes.remove(r)?;
        self.act_remove(Self::route_entity(r));
        Some(key)
    }

    #[inline]
    pub(crate) fn limit(&self, r: u32) -> u32 {
        self.routes[r as usize]
            .overrides
            .max_connections()
            .unwrap_or(self.cfg.max_per_route)
    }

    #[inline]
    pub(crate) fn ratio(&self, r: u32) -> u32 {
        self.routes[r as usize]
            .overrides
            .ratio_milli()
            .unwrap_or(self.cfg.ratio_milli)
    }

    #[inline]
    pub(crate) fn min_idle(&self, r: u32) -> u32 {
        self.routes[r as usize]
            .overrides
            .min_idle()
            .unwrap_or(self.cfg.min_idle)
    }

    /// Frees route `r` at once when nothing keeps it: no per-route setting, no
    /// connection, no waiter, and its idle notice already delivered (a setting
    /// was just cleared). Returns whether it was freed.
    pub(crate) fn forget_if_unused(&mut self, r: u32) -> bool {
        let s = &self.routes[r as usize];
        let unused = !s.configured()
            && s.idle_mark()
            && s.allocated == 0
            && s.queue.is_empty()
            && s.validating == 0;
        if unused && !self.act_queued(Self::route_entity(r)) {
            self.free_route(r);
            return true;
        }
        false
    }

    /// Something is being added to route `r`: it is no longer idle.
    #[inline]
    pub(crate) fn touch_route(&mut self, r: u32) {
        if self.routes[r as usize].idle_mark() {
            self.routes[r as usize].set_idle_mark(false);
            self.act_remove(Self::route_entity(r));
        }
    }

    /// Queues `RouteIdle` if `r` has no connection and no waiter (§3.6).
    pub(crate) fn check_idle(&mut self, r: u32) {
        let s = &self.routes[r as usize];
        if !s.live() || s.idle_mark() {
            return;
        }
        if s.allocated == 0 && s.queue.is_empty() && s.validating == 0 {
            self.routes[r as usize].set_idle_mark(true);
            self.act_push(Self::route_entity(r));
        }
    }

    /// The end of every input for each route it touched (§3.1).
    #[inline]
    pub(crate) fn settle(&mut self, r: u32) {
        let s = &self.routes[r as usize];
        // Fast path (the warm lease/release): nothing queued, nothing to
        // preconnect or warm, nobody blocked, and the route is in use.
        if self.plain
            && s.queue.is_empty()
            && s.allocated > 0
            && !s.deleting()
            && !s.configured()
            && self.routes.blocked.is_empty()
        {
            return;
        }
        self.settle_slow(r);
    }

    fn settle_slow(&mut self, r: u32) {
        if !self.routes[r as usize].live() {
            return;
        }
        let s = &self.routes[r as usize];
        if s.deleting() {
            if s.queue.is_empty() {
                // Nobody is left to use a connect in progress (Envoy's
                // `DrainWhileConnecting`): it would only hold a slot.
                while self.routes[r as usize].connecting.head() != NIL {
                    let c = self.routes[r as usize].connecting.head();
                    self.close(c, CloseReason::Drained);
                }
            } else if s.allocated == 0 {
                self.fail_queue(r, FailReason::Draining);
            }
        }
        // Capacity that freed up goes to the oldest waiter: this route's own
        // demand first if its oldest waiter is older than the first blocked
        // route's that wants capacity, or if no other blocked route wants
        // capacity and it does; else the blocked routes first, passing over
        // this one (it may be on the list ahead of the route whose older
        // waiter comes first: serving it there would hand a connection an
        // eviction freed for that route back to this one, §3.1).
        let own_first = match self.blocked_oldest(r) {
            Some(theirs) => self.oldest_waiter(r).is_some_and(|ours| ours < theirs),
            None => self.wants_capacity(r),
        };
        if own_first {
            self.try_create(r);
        }
        if !self.routes.blocked.is_empty() {
            self.unblock(if own_first { NIL } else { r });
        }
        if !own_first && (!self.routes[r as usize].queue.is_empty() || self.ratio(r) > 1000) {
            self.try_create(r);
        }
        if self.min_idle(r) > 0 {
            self.warm(r);
        }
        self.check_idle(r);
    }
}
