//! The state every handle, lease and task shares: the core behind one lock,
//! the per-slot tables the core's handles index, and the queue of work that
//! runs outside the lock.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use wharf_core::{
    Action, CancelPolicy, CloseReason, ConnId, Duration, FailReason, Instant, Release, RouteId,
    Tag, Validation, WaiterId,
};

use crate::trace;
use crate::{Connector, Error};

/// What a waiter slot learned while its future was not looking.
pub(crate) enum Answer {
    Granted(wharf_core::Lease),
    /// The reason, the connect error, and for a cluster lease the host's
    /// name (taken when the failure is delivered, while the route is live).
    Failed(FailReason, Option<Arc<io::Error>>, Option<String>),
}

/// One waiter slot, indexed by `WaiterId::index()`; pre-sized, so a waiting
/// lease allocates nothing.
pub(crate) struct WaiterSlot {
    pub id: Option<WaiterId>,
    pub waker: Option<Waker>,
    pub answer: Option<Answer>,
    /// For a cluster lease: the host's route (to name it in a failure).
    pub host: Option<RouteId>,
}

impl WaiterSlot {
    const EMPTY: WaiterSlot = WaiterSlot {
        id: None,
        waker: None,
        answer: None,
        host: None,
    };
}

pub(crate) const NO_SLOT: u32 = u32::MAX;

impl<K: 'static, T> Inner<K, T> {
    /// Takes a waiter slot for a queued core waiter.
    pub fn alloc_waiter(&mut self, waiter: WaiterId, waker: Waker) -> u32 {
        let s = match self.free.pop() {
            Some(s) => s,
            None => {
                // More answered-but-untaken failures than expected: grow.
                self.waiters.push(WaiterSlot::EMPTY);
                (self.waiters.len() - 1) as u32
            }
        };
        let slot = &mut self.waiters[s as usize];
        slot.id = Some(waiter);
        slot.waker = Some(waker);
        slot.answer = None;
        slot.host = None;
        self.by_core[waiter.index()] = s;
        s
    }

    /// Gives a waiter slot back.
    pub fn free_waiter(&mut self, s: u32) {
        let slot = &mut self.waiters[s as usize];
        slot.id = None;
        slot.waker = None;
        slot.answer = None;
        slot.host = None;
        self.free.push(s);
    }

    /// The slot waiting for the core's answer to `waiter` (the core forgets
    /// the waiter once the answer is polled, so the link goes).
    fn answered(&mut self, waiter: WaiterId) -> Option<&mut WaiterSlot> {
        let s = std::mem::replace(&mut self.by_core[waiter.index()], NO_SLOT);
        if s == NO_SLOT {
            return None;
        }
        let slot = &mut self.waiters[s as usize];
        (slot.id == Some(waiter)).then_some(slot)
    }
}

impl<K: Eq + Hash + Clone + 'static, T> Inner<K, T> {
    /// The key of a cluster waiter's host route, if it is still live.
    fn waiter_host(&self, waiter: WaiterId) -> Option<&K> {
        let s = self.by_core[waiter.index()];
        let slot = self.waiters.get(s as usize)?;
        if slot.id != Some(waiter) {
            return None;
        }
        self.core.route_key(slot.host?)
    }
}

/// One connection slot, indexed by `ConnId::index()`.
pub(crate) struct ConnSlot<T> {
    /// The connection the core has in this slot (connecting, ready,
    /// validating or leased); `None` once it was closed.
    pub id: Option<ConnId>,
    /// The connection object while it is idle (or granted but not yet picked up).
    pub conn: Option<T>,
    /// The connect task, while connecting.
    pub abort: Option<AbortHandle>,
    /// The connection's tag, as last released.
    pub tag: Option<Tag>,
    /// Keep-alive expiry announced at the last release.
    pub keep_alive_until: Option<Instant>,
    /// Leases served.
    pub served: u64,
}

impl<T> ConnSlot<T> {
    const fn empty() -> Self {
        ConnSlot {
            id: None,
            conn: None,
            abort: None,
            tag: None,
            keep_alive_until: None,
            served: 0,
        }
    }
}

/// Work for outside the lock, in the order the core asked for it.
pub(crate) enum Op<K, T> {
    Connect {
        conn: ConnId,
        key: K,
    },
    Validate {
        conn: ConnId,
        obj: T,
    },
    Close {
        conn: ConnId,
        obj: T,
        reason: CloseReason,
    },
}

