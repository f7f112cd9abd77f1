//! The warm path: a lease that takes the route's first idle HTTP/1
//! connection, and the release that puts it back, when nothing else can
//! happen (no timer due, no waiter, no blocked route, no preconnect or
//! warm-up, no idle limit, no per-connection lease limit, no deletion).
//!
//! Each function checks that the general path would do exactly this and
//! nothing more, then does only the writes that the general path would do;
//! otherwise it returns `None`/`Fast::General` having changed nothing but the
//! time (moved to `now`, as `advance` does first), and the general path
//! (`lease_general`, `release_general`) runs from the start. The rules are
//! the general path's (SEMANTICS §4, §5, §3.8, §3.9): these are the same
//! transitions with the branches that cannot apply removed.
//!
//! Both are written for the instruction count (docs/PERFORMANCE.md, "The
//! core"): they call nothing on the common path (`lease` and `release`,
//! inlined into the caller with `alloc`, then need no call of their own),
//! take each slot slice once into a local (a store through a slot cannot
//! then make the compiler reload the slice), read a list neighbour through
//! `get_mut`, whose bounds check is also the test for "no neighbour" (`NIL`
//! is past every slice), and read one bound for the three timer heaps
//! (`Pool::due`).

use crate::index::Index;
use core::hash::Hash;

use super::Pool;
use crate::config::ReusePolicy;
use crate::handle::{ConnId, Lease, LeaseId};
use crate::slot::{ConnSlot, ConnState, RouteListKind, NIL};
use crate::tables::{Conns, Leases};
use crate::time::Instant;

