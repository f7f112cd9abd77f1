//! `release`: a lease comes back.

use crate::index::Index;
use core::hash::Hash;

use super::fast::Fast;
use super::{Pool, Release};
use crate::action::CloseReason;
use crate::error::ReleaseError;
use crate::handle::Lease;
use crate::slot::RouteListKind;
use crate::time::Instant;

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    /// Gives a lease back (§5). `Reuse` keeps the connection for the next lease
    /// (first to a queued waiter of its route, FIFO); `Discard` closes it once
    /// its other leases end. A lease released twice, or unknown, is
    /// `Err(StaleLease)` and changes nothing.
    // Inlined into the caller where the `alloc` feature says "server" (the
    // warm path then runs without a call or the result through memory:
    // about 20 instructions per call in `scale`); a hint only for firmware,
    // where forcing it cost the firmware example 1.5 KB of flash
    // (docs/PERFORMANCE.md, "The core").
    #[cfg_attr(feature = "alloc", inline(always))]
    #[cfg_attr(not(feature = "alloc"), inline)]
    pub fn release(
        &mut self,
        lease: Lease,
        how: Release,
        now: Instant,
    ) -> Result<(), ReleaseError> {
        if how == Release::REUSE {
            match self.release_fast(&lease, now) {
                Fast::Done => return Ok(()),
                Fast::Arm(c, at, seq) => return self.release_arm(c, at, seq),
                Fast::General => {}
            }
        } else if now > self.now {
            self.now = now;
        }
        self.release_general(lease, how)
    }

    /// `release` from the start when the warm path (`fast.rs`) does not
    /// apply (§5); time moved to `now` already.
    #[inline(never)]
    fn release_general(&mut self, lease: Lease, how: Release) -> Result<(), ReleaseError> {
        self.advance(self.now);
        if lease.pool != self.id {
            return Err(ReleaseError::ForeignLease);
        }
        let c = lease.conn.index;
        if !self.leases.is_out(lease.id, c) || self.conns[c as usize].gen != lease.conn.gen {
            return Err(ReleaseError::StaleLease);
        }
        let r = self.release_slot(lease.id.index, Some(how));
        self.settle(r);
        Ok(())
    }

    /// Frees lease slot `l` and files its connection as `how` says (`None`:
    /// the grant is undone, the connection keeps its tag, `updated` and
    /// expiry, §7 `cancel`); returns the route.
    #[inline]
    pub(crate) fn release_slot(&mut self, l: u32, how: Option<Release>) -> u32 {
        let c = self.leases.put(l);

        let r = self.conns[c as usize].route.get();
        let cs = &mut self.conns[c as usize];
        let before = cs.streams_left();
        cs.active -= 1;
        if cs.list == RouteListKind::Ready {
            // One more free stream, unless `max_leases_per_conn` bounds it.
            self.routes[r as usize].spare += (cs.streams_left() - before) as u64;
        }
        self.routes[r as usize].active -= 1;

        let now = self.now;
        match how {
            None => {}
            Some(Release::Discard) => self.start_draining(c, CloseReason::Discarded),
            Some(Release::Reuse { keep_alive, tag }) => {
                let cs = &mut self.conns[c as usize];
                cs.updated = now;
                cs.set_kept(false);
                if !self.cfg.strict_tags {
                    // Strict tags are fixed at connect (§4).
                    cs.set_tag(tag);
                }
                cs.expiry = match keep_alive {
                    Some(k) => (now + k).min(cs.validity),
                    None => cs.validity,
                };
            }
        }
        let cs = &self.conns[c as usize];
        if cs.draining() {
            if cs.active == 0 {
                self.close(c, cs.reason);
            }
        } else if cs.expiry.reached(now) {
            if cs.active == 0 {
                self.close(c, CloseReason::Expired);
            } else {
                self.start_draining(c, CloseReason::Expired);
            }
        } else if cs.active == 0 && self.routes[r as usize].allocated > self.limit(r) {
            self.close(c, CloseReason::RouteLimit);
        } else if cs.active == 0 && self.over_total {
            // `max_total` was lowered (§7, `set_max_total`).
            self.close(c, CloseReason::TotalLimit);
        } else if let Some(b) = if cs.active == 0 { self.yields(c) } else { None } {
            // An older waiter of a route blocked on the total gets the
            // capacity (§3.7a): the route yielded to goes first on the
            // blocked list, so whoever serves the blocked routes next
            // (`settle(r)` now, or the `Close`'s poll when no slot is free)
            // serves it, and `settle(r)` finds its waiter older than `r`'s.
            self.close(c, CloseReason::Evicted);
            self.routes.block_first(b);
        } else {
            self.place(c);
            self.offer(c);
            self.after_available(c);
            if self.conns[c as usize].state == crate::slot::ConnState::Ready {
                self.rearm_conn(c);
            }
        }
        r
    }
}