pub(crate) struct Inner<K: 'static, T> {
    pub core: wharf_core::Pool<'static, K>,
    pub conns: Vec<ConnSlot<T>>,
    /// The backend's waiter slots. Separate from the core's: the core frees
    /// its slot when the answer is polled, ours lives until the future takes
    /// the answer (or is dropped).
    pub waiters: Vec<WaiterSlot>,
    /// Free slots of `waiters`.
    pub free: Vec<u32>,
    /// Core waiter index -> our slot (`NO_SLOT` when none).
    pub by_core: Vec<u32>,
    pub ops: VecDeque<Op<K, T>>,
    /// Some task is running `ops` (one at a time keeps their order).
    pub flushing: bool,
    /// The time the driver sleeps until.
    pub armed: Instant,
    /// The error of the connect being reported, for the waiters it fails.
    pub connect_error: Option<Arc<io::Error>>,
    /// A close happened: `close()` waiters want to know.
    pub closed_some: bool,
    /// The clusters ([`crate::ClusterHandle`] indexes them); a removed
    /// cluster's slot is reused with a new generation.
    pub clusters: Vec<ClusterSlot<K>>,
}

/// The most hosts a cluster holds.
pub(crate) const MAX_HOSTS: usize = 64;

/// One cluster slot.
pub(crate) struct ClusterSlot<K> {
    pub gen: u32,
    pub entry: Option<ClusterEntry<K>>,
}

/// A cluster: its name (for errors) and the core's cluster (boxed: it holds
/// `MAX_HOSTS` host slots).
pub(crate) struct ClusterEntry<K> {
    pub name: String,
    pub cluster: Box<wharf_core::Cluster<K, MAX_HOSTS>>,
}

pub(crate) struct Settings {
    pub lease_timeout: Option<Duration>,
    pub cancel_policy: CancelPolicy,
}

pub(crate) struct Shared<K, C>
where
    K: fmt::Debug + 'static,
    C: Connector<K>,
{
    pub inner: Mutex<Inner<K, C::Conn>>,
    pub connector: C,
    /// Wakes the driver (a timer moved earlier, or the last handle dropped).
    pub driver_wake: Notify,
    /// Connections closed (for `close().await`).
    pub closed: Notify,
    pub base: tokio::time::Instant,
    pub rt: Handle,
    pub handles_gone: AtomicBool,
    pub tasks: AtomicUsize,
    pub settings: Settings,
}

fn noop_poll<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    fut.poll(&mut cx)
}

