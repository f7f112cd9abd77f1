//! The action queue: one FIFO threaded through the slots.
//!
//! Each connection, waiter and route slot holds at most one undelivered action,
//! and a slot holding one is not reused until it is polled, so the queue never
//! holds more than `conns + waiters + routes` entries: it cannot overflow.
//! What the action *is* follows from the slot's state (a `Connecting` slot
//! means `Connect`, a `Closing` one `Close`, a `Granted` waiter `Granted`, ...).

use crate::index::Index;
use core::hash::Hash;

use super::Pool;
use crate::action::Action;
use crate::handle::ConnId;
use crate::list::Link;
use crate::slot::{ConnState, WaiterState, NIL};

/// An entry of the action queue: the slot kind in the two bits above the
/// index (`Index::KIND_SHIFT`: 30 for `u32` indices, 13 for `u16`).
pub(crate) type Entity = u32;
// Entity kinds, in the bits above the index ([`Index::KIND_SHIFT`]: the
// action links are stored at the storage's index width too).
const CONN: u32 = 0;
const WAITER: u32 = 1;
const ROUTE: u32 = 2;

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    #[inline]
    fn alink(&mut self, e: Entity) -> &mut Link<I> {
        let i = (e & Self::INDEX) as usize;
        match e >> I::KIND_SHIFT {
            CONN => &mut self.conns[i].alink,
            WAITER => &mut self.waiters[i].alink,
            _ => &mut self.routes[i].alink,
        }
    }

    #[inline]
    pub(crate) fn act_queued(&mut self, e: Entity) -> bool {
        self.act_head == e || self.alink(e).prev() != NIL
    }

    pub(crate) fn act_push(&mut self, e: Entity) {
        let tail = self.act_tail;
        *self.alink(e) = Link::new(tail, NIL);
        if tail == NIL {
            self.act_head = e;
        } else {
            self.alink(tail).set_next(e);
        }
        self.act_tail = e;
    }

    pub(crate) fn act_remove(&mut self, e: Entity) {
        if !self.act_queued(e) {
            return;
        }
        let l = *self.alink(e);
        let (prev, next) = (l.prev(), l.next());
        if prev == NIL {
            self.act_head = next;
        } else {
            self.alink(prev).set_next(next);
        }
        if next == NIL {
            self.act_tail = prev;
        } else {
            self.alink(next).set_prev(prev);
        }
        *self.alink(e) = Link::NONE;
    }

    /// Whether [`Pool::poll_action`] has an action to give (a cheap check a
    /// driver can make before draining).
    #[inline(always)]
    pub fn has_actions(&self) -> bool {
        self.act_head != NIL
    }

    /// The next action for the backend, or `None` when there is nothing to do
    /// until the next input or [`Pool::poll_timeout`].
    pub fn poll_action(&mut self) -> Option<Action<K>> {
        loop {
            let e = self.act_head;
            if e == NIL {
                return None;
            }
            self.act_remove(e);
            let i = e & Self::INDEX;
            match e >> I::KIND_SHIFT {
                CONN => {
                    let conn = self.conn_handle(i);
                    let c = &mut self.conns[i as usize];
                    match c.state {
                        ConnState::Connecting => {
                            c.set_delivered(true);
                            let r = c.route.get();
                            return Some(Action::Connect {
                                conn,
                                route: self.route_handle(r),
                            });
                        }
                        ConnState::Validating => {
                            c.set_delivered(true);
                            return Some(Action::Validate { conn });
                        }
                        ConnState::Closing => {
                            let reason = c.reason;
                            self.conns.closing -= 1;
                            self.free_conn_slot(i);
                            self.unblock(NIL);
                            return Some(Action::Close { conn, reason });
                        }
                        _ => continue,
                    }
                }
                WAITER => {
                    let w = &self.waiters[i as usize];
                    let waiter = self.waiter_handle(i);
                    let action = match (w.state, self.granted_lease(w)) {
                        (WaiterState::Granted, Some(lease)) => Action::Granted { waiter, lease },
                        (WaiterState::Failed, _) => Action::Failed {
                            waiter,
                            reason: w.reason,
                        },
                        _ => continue,
                    };
                    self.free_waiter_slot(i);
                    return Some(action);
                }
                _ => {
                    let route = self.route_handle(i);
                    let s = &self.routes[i as usize];
                    let key = if s.deleting() || !s.configured() {
                        self.free_route(i)
                    } else {
                        s.key.clone()
                    };
                    match key {
                        Some(key) => return Some(Action::RouteIdle { route, key }),
                        None => continue,
                    }
                }
            }
        }
    }

    const INDEX: u32 = (1 << I::KIND_SHIFT) - 1;

    pub(crate) fn conn_entity(c: u32) -> Entity {
        CONN << I::KIND_SHIFT | c
    }
    pub(crate) fn waiter_entity(w: u32) -> Entity {
        WAITER << I::KIND_SHIFT | w
    }
    pub(crate) fn route_entity(r: u32) -> Entity {
        ROUTE << I::KIND_SHIFT | r
    }

    /// Slot index of a live connection handle.
    pub(crate) fn live_conn(&self, id: ConnId) -> Result<u32, crate::ConnError> {
        match self.conns.get(id.index()) {
            Some(c)
                if c.gen == id.gen && !matches!(c.state, ConnState::Free | ConnState::Closing) =>
            {
                Ok(id.index)
            }
            _ => Err(crate::ConnError::StaleConn),
        }
    }
}
