//! The socket slots at work: the driver's I/O on embassy-net (`Io` for
//! [`Net`], whose data is in `state.rs`).
//!
//! `N` socket slots, each with its own buffers, run the connects and closes
//! the driver asks for (each slot has a worker in the runner). A socket that
//! is closing keeps its slot until its FIN is acknowledged or its RST sent,
//! so a connect that needs a slot meanwhile waits in `pending`.

use core::task::{Context, Poll, Waker};

use wharf_core::{CloseReason, ConnId, Validation};
use wharf_driver::{Checked, ConnEvent, Io};

use crate::fmt::{debug, warning};
use crate::route::Route;
use crate::state::{Net, PoolSocket, SlotState};

pub(crate) fn set_waker(slot: &mut Option<Waker>, w: &Waker) {
    match slot {
        Some(old) if old.will_wake(w) => {}
        _ => *slot = Some(w.clone()),
    }
}

/// A socket that can be handed out (or kept): established, and nothing unread.
pub(crate) fn healthy(s: &PoolSocket<'_>) -> bool {
    s.get().state() == embassy_net::tcp::State::Established && !s.get().can_recv()
}

/// A socket whose peer has closed or reset it.
pub(crate) fn peer_gone(s: &PoolSocket<'_>) -> bool {
    s.get().state() != embassy_net::tcp::State::Established
}

/// An idle socket that cannot be handed out: closed or reset by the peer,
/// or holding bytes nobody asked for (smoltcp keeps the state in memory:
/// no I/O to find out).
pub(crate) fn dead_while_idle(s: &PoolSocket<'_>) -> bool {
    !healthy(s)
}

/// Work for a slot's worker.
pub(crate) enum Job<'d, const H: usize> {
    /// Open `conn` to `route` (`None`: its route is unknown to the core).
    Connect {
        conn: ConnId,
        route: Option<Route<H>>,
    },
    /// Nothing yet: ask again at once (the slot changed hands).
    Again,
    Close {
        socket: PoolSocket<'d>,
        rst: bool,
    },
}

impl<'d, const H: usize> Io<Route<H>, u16> for Net<'d> {
    type Conn = PoolSocket<'d>;
    type ConnectError = ();
    type Note = ();

    fn connect(&mut self, conn: ConnId, route: &Route<H>) {
        debug!("connect {:?} to {:?}", conn, route);
        // A free slot's buffers are never still lent (its socket was dropped
        // before it became free); checked anyway, as `Buffers` would refuse.
        let free = (0..self.slots.len())
            .find(|&j| self.slots[j].state == SlotState::Free && !self.bufs.is_lent(j));
        if let Some(j) = free {
            self.assign(j, conn);
        } else if let Some(p) = self.pending.iter_mut().find(|p| p.is_none()) {
            // Every socket slot is busy finishing a close: start when one frees.
            *p = Some(conn);
        } else {
            // Cannot happen: pending connects are live core connections, at most N.
            warning!("no room for connect {:?}", conn);
        }
    }

    fn validate(&mut self, conn: ConnId, socket: PoolSocket<'d>) -> Checked<PoolSocket<'d>> {
        let result = if healthy(&socket) {
            Validation::Alive
        } else {
            Validation::Stale
        };
        debug!("validate {:?}: {:?}", conn, result);
        Checked::Done(socket, result)
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason, socket: Option<PoolSocket<'d>>) {
        debug!("close {:?}: {:?}", conn, reason);
        match socket {
            Some(s) => {
                let rst = s.rst || reason == CloseReason::ConnectTimeout;
                self.close_socket(s, rst);
            }
            None => self.abort_connect(conn),
        }
    }

    fn dispose(&mut self, socket: PoolSocket<'d>) {
        self.close_socket(socket, true);
    }

    /// The idle watch: a socket closed, reset or readable while idle is
    /// reported at once; otherwise the runner's waker becomes its receive
    /// waker (smoltcp wakes it on data and on every state change), and the
    /// runner asks again ([`Driver::watch_all`](wharf_driver::Driver::watch_all)).
    fn watch(&mut self, conn: ConnId, socket: &mut PoolSocket<'d>) -> Option<ConnEvent> {
        if dead_while_idle(socket) {
            debug!("{:?} closed while idle", conn);
            return Some(ConnEvent::PeerClosed);
        }
        let waker = self.watch_waker.as_ref()?;
        let mut cx = Context::from_waker(waker);
        let ready = core::pin::pin!(socket.get().wait_read_ready());
        match core::future::Future::poll(ready, &mut cx) {
            Poll::Ready(()) => Some(ConnEvent::PeerClosed),
            Poll::Pending => None,
        }
    }
}

impl<'d> Net<'d> {
    /// A socket on slot `j`'s buffers (the slot's worker, connecting).
    pub(crate) fn socket(&self, j: usize) -> Option<PoolSocket<'d>> {
        self.bufs.socket(self.stack, j)
    }

