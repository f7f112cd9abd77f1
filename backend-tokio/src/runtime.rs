//! The runtime side of the driver: the lock and the clock ([`Clock`])
//! around the one [`Driver`], the driver's [`Io`] on tokio (a queue of work
//! run outside the lock, connect and validation tasks on the pool's runtime),
//! and the timer task.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use wharf_core::{CloseReason, ConnId, Duration, Instant, Pool, RouteId, Tag, Validation};
use wharf_driver::{Checked, ConnEvent, Driver, Io};

use crate::clock::Clock;
use crate::cluster_table::ClusterTable;
use crate::connector::{Connector, RouteKey};
use crate::metrics;
use crate::trace;
use crate::unwind::{guarded, CatchUnwind, Panicked};

/// `n` values made by `f`, or `None` when the memory cannot be had (an
/// allocation that fails is a typed error at build, never an abort).
pub(crate) fn try_vec<T>(n: usize, f: impl FnMut(usize) -> T) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.extend((0..n).map(f));
    Some(v)
}

/// What a waiting cluster lease keeps with its ticket: the host's route,
/// turned into the host's key when the request fails (the route may be gone
/// by the time the future looks).
#[derive(Debug, Default)]
pub(crate) enum Host<K> {
    #[default]
    None,
    Route(RouteId),
    Key(K),
}

/// Work for outside the lock, in the order the driver asked for it.
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
    Dispose(T),
    /// A connect task whose connection the pool gave up on (aborting wakes
    /// the task: done after the lock is released).
    Abort(AbortHandle),
}

/// The watch of the connections the pool holds: one waker per connection
/// slot (made once, at build), registered with the reactor by the
/// connector's `poll_event`. A wake marks its slot and wakes the timer task,
/// which asks the connector again under the lock.
pub(crate) struct Watch {
    /// Slot `i`'s waker fired since the timer task last looked.
    marks: Vec<AtomicBool>,
    /// Some mark is set.
    any: AtomicBool,
    pub notify: Notify,
}

impl Watch {
    fn new(slots: usize) -> Option<Self> {
        Some(Watch {
            marks: try_vec(slots, |_| AtomicBool::new(false))?,
            any: AtomicBool::new(false),
            notify: Notify::new(),
        })
    }

    /// The slots whose waker fired (marks cleared).
    pub fn take(&self) -> impl Iterator<Item = usize> + '_ {
        let any = self.any.swap(false, Ordering::SeqCst);
        self.marks
            .iter()
            .enumerate()
            .filter(move |(_, m)| any && m.swap(false, Ordering::SeqCst))
            .map(|(i, _)| i)
    }
}

struct SlotWaker {
    slot: usize,
    watch: Arc<Watch>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(m) = self.watch.marks.get(self.slot) {
            m.store(true, Ordering::SeqCst);
        }
        if !self.watch.any.swap(true, Ordering::SeqCst) {
            self.watch.notify.notify_one();
        }
    }
}

/// The driver's I/O on tokio: everything is queued as [`Op`]s and run by
/// [`Shared::flush`] once the lock is released.
pub(crate) struct TokioIo<K: RouteKey, C: Connector<K>> {
    connector: Arc<C>,
    pub ops: VecDeque<Op<K, C::Conn>>,
    /// Some task is running `ops` (one at a time keeps their order).
    pub flushing: bool,
    /// A close happened: `close()` waiters want to know.
    pub closed_some: bool,
    /// The connect task of each connecting connection, by `ConnId::index()`.
    aborts: Vec<Option<(ConnId, AbortHandle)>>,
    /// The watch waker of each connection slot.
    wakers: Vec<Waker>,
    /// The routes the metrics report (feature `metrics`; empty otherwise).
    pub metric_routes: metrics::Routes<K>,
}

impl<K: RouteKey, C: Connector<K>> Io<K> for TokioIo<K, C> {
    type Conn = C::Conn;
    type ConnectError = Arc<C::Error>;
    type Note = Host<K>;

    fn connect(&mut self, conn: ConnId, route: &K) {
        self.metric_routes.seen(route);
        self.ops.push_back(Op::Connect {
            conn,
            key: route.clone(),
        });
    }

