//! Waiters: per-route FIFO queues, validations, grants and failures.

use crate::index::Index;
use core::hash::Hash;

use super::Pool;
use crate::action::FailReason;
use crate::handle::Tag;
use crate::list::kind;
use crate::slot::{ConnState, RouteListKind, WaiterState, NIL};
use crate::time::Instant;

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    #[inline]
    pub(crate) fn can_queue(&self) -> bool {
        self.waiters.can_queue(self.cfg.max_pending)
    }

    /// A new waiter on route `r` (the caller checked `can_queue`).
    pub(crate) fn new_waiter(
        &mut self,
        r: u32,
        tag: Option<Tag>,
        deadline: Option<Instant>,
        state: WaiterState,
    ) -> u32 {
        let w = self.waiters.take();
        let seq = self.next_seq();
        let ws = &mut self.waiters[w as usize];
        ws.state = state;
        ws.route = I::new(r);
        ws.set_tag(tag);
        ws.deadline = deadline.unwrap_or(Instant::MAX);
        ws.seq = seq;
        ws.conn = I::NIL;
        ws.lease.index = NIL;
        ws.qlink = crate::list::Link::NONE;
        self.touch_route(r);
        if state == WaiterState::Queued {
            self.routes[r as usize]
                .queue
                .push_back::<kind::Queue, _>(&mut self.waiters.slots, w);
            self.counters.queued += 1;
        } else {
            self.routes[r as usize].validating += 1;
        }
        if let Some(d) = deadline {
            self.waiters.timers.arm(w, d, seq as u32, &mut self.due);
        }
        w
    }

    pub(crate) fn free_waiter_slot(&mut self, w: u32) {
        self.waiters.put(w);
    }

    /// Takes waiter `w` out of its queue or validation; it stops being pending.
    pub(crate) fn unwait(&mut self, w: u32) {
        let ws = self.waiters[w as usize];
        let r = ws.route.get() as usize;
        match ws.state {
            WaiterState::Queued => {
                self.routes[r]
                    .queue
                    .remove::<kind::Queue, _>(&mut self.waiters.slots, w);
            }
            WaiterState::Validating => {
                self.routes[r].validating -= 1;
                if ws.conn != I::NIL {
                    self.conns[ws.conn.get() as usize].waiter = I::NIL;
                }
            }
            _ => return,
        }
        self.waiters[w as usize].conn = I::NIL;
        self.waiters.pending -= 1;
        self.waiters.timers.remove(w);
    }

    /// Grants available connection `c` to waiter `w` (§3.8).
    pub(crate) fn grant(&mut self, c: u32, w: u32) {
        if !self.can_lease() {
            self.fail(w, FailReason::Overflow);
            return;
        }
        self.unwait(w);
        let lease = self.attach(c);
        let ws = &mut self.waiters[w as usize];
        ws.state = WaiterState::Granted;
        ws.lease = lease.id;
        self.act_push(Self::waiter_entity(w));
    }

    /// The lease a `Granted` waiter holds (rebuilt from its lease slot: the
    /// waiter keeps only the lease's index and generation).
    #[inline]
    pub(crate) fn granted_lease(&self, ws: &crate::slot::WaiterSlot<I>) -> Option<crate::Lease> {
        let l = self.leases.get(ws.lease.index())?;
        if ws.state != WaiterState::Granted || l.gen != ws.lease.gen || l.conn == I::NIL {
            return None;
        }
        Some(crate::Lease {
            id: ws.lease,
            conn: self.conn_handle(l.conn.get()),
            pool: self.id,
        })
    }

    /// Answers waiter `w` with a failure.
    pub(crate) fn fail(&mut self, w: u32, reason: FailReason) {
        self.unwait(w);
        let ws = &mut self.waiters[w as usize];
        ws.state = WaiterState::Failed;
        ws.reason = reason;
        crate::fmt::debug!("wharf: waiter {} failed ({:?})", w, reason);
        match reason {
            FailReason::Timeout => self.counters.timeouts += 1,
            FailReason::Overflow => self.counters.overflows += 1,
            _ => {}
        }
        self.act_push(Self::waiter_entity(w));
    }

    /// Fails every queued waiter of `r`, FIFO.
    pub(crate) fn fail_queue(&mut self, r: u32, reason: FailReason) {
        while let Some(w) = Some(self.routes[r as usize].queue.head()).filter(|&w| w != NIL) {
            self.fail(w, reason);
        }
    }

    /// `c` (idle) becomes `Validating` for waiter `w`.
    pub(crate) fn start_validation(&mut self, c: u32, w: u32) {
        self.lru_remove(c);
        self.route_list_remove(c);
        self.route_list_push(c, RouteListKind::Busy, false);
        let cs = &mut self.conns[c as usize];
        cs.state = ConnState::Validating;
        cs.set_delivered(false);
        cs.waiter = I::new(w);
        self.waiters[w as usize].conn = I::new(c);
        self.counters.validations += 1;
        self.act_push(Self::conn_entity(c));
    }

    /// A validating waiter lost its connection: search again (§7.1).
    pub(crate) fn retry(&mut self, w: u32) {
        if self.waiters[w as usize].state != WaiterState::Validating {
            return;
        }
        self.waiters[w as usize].conn = I::NIL;
        let r = self.waiters[w as usize].route.get();
        let c = self.find_conn(r, self.waiters[w as usize].tag());
        if c != NIL && self.needs_validation(c) {
            self.start_validation(c, w);
        } else if c != NIL {
            self.grant(c, w);
        } else {
            self.routes[r as usize].validating -= 1;
            self.waiters[w as usize].state = WaiterState::Queued;
            let seq = self.waiters[w as usize].seq;
            let mut at = self.routes[r as usize].queue.head();
            while at != NIL && self.waiters[at as usize].seq < seq {
                at = self.waiters[at as usize].qlink.next();
            }
            self.routes[r as usize]
                .queue
                .insert_before::<kind::Queue, _>(&mut self.waiters.slots, at, w);
        }
    }
}
