//! Properties that do not come from the model (issue 10).
//!
//! The differential test compares the core with a model of the same rules
//! (`docs/SEMANTICS.md`), so a hole in the rules is invisible to it. These
//! checks are written from what a user of a connection pool expects instead,
//! and observe the pool through its public API only: the actions it asks for,
//! the answers the backend gives, `stats()`, `route_stats()`, `poll_timeout()`
//! and `now()`. They run inside the model/fuzz harness (which feeds the hooks
//! below) and are named in every failure message as `property <name>`:
//!
//! - `liveness`: at a quiet point (every action polled, no connect and no
//!   validation outstanding) where the pool says it needs no timer
//!   (`poll_timeout() == None`), and at the end of each no-demand phase of the
//!   end of a sequence (every connect and validation answered, time advanced
//!   through the deadlines), no waiter waits while a connection of its route
//!   compatible with its tag is idle, or while a connection for it could be
//!   made: its route is below its limit (or would be after closing idle
//!   connections of its own route that other tags hold) and the total has room
//!   (or an idle connection anywhere can be evicted), or the starvation guard
//!   allows one. Routes being deleted only get the first half (they make no new
//!   connection).
//! - `fairness` (no route is starved): while waiter `w` of route `b` waits,
//!   `b` has no connection at all (none open, connecting or validating: its
//!   waiters cannot be served by their own route) and is not being deleted,
//!   every grant of a connection that had no lease (an idle or just-connected
//!   one) to a waiter of *another* route queued *after* `w` is an overtake of
//!   `w`; `overtakes(w) <= OVERTAKES_PER_CONN_SLOT * CONN_SLOTS + ROUTE_SLOTS`
//!   (§3.7a's bound: one per connection in flight, one per route ahead of
//!   `w`'s on the blocked list). A route with
//!   connections is served by them in FIFO order (SEMANTICS §3.7a: shares
//!   converge to equal, not to a strict FIFO across routes, which would evict
//!   on nearly every release under contention).
//! - `deleted-connect`: after an input, a route being deleted
//!   (`DrainAndDelete`) with no waiter left keeps no connection connecting (it
//!   can never be used, holds a `max_total` slot and delays `RouteIdle`).
//! - `work-per-input`: the actions polled between two inputs hold at most
//!   `CONN_SLOTS` `Connect`s and at most `CONN_SLOTS` `Close`s.
//! - `churn`: in a no-demand phase (no new lease; the backend answers every
//!   `Connect` with success and every `Validate` with alive, and time advances
//!   to each deadline), connects and closes other than lifetime refresh number
//!   at most `CHURN_PER_CONN_SLOT * CONN_SLOTS + CHURN_PER_WAITER * waiters
//!   pending when the phase starts`. Retirements the configuration forces are
//!   excluded: a `Close` with reason `Expired` (lifetime, keep-alive) or
//!   `MaxLeases` (`max_leases_per_conn`) is not counted and gives one credit,
//!   and a `Connect` made while a credit is left uses it instead of counting.
//!   (`MaxLeases` was counted until a 25,000-sequence run,
//!   WHARF_MODEL_SEED=13855373304695018962, showed it flagging a legal
//!   sequence: four leases with `max_leases_per_conn` 1 released, each
//!   closing its connection and min-idle warm-up replacing it.)
//! - `never`: a deadline that is `Instant::MAX` (given so, or `now + d`
//!   saturating there) never fires, even when `now` reaches `Instant::MAX`: a
//!   waiter with such a deadline never fails `Timeout`; no `Close(ConnectTimeout)`,
//!   `Close(IdleTimeout)` or `Close(Expired)`, and no `Validate`, comes from a
//!   timeout, lifetime or keep-alive that is unset or lands on `Instant::MAX`;
//!   and after every action was polled with `poll_timeout() == None`,
//!   `handle_timeout(t)` for any `t` produces no action.
//! - `eviction` (an eviction is for someone): an eviction closes a connection
//!   somebody could use, so it must make room for a connection somebody needs.
//!   In an input whose actions are all its own (every earlier action was
//!   polled before it), at each `Close(v, Evicted)` (`v` of route `r`, tag
//!   `t`): (1) some route *needs a connection*: it is not being deleted, the
//!   pool is not closed, it has pending waiters beyond what its connects in
//!   flight will serve (`pending > connecting x min(connecting_capacity,
//!   max_leases_per_conn)`), its own route limit lets it open one more
//!   (`connections < limit`), and it is another route than `r`, or `r` itself
//!   if one of its pending waiters cannot use `v` (tag); (2) if the eviction
//!   left the open and connecting connections below `max_total`, a `Connect`
//!   follows it before the input's actions run out (each such eviction is
//!   matched with a later `Connect`, in order). Counts are the backend's view
//!   at the `Close` (action order), never fewer waiters or more connections
//!   than the core's. Over a lowered `max_total` an eviction may leave no room,
//!   so (2) does not apply then.
//! - `eviction-churn` (no reconnect for the evicted route): in such an input,
//!   the first `Connect` polled after a `Close(v, Evicted)` (`v` of route `r`,
//!   tag `t`), if any, is for another route with a pending waiter, or for `r`
//!   only if one of `r`'s pending waiters cannot use `v`: closing a connection
//!   that `r`'s waiters could use and reconnecting for `r` is pure churn.
//!   It found two holes of the rules (the capacity a release yields, §3.7a,
//!   went back to the releasing route when that route stood first on the
//!   blocked list, or when its oldest waiter was older than the first blocked
//!   route's), fixed in SEMANTICS §3.1 step 2 and §3.7a.
//!
//! `WHARF_PROPS_SKIP=<name>,..` (or `all`) turns properties off, e.g. to look
//! for model divergences while a known property violation is being fixed.
//!
//! Tag compatibility follows `Config::strict_tags`: by default an untagged
//! connection serves any tag and a release sets the tag; with strict tags a
//! connection serves only its own tag (the one it connected with, fixed for
//! its life).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use wharf_core::{
    Action, CloseReason, Config, ConnId, DrainMode, FailReason, Index, Instant, Lease, LeaseError,
    LeaseOutcome, Pool, Release, Tag, Validation, WaiterId,
};

