//! The connection table: connection slots, the idle LRU (the pool-wide
//! eviction order, §3.3), connection timers, and the pool-wide counts.

use super::{deref_slots, walk, walk_free};
use crate::heap::Heap;
use crate::index::Index;
use crate::invariant::{ensure, InvariantViolation};
use crate::list::{kind, List};
use crate::slot::{ConnSlot, ConnState, RouteListKind, NIL};
use crate::storage::Slots;

pub(crate) struct Conns<'a, I> {
    pub(crate) slots: Slots<'a, ConnSlot<I>>,
    /// Head of the free list (`rlink.next` links of free slots).
    pub(crate) free: u32,
    /// Idle connections, front = most recently idle (`glink` links).
    pub(crate) lru: List<I>,
    /// Connect timeouts, idle and keep-alive expiry, lifetimes.
    pub(crate) timers: Heap<'a, I>,
    /// Open + connecting + validating connections.
    pub(crate) total: u32,
    pub(crate) connecting: u32,
    /// Closed, their `Close` not polled yet (their slots are still held).
    pub(crate) closing: u32,
    /// Starvation-guard connections among `total`.
    pub(crate) guards: u32,
}

deref_slots!(Conns, ConnSlot);

impl<'a, I: Index> Conns<'a, I> {
    /// Every slot free; generations go on from what the storage held.
    pub(crate) fn new(mut slots: Slots<'a, ConnSlot<I>>, timers: Heap<'a, I>) -> Self {
        let n = slots.len();
        for (i, c) in slots.iter_mut().enumerate() {
            let gen = c.gen.wrapping_add(1);
            *c = ConnSlot::EMPTY;
            c.gen = gen;
            c.rlink.set_next(if i + 1 < n { i as u32 + 1 } else { NIL });
        }
        Conns {
            slots,
            free: if n > 0 { 0 } else { NIL },
            lru: List::EMPTY,
            timers,
            total: 0,
            connecting: 0,
            closing: 0,
            guards: 0,
        }
    }

    /// Idle connections: the LRU's length (kept by the list, not counted
    /// apart).
    #[inline(always)]
    pub(crate) fn idle(&self) -> u32 {
        self.lru.len()
    }

    /// Takes a free slot (`NIL` if none: every slot is held, some by
    /// unpolled `Close` actions); the caller makes it a connection.
    #[inline]
    pub(crate) fn take(&mut self) -> u32 {
        let c = self.free;
        if c != NIL {
            self.free = self.slots[c as usize].rlink.next();
        }
        c
    }

    /// Frees slot `c` (its handles go stale), with its timer.
    pub(crate) fn put(&mut self, c: u32) {
        self.timers.remove(c);
        let cs = &mut self.slots[c as usize];
        cs.gen = cs.gen.wrapping_add(1);
        cs.state = ConnState::Free;
        cs.list = RouteListKind::None;
        cs.waiter = I::NIL;
        cs.rlink.set_next(self.free);
        self.free = c;
    }

    /// `c` went idle: the front of the LRU.
    #[inline(always)]
    pub(crate) fn lru_push(&mut self, c: u32) {
        // One slice for the whole move (`Slots` derefs through a match).
        let s = &mut *self.slots;
        self.lru.push_front::<kind::Lru, _>(s, c);
        s[c as usize].set_in_lru(true);
    }

    /// Idle `c` (on the LRU) is leased: off the LRU.
    #[inline(always)]
    pub(crate) fn lru_take(&mut self, c: u32) {
        let s = &mut *self.slots;
        self.lru.remove::<kind::Lru, _>(s, c);
        s[c as usize].set_in_lru(false);
    }

    /// `c` is no longer idle; returns whether it was.
    #[inline(always)]
    pub(crate) fn lru_remove(&mut self, c: u32) -> bool {
        if !self.slots[c as usize].in_lru() {
            return false;
        }
        self.lru_take(c);
        true
    }

    /// The free list holds exactly the free slots; every count matches the
    /// slots; the LRU holds exactly the idle connections; the timer heap is
    /// whole.
    pub(crate) fn check(&self) -> Result<(), InvariantViolation> {
        let s = &self.slots;
        ensure!(
            walk_free(
                self.free,
                s,
                |c| c.rlink.next(),
                |c| c.state == ConnState::Free
            ),
            0,
            "connection free list broken"
        );
        let count = |f: &dyn Fn(&ConnSlot<I>) -> bool| s.iter().filter(|c| f(c)).count() as u32;
        ensure!(
            count(&|c| c.allocated()) == self.total,
            11,
            "total count differs from connections"
        );
        ensure!(
            count(&|c| c.state == ConnState::Connecting) == self.connecting,
            11,
            "connecting count differs"
        );
        ensure!(
            count(&|c| c.state == ConnState::Closing) == self.closing,
            11,
            "closing count differs"
        );
        ensure!(
            count(&|c| c.allocated() && c.guard()) == self.guards,
            11,
            "guard count differs"
        );
        ensure!(
            s.iter()
                .all(|c| c.state == ConnState::Free || c.in_lru() == c.idle()),
            8,
            "idle LRU membership differs from idleness"
        );
        ensure!(
            count(&|c| c.state != ConnState::Free && c.in_lru()) == self.idle(),
            11,
            "idle count differs"
        );
        ensure!(
            walk(&self.lru, s, |c| c.glink, |c| s[c as usize].in_lru()),
            8,
            "idle LRU broken"
        );
        ensure!(self.timers.check(), 0, "connection timer heap broken");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::HeapEntry;

    #[test]
    fn the_lru_and_the_free_list_are_checked() {
        lru_and_free_list_checked::<u32>();
        lru_and_free_list_checked::<u16>();
    }

    fn lru_and_free_list_checked<I: Index>() {
        let mut s = [ConnSlot::<I>::EMPTY; 4];
        let mut e = [HeapEntry::EMPTY; 4];
        let mut p = [I::ZERO; 4];
        let heap = Heap::new(Slots::Borrowed(&mut e), Slots::Borrowed(&mut p));
        let mut t = Conns::new(Slots::Borrowed(&mut s), heap);
        assert!(t.check().is_ok());
        let c = t.take();
        assert_ne!(c, NIL);
        // A ready idle connection, on the LRU.
        let cs = &mut t.slots[c as usize];
        cs.state = ConnState::Ready;
        cs.capacity = 1;
        cs.route = I::ZERO;
        t.total = 1;
        t.lru_push(c);
        assert!(t.check().is_ok());
        // Leased without leaving the LRU: the membership check catches it.
        t.slots[c as usize].active = 1;
        assert_eq!(
            t.check().unwrap_err().what,
            "idle LRU membership differs from idleness"
        );
        t.slots[c as usize].active = 0;
        t.lru_take(c);
        assert_eq!(
            t.check().unwrap_err().what,
            "idle LRU membership differs from idleness"
        );
        t.lru_push(c);
        // A free list that loops back to a slot in use.
        let f = t.free;
        t.slots[f as usize].rlink.set_next(c);
        assert_eq!(t.check().unwrap_err().what, "connection free list broken");
    }
}
