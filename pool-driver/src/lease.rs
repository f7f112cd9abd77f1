//! Lease inputs: ask, wait for the answer, withdraw, give back.

use core::hash::Hash;
use core::task::{Poll, Waker};

use wharf_core::{
    Cancelled, Duration, Instant, Lease, LeaseError, LeaseOutcome, Pool, Release, Tag,
};

use crate::conns::{Handout, Hold};
use crate::driver::Driver;
use crate::io::Io;
use crate::tickets::{Answer, Answered, State, Ticket, TicketId, NONE};

/// What [`Driver::lease`] did at once.
#[derive(Debug)]
pub enum Started<T> {
    /// A connection was free: here it is.
    Granted(Handout<T>),
    /// The request waits; its answer comes through the ticket.
    Queued(TicketId),
    /// The connection granted at once could not be handed out: ask again
    /// (cannot happen while the tables match the core).
    Retry,
}

/// Why [`Driver::lease`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StartError<X> {
    /// Every answer ticket of a fixed table is taken (answers not picked up
    /// yet count): the core was not asked. Backends report it as overflow.
    NoTicket,
    /// The core refused (its `lease`, or the caller's own `ask`).
    Refused(X),
}

/// How a lease gives its connection back ([`Driver::release`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Returned {
    /// Healthy: reuse it, with the keep-alive the server announced and the
    /// tag the connection has from now on.
    Reuse {
        /// Keep-alive from now (`None`: the pool's lifetime rules only).
        keep_alive: Option<Duration>,
        /// The connection's tag from now on.
        tag: Option<Tag>,
    },
    /// Broken or in an unknown state: close it (`Discarded`).
    Discard,
    /// The peer closed it (FIN or RST seen): close it (`PeerClosed`).
    PeerClosed,
}

impl Returned {
    /// Reusable, no keep-alive, untagged.
    pub const REUSE: Returned = Returned::Reuse {
        keep_alive: None,
        tag: None,
    };
}

