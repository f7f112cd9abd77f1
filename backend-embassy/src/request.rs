//! A lease request: its synchronous part (ask the driver) and its waiting
//! part (the answer ticket), cancel-safe.

use core::future::poll_fn;

use wharf_core::{Instant, LeaseOutcome};
use wharf_driver::{Answer, StartError, Started, TicketId};

use crate::clock::now;
use crate::error::Error;
use crate::lease::Lease;
use crate::state::{CorePool, Shared};

/// A lease request after its synchronous part (see [`Request::start`]).
pub(crate) enum Request<'d, const H: usize> {
    /// Granted at once (`None`: the connection was found dead and closed).
    Granted(Option<Lease<'d, H>>),
    /// Queued: the answer comes through the ticket.
    Queued(TicketGuard<'d, H>),
}

impl<'d, const H: usize> Request<'d, H> {
    /// Asks the driver (`ask` calls the core, under the lock). A grant is
    /// turned into a [`Lease`] at once; a queued request holds its ticket in
    /// a guard that withdraws it when dropped. Either way nothing is left
    /// behind if the result is dropped without being finished.
    pub(crate) fn start(
        shared: &'d Shared<'d, H>,
        ask: impl FnOnce(&mut CorePool<'d, H>, Instant) -> Result<LeaseOutcome, Error>,
    ) -> Result<Request<'d, H>, Error> {
        let now = now();
        let mut inner = shared.inner.borrow_mut();
        match inner.lease_by(|core| ask(core, now)) {
            Ok(Started::Granted(h)) => Ok(Request::Granted(Lease::hand_out(
                shared, &mut inner, h, now,
            ))),
            Ok(Started::Queued(ticket)) => Ok(Request::Queued(TicketGuard {
                shared,
                ticket,
                armed: true,
            })),
            Ok(Started::Retry) => Ok(Request::Granted(None)),
            Err(StartError::NoTicket) => Err(Error::Overflow),
            Err(StartError::Refused(e)) => Err(e),
        }
    }

    /// Waits for the answer of a queued request (the normal waiter path).
    pub(crate) async fn finish(self) -> Result<Option<Lease<'d, H>>, Error> {
        let mut guard = match self {
            Request::Granted(lease) => return Ok(lease),
            Request::Queued(guard) => guard,
        };
        let shared = guard.shared;
        let ticket = guard.ticket;
        let answer = poll_fn(|cx| shared.inner.borrow_mut().poll_answer(ticket, cx.waker())).await;
        // The ticket is freed: never withdraw it again.
        guard.armed = false;
        match answer {
            Answer::Granted(h) => {
                let mut inner = shared.inner.borrow_mut();
                Ok(Lease::hand_out(shared, &mut inner, h, now()))
            }
            Answer::Failed { reason, .. } => Err(reason.into()),
            Answer::Retry => Ok(None),
        }
    }
}

/// Withdraws a queued request when dropped (the future was dropped): the
/// driver cancels it, or gives back a connection granted to it meanwhile
/// with its tag and keep-alive.
pub(crate) struct TicketGuard<'d, const H: usize> {
    shared: &'d Shared<'d, H>,
    ticket: TicketId,
    armed: bool,
}

impl<const H: usize> Drop for TicketGuard<'_, H> {
    fn drop(&mut self) {
        if self.armed {
            let now = now();
            self.shared.inner.borrow_mut().cancel(self.ticket, now);
        }
    }
}
