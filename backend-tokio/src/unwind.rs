//! A connector's future that panics ends that one step, not the pool.
//!
//! The pool runs the connector's connect, validation and close futures in
//! its own tasks (and a close's first poll in the caller's). A panic there
//! is a bug in the connector; left alone it would unwind the task and leave
//! the core waiting for an answer that never comes: a connection slot held
//! for good (with no connect timeout), a lease waiting until its deadline,
//! or `Pool::close` never completing. [`CatchUnwind`] turns the panic into
//! a result the task reports like any other failure (the process's panic
//! hook has already printed it). With `panic = "abort"` there is nothing to
//! catch.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The future panicked; it is not polled again.
pub(crate) struct Panicked;

/// Makes the future (`f` is the connector's method: a hand-written one may
/// panic before it returns its future) and polls it, a panic in either
/// turned into `Err(Panicked)`.
pub(crate) async fn guarded<F: Future>(f: impl FnOnce() -> F) -> Result<F::Output, Panicked> {
    let fut = catch_unwind(AssertUnwindSafe(f)).map_err(|_| Panicked)?;
    CatchUnwind(std::pin::pin!(fut)).await
}

/// Polls `F`, turning a panic into `Err(Panicked)`.
///
/// Unwind safety: the future is dropped without being polled again, and the
/// pool's state is not inside it (the driver is only touched after it ends,
/// under the lock); what the connector's own state holds after its panic is
/// the connector's (a validated connection is closed, not reused).
pub(crate) struct CatchUnwind<F>(pub F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(fut).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(Panicked)),
        }
    }
}