    fn validate(&mut self, conn: ConnId, obj: C::Conn) -> Checked<C::Conn> {
        self.ops.push_back(Op::Validate { conn, obj });
        Checked::Pending
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason, obj: Option<C::Conn>) {
        self.closed_some = true;
        if let Some(slot) = self.aborts.get_mut(conn.index()) {
            if let Some((c, abort)) = slot.take() {
                if c == conn {
                    self.ops.push_back(Op::Abort(abort));
                }
            }
        }
        match obj {
            Some(obj) => self.ops.push_back(Op::Close { conn, obj, reason }),
            None => trace::close(conn, reason),
        }
    }

    fn dispose(&mut self, obj: C::Conn) {
        self.ops.push_back(Op::Dispose(obj));
    }

    fn failed(&mut self, note: &mut Host<K>, core: &Pool<'_, K>) {
        if let Host::Route(r) = *note {
            *note = match core.route_key(r) {
                Some(k) => Host::Key(k.clone()),
                None => Host::None,
            };
        }
    }

    fn route_idle(&mut self, key: K) {
        self.metric_routes.gone(&key);
        trace::route_idle(&*self.connector, &key);
    }

    #[inline]
    fn watch(&mut self, conn: ConnId, obj: &mut C::Conn) -> Option<ConnEvent> {
        let waker = self.wakers.get(conn.index())?;
        match self
            .connector
            .poll_event(obj, &mut Context::from_waker(waker))
        {
            Poll::Ready(event) => {
                trace::watched(conn, event);
                Some(event)
            }
            Poll::Pending => None,
        }
    }

    #[inline]
    fn share(&mut self, obj: &C::Conn) -> Option<C::Conn> {
        self.connector.share(obj)
    }
}

/// The state under the lock.
pub(crate) struct Inner<K: RouteKey, C: Connector<K>> {
    pub driver: Driver<'static, K, TokioIo<K, C>>,
    /// The clusters ([`crate::ClusterHandle`] indexes them); a removed
    /// cluster's slot is reused with a new generation.
    pub clusters: ClusterTable<K>,
}

/// What every handle, lease and task shares.
pub(crate) struct Shared<K: RouteKey, C: Connector<K>> {
    pub inner: Mutex<Inner<K, C>>,
    pub connector: Arc<C>,
    /// Connections closed (for `close().await`).
    pub closed: Notify,
    /// The pool's clock (read before the lock, once per operation).
    pub clock: Clock,
    pub rt: Handle,
    pub handles_gone: AtomicBool,
    /// Close futures still running.
    pub tasks: AtomicUsize,
    /// How long after its first clock reading a lease with the pool's lease
    /// timeout times out ([`Clock::lease_wait`]).
    pub lease_wait: Option<Duration>,
    pub watch: Arc<Watch>,
    /// The highest `max_total` a live change may set (connection slots - 2).
    pub max_total_ceiling: u32,
    /// The seed the core was built with.
    pub seed: u64,
    /// Strict tags: a connection's tag is fixed at connect (a lease's tag is
    /// the one it asked for).
    pub strict_tags: bool,
    /// Lease futures spend tokio's cooperative budget
    /// ([`Builder::cooperative`](crate::Builder::cooperative)).
    pub cooperative: bool,
    /// The `metrics` facade's handles (feature `metrics`; empty otherwise).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub metrics: metrics::Metrics<K>,
}

/// A process-unique pool identity (cluster handles carry it).
fn next_pool_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn noop_poll<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    fut.poll(&mut cx)
}

