//! `check_invariants`: recomputes every count from the slots and checks the
//! state-checkable invariants of `pool-semantics.md` (numbered as there).
//! O(slots); for tests, fuzzing and debugging, not the hot path.

use crate::index::Index;
use core::hash::Hash;

use crate::list::List;
use crate::pool::Pool;
use crate::slot::{ConnState, RouteListKind, WaiterState};
use crate::tables::walk;
use crate::time::Instant;

/// Which invariant broke, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InvariantViolation {
    /// The invariant's number in `pool-semantics.md` (1..=16); 0 for the
    /// core's own bookkeeping (lists, heaps, handles).
    pub invariant: u8,
    /// What was found.
    pub what: &'static str,
}

impl core::fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "invariant {} violated: {}", self.invariant, self.what)
    }
}

macro_rules! ensure {
    ($cond:expr, $n:expr, $what:expr) => {
        if !$cond {
            return Err($crate::invariant::InvariantViolation {
                invariant: $n,
                what: $what,
            });
        }
    };
}
pub(crate) use ensure;

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    /// Verifies every state-checkable invariant; returns the first that broke.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        // Each table's own bookkeeping: free lists, lists, counts, heaps.
        self.conns.check()?;
        self.routes.check()?;
        self.waiters.check()?;
        self.leases.check()?;
        ensure!(
            self.due <= self.next_due(),
            0,
            "a timer is armed before the pool's due bound"
        );
        ensure!(
            self.warm == (self.plain_fast() && !self.closed && !self.over_total),
            0,
            "warm-path flag out of date"
        );
        // What ties them together and the rules (numbered as in
        // `pool-semantics.md`).
        let now = self.now;
        let mut active = 0u32;
        for c in self.conns.iter() {
            if matches!(c.state, ConnState::Free | ConnState::Closing) {
                continue;
            }
            let r = &self.routes[c.route.get() as usize];
            ensure!(r.live(), 10, "connection on a dead route");
            if c.state == ConnState::Connecting {
                ensure!(
                    c.list == RouteListKind::Connecting,
                    0,
                    "connecting not on connecting list"
                );
            }
            if c.state == ConnState::Validating {
                ensure!(
                    c.list == RouteListKind::Busy && c.active == 0,
                    0,
                    "validating misfiled"
                );
            }
            if c.state == ConnState::Ready {
                // `active` may exceed a capacity the peer lowered
                // (`set_capacity`): such a connection is not available, which
                // the list checks below verify.
                ensure!(c.capacity >= 1, 5, "zero stream capacity");
                ensure!(
                    c.remaining != 0 || c.draining(),
                    5,
                    "no leases left but not draining"
                );
                ensure!(
                    !(c.draining() && c.active == 0),
                    6,
                    "draining connection with no lease left open"
                );
                ensure!(c.expiry <= c.validity, 7, "expiry after validity");
                if c.available() {
                    ensure!(
                        c.list == RouteListKind::Ready,
                        4,
                        "available connection not on ready list"
                    );
                } else {
                    ensure!(
                        c.list == RouteListKind::Busy,
                        4,
                        "unavailable connection on ready list"
                    );
                }
                if c.idle() {
                    ensure!(!c.expiry.reached(now), 7, "expired connection kept idle");
                    if let Some(t) = self.cfg.idle_timeout {
                        // Or kept for `min_idle` (§2).
                        ensure!(
                            !(c.updated + t).reached(now) || c.kept(),
                            7,
                            "idle-timed-out connection kept"
                        );
                    }
                }
                active += c.active;
            }
        }
        ensure!(active == self.leases.used, 11, "lease count differs");
        ensure!(
            self.conns.total - self.conns.guards <= self.cfg.max_total || self.over_total,
            1,
            "connections exceed max_total"
        );
        if let Some(m) = self.cfg.max_idle {
            ensure!(
                self.conns.idle() <= m,
                13,
                "idle connections exceed max_idle"
            );
        }

        // Leases.
        for l in self.leases.iter() {
            if l.conn != I::NIL {
                let c = &self.conns[l.conn.get() as usize];
                ensure!(
                    c.state == ConnState::Ready && c.active > 0,
                    11,
                    "lease on a connection without it"
                );
            }
        }
        ensure!(
            self.leases.used <= self.cfg.max_leases,
            5,
            "leases exceed max_leases"
        );

        // Waiters.
        for (i, w) in self.waiters.iter().enumerate() {
            match w.state {
                WaiterState::Validating if w.conn != I::NIL => {
                    let c = &self.conns[w.conn.get() as usize];
                    ensure!(
                        c.state == ConnState::Validating && c.waiter.get() == i as u32,
                        9,
                        "validating waiter and connection disagree"
                    );
                }
                WaiterState::Granted => {
                    ensure!(
                        self.granted_lease(w).is_some(),
                        9,
                        "granted waiter without lease"
                    )
                }
                _ => {}
            }
            if let (WaiterState::Queued | WaiterState::Validating, Some(d)) =
                (w.state, w.deadline())
            {
                ensure!(d > now, 9, "waiter past its deadline still waiting");
            }
        }
        ensure!(
            self.waiters.pending <= self.cfg.max_pending,
            12,
            "pending exceeds max_pending"
        );

        // Routes.

        for (ri, r) in self.routes.iter().enumerate() {
            if !r.live() {
                continue;
            }
            let ri = ri as u32;
            let (mut alloc, mut ridle, mut ractive, mut spare) = (0u32, 0u32, 0u32, 0u64);
            for c in self.conns.iter() {
                if c.route.get() == ri && c.allocated() {
                    alloc += 1;
                    ridle += c.in_lru() as u32;
                    if c.state == ConnState::Ready {
                        ractive += c.active;
                        spare += c.spare() as u64;
                    }
                }
            }
            ensure!(alloc == r.allocated, 11, "route connection count differs");
            ensure!(ridle == r.idle, 11, "route idle count differs");
            ensure!(ractive == r.active, 11, "route lease count differs");
            ensure!(spare == r.spare, 11, "route spare capacity differs");
            let limit = self.limit(ri);
            let guard_here = self
                .conns
                .iter()
                .any(|c| c.route.get() == ri && c.allocated() && c.guard());
            ensure!(
                alloc <= limit || r.over_limit() || guard_here,
                2,
                "route exceeds its limit"
            );
            if let Some(m) = self.cfg.max_idle_per_route {
                ensure!(ridle <= m, 13, "route idle exceeds max_idle_per_route");
            }
            let conns = &self.conns;
            let on = |list: &List<I>, kind: RouteListKind| {
                walk(
                    list,
                    conns,
                    |c| c.rlink,
                    |c| {
                        let c = &conns[c as usize];
                        c.route.get() == ri && c.list == kind
                    },
                )
            };
            ensure!(
                on(&r.connecting, RouteListKind::Connecting),
                0,
                "connecting list broken"
            );
            ensure!(on(&r.ready, RouteListKind::Ready), 0, "ready list broken");
            let mut last_seq = 0u64;
            let mut fifo = true;
            let queue_ok = walk(
                &r.queue,
                &self.waiters,
                |w| w.qlink,
                |w| {
                    let w = &self.waiters[w as usize];
                    fifo &= w.seq > last_seq;
                    last_seq = w.seq;
                    w.state == WaiterState::Queued && w.route.get() == ri
                },
            );
            ensure!(queue_ok, 0, "waiter queue broken");
            ensure!(fifo, 3, "waiter queue not in arrival order");
            let validating = self
                .waiters
                .iter()
                .filter(|w| w.route.get() == ri && w.state == WaiterState::Validating)
                .count() as u32;
            ensure!(
                validating == r.validating,
                11,
                "route validating count differs"
            );
            ensure!(
                r.overridden() != r.overrides.is_empty(),
                0,
                "route override flag differs from its overrides"
            );
            let empty = alloc == 0 && r.queue.is_empty() && r.validating == 0;
            ensure!(
                !empty || r.idle_mark(),
                15,
                "empty route without an idle notice"
            );
            ensure!(empty || !r.idle_mark(), 15, "idle notice on a route in use");
            if r.deleting() {
                ensure!(r.idle == 0, 14, "idle connection kept on a deleted route");
            }
        }
        // Every timer is due no later than its owner's real deadline.
        for (i, _) in self.conns.iter().enumerate() {
            if let Some(t) = self.conn_deadline(i as u32) {
                let armed = self.conns.timers.key_of(i as u32);
                ensure!(
                    armed.is_some_and(|a| a <= t),
                    0,
                    "connection deadline not armed"
                );
            }
        }
        let _ = Instant::ZERO;
        Ok(())
    }
}
