//! Intrusive doubly-linked lists threaded through slot arrays by index.
//!
//! A slot type implements [`Links<M>`] once per list it can be on (the marker
//! `M` picks the link field), so one slot can sit on several lists at once
//! without any allocation. All operations are O(1).

use crate::index::Index;
use crate::slot::NIL;

/// Previous/next indices of one list membership, stored at the storage's
/// index width `I` (read them with [`Link::prev`] and [`Link::next`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link<I> {
    pub(crate) p: I,
    pub(crate) n: I,
}

impl<I: Index> Link<I> {
    pub(crate) const NONE: Link<I> = Link {
        p: I::NIL,
        n: I::NIL,
    };
    /// All zero bytes: only for all-zero storage, initialised before use.
    pub(crate) const ZERO: Link<I> = Link {
        p: I::ZERO,
        n: I::ZERO,
    };
    #[inline(always)]
    pub(crate) fn new(prev: u32, next: u32) -> Self {
        Link {
            p: I::new(prev),
            n: I::new(next),
        }
    }
    #[inline(always)]
    pub(crate) fn prev(&self) -> u32 {
        self.p.get()
    }
    #[inline(always)]
    pub(crate) fn next(&self) -> u32 {
        self.n.get()
    }
    #[inline(always)]
    pub(crate) fn set_prev(&mut self, i: u32) {
        self.p = I::new(i);
    }
    #[inline(always)]
    pub(crate) fn set_next(&mut self, i: u32) {
        self.n = I::new(i);
    }
}

/// Head, tail and length of one list, at the storage's index width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct List<I> {
    h: I,
    t: I,
    n: I,
}

/// Access to the link field for list kind `M`.
pub(crate) trait Links<M, I> {
    fn link(&mut self) -> &mut Link<I>;
    fn link_ref(&self) -> &Link<I>;
}

impl<I: Index> List<I> {
    pub(crate) const EMPTY: List<I> = List {
        h: I::NIL,
        t: I::NIL,
        n: I::ZERO,
    };
    /// All zero bytes: only for all-zero storage, initialised before use.
    pub(crate) const ZERO: List<I> = List {
        h: I::ZERO,
        t: I::ZERO,
        n: I::ZERO,
    };

    #[inline(always)]
    pub(crate) fn head(&self) -> u32 {
        self.h.get()
    }
    #[inline(always)]
    pub(crate) fn tail(&self) -> u32 {
        self.t.get()
    }
    #[inline(always)]
    pub(crate) fn len(&self) -> u32 {
        self.n.get()
    }

    #[inline(always)]
    pub(crate) fn set_head(&mut self, i: u32) {
        self.h = I::new(i);
    }
    #[inline(always)]
    pub(crate) fn set_tail(&mut self, i: u32) {
        self.t = I::new(i);
    }
    /// One member more (the caller linked it).
    #[inline(always)]
    pub(crate) fn inc(&mut self) {
        self.n = I::new(self.len() + 1);
    }
    /// One member fewer (the caller unlinked it).
    #[inline(always)]
    pub(crate) fn dec(&mut self) {
        self.n = I::new(self.len() - 1);
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.n == I::ZERO
    }

    #[inline(always)]
    pub(crate) fn push_back<M, T: Links<M, I>>(&mut self, s: &mut [T], i: u32) {
        let tail = self.tail();
        *s[i as usize].link() = Link::new(tail, NIL);
        if tail == NIL {
            self.h = I::new(i);
        } else {
            s[tail as usize].link().set_next(i);
        }
        self.t = I::new(i);
        self.n = I::new(self.len() + 1);
    }

    #[inline(always)]
    pub(crate) fn push_front<M, T: Links<M, I>>(&mut self, s: &mut [T], i: u32) {
        let head = self.head();
        *s[i as usize].link() = Link::new(NIL, head);
        if head == NIL {
            self.t = I::new(i);
        } else {
            s[head as usize].link().set_prev(i);
        }
        self.h = I::new(i);
        self.n = I::new(self.len() + 1);
    }

    /// Inserts `i` before `at` (`at == NIL` appends).
    pub(crate) fn insert_before<M, T: Links<M, I>>(&mut self, s: &mut [T], at: u32, i: u32) {
        if at == NIL {
            return self.push_back(s, i);
        }
        let prev = s[at as usize].link_ref().prev();
        if prev == NIL {
            return self.push_front(s, i);
        }
        *s[i as usize].link() = Link::new(prev, at);
        s[prev as usize].link().set_next(i);
        s[at as usize].link().set_prev(i);
        self.n = I::new(self.len() + 1);
    }

    #[inline(always)]
    pub(crate) fn remove<M, T: Links<M, I>>(&mut self, s: &mut [T], i: u32) {
        let l = *s[i as usize].link_ref();
        let (prev, next) = (l.prev(), l.next());
        if prev == NIL {
            self.h = l.n;
        } else {
            s[prev as usize].link().n = l.n;
        }
        if next == NIL {
            self.t = l.p;
        } else {
            s[next as usize].link().p = l.p;
        }
        *s[i as usize].link() = Link::NONE;
        self.n = I::new(self.len() - 1);
    }
}

/// Markers naming the link fields.
pub(crate) mod kind {
    /// A connection on its route's connecting/ready/busy list.
    pub struct RouteList;
    /// A connection on the global idle LRU.
    pub struct Lru;
    /// A waiter on its route's queue.
    pub struct Queue;
    /// A route on the blocked list.
    pub struct Blocked;
    /// A route on the creation-order list.
    pub struct AllRoutes;
}

macro_rules! links {
    ($t:ident, $m:ty, $f:ident $(, $k:ident)?) => {
        impl<$($k,)? I: Index> Links<$m, I> for $t<$($k,)? I> {
            #[inline(always)]
            fn link(&mut self) -> &mut Link<I> {
                &mut self.$f
            }
            #[inline(always)]
            fn link_ref(&self) -> &Link<I> {
                &self.$f
            }
        }
    };
}

use crate::slot::{ConnSlot, RouteSlot, WaiterSlot};
links!(ConnSlot, kind::RouteList, rlink);
links!(ConnSlot, kind::Lru, glink);
links!(WaiterSlot, kind::Queue, qlink);

links!(RouteSlot, kind::Blocked, blink, K);
links!(RouteSlot, kind::AllRoutes, all, K);
