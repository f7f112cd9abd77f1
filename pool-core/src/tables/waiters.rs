//! The waiter table: requests waiting for a connection, their deadlines.

use super::{deref_slots, walk_free};
use crate::heap::Heap;
use crate::index::Index;
use crate::invariant::{ensure, InvariantViolation};
use crate::slot::{WaiterSlot, WaiterState, NIL};
use crate::storage::Slots;

pub(crate) struct Waiters<'a, I> {
    pub(crate) slots: Slots<'a, WaiterSlot<I>>,
    /// Head of the free list (`qlink.next` links of free slots).
    pub(crate) free: u32,
    /// Deadlines of waiting requests.
    pub(crate) timers: Heap<'a, I>,
    /// Queued + validating waiters.
    pub(crate) pending: u32,
}

deref_slots!(Waiters, WaiterSlot);

impl<'a, I: Index> Waiters<'a, I> {
    /// Every slot free; generations go on from what the storage held.
    pub(crate) fn new(mut slots: Slots<'a, WaiterSlot<I>>, timers: Heap<'a, I>) -> Self {
        let n = slots.len();
        for (i, w) in slots.iter_mut().enumerate() {
            let gen = w.gen.wrapping_add(1);
            *w = WaiterSlot::EMPTY;
            w.gen = gen;
            w.qlink.set_next(if i + 1 < n { i as u32 + 1 } else { NIL });
        }
        Waiters {
            slots,
            free: if n > 0 { 0 } else { NIL },
            timers,
            pending: 0,
        }
    }

    /// A slot is free and fewer than `max` requests wait.
    #[inline]
    pub(crate) fn can_queue(&self, max: u32) -> bool {
        self.pending < max && self.free != NIL
    }

    /// Takes a free slot for a new waiting request (the caller checked
    /// [`Waiters::can_queue`] and fills it in).
    #[inline]
    pub(crate) fn take(&mut self) -> u32 {
        let w = self.free;
        self.free = self.slots[w as usize].qlink.next();
        self.pending += 1;
        w
    }

    /// Frees slot `w` (its handles go stale), with its timer.
    pub(crate) fn put(&mut self, w: u32) {
        self.timers.remove(w);
        let ws = &mut self.slots[w as usize];
        ws.gen = ws.gen.wrapping_add(1);
        ws.state = WaiterState::Free;
        ws.lease.index = NIL;
        ws.conn = I::NIL;
        ws.qlink.set_next(self.free);
        self.free = w;
    }

    /// The free list holds exactly the free slots, `pending` counts the
    /// waiting ones, the timer heap is whole.
    pub(crate) fn check(&self) -> Result<(), InvariantViolation> {
        ensure!(
            walk_free(
                self.free,
                &self.slots,
                |w| w.qlink.next(),
                |w| w.state == WaiterState::Free
            ),
            0,
            "waiter free list broken"
        );
        let waiting = self
            .slots
            .iter()
            .filter(|w| matches!(w.state, WaiterState::Queued | WaiterState::Validating))
            .count() as u32;
        ensure!(waiting == self.pending, 11, "pending count differs");
        ensure!(self.timers.check(), 0, "waiter timer heap broken");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::HeapEntry;

    #[test]
    fn check_finds_a_broken_free_list_and_a_wrong_count() {
        let mut s = [WaiterSlot::<u16>::EMPTY; 4];
        let mut e = [HeapEntry::<u16>::EMPTY; 4];
        let mut p = [0u16; 4];
        let heap = Heap::new(Slots::Borrowed(&mut e), Slots::Borrowed(&mut p));
        let mut t = Waiters::new(Slots::Borrowed(&mut s), heap);
        assert!(t.check().is_ok());
        let w = t.take();
        t.slots[w as usize].state = WaiterState::Queued;
        assert!(t.check().is_ok());
        t.pending = 2;
        assert_eq!(t.check().unwrap_err().what, "pending count differs");
        t.pending = 1;
        // The free list names the queued waiter.
        t.slots[t.free as usize].qlink.set_next(w);
        assert_eq!(t.check().unwrap_err().what, "waiter free list broken");
    }
}