    fn assign(&mut self, j: usize, conn: ConnId) {
        let slot = &mut self.slots[j];
        slot.state = SlotState::Connecting {
            conn,
            started: false,
            abort: false,
        };
        slot.wake();
    }

    /// Slot `j`'s socket has been dropped: hand it to the oldest pending connect.
    pub(crate) fn slot_freed(&mut self, j: usize) {
        self.slots[j].state = SlotState::Free;
        self.close_wakers.wake();
        if self.bufs.is_lent(j) {
            return;
        }
        if let Some(conn) = self.pending[0].take() {
            self.pending.rotate_left(1);
            self.assign(j, conn);
        }
    }

    /// No socket in use and no connect waiting for one.
    pub(crate) fn quiet(&self) -> bool {
        self.slots.iter().all(|s| s.state == SlotState::Free)
            && self.pending.iter().all(Option::is_none)
    }

    /// A connect the pool gave up on: dropped if it had not started, else
    /// its worker aborts it.
    fn abort_connect(&mut self, conn: ConnId) {
        if let Some(i) = self.pending.iter().position(|p| *p == Some(conn)) {
            self.pending[i] = None;
            self.pending[i..].rotate_left(1);
            return;
        }
        for slot in self.slots.iter_mut() {
            if let SlotState::Connecting { conn: c, abort, .. } = &mut slot.state {
                if *c == conn {
                    *abort = true;
                    slot.wake();
                    return;
                }
            }
        }
        // A connection whose object is out (none here: no detach, and
        // validations answer at once).
        warning!("close for unknown {:?}", conn);
    }

    fn close_socket(&mut self, socket: PoolSocket<'d>, rst: bool) {
        let slot = &mut self.slots[socket.slot()];
        slot.state = SlotState::Closing {
            rst,
            started: false,
        };
        slot.closing = Some(socket);
        slot.wake();
    }

    /// The connect of slot `j` succeeded: the socket goes to the driver.
    pub(crate) fn opened(&mut self, j: usize) {
        self.slots[j].state = SlotState::Open;
    }

    /// Slot `j` still connects for `conn` (the pool has not given up).
    pub(crate) fn wanted(&self, j: usize, conn: ConnId) -> bool {
        matches!(
            self.slots[j].state,
            SlotState::Connecting { conn: c, abort: false, .. } if c == conn
        )
    }

    /// The connection slot `j` is to open, if its worker has not started.
    pub(crate) fn unstarted_connect(&self, j: usize) -> Option<ConnId> {
        match self.slots[j].state {
            SlotState::Connecting {
                conn,
                started: false,
                abort: false,
            } => Some(conn),
            _ => None,
        }
    }

    /// The next job of slot `j`'s worker. `route` is the key of the route of
    /// [`Net::unstarted_connect`]'s connection, read from the core by the
    /// caller (`None` if the core does not know it: the connect fails).
    pub(crate) fn take_job<const H: usize>(
        &mut self,
        j: usize,
        route: Option<Route<H>>,
        cx: &mut Context<'_>,
    ) -> Poll<Job<'d, H>> {
        let slot = &mut self.slots[j];
        match &mut slot.state {
            SlotState::Connecting {
                abort: true,
                started: false,
                ..
            } => {
                // Given up before it started: nothing to abort. A pending
                // connect may take the slot: the worker asks again.
                self.slot_freed(j);
                Poll::Ready(Job::Again)
            }
            SlotState::Connecting { conn, started, .. } if !*started => {
                *started = true;
                Poll::Ready(Job::Connect { conn: *conn, route })
            }
            SlotState::Closing { rst, started } if !*started => {
                *started = true;
                let rst = *rst;
                match slot.closing.take() {
                    Some(socket) => Poll::Ready(Job::Close { socket, rst }),
                    None => {
                        // Cannot happen: a slot closes with its socket.
                        warning!("close of slot {:?} without its socket", j);
                        set_waker(&mut slot.waker, cx.waker());
                        Poll::Pending
                    }
                }
            }
            _ => {
                set_waker(&mut slot.waker, cx.waker());
                Poll::Pending
            }
        }
    }

    pub(crate) fn poll_abort(&mut self, j: usize, conn: ConnId, cx: &mut Context<'_>) -> Poll<()> {
        let slot = &mut self.slots[j];
        match slot.state {
            SlotState::Connecting {
                conn: c,
                abort: false,
                ..
            } if c == conn => {
                set_waker(&mut slot.waker, cx.waker());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}
