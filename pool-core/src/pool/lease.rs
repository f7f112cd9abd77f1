//! `lease` and `cancel`.

use crate::index::Index;
use core::hash::Hash;

use super::{Cancelled, LeaseOutcome, Pool};
use crate::config::CancelPolicy;
use crate::error::{CancelError, LeaseError};
use crate::handle::{Tag, WaiterId};
use crate::slot::{WaiterState, NIL};
use crate::time::Instant;
use crate::CloseReason;

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    /// Asks for a lease on route `key` (created on first use), optionally for
    /// connections tagged `tag`, waiting at most until `deadline` (§4).
    ///
    /// `Granted` when a matching idle connection is ready (no validation due);
    /// `Queued` otherwise, answered later by a `Granted`/`Failed` action.
    /// Errors are synchronous: `Overflow` is never queued. A `deadline` at or
    /// before `now` means "do not wait": granted if a connection is ready now,
    /// else `Err(Timeout)`, and nothing changes. `Some(Instant::MAX)` is the
    /// same as `None` (no deadline).
    // Inlined into the caller where the `alloc` feature says "server" (the
    // warm path then runs without a call or the result through memory:
    // about 20 instructions per call in `scale`); a hint only for firmware,
    // where forcing it cost the firmware example 1.5 KB of flash
    // (docs/PERFORMANCE.md, "The core").
    #[cfg_attr(feature = "alloc", inline(always))]
    #[cfg_attr(not(feature = "alloc"), inline)]
    pub fn lease(
        &mut self,
        key: &K,
        tag: Option<Tag>,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Result<LeaseOutcome, LeaseError> {
        if tag.is_none() {
            if let Some(lease) = self.lease_fast(key, now) {
                return Ok(LeaseOutcome::Granted(lease));
            }
        } else if now > self.now {
            self.now = now;
        }
        self.lease_general(key, tag, deadline)
    }

    /// `lease` from the start when the warm path (`fast.rs`) does not apply
    /// (which moved time to `now` already).
    #[inline(never)]
    fn lease_general(
        &mut self,
        key: &K,
        tag: Option<Tag>,
        deadline: Option<Instant>,
    ) -> Result<LeaseOutcome, LeaseError> {
        self.advance(self.now);
        if self.closed {
            return Err(LeaseError::Closed);
        }
        // `Instant::MAX` means never (§2).
        let deadline = deadline.filter(|&d| d != Instant::MAX);
        let r = self.find_route(key);
        self.lease_slow(key, r, tag, deadline)
    }

    /// Every lease the warm path does not take (§4).
    #[inline]
    fn lease_slow(
        &mut self,
        key: &K,
        r: Option<u32>,
        tag: Option<Tag>,
        deadline: Option<Instant>,
    ) -> Result<LeaseOutcome, LeaseError> {
        // A deadline already reached means "do not wait": granted now if a
        // connection is ready, else `Timeout`, changing nothing (§4).
        let no_wait = deadline.is_some_and(|d| d <= self.now);
        let r = match r {
            Some(r) => r,
            None if no_wait => return Err(LeaseError::Timeout),
            None => {
                if !self.can_queue() {
                    self.counters.overflows += 1;
                    return Err(LeaseError::Overflow);
                }
                self.create_route(key).ok_or(LeaseError::RouteTableFull)?
            }
        };
        if self.routes[r as usize].deleting() {
            return Err(LeaseError::Draining);
        }
        let c = self.find_conn(r, tag);
        let outcome = if (c == NIL || self.needs_validation(c)) && no_wait {
            return Err(LeaseError::Timeout);
        } else if c != NIL && self.needs_validation(c) {
            if !self.can_queue() {
                self.counters.overflows += 1;
                return Err(LeaseError::Overflow);
            }
            let w = self.new_waiter(r, tag, deadline, WaiterState::Validating);
            self.start_validation(c, w);
            LeaseOutcome::Queued(self.waiter_handle(w))
        } else if c != NIL {
            if !self.can_lease() {
                self.counters.overflows += 1;
                return Err(LeaseError::Overflow);
            }
            LeaseOutcome::Granted(self.attach(c))
        } else {
            if !self.can_queue() {
                self.counters.overflows += 1;
                return Err(LeaseError::Overflow);
            }
            let w = self.new_waiter(r, tag, deadline, WaiterState::Queued);
            LeaseOutcome::Queued(self.waiter_handle(w))
        };
        self.settle(r);
        Ok(outcome)
    }

    /// Withdraws a lease request (§7) and says what was withdrawn: the waiter
    /// itself while it waited, or its answer not yet polled (a grant, whose
    /// lease goes back to the pool, or a failure). Once its answer was polled
    /// the waiter is gone: `Err(StaleWaiter)` (if that answer was `Granted`,
    /// release the lease).
    pub fn cancel(
        &mut self,
        waiter: WaiterId,
        policy: CancelPolicy,
        now: Instant,
    ) -> Result<Cancelled, CancelError> {
        self.advance(now);
        let w = waiter.index;
        match self.waiters.get(waiter.index()) {
            Some(ws) if ws.gen == waiter.gen && ws.state != WaiterState::Free => {}
            _ => return Err(CancelError::StaleWaiter),
        }
        let ws = self.waiters[w as usize];
        let r = ws.route.get();
        self.counters.cancels += 1;
        let withdrawn = match (ws.state, self.granted_lease(&ws)) {
            (WaiterState::Queued | WaiterState::Validating, _) => {
                self.unwait(w);
                self.free_waiter_slot(w);
                if ws.state == WaiterState::Queued && policy == CancelPolicy::CloseExcess {
                    self.close_excess(r);
                }
                Cancelled::Waiting
            }
            (WaiterState::Granted, Some(lease)) => {
                self.act_remove(Self::waiter_entity(w));
                self.free_waiter_slot(w);
                // Undone: the connection is as it was before the grant, so
                // its idle timeout may have passed meanwhile: the timers due
                // now run again (§7).
                self.release_slot(lease.id.index, None);
                self.advance(self.now);
                Cancelled::Grant(lease)
            }
            _ => {
                self.act_remove(Self::waiter_entity(w));
                self.free_waiter_slot(w);
                Cancelled::Failure(ws.reason)
            }
        };
        self.settle(r);
        Ok(withdrawn)
    }

    /// Envoy's `CloseExcess`: close the oldest connecting connection if the
    /// remaining demand no longer needs it.
    fn close_excess(&mut self, r: u32) {
        let s = &self.routes[r as usize];
        let c = s.connecting.head();
        if c == NIL {
            return;
        }
        let per = self.cfg.connecting_capacity as u64;
        let cc = s.connecting.len() as u64 * per;
        let active = s.active as u64;
        if (s.queue.len() as u64 + active) * self.ratio(r) as u64 <= (cc - per + active) * 1000 {
            self.close(c, CloseReason::Excess);
        }
    }
}
