//! Connection inputs from the backend: connect results, peer close, validation.

use crate::index::Index;
use core::hash::Hash;

use super::{Pool, Validation};
use crate::action::{CloseReason, ConnectFailure, FailReason};
use crate::error::ConnError;
use crate::handle::ConnId;
use crate::slot::{ConnState, RouteListKind, NIL};
use crate::time::Instant;

impl<K: Eq + Hash + Clone, I: Index> Pool<'_, K, I> {
    fn connecting_conn(&self, conn: ConnId) -> Result<u32, ConnError> {
        let c = self.live_conn(conn)?;
        let cs = &self.conns[c as usize];
        if cs.state != ConnState::Connecting || !cs.delivered() {
            return Err(ConnError::WrongState);
        }
        Ok(c)
    }

    /// The connect for `conn` succeeded; it can carry `capacity` concurrent
    /// leases (1 for HTTP/1; at most [`Pool::MAX_STREAMS`], larger values are
    /// clamped). Queued waiters of its route are served FIFO (§6). The
    /// connection starts untagged, or with strict tags with the tag its connect
    /// was made for ([`Pool::connect_tag`]); see [`Pool::connected_as`].
    pub fn connected(
        &mut self,
        conn: ConnId,
        capacity: u32,
        now: Instant,
    ) -> Result<(), ConnError> {
        let tag = self.connect_tag(conn);
        self.connected_as(conn, capacity, tag, now)
    }

    /// [`Pool::connected`] for a connection whose identity was fixed when it
    /// was made (a TLS client certificate, a database session logged in as a
    /// user): it starts with `tag`. With
    /// [`Config::strict_tags`](crate::Config::strict_tags) it keeps that tag
    /// for life and serves only leases asking for it; the tag a demand
    /// connect was made for is [`Pool::connect_tag`].
    pub fn connected_as(
        &mut self,
        conn: ConnId,
        capacity: u32,
        tag: Option<crate::Tag>,
        now: Instant,
    ) -> Result<(), ConnError> {
        self.advance(now);
        let c = self.connecting_conn(conn)?;
        if capacity == 0 {
            return Err(ConnError::ZeroCapacity);
        }
        let capacity = capacity.min(Self::MAX_STREAMS);
        let r = self.conns[c as usize].route.get();
        self.route_list_remove(c);
        self.conns.connecting -= 1;
        let now = self.now;
        let validity = match self.cfg.max_lifetime {
            Some(t) => now + t + self.lifetime_jitter(t),
            None => Instant::MAX,
        };
        let remaining = self.cfg.max_leases_per_conn.unwrap_or(u32::MAX);
        let cs = &mut self.conns[c as usize];
        cs.state = ConnState::Ready;
        cs.capacity = capacity;
        cs.active = 0;
        cs.remaining = remaining;
        cs.set_used(false);
        cs.set_tag(tag);
        cs.updated = now;
        cs.validity = validity;
        cs.expiry = validity;
        self.counters.connected += 1;
        self.place(c);
        self.offer(c);
        self.after_available(c);
        if self.conns[c as usize].state == ConnState::Ready {
            self.rearm_conn(c);
        }
        self.settle(r);
        Ok(())
    }

    /// Envoy's `max_connection_duration_jitter`: a lifetime `t` is extended by
    /// `floor(z * span / 2^64)`, `span = t * jitter% `, `z` the pool's next
    /// splitmix64 draw (§2). No draw without jitter.
    fn lifetime_jitter(&mut self, t: crate::time::Duration) -> crate::time::Duration {
        let pct = self.cfg.jitter_percent as u128;
        if pct == 0 {
            return crate::time::Duration::ZERO;
        }
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = crate::hash::splitmix(self.rng) as u128;
        let span = t.as_micros() as u128 * pct / 100;
        crate::time::Duration::from_micros(((z * span) >> 64) as u64)
    }

    /// With [`Config::strict_tags`](crate::Config::strict_tags): the tag the
    /// connect of `conn` was made for (the identity a waiting lease needs), so
    /// the connector can open it as that identity and report it with
    /// [`Pool::connected_as`]. `None` for a connect made for untagged leases,
    /// for preconnects and warm-up, without strict tags, or when `conn` is not
    /// connecting.
    pub fn connect_tag(&self, conn: ConnId) -> Option<crate::Tag> {
        let c = self.live_conn(conn).ok()?;
        let cs = &self.conns[c as usize];
        if cs.state == ConnState::Connecting {
            cs.tag()
        } else {
            None
        }
    }

    /// The connect for `conn` failed. Every queued waiter of its route fails
    /// with the reason (Envoy), then the route may connect again (§6).
    pub fn connect_failed(
        &mut self,
        conn: ConnId,
        reason: ConnectFailure,
        now: Instant,
    ) -> Result<(), ConnError> {
        self.advance(now);
        let c = self.connecting_conn(conn)?;
        self.connect_failure(c, reason, false);
        Ok(())
    }

    /// A failed connect of slot `c`: reported by the backend, or timed out by
    /// the core's own timer (`timer`), which alone asks the backend to abort it.
    pub(crate) fn connect_failure(&mut self, c: u32, reason: ConnectFailure, timer: bool) {
        let r = self.conns[c as usize].route.get();
        self.counters.connect_failures[reason as usize] += 1;
        if timer {
            self.close(c, CloseReason::ConnectTimeout);
        } else {
            self.detach_conn(c);
            self.act_remove(Self::conn_entity(c));
            self.free_conn_slot(c);
        }
        self.fail_queue(r, FailReason::ConnectFailed(reason));
        if !self.cfg.retry_backoff.is_zero() {
            let until = self.now + self.cfg.retry_backoff;
            let seq = self.routes[r as usize].seq;
            self.routes[r as usize].set_retrying(true);
            self.routes[r as usize].retry_until = until;
            self.routes.timers.arm(r, until, seq, &mut self.due);
        }
        self.settle(r);
    }

    /// The stream capacity of open connection `conn` changed (an HTTP/2 peer's
    /// SETTINGS lowered or raised `MAX_CONCURRENT_STREAMS`) (§7). Leases
    /// already out stay; while `active >= capacity` it takes no new lease.
    /// At least 1 (`ZeroCapacity`; a peer that allows no new streams for good
    /// is drained with [`Pool::peer_closed`]); larger than
    /// [`Pool::MAX_STREAMS`] is clamped. A connection still connecting is
    /// `WrongState`.
    pub fn set_capacity(
        &mut self,
        conn: ConnId,
        capacity: u32,
        now: Instant,
    ) -> Result<(), ConnError> {
        self.advance(now);
        let c = self.live_conn(conn)?;
        if self.conns[c as usize].state == ConnState::Connecting {
            return Err(ConnError::WrongState);
        }
        if capacity == 0 {
            return Err(ConnError::ZeroCapacity);
        }
        let capacity = capacity.min(Self::MAX_STREAMS);
        let r = self.conns[c as usize].route.get();
        let cs = &self.conns[c as usize];
        let raised = capacity > cs.capacity;
        if cs.list == RouteListKind::Ready {
            if cs.active < capacity {
                // Still available: it keeps its place, only the spare changes.
                let before = cs.streams_left();
                self.conns[c as usize].capacity = capacity;
                let after = self.conns[c as usize].streams_left();
                let s = &mut self.routes[r as usize];
                s.spare = s.spare + after as u64 - before as u64;
            } else {
                self.route_list_remove(c);
                self.conns[c as usize].capacity = capacity;
                self.route_list_push(c, RouteListKind::Busy, false);
            }
        } else {
            self.conns[c as usize].capacity = capacity;
            if self.conns[c as usize].available() {
                // It was full (a draining or validating one never becomes
                // available here).
                self.place(c);
            }
        }
        if raised && self.conns[c as usize].available() {
            self.offer(c);
        }
        self.settle(r);
        Ok(())
    }

    /// The peer closed `conn` (FIN or RST seen by the backend) (§7).
    pub fn peer_closed(&mut self, conn: ConnId, now: Instant) -> Result<(), ConnError> {
        self.advance(now);
        let c = self.live_conn(conn)?;
        let r = self.conns[c as usize].route.get();
        match self.conns[c as usize].state {
            ConnState::Connecting => return Err(ConnError::WrongState),
            ConnState::Validating => {
                let w = self.conns[c as usize].waiter.get();
                self.close(c, CloseReason::PeerClosed);
                if w != NIL {
                    self.retry(w);
                }
            }
            _ => {
                if self.conns[c as usize].active == 0 {
                    self.close(c, CloseReason::PeerClosed);
                } else {
                    self.start_draining(c, CloseReason::PeerClosed);
                }
            }
        }
        self.settle(r);
        Ok(())
    }

    /// The answer to a `Validate` action (§7).
    pub fn validated(
        &mut self,
        conn: ConnId,
        result: Validation,
        now: Instant,
    ) -> Result<(), ConnError> {
        self.advance(now);
        let c = self.live_conn(conn)?;
        let cs = &self.conns[c as usize];
        if cs.state != ConnState::Validating || !cs.delivered() {
            return Err(ConnError::WrongState);
        }
        let r = cs.route.get();
        let w = cs.waiter.get();
        let now = self.now;
        match result {
            Validation::Stale => {
                self.counters.stale += 1;
                self.close(c, CloseReason::Stale);
                if w != NIL {
                    self.retry(w);
                }
            }
            Validation::Alive => {
                let cs = &mut self.conns[c as usize];
                cs.updated = now;
                cs.set_kept(false);
                cs.state = ConnState::Ready;
                cs.waiter = I::NIL;
                if cs.draining() || cs.expiry.reached(now) {
                    let reason = if cs.draining() {
                        cs.reason
                    } else {
                        CloseReason::Expired
                    };
                    self.close(c, reason);
                    if w != NIL {
                        self.retry(w);
                    }
                } else {
                    if w != NIL {
                        self.grant(c, w);
                    }
                    self.place(c);
                    self.offer(c);
                    self.after_available(c);
                    if self.conns[c as usize].state == ConnState::Ready {
                        self.rearm_conn(c);
                    }
                }
            }
        }
        self.settle(r);
        Ok(())
    }
}
