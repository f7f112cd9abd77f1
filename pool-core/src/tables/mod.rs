//! The pool's state, one table per kind of slot (as quinn-proto's
//! `connection/` keeps streams, timers and packet spaces in types of their
//! own): each table owns its slots, its free list, the lists threaded through
//! them, its timer heap and its counts, and keeps them in step through its own
//! operations; its `check()` verifies them and is run by
//! [`Pool::check_invariants`](crate::Pool::check_invariants), which then checks
//! what ties the tables together.
//!
//! | table | owns |
//! |---|---|
//! | [`Conns`] | connection slots, their free list, the idle LRU, connection timers, the pool-wide connection counts |
//! | [`Routes`] | route slots, the hash index (buckets, seeded hasher), their free list, the list of all routes and the blocked list, route timers, the route count |
//! | [`Waiters`] | waiter slots, their free list, waiter timers, the pending count |
//! | [`Leases`] | lease slots, their free list, the count of leases out |
//!
//! Tables deref to their slot slices, so `pool.conns[c]` reads a slot. The
//! inputs (`pool/lease.rs`, `pool/release.rs`, `pool/connect.rs`, ...) are
//! sequences of table operations; what changes several tables at once (a
//! grant, a close, an eviction) lives there.

mod conns;
mod leases;
mod routes;
mod waiters;

pub(crate) use conns::Conns;
pub(crate) use leases::Leases;
pub(crate) use routes::Routes;
pub(crate) use waiters::Waiters;

/// Walks `list` through `slots` by `link`, checking every back link, the
/// tail, the length and `f` for each member.
pub(crate) fn walk<T, I: crate::index::Index>(
    list: &crate::list::List<I>,
    slots: &[T],
    link: impl Fn(&T) -> crate::list::Link<I>,
    mut f: impl FnMut(u32) -> bool,
) -> bool {
    use crate::slot::NIL;
    let mut n = 0;
    let mut prev = NIL;
    let mut i = list.head();
    while i != NIL {
        if i as usize >= slots.len() || n > list.len() {
            return false;
        }
        let l = link(&slots[i as usize]);
        if l.prev() != prev || !f(i) {
            return false;
        }
        prev = i;
        i = l.next();
        n += 1;
    }
    n == list.len() && prev == list.tail()
}

/// Walks a singly linked free list (`next` of each member), checking that it
/// visits exactly the slots `free` says are free, each once.
pub(crate) fn walk_free<T>(
    head: u32,
    slots: &[T],
    next: impl Fn(&T) -> u32,
    free: impl Fn(&T) -> bool,
) -> bool {
    use crate::slot::NIL;
    let want = slots.iter().filter(|s| free(s)).count();
    let mut n = 0;
    let mut i = head;
    while i != NIL {
        match slots.get(i as usize) {
            Some(s) if free(s) && n < want => {
                n += 1;
                i = next(s);
            }
            _ => return false,
        }
    }
    n == want
}

macro_rules! deref_slots {
    ($table:ident, $slot:ident $(, $k:ident)?) => {
        impl<$($k,)? I: crate::index::Index> core::ops::Deref for $table<'_, $($k,)? I> {
            type Target = [$slot<$($k,)? I>];
            #[inline(always)]
            fn deref(&self) -> &[$slot<$($k,)? I>] {
                &self.slots
            }
        }
        impl<$($k,)? I: crate::index::Index> core::ops::DerefMut for $table<'_, $($k,)? I> {
            #[inline(always)]
            fn deref_mut(&mut self) -> &mut [$slot<$($k,)? I>] {
                &mut self.slots
            }
        }
    };
}
pub(crate) use deref_slots;

#[cfg(test)]
mod tests {
    use super::walk;
    use crate::list::{kind, List};
    use crate::slot::ConnSlot;

    /// Slots 0, 2 and 3 on a list threaded through the LRU links.
    fn three() -> ([ConnSlot<u16>; 4], List<u16>) {
        let mut s = [ConnSlot::<u16>::EMPTY; 4];
        let mut l = List::EMPTY;
        for i in [0, 2, 3] {
            l.push_back::<kind::Lru, _>(&mut s, i);
        }
        (s, l)
    }

    fn walks(s: &[ConnSlot<u16>], l: &List<u16>) -> bool {
        walk(l, s, |c| c.glink, |_| true)
    }

    /// A free list over `next` links (`NIL` = 255 here), free = odd values.
    fn walks_free(head: u32, next: &[u32]) -> bool {
        super::walk_free(
            head,
            next,
            |&n| if n == 255 { crate::slot::NIL } else { n / 2 },
            |&n| n % 2 == 1 || n == 255,
        )
    }

    #[test]
    fn walk_free_visits_exactly_the_free_slots_once() {
        // Slots 0 and 2 free (odd or 255), 1 in use (even: 4); links: n / 2.
        // 0 -> 1 -> end would pass through slot 1 (in use).
        assert!(walks_free(0, &[5, 4, 255]), "0 -> 2 -> end");
        assert!(!walks_free(0, &[3, 4, 255]), "0 -> 1 (in use)");
        assert!(
            !walks_free(0, &[255, 4, 255]),
            "slot 2 free but not on the list"
        );
        assert!(!walks_free(0, &[5, 4, 1]), "0 -> 2 -> 0: a cycle");
        assert!(!walks_free(7, &[5, 4, 255]), "a head past the slots");
    }

    #[test]
    fn walk_checks_members_back_links_length_and_tail() {
        let (s, l) = three();
        assert!(walks(&s, &l));
        assert!(!walk(&l, &s, |c| c.glink, |i| i != 2), "a member refused");
        // A back link that names another slot.
        let (mut s, l) = three();
        s[2].glink.set_prev(3);
        assert!(!walks(&s, &l), "back link");
        // A forward link that skips a member: the length differs, the tail
        // is right.
        let (mut s, l) = three();
        s[0].glink.set_next(3);
        s[3].glink.set_prev(0);
        assert!(!walks(&s, &l), "skipped member");
        // The last member links on: a cycle back to the head.
        let (mut s, l) = three();
        s[3].glink.set_next(0);
        assert!(!walks(&s, &l), "cycle");
        // A link past the slots.
        let (mut s, l) = three();
        s[3].glink.set_next(9);
        assert!(!walks(&s, &l), "past the slots");
        // The list ends early: the length and the tail differ.
        let (mut s, l) = three();
        s[2].glink.set_next(crate::slot::NIL);
        assert!(!walks(&s, &l), "ends early");
    }
}
