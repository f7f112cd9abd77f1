//! The answer table: where the answer to a waiting lease request waits for
//! its future.
//!
//! Kept apart from the core's waiter slots, which the core reuses as soon as
//! an answer is polled (the future may look much later). `by_core` maps a core
//! waiter index to its ticket until the answer arrives.

use core::task::Waker;

use wharf_core::{FailReason, Lease, WaiterId};

use crate::conns::Handout;

pub(crate) const NONE: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) enum State<E> {
    Free { next: u32 },
    Waiting(WaiterId),
    Granted(Lease),
    Failed(FailReason, Option<E>),
}

/// One answer ticket. Storage for firmware: `[Ticket::FREE; W]`.
#[derive(Debug)]
pub struct Ticket<E, N> {
    pub(crate) state: State<E>,
    pub(crate) waker: Option<Waker>,
    pub(crate) note: N,
    /// In the driver's list of deferred wakes ([`Driver::defer_wakes`](crate::Driver::defer_wakes)).
    pub(crate) listed: bool,
    /// The next ticket in that list (`NONE`: the last).
    pub(crate) wake_next: u32,
}

impl<E, N: Default> Ticket<E, N> {
    /// A free ticket (with a `const` note for `const` tables, e.g. `()`).
    pub const fn free(note: N) -> Self {
        Ticket {
            state: State::Free { next: NONE },
            waker: None,
            note,
            listed: false,
            wake_next: NONE,
        }
    }

    /// Takes the answer (and the note) if there is one; else keeps `waker`.
    pub(crate) fn poll(&mut self, waker: &Waker) -> Option<Answered<E, N>> {
        match self.state {
            State::Waiting(_) => {
                match &mut self.waker {
                    Some(w) if w.will_wake(waker) => {}
                    slot => *slot = Some(waker.clone()),
                }
                None
            }
            State::Free { .. } => Some(Answered::Nothing),
            State::Granted(lease) => Some(Answered::Granted(lease)),
            State::Failed(..) => {
                let State::Failed(reason, error) =
                    core::mem::replace(&mut self.state, State::Free { next: NONE })
                else {
                    return Some(Answered::Nothing);
                };
                Some(Answered::Failed(
                    reason,
                    error,
                    core::mem::take(&mut self.note),
                ))
            }
        }
    }
}

impl<E> Ticket<E, ()> {
    /// A free ticket with no note.
    pub const FREE: Self = Ticket::free(());
}

pub(crate) enum Answered<E, N> {
    Nothing,
    Granted(Lease),
    Failed(FailReason, Option<E>, N),
}

/// A waiting lease request's ticket (its index in the answer table). The
/// future that got it from the driver owns it: poll with
/// [`Driver::poll_answer`](crate::Driver::poll_answer) until it is ready, or
/// withdraw it with [`Driver::cancel`](crate::Driver::cancel), exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TicketId(pub(crate) u32);

impl TicketId {
    /// The index in the answer table.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The answer a waiting lease request got.
#[derive(Debug)]
pub enum Answer<T, E, N> {
    /// A connection: hand it to the lease (after the backend's own check, see
    /// [`Driver::dead_at_handout`](crate::Driver::dead_at_handout)).
    Granted(Handout<T>),
    /// The request failed.
    Failed {
        /// Why.
        reason: FailReason,
        /// The connect error, for `ConnectFailed` reported by the backend
        /// (`None` for the core's own connect timeout).
        error: Option<E>,
        /// The ticket's note, as [`Io::failed`](crate::Io::failed) left it.
        note: N,
    },
    /// The granted connection could not be handed out (it was closed before
    /// the future looked): ask again.
    Retry,
}