impl<K: RouteKey, C: Connector<K>> Shared<K, C> {
    /// The shared state over a built core; `None` when its tables cannot
    /// be allocated.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        core: Pool<'static, K>,
        conns: usize,
        waiters: usize,
        connector: C,
        rt: Handle,
        settings: wharf_driver::Settings,
        lease_timeout: Option<Duration>,
        max_total_ceiling: u32,
        seed: u64,
    ) -> Option<Self> {
        let connector = Arc::new(connector);
        let watch = Arc::new(Watch::new(conns)?);
        let wakers = try_vec(conns, |slot| {
            Waker::from(Arc::new(SlotWaker {
                slot,
                watch: watch.clone(),
            }))
        })?;
        let mut ops = VecDeque::new();
        ops.try_reserve_exact(2 * conns + 8).ok()?;
        let io = TokioIo {
            connector: connector.clone(),
            ops,
            flushing: false,
            closed_some: false,
            aborts: try_vec(conns, |_| None)?,
            wakers,
            metric_routes: metrics::Routes::default(),
        };
        let tables = wharf_driver::Tables::with_capacity(conns, waiters);
        let id = next_pool_id();
        let clock = Clock::new(&rt);
        let lease_wait = lease_timeout.map(|t| clock.lease_wait(t));
        let mut driver = Driver::new(core, tables, io, settings);
        // Wakes run after the lock is released (`finish`).
        driver.defer_wakes(true);
        Some(Shared {
            inner: Mutex::new(Inner {
                driver,
                clusters: ClusterTable {
                    pool: id,
                    slots: Vec::new(),
                },
            }),
            connector,
            closed: Notify::new(),
            clock,
            rt,
            handles_gone: AtomicBool::new(false),
            tasks: AtomicUsize::new(0),
            lease_wait,
            watch,
            max_total_ceiling,
            seed,
            strict_tags: false,
            cooperative: true,
            metrics: metrics::Metrics::new("default"),
        })
    }

    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, Inner<K, C>> {
        self.inner.lock()
    }

    /// The core's clock: microseconds since the pool was built (read it
    /// before taking the lock).
    #[inline(always)]
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The tokio instant of a core instant.
    pub fn deadline(&self, t: Instant) -> tokio::time::Instant {
        self.clock.deadline(t)
    }

    pub fn describe(&self, key: &K) -> String {
        self.connector.describe(key)
    }

    /// Ends an input (the driver has drained the core): releases the lock,
    /// then wakes the futures the input answered and runs the queued work.
    /// Consumes the guard. Every input ends here (the driver defers its
    /// wakes to this).
    #[inline(always)]
    pub fn finish(self: &Arc<Self>, g: MutexGuard<'_, Inner<K, C>>) {
        let io = g.driver.io();
        if io.ops.is_empty() && !io.closed_some && !g.driver.has_wakes() {
            // The warm path: nothing queued, nobody to wake or tell.
            drop(g);
            return;
        }
        self.finish_work(g);
    }

    /// [`Shared::finish`] with wakes, work queued or a close to announce.
    #[inline(never)]
    fn finish_work(self: &Arc<Self>, mut g: MutexGuard<'_, Inner<K, C>>) {
        // Up to `WAKES` wakers are taken out and woken after the lock is
        // released; any more (a failure or drain answering many waiters at
        // once) are woken here, so the list is empty whenever the lock is
        // free.
        const WAKES: usize = 4;
        let mut wakes: [Option<Waker>; WAKES] = Default::default();
        for slot in wakes.iter_mut() {
            match g.driver.take_waker() {
                Some(w) => *slot = Some(w),
                None => break,
            }
        }
        while let Some(w) = g.driver.take_waker() {
            w.wake();
        }
        let io = g.driver.io_mut();
        let need_flush = !io.ops.is_empty() && !io.flushing;
        if need_flush {
            io.flushing = true;
        }
        let closed = std::mem::take(&mut io.closed_some);
        drop(g);
        for w in wakes.into_iter().flatten() {
            w.wake();
        }
        if need_flush {
            self.flush();
        }
        if closed {
            self.closed.notify_waiters();
        }
    }

    /// Runs queued work outside the lock, one item at a time, in order (so a
    /// close happens before the connect that replaces it). The caller has set
    /// `flushing`.
    fn flush(self: &Arc<Self>) {
        loop {
            let (op, tag) = {
                let mut g = self.lock();
                // With strict tags, the identity a connect is made for.
                let tag = match g.driver.io().ops.front() {
                    Some(Op::Connect { conn, .. }) => g.driver.core().connect_tag(*conn),
                    _ => None,
                };
                let io = g.driver.io_mut();
                match io.ops.pop_front() {
                    Some(op) => (op, tag),
                    None => {
                        io.flushing = false;
                        return;
                    }
                }
            };
            self.run(op, tag);
        }
    }

    fn run(self: &Arc<Self>, op: Op<K, C::Conn>, tag: Option<Tag>) {
        match op {
            Op::Connect { conn, key } => {
                trace::connect_start(&*self.connector, &key, conn);
                let task = self.rt.spawn(connect_task(self.clone(), conn, key, tag));
                let mut g = self.lock();
                if g.driver.is_connecting(conn) && !task.is_finished() {
                    if let Some(slot) = g.driver.io_mut().aborts.get_mut(conn.index()) {
                        *slot = Some((conn, task.abort_handle()));
                    }
                } else if !g.driver.is_connecting(conn) {
                    // Closed (timed out, drained) before the task started, or
                    // already done: aborting a finished task does nothing.
                    task.abort();
                }
            }
            Op::Validate { conn, obj } => {
                self.rt.spawn(validate_task(self.clone(), conn, obj));
            }
            Op::Close { conn, obj, reason } => {
                trace::close(conn, reason);
                self.close_obj(|| self.connector.close_for(obj, reason));
            }
            Op::Dispose(obj) => self.close_obj(|| self.connector.close(obj)),
            Op::Abort(abort) => abort.abort(),
        }
    }

    /// Closes a connection object: polls the connector's close once and
    /// spawns the rest only if it is not done.
    /// A close that panics ends there (the object was the connector's to
    /// close): the caller of the first poll does not unwind, and a spawned
    /// close still counts as finished for `close().await`.
    fn close_obj<F: Future<Output = ()> + Send + 'static>(
        self: &Arc<Self>,
        close: impl FnOnce() -> F,
    ) {
        let Ok(fut) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(close)) else {
            return;
        };
        let mut fut = CatchUnwind(Box::pin(fut));
        if noop_poll(Pin::new(&mut fut)).is_pending() {
            self.tasks.fetch_add(1, Ordering::AcqRel);
            let me = self.clone();
            self.rt.spawn(async move {
                let _ = fut.await;
                me.tasks.fetch_sub(1, Ordering::AcqRel);
                me.closed.notify_waiters();
            });
        }
    }

    /// Copies the pool's gauges and counters to the `metrics` facade
    /// (feature `metrics`; nothing otherwise).
    #[cfg(feature = "metrics")]
    pub fn export_metrics(&self) {
        let snapshot = {
            let mut g = self.lock();
            let core = g.driver.core();
            let (stats, counters) = (core.stats(), *core.counters());
            let keys: Vec<(K, bool)> = g.driver.io_mut().metric_routes.take().collect();
            let core = g.driver.core();
            let routes = keys
                .into_iter()
                .map(|(k, live)| {
                    let rs = if live { core.route_stats(&k) } else { None };
                    (k, rs)
                })
                .collect();
            metrics::Snapshot {
                stats,
                counters,
                routes,
            }
        };
        self.metrics.report(snapshot, |k| self.describe(k));
    }

    /// The work a `close().await` waits for is done.
    pub fn quiet(&self, g: &Inner<K, C>) -> bool {
        let s = g.driver.core().stats();
        let io = g.driver.io();
        s.connections == 0
            && s.closing == 0
            && io.ops.is_empty()
            && !io.flushing
            && self.tasks.load(Ordering::Acquire) == 0
    }
}

