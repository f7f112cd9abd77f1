//! The lease future: asks the driver, waits for the answer on its ticket,
//! checks the connection at hand-out, and withdraws when dropped.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use wharf_core::{Instant, LeaseError, LeaseOutcome, RouteId, Tag};
use wharf_driver::{Answer, Handout, StartError, Started, TicketId};

use crate::cluster_table::{cluster_error, ClusterHandle};
use crate::connector::{Connector, RouteKey};
use crate::error::{dead_error, fail_error, lease_error, Error};
use crate::lease::Lease;
use crate::runtime::{Host, Inner, Shared};
use crate::trace;

/// Options for one lease ([`Pool::lease_with`](crate::Pool::lease_with)).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LeaseOptions {
    /// Connection state to match (HttpClient's `state`): a connection tagged
    /// with it is preferred, then an untagged one; with
    /// [`Builder::strict_tags`](crate::Builder::strict_tags) only a
    /// connection made for this tag.
    pub tag: Option<Tag>,
    /// How long to wait for a connection; `None` = the pool's lease timeout.
    pub timeout: Option<Duration>,
}

impl LeaseOptions {
    /// No tag, the pool's lease timeout.
    pub const fn new() -> Self {
        LeaseOptions {
            tag: None,
            timeout: None,
        }
    }
    /// Asks for connections tagged `tag` (or untagged ones).
    pub const fn tag(mut self, tag: Tag) -> Self {
        self.tag = Some(tag);
        self
    }
    /// Waits at most `timeout` for a connection. `Duration::ZERO` means "do
    /// not wait": a ready idle connection (no validation due) is granted at
    /// once, otherwise the lease fails at once with
    /// [`Error::Timeout`](crate::Error::Timeout) with `waited` zero, without
    /// queueing, connecting or creating the route.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What a lease future leases from.
pub(crate) enum Target<'a, K> {
    Route(&'a K),
    Cluster(ClusterHandle),
    /// A cluster lease asking again on the host it was given (its
    /// connection was dead at hand-out).
    Host(ClusterHandle, K),
}

/// What a lease future completes with.
type LeaseResult<K, C> = Result<Lease<K, C>, Error<<C as Connector<K>>::Error>>;

enum State {
    Init,
    Waiting { ticket: TicketId },
    Done,
}

/// The future of [`Pool::lease`](crate::Pool::lease) and
/// [`Pool::lease_cluster`](crate::Pool::lease_cluster). Dropping it before it
/// completes removes the request (and gives back a connection granted at that
/// moment, with its tag and keep-alive).
#[must_use = "futures do nothing unless polled"]
pub struct LeaseFuture<'a, K: RouteKey, C: Connector<K>> {
    shared: &'a Arc<Shared<K, C>>,
    target: Target<'a, K>,
    /// For a cluster lease that queued: the host's route (for errors).
    host: Option<RouteId>,
    tag: Option<Tag>,
    /// The deadline's distance from the first clock reading: the lease's
    /// timeout, plus the clock's margin ([`Clock::lease_wait`](crate::clock::Clock::lease_wait)).
    wait: Option<wharf_core::Duration>,
    /// Set at the first poll: when the lease started, and its deadline.
    started: Option<(Instant, Option<Instant>)>,
    /// Hand-outs that found their connection dead so far.
    dead: usize,
    /// The request queued at least once (its wait is read from the clock
    /// for the metrics; a lease granted at its first poll waited nothing).
    queued: bool,
    state: State,
}

impl<K: RouteKey, C: Connector<K>> fmt::Debug for LeaseFuture<'_, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LeaseFuture");
        match &self.target {
            Target::Route(k) => d.field("route", k),
            Target::Cluster(c) => d.field("cluster", c).field("host", &self.host),
            Target::Host(c, k) => d.field("cluster", c).field("host", k),
        };
        d.finish_non_exhaustive()
    }
}

// No field is ever pinned.
impl<K: RouteKey, C: Connector<K>> Unpin for LeaseFuture<'_, K, C> {}

impl<'a, K: RouteKey, C: Connector<K>> LeaseFuture<'a, K, C> {
    pub(crate) fn new(
        shared: &'a Arc<Shared<K, C>>,
        target: Target<'a, K>,
        options: LeaseOptions,
    ) -> Self {
        let wait = match options.timeout {
            Some(t) => Some(shared.clock.lease_wait(wharf_core::Duration::from(t))),
            None => shared.lease_wait,
        };
        LeaseFuture {
            shared,
            target,
            host: None,
            tag: options.tag,
            wait,
            started: None,
            dead: 0,
            queued: false,
            state: State::Init,
        }
    }

