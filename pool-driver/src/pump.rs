//! The action pump: the one place the core's `poll_action` is called.

use core::hash::Hash;

use wharf_core::{Action, ConnectFailure, FailReason, Index, Lease, Release, Validation, WaiterId};

use crate::driver::Driver;
use crate::io::{Checked, Io};
use crate::tickets::{State, NONE};

impl<K: Eq + Hash + Clone, I: Io<K, Ix>, Ix: Index> Driver<'_, K, I, Ix> {
    /// Drains the core's actions (after every input, until `None`), then
    /// applies the timer re-arm rule.
    #[inline(always)]
    pub(crate) fn pump(&mut self) {
        if self.core.has_actions() {
            self.drain();
        }
        self.timer.rearm(self.core.poll_timeout());
    }

    /// Every action the core has, in order.
    #[inline(never)]
    fn drain(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Connect { conn, route } => {
                    let entry = self.conns.get_mut(conn.index());
                    match (entry, self.core.route_key(route)) {
                        (Some(entry), Some(key)) => {
                            entry.start(conn);
                            self.io.connect(conn, key);
                        }
                        // Cannot happen (tables sized as the core, routes
                        // live while they have connections): fail it.
                        _ => {
                            let now = self.core.now();
                            let _ = self.core.connect_failed(conn, ConnectFailure::Local, now);
                        }
                    }
                }
                Action::Close { conn, reason } => {
                    let obj = match self.conns.get_mut(conn.index()) {
                        Some(e) if e.is(conn) => e.forget(),
                        _ => None,
                    };
                    self.io.close(conn, reason, obj);
                }
                Action::Validate { conn } => self.validate(conn),
                Action::Granted { waiter, lease } => self.granted(waiter, lease),
                Action::Failed { waiter, reason } => self.failed(waiter, reason),
                Action::RouteIdle { key, .. } => self.io.route_idle(key),
            }
        }
    }

    fn validate(&mut self, conn: wharf_core::ConnId) {
        let now = self.core.now();
        let obj = match self.conns.get_mut(conn.index()) {
            Some(e) if e.is(conn) => {
                match core::mem::replace(&mut e.hold, crate::conns::Hold::Checking) {
                    crate::conns::Hold::Here(obj) => Some(obj),
                    other => {
                        e.hold = other;
                        None
                    }
                }
            }
            _ => None,
        };
        let Some(obj) = obj else {
            // No object to check (cannot happen): stale.
            let _ = self.core.validated(conn, Validation::Stale, now);
            return;
        };
        match self.io.validate(conn, obj) {
            Checked::Done(obj, result) => {
                if let Some(e) = self.conns.get_mut(conn.index()) {
                    e.hold = crate::conns::Hold::Here(obj);
                }
                // An input in the middle of the drain: its actions join it.
                let _ = self.core.validated(conn, result, now);
            }
            Checked::Pending => {}
        }
    }

    /// The ticket waiting for `waiter`'s answer (the link goes: the core
    /// forgets the waiter once its answer is polled).
    fn ticket_of(&mut self, waiter: WaiterId) -> Option<usize> {
        let t = core::mem::replace(self.by_core.get_mut(waiter.index())?, NONE);
        match self.tickets.get(t as usize) {
            Some(ticket) if matches!(ticket.state, State::Waiting(w) if w == waiter) => {
                Some(t as usize)
            }
            _ => None,
        }
    }

    fn granted(&mut self, waiter: WaiterId, lease: Lease) {
        if self.arriving == Some(lease.conn()) {
            // Granted at its connect: it never sat idle.
            if let Some(e) = self.conns.get_mut(lease.conn().index()) {
                e.pooled = false;
            }
        }
        match self.ticket_of(waiter) {
            Some(t) => self.answer(t, State::Granted(lease)),
            // Nobody waits for it (cannot happen: cancels go through the
            // core first): back as it was, like an abandoned grant.
            None => self.give_back_unused(lease, self.core.now()),
        }
    }

    fn failed(&mut self, waiter: WaiterId, reason: FailReason) {
        let Some(t) = self.ticket_of(waiter) else {
            return;
        };
        let error = match reason {
            FailReason::ConnectFailed(_) => self.connect_error.clone(),
            _ => None,
        };
        let ticket = &mut self.tickets[t];
        self.io.failed(&mut ticket.note, &self.core);
        self.answer(t, State::Failed(reason, error));
    }

    /// Stores ticket `t`'s answer and wakes its future: at once, or, with
    /// wakes deferred, by listing it for [`Driver::take_waker`].
    fn answer(&mut self, t: usize, state: State<I::ConnectError>) {
        let head = self.wakes;
        let defer = self.timer.defer;
        let ticket = &mut self.tickets[t];
        ticket.state = state;
        if !defer {
            if let Some(w) = ticket.waker.take() {
                w.wake();
            }
        } else if ticket.waker.is_some() && !ticket.listed {
            ticket.listed = true;
            ticket.wake_next = head;
            self.wakes = t as u32;
        }
    }

    /// The abandoned-grant rule: a connection granted to a request nobody
    /// picks up goes back to the core with the tag and the keep-alive left of
    /// its last release (its object never left the table).
    pub(crate) fn give_back_unused(&mut self, lease: Lease, now: wharf_core::Instant) {
        let (keep_alive, tag) = match self.conns.get_mut(lease.conn().index()) {
            Some(e) if e.is(lease.conn()) => {
                // It sits in the pool: its next lease is a reuse.
                e.pooled = true;
                e.as_released(now)
            }
            _ => (None, None),
        };
        let _ = self
            .core
            .release(lease, Release::Reuse { keep_alive, tag }, now);
    }
}