async fn connect_task<K: RouteKey, C: Connector<K>>(
    shared: Arc<Shared<K, C>>,
    conn: ConnId,
    key: K,
    tag: Option<Tag>,
) {
    let result = guarded(|| shared.connector.connect_as(&key, tag)).await;
    let now = shared.now();
    let mut g = shared.lock();
    if let Some(slot) = g.driver.io_mut().aborts.get_mut(conn.index()) {
        if matches!(slot, Some((c, _)) if *c == conn) {
            *slot = None;
        }
    }
    match result {
        Ok(Ok(obj)) => {
            let accepted = match shared.connector.multiplexed(&obj) {
                Some(capacity) => g.driver.connected_multiplexed(conn, obj, capacity, now),
                None => g.driver.connected(conn, obj, now),
            };
            if accepted.is_ok() {
                trace::connected(&*shared.connector, &key, conn);
            }
        }
        Ok(Err(e)) => {
            // The connector's classification stands (a `TimedOut` error is a
            // timeout, as the pool's own connect timeout).
            let reason = shared.connector.classify(&e);
            trace::connect_failed(&*shared.connector, &key, conn, reason, &e);
            if g.driver
                .connect_failed(conn, reason, Arc::new(e), now)
                .is_ok()
            {
                g.driver.io_mut().closed_some = true;
            }
        }
        // The connector panicked: a local failure with no error to hand
        // on (the leases waiting for it get `source: None`).
        Err(Panicked) => {
            let reason = wharf_core::ConnectFailure::Local;
            trace::connect_failed(
                &*shared.connector,
                &key,
                conn,
                reason,
                &"the connector panicked",
            );
            if g.driver.connect_lost(conn, reason, now).is_ok() {
                g.driver.io_mut().closed_some = true;
            }
        }
    }
    shared.finish(g);
}

