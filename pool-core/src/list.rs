//! Intrusive doubly-linked lists threaded through slot arrays by index.
//!
//! A slot type implements [`Links<M>`] once per list it can be on (the marker
//! `M` picks the link field), so one slot can sit on several lists at once
//! without any allocation. All operations are O(1).

use crate::slot::NIL;

/// Previous/next indices of one list membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub prev: u32,
    pub next: u32,
}

impl Link {
    pub(crate) const NONE: Link = Link {
        prev: NIL,
        next: NIL,
    };
}

/// Head, tail and length of one list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct List {
    pub head: u32,
    pub tail: u32,
    pub len: u32,
}

/// Access to the link field for list kind `M`.
pub(crate) trait Links<M> {
    fn link(&mut self) -> &mut Link;
    fn link_ref(&self) -> &Link;
}

impl List {
    pub(crate) const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub(crate) fn push_back<M, T: Links<M>>(&mut self, s: &mut [T], i: u32) {
        *s[i as usize].link() = Link {
            prev: self.tail,
            next: NIL,
        };
        if self.tail == NIL {
            self.head = i;
        } else {
            s[self.tail as usize].link().next = i;
        }
        self.tail = i;
        self.len += 1;
    }

    #[inline(always)]
    pub(crate) fn push_front<M, T: Links<M>>(&mut self, s: &mut [T], i: u32) {
        *s[i as usize].link() = Link {
            prev: NIL,
            next: self.head,
        };
        if self.head == NIL {
            self.tail = i;
        } else {
            s[self.head as usize].link().prev = i;
        }
        self.head = i;
        self.len += 1;
    }

    /// Inserts `i` before `at` (`at == NIL` appends).
    pub(crate) fn insert_before<M, T: Links<M>>(&mut self, s: &mut [T], at: u32, i: u32) {
        if at == NIL {
            return self.push_back(s, i);
        }
        let prev = s[at as usize].link_ref().prev;
        if prev == NIL {
            return self.push_front(s, i);
        }
        *s[i as usize].link() = Link { prev, next: at };
        s[prev as usize].link().next = i;
        s[at as usize].link().prev = i;
        self.len += 1;
    }

    #[inline(always)]
    pub(crate) fn remove<M, T: Links<M>>(&mut self, s: &mut [T], i: u32) {
        let Link { prev, next } = *s[i as usize].link_ref();
        if prev == NIL {
            self.head = next;
        } else {
            s[prev as usize].link().next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            s[next as usize].link().prev = prev;
        }
        *s[i as usize].link() = Link::NONE;
        self.len -= 1;
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
    ($t:ty, $m:ty, $f:ident) => {
        impl Links<$m> for $t {
            #[inline(always)]
            fn link(&mut self) -> &mut Link {
                &mut self.$f
            }
            #[inline(always)]
            fn link_ref(&self) -> &Link {
                &self.$f
            }
        }
    };
}

use crate::slot::{ConnSlot, RouteSlot, WaiterSlot};
links!(ConnSlot, kind::RouteList, rlink);
links!(ConnSlot, kind::Lru, glink);
links!(WaiterSlot, kind::Queue, qlink);

impl<K> Links<kind::Blocked> for RouteSlot<K> {
    #[inline(always)]
    fn link(&mut self) -> &mut Link {
        &mut self.blink
    }
    #[inline(always)]
    fn link_ref(&self) -> &Link {
        &self.blink
    }
}
impl<K> Links<kind::AllRoutes> for RouteSlot<K> {
    #[inline(always)]
    fn link(&mut self) -> &mut Link {
        &mut self.all
    }
    #[inline(always)]
    fn link_ref(&self) -> &Link {
        &self.all
    }
}