    /// A route lease the driver refused at once.
    #[cold]
    fn refused(&self, key: &K, e: StartError<LeaseError>) -> Error<C::Error> {
        match e {
            StartError::Refused(e) => lease_error(self.shared.describe(key), e),
            StartError::NoTicket => Error::Overflow {
                route: self.shared.describe(key),
            },
        }
    }

    /// The driver's lease, on the route or through the cluster (under the lock).
    fn start(
        &mut self,
        g: &mut Inner<K, C>,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Result<Started<C::Conn>, Error<C::Error>> {
        let tag = self.tag;
        let shared = self.shared;
        let key = match &self.target {
            Target::Route(k) => Some(*k),
            Target::Host(_, k) => Some(k),
            Target::Cluster(_) => None,
        };
        if let Some(key) = key {
            return g
                .driver
                .lease(key, tag, now, deadline)
                .map_err(|e| self.refused(key, e));
        }
        let Target::Cluster(handle) = self.target else {
            unreachable!("route targets returned above")
        };
        let Inner { driver, clusters } = g;
        let entry = handle.entry(clusters)?;
        let mut host = None;
        let r = driver.lease_by(|core| {
            let picked = entry.cluster.lease(core, tag, now, deadline)?;
            if let LeaseOutcome::Queued(_) = picked.outcome {
                host = entry
                    .cluster
                    .host(picked.host)
                    .and_then(|k| core.route_id(k));
            }
            Ok(picked.outcome)
        });
        self.host = host;
        r.map_err(|e| match e {
            // Name the host the balancer picked, if it got that far.
            StartError::Refused(e) => {
                let host = entry
                    .cluster
                    .last_pick()
                    .and_then(|h| entry.cluster.host(h));
                cluster_error(&*shared.connector, &entry.name, host, e)
            }
            StartError::NoTicket => Error::Overflow {
                route: format!("cluster {}", entry.name),
            },
        })
    }

    /// The route's name for a failure after queueing (for a cluster lease,
    /// the host's name as the failure was delivered, else the cluster's).
    fn route_name(&self, g: &mut Inner<K, C>, host: Host<K>) -> String {
        match &self.target {
            Target::Route(k) => self.shared.describe(k),
            Target::Host(_, k) => self.shared.describe(k),
            Target::Cluster(c) => match host {
                Host::Key(k) => self.shared.describe(&k),
                _ => self
                    .host
                    .and_then(|r| g.driver.core().route_key(r))
                    .map(|k| self.shared.describe(k))
                    .or_else(|| {
                        Some(format!(
                            "cluster {}",
                            c.entry::<K, ()>(&mut g.clusters).ok()?.name
                        ))
                    })
                    .unwrap_or_else(|| format!("{c:?}")),
            },
        }
    }

    /// A connection was handed out (the lock is released): checks it, and
    /// either completes (`Ok`, the lease) or gives the hand-out back for
    /// [`LeaseFuture::dead`].
    #[inline(always)]
    fn hand_out(&mut self, mut h: Handout<C::Conn>) -> Result<Lease<K, C>, Handout<C::Conn>> {
        if self.shared.strict_tags {
            // The connection's tag is the one the lease asked for (fixed at
            // connect), whatever an earlier lease set.
            h.tag = self.tag;
        }
        let idle = std::time::Duration::from(h.idle);
        if !self.shared.connector.is_dead_at_handout(&mut h.conn, idle) {
            self.state = State::Done;
            return Ok(Lease::new(self.shared, h));
        }
        Err(h)
    }

    /// [`LeaseFuture::hand_out`], then [`LeaseFuture::dead`] if it was dead.
    #[inline]
    fn hand_out_or_retry(&mut self, h: Handout<C::Conn>) -> Option<LeaseResult<K, C>> {
        match self.hand_out(h) {
            Ok(lease) => Some(Ok(lease)),
            Err(h) => self.dead(h),
        }
    }

    /// Closed by the peer while idle, no validation due: close it and ask
    /// again (on the same host, for a cluster lease).
    #[cold]
    #[inline(never)]
    fn dead(&mut self, h: Handout<C::Conn>) -> Option<LeaseResult<K, C>> {
        let shared = self.shared;
        trace::dead_at_handout(h.lease.conn());
        let now = shared.now();
        let mut g = shared.lock();
        if let Target::Cluster(c) = self.target {
            let core = g.driver.core();
            if let Some(k) = core
                .route_of(h.lease.conn())
                .and_then(|r| core.route_key(r))
            {
                self.target = Target::Host(c, k.clone());
            }
        }
        g.driver.dead_at_handout(h, now);
        let tries = g.driver.handout_tries();
        shared.finish(g);
        self.retry(tries)
    }

    /// Asks again after a dead hand-out; gives up after `tries` of them.
    fn retry(&mut self, tries: usize) -> Option<LeaseResult<K, C>> {
        self.dead += 1;
        if self.dead >= tries {
            self.state = State::Done;
            let route = match &self.target {
                Target::Route(k) => self.shared.describe(k),
                Target::Host(_, k) => self.shared.describe(k),
                Target::Cluster(c) => format!("{c:?}"),
            };
            return Some(Err(dead_error(route)));
        }
        self.state = State::Init;
        None
    }

    /// An answer from the ticket (the lock is held; it is released here).
    fn answered(
        &mut self,
        mut g: parking_lot::MutexGuard<'_, Inner<K, C>>,
        answer: Answer<C::Conn, std::sync::Arc<C::Error>, Host<K>>,
    ) -> Option<LeaseResult<K, C>> {
        let shared = self.shared;
        // The ticket is freed: never withdraw it again.
        self.state = State::Done;
        match answer {
            Answer::Granted(h) => {
                if h.reused {
                    trace::reuse(&*shared.connector, &g.driver, h.lease.conn());
                }
                shared.finish(g);
                self.hand_out_or_retry(h)
            }
            Answer::Failed {
                reason,
                error,
                note,
            } => {
                self.state = State::Done;
                let route = self.route_name(&mut g, note);
                shared.finish(g);
                // The clock is read outside the lock.
                let started = self.started.map_or(Instant::ZERO, |s| s.0);
                let waited = shared.now().saturating_duration_since(started);
                Some(Err(fail_error(route, reason, error, waited.into())))
            }
            Answer::Retry => {
                let tries = g.driver.handout_tries();
                shared.finish(g);
                self.retry(tries)
            }
        }
    }
}

impl<K: RouteKey, C: Connector<K>> LeaseFuture<'_, K, C> {
    /// What the driver said at the first ask (or an ask again), the lock
    /// held: `Ready(Some(result))` completes, `Ready(None)` asks again,
    /// `Pending` waits on the ticket.
    fn on_started(
        &mut self,
        mut g: parking_lot::MutexGuard<'_, Inner<K, C>>,
        r: Result<Started<C::Conn>, Error<C::Error>>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<LeaseResult<K, C>>> {
        let shared = self.shared;
        Poll::Ready(match r {
            Ok(Started::Granted(h)) => {
                if h.reused {
                    trace::reuse(&*shared.connector, &g.driver, h.lease.conn());
                }
                shared.finish(g);
                self.hand_out_or_retry(h)
            }
            Ok(Started::Queued(ticket)) => {
                if let (Some(r), Some(note)) = (self.host, g.driver.note_mut(ticket)) {
                    *note = Host::Route(r);
                }
                self.state = State::Waiting { ticket };
                self.queued = true;
                match g.driver.poll_answer(ticket, cx.waker()) {
                    Poll::Ready(a) => self.answered(g, a),
                    Poll::Pending => {
                        shared.finish(g);
                        return Poll::Pending;
                    }
                }
            }
            Ok(Started::Retry) => {
                let tries = g.driver.handout_tries();
                shared.finish(g);
                self.retry(tries)
            }
            Err(e) => {
                self.state = State::Done;
                shared.finish(g);
                Some(Err(e))
            }
        })
    }

    /// Completes with `r` (the lease-wait metric recorded).
    #[inline(always)]
    fn complete(&self, r: LeaseResult<K, C>) -> Poll<LeaseResult<K, C>> {
        #[cfg(feature = "metrics")]
        match self.started {
            Some((started, _)) if self.queued || self.dead > 0 => {
                let waited = self.shared.now().saturating_duration_since(started);
                self.shared.metrics.lease_wait(waited.as_micros());
            }
            // Granted or refused at its first poll: no wait, and no clock
            // read on the warm path.
            _ => self.shared.metrics.lease_wait(0),
        }
        Poll::Ready(r)
    }

    /// Every poll but the warm path's.
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<LeaseResult<K, C>> {
        let shared = self.shared;
        loop {
            let done = match self.state {
                State::Init => {
                    // The clock is read before the lock (the core never
                    // moves time backwards: a reading another thread
                    // overtook is taken as the core's current time).
                    let (now, deadline) = match self.started {
                        Some((_, deadline)) => (shared.now(), deadline),
                        None => {
                            let now = shared.now();
                            let deadline = self.wait.map(|w| now + w);
                            self.started = Some((now, deadline));
                            (now, deadline)
                        }
                    };
                    let mut g = shared.lock();
                    let r = self.start(&mut g, now, deadline);
                    match self.on_started(g, r, cx) {
                        Poll::Ready(done) => done,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                State::Waiting { ticket } => {
                    let mut g = shared.lock();
                    match g.driver.poll_answer(ticket, cx.waker()) {
                        Poll::Ready(a) => self.answered(g, a),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                State::Done => panic!("LeaseFuture polled after completion"),
            };
            if let Some(r) = done {
                return self.complete(r);
            }
        }
    }
}

thread_local! {
    /// Lease polls on this thread (counted for [`spend_budget`]).
    static POLLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// One unit of tokio's cooperative budget per [`BUDGET_EVERY`] lease polls
/// on a thread.
///
/// A lease granted at once never returns `Pending`, so a task that only
/// leases and releases would never yield: it would starve its worker's
/// other tasks and timers for good. Spending budget bounds that: once the
/// task's budget (128 units per task poll) is spent, a lease poll returns
/// `Pending` and tokio polls the task again after it yielded. A unit per
/// poll, as tokio's channels spend it, makes such a loop yield every 128
/// leases, and on a multi-thread runtime every yield wakes an idle worker
/// to steal the task (about one context switch per yield, 8,192 per 2^20
/// leases, and the two workers then contend on the pool's lock; measured
/// in docs/PERFORMANCE.md). A unit per [`BUDGET_EVERY`] polls bounds the
/// starvation at 128 x [`BUDGET_EVERY`] leases (16,384: ~1.5 ms of a
/// worker at ~90 ns per get + drop) and yields 64 times per 2^20 leases. A
/// task whose budget its sockets spent yields at its next counted poll.
#[inline(always)]
fn spend_budget(cx: &mut Context<'_>) -> Poll<()> {
    let n = POLLS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n
    });
    if n % BUDGET_EVERY != 0 {
        return Poll::Ready(());
    }
    // `made_progress` at once: the unit stays spent whether this poll
    // completes or waits.
    tokio::task::coop::poll_proceed(cx).map(|p| p.made_progress())
}

/// Lease polls per unit of tokio's budget ([`spend_budget`]).
const BUDGET_EVERY: u32 = 128;

impl<K: RouteKey, C: Connector<K>> Future for LeaseFuture<'_, K, C> {
    type Output = Result<Lease<K, C>, Error<C::Error>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.shared.cooperative {
            std::task::ready!(spend_budget(cx));
        }
        this.poll_lease(cx)
    }
}

impl<K: RouteKey, C: Connector<K>> LeaseFuture<'_, K, C> {
    #[inline(always)]
    fn poll_lease(&mut self, cx: &mut Context<'_>) -> Poll<LeaseResult<K, C>> {
        let this = self;
        // The warm path: the first poll of a route lease, granted at once.
        // One clock read, before the lock; the lock covers the driver's
        // lease (the core's, the object out of its slot) and nothing else.
        if let (State::Init, None, Target::Route(key)) = (&this.state, this.started, &this.target) {
            let shared = this.shared;
            let now = shared.now();
            let deadline = this.wait.map(|w| now + w);
            this.started = Some((now, deadline));
            let mut g = shared.lock();
            let r = g.driver.lease(key, this.tag, now, deadline);
            match r {
                Ok(Started::Granted(h)) => {
                    if h.reused {
                        trace::reuse(&*shared.connector, &g.driver, h.lease.conn());
                    }
                    shared.finish(g);
                    match this.hand_out(h) {
                        Ok(lease) => return this.complete(Ok(lease)),
                        Err(h) => {
                            if let Some(r) = this.dead(h) {
                                return this.complete(r);
                            }
                        }
                    }
                }
                r => {
                    let r = r.map_err(|e| this.refused(key, e));
                    match this.on_started(g, r, cx) {
                        Poll::Ready(Some(r)) => return this.complete(r),
                        Poll::Ready(None) => {}
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
        this.poll_slow(cx)
    }
}

impl<K: RouteKey, C: Connector<K>> LeaseFuture<'_, K, C> {
    /// Withdraws a waiting request (its future was dropped).
    #[cold]
    #[inline(never)]
    fn withdraw(&mut self, ticket: TicketId) {
        let now = self.shared.now();
        let mut g = self.shared.lock();
        g.driver.cancel(ticket, now);
        self.shared.finish(g);
    }
}

impl<K: RouteKey, C: Connector<K>> Drop for LeaseFuture<'_, K, C> {
    #[inline]
    fn drop(&mut self) {
        if let State::Waiting { ticket } = self.state {
            self.withdraw(ticket);
        }
    }
}