/// `fairness`: overtakes allowed per connection slot of the storage. One per
/// slot: the connections already connecting (or leased) when `w` queued may go
/// to younger waiters of other routes once; after that an idle connection must
/// be evicted for `w` (or serve it) rather than go to a younger waiter.
pub const OVERTAKES_PER_CONN_SLOT: usize = 1;
/// `work-per-input`: `Connect`s per input per connection slot. Each polled
/// `Connect` names a connection still connecting at the next input (nothing but
/// an input ends a connect, and a `Close` of an undelivered `Connect` withdraws
/// both), so a pool that does no connect-then-close within one input stays
/// within one per slot.
pub const CONNECTS_PER_INPUT_PER_CONN_SLOT: usize = 1;
/// `work-per-input`: `Close`s per input per connection slot. A slot is freed
/// when its `Close` is polled and then only reused by a connect, which cannot
/// be closed again before the next input.
pub const CLOSES_PER_INPUT_PER_CONN_SLOT: usize = 1;
/// `churn`: counted connects and closes per connection slot in one no-demand
/// phase: each connection open at the start closes at most once, and the pool
/// fills its targets (min idle, preconnect for held leases) at most once.
pub const CHURN_PER_CONN_SLOT: usize = 2;
/// `churn`: counted connects and closes per waiter pending at the start of the
/// phase (a connect for it, an eviction to make room, a refill of what was
/// evicted, and a close of a connection it no longer needed).
pub const CHURN_PER_WAITER: usize = 4;
/// Steps of a no-demand phase per event of its churn bound (so that churn at
/// one event every two steps or faster goes over the bound) ...
pub const CHURN_STEPS_PER_EVENT: usize = 3;
/// ... plus this many.
pub const CHURN_STEPS_MIN: usize = 16;

type Check = Result<(), String>;

/// The most overtakes seen of one waiter, by the storage's connection slots,
/// over every run of the process (`WHARF_MODEL_COVERAGE=1` prints them): what
/// the fairness bound could be tuned to.
pub static MAX_OVERTAKES: std::sync::Mutex<BTreeMap<usize, usize>> =
    std::sync::Mutex::new(BTreeMap::new());

