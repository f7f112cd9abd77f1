//! Indexed binary min-heap of timers, one entry per owner slot at most.
//!
//! Keys are `(deadline, sequence number)`, so timers due at the same instant
//! fire in creation order. `pos[owner]` gives an owner's place in the heap, so
//! re-keying and removal are O(log n). The pool keeps every entry's key at or
//! before its owner's real next deadline and re-keys lazily when one fires
//! early; on the hot path nothing is moved.

use crate::index::Index;
use crate::slot::{HeapEntry, NIL};
use crate::storage::Slots;
use crate::time::Instant;

pub(crate) struct Heap<'a, I> {
    entries: Slots<'a, HeapEntry<I>>,
    pos: Slots<'a, I>,
    len: usize,
}

impl<'a, I: Index> Heap<'a, I> {
    pub(crate) fn new(entries: Slots<'a, HeapEntry<I>>, mut pos: Slots<'a, I>) -> Self {
        pos.iter_mut().for_each(|p| *p = I::NIL);
        Heap {
            entries,
            pos,
            len: 0,
        }
    }

    /// The earliest deadline, `Instant::MAX` when empty (the warm path
    /// reads the pool's bound instead, `Pool::due`).
    #[inline]
    pub(crate) fn top_at(&self) -> Instant {
        match self.len {
            0 => Instant::MAX,
            _ => self.entries.first().map_or(Instant::MAX, |e| e.at),
        }
    }

    /// Inserts or re-keys `owner`. A deadline of `Instant::MAX` means never:
    /// the owner gets no entry (SEMANTICS §2). `due` is the pool's lower
    /// bound of the earliest deadline over all its heaps (`Pool::due`): it
    /// is lowered to `at`, so no entry is ever earlier than it.
    #[inline(never)]
    pub(crate) fn set(&mut self, owner: u32, at: Instant, seq: u32, due: &mut Instant) {
        if at == Instant::MAX {
            self.remove(owner);
            return;
        }
        *due = (*due).min(at);
        self.set_inner(owner, at, seq);
    }

    /// Removes `owner`'s entry if it has one.
    pub(crate) fn remove(&mut self, owner: u32) {
        self.remove_inner(owner);
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<HeapEntry<I>> {
        if self.len == 0 {
            None
        } else {
            Some(self.entries[0])
        }
    }

    /// The owner's armed deadline, if it has an entry.
    #[inline]
    pub(crate) fn key_of(&self, owner: u32) -> Option<Instant> {
        let p = self.pos[owner as usize].get();
        if p == NIL {
            None
        } else {
            Some(self.entries[p as usize].at)
        }
    }

    /// Makes sure `owner` fires no later than `(at, seq)`; `Instant::MAX`
    /// (never) arms nothing. An owner's entries always carry the owner's own
    /// sequence number, so comparing deadlines is enough.
    /// `due` as in [`Heap::set`].
    #[inline(always)]
    pub(crate) fn arm(&mut self, owner: u32, at: Instant, seq: u32, due: &mut Instant) {
        let p = self.pos[owner as usize].get();
        if (p != NIL && self.entries[p as usize].at <= at) || at == Instant::MAX {
            return;
        }
        self.set(owner, at, seq, due);
    }

    /// Whether [`Heap::arm`] would move anything (then [`Heap::set`] does
    /// what it would).
    #[inline(always)]
    pub(crate) fn arm_moves(&self, owner: u32, at: Instant) -> bool {
        match self.pos.get(owner as usize).map(|p| p.get()) {
            Some(p) => match self.entries.get(p as usize) {
                Some(e) => e.at > at,
                None => at != Instant::MAX,
            },
            None => at != Instant::MAX,
        }
    }

    fn set_inner(&mut self, owner: u32, at: Instant, seq: u32) {
        let p = self.pos[owner as usize].get();
        let e = HeapEntry {
            at,
            seq,
            owner: I::new(owner),
        };
        if p == NIL {
            let i = self.len;
            self.len += 1;
            self.entries[i] = e;
            self.pos[owner as usize] = I::new(i as u32);
            self.up(i);
        } else {
            let i = p as usize;
            let old = self.entries[i];
            self.entries[i] = e;
            if e.before(&old) {
                self.up(i);
            } else {
                self.down(i);
            }
        }
    }

    fn remove_inner(&mut self, owner: u32) {
        let p = self.pos[owner as usize].get();
        if p == NIL {
            return;
        }
        let i = p as usize;
        self.pos[owner as usize] = I::NIL;
        self.len -= 1;
        if i == self.len {
            return;
        }
        let last = self.entries[self.len];
        let old = self.entries[i];
        self.entries[i] = last;
        self.pos[last.owner() as usize] = I::new(i as u32);
        if last.before(&old) {
            self.up(i);
        } else {
            self.down(i);
        }
    }

    fn up(&mut self, mut i: usize) {
        let e = self.entries[i];
        while i > 0 {
            let parent = (i - 1) / 2;
            let p = self.entries[parent];
            if !e.before(&p) {
                break;
            }
            self.entries[i] = p;
            self.pos[p.owner() as usize] = I::new(i as u32);
            i = parent;
        }
        self.entries[i] = e;
        self.pos[e.owner() as usize] = I::new(i as u32);
    }

    fn down(&mut self, mut i: usize) {
        let e = self.entries[i];
        loop {
            let l = 2 * i + 1;
            if l >= self.len {
                break;
            }
            let r = l + 1;
            let c = if r < self.len && self.entries[r].before(&self.entries[l]) {
                r
            } else {
                l
            };
            let ce = self.entries[c];
            if !ce.before(&e) {
                break;
            }
            self.entries[i] = ce;
            self.pos[ce.owner() as usize] = I::new(i as u32);
            i = c;
        }
        self.entries[i] = e;
        self.pos[e.owner() as usize] = I::new(i as u32);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Checks the heap property and the position index.
    pub(crate) fn check(&self) -> bool {
        (0..self.len).all(|i| {
            let e = self.entries[i];
            self.pos[e.owner() as usize].get() == i as u32
                && (i == 0 || !e.before(&self.entries[(i - 1) / 2]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pops_in_key_order<I: Index>() {
        let mut e = [HeapEntry::<I>::EMPTY; 16];
        let mut p = [I::ZERO; 16];
        let mut h = Heap::new(Slots::Borrowed(&mut e), Slots::Borrowed(&mut p));
        let mut due = Instant::MAX;
        for o in 0..16u32 {
            h.set(o, Instant::from_micros(((o * 7) % 16) as u64), o, &mut due);
        }
        h.set(3, Instant::from_micros(100), 3, &mut due);
        h.arm(4, Instant::from_micros(0), 0, &mut due);
        assert_eq!(due, Instant::ZERO);
        h.remove(9);
        assert!(h.check());
        let mut last = HeapEntry::EMPTY;
        let mut n = 0;
        while let Some(top) = h.peek() {
            assert!(n == 0 || !top.before(&last));
            last = top;
            h.remove(top.owner());
            assert!(h.check());
            n += 1;
        }
        assert_eq!(n, 15);
        assert_eq!(h.len(), 0);
    }

    #[test]
    fn pops_in_key_order_after_rekeys_and_removals() {
        pops_in_key_order::<u32>();
        pops_in_key_order::<u16>();
    }
}