impl<'a, K: Eq + Hash + Clone, I: Io<K>> Driver<'a, K, I> {
    /// Asks the core for a lease on `key` (see the core's `Pool::lease`).
    #[inline(always)]
    pub fn lease(
        &mut self,
        key: &K,
        tag: Option<Tag>,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Result<Started<I::Conn>, StartError<LeaseError>> {
        self.lease_by(|core| core.lease(key, tag, now, deadline))
    }

    /// Asks for a lease through `ask` (a cluster's lease, or the core's own):
    /// takes an answer ticket first (refused with `NoTicket` before `ask`
    /// runs if none is free), then drains. A request granted at once gets its
    /// connection's object; a queued one its ticket, to poll with
    /// [`Driver::poll_answer`] (its answer may already be there).
    ///
    /// Inlined into the backend's lease (the warm path's only code outside
    /// the core's `lease`; the rest is out of line).
    #[inline(always)]
    pub fn lease_by<X>(
        &mut self,
        ask: impl FnOnce(&mut Pool<'a, K>) -> Result<LeaseOutcome, X>,
    ) -> Result<Started<I::Conn>, StartError<X>> {
        if self.free == NONE && !self.grow_tickets() {
            return Err(StartError::NoTicket);
        }
        let started = match ask(&mut self.core) {
            Ok(LeaseOutcome::Granted(lease)) => Ok(match self.lend(lease) {
                Some(h) => Started::Granted(h),
                None => self.not_lent(lease),
            }),
            Ok(LeaseOutcome::Queued(waiter)) => match self.queued(waiter) {
                Some(ticket) => Ok(Started::Queued(ticket)),
                None => Err(StartError::NoTicket),
            },
            Err(e) => Err(StartError::Refused(e)),
        };
        self.pump();
        started
    }

    /// One more free ticket, if the answer table can grow.
    #[cold]
    #[inline(never)]
    fn grow_tickets(&mut self) -> bool {
        match self.tickets.grow(Ticket::free(I::Note::default())) {
            Some(t) => {
                self.free = t as u32;
                true
            }
            None => false,
        }
    }

    /// A connection granted at once whose object is not in the table
    /// (cannot happen while the tables match the core): back to the core as
    /// discarded; the request asks again.
    #[cold]
    #[inline(never)]
    fn not_lent(&mut self, lease: Lease) -> Started<I::Conn> {
        let now = self.core.now();
        let _ = self.core.release(lease, Release::Discard, now);
        Started::Retry
    }

    /// A queued request takes the free ticket (the caller made sure there
    /// is one).
    #[inline(never)]
    fn queued(&mut self, waiter: wharf_core::WaiterId) -> Option<TicketId> {
        let t = self.free;
        match self.by_core.get_mut(waiter.index()) {
            Some(slot) => {
                let ticket = &mut self.tickets[t as usize];
                self.free = match ticket.state {
                    State::Free { next } => next,
                    _ => NONE,
                };
                ticket.state = State::Waiting(waiter);
                *slot = t;
                Some(TicketId(t))
            }
            // The core has more waiter slots than `by_core` (tables not
            // sized as the core): withdraw.
            None => {
                let now = self.core.now();
                let _ = self.core.cancel(waiter, self.settings.cancel_policy, now);
                None
            }
        }
    }

    /// The answer to a queued request, once it is there (`waker` is woken
    /// when it arrives). A ready answer frees the ticket: do not use it again.
    pub fn poll_answer(
        &mut self,
        ticket: TicketId,
        waker: &Waker,
    ) -> Poll<Answer<I::Conn, I::ConnectError, I::Note>> {
        let Some(t) = self.tickets.get_mut(ticket.index()) else {
            return Poll::Ready(Answer::Retry);
        };
        let answered = match t.poll(waker) {
            None => return Poll::Pending,
            Some(a) => a,
        };
        let answer = match answered {
            Answered::Nothing => return Poll::Ready(Answer::Retry),
            Answered::Failed(reason, error, note) => Answer::Failed {
                reason,
                error,
                note,
            },
            Answered::Granted(lease) => match self.lend(lease) {
                Some(h) => Answer::Granted(h),
                None => {
                    self.free_ticket(ticket.0);
                    let now = self.core.now();
                    let _ = self.core.release(lease, Release::Discard, now);
                    self.pump();
                    return Poll::Ready(Answer::Retry);
                }
            },
        };
        self.free_ticket(ticket.0);
        Poll::Ready(answer)
    }

    /// A waiting lease future was dropped: withdraws its request, or, if a
    /// connection was granted to it meanwhile, gives that back with the tag
    /// and keep-alive it had (the abandoned-grant rule). The ticket is freed.
    pub fn cancel(&mut self, ticket: TicketId, now: Instant) {
        let Some(t) = self.tickets.get_mut(ticket.index()) else {
            return;
        };
        let state = core::mem::replace(&mut t.state, State::Free { next: NONE });
        match state {
            State::Free { next } => {
                // Not taken (a second cancel): leave it as it was.
                t.state = State::Free { next };
                return;
            }
            State::Waiting(waiter) => {
                if let Some(s) = self.by_core.get_mut(waiter.index()) {
                    *s = NONE;
                }
                let policy = self.settings.cancel_policy;
                if let Ok(Cancelled::Grant(lease)) = self.core.cancel(waiter, policy, now) {
                    // The core gave the unpolled grant back itself (cannot
                    // happen: the driver always drains). Its release keeps
                    // the tag but not the keep-alive; nothing left to do.
                    let _ = lease;
                }
            }
            State::Granted(lease) => self.give_back_unused(lease, now),
            State::Failed(..) => {}
        }
        self.free_ticket(ticket.0);
        self.pump();
    }

    fn free_ticket(&mut self, t: u32) {
        if let Some(ticket) = self.tickets.get_mut(t as usize) {
            ticket.state = State::Free { next: self.free };
            ticket.waker = None;
            ticket.note = I::Note::default();
            self.free = t;
        }
    }

    /// The ticket's note (for the backend's own per-request data).
    pub fn note_mut(&mut self, ticket: TicketId) -> Option<&mut I::Note> {
        self.tickets.get_mut(ticket.index()).map(|t| &mut t.note)
    }

    /// Moves a granted connection's object to its lease (a multiplexed
    /// connection's: a handle made by [`Io::share`]).
    #[inline(always)]
    fn lend(&mut self, lease: Lease) -> Option<Handout<I::Conn>> {
        let io = &mut self.io;
        let now = self.core.now();
        self.conns
            .get_mut(lease.conn().index())?
            .lend(lease, now, |obj| io.share(obj))
    }

    /// A lease gives its connection back (for a multiplexed connection: its
    /// handle, which is dropped here; the connection's object stays in the
    /// table). An object that does not belong to a leased connection of this
    /// driver (a second release) is disposed of. A connection back for reuse
    /// is watched again ([`Io::watch`]).
    ///
    /// The lease is checked once, by the core's `release`; the object goes
    /// into its slot only once the core took the lease back (before the
    /// drain, which may close the connection with its object). Inlined into
    /// the backend's release (the rest is out of line).
    #[inline(always)]
    pub fn release(&mut self, lease: Lease, obj: I::Conn, how: Returned, now: Instant) {
        let (release, reuse) = match how {
            Returned::Reuse { keep_alive, tag } => (Release::Reuse { keep_alive, tag }, true),
            Returned::Discard => (Release::Discard, false),
            Returned::PeerClosed => return self.release_peer_closed(lease, obj, now),
        };
        if self.core.release(lease, release, now).is_err() {
            return self.stale_release(obj);
        }
        let conn = lease.conn();
        let Some(e) = self.conns.get_mut(conn.index()) else {
            return self.stale_release(obj);
        };
        if let Release::Reuse { keep_alive, tag } = release {
            e.tag = tag;
            e.keep_alive_until = keep_alive.map(|k| now + k);
        }
        let exclusive = match e.give_back(obj, now) {
            Ok(None) => true,
            Ok(Some(handle)) => {
                drop(handle);
                false
            }
            Err(obj) => return self.stale_release(obj),
        };
        self.pump();
        if exclusive && reuse {
            self.rewatch(conn, now);
        }
    }

    /// A release the core refused (a second release, a lease of another
    /// pool): the object is disposed of. The core's clock moved (its
    /// `release` moves time first), so its actions are drained.
    #[cold]
    #[inline(never)]
    fn stale_release(&mut self, obj: I::Conn) {
        self.io.dispose(obj);
        self.pump();
    }

    /// `Returned::PeerClosed`: marks the connection draining, then gives it
    /// back; it closes as `PeerClosed` as it comes back.
    #[inline(never)]
    fn release_peer_closed(&mut self, lease: Lease, obj: I::Conn, now: Instant) {
        let conn = lease.conn();
        let Some(e) = self.conns.get_mut(conn.index()) else {
            return self.io.dispose(obj);
        };
        // The slot check before the core's: `peer_closed` names the
        // connection, not the lease.
        if !e.is(conn) {
            return self.io.dispose(obj);
        }
        let multiplexed = e.multiplexed;
        if let Err(obj) = e.give_back(obj, now) {
            return self.io.dispose(obj);
        }
        let _ = self.core.peer_closed(conn, now);
        if self.core.release(lease, Release::REUSE, now).is_err() {
            // The core does not know the lease (cannot happen for a lease of
            // this driver): do not keep its object.
            if !multiplexed {
                if let Some(e) = self.conns.get_mut(conn.index()) {
                    if let Some(obj) = e.forget() {
                        self.io.dispose(obj);
                    }
                }
            }
        }
        self.pump();
    }

    /// The backend found the connection handed out dead (the peer closed it
    /// while it was idle and no validation was due): it is closed as
    /// `PeerClosed`, and the request asks again (at most
    /// [`Driver::handout_tries`] times).
    pub fn dead_at_handout(&mut self, handout: Handout<I::Conn>, now: Instant) {
        let Handout { lease, conn, .. } = handout;
        self.release(lease, conn, Returned::PeerClosed, now);
    }

    /// A lease keeps its object for good (it leaves the pool): the pool
    /// forgets the connection (closed as `Discarded`, without its object).
    ///
    /// A lease of a multiplexed connection keeps its handle; the connection
    /// drains (the other leases finish, then it closes as `Discarded`).
    pub fn detach(&mut self, lease: Lease, now: Instant) {
        if let Some(e) = self.conns.get_mut(lease.conn().index()) {
            if e.is(lease.conn()) {
                if e.multiplexed {
                    e.out = e.out.saturating_sub(1);
                } else if matches!(e.hold, Hold::Lent) {
                    e.hold = Hold::Vacant;
                }
            }
        }
        let _ = self.core.release(lease, Release::Discard, now);
        self.pump();
    }
}
