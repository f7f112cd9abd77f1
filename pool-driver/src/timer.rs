//! The timer re-arm rule.
//!
//! The backend's timer task sleeps until the deadline it armed; an input only
//! disturbs it when the core's next deadline moved *earlier* than that (the
//! warm path, whose deadlines only move later or not at all, never wakes it).

use core::task::{Poll, Waker};

use wharf_core::Instant;

pub(crate) struct Timer {
    /// What the timer task sleeps until (`MAX`: nothing).
    armed: Instant,
    /// An earlier deadline appeared since the task armed.
    kicked: bool,
    /// Kicked with wakes deferred: the waker is to be taken
    /// ([`Driver::take_waker`](crate::Driver::take_waker)).
    pub(crate) wake_pending: bool,
    /// Wakes are deferred ([`Driver::defer_wakes`](crate::Driver::defer_wakes)).
    pub(crate) defer: bool,
    pub(crate) waker: Option<Waker>,
}

impl Timer {
    pub(crate) const fn new() -> Self {
        Timer {
            armed: Instant::MAX,
            kicked: false,
            wake_pending: false,
            defer: false,
            waker: None,
        }
    }

    /// After every drain: wake the timer task if `next` is earlier than what
    /// it sleeps until.
    #[inline]
    pub(crate) fn rearm(&mut self, next: Option<Instant>) {
        if let Some(t) = next {
            if t < self.armed {
                self.armed = t;
                self.kick();
            }
        }
    }

    /// Wakes the timer task whatever its deadline.
    pub(crate) fn kick(&mut self) {
        self.kicked = true;
        if self.defer {
            self.wake_pending = self.waker.is_some();
        } else if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// The timer task arms for `next`.
    pub(crate) fn arm(&mut self, next: Option<Instant>) {
        self.armed = next.unwrap_or(Instant::MAX);
        self.kicked = false;
    }

    /// Ready once kicked (since the last `arm`).
    pub(crate) fn poll_kick(&mut self, waker: &Waker) -> Poll<()> {
        if self.kicked {
            return Poll::Ready(());
        }
        match &mut self.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        Poll::Pending
    }
}