/// What [`Pool::release_fast`] did.
pub(crate) enum Fast {
    /// Released.
    Done,
    /// Released; the connection's timer must be set to `(at, seq)`.
    Arm(u32, Instant, u32),
    /// Nothing: the general path runs.
    General,
}

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    /// `advance(now)`'s first step (time moves to `now`, never backwards),
    /// then whether it would fire nothing and nothing a grant or a release
    /// could trigger beyond itself applies: no preconnect or warm-up
    /// pool-wide, no blocked route, no idle limit, the pool not closed and
    /// not over a lowered `max_total` (`warm`). The general path's
    /// `advance(self.now)` then does what `advance(now)` would.
    #[inline(always)]
    fn quiet_at(&mut self, now: Instant) -> Option<Instant> {
        let now = now.max(self.now);
        self.now = now;
        // `due` <= `next_due()`: nothing due at `due > now`.
        if self.due <= now || !self.warm || !self.routes.blocked.is_empty() {
            return None;
        }
        Some(now)
    }

    /// An untagged lease on route `key` served by its first ready
    /// connection, if that is an idle, untagged, single-stream connection
    /// with no validation due and `settle(r)` would do nothing afterwards;
    /// `advance(now)` included (it must have nothing to fire).
    #[inline(always)]
    pub(crate) fn lease_fast(&mut self, key: &K, now: Instant) -> Option<Lease> {
        let now = self.quiet_at(now)?;
        // A free lease slot is the `get_mut` below (`NIL` is past the slice).
        if self.leases.used >= self.cfg.max_leases {
            return None;
        }
        let r = self.routes.find(key)? as usize;
        // Settings and the pool's identity read where used (held in
        // registers across the commit they would be spilled).
        let Pool {
            conns: Conns { slots, lru, .. },
            routes,
            leases:
                Leases {
                    slots: lslots,
                    free,
                    used,
                },
            counters,
            cfg,
            id: pool,
            ..
        } = self;
        let cslots: &mut [ConnSlot<I>] = slots;
        let rs = routes.slots.get_mut(r)?;
        let c = rs.ready.head();
        if !rs.queue.is_empty() || !rs.plain() {
            return None;
        }
        // `NIL` (an empty ready list) is past the slice.
        let cs = cslots.get(c as usize)?;
        if !cs.untagged_idle() || cs.capacity != 1 {
            return None;
        }
        // `t.reached(now)` as one comparison, `t < upto` (`after_by_one`).
        let upto = now.after_by_one();
        if cfg.validate_after.is_some_and(|v| (cs.updated + v) < upto) {
            return None;
        }
        let l = *free;
        let ls = lslots.get_mut(l as usize)?;
        // Committed: from here on every write is the general path's.
        *free = ls.next_free.get();
        ls.conn = I::new(c);
        *used += 1;
        let id = LeaseId {
            index: l,
            gen: ls.gen,
        };
        // Off the idle LRU and off the head of the ready list (busy: full).
        let (lp, ln) = (cs.glink.prev(), cs.glink.next());
        let rn = cs.rlink.next();
        match cslots.get_mut(lp as usize) {
            Some(p) => p.glink.set_next(ln),
            None => lru.set_head(ln),
        }
        match cslots.get_mut(ln as usize) {
            Some(n) => n.glink.set_prev(lp),
            None => lru.set_tail(lp),
        }
        lru.dec();
        rs.ready.set_head(rn);
        match cslots.get_mut(rn as usize) {
            Some(n) => n.rlink.set_prev(NIL),
            None => rs.ready.set_tail(NIL),
        }
        rs.ready.dec();
        rs.spare -= 1;
        rs.idle -= 1;
        rs.active += 1;
        rs.grants += 1;
        let cs = &mut cslots[c as usize];
        let reused = cs.used();
        cs.glink = crate::list::Link::NONE;
        cs.rlink = crate::list::Link::NONE;
        cs.set_in_lru(false);
        cs.set_used(true);
        cs.list = RouteListKind::Busy;
        cs.active = 1;
        counters.grants += 1;
        if reused {
            counters.reuses += 1;
        }
        // No `rearm_conn(c)` (the general path's, with a lifetime): leased,
        // its deadline is `validity`, and idle it was armed no later than
        // `expiry` (<= `validity`), so `arm` would move nothing (the
        // armed-deadline invariant, `check_invariants`).
        // The connection's generation read last (a load, not a value held
        // across the commit).
        Some(Lease {
            id,
            conn: ConnId {
                index: c,
                gen: cs.gen,
            },
            pool: *pool,
        })
    }

    /// `release(lease, Release::REUSE, now)` of the only lease of a
    /// single-stream connection that goes back idle with nothing else to do,
    /// `advance(now)` and the lease's checks included; `Fast::General`
    /// (having changed nothing but the time) when the general path must run.
    #[inline(always)]
    pub(crate) fn release_fast(&mut self, lease: &Lease, now: Instant) -> Fast {
        let Some(now) = self.quiet_at(now) else {
            return Fast::General;
        };
        if lease.pool != self.id {
            return Fast::General;
        }
        // Settings read where used (see `lease_fast`).
        let Pool {
            conns: Conns {
                slots, lru, timers, ..
            },
            routes,
            leases:
                Leases {
                    slots: lslots,
                    free,
                    used,
                },
            cfg,
            ..
        } = self;
        let (l, c) = (lease.id.index, lease.conn.index);
        let Some(ls) = lslots.get_mut(l as usize) else {
            return Fast::General;
        };
        let cslots: &mut [ConnSlot<I>] = slots;
        let Some(cs) = cslots.get(c as usize) else {
            return Fast::General;
        };
        // The lease's checks (`release`): `StaleLease` is the general path's.
        if ls.gen != lease.id.gen || ls.conn.get() != c || cs.gen != lease.conn.gen {
            return Fast::General;
        }
        let r = cs.route.get() as usize;
        let Some(rs) = routes.slots.get_mut(r) else {
            return Fast::General;
        };
        let upto = now.after_by_one();
        if !cs.one_stream_one_lease()
            || !cs.reusable(cfg.strict_tags)
            || cs.state != ConnState::Ready
            || cs.validity < upto
            || !rs.queue.is_empty()
            || !rs.plain()
            // Not configured: its limit is the pool's (`limit(r)`).
            || rs.allocated > cfg.max_per_route
        {
            return Fast::General;
        }
        // Committed. The lease slot.
        ls.conn = I::NIL;
        ls.gen = ls.gen.wrapping_add(1);
        ls.next_free = I::new(*free);
        *free = l;
        *used -= 1;
        // Front (LIFO) or back (FIFO) of the ready list, front of the LRU.
        let rlink = if cfg.reuse == ReusePolicy::Lifo {
            let h = rs.ready.head();
            match cslots.get_mut(h as usize) {
                Some(n) => n.rlink.set_prev(c),
                None => rs.ready.set_tail(c),
            }
            rs.ready.set_head(c);
            crate::list::Link::new(NIL, h)
        } else {
            let t = rs.ready.tail();
            match cslots.get_mut(t as usize) {
                Some(p) => p.rlink.set_next(c),
                None => rs.ready.set_head(c),
            }
            rs.ready.set_tail(c);
            crate::list::Link::new(t, NIL)
        };
        rs.ready.inc();
        let h = lru.head();
        match cslots.get_mut(h as usize) {
            Some(n) => n.glink.set_prev(c),
            None => lru.set_tail(c),
        }
        lru.set_head(c);
        lru.inc();
        rs.spare += 1;
        rs.idle += 1;
        rs.active -= 1;
        let cs = &mut cslots[c as usize];
        cs.rlink = rlink;
        cs.glink = crate::list::Link::new(NIL, h);
        cs.active = 0;
        cs.updated = now;
        cs.set_kept(false);
        cs.set_tagged(false);
        cs.set_in_lru(true);
        cs.tag_value = 0;
        let validity = cs.validity;
        cs.expiry = validity;
        cs.list = RouteListKind::Ready;
        // Its idle deadline (`conn_deadline`: idle, not kept, expiry =
        // validity).
        let deadline = match cfg.idle_timeout {
            Some(t) => validity.min(now + t),
            None => validity,
        };
        if timers.arm_moves(c, deadline) {
            return Fast::Arm(c, deadline, cs.seq);
        }
        Fast::Done
    }

    /// The end of a warm release whose connection's timer must move (out
    /// of line: `release` then calls nothing on the common path).
    #[inline(never)]
    pub(crate) fn release_arm(
        &mut self,
        c: u32,
        at: Instant,
        seq: u32,
    ) -> Result<(), crate::error::ReleaseError> {
        self.conns.timers.set(c, at, seq, &mut self.due);
        Ok(())
    }
}
