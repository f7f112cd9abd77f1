//! The warm path: a lease that takes the route's first idle HTTP/1
//! connection, and the release that puts it back, when nothing else can
//! happen (no waiter, no blocked route, no preconnect or warm-up, no idle
//! limit, no per-connection lease limit, no deletion).
//!
//! Each function checks that the general path would do exactly this and
//! nothing more, then does only the writes that the general path would do;
//! otherwise it returns `None`/`false` and the general path runs. The rules are
//! the general path's (SEMANTICS §4, §5, §3.8, §3.9): these are the same
//! transitions with the branches that cannot apply removed.

use crate::index::Index;
use core::hash::Hash;

use super::Pool;
use crate::config::ReusePolicy;
use crate::handle::{ConnId, Lease};
use crate::list::kind;
use crate::slot::{ConnState, RouteListKind, NIL};

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    /// Nothing that a grant or a release could trigger beyond itself: no
    /// preconnect or warm-up pool-wide, no blocked route, no idle limit.
    #[inline(always)]
    fn quiet(&self) -> bool {
        self.plain_fast && self.routes.blocked.is_empty()
    }

    /// An untagged lease on route `r` served by its first ready connection,
    /// if that is an idle, untagged, single-stream connection with no
    /// validation due and `settle(r)` would do nothing afterwards.
    #[inline(always)]
    pub(crate) fn lease_fast(&mut self, r: u32) -> Option<Lease> {
        if !self.quiet() || !self.leases.can_take(self.cfg.max_leases) {
            return None;
        }
        let now = self.now;
        let validate = self.cfg.validate_after;
        let id = self.id;
        let Pool {
            conns,
            routes,
            leases,
            ..
        } = self;
        let rs = &mut routes.slots[r as usize];
        let c = rs.ready.head();
        if c == NIL || !rs.queue.is_empty() || !rs.plain() {
            return None;
        }
        let cs = &conns[c as usize];
        if cs.tagged() || cs.capacity != 1 || !cs.in_lru() {
            return None;
        }
        if validate.is_some_and(|v| (cs.updated + v).reached(now)) {
            return None;
        }
        let lease_id = leases.take(c);
        // Off the idle LRU and off the head of the ready list (busy: full).
        conns.lru_take(c);
        rs.ready.pop_head::<kind::RouteList, _>(conns, c);
        rs.spare -= 1;
        rs.idle -= 1;
        rs.active += 1;
        rs.grants += 1;
        let cs = &mut conns[c as usize];
        cs.list = RouteListKind::Busy;
        cs.active = 1;
        let reused = cs.used();
        cs.set_used(true);
        let conn = ConnId {
            index: c,
            gen: cs.gen,
        };
        self.counters.grants += 1;
        self.counters.reuses += reused as u64;
        if self.cfg.max_lifetime.is_some() {
            self.rearm_conn(c);
        }
        Some(Lease {
            id: lease_id,
            conn,
            pool: id,
        })
    }

    /// `release(lease, Release::REUSE)` of the only lease of a single-stream
    /// connection that goes back idle with nothing else to do. The caller
    /// checked the lease; returns false (having changed nothing) when the
    /// general path must run.
    #[inline(always)]
    pub(crate) fn release_fast(&mut self, l: u32, c: u32) -> bool {
        if !self.quiet() || self.over_total {
            return false;
        }
        let now = self.now;
        let cs = &self.conns[c as usize];
        let r = cs.route.get();
        let rs = &self.routes[r as usize];
        if cs.capacity != 1
            || cs.active != 1
            || (cs.tagged() && self.cfg.strict_tags)
            || cs.draining()
            || cs.state != ConnState::Ready
            || cs.validity.reached(now)
            || !rs.queue.is_empty()
            || !rs.plain()
            // Not configured: its limit is the pool's (`limit(r)`).
            || rs.allocated > self.cfg.max_per_route
        {
            return false;
        }
        let front = self.cfg.reuse == ReusePolicy::Lifo;
        let deadline = match self.cfg.idle_timeout {
            Some(t) => cs.validity.min(now + t),
            None => cs.validity,
        };
        let seq = cs.seq;
        // The lease slot.
        self.leases.put(l);
        let Pool { conns, routes, .. } = self;
        let cs = &mut conns[c as usize];
        cs.active = 0;
        cs.updated = now;
        cs.set_kept(false);
        cs.set_tagged(false);
        cs.tag_value = 0;
        cs.expiry = cs.validity;
        cs.list = RouteListKind::Ready;
        let rs = &mut routes.slots[r as usize];
        if front {
            rs.ready
                .push_front::<kind::RouteList, _>(&mut conns.slots, c);
        } else {
            rs.ready
                .push_back::<kind::RouteList, _>(&mut conns.slots, c);
        }
        conns.lru_push(c);
        rs.spare += 1;
        rs.idle += 1;
        rs.active -= 1;
        conns.timers.arm(c, deadline, seq);
        true
    }
}
