//! Watching the connections the driver holds: what a connection's watcher
//! saw (the peer closed it, a new stream capacity) becomes the core's
//! `peer_closed` / `set_capacity`, at once.

use core::hash::Hash;

use wharf_core::{ConnError, ConnId, Index, Instant};

use crate::driver::Driver;
use crate::io::{ConnEvent, Io};

/// Events applied per watch before giving up on a connection that keeps
/// reporting (a capacity flapping); the next wake asks again.
const EVENTS_PER_WATCH: usize = 8;

impl<K: Eq + Hash + Clone, I: Io<K, Ix>, Ix: Index> Driver<'_, K, I, Ix> {
    /// The peer closed `conn` (FIN, RST, unexpected bytes) or shut it down
    /// gracefully (HTTP/2 GOAWAY), as the backend saw it: idle, it closes at
    /// once as `PeerClosed` (a waiter gets another connection); with leases
    /// out it drains (they finish, no new lease starts). See the core's
    /// `peer_closed`.
    pub fn peer_closed(&mut self, conn: ConnId, now: Instant) -> Result<(), ConnError> {
        let r = self.core.peer_closed(conn, now);
        self.pump();
        r
    }

    /// `conn`'s stream capacity changed (an HTTP/2 peer's SETTINGS). See the
    /// core's `set_capacity`: leases out stay, a raise serves waiters.
    pub fn set_capacity(
        &mut self,
        conn: ConnId,
        capacity: u32,
        now: Instant,
    ) -> Result<(), ConnError> {
        let r = self.core.set_capacity(conn, capacity, now);
        self.pump();
        r
    }

    /// Asks [`Io::watch`] again about the connection in slot `index` (its
    /// watcher was woken), if the driver holds its object, and applies what
    /// it saw. Returns true if an event was applied.
    pub fn watch(&mut self, index: usize, now: Instant) -> bool {
        match self.conns.get(index).and_then(|e| e.id) {
            Some(conn) => self.rewatch(conn, now),
            None => false,
        }
    }

    /// [`Driver::watch`] for every connection the driver holds (a backend
    /// with one waker for all its sockets: a few connection slots on
    /// firmware). Returns how many events were applied.
    pub fn watch_all(&mut self, now: Instant) -> usize {
        let mut applied = 0;
        for index in 0..self.conns.len() {
            if self.watch(index, now) {
                applied += 1;
            }
        }
        applied
    }

    /// Watches `conn` if the driver holds its object; applies what the
    /// watcher saw at once (each event is an input: the core is drained).
    pub(crate) fn rewatch(&mut self, conn: ConnId, now: Instant) -> bool {
        let mut applied = false;
        for _ in 0..EVENTS_PER_WATCH {
            let Some(entry) = self.conns.get_mut(conn.index()) else {
                return applied;
            };
            let event = match entry.here_mut() {
                Some((id, obj)) if id == conn => self.io.watch(conn, obj),
                _ => return applied,
            };
            let Some(event) = event else {
                return applied;
            };
            applied = true;
            match event {
                ConnEvent::PeerClosed => {
                    // Closed now (idle) or draining (leases out): nothing
                    // more to watch for.
                    let _ = self.peer_closed(conn, now);
                    return true;
                }
                ConnEvent::Capacity(0) => return true,
                ConnEvent::Capacity(k) => {
                    let _ = self.set_capacity(conn, k, now);
                }
            }
        }
        applied
    }
}
