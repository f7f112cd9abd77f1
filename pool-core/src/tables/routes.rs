//! The route table: route slots found by key through a chained hash index
//! (seeded, [`RouteHasher`]), the list of all routes, the blocked list
//! (routes waiting for total capacity, §3.3), route timers (retry backoff).

use core::hash::Hash;

use super::{deref_slots, walk, walk_free};
use crate::hash::RouteHasher;
use crate::heap::Heap;
use crate::index::Index;
use crate::invariant::{ensure, InvariantViolation};
use crate::list::{kind, List};
use crate::slot::{RouteSlot, NIL};
use crate::storage::Slots;

pub(crate) struct Routes<'a, K, I> {
    pub(crate) slots: Slots<'a, RouteSlot<K, I>>,
    /// Heads of the hash chains (`chain` links of live slots).
    pub(crate) buckets: Slots<'a, I>,
    pub(crate) hasher: RouteHasher,
    /// Head of the free list (`chain` links of free slots).
    pub(crate) free: u32,
    /// Every live route, in creation order (`all` links).
    pub(crate) all: List<I>,
    /// Routes waiting for total capacity, in blocking order (`blink` links).
    pub(crate) blocked: List<I>,
    /// Retry backoffs.
    pub(crate) timers: Heap<'a, I>,
    /// Live routes.
    pub(crate) count: u32,
}

deref_slots!(Routes, RouteSlot, K);

impl<'a, K: Eq + Hash + Clone, I: Index> Routes<'a, K, I> {
    /// Every slot free, the index empty; generations go on from what the
    /// storage held.
    pub(crate) fn new(
        mut slots: Slots<'a, RouteSlot<K, I>>,
        mut buckets: Slots<'a, I>,
        timers: Heap<'a, I>,
        seed: u64,
    ) -> Self {
        let n = slots.len();
        for (i, r) in slots.iter_mut().enumerate() {
            let gen = r.gen.wrapping_add(1);
            *r = RouteSlot::EMPTY;
            r.gen = gen;
            r.chain = I::new(if i + 1 < n { i as u32 + 1 } else { NIL });
        }
        buckets.iter_mut().for_each(|b| *b = I::NIL);
        Routes {
            slots,
            buckets,
            hasher: RouteHasher::new(seed),
            free: if n > 0 { 0 } else { NIL },
            all: List::EMPTY,
            blocked: List::EMPTY,
            timers,
            count: 0,
        }
    }

    #[inline]
    pub(crate) fn find(&self, key: &K) -> Option<u32> {
        let mut i = self.buckets[self.hasher.bucket(key, self.buckets.len())].get();
        while i != NIL {
            let s = &self.slots[i as usize];
            if s.key.as_ref() == Some(key) {
                return Some(i);
            }
            i = s.chain.get();
        }
        None
    }

    /// A new route for `key` created `seq`-th; `None` when the table is full.
    pub(crate) fn insert(&mut self, key: &K, seq: u64) -> Option<u32> {
        let r = self.free;
        if r == NIL {
            return None;
        }
        let b = self.hasher.bucket(key, self.buckets.len());
        let s = &mut self.slots[r as usize];
        self.free = s.chain.get();
        let gen = s.gen;
        *s = RouteSlot::EMPTY;
        s.gen = gen;
        s.key = Some(key.clone());
        s.seq = seq as u32;
        s.set_idle_mark(true);
        s.chain = self.buckets[b];
        self.buckets[b] = I::new(r);
        self.all.push_back::<kind::AllRoutes, _>(&mut self.slots, r);
        self.count += 1;
        Some(r)
    }

    /// Takes route `r` out of the index and every list, frees its slot (its
    /// handles go stale) and returns its key (`None` if it was not live).
    pub(crate) fn remove(&mut self, r: u32) -> Option<K> {
        let key = self.slots[r as usize].key.take()?;
        let b = self.hasher.bucket(&key, self.buckets.len());
        let next = self.slots[r as usize].chain;
        if self.buckets[b].get() == r {
            self.buckets[b] = next;
        } else {
            let mut i = self.buckets[b].get();
            while i != NIL {
                let n = self.slots[i as usize].chain.get();
                if n == r {
                    self.slots[i as usize].chain = next;
                    break;
                }
                i = n;
            }
        }
        self.unblock_one(r);
        self.all.remove::<kind::AllRoutes, _>(&mut self.slots, r);
        self.timers.remove(r);
        let s = &mut self.slots[r as usize];
        s.gen = s.gen.wrapping_add(1);
        s.chain = I::new(self.free);
        self.free = r;
        self.count -= 1;
        Some(key)
    }

