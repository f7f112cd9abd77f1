//! Deadlines: one timer per connection, waiter and route at most, in three
//! indexed heaps keyed by `(deadline, sequence number)`. Keys are kept at or
//! before the real deadline and corrected lazily when they come due, so leases
//! and releases never move heap entries.

use crate::index::Index;
use core::hash::Hash;

use super::Pool;
use crate::action::{CloseReason, ConnectFailure, FailReason};
use crate::slot::{ConnState, WaiterState};
use crate::time::Instant;

#[derive(Clone, Copy)]
enum Owner {
    Conn,
    Waiter,
    Route,
}

fn some(t: Instant) -> Option<Instant> {
    if t == Instant::MAX {
        None
    } else {
        Some(t)
    }
}

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    /// The real next deadline of connection `c` (§2).
    #[inline]
    pub(crate) fn conn_deadline(&self, c: u32) -> Option<Instant> {
        let cs = &self.conns[c as usize];
        match cs.state {
            ConnState::Connecting => some(cs.expiry),
            ConnState::Ready if cs.idle() => {
                let idle = match self.cfg.idle_timeout {
                    Some(t) if !cs.kept() => cs.updated + t,
                    _ => Instant::MAX,
                };
                some(cs.expiry.min(idle))
            }
            ConnState::Ready if !cs.draining() && cs.active > 0 => some(cs.validity),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn rearm_conn(&mut self, c: u32) {
        if let Some(t) = self.conn_deadline(c) {
            let seq = self.conns[c as usize].seq;
            self.conns.timers.arm(c, t, seq, &mut self.due);
        }
    }

    fn waiter_deadline(&self, w: u32) -> Option<Instant> {
        let ws = &self.waiters[w as usize];
        match ws.state {
            WaiterState::Queued | WaiterState::Validating => ws.deadline(),
            _ => None,
        }
    }

    /// Moves time to `now` (never backwards) and fires everything due, in
    /// `(deadline, sequence)` order.
    #[inline]
    pub(crate) fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        // `due` is at or before `next_due()`: past it, nothing is due.
        if self.due <= self.now {
            if self.next_due() <= self.now {
                self.fire_due();
            }
            // Exact again (removals may have left it early); arming lowers
            // it (`Heap::set`) until then.
            self.due = self.next_due();
        }
    }

    #[inline]
    pub(crate) fn next_due(&self) -> Instant {
        self.conns
            .timers
            .top_at()
            .min(self.waiters.timers.top_at())
            .min(self.routes.timers.top_at())
    }

    fn fire_due(&mut self) {
        let now = self.now;
        loop {
            let mut best = None;
            for (owner, e) in [
                (Owner::Conn, self.conns.timers.peek()),
                (Owner::Waiter, self.waiters.timers.peek()),
                (Owner::Route, self.routes.timers.peek()),
            ] {
                if let Some(e) = e {
                    if e.at <= now
                        && best
                            .is_none_or(|(_, b): (Owner, crate::slot::HeapEntry<I>)| e.before(&b))
                    {
                        best = Some((owner, e));
                    }
                }
            }
            let Some((owner, e)) = best else { return };
            let o = e.owner();
            let real = match owner {
                Owner::Conn => self
                    .conn_deadline(o)
                    .map(|t| (t, self.conns[o as usize].seq)),
                Owner::Waiter => self
                    .waiter_deadline(o)
                    .map(|t| (t, self.waiters[o as usize].seq as u32)),
                Owner::Route => {
                    let s = &self.routes[o as usize];
                    if s.live() {
                        s.retrying().then_some((s.retry_until, s.seq))
                    } else {
                        None
                    }
                }
            };
            let heap = match owner {
                Owner::Conn => &mut self.conns.timers,
                Owner::Waiter => &mut self.waiters.timers,
                Owner::Route => &mut self.routes.timers,
            };
            match real {
                None => heap.remove(o),
                // An owner's entry carries its own sequence number: the
                // deadline alone says whether it fired early.
                Some(k) if k.0 > e.at => heap.set(o, k.0, k.1, &mut self.due),
                Some(_) => {
                    heap.remove(o);
                    match owner {
                        Owner::Conn => self.fire_conn(o),
                        Owner::Waiter => self.fire_waiter(o),
                        Owner::Route => self.fire_route(o),
                    }
                }
            }
        }
    }

    fn fire_conn(&mut self, c: u32) {
        let r = self.conns[c as usize].route.get();
        let cs = &self.conns[c as usize];
        match cs.state {
            ConnState::Connecting => self.connect_failure(c, ConnectFailure::Timeout, true),
            ConnState::Ready if cs.idle() => {
                if cs.expiry.reached(self.now) {
                    self.close(c, CloseReason::Expired);
                } else if self.routes[r as usize].idle <= self.min_idle(r)
                    || self.preconnect_would_reopen(c)
                {
                    // The idle timeout never takes a route below `min_idle`
                    // or below what its preconnect ratio provisions (warm-up
                    // or preconnect would only reopen it): kept (§2).
                    self.conns[c as usize].set_kept(true);
                    self.rearm_conn(c);
                } else {
                    self.close(c, CloseReason::IdleTimeout);
                }
                self.settle(r);
            }
            ConnState::Ready => {
                self.start_draining(c, CloseReason::Expired);
                self.settle(r);
            }
            _ => {}
        }
    }

    fn fire_waiter(&mut self, w: u32) {
        let r = self.waiters[w as usize].route.get();
        self.fail(w, FailReason::Timeout);
        self.settle(r);
    }

    fn fire_route(&mut self, r: u32) {
        self.routes[r as usize].set_retrying(false);
        self.settle(r);
    }
}
