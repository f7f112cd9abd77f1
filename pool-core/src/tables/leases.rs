//! The lease table: one slot per lease out, naming its connection.

use super::{deref_slots, walk_free};
use crate::handle::LeaseId;
use crate::index::Index;
use crate::invariant::{ensure, InvariantViolation};
use crate::slot::{LeaseSlot, NIL};
use crate::storage::Slots;

pub(crate) struct Leases<'a, I> {
    pub(crate) slots: Slots<'a, LeaseSlot<I>>,
    /// Head of the free list (`next_free` links), `NIL` when every slot is out.
    pub(crate) free: u32,
    /// Leases out (slots with a connection).
    pub(crate) used: u32,
}

deref_slots!(Leases, LeaseSlot);

impl<'a, I: Index> Leases<'a, I> {
    /// Every slot free; generations go on from what the storage held.
    pub(crate) fn new(mut slots: Slots<'a, LeaseSlot<I>>) -> Self {
        let n = slots.len();
        for (i, l) in slots.iter_mut().enumerate() {
            let gen = l.gen.wrapping_add(1);
            *l = LeaseSlot::EMPTY;
            l.gen = gen;
            l.next_free = I::new(if i + 1 < n { i as u32 + 1 } else { NIL });
        }
        Leases {
            slots,
            free: if n > 0 { 0 } else { NIL },
            used: 0,
        }
    }

    /// A slot is free and fewer than `max` leases are out.
    #[inline(always)]
    pub(crate) fn can_take(&self, max: u32) -> bool {
        self.used < max && self.free != NIL
    }

    /// A lease on connection `c` (the caller checked [`Leases::can_take`]).
    #[inline(always)]
    pub(crate) fn take(&mut self, c: u32) -> LeaseId {
        let l = self.free;
        let ls = &mut self.slots[l as usize];
        self.free = ls.next_free.get();
        ls.conn = I::new(c);
        self.used += 1;
        LeaseId {
            index: l,
            gen: ls.gen,
        }
    }

    /// Frees slot `l` (its handles go stale); returns its connection.
    #[inline(always)]
    pub(crate) fn put(&mut self, l: u32) -> u32 {
        let ls = &mut self.slots[l as usize];
        let c = ls.conn.get();
        ls.conn = I::NIL;
        ls.gen = ls.gen.wrapping_add(1);
        ls.next_free = I::new(self.free);
        self.free = l;
        self.used -= 1;
        c
    }

    /// `id` names a lease out on connection `c` (a free slot's generation
    /// moved on when it was freed, so a stale `id` never matches it).
    #[inline(always)]
    pub(crate) fn is_out(&self, id: LeaseId, c: u32) -> bool {
        match self.slots.get(id.index()) {
            Some(ls) => ls.gen == id.gen && ls.conn.get() == c,
            None => false,
        }
    }

    /// The free list holds exactly the free slots; `used` counts the rest.
    pub(crate) fn check(&self) -> Result<(), InvariantViolation> {
        ensure!(
            walk_free(
                self.free,
                &self.slots,
                |l| l.next_free.get(),
                |l| l.conn == I::NIL
            ),
            0,
            "lease free list broken"
        );
        let out = self.slots.iter().filter(|l| l.conn != I::NIL).count() as u32;
        ensure!(
            out == self.used,
            11,
            "lease slots differ from active leases"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_and_put_keep_the_free_list_and_the_count() {
        let mut s = [LeaseSlot::<u32>::EMPTY; 4];
        let mut t = Leases::new(Slots::Borrowed(&mut s));
        assert!(t.check().is_ok());
        let a = t.take(7);
        let b = t.take(9);
        assert_eq!(t.used, 2);
        assert!(t.is_out(a, 7) && t.is_out(b, 9) && !t.is_out(a, 9));
        assert!(t.check().is_ok());
        assert_eq!(t.put(a.index), 7);
        assert!(!t.is_out(a, 7), "a freed lease's handle is stale");
        assert!(t.check().is_ok());
        assert!(t.can_take(4) && !t.can_take(1));
    }

    #[test]
    fn check_finds_a_broken_free_list_and_a_wrong_count() {
        let mut s = [LeaseSlot::<u16>::EMPTY; 4];
        let mut t = Leases::new(Slots::Borrowed(&mut s));
        t.take(1);
        // A free list that names a slot in use.
        let head = t.free;
        t.slots[head as usize].next_free = 0;
        assert_eq!(t.check().unwrap_err().what, "lease free list broken");
        let mut s = [LeaseSlot::<u32>::EMPTY; 4];
        let mut t = Leases::new(Slots::Borrowed(&mut s));
        t.take(1);
        t.used = 2;
        assert_eq!(
            t.check().unwrap_err().what,
            "lease slots differ from active leases"
        );
    }
}