async fn validate_task<K: RouteKey, C: Connector<K>>(
    shared: Arc<Shared<K, C>>,
    conn: ConnId,
    mut obj: C::Conn,
) {
    // A check that panics counts as stale: the connection is closed, not
    // reused, and the lease that waited for it gets another.
    let stale = guarded(|| shared.connector.is_stale(&mut obj))
        .await
        .unwrap_or(true);
    let now = shared.now();
    let mut g = shared.lock();
    trace::validated(&*shared.connector, g.driver.core(), conn, stale);
    let result = if stale {
        Validation::Stale
    } else {
        Validation::Alive
    };
    let _ = g.driver.validated(conn, obj, result, now);
    shared.finish(g);
}

/// Reports the pool's metrics every `every` while the pool lives, and once
/// more when the last handle is dropped (feature `metrics`).
#[cfg(feature = "metrics")]
pub(crate) async fn metrics_task<K: RouteKey, C: Connector<K>>(
    shared: Arc<Shared<K, C>>,
    every: std::time::Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.export_metrics();
        if shared.handles_gone.load(Ordering::Acquire) {
            return;
        }
    }
}

/// The timer task: sleeps until the core's next deadline (or until an input
/// moves it earlier: the driver's re-arm rule) and feeds `handle_timeout`;
/// when the last pool handle is dropped it drains the pool for deletion and
/// ends.
pub(crate) async fn timer_task<K: RouteKey, C: Connector<K>>(shared: Arc<Shared<K, C>>) {
    let sleep = tokio::time::sleep_until(shared.deadline(Instant::MAX));
    let mut sleep = pin!(sleep);
    loop {
        let gone = shared.handles_gone.load(Ordering::Acquire);
        let next = {
            let now = shared.clock.now_for_timer();
            let mut g = shared.lock();
            g.driver.handle_timeout(now);
            // Connections whose watch waker fired: ask their connector.
            for slot in shared.watch.take() {
                g.driver.watch(slot, now);
            }
            if gone {
                g.driver.input(|core| {
                    core.drain(
                        wharf_core::DrainScope::All,
                        wharf_core::DrainMode::DrainAndDelete,
                        now,
                    )
                });
            }
            let next = g.driver.arm_timer();
            shared.finish(g);
            next
        };
        if gone {
            return;
        }
        let kicked = poll_fn(|cx| shared.lock().driver.poll_timer(cx.waker()));
        let watched = shared.watch.notify.notified();
        match next {
            None => {
                tokio::select! {
                    _ = kicked => {}
                    _ = watched => {}
                }
            }
            Some(t) => {
                sleep.as_mut().reset(shared.deadline(t));
                tokio::select! {
                    _ = kicked => {}
                    _ = watched => {}
                    _ = sleep.as_mut() => {}
                }
            }
        }
    }
}