    /// Appends `r` to the blocked list (if not on it).
    #[inline]
    pub(crate) fn block(&mut self, r: u32) {
        if !self.slots[r as usize].blocked() {
            self.slots[r as usize].set_blocked(true);
            self.blocked
                .push_back::<kind::Blocked, _>(&mut self.slots, r);
        }
    }

    /// Moves blocked route `r` to the front of the blocked list.
    #[inline]
    pub(crate) fn block_first(&mut self, r: u32) {
        if self.slots[r as usize].blocked() && self.blocked.head() != r {
            self.blocked.remove::<kind::Blocked, _>(&mut self.slots, r);
            self.blocked
                .push_front::<kind::Blocked, _>(&mut self.slots, r);
        }
    }

    /// Takes `r` off the blocked list (if on it).
    #[inline]
    pub(crate) fn unblock_one(&mut self, r: u32) {
        if self.slots[r as usize].blocked() {
            self.blocked.remove::<kind::Blocked, _>(&mut self.slots, r);
            self.slots[r as usize].set_blocked(false);
        }
    }

    /// The free list holds exactly the free slots, `count` the live ones;
    /// every live route is found by its key; the list of all routes holds
    /// the live ones, the blocked list those marked blocked; the timer heap
    /// is whole.
    pub(crate) fn check(&self) -> Result<(), InvariantViolation> {
        let s = &self.slots;
        ensure!(
            walk_free(self.free, s, |r| r.chain.get(), |r| !r.live()),
            0,
            "route free list broken"
        );
        let live = s.iter().filter(|r| r.live()).count() as u32;
        ensure!(live == self.count, 11, "route count differs");
        for (i, r) in s.iter().enumerate() {
            if let Some(k) = &r.key {
                ensure!(
                    self.find(k) == Some(i as u32),
                    0,
                    "route not found by its key"
                );
            }
        }
        ensure!(
            walk(&self.all, s, |r| r.all, |r| s[r as usize].live()) && self.all.len() == live,
            0,
            "list of routes broken"
        );
        let blocked = s.iter().filter(|r| r.blocked()).count() as u32;
        ensure!(
            walk(&self.blocked, s, |r| r.blink, |r| s[r as usize].blocked())
                && self.blocked.len() == blocked,
            0,
            "blocked list broken"
        );
        ensure!(self.timers.check(), 0, "route timer heap broken");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::HeapEntry;

    fn checked<I: Index>() {
        let mut s = [const { RouteSlot::<u8, I>::EMPTY }; 4];
        let mut b = [I::ZERO; 4];
        let mut e = [HeapEntry::<I>::EMPTY; 4];
        let mut p = [I::ZERO; 4];
        let heap = Heap::new(Slots::Borrowed(&mut e), Slots::Borrowed(&mut p));
        let mut t = Routes::new(Slots::Borrowed(&mut s), Slots::Borrowed(&mut b), heap, 7);
        assert!(t.check().is_ok());
        let r = t.insert(&1, 1).unwrap();
        let q = t.insert(&2, 2).unwrap();
        t.block(r);
        t.block(q);
        t.block_first(q);
        assert_eq!(t.blocked.head(), q);
        assert!(t.check().is_ok());
        // Marked blocked without being on the list.
        t.unblock_one(r);
        t.slots[r as usize].set_blocked(true);
        assert_eq!(t.check().unwrap_err().what, "blocked list broken");
        t.slots[r as usize].set_blocked(false);
        assert!(t.check().is_ok());
        // A key that the index does not find.
        t.slots[q as usize].key = Some(9);
        assert_eq!(t.check().unwrap_err().what, "route not found by its key");
        t.slots[q as usize].key = Some(2);
        // Removed: its slot goes back on the free list, off the blocked list.
        assert_eq!(t.remove(q), Some(2));
        assert!(t.check().is_ok());
        assert_eq!((t.count, t.blocked.len()), (1, 0));
        // A free list that names a live route.
        t.free = r;
        assert_eq!(t.check().unwrap_err().what, "route free list broken");
    }

    #[test]
    fn check_finds_broken_lists_and_lost_keys() {
        checked::<u32>();
        checked::<u16>();
    }
}
