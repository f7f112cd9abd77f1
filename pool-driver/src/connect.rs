//! Connection inputs: connect results and validation results.

use core::hash::Hash;

use wharf_core::{ConnId, ConnectFailure, Instant, Validation};

use crate::conns::Hold;
use crate::driver::Driver;
use crate::io::Io;

/// Why a connect result was not taken: the pool no longer wants the
/// connection (its connect timed out, a drain or `CloseExcess` closed it).
/// The object, if any, went to [`Io::dispose`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Unwanted;

impl<K: Eq + Hash + Clone, I: Io<K>> Driver<'_, K, I> {
    /// `conn`'s connect succeeded with `obj` (one stream at a time). Waiting
    /// requests of its route are served.
    pub fn connected(&mut self, conn: ConnId, obj: I::Conn, now: Instant) -> Result<(), Unwanted> {
        let entry = match self.conns.get_mut(conn.index()) {
            Some(e) if e.is(conn) && matches!(e.hold, Hold::Connecting) => e,
            _ => {
                self.io.dispose(obj);
                return Err(Unwanted);
            }
        };
        entry.hold = Hold::Here(obj);
        let accepted = self.core.connected(conn, 1, now);
        // Refused when its connect timed out at this very instant: the drain
        // delivers its `Close` with the object.
        self.pump();
        if accepted.is_err() {
            if let Some(e) = self.conns.get_mut(conn.index()) {
                if e.is(conn) {
                    if let Some(obj) = e.forget() {
                        self.io.dispose(obj);
                    }
                }
            }
            return Err(Unwanted);
        }
        Ok(())
    }

    /// `conn`'s connect failed. `reason` is the backend's classification and
    /// is kept as it is: a backend-reported `Timeout` counts as a timeout,
    /// exactly like the core's own connect timeout. Every request queued on
    /// the route fails with it and gets a clone of `error`.
    pub fn connect_failed(
        &mut self,
        conn: ConnId,
        reason: ConnectFailure,
        error: I::ConnectError,
        now: Instant,
    ) -> Result<(), Unwanted> {
        match self.conns.get_mut(conn.index()) {
            Some(e) if e.is(conn) && matches!(e.hold, Hold::Connecting) => {
                e.forget();
            }
            _ => return Err(Unwanted),
        }
        self.connect_error = Some(error);
        let _ = self.core.connect_failed(conn, reason, now);
        self.pump();
        self.connect_error = None;
        Ok(())
    }

    /// The answer to an [`Io::validate`] that returned
    /// [`Checked::Pending`](crate::Checked::Pending): the object back and the
    /// result. If the connection was closed meanwhile, the object is
    /// disposed of.
    pub fn validated(
        &mut self,
        conn: ConnId,
        obj: I::Conn,
        result: Validation,
        now: Instant,
    ) -> Result<(), Unwanted> {
        match self.conns.get_mut(conn.index()) {
            Some(e) if e.is(conn) && matches!(e.hold, Hold::Checking) => e.hold = Hold::Here(obj),
            _ => {
                self.io.dispose(obj);
                return Err(Unwanted);
            }
        }
        let accepted = self.core.validated(conn, result, now);
        self.pump();
        if accepted.is_err() {
            if let Some(e) = self.conns.get_mut(conn.index()) {
                if e.is(conn) {
                    if let Some(obj) = e.forget() {
                        self.io.dispose(obj);
                    }
                }
            }
            return Err(Unwanted);
        }
        Ok(())
    }
}