thread_local! {
    static OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Turns every property off (or on again) for the runs on this thread: the
/// divergence pins of `tests/regressions.rs` check the model alone.
pub fn set_enabled(on: bool) {
    OFF.with(|o| o.set(!on));
}

/// The property is turned off (`WHARF_PROPS_SKIP`, or `set_enabled(false)`).
pub fn skipped(name: &str) -> bool {
    if OFF.with(|o| o.get()) {
        return true;
    }
    static SKIP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static KNOWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let known =
        *KNOWN.get_or_init(|| std::env::var_os("WHARF_PROPS_KNOWN").is_some_and(|v| v == "1"));
    if !known && KNOWN_VIOLATED.contains(&name) {
        return true;
    }
    let s = SKIP.get_or_init(|| std::env::var("WHARF_PROPS_SKIP").unwrap_or_default());
    s.split(',').any(|x| x.trim() == name || x.trim() == "all")
}

/// Properties the core is known to violate (each with a failing scenario
/// in `tests/properties.rs` until the rules are fixed): off unless
/// `WHARF_PROPS_KNOWN=1`, so that the model test and the fuzz target keep
/// finding everything else. Empty: `eviction-churn`, the last one, holds
/// since the §3.1 / §3.7a fixes.
pub const KNOWN_VIOLATED: &[&str] = &[];

macro_rules! violated {
    ($name:expr, $($arg:tt)*) => {
        if !skipped($name) {
            return Err(format!("property {} violated: {}", $name, format!($($arg)*)));
        }
    };
}

/// `t + d` lands on `Instant::MAX` (a "never" deadline). Zero durations are
/// not timers ("at once").
fn never(t: Instant, d: wharf_core::Duration) -> bool {
    !d.is_zero() && t + d == Instant::MAX
}

#[derive(Clone, Debug)]
struct W {
    id: WaiterId,
    key: u8,
    tag: Option<Tag>,
    /// Deadline `Instant::MAX`.
    never: bool,
    overtakes: usize,
    overtaken_by: Vec<(WaiterId, u8, ConnId)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CS {
    Connecting,
    Ready,
    Validating,
}

#[derive(Clone, Debug)]
struct C {
    key: u8,
    tag: Option<Tag>,
    state: CS,
    active: u32,
    closed: bool,
    /// `now()` when its `Connect` was polled.
    start: Instant,
    /// When it connected.
    created: Option<Instant>,
    /// Connect completion, last release, last successful validation.
    updated: Instant,
    /// Released at least once with a keep-alive that is a real deadline.
    finite_keep_alive: bool,
}

#[derive(Debug, Default)]
struct Window {
    /// The previous input's actions were all polled.
    clean: bool,
    /// A pure `handle_timeout` after everything was polled and
    /// `poll_timeout()` was `None`: it must produce no action.
    quiet_timer: bool,
    connects: usize,
    closes: usize,
}

/// `eviction`: a `Close(Evicted)` seen in the current (clean) input.
#[derive(Clone, Debug)]
struct Eviction {
    conn: ConnId,
    key: u8,
    tag: Option<Tag>,
    /// Open and connecting connections (as the backend sees them) right after
    /// it, and `max_total`.
    open: usize,
    max_total: u32,
}

#[derive(Debug, Default)]
struct Evictions {
    /// Evictions not yet followed by a `Connect` (condition 1).
    unanswered: Vec<Eviction>,
    /// Evictions that left room within `max_total`, not yet matched with a
    /// later `Connect` (condition 2), oldest first.
    owed: VecDeque<Eviction>,
    /// The input's actions so far, for the report.
    log: Vec<String>,
}

#[derive(Debug)]
struct Phase {
    label: &'static str,
    pending_at_start: usize,
    counted: usize,
    credits: usize,
    excused: usize,
    /// The last events, for the report.
    log: VecDeque<String>,
}

/// Observes one pool run (fed by the harness) and checks the properties.
pub struct Props {
    cfg: Config,
    conn_slots: usize,
    /// Pending waiters by queue order (sequence number).
    waiters: BTreeMap<u64, W>,
    waiter_seq: HashMap<WaiterId, u64>,
    next_seq: u64,
    conns: HashMap<ConnId, C>,
    conn_order: Vec<ConnId>,
    /// Routes drained with `DrainAndDelete`, until their `RouteIdle`.
    deleted: HashSet<u8>,
    window: Window,
    evictions: Evictions,
    phase: Option<Phase>,
}

impl Props {
    pub fn new(cfg: &Config) -> Self {
        Props {
            cfg: cfg.clone(),
            conn_slots: cfg.max_total as usize,
            waiters: BTreeMap::new(),
            waiter_seq: HashMap::new(),
            next_seq: 0,
            conns: HashMap::new(),
            conn_order: Vec::new(),
            deleted: HashSet::new(),
            window: Window {
                clean: true,
                ..Window::default()
            },
            evictions: Evictions::default(),
            phase: None,
        }
    }

    /// The storage's connection slots (`CONN_SLOTS` of the bounds).
    pub fn set_storage(&mut self, conns: usize) {
        self.conn_slots = conns;
    }

    /// SEMANTICS §3.7a: a starved route's waiter `w` gets a connect within
    /// `B + O + 1` releases, `B` the routes ahead of its route on the blocked
    /// list (at most the route slots): overtakes by connections already in
    /// flight (one per connection slot) plus one per route ahead.
    fn fairness_bound<I: Index>(&self, pool: &Pool<'_, u8, I>) -> usize {
        OVERTAKES_PER_CONN_SLOT * self.conn_slots + pool.capacity().routes
    }

    // ---- inputs -------------------------------------------------------------

    /// Before an input. `timer_only`: the input is `handle_timeout` alone;
    /// `drained`: every earlier action was polled.
    pub fn begin_input<I: Index>(
        &mut self,
        pool: &Pool<'_, u8, I>,
        timer_only: bool,
        drained: bool,
    ) {
        self.window = Window {
            clean: drained,
            quiet_timer: timer_only && drained && pool.poll_timeout().is_none(),
            connects: 0,
            closes: 0,
        };
        self.evictions = Evictions::default();
    }

    pub fn on_lease(
        &mut self,
        key: u8,
        tag: Option<Tag>,
        deadline: Option<Instant>,
        got: &Result<LeaseOutcome, LeaseError>,
    ) {
        match got {
            Ok(LeaseOutcome::Granted(l)) => {
                if let Some(c) = self.conns.get_mut(&l.conn()) {
                    c.active += 1;
                }
            }
            Ok(LeaseOutcome::Queued(w)) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.waiter_seq.insert(*w, seq);
                self.waiters.insert(
                    seq,
                    W {
                        id: *w,
                        key,
                        tag,
                        never: deadline == Some(Instant::MAX),
                        overtakes: 0,
                        overtaken_by: Vec::new(),
                    },
                );
            }
            Err(_) => {}
        }
    }

    pub fn on_release<I: Index>(&mut self, pool: &Pool<'_, u8, I>, lease: Lease, how: Release) {
        let now = pool.now();
        if let Some(c) = self.conns.get_mut(&lease.conn()) {
            c.active = c.active.saturating_sub(1);
            if let Release::Reuse { keep_alive, tag } = how {
                if !self.cfg.strict_tags {
                    c.tag = tag;
                }
                c.updated = now;
                if keep_alive.is_some_and(|ka| !never(now, ka)) {
                    c.finite_keep_alive = true;
                }
            }
        }
    }

    /// A successful `cancel`: whatever it withdrew, the waiter is gone (a
    /// withdrawn grant was never seen, so no lease to account for).
    pub fn on_cancel(&mut self, w: WaiterId) {
        if let Some(seq) = self.waiter_seq.remove(&w) {
            self.waiters.remove(&seq);
        }
    }

    /// `tag`: the connection's tag (`connected_as`, or with strict tags the
    /// one its connect was made for; `None` otherwise).
    pub fn on_connected<I: Index>(
        &mut self,
        pool: &Pool<'_, u8, I>,
        conn: ConnId,
        tag: Option<Tag>,
    ) {
        let now = pool.now();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = CS::Ready;
            c.created = Some(now);
            c.updated = now;
            c.tag = tag;
        }
    }

    pub fn on_connect_failed(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closed = true;
        }
    }

    pub fn on_validated<I: Index>(
        &mut self,
        pool: &Pool<'_, u8, I>,
        conn: ConnId,
        result: Validation,
    ) {
        let now = pool.now();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = CS::Ready;
            if result == Validation::Alive {
                c.updated = now;
            }
        }
    }

    pub fn on_drain<I: Index>(&mut self, pool: &Pool<'_, u8, I>, key: Option<u8>, mode: DrainMode) {
        if mode != DrainMode::DrainAndDelete {
            return;
        }
        match key {
            Some(k) => {
                if pool.route_stats(&k).is_some() {
                    self.deleted.insert(k);
                }
            }
            None => {
                let keys: Vec<u8> = pool.routes().copied().collect();
                self.deleted.extend(keys);
            }
        }
    }

    // ---- actions ------------------------------------------------------------

    fn phase_event(&mut self, what: String, expired: bool) {
        if let Some(p) = self.phase.as_mut() {
            let tag = if expired {
                p.credits += 1;
                p.excused += 1;
                "excused (Expired or MaxLeases)"
            } else if what.starts_with("Connect") && p.credits > 0 {
                p.credits -= 1;
                p.excused += 1;
                "excused (replaces an Expired or MaxLeases)"
            } else {
                p.counted += 1;
                "counted"
            };
            p.log.push_back(format!("{what}: {tag}"));
            if p.log.len() > 12 {
                p.log.pop_front();
            }
        }
    }

    /// Every polled action, in order.
    pub fn on_action<I: Index>(&mut self, pool: &Pool<'_, u8, I>, a: &Action<u8>) -> Check {
        self.track_action(pool, a)?;
        if self.window.quiet_timer {
            violated!(
                "never",
                "handle_timeout({:?}) after every action was polled and poll_timeout() was None produced {a:?}",
                pool.now()
            );
        }
        Ok(())
    }

    fn track_action<I: Index>(&mut self, pool: &Pool<'_, u8, I>, a: &Action<u8>) -> Check {
        let now = pool.now();
        if self.window.clean && self.evictions.log.len() < 64 {
            let what = match *a {
                Action::Connect { conn, route } => format!(
                    "Connect({conn:?}, route {})",
                    pool.route_key(route).copied().unwrap_or(u8::MAX)
                ),
                Action::Close { conn, reason } => format!(
                    "Close({conn:?}, {reason:?}, route {})",
                    self.conns.get(&conn).map_or(u8::MAX, |c| c.key)
                ),
                _ => format!("{a:?}"),
            };
            self.evictions.log.push(what);
        }
        match *a {
            Action::Connect { conn, route } => {
                let key = pool.route_key(route).copied().unwrap_or(u8::MAX);
                self.conns.insert(
                    conn,
                    C {
                        key,
                        tag: None,
                        state: CS::Connecting,
                        active: 0,
                        closed: false,
                        start: now,
                        created: None,
                        updated: now,
                        finite_keep_alive: false,
                    },
                );
                self.conn_order.retain(|&c| c != conn);
                self.conn_order.push(conn);
                self.window.connects += 1;
                self.phase_event(format!("Connect({conn:?}, route {key})"), false);
                self.eviction_connect(conn, key)?;
            }
            Action::Close { conn, reason } => {
                self.window.closes += 1;
                let Some(c) = self.conns.get_mut(&conn) else {
                    return Ok(());
                };
                c.closed = true;
                let c = c.clone();
                let cfg = &self.cfg;
                match reason {
                    CloseReason::ConnectTimeout
                        if cfg.connect_timeout.is_none_or(|d| never(c.start, d)) =>
                    {
                        violated!(
                            "never",
                            "Close({conn:?}, ConnectTimeout) at {now:?}: connect started at {:?}, connect_timeout {:?} (a deadline of Instant::MAX or none)",
                            c.start,
                            cfg.connect_timeout
                        );
                    }
                    CloseReason::IdleTimeout
                        if cfg.idle_timeout.is_none_or(|d| never(c.updated, d)) =>
                    {
                        violated!(
                            "never",
                            "Close({conn:?}, IdleTimeout) at {now:?}: idle since {:?}, idle_timeout {:?} (a deadline of Instant::MAX or none)",
                            c.updated,
                            cfg.idle_timeout
                        );
                    }
                    CloseReason::Expired
                        if !c.finite_keep_alive
                            && cfg
                                .max_lifetime
                                .is_none_or(|d| c.created.is_none_or(|t| never(t, d))) =>
                    {
                        violated!(
                            "never",
                            "Close({conn:?}, Expired) at {now:?}: connected at {:?}, max_lifetime {:?}, no keep-alive short of Instant::MAX (a deadline of Instant::MAX or none)",
                            c.created,
                            cfg.max_lifetime
                        );
                    }
                    _ => {}
                }
                // Retirements the configuration forces (a lifetime or
                // keep-alive, `max_leases_per_conn`): bounded without new
                // demand (no new lease, so no more `MaxLeases` closes than
                // leases held when the phase began), each excusing the
                // connect that replaces it.
                self.phase_event(
                    format!("Close({conn:?}, {reason:?}, route {})", c.key),
                    matches!(reason, CloseReason::Expired | CloseReason::MaxLeases),
                );
                self.eviction_close(pool, conn, &c, reason)?;
            }
            Action::Validate { conn } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return Ok(());
                };
                c.state = CS::Validating;
                let updated = c.updated;
                let va = self.cfg.validate_after_inactivity;
                if !va.is_some_and(|v| v.is_zero() || !never(updated, v)) {
                    violated!(
                        "never",
                        "Validate({conn:?}) at {now:?}: inactive since {updated:?}, validate_after_inactivity {va:?} (a deadline of Instant::MAX or none)"
                    );
                }
            }
            Action::Granted { waiter, lease } => {
                let Some(seq) = self.waiter_seq.remove(&waiter) else {
                    return Ok(());
                };
                let Some(x) = self.waiters.remove(&seq) else {
                    return Ok(());
                };
                let conn = lease.conn();
                let free = match self.conns.get_mut(&conn) {
                    Some(c) => {
                        c.active += 1;
                        c.active == 1
                    }
                    None => false,
                };
                if free && self.window.clean && !pool.is_closed() {
                    self.overtake(pool, seq, &x, conn)?;
                }
            }
            Action::Failed { waiter, reason } => {
                let Some(seq) = self.waiter_seq.remove(&waiter) else {
                    return Ok(());
                };
                let Some(w) = self.waiters.remove(&seq) else {
                    return Ok(());
                };
                if reason == FailReason::Timeout && w.never {
                    violated!(
                        "never",
                        "waiter {waiter:?} (route {}) with deadline Instant::MAX failed Timeout at {now:?}",
                        w.key
                    );
                }
            }
            Action::RouteIdle { route, key } => {
                if pool.route_key(route).is_none() {
                    self.deleted.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// Counts the grant of `conn` (which had no lease) to waiter `x` (queue
    /// number `xseq`) as an overtake of every older waiter of another route
    /// that could have been served instead.
    fn overtake<I: Index>(
        &mut self,
        pool: &Pool<'_, u8, I>,
        xseq: u64,
        x: &W,
        conn: ConnId,
    ) -> Check {
        let bound = self.fairness_bound(pool);
        let mut eligible: HashMap<u8, bool> = HashMap::new();
        let older: Vec<u64> = self.waiters.range(..xseq).map(|(&s, _)| s).collect();
        for s in older {
            let b = self.waiters[&s].key;
            if b == x.key {
                continue;
            }
            let ok = *eligible
                .entry(b)
                .or_insert_with(|| self.blocked_elsewhere(pool, b));
            if !ok {
                continue;
            }
            let w = self.waiters.get_mut(&s).unwrap();
            w.overtakes += 1;
            w.overtaken_by.push((x.id, x.key, conn));
            let mut seen = MAX_OVERTAKES.lock().unwrap();
            let most = seen.entry(self.conn_slots).or_default();
            *most = (*most).max(w.overtakes);
            if w.overtakes > bound {
                let w = w.clone();
                violated!(
                    "fairness",
                    "waiter {:?} of route {} (queued before them, its route with no connection at all) was overtaken {} times (bound {bound} = {OVERTAKES_PER_CONN_SLOT} x {} connection slots + the route slots) by grants of a free connection to younger waiters of other routes: {:?}",
                    w.id,
                    w.key,
                    w.overtakes,
                    self.conn_slots,
                    w.overtaken_by
                );
            }
        }
        Ok(())
    }

    /// Route `b` could get a connection of its own (below its limit, nothing
    /// connecting or validating, not being deleted): its waiters wait for the
    /// total or the slots, i.e. for other routes.
    fn blocked_elsewhere<I: Index>(&self, pool: &Pool<'_, u8, I>, b: u8) -> bool {
        if self.deleted.contains(&b) {
            return false;
        }
        let Some(rs) = pool.route_stats(&b) else {
            return false;
        };
        // Starved: no connection of its own at all (SEMANTICS §3.7a).
        let has_one = self.conns.values().any(|c| c.key == b && !c.closed);
        !has_one && rs.limit > 0
    }

    // ---- eviction ---------------------------------------------------------------

    /// A waiter of `w`'s tag can be served by a connection tagged `tag`.
    fn compatible(&self, w: &W, tag: Option<Tag>) -> bool {
        tag == w.tag || (tag.is_none() && !self.cfg.strict_tags)
    }

    /// `Close(conn, reason)` was polled (and `c`, its record, marked closed).
    fn eviction_close<I: Index>(
        &mut self,
        pool: &Pool<'_, u8, I>,
        conn: ConnId,
        c: &C,
        reason: CloseReason,
    ) -> Check {
        if reason != CloseReason::Evicted || !self.window.clean {
            return Ok(());
        }
        let open = self.conns.values().filter(|c| !c.closed).count();
        let e = Eviction {
            conn,
            key: c.key,
            tag: c.tag,
            open,
            max_total: pool.stats().max_total,
        };
        if open < e.max_total as usize {
            self.evictions.owed.push_back(e.clone());
        }
        self.evictions.unanswered.push(e.clone());
        if pool.is_closed() {
            violated!(
                "eviction",
                "Close({conn:?}, Evicted) of a connection of route {} on a closed pool (nobody can connect); this input's actions: {:?}",
                e.key,
                self.evictions.log
            );
            return Ok(());
        }
        let per_conn = self
            .cfg
            .connecting_capacity
            .min(self.cfg.max_leases_per_conn.unwrap_or(u32::MAX)) as usize;
        let mut keys: Vec<u8> = self.waiters.values().map(|w| w.key).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut seen = Vec::new();
        for b in keys {
            let waiting: Vec<&W> = self.waiters.values().filter(|w| w.key == b).collect();
            let open_b = self.conns.values().filter(|x| x.key == b && !x.closed);
            let connecting = open_b.clone().filter(|x| x.state == CS::Connecting).count();
            let allocated = open_b.count();
            let limit = pool.route_stats(&b).map_or(u32::MAX, |rs| rs.limit);
            let deleted = self.deleted.contains(&b);
            let other = b != e.key || waiting.iter().any(|w| !self.compatible(w, e.tag));
            let demand = waiting.len() > connecting * per_conn;
            if !deleted && other && demand && allocated < limit as usize {
                return Ok(());
            }
            seen.push(format!(
                "route {b}: {} pending, {connecting} connecting, {allocated} open or connecting, limit {limit}{}{}",
                waiting.len(),
                if deleted { ", being deleted" } else { "" },
                if other { "" } else { ", every waiter could use the evicted connection" }
            ));
        }
        violated!(
            "eviction",
            "Close({conn:?}, Evicted) of a connection of route {} (tag {:?}) when no route needed a connection it could make room for (routes with waiters: {seen:?}); this input's actions: {:?}",
            e.key,
            e.tag,
            self.evictions.log
        );
        Ok(())
    }

    /// `Connect(conn)` for route `key` was polled.
    fn eviction_connect(&mut self, conn: ConnId, key: u8) -> Check {
        if !self.window.clean {
            return Ok(());
        }
        self.evictions.owed.pop_front();
        for e in std::mem::take(&mut self.evictions.unanswered) {
            let mut waiters = self.waiters.values().filter(|w| w.key == key);
            let why = if key != e.key {
                if waiters.next().is_some() {
                    continue;
                }
                format!("route {key} has no pending waiter")
            } else {
                if waiters.any(|w| !self.compatible(w, e.tag)) {
                    continue;
                }
                format!(
                    "it is the evicted connection's own route and each of its pending waiters ({:?}) could have used the evicted connection (tag {:?})",
                    self.waiters
                        .values()
                        .filter(|w| w.key == key)
                        .map(|w| (w.id, w.tag))
                        .collect::<Vec<_>>(),
                    e.tag
                )
            };
            violated!(
                "eviction-churn",
                "Close({:?}, Evicted) of a connection of route {} was followed by Connect({conn:?}) for route {key}, which the eviction did not make room for: {why}; this input's actions: {:?}",
                e.conn,
                e.key,
                self.evictions.log
            );
        }
        Ok(())
    }

    // ---- checks after an input ----------------------------------------------

    /// No connect or validation outstanding (as far as the backend knows).
    pub fn is_quiet(&self) -> bool {
        self.conns
            .values()
            .all(|c| c.closed || c.state == CS::Ready)
    }

    /// After an input and the polling of its actions. `drained`: every action
    /// was polled.
    pub fn end_input<I: Index>(&mut self, pool: &Pool<'_, u8, I>, drained: bool) -> Check {
        let n = self.conn_slots;
        let (connects, closes) = (self.window.connects, self.window.closes);
        if connects > CONNECTS_PER_INPUT_PER_CONN_SLOT * n {
            violated!(
                "work-per-input",
                "one input caused {connects} Connect actions (bound {} for {n} connection slots)",
                CONNECTS_PER_INPUT_PER_CONN_SLOT * n
            );
        }
        if closes > CLOSES_PER_INPUT_PER_CONN_SLOT * n {
            violated!(
                "work-per-input",
                "one input caused {closes} Close actions (bound {} for {n} connection slots)",
                CLOSES_PER_INPUT_PER_CONN_SLOT * n
            );
        }
        if !drained {
            return Ok(());
        }
        if self.window.clean {
            if let Some(e) = self.evictions.owed.front() {
                violated!(
                    "eviction",
                    "Close({:?}, Evicted) of a connection of route {} left {} connections open or connecting (max_total {}), yet no Connect followed it: it closed a usable connection for nothing; this input's actions: {:?}",
                    e.conn,
                    e.key,
                    e.open,
                    e.max_total,
                    self.evictions.log
                );
            }
        }
        let mut deleted: Vec<u8> = self.deleted.iter().copied().collect();
        deleted.sort_unstable();
        for k in deleted {
            if let Some(rs) = pool.route_stats(&k) {
                if rs.pending == 0 && rs.connecting > 0 {
                    violated!(
                        "deleted-connect",
                        "route {k} is being deleted and has no waiter, yet {} of its connections are still connecting (they can never be used and hold max_total slots): {rs:?}",
                        rs.connecting
                    );
                }
            }
        }
        if self.is_quiet() && pool.poll_timeout().is_none() {
            self.check_liveness(
                pool,
                "every action polled, nothing outstanding, poll_timeout() None",
            )?;
        }
        Ok(())
    }

    /// The liveness property at a quiet point (every action polled, no connect
    /// or validation outstanding).
    pub fn check_liveness<I: Index>(&self, pool: &Pool<'_, u8, I>, when: &str) -> Check {
        let ps = pool.stats();
        for w in self.waiters.values() {
            let compatible = self.conn_order.iter().find(|c| {
                let c = &self.conns[c];
                c.key == w.key
                    && !c.closed
                    && c.state == CS::Ready
                    && c.active == 0
                    && (c.tag == w.tag || (c.tag.is_none() && !self.cfg.strict_tags))
            });
            if let Some(c) = compatible {
                violated!(
                    "liveness",
                    "({when}) waiter {:?} (route {}, tag {:?}) waits while connection {c:?} of its route (tag {:?}) is idle",
                    w.id,
                    w.key,
                    w.tag,
                    self.conns[c].tag
                );
            }
            if pool.is_closed() || self.deleted.contains(&w.key) {
                continue;
            }
            let Some(rs) = pool.route_stats(&w.key) else {
                continue;
            };
            // Idle connections of its own route to close first (RouteLimit).
            let own = (rs.connections + 1).saturating_sub(rs.limit);
            let route_ok = own <= rs.idle;
            let total_after = ps.connections.saturating_sub(own);
            let idle_after = ps.idle.saturating_sub(own);
            let slots = self.conn_slots as u32;
            let total_ok = total_after < ps.max_total || idle_after > 0;
            let slot_ok = total_after < slots || idle_after > 0;
            let guard_ok =
                self.cfg.starvation_guard && rs.connections == 0 && ps.connections < slots;
            if route_ok && ((total_ok && slot_ok) || guard_ok) {
                let how = if guard_ok && !(total_ok && slot_ok) {
                    "the starvation guard allows one".to_string()
                } else if own > 0 {
                    format!("closing {own} idle connection(s) of its route that other tags hold")
                } else if total_after < ps.max_total && total_after < slots {
                    "the total and the connection slots have room".to_string()
                } else {
                    "an idle connection can be evicted".to_string()
                };
                violated!(
                    "liveness",
                    "({when}) waiter {:?} (route {}, tag {:?}) waits while a connection for it could be made ({how}): route {rs:?}, pool {ps:?}, {} connection slots",
                    w.id,
                    w.key,
                    w.tag,
                    self.conn_slots
                );
            }
        }
        Ok(())
    }

    // ---- no-demand phases -----------------------------------------------------

    /// Starts a no-demand phase (no new lease from here to `end_phase`).
    pub fn begin_phase(&mut self, label: &'static str) {
        self.phase = Some(Phase {
            label,
            pending_at_start: self.waiters.len(),
            counted: 0,
            credits: 0,
            excused: 0,
            log: VecDeque::new(),
        });
    }

    fn churn_bound(&self) -> usize {
        let pending = self.phase.as_ref().map_or(0, |p| p.pending_at_start);
        CHURN_PER_CONN_SLOT * self.conn_slots + CHURN_PER_WAITER * pending
    }

    /// Steps the phase may take.
    pub fn phase_budget(&self) -> usize {
        CHURN_STEPS_PER_EVENT * (self.churn_bound() + 1) + CHURN_STEPS_MIN
    }

    /// Ends the phase: the churn bound, then (at a quiet point) liveness.
    pub fn end_phase<I: Index>(
        &mut self,
        pool: &Pool<'_, u8, I>,
        drained: bool,
        steps: usize,
    ) -> Check {
        let bound = self.churn_bound();
        let Some(p) = self.phase.take() else {
            return Ok(());
        };
        if p.counted > bound {
            violated!(
                "churn",
                "without new demand ({}), {} connects/closes in {steps} steps (bound {bound} = {CHURN_PER_CONN_SLOT} x {} connection slots + {CHURN_PER_WAITER} x {} waiters pending; {} retirement events (Expired, MaxLeases) excused); last events: {:?}",
                p.label,
                p.counted,
                self.conn_slots,
                p.pending_at_start,
                p.excused,
                p.log
            );
        }
        if drained && self.is_quiet() {
            let when = format!(
                "end phase {}: every connect and validation answered, time advanced through the deadlines, poll_timeout() {:?}",
                p.label,
                pool.poll_timeout()
            );
            self.check_liveness(pool, &when)?;
        }
        Ok(())
    }
}
