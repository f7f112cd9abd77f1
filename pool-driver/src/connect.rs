//! Connection inputs: connect results and validation results.

use core::hash::Hash;

use wharf_core::{ConnId, ConnectFailure, Index, Instant, Validation};

use crate::conns::Hold;
use crate::driver::Driver;
use crate::io::Io;

/// Why a connect result was not taken: the pool no longer wants the
/// connection (its connect timed out, a drain or `CloseExcess` closed it).
/// The object, if any, went to [`Io::dispose`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Unwanted;

impl<K: Eq + Hash + Clone, I: Io<K, Ix>, Ix: Index> Driver<'_, K, I, Ix> {
    /// `conn`'s connect succeeded with `obj`, an exclusive connection (one
    /// lease at a time; the object moves into the lease). Waiting requests
    /// of its route are served; the idle object is watched ([`Io::watch`]).
    pub fn connected(&mut self, conn: ConnId, obj: I::Conn, now: Instant) -> Result<(), Unwanted> {
        self.connected_with(conn, obj, None, now)
    }

    /// `conn`'s connect succeeded with `obj`, a multiplexed connection that
    /// serves up to `capacity` leases at once (an HTTP/2 peer's
    /// `MAX_CONCURRENT_STREAMS`; at least 1, clamped to the core's
    /// `MAX_STREAMS`). The object stays in the table for the connection's
    /// life; each lease gets a handle of its own from [`Io::share`]. It is
    /// watched for its whole life ([`Io::watch`]: a capacity change, a
    /// graceful shutdown).
    pub fn connected_multiplexed(
        &mut self,
        conn: ConnId,
        obj: I::Conn,
        capacity: u32,
        now: Instant,
    ) -> Result<(), Unwanted> {
        self.connected_with(conn, obj, Some(capacity.max(1)), now)
    }

    fn connected_with(
        &mut self,
        conn: ConnId,
        obj: I::Conn,
        multiplexed: Option<u32>,
        now: Instant,
    ) -> Result<(), Unwanted> {
        let entry = match self.conns.get_mut(conn.index()) {
            Some(e) if e.is(conn) && matches!(e.hold, Hold::Connecting) => e,
            _ => {
                self.io.dispose(obj);
                return Err(Unwanted);
            }
        };
        entry.hold = Hold::Here(obj);
        entry.multiplexed = multiplexed.is_some();
        entry.out = 0;
        entry.idle_since = now;
        // In the pool idle, unless a request is granted it in this drain
        // (`granted`: straight from its connect).
        entry.pooled = true;
        let accepted = self.core.connected(conn, multiplexed.unwrap_or(1), now);
        // Refused when its connect timed out at this very instant: the drain
        // delivers its `Close` with the object.
        self.arriving = Some(conn);
        self.pump();
        self.arriving = None;
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
        self.rewatch(conn, now);
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
        self.fail_connect(conn, reason, Some(error), now)
    }

    /// `conn`'s connect ended with nothing to report: the backend's connect
    /// task panicked (a bug in the connector) or was dropped without an
    /// answer. It fails as `reason` exactly as
    /// [`connect_failed`](Driver::connect_failed), and the requests queued
    /// on the route get no error (`None`), so the slot is freed and nobody
    /// waits for an answer that will not come.
    pub fn connect_lost(
        &mut self,
        conn: ConnId,
        reason: ConnectFailure,
        now: Instant,
    ) -> Result<(), Unwanted> {
        self.fail_connect(conn, reason, None, now)
    }

    fn fail_connect(
        &mut self,
        conn: ConnId,
        reason: ConnectFailure,
        error: Option<I::ConnectError>,
        now: Instant,
    ) -> Result<(), Unwanted> {
        match self.conns.get_mut(conn.index()) {
            Some(e) if e.is(conn) && matches!(e.hold, Hold::Connecting) => {
                e.forget();
            }
            _ => return Err(Unwanted),
        }
        self.connect_error = error;
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
        self.rewatch(conn, now);
        Ok(())
    }
}
