//! Connect decisions: Envoy's `shouldConnect` and `tryCreateNewConnections`,
//! HttpClient's per-route shrink and cross-route eviction, the starvation
//! guard, blocked routes waiting for total capacity, and min-idle warm-up.

use crate::index::Index;
use core::hash::Hash;

use super::Pool;
use crate::action::CloseReason;
use crate::list::kind;
use crate::slot::{ConnState, RouteListKind, NIL};
use crate::time::Instant;

/// Why a connection is being created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) enum Purpose {
    /// Queued waiters exceed the connecting capacity.
    Demand,
    /// The preconnect ratio asks for more.
    Preconnect,
    /// `min_idle` warm-up.
    Warm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Created {
    Yes,
    /// Created past `max_total` by the starvation guard.
    Guard,
    No,
}

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    /// `(demand, preconnect)` for route `r` (§3.2).
    pub(crate) fn should_connect(&self, r: u32) -> (bool, bool) {
        let s = &self.routes[r as usize];
        let queued = s.queue.len() as u64;
        let connecting_capacity = s.connecting.len() as u64 * self.cfg.connecting_capacity as u64;
        let demand = queued > connecting_capacity;
        if s.unhealthy() {
            // Envoy: an unhealthy host gets no extra work.
            return (demand, false);
        }
        let ratio = self.ratio(r) as u64;
        let active = s.active as u64;
        let pre = ratio > 1000
            && !s.retrying()
            && (queued + active) * ratio > (connecting_capacity + s.spare + active) * 1000
            && self.idle_room(r);
        (demand, pre)
    }

    /// Without idle connection `c`, `r`'s open connections would not meet its
    /// preconnect ratio (§3.2, connects in flight not counted: they may come
    /// up with less capacity than assumed): the spare `c` provides is what
    /// the ratio asks for.
    pub(crate) fn preconnect_would_reopen(&self, c: u32) -> bool {
        let r = self.conns[c as usize].route.get();
        let s = &self.routes[r as usize];
        let ratio = self.ratio(r) as u64;
        if ratio <= 1000 || s.unhealthy() || s.deleting() || s.retrying() || self.closed {
            return false;
        }
        let spare = s.spare - self.conns[c as usize].streams_left() as u64;
        let (queued, active) = (s.queue.len() as u64, s.active as u64);
        let room = self
            .cfg
            .max_idle_per_route
            .is_none_or(|m| s.idle - 1 + s.connecting.len() < m)
            && self
                .cfg
                .max_idle
                .is_none_or(|m| self.conns.idle() - 1 + self.conns.connecting < m);
        room && (queued + active) * ratio > (spare + active) * 1000
    }

    /// A connection made now that nobody takes would not be closed by an idle
    /// limit on connect: preconnects count against `max_idle_per_route` and
    /// `max_idle` (§3.2).
    #[inline]
    pub(crate) fn idle_room(&self, r: u32) -> bool {
        let s = &self.routes[r as usize];
        self.cfg
            .max_idle_per_route
            .is_none_or(|m| s.idle + s.connecting.len() < m)
            && self
                .cfg
                .max_idle
                .is_none_or(|m| self.conns.idle() + self.conns.connecting < m)
    }

    /// Envoy's `tryCreateNewConnections`: at most 3 connects per trigger.
    pub(crate) fn try_create(&mut self, r: u32) {
        if self.closed || !self.routes[r as usize].live() || self.routes[r as usize].deleting() {
            return;
        }
        for _ in 0..3 {
            let purpose = match self.should_connect(r) {
                (true, _) => Purpose::Demand,
                (false, true) => Purpose::Preconnect,
                (false, false) => return,
            };
            if self.create(r, purpose) != Created::Yes {
                return;
            }
        }
    }

    pub(crate) fn block(&mut self, r: u32) {
        self.routes.block(r);
    }

    /// HttpClient's capacity steps, then a `Connect` (§3.3).
    pub(crate) fn create(&mut self, r: u32, purpose: Purpose) -> Created {
        let demand = purpose == Purpose::Demand;
        // 1. Route limit, shrinking idle connections from the back for demand.
        if self.routes[r as usize].allocated >= self.limit(r) {
            if !demand {
                return Created::No;
            }
            while self.routes[r as usize].allocated >= self.limit(r) {
                let mut c = self.routes[r as usize].ready.tail();
                while c != NIL && !self.conns[c as usize].idle() {
                    c = self.conns[c as usize].rlink.prev();
                }
                if c == NIL {
                    break;
                }
                self.close(c, CloseReason::RouteLimit);
            }
            if self.routes[r as usize].allocated >= self.limit(r) {
                return Created::No;
            }
        }
        // 2. Total limit: evict the least recently used idle connection.
        let mut guard = false;
        if self.conns.total >= self.cfg.max_total {
            if demand && self.conns.lru.tail() != NIL {
                let v = self.conns.lru.tail();
                let vr = self.conns[v as usize].route.get();
                self.close(v, CloseReason::Evicted);
                if vr != r {
                    self.check_idle(vr);
                }
            }
            if self.conns.total >= self.cfg.max_total {
                // The guard is for waiting leases only: preconnect and
                // warm-up never go past a limit.
                if self.cfg.starvation_guard && demand && self.routes[r as usize].allocated == 0 {
                    guard = true;
                } else {
                    if demand {
                        self.block(r);
                    }
                    return Created::No;
                }
            }
        }
        // 3. A free slot.
        let c = self.conns.take();
        if c == NIL {
            if demand {
                self.block(r);
            }
            return Created::No;
        }
        // 4. Create.
        let intent = if demand && self.cfg.strict_tags {
            self.connect_intent(r)
        } else {
            None
        };
        let seq = self.next_seq();
        let now = self.now;
        let deadline = match self.cfg.connect_timeout {
            Some(t) => now + t,
            None => Instant::MAX,
        };
        {
            let s = &mut self.conns[c as usize];
            s.state = ConnState::Connecting;
            s.route = I::new(r);
            s.set_delivered(false);
            s.set_draining(false);
            s.set_guard(guard);
            s.set_kept(false);
            s.seq = seq as u32;
            s.expiry = deadline;
            s.capacity = 0;
            s.active = 0;
            s.set_used(false);
            // While connecting, `tag` holds what the connect is for.
            s.set_tag(intent);
            s.waiter = I::NIL;
        }
        self.route_list_push(c, RouteListKind::Connecting, false);
        let rs = &mut self.routes[r as usize];
        rs.allocated += 1;
        rs.connects += 1;
        self.conns.total += 1;
        self.conns.connecting += 1;
        self.touch_route(r);
        self.act_push(Self::conn_entity(c));
        self.rearm_conn(c);
        crate::fmt::debug!("wharf: connect conn {} route {} ({:?})", c, r, purpose);
        self.counters.connects += 1;
        match purpose {
            Purpose::Warm => self.counters.warmups += 1,
            Purpose::Preconnect => self.counters.preconnects += 1,
            Purpose::Demand => {}
        }
        if guard {
            self.counters.guard_connects += 1;
            self.conns.guards += 1;
            return Created::Guard;
        }
        Created::Yes
    }

    /// Capacity a blocked route could use now: an idle connection to evict
    /// (its slot comes back when its `Close` is polled), or a free slot within
    /// the total (or past it, for the starvation guard) (§3.4).
    #[inline]
    fn room(&self) -> bool {
        !self.conns.lru.is_empty()
            || (self.conns.free != NIL
                && (self.conns.total < self.cfg.max_total || self.cfg.starvation_guard))
    }

    /// Strict tags: what a demand connect of `r` is for: the tag of the oldest
    /// queued waiter whose tag no connecting connection of `r` is for, else
    /// the oldest waiter's (§3.3).
    fn connect_intent(&self, r: u32) -> Option<crate::Tag> {
        let s = &self.routes[r as usize];
        let mut w = s.queue.head();
        let oldest = self.waiters.get(w as usize).and_then(|ws| ws.tag());
        while w != NIL {
            let t = self.waiters[w as usize].tag();
            let mut c = s.connecting.head();
            while c != NIL && self.conns[c as usize].tag() != t {
                c = self.conns[c as usize].rlink.next();
            }
            if c == NIL {
                return t;
            }
            w = self.waiters[w as usize].qlink.next();
        }
        oldest
    }

    /// Serves routes blocked on total capacity (§3.4): each route on the
    /// list when it starts is tried once, in order, while there is room.
    /// `pass` (`NIL`: none) is passed over as if tried and blocked again: it
    /// goes to the back of the list (§3.1 step 2: its own turn comes after).
    pub(crate) fn unblock(&mut self, pass: u32) {
        let mut tries = self.routes.blocked.len();
        while tries > 0 && self.room() {
            tries -= 1;
            let b = self.routes.blocked.head();
            self.routes
                .blocked
                .remove::<kind::Blocked, _>(&mut self.routes.slots, b);
            self.routes[b as usize].set_blocked(false);
            // A route with no demand left is only taken off: the room is for
            // routes that wait for it (§3.4).
            if self.wants_capacity(b) {
                if b == pass {
                    self.routes
                        .blocked
                        .push_back::<kind::Blocked, _>(&mut self.routes.slots, b);
                    self.routes[b as usize].set_blocked(true);
                } else {
                    self.try_create(b);
                }
            }
        }
    }

    /// A blocked route that would connect for demand now: live, not being
    /// deleted, queued waiters beyond its connecting capacity, and under its
    /// own route limit (a route its own limit holds back cannot use what an
    /// eviction would free).
    #[inline]
    pub(crate) fn wants_capacity(&self, b: u32) -> bool {
        let s = &self.routes[b as usize];
        s.live()
            && !s.deleting()
            && !self.closed
            && s.allocated < self.limit(b)
            && self.should_connect(b).0
    }

    /// Cross-route fairness (§3.7a): a release left `c` (route `r`) idle while
    /// the total limit binds. It yields to `b` (the caller closes it `Evicted`
    /// and moves `b` to the front of the blocked list) when `b` is the first
    /// blocked route other than `r` that wants capacity, is short and has an
    /// older waiter than every waiter queued on `r`.
    pub(crate) fn yields(&self, c: u32) -> Option<u32> {
        if self.routes.blocked.is_empty() || self.conns.total < self.cfg.max_total {
            return None;
        }
        let r = self.conns[c as usize].route.get();
        let ours = self.oldest_waiter(r);
        let mine = self.routes[r as usize].allocated;
        let mut b = self.routes.blocked.head();
        while b != NIL {
            let s = &self.routes[b as usize];
            // Only toward an equal share: a route with no connection, or at
            // least two fewer than this one (moving one does not invert it).
            let short = s.allocated == 0 || s.allocated + 1 < mine;
            if b != r && short && self.wants_capacity(b) {
                if let Some(theirs) = self.oldest_waiter(b) {
                    if ours.is_none_or(|ours| theirs < ours) {
                        return Some(b);
                    }
                }
            }
            b = s.blink.next();
        }
        None
    }

    /// The sequence number of the oldest waiter of the first route on the
    /// blocked list, other than `except`, that wants capacity.
    pub(crate) fn blocked_oldest(&self, except: u32) -> Option<u64> {
        let mut b = self.routes.blocked.head();
        while b != NIL {
            let s = &self.routes[b as usize];
            if b != except && self.wants_capacity(b) {
                return self.oldest_waiter(b);
            }
            b = s.blink.next();
        }
        None
    }

    /// The sequence number of `r`'s oldest queued waiter.
    #[inline]
    pub(crate) fn oldest_waiter(&self, r: u32) -> Option<u64> {
        let w = self.routes[r as usize].queue.head();
        (w != NIL).then(|| self.waiters[w as usize].seq)
    }

    /// Min-idle warm-up (§3.5).
    pub(crate) fn warm(&mut self, r: u32) {
        let s = &self.routes[r as usize];
        if self.closed || !s.live() || s.deleting() || s.unhealthy() || s.retrying() {
            return;
        }
        let m = self.min_idle(r);
        while self.routes[r as usize].idle + self.routes[r as usize].connecting.len() < m {
            // Never warm past `max_idle`: the idle limit would close what
            // warm-up opens, forever.
            if self
                .cfg
                .max_idle
                .is_some_and(|x| self.conns.idle() + self.conns.connecting >= x)
            {
                return;
            }
            if self.create(r, Purpose::Warm) != Created::Yes {
                return;
            }
        }
    }
}