impl<K, C> Shared<K, C>
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    C: Connector<K>,
{
    pub fn new(
        core: wharf_core::Pool<'static, K>,
        conns: usize,
        waiters: usize,
        connector: C,
        rt: Handle,
        settings: Settings,
    ) -> Self {
        Shared {
            inner: Mutex::new(Inner {
                core,
                conns: (0..conns).map(|_| ConnSlot::empty()).collect(),
                // Queued waiters plus answered ones not yet taken (each of
                // those holds a lease, or a failure; rare beyond this).
                waiters: (0..waiters + conns).map(|_| WaiterSlot::EMPTY).collect(),
                free: (0..(waiters + conns) as u32).rev().collect(),
                by_core: vec![NO_SLOT; waiters],
                ops: VecDeque::with_capacity(2 * conns + 8),
                flushing: false,
                armed: Instant::MAX,
                connect_error: None,
                closed_some: false,
                clusters: Vec::new(),
            }),
            connector,
            driver_wake: Notify::new(),
            closed: Notify::new(),
            base: tokio::time::Instant::now(),
            rt,
            handles_gone: AtomicBool::new(false),
            tasks: AtomicUsize::new(0),
            settings,
        }
    }

    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, Inner<K, C::Conn>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The core's clock: microseconds since the pool was built.
    #[inline]
    pub fn now(&self) -> Instant {
        let d = tokio::time::Instant::now().saturating_duration_since(self.base);
        Instant::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// The tokio instant of a core instant.
    pub fn deadline(&self, t: Instant) -> tokio::time::Instant {
        // Far-future instants are capped (tokio's own limit is ~30 years).
        let micros = t.as_micros().min(365 * 24 * 3600 * 1_000_000);
        self.base + std::time::Duration::from_micros(micros)
    }

    pub fn describe(&self, key: &K) -> String {
        self.connector.describe(key)
    }

    /// Ends an input: processes the core's actions, re-arms the driver, and
    /// runs the queued work outside the lock. Consumes the guard.
    pub fn finish(self: &Arc<Self>, mut g: MutexGuard<'_, Inner<K, C::Conn>>) {
        self.process(&mut g);
        self.rearm(&mut g);
        let need_flush = !g.ops.is_empty() && !g.flushing;
        if need_flush {
            g.flushing = true;
        }
        let closed = std::mem::take(&mut g.closed_some);
        drop(g);
        if need_flush {
            self.flush();
        }
        if closed {
            self.closed.notify_waiters();
        }
    }

    /// Drains the core's actions (the rule: after every input, until `None`).
    /// Grants and failures are delivered here, under the lock, in O(1); the
    /// rest is queued for [`Shared::flush`].
    pub fn process(&self, g: &mut Inner<K, C::Conn>) {
        while let Some(action) = g.core.poll_action() {
            match action {
                Action::Granted { waiter, lease } => {
                    if let Some(slot) = g.answered(waiter) {
                        slot.answer = Some(Answer::Granted(lease));
                        if let Some(w) = slot.waker.take() {
                            w.wake();
                        }
                    } else {
                        // Nobody is waiting for it (cannot happen: cancels go
                        // through the core first); give the connection back.
                        let how = Release::Reuse {
                            keep_alive: None,
                            tag: g.conns[lease.conn().index()].tag,
                        };
                        let now = self.now();
                        let _ = g.core.release(lease, how, now);
                    }
                }
                Action::Failed { waiter, reason } => {
                    let source = match reason {
                        FailReason::ConnectFailed(_) => g.connect_error.clone(),
                        _ => None,
                    };
                    // Only cluster waiters have a host to name (failures
                    // only: the warm path never gets here).
                    let host = g.waiter_host(waiter).map(|k| self.describe(k));
                    if let Some(slot) = g.answered(waiter) {
                        slot.answer = Some(Answer::Failed(reason, source, host));
                        if let Some(w) = slot.waker.take() {
                            w.wake();
                        }
                    }
                }
                Action::Connect { conn, route } => {
                    let Some(key) = g.core.route_key(route).cloned() else {
                        continue;
                    };
                    let slot = &mut g.conns[conn.index()];
                    *slot = ConnSlot::empty();
                    slot.id = Some(conn);
                    g.ops.push_back(Op::Connect { conn, key });
                }
                Action::Validate { conn } => {
                    let slot = &mut g.conns[conn.index()];
                    match slot.conn.take() {
                        Some(obj) if slot.id == Some(conn) => {
                            g.ops.push_back(Op::Validate { conn, obj })
                        }
                        other => {
                            slot.conn = other;
                            // No object to check: treat it as stale.
                            let now = self.now();
                            let _ = g.core.validated(conn, Validation::Stale, now);
                        }
                    }
                }
                Action::Close { conn, reason } => {
                    g.closed_some = true;
                    let slot = &mut g.conns[conn.index()];
                    if slot.id == Some(conn) {
                        slot.id = None;
                        if let Some(a) = slot.abort.take() {
                            a.abort();
                        }
                        if let Some(obj) = slot.conn.take() {
                            g.ops.push_back(Op::Close { conn, obj, reason });
                        } else {
                            trace::close(self, conn, reason);
                        }
                    }
                }
                Action::RouteIdle {
                    route: _,
                    key: _key,
                } => {
                    #[cfg(feature = "tracing")]
                    tracing::debug!(route = %self.describe(&_key), "route idle");
                }
            }
        }
    }

    /// Wakes the driver when the core's next timer moved before the one it
    /// sleeps until.
    #[inline]
    fn rearm(&self, g: &mut Inner<K, C::Conn>) {
        if let Some(t) = g.core.poll_timeout() {
            if t < g.armed {
                g.armed = t;
                self.driver_wake.notify_one();
            }
        }
    }

    /// Runs queued work outside the lock, one item at a time, in order (so a
    /// close happens before the connect that replaces it). The caller has set
    /// `flushing`.
    pub fn flush(self: &Arc<Self>) {
        loop {
            let op = {
                let mut g = self.lock();
                match g.ops.pop_front() {
                    Some(op) => op,
                    None => {
                        g.flushing = false;
                        return;
                    }
                }
            };
            self.run(op);
        }
    }

    fn run(self: &Arc<Self>, op: Op<K, C::Conn>) {
        match op {
            Op::Connect { conn, key } => {
                trace::connect_start(self, &key, conn);
                let task = self.rt.spawn(connect_task(self.clone(), conn, key));
                let mut g = self.lock();
                let slot = &mut g.conns[conn.index()];
                if slot.id == Some(conn) && slot.conn.is_none() && !task.is_finished() {
                    slot.abort = Some(task.abort_handle());
                } else if slot.id != Some(conn) {
                    // Closed (timed out, drained) before the task started.
                    task.abort();
                }
            }
            Op::Validate { conn, obj } => {
                self.rt.spawn(validate_task(self.clone(), conn, obj));
            }
            Op::Close { conn, obj, reason } => {
                trace::close(self, conn, reason);
                self.close_obj(obj);
            }
        }
    }

    /// Closes a connection object: polls the connector's close once and
    /// spawns the rest only if it is not done.
    pub fn close_obj(self: &Arc<Self>, obj: C::Conn) {
        let mut fut = Box::pin(self.connector.close(obj));
        if noop_poll(fut.as_mut()).is_pending() {
            self.tasks.fetch_add(1, Ordering::AcqRel);
            let me = self.clone();
            self.rt.spawn(async move {
                fut.await;
                me.tasks.fetch_sub(1, Ordering::AcqRel);
                me.closed.notify_waiters();
            });
        }
    }

    /// Gives a connection back to the pool (a dropped lease, or a grant that
    /// arrived for a future that was dropped).
    pub fn release(
        self: &Arc<Self>,
        lease: wharf_core::Lease,
        obj: C::Conn,
        broken: bool,
        keep_alive: Option<std::time::Duration>,
        tag: Option<Tag>,
    ) {
        let mut g = self.lock();
        let now = self.now();
        let conn = lease.conn();
        let slot = &mut g.conns[conn.index()];
        if slot.id != Some(conn) {
            drop(g);
            self.close_obj(obj);
            return;
        }
        slot.conn = Some(obj);
        let how = if broken {
            Release::Discard
        } else {
            let keep_alive = keep_alive.map(Duration::from);
            slot.tag = tag;
            slot.keep_alive_until = keep_alive.map(|d| now + d);
            Release::Reuse { keep_alive, tag }
        };
        if g.core.release(lease, how, now).is_err() {
            let obj = g.conns[conn.index()].conn.take();
            self.finish(g);
            if let Some(obj) = obj {
                self.close_obj(obj);
            }
            return;
        }
        self.finish(g);
    }

    /// Releases a lease whose connection the caller keeps (`Lease::detach`).
    pub fn forget(self: &Arc<Self>, lease: wharf_core::Lease) {
        let mut g = self.lock();
        let now = self.now();
        g.conns[lease.conn().index()].conn = None;
        let _ = g.core.release(lease, Release::Discard, now);
        self.finish(g);
    }

    /// Removes a waiter whose future was dropped; a lease granted to it in the
    /// meantime goes back to the pool as it was.
    pub fn cancel(self: &Arc<Self>, waiter: WaiterId, s: u32) {
        let mut g = self.lock();
        let now = self.now();
        let slot = &mut g.waiters[s as usize];
        if slot.id != Some(waiter) {
            return;
        }
        let answer = slot.answer.take();
        g.free_waiter(s);
        match answer {
            None => {
                g.by_core[waiter.index()] = NO_SLOT;
                let _ = g.core.cancel(waiter, self.settings.cancel_policy, now);
            }
            Some(Answer::Granted(lease)) => {
                let c = &g.conns[lease.conn().index()];
                let keep_alive = c.keep_alive_until.map(|t| t.saturating_duration_since(now));
                let how = Release::Reuse {
                    keep_alive,
                    tag: c.tag,
                };
                if g.core.release(lease, how, now).is_err() {
                    // Cannot happen; do not leak the object.
                    if let Some(obj) = g.conns[lease.conn().index()].conn.take() {
                        self.finish(g);
                        self.close_obj(obj);
                        return;
                    }
                }
            }
            Some(Answer::Failed(..)) => {}
        }
        self.finish(g);
    }

    /// The error for a failed waiter.
    pub fn fail_error(
        &self,
        route: String,
        reason: FailReason,
        source: Option<Arc<io::Error>>,
        waited: Duration,
    ) -> Error {
        match reason {
            FailReason::Timeout => Error::Timeout {
                route,
                waited: waited.into(),
            },
            FailReason::Overflow => Error::Overflow { route },
            FailReason::Draining => Error::Draining { route },
            FailReason::ConnectFailed(reason) => {
                let source = source.unwrap_or_else(|| {
                    Arc::new(io::Error::new(
                        io::ErrorKind::TimedOut,
                        match reason {
                            wharf_core::ConnectFailure::Timeout => "connect timed out",
                            _ => "connect failed",
                        },
                    ))
                });
                Error::ConnectFailed {
                    route,
                    reason,
                    source,
                }
            }
        }
    }
}

async fn connect_task<K, C>(shared: Arc<Shared<K, C>>, conn: ConnId, key: K)
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    C: Connector<K>,
{
    let result = shared.connector.connect(&key).await;
    let mut g = shared.lock();
    let now = shared.now();
    let idx = conn.index();
    if g.conns[idx].id != Some(conn) {
        // Timed out or closed meanwhile: the core already forgot it.
        drop(g);
        if let Ok(obj) = result {
            shared.close_obj(obj);
        }
        return;
    }
    g.conns[idx].abort = None;
    match result {
        Ok(obj) => {
            g.conns[idx].conn = Some(obj);
            match g.core.connected(conn, 1, now) {
                Ok(()) => {
                    trace::connected(&shared, &key, conn);
                    shared.finish(g);
                }
                Err(_) => {
                    let slot = &mut g.conns[idx];
                    slot.id = None;
                    let obj = slot.conn.take();
                    shared.finish(g);
                    if let Some(obj) = obj {
                        shared.close_obj(obj);
                    }
                }
            }
        }
        Err(e) => {
            let reason = shared.connector.classify(&e);
            // The core's own timeout is the only `Timeout`; a connector's
            // timed-out error is a local failure.
            let reason = match reason {
                wharf_core::ConnectFailure::Timeout => wharf_core::ConnectFailure::Local,
                r => r,
            };
            trace::connect_failed(&shared, &key, conn, reason, &e);
            g.conns[idx].id = None;
            g.connect_error = Some(Arc::new(e));
            let _ = g.core.connect_failed(conn, reason, now);
            shared.process(&mut g);
            g.connect_error = None;
            g.closed_some = true;
            shared.finish(g);
        }
    }
}

async fn validate_task<K, C>(shared: Arc<Shared<K, C>>, conn: ConnId, mut obj: C::Conn)
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    C: Connector<K>,
{
    let stale = {
        let fut = pin!(shared.connector.is_stale(&mut obj));
        fut.await
    };
    let mut g = shared.lock();
    let now = shared.now();
    let idx = conn.index();
    if g.conns[idx].id != Some(conn) {
        drop(g);
        shared.close_obj(obj);
        return;
    }
    g.conns[idx].conn = Some(obj);
    let result = if stale {
        Validation::Stale
    } else {
        Validation::Alive
    };
    trace::validated(&shared, &g.core, conn, stale);
    if g.core.validated(conn, result, now).is_err() {
        let slot = &mut g.conns[idx];
        slot.id = None;
        let obj = slot.conn.take();
        shared.finish(g);
        if let Some(obj) = obj {
            shared.close_obj(obj);
        }
        return;
    }
    shared.finish(g);
}

/// The driver: sleeps until the core's next timer and feeds it
/// `handle_timeout`; when the last pool handle is dropped it drains the pool
/// for deletion and ends.
pub(crate) async fn driver<K, C>(shared: Arc<Shared<K, C>>)
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    C: Connector<K>,
{
    let sleep = tokio::time::sleep_until(shared.deadline(Instant::MAX));
    let mut sleep = pin!(sleep);
    loop {
        let gone = shared.handles_gone.load(Ordering::Acquire);
        let next = {
            let mut g = shared.lock();
            let now = shared.now();
            g.core.handle_timeout(now);
            if gone {
                g.core.drain(
                    wharf_core::DrainScope::All,
                    wharf_core::DrainMode::DrainAndDelete,
                    now,
                );
            }
            shared.process(&mut g);
            let next = g.core.poll_timeout().unwrap_or(Instant::MAX);
            g.armed = next;
            shared.finish(g);
            next
        };
        if gone {
            return;
        }
        if next == Instant::MAX {
            shared.driver_wake.notified().await;
        } else {
            sleep.as_mut().reset(shared.deadline(next));
            tokio::select! {
                _ = shared.driver_wake.notified() => {}
                _ = sleep.as_mut() => {}
            }
        }
    }
}
