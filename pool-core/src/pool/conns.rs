//! Connection transitions and list membership: the route's connecting, ready
//! and busy lists, the global idle LRU, attach (a lease on a connection),
//! place/offer after a connection becomes available, draining and closing.

use crate::index::Index;
use core::hash::Hash;

use super::Pool;
use crate::action::CloseReason;
use crate::config::ReusePolicy;
use crate::handle::Lease;
use crate::list::kind;
use crate::slot::{ConnState, RouteListKind, NIL};

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    /// Puts `c` on one of its route's lists; the ready list tracks spare capacity.
    /// `Busy` is a mark, not a list: the warm path stays at two list moves.
    #[inline(always)]
    pub(crate) fn route_list_push(&mut self, c: u32, which: RouteListKind, front: bool) {
        let r = self.conns[c as usize].route.get() as usize;
        let s = &mut self.routes[r];
        let list = match which {
            RouteListKind::Connecting => &mut s.connecting,
            RouteListKind::Ready => {
                s.spare += self.conns[c as usize].streams_left() as u64;
                &mut s.ready
            }
            RouteListKind::Busy | RouteListKind::None => {
                self.conns[c as usize].list = which;
                return;
            }
        };
        if front {
            list.push_front::<kind::RouteList, _>(&mut self.conns.slots, c);
        } else {
            list.push_back::<kind::RouteList, _>(&mut self.conns.slots, c);
        }
        self.conns[c as usize].list = which;
    }

    #[inline(always)]
    pub(crate) fn route_list_remove(&mut self, c: u32) {
        let cs = &self.conns[c as usize];
        let r = cs.route.get() as usize;
        let s = &mut self.routes[r];
        let list = match cs.list {
            RouteListKind::Connecting => &mut s.connecting,
            RouteListKind::Ready => {
                s.spare -= cs.streams_left() as u64;
                &mut s.ready
            }
            RouteListKind::Busy => {
                self.conns[c as usize].list = RouteListKind::None;
                return;
            }
            RouteListKind::None => return,
        };
        list.remove::<kind::RouteList, _>(&mut self.conns.slots, c);
        self.conns[c as usize].list = RouteListKind::None;
    }

    #[inline(always)]
    pub(crate) fn lru_remove(&mut self, c: u32) {
        if self.conns.lru_remove(c) {
            let r = self.conns[c as usize].route.get() as usize;
            self.routes[r].idle -= 1;
        }
    }

    /// After release, connect or validation: front (LIFO) or back (FIFO) of the
    /// ready list if available, else the busy list; idle ones join the LRU (§3.9).
    #[inline]
    pub(crate) fn place(&mut self, c: u32) {
        self.route_list_remove(c);
        let cs = &self.conns[c as usize];
        if cs.available() {
            let front = self.cfg.reuse == ReusePolicy::Lifo;
            self.route_list_push(c, RouteListKind::Ready, front);
            if self.conns[c as usize].active == 0 && !self.conns[c as usize].in_lru() {
                self.conns.lru_push(c);
                let r = self.conns[c as usize].route.get() as usize;
                self.routes[r].idle += 1;
            }
        } else {
            self.route_list_push(c, RouteListKind::Busy, false);
        }
    }

    /// Attaches a lease to available connection `c` (§3.8). The caller checked
    /// that a lease slot is free and `max_leases` not reached.
    #[inline]
    pub(crate) fn attach(&mut self, c: u32) -> Lease {
        let id = self.leases.take(c);
        self.lru_remove(c);
        let r = self.conns[c as usize].route.get();
        if self.conns[c as usize].list == RouteListKind::Ready {
            self.routes[r as usize].spare -= 1;
        }
        let cs = &mut self.conns[c as usize];
        cs.active += 1;
        let reused = cs.used();
        cs.set_used(true);
        let mut drained = false;
        if cs.remaining != u32::MAX {
            cs.remaining -= 1;
            drained = cs.remaining == 0;
        }
        self.routes[r as usize].active += 1;
        self.routes[r as usize].grants += 1;
        self.counters.grants += 1;
        if reused {
            self.counters.reuses += 1;
        }
        if drained {
            self.start_draining(c, CloseReason::MaxLeases);
        } else if self.conns[c as usize].list == RouteListKind::Ready
            && !self.conns[c as usize].available()
        {
            self.route_list_remove(c);
            self.route_list_push(c, RouteListKind::Busy, false);
        }
        if self.cfg.max_lifetime.is_some() {
            self.rearm_conn(c);
        }
        Lease {
            id,
            conn: self.conn_handle(c),
            pool: self.id,
        }
    }

    /// Never hand `c` out again; it closes when its last lease ends (§3.12).
    pub(crate) fn start_draining(&mut self, c: u32, reason: CloseReason) {
        if self.conns[c as usize].draining() {
            return;
        }
        self.conns[c as usize].set_draining(true);
        self.conns[c as usize].reason = reason;
        self.lru_remove(c);
        if self.conns[c as usize].list == RouteListKind::Ready {
            self.route_list_remove(c);
            self.route_list_push(c, RouteListKind::Busy, false);
        }
    }

    /// Closes `c` (§3.11). Validation waiters are the caller's business.
    pub(crate) fn close(&mut self, c: u32, reason: CloseReason) {
        self.detach_conn(c);
        self.conns.timers.remove(c);
        let e = Self::conn_entity(c);
        let cs = &self.conns[c as usize];
        if cs.state == ConnState::Connecting && !cs.delivered() {
            self.act_remove(e);
            self.free_conn_slot(c);
            return;
        }
        self.act_remove(e);
        let cs = &mut self.conns[c as usize];
        cs.state = ConnState::Closing;
        cs.reason = reason;
        self.conns.closing += 1;
        self.counters.closes[reason.index()] += 1;
        crate::fmt::debug!("wharf: close conn {} ({:?})", c, reason);
        self.act_push(e);
    }

    /// Removes `c` from every list and count (it stops being allocated).
    pub(crate) fn detach_conn(&mut self, c: u32) {
        self.lru_remove(c);
        self.route_list_remove(c);
        let cs = self.conns[c as usize];
        let r = cs.route.get();
        if cs.state == ConnState::Connecting {
            self.conns.connecting -= 1;
        }
        if cs.allocated() {
            if cs.guard() {
                self.conns.guards -= 1;
            }
            self.conns.total -= 1;
            if self.conns.total - self.conns.guards <= self.cfg.max_total {
                self.over_total = false;
                self.set_warm();
            }
            let limit = self.limit(r);
            let s = &mut self.routes[r as usize];
            s.allocated -= 1;
            if s.allocated <= limit {
                s.set_over_limit(false);
            }
        }
        self.conns[c as usize].set_guard(false);
    }

    pub(crate) fn free_conn_slot(&mut self, c: u32) {
        self.conns.put(c);
    }

    /// Grants `c` to compatible queued waiters of its route, FIFO (§3.7).
    #[inline]
    pub(crate) fn offer(&mut self, c: u32) {
        let r = self.conns[c as usize].route.get();
        if self.routes[r as usize].queue.is_empty() {
            return;
        }
        let mut w = self.routes[r as usize].queue.head();
        let strict = self.cfg.strict_tags;
        while w != NIL && self.conns[c as usize].available() {
            let next = self.waiters[w as usize].qlink.next();
            let tag = self.conns[c as usize].tag();
            if tag == self.waiters[w as usize].tag() || (tag.is_none() && !strict) {
                self.grant(c, w);
            }
            w = next;
        }
    }

    /// Idle limits and deleted routes after `place` + `offer` (§3.10).
    #[inline]
    pub(crate) fn after_available(&mut self, c: u32) {
        let r = self.conns[c as usize].route.get();
        if !self.routes[r as usize].deleting()
            && self.cfg.max_idle_per_route.is_none()
            && self.cfg.max_idle.is_none()
        {
            return;
        }
        if !self.conns[c as usize].idle() {
            return;
        }
        if self.routes[r as usize].deleting() {
            self.close(c, CloseReason::Drained);
        } else if self
            .cfg
            .max_idle_per_route
            .is_some_and(|m| self.routes[r as usize].idle > m)
        {
            self.close(c, CloseReason::IdleLimit);
        } else if self.cfg.max_idle.is_some_and(|m| self.conns.idle() > m) {
            let v = self.conns.lru.tail();
            let vr = self.conns[v as usize].route.get();
            self.close(v, CloseReason::IdleLimit);
            if vr != r {
                self.check_idle(vr);
            }
        }
    }

    /// First connection of `r`'s ready list matching `tag` (§4.3): the same
    /// tag first, else (not strict) an untagged one.
    #[inline]
    pub(crate) fn find_conn(&self, r: u32, tag: Option<crate::Tag>) -> u32 {
        let mut c = self.routes[r as usize].ready.head();
        let mut untagged = NIL;
        let strict = self.cfg.strict_tags;
        while c != NIL {
            let ct = self.conns[c as usize].tag();
            if ct == tag {
                return c;
            }
            if ct.is_none() && untagged == NIL && !strict {
                untagged = c;
                if tag.is_none() {
                    return c;
                }
            }
            c = self.conns[c as usize].rlink.next();
        }
        untagged
    }

    #[inline]
    pub(crate) fn needs_validation(&self, c: u32) -> bool {
        let cs = &self.conns[c as usize];
        cs.active == 0
            && self
                .cfg
                .validate_after
                .is_some_and(|v| (cs.updated + v).reached(self.now))
    }

    #[inline]
    pub(crate) fn can_lease(&self) -> bool {
        self.leases.can_take(self.cfg.max_leases)
    }
}
