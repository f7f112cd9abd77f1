//! A deliberately plain reference model of the pool, written from
//! `docs/SEMANTICS.md` and `shared/reference/pool-semantics.md` only (never from
//! the core's code). It uses `Vec`/`HashMap`/`BTreeMap`, recomputes every count
//! from scratch, and names things by its own ids (creation counters).
//!
//! Section numbers in comments refer to `docs/SEMANTICS.md`.

/// Coverage hook for rare paths of the model (the rules of issue 10, the host
/// hooks of §12): the harness sets it to count them (printed with
/// `WHARF_MODEL_COVERAGE=1` / `WHARF_CLUSTER_MODEL_COVERAGE=1`).
pub static COVERAGE: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

pub(crate) fn event(what: &str) {
    if let Some(f) = COVERAGE.get() {
        f(what);
    }
}

/// §2: "`Instant::MAX` means never": a deadline equal to `Instant::MAX`
/// (given, or reached by a saturating sum) is no deadline.
fn never(d: Instant) -> Option<Instant> {
    (d != Instant::MAX).then_some(d)
}

use std::collections::{BTreeMap, HashMap, VecDeque};

use wharf_core::{
    CancelError, CancelPolicy, CloseReason, Config, ConfigError, ConnError, ConnectFailure,
    Counters, DrainMode, FailReason, Instant, LeaseError, PoolStats, Release, ReleaseError,
    ReusePolicy, RouteConfig, RouteError, RouteLoad, RouteStats, Tag, Validation,
};

/// `Pool::MAX_STREAMS` (public API): the largest stream capacity of one
/// connection; `connected` and `set_capacity` clamp to it (§7).
const MAX_STREAMS: u32 = wharf_core::Pool::<'static, u8>::MAX_STREAMS;

/// splitmix64's finalizer (§2, lifetime jitter).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x
}

/// Model connection id (creation order).
pub type Cid = u64;
/// Model waiter id (creation order).
pub type Wid = u64;
/// Model lease id (creation order).
pub type Lid = u64;
/// Model route id (its sequence number).
pub type Rid = u64;

/// Storage slot counts the model emulates.
#[derive(Clone, Copy, Debug)]
pub struct Slots {
    pub conns: usize,
    pub routes: usize,
    pub waiters: usize,
    pub leases: usize,
}

/// An action, in model ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MAction {
    Connect { conn: Cid, key: u8 },
    Close { conn: Cid, reason: CloseReason },
    Validate { conn: Cid },
    Granted { waiter: Wid, lease: Lid, conn: Cid },
    Failed { waiter: Wid, reason: FailReason },
    RouteIdle { key: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MOutcome {
    Granted { lease: Lid, conn: Cid },
    Queued(Wid),
}

/// What `cancel` withdrew (§7), in model ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MCancelled {
    Waiting,
    Grant { lease: Lid, conn: Cid },
    Failure(FailReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CState {
    Connecting,
    Ready,
    Validating,
}

#[derive(Clone, Debug)]
struct MConn {
    seq: u64,
    route: Rid,
    state: CState,
    capacity: u32,
    active: u32,
    remaining: Option<u32>,
    draining: Option<CloseReason>,
    tag: Option<Tag>,
    start: Instant,
    created: Instant,
    updated: Instant,
    /// `None` also when `created + max_lifetime` is `Instant::MAX` (§2).
    validity: Option<Instant>,
    expiry: Option<Instant>,
    /// §2: an idle timeout passed at or below `min_idle(r)`: the idle timeout
    /// no longer counts until `updated` is next set.
    kept: bool,
    served: bool,
    connect_polled: bool,
    validate_polled: bool,
    vwaiter: Option<Wid>,
    /// §3.3 step 4 (strict tags): what a demand connect was made for
    /// (`connect_tag(c)`); `None` for other connects and without strict tags.
    intent: Option<Tag>,
    /// Opened by the starvation guard above `max_total` (§3.3 step 2).
    guard: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Overrides {
    limit: Option<u32>,
    min_idle: Option<u32>,
    ratio: Option<u32>,
}

impl Overrides {
    fn is_empty(&self) -> bool {
        self.limit.is_none() && self.min_idle.is_none() && self.ratio.is_none()
    }
}

#[derive(Clone, Debug)]
struct MRoute {
    id: Rid,
    key: u8,
    ov: Overrides,
    deleted: bool,
    queue: Vec<Wid>,
    ready: Vec<Cid>,
    connecting: Vec<Cid>,
    backoff: Option<Instant>,
    mark: bool,
    connects: u64,
    grants: u64,
    /// §12: an unhealthy route connects only for demand.
    healthy: bool,
}

#[derive(Clone, Debug)]
struct MWaiter {
    seq: u64,
    route: Rid,
    tag: Option<Tag>,
    deadline: Option<Instant>,
    validating: Option<Cid>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Created {
    Yes,
    Guard,
    No,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Waiter(Wid),
    Conn(Cid),
    Route(Rid),
}

/// The reference model.
pub struct Model {
    cfg: Config,
    max_pending: u32,
    max_leases: u32,
    ratio: u32,
    slots: Slots,
    last_now: Instant,
    seq: u64,
    next_cid: Cid,
    next_wid: Wid,
    next_lid: Lid,
    routes: Vec<MRoute>,
    conns: BTreeMap<Cid, MConn>,
    closing: u32,
    lru: VecDeque<Cid>,
    blocked: Vec<Rid>,
    waiters: HashMap<Wid, MWaiter>,
    answered_unpolled: u32,
    /// Route of each answered waiter whose answer is not polled yet.
    answered_route: HashMap<Wid, Rid>,
    leases: HashMap<Lid, Cid>,
    actions: VecDeque<MAction>,
    counters: Counters,
    closed: bool,
    /// §2 lifetime jitter: the generator's state `s`.
    rng: u64,
}

/// §12: "A ratio is 0 or within 1.0..=3.0 (else `BadPreconnectRatio`); 0
/// means off". In 1/1000; 0 stays 0.
fn ratio_milli(r: f32) -> Result<u32, ConfigError> {
    if r == 0.0 {
        return Ok(0);
    }
    if !(1.0..=3.0).contains(&r) {
        return Err(ConfigError::BadPreconnectRatio);
    }
    Ok((r * 1000.0 + 0.5) as u32)
}

/// `Config::preconnect_ratio` and `RouteConfig::preconnect_ratio`: 0 is "no
/// preconnect", "for the pool and route settings, the same as 1.0" (§12).
fn setting_ratio(r: f32) -> Result<u32, ConfigError> {
    Ok(ratio_milli(r)?.max(1000))
}

fn reason_index(r: ConnectFailure) -> usize {
    match r {
        ConnectFailure::Timeout => 0,
        ConnectFailure::Local => 1,
        ConnectFailure::Remote => 2,
    }
}

impl Model {
    pub fn new(cfg: Config, slots: Slots) -> Result<Model, ConfigError> {
        if cfg.max_total == 0 {
            return Err(ConfigError::ZeroMaxTotal);
        }
        if cfg.max_per_route == 0 {
            return Err(ConfigError::ZeroMaxPerRoute);
        }
        if cfg.max_total as usize > slots.conns {
            return Err(ConfigError::MaxTotalExceedsStorage);
        }
        let max_pending = match cfg.max_pending {
            Some(p) if p as usize > slots.waiters => {
                return Err(ConfigError::MaxPendingExceedsStorage)
            }
            Some(p) => p,
            None => slots.waiters as u32,
        };
        let max_leases = match cfg.max_leases {
            Some(l) if l == 0 || l as usize > slots.leases => {
                return Err(ConfigError::BadMaxLeases)
            }
            Some(l) => l,
            None => slots.leases as u32,
        };
        for d in [cfg.connect_timeout, cfg.idle_timeout, cfg.max_lifetime] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::ZeroTimeout);
            }
        }
        let ratio = setting_ratio(cfg.preconnect_ratio)?;
        if cfg.min_idle_per_route > cfg.max_per_route
            || cfg
                .max_idle_per_route
                .is_some_and(|m| cfg.min_idle_per_route > m)
        {
            return Err(ConfigError::MinIdleTooLarge);
        }
        // `ConfigError::ZeroConnectingCapacity`: "0 or above 65,536".
        if cfg.connecting_capacity == 0 || cfg.connecting_capacity > 65_536 {
            return Err(ConfigError::ZeroConnectingCapacity);
        }
        if cfg.max_leases_per_conn == Some(0) {
            return Err(ConfigError::ZeroMaxLeasesPerConn);
        }
        // §4 / `ConfigError::NeverServes`: "`max_pending: Some(0)` (no lease
        // ever waits) needs `min_idle_per_route >= 1`".
        if cfg.max_pending == Some(0) && cfg.min_idle_per_route == 0 {
            return Err(ConfigError::NeverServes);
        }
        // §2: `max_lifetime_jitter_percent` is 0..=100.
        if cfg.max_lifetime_jitter_percent > 100 {
            return Err(ConfigError::BadJitter);
        }
        // §2: "initially `mix(seed ^ 0x6a09e667f3bcc909)`".
        let rng = mix(cfg.seed ^ 0x6a09_e667_f3bc_c909);
        Ok(Model {
            cfg,
            max_pending,
            max_leases,
            ratio,
            slots,
            last_now: Instant::ZERO,
            seq: 0,
            next_cid: 0,
            next_wid: 0,
            next_lid: 0,
            routes: Vec::new(),
            conns: BTreeMap::new(),
            closing: 0,
            lru: VecDeque::new(),
            blocked: Vec::new(),
            waiters: HashMap::new(),
            answered_unpolled: 0,
            answered_route: HashMap::new(),
            leases: HashMap::new(),
            actions: VecDeque::new(),
            counters: Counters::default(),
            closed: false,
            rng,
        })
    }

    // ----- small helpers -------------------------------------------------

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn ri(&self, r: Rid) -> usize {
        self.routes
            .iter()
            .position(|x| x.id == r)
            .expect("model: route exists")
    }

    fn route(&self, r: Rid) -> &MRoute {
        &self.routes[self.ri(r)]
    }

    fn route_mut(&mut self, r: Rid) -> &mut MRoute {
        let i = self.ri(r);
        &mut self.routes[i]
    }

    fn route_by_key(&self, key: u8) -> Option<Rid> {
        self.routes.iter().find(|x| x.key == key).map(|x| x.id)
    }

    fn conn(&self, c: Cid) -> &MConn {
        &self.conns[&c]
    }

    fn conn_mut(&mut self, c: Cid) -> &mut MConn {
        self.conns.get_mut(&c).expect("model: conn exists")
    }

    fn is_available(c: &MConn) -> bool {
        c.state == CState::Ready && c.draining.is_none() && c.active < c.capacity
    }

    fn is_idle(c: &MConn) -> bool {
        Self::is_available(c) && c.active == 0
    }

    fn available(&self, c: Cid) -> bool {
        self.conns.get(&c).is_some_and(Self::is_available)
    }

    fn idle(&self, c: Cid) -> bool {
        self.conns.get(&c).is_some_and(Self::is_idle)
    }

    fn allocated(&self, r: Rid) -> u32 {
        self.conns.values().filter(|c| c.route == r).count() as u32
    }

    fn total(&self) -> u32 {
        self.conns.len() as u32
    }

    fn idle_of(&self, r: Rid) -> u32 {
        self.conns
            .values()
            .filter(|c| c.route == r && Self::is_idle(c))
            .count() as u32
    }

    fn total_idle(&self) -> u32 {
        self.conns.values().filter(|c| Self::is_idle(c)).count() as u32
    }

    fn connecting_of(&self, r: Rid) -> u32 {
        self.conns
            .values()
            .filter(|c| c.route == r && c.state == CState::Connecting)
            .count() as u32
    }

    /// §1: the capacity counted for a connecting connection:
    /// `min(Config::connecting_capacity, max_leases_per_conn)`.
    fn per_conn(&self) -> u64 {
        let per = self.cfg.connecting_capacity as u64;
        match self.cfg.max_leases_per_conn {
            Some(m) if (m as u64) < per => {
                event("model: connecting capacity capped by max_leases_per_conn");
                m as u64
            }
            _ => per,
        }
    }

    /// §1: `connecting_capacity(r)`.
    fn connecting_capacity(&self, r: Rid) -> u64 {
        self.connecting_of(r) as u64 * self.per_conn()
    }

    /// §1: sum over available connections of `min(capacity - active,
    /// remaining)`.
    fn spare(&self, r: Rid) -> u64 {
        self.conns
            .values()
            .filter(|c| c.route == r && Self::is_available(c))
            .map(|c| {
                let free = (c.capacity - c.active) as u64;
                match c.remaining {
                    Some(rem) if (rem as u64) < free => {
                        event("model: spare capped by remaining leases");
                        rem as u64
                    }
                    _ => free,
                }
            })
            .sum()
    }

    /// §3.2: the demand check `len(queue(r)) > connecting_capacity(r)`.
    fn has_demand(&self, r: Rid) -> bool {
        self.route(r).queue.len() as u64 > self.connecting_capacity(r)
    }

    /// §3.2: "the idle limits leave room" for a preconnect (also §3.5, §12):
    /// it would not be closed by an idle limit the moment it connects.
    fn idle_room(&self, r: Rid) -> bool {
        let per_route = self
            .cfg
            .max_idle_per_route
            .is_none_or(|m| self.idle_of(r) + self.connecting_of(r) < m);
        let connecting = self
            .conns
            .values()
            .filter(|c| c.state == CState::Connecting)
            .count() as u32;
        let total = self
            .cfg
            .max_idle
            .is_none_or(|m| self.total_idle() + connecting < m);
        per_route && total
    }

    fn active_of(&self, r: Rid) -> u32 {
        self.conns
            .values()
            .filter(|c| c.route == r)
            .map(|c| c.active)
            .sum()
    }

    fn pending_of(&self, r: Rid) -> u32 {
        self.waiters.values().filter(|w| w.route == r).count() as u32
    }

    fn limit(&self, r: Rid) -> u32 {
        self.route(r).ov.limit.unwrap_or(self.cfg.max_per_route)
    }

    fn ratio_of(&self, r: Rid) -> u32 {
        self.route(r).ov.ratio.unwrap_or(self.ratio)
    }

    fn min_idle(&self, r: Rid) -> u32 {
        self.route(r)
            .ov
            .min_idle
            .unwrap_or(self.cfg.min_idle_per_route)
    }

    fn backoff_pending(&self, r: Rid) -> bool {
        self.route(r).backoff.is_some()
    }

    fn waiter_slot_free(&self) -> bool {
        self.waiters.len() + (self.answered_unpolled as usize) < self.slots.waiters
    }

    fn pending_full(&self) -> bool {
        self.waiters.len() as u32 >= self.max_pending || !self.waiter_slot_free()
    }

    fn leases_full(&self) -> bool {
        self.leases.len() as u32 >= self.max_leases || self.leases.len() >= self.slots.leases
    }

    fn conn_slot_free(&self) -> bool {
        self.conns.len() + (self.closing as usize) < self.slots.conns
    }

    fn clamp_now(&mut self, now: Instant) -> Instant {
        if now > self.last_now {
            self.last_now = now;
        }
        self.last_now
    }

    fn push(&mut self, a: MAction) {
        self.actions.push_back(a);
    }

    /// A new waiter or connection on `r` clears the idle mark and withdraws an
    /// unpolled `RouteIdle` (§3.6).
    fn unmark(&mut self, r: Rid) {
        let key = self.route(r).key;
        self.route_mut(r).mark = false;
        self.actions.retain(|a| *a != MAction::RouteIdle { key });
    }

    fn remove_from_lists(&mut self, c: Cid) {
        let r = self.conn(c).route;
        let route = self.route_mut(r);
        route.ready.retain(|&x| x != c);
        route.connecting.retain(|&x| x != c);
        self.lru.retain(|&x| x != c);
    }

    /// Keep the ready list and LRU membership consistent with the connection's
    /// state after a change (leaves lists when no longer available / idle).
    fn leave_if_unavailable(&mut self, c: Cid) {
        let r = self.conn(c).route;
        if !self.available(c) {
            self.route_mut(r).ready.retain(|&x| x != c);
        }
        if !self.idle(c) {
            self.lru.retain(|&x| x != c);
        }
    }

    // ----- §3 routines ----------------------------------------------------

    /// §3.1
    fn settle(&mut self, r: Rid) {
        if !self.routes.iter().any(|x| x.id == r) {
            return;
        }
        if self.route(r).deleted {
            if self.allocated(r) == 0 && !self.route(r).queue.is_empty() {
                let q = self.route(r).queue.clone();
                for w in q {
                    self.fail_waiter(w, FailReason::Draining);
                }
            }
            // "if `queue(r)` is empty, close every connecting connection of
            // `r` (creation order, `Drained`)" (Envoy's DrainWhileConnecting).
            if self.route(r).queue.is_empty() && !self.route(r).connecting.is_empty() {
                event("model: settle of a deleted route closes its connecting connections");
                let connecting = self.route(r).connecting.clone();
                for c in connecting {
                    self.close(c, CloseReason::Drained);
                }
            }
        }
        // §3.1 step 2 (dd8eb13): "`unblock()` and `try_create(r)`, oldest
        // waiter first: if the blocked list is not empty and `r` has a queued
        // waiter older than the oldest waiter of the first blocked route `b !=
        // r` that wants capacity (§3.7a), or no blocked route but `r` wants
        // capacity, `try_create(r)` then `unblock()`; otherwise `unblock()`
        // then `try_create(r)`." Reading: "no blocked route" is no such `b`.
        let first_b = self
            .blocked
            .iter()
            .copied()
            .find(|&b| b != r && self.wants_capacity(b));
        let own_first = match first_b {
            Some(b) => {
                let older = match (self.oldest_waiter(r), self.oldest_waiter(b)) {
                    (Some(a), Some(o)) => a < o,
                    _ => false,
                };
                if older {
                    event("model: settle serves the route's own older waiter before the blocked routes");
                }
                older
            }
            None => {
                let wants = self.wants_capacity(r);
                if wants && !self.blocked.is_empty() {
                    event(
                        "model: settle tries its own route first (no blocked route wants capacity)",
                    );
                }
                wants
            }
        };
        // §3.1 step 2: "otherwise `unblock()`, passing over `r` (if `r` is
        // on the blocked list it goes to its back, as if tried and blocked
        // again), then `try_create(r)`".
        if own_first {
            self.try_create(r);
            self.unblock(None);
        } else {
            self.unblock(Some(r));
            self.try_create(r);
        }
        self.warm(r);
        self.check_idle(r);
    }

    /// §3.2
    fn try_create(&mut self, r: Rid) {
        if !self.routes.iter().any(|x| x.id == r) || self.route(r).deleted {
            return;
        }
        for _ in 0..3 {
            let q = self.route(r).queue.len() as u64;
            let cc = self.connecting_capacity(r);
            let demand = q > cc;
            let ratio = self.ratio_of(r) as u64;
            let active = self.active_of(r) as u64;
            // §12: an unhealthy route makes no preconnect.
            let wanted = self.route(r).healthy
                && ratio > 1000
                && (q + active) * ratio > (cc + self.spare(r) + active) * 1000
                && !self.backoff_pending(r);
            // §3.2: "Preconnects count against the idle limits."
            let preconnect = wanted && self.idle_room(r);
            if wanted && !preconnect && !demand {
                event("model: preconnect refused by an idle limit (try_create)");
            }
            if !demand && !preconnect {
                break;
            }
            if self.create(r, demand, false) != Created::Yes {
                break;
            }
        }
    }

    fn block(&mut self, r: Rid) {
        if !self.blocked.contains(&r) {
            self.blocked.push(r);
        }
    }

    /// §3.3 (and the restricted form used by warm, §3.5).
    fn create(&mut self, r: Rid, demand: bool, warm: bool) -> Created {
        // 1. Route limit.
        if self.allocated(r) >= self.limit(r) {
            if demand {
                while self.allocated(r) >= self.limit(r) {
                    let victim = self
                        .route(r)
                        .ready
                        .iter()
                        .rev()
                        .copied()
                        .find(|&c| self.idle(c));
                    match victim {
                        Some(c) => self.close(c, CloseReason::RouteLimit),
                        None => break,
                    }
                }
            }
            if self.allocated(r) >= self.limit(r) {
                return Created::No;
            }
        }
        // 2. Total limit.
        let mut guard = false;
        if self.total() >= self.cfg.max_total {
            if warm {
                return Created::No;
            }
            if demand {
                if let Some(&victim) = self.lru.back() {
                    let vr = self.conn(victim).route;
                    self.close(victim, CloseReason::Evicted);
                    self.check_idle(vr);
                }
            }
            if self.total() >= self.cfg.max_total {
                // §3.3: the guard is for demand only (preconnects never pass a limit).
                if self.cfg.starvation_guard && demand && self.allocated(r) == 0 {
                    guard = true;
                } else {
                    if demand {
                        self.block(r);
                    }
                    return Created::No;
                }
            }
        }
        // 3. Connection slot.
        if !self.conn_slot_free() {
            if demand && !warm {
                self.block(r);
            }
            return Created::No;
        }
        // 4. Create. With strict tags a demand connect records what it is for:
        // "the tag of the oldest queued waiter whose tag no connecting
        // connection of `r` is for, else the oldest queued waiter's tag;
        // other connects are for `None`".
        let intent = if self.cfg.strict_tags && demand {
            let covered: Vec<Option<Tag>> = self
                .route(r)
                .connecting
                .iter()
                .map(|c| self.conn(*c).intent)
                .collect();
            // Reading: a connecting preconnect or warm-up connection "is for"
            // `None` ("other connects are for `None`"), so it covers an
            // untagged waiter.
            if self
                .route(r)
                .queue
                .iter()
                .any(|w| self.waiters[w].tag.is_none())
                && self
                    .route(r)
                    .queue
                    .iter()
                    .any(|w| self.waiters[w].tag.is_some())
                && covered.contains(&None)
            {
                event("model: strict connect: a connect for None covers the untagged waiters");
            }
            let tags: Vec<Option<Tag>> = self
                .route(r)
                .queue
                .iter()
                .map(|w| self.waiters[w].tag)
                .collect();
            match tags.iter().find(|t| !covered.contains(t)) {
                Some(&t) => {
                    if Some(&t) != tags.first() {
                        event("model: strict connect for a younger waiter's tag (the oldest's is covered)");
                    }
                    t
                }
                None => {
                    event(
                        "model: strict connect: every queued tag covered, for the oldest waiter's",
                    );
                    tags[0]
                }
            }
        } else {
            None
        };
        if intent.is_some() {
            event("model: strict demand connect for a tag");
        }
        let now = self.last_now;
        let seq = self.next_seq();
        let c = self.next_cid;
        self.next_cid += 1;
        self.conns.insert(
            c,
            MConn {
                seq,
                route: r,
                state: CState::Connecting,
                capacity: 0,
                active: 0,
                remaining: None,
                draining: None,
                tag: None,
                start: now,
                created: now,
                updated: now,
                validity: None,
                expiry: None,
                kept: false,
                served: false,
                connect_polled: false,
                validate_polled: false,
                vwaiter: None,
                intent,
                guard,
            },
        );
        let key = self.route(r).key;
        self.route_mut(r).connecting.push(c);
        self.route_mut(r).connects += 1;
        self.unmark(r);
        self.push(MAction::Connect { conn: c, key });
        self.counters.connects += 1;
        if warm {
            self.counters.warmups += 1;
        } else if !demand {
            self.counters.preconnects += 1;
        }
        if guard {
            self.counters.guard_connects += 1;
            Created::Guard
        } else {
            Created::Yes
        }
    }

    /// §3.4 *room*: "the idle LRU is not empty ..., or a connection slot is
    /// free and (`total < max_total` or `starvation_guard`)".
    fn room(&self) -> bool {
        !self.lru.is_empty()
            || (self.conn_slot_free()
                && (self.total() < self.cfg.max_total || self.cfg.starvation_guard))
    }

    /// §3.4: each route on the blocked list when it starts is tried once, in
    /// order, while room remains; one with no demand left is just taken off.
    fn unblock(&mut self, pass: Option<Rid>) {
        let start = self.blocked.clone();
        for b in start {
            if !self.room() {
                break;
            }
            let Some(pos) = self.blocked.iter().position(|&x| x == b) else {
                continue;
            };
            self.blocked.remove(pos);
            if !self.routes.iter().any(|x| x.id == b) {
                continue;
            }
            // "A route on the list that no longer wants capacity (§3.7a: no
            // demand, being deleted, pool closed) is simply taken off, without
            // `try_create` (so no preconnect takes the room)."
            if !self.wants_capacity(b) {
                event("model: unblock takes off a route that no longer wants capacity");
                if self.route(b).deleted {
                    event("model: unblock takes off a deleted route");
                }
                continue;
            }
            if Some(b) == pass {
                event("model: unblock passes over the settling route (its turn comes after)");
                self.blocked.push(b);
                continue;
            }
            let slot_room = self.conn_slot_free()
                && (self.total() < self.cfg.max_total || self.cfg.starvation_guard);
            if !slot_room {
                event("model: unblock with room from the idle LRU only");
            }
            let closes = self.counters.closes[CloseReason::Evicted.index()];
            self.try_create(b);
            if self.counters.closes[CloseReason::Evicted.index()] > closes {
                event("model: unblock evicts an idle connection for a blocked route");
            }
        }
    }

    /// §3.5
    fn warm(&mut self, r: Rid) {
        // §12: an unhealthy route makes no warm-up.
        if self.route(r).deleted || self.closed || self.backoff_pending(r) || !self.route(r).healthy
        {
            return;
        }
        while self.idle_of(r) + self.connecting_of(r) < self.min_idle(r) {
            // Warm-up never pushes the pool over `max_idle` (it would fight the idle limit).
            let connecting = self.stats().connecting;
            if self
                .cfg
                .max_idle
                .is_some_and(|m| self.total_idle() + connecting >= m)
            {
                break;
            }
            if self.create(r, false, true) == Created::No {
                break;
            }
        }
    }

    /// §3.6
    fn check_idle(&mut self, r: Rid) {
        if !self.routes.iter().any(|x| x.id == r) {
            return;
        }
        if self.allocated(r) == 0 && self.pending_of(r) == 0 && !self.route(r).mark {
            let key = self.route(r).key;
            self.push(MAction::RouteIdle { key });
            self.route_mut(r).mark = true;
        }
    }

    /// §3.7
    fn offer(&mut self, c: Cid) {
        let r = self.conn(c).route;
        let queue = self.route(r).queue.clone();
        for w in queue {
            if !self.available(c) {
                break;
            }
            let ctag = self.conn(c).tag;
            let wtag = self.waiters[&w].tag;
            // §3.7: with strict tags, compatible when the tags are equal
            // (`None` included).
            let compatible = if self.cfg.strict_tags {
                ctag == wtag
            } else {
                ctag.is_none() || ctag == wtag
            };
            if compatible {
                self.grant(c, w);
            } else if self.cfg.strict_tags && ctag.is_none() {
                event("model: strict offer skips a tagged waiter for an untagged connection");
            }
        }
    }

    /// Attach a lease to `c` (§3.8 without the waiter part).
    fn attach(&mut self, c: Cid) -> Lid {
        let lid = self.next_lid;
        self.next_lid += 1;
        self.leases.insert(lid, c);
        let served = {
            let conn = self.conn_mut(c);
            conn.active += 1;
            let served = conn.served;
            conn.served = true;
            served
        };
        self.counters.grants += 1;
        if served {
            self.counters.reuses += 1;
        }
        let r = self.conn(c).route;
        self.route_mut(r).grants += 1;
        let mut exhausted = false;
        if let Some(rem) = self.conn_mut(c).remaining.as_mut() {
            *rem -= 1;
            exhausted = *rem == 0;
        }
        if exhausted {
            self.start_draining(c, CloseReason::MaxLeases);
        }
        self.leave_if_unavailable(c);
        lid
    }

    /// Detach waiter `w` from its queue or validation and forget it; its answer
    /// is outstanding until polled.
    fn take_waiter(&mut self, w: Wid) -> MWaiter {
        let wt = self.waiters.remove(&w).expect("model: waiter exists");
        if let Some(vc) = wt.validating {
            if let Some(conn) = self.conns.get_mut(&vc) {
                if conn.vwaiter == Some(w) {
                    conn.vwaiter = None;
                }
            }
        } else {
            self.route_mut(wt.route).queue.retain(|&x| x != w);
        }
        self.answered_unpolled += 1;
        self.answered_route.insert(w, wt.route);
        wt
    }

    fn fail_waiter(&mut self, w: Wid, reason: FailReason) {
        self.take_waiter(w);
        match reason {
            FailReason::Overflow => self.counters.overflows += 1,
            FailReason::Timeout => self.counters.timeouts += 1,
            _ => {}
        }
        self.push(MAction::Failed { waiter: w, reason });
    }

    /// §3.8
    fn grant(&mut self, c: Cid, w: Wid) {
        if self.leases_full() {
            self.fail_waiter(w, FailReason::Overflow);
            return;
        }
        self.take_waiter(w);
        let lid = self.attach(c);
        self.push(MAction::Granted {
            waiter: w,
            lease: lid,
            conn: c,
        });
    }

    /// §3.9
    fn place(&mut self, c: Cid) {
        if !self.available(c) {
            return;
        }
        let r = self.conn(c).route;
        let fifo = self.cfg.reuse == ReusePolicy::Fifo;
        let route = self.route_mut(r);
        route.ready.retain(|&x| x != c);
        if fifo {
            route.ready.push(c);
        } else {
            route.ready.insert(0, c);
        }
        if self.idle(c) && !self.lru.contains(&c) {
            self.lru.push_front(c);
        }
    }

    /// §3.10
    fn after_available(&mut self, c: Cid) {
        if !self.idle(c) {
            return;
        }
        let r = self.conn(c).route;
        if self.route(r).deleted {
            self.close(c, CloseReason::Drained);
        } else if self
            .cfg
            .max_idle_per_route
            .is_some_and(|m| self.idle_of(r) > m)
        {
            self.close(c, CloseReason::IdleLimit);
        } else if self.cfg.max_idle.is_some_and(|m| self.total_idle() > m) {
            if let Some(&victim) = self.lru.back() {
                let vr = self.conn(victim).route;
                self.close(victim, CloseReason::IdleLimit);
                if vr != r {
                    self.check_idle(vr);
                }
            }
        }
    }

    /// §3.11
    fn close(&mut self, c: Cid, reason: CloseReason) {
        self.remove_from_lists(c);
        let conn = self.conns.remove(&c).expect("model: close of a live conn");
        if conn.state == CState::Connecting && !conn.connect_polled {
            // Vanishes silently: the undelivered Connect is withdrawn.
            self.actions
                .retain(|a| !matches!(a, MAction::Connect { conn, .. } if *conn == c));
            return;
        }
        // A connection that vanishes silently is not counted under `closes`
        // (ambiguity, resolved as the core does).
        self.counters.closes[reason.index()] += 1;
        if conn.state == CState::Validating && !conn.validate_polled {
            self.actions.retain(|a| *a != MAction::Validate { conn: c });
        }
        self.closing += 1;
        self.push(MAction::Close { conn: c, reason });
    }

    /// §3.12
    fn start_draining(&mut self, c: Cid, reason: CloseReason) {
        if self.conn(c).draining.is_some() {
            return;
        }
        self.conn_mut(c).draining = Some(reason);
        self.leave_if_unavailable(c);
        let conn = self.conn(c);
        if conn.state == CState::Ready && conn.active == 0 {
            self.close(c, reason);
        }
    }

    /// §7.1: a waiter whose validation ended without a grant.
    fn retry(&mut self, w: Wid) {
        let Some(wt) = self.waiters.get_mut(&w) else {
            return;
        };
        wt.validating = None;
        let (r, tag) = (wt.route, wt.tag);
        let now = self.last_now;
        match self.search(r, tag) {
            Some(c) => {
                if self.needs_validation(c, now) {
                    self.begin_validation(c, w);
                } else {
                    self.grant(c, w);
                }
            }
            None => {
                let seq = self.waiters[&w].seq;
                let pos = {
                    let route = self.route(r);
                    route
                        .queue
                        .iter()
                        .position(|x| self.waiters[x].seq > seq)
                        .unwrap_or(route.queue.len())
                };
                self.route_mut(r).queue.insert(pos, w);
            }
        }
    }

    /// §4.3
    fn search(&self, r: Rid, tag: Option<Tag>) -> Option<Cid> {
        let ready = &self.route(r).ready;
        // §4 step 3: "With `strict_tags`, a tag `T` takes only a connection
        // tagged `T` (no untagged fallback)"; an untagged lease takes the
        // first untagged one, as without.
        if self.cfg.strict_tags {
            let found = ready.iter().copied().find(|&c| self.conn(c).tag == tag);
            if found.is_none() && tag.is_some() && ready.iter().any(|&c| self.conn(c).tag.is_none())
            {
                event("model: strict lease skips an untagged connection");
            }
            return found;
        }
        if let Some(t) = tag {
            if let Some(&c) = ready.iter().find(|&&c| self.conn(c).tag == Some(t)) {
                return Some(c);
            }
        }
        ready.iter().copied().find(|&c| self.conn(c).tag.is_none())
    }

    /// §4 step 4; §14 (dd8eb13): no validation is due when `updated +
    /// validate_after_inactivity` saturates (§2: a sum that reaches
    /// `Instant::MAX` is never).
    fn needs_validation(&self, c: Cid, now: Instant) -> bool {
        let conn = self.conn(c);
        if now == Instant::MAX
            && Self::is_idle(conn)
            && self
                .cfg
                .validate_after_inactivity
                .is_some_and(|v| conn.updated + v == Instant::MAX)
        {
            event("model: no validation due at Instant::MAX (updated + validate_after saturates)");
        }
        Self::is_idle(conn)
            && self
                .cfg
                .validate_after_inactivity
                .and_then(|v| never(conn.updated + v))
                .is_some_and(|d| now >= d)
    }

    fn begin_validation(&mut self, c: Cid, w: Wid) {
        self.waiters.get_mut(&w).unwrap().validating = Some(c);
        {
            let conn = self.conn_mut(c);
            conn.state = CState::Validating;
            conn.vwaiter = Some(w);
            conn.validate_polled = false;
        }
        let r = self.conn(c).route;
        self.route_mut(r).ready.retain(|&x| x != c);
        self.lru.retain(|&x| x != c);
        self.counters.validations += 1;
        self.push(MAction::Validate { conn: c });
    }

    fn new_waiter(&mut self, r: Rid, tag: Option<Tag>, deadline: Option<Instant>) -> Wid {
        let seq = self.next_seq();
        let w = self.next_wid;
        self.next_wid += 1;
        self.waiters.insert(
            w,
            MWaiter {
                seq,
                route: r,
                tag,
                deadline,
                validating: None,
            },
        );
        self.unmark(r);
        w
    }

    // ----- timers (§2, §9) -------------------------------------------------

    /// A connection's deadline; sums are saturating and one that reaches
    /// `Instant::MAX` is none (§2).
    fn conn_deadline(&self, c: &MConn) -> Option<Instant> {
        match c.state {
            CState::Connecting => self.cfg.connect_timeout.and_then(|t| never(c.start + t)),
            CState::Validating => None,
            CState::Ready => {
                if c.draining.is_some() {
                    None
                } else if c.active == 0 {
                    // §2: a kept connection's deadline is its expiry.
                    let idle = if c.kept {
                        None
                    } else {
                        self.cfg.idle_timeout.and_then(|t| never(c.updated + t))
                    };
                    match (c.expiry, idle) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                } else {
                    c.validity
                }
            }
        }
    }

    fn next_timer(&self) -> Option<(Instant, u64, Timer)> {
        let mut best: Option<(Instant, u64, Timer)> = None;
        let mut consider = |d: Instant, seq: u64, t: Timer| {
            if best.is_none_or(|(bd, bs, _)| (d, seq) < (bd, bs)) {
                best = Some((d, seq, t));
            }
        };
        for (&w, wt) in &self.waiters {
            if let Some(d) = wt.deadline {
                consider(d, wt.seq, Timer::Waiter(w));
            }
        }
        for (&c, conn) in &self.conns {
            if let Some(d) = self.conn_deadline(conn) {
                consider(d, conn.seq, Timer::Conn(c));
            }
        }
        for r in &self.routes {
            // A backoff ending at `Instant::MAX` never ends (§2): no timer.
            if let Some(d) = r.backoff.and_then(never) {
                consider(d, r.id, Timer::Route(r.id));
            }
        }
        best
    }

    /// The earliest pending timer (what `poll_timeout` must not be later than).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_timer().map(|(d, _, _)| d)
    }

    fn process_timers(&mut self, now: Instant) -> Instant {
        let now = self.clamp_now(now);
        while let Some((d, _, t)) = self.next_timer() {
            if d > now {
                break;
            }
            match t {
                Timer::Waiter(w) => {
                    let r = self.waiters[&w].route;
                    self.fail_waiter(w, FailReason::Timeout);
                    self.settle(r);
                }
                Timer::Conn(c) => {
                    let conn = self.conn(c).clone();
                    let r = conn.route;
                    match conn.state {
                        CState::Connecting => {
                            self.close(c, CloseReason::ConnectTimeout);
                            self.connect_failure(r, ConnectFailure::Timeout, now);
                        }
                        CState::Ready if conn.active == 0 => {
                            if conn.expiry.is_some_and(|e| e <= now) {
                                if conn.kept {
                                    event("model: a kept connection expires");
                                }
                                self.close(c, CloseReason::Expired);
                            } else if self.idle_of(r) <= self.min_idle(r) {
                                // §2: "the idle timeout does not take a route
                                // below `min_idle(r)`": kept.
                                event("model: idle timeout keeps a connection (min_idle)");
                                self.conn_mut(c).kept = true;
                            } else if self.ratio_keeps(c) {
                                // §2 (dd8eb13): "nor below what its preconnect
                                // ratio provisions".
                                event("model: idle timeout keeps a connection (preconnect ratio)");
                                self.conn_mut(c).kept = true;
                            } else {
                                self.close(c, CloseReason::IdleTimeout);
                            }
                            self.settle(r);
                        }
                        CState::Ready => {
                            self.start_draining(c, CloseReason::Expired);
                            self.settle(r);
                        }
                        CState::Validating => unreachable!(),
                    }
                }
                Timer::Route(r) => {
                    self.route_mut(r).backoff = None;
                    self.settle(r);
                }
            }
        }
        now
    }

    /// §6 after the connection itself is gone.
    fn connect_failure(&mut self, r: Rid, reason: ConnectFailure, now: Instant) {
        self.counters.connect_failures[reason_index(reason)] += 1;
        let q = self.route(r).queue.clone();
        for w in q {
            self.fail_waiter(w, FailReason::ConnectFailed(reason));
        }
        // `Some(Instant::MAX)` (saturated): pending for ever, no timer (§2).
        let end = now + self.cfg.retry_backoff;
        if end == Instant::MAX {
            event("model: retry backoff that never ends");
        }
        self.route_mut(r).backoff = Some(end);
        self.settle(r);
    }

    // ----- inputs -----------------------------------------------------------

    pub fn handle_timeout(&mut self, now: Instant) {
        self.process_timers(now);
    }

    /// §4
    pub fn lease(
        &mut self,
        key: u8,
        tag: Option<Tag>,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Result<MOutcome, LeaseError> {
        let now = self.process_timers(now);
        if self.closed {
            return Err(LeaseError::Closed);
        }
        // §2: "`lease(.., Some(Instant::MAX))` is the same as `lease(.., None)`".
        if deadline == Some(Instant::MAX) {
            event("model: lease with a deadline of Instant::MAX");
        }
        let deadline = deadline.and_then(never);
        // §4 step 1: "A deadline `<= now` means do not wait": granted if a
        // connection is ready at once, else `Err(Timeout)` at whichever step
        // would make it wait, and nothing changes. Reading: the limits on
        // waiting (`max_pending`, waiter slots: `Overflow`; route slots:
        // `RouteTableFull`) do not refuse a lease that will not wait; the
        // other checks apply in order (`Draining`, `Overflow` for leases).
        let no_wait = deadline.is_some_and(|d| d <= now);
        let r = match self.route_by_key(key) {
            Some(r) => r,
            None => {
                if no_wait {
                    event("model: no-wait lease on a route not in the table");
                    return Err(LeaseError::Timeout);
                }
                if self.pending_full() {
                    self.counters.overflows += 1;
                    return Err(LeaseError::Overflow);
                }
                if self.routes.len() >= self.slots.routes {
                    return Err(LeaseError::RouteTableFull);
                }
                self.new_route(key, false)
            }
        };
        if self.route(r).deleted {
            return Err(LeaseError::Draining);
        }
        let out = match self.search(r, tag) {
            Some(c) => {
                if self.needs_validation(c, now) {
                    if no_wait {
                        event("model: no-wait lease with a validation due");
                        return Err(LeaseError::Timeout);
                    }
                    if self.pending_full() {
                        self.counters.overflows += 1;
                        return Err(LeaseError::Overflow);
                    }
                    let w = self.new_waiter(r, tag, deadline);
                    self.begin_validation(c, w);
                    MOutcome::Queued(w)
                } else if self.leases_full() {
                    self.counters.overflows += 1;
                    return Err(LeaseError::Overflow);
                } else {
                    if no_wait {
                        event("model: no-wait lease granted at once");
                    }
                    let lease = self.attach(c);
                    MOutcome::Granted { lease, conn: c }
                }
            }
            None => {
                if no_wait {
                    event("model: no-wait lease with nothing ready");
                    return Err(LeaseError::Timeout);
                }
                if self.pending_full() {
                    self.counters.overflows += 1;
                    return Err(LeaseError::Overflow);
                }
                let w = self.new_waiter(r, tag, deadline);
                // `queued` counts waiters entering a route's queue (§4.5), not
                // those created bound to a validation (§4.4).
                self.counters.queued += 1;
                self.route_mut(r).queue.push(w);
                MOutcome::Queued(w)
            }
        };
        self.settle(r);
        Ok(out)
    }

    fn new_route(&mut self, key: u8, by_config: bool) -> Rid {
        let id = self.next_seq();
        self.routes.push(MRoute {
            id,
            key,
            ov: Overrides::default(),
            deleted: false,
            queue: Vec::new(),
            ready: Vec::new(),
            connecting: Vec::new(),
            backoff: None,
            mark: by_config,
            connects: 0,
            grants: 0,
            healthy: true,
        });
        id
    }

    /// §5
    pub fn release(&mut self, lease: Lid, how: Release, now: Instant) -> Result<(), ReleaseError> {
        let now = self.process_timers(now);
        self.release_inner(lease, how, now)
    }

    /// §5 step 1: "A lease made by another pool -> `Err(ForeignLease)`" (the
    /// harness knows which leases are foreign; the model changes nothing but
    /// the timers due at `now`, §2).
    pub fn release_foreign(&mut self, now: Instant) -> Result<(), ReleaseError> {
        self.process_timers(now);
        Err(ReleaseError::ForeignLease)
    }

    fn release_inner(
        &mut self,
        lease: Lid,
        how: Release,
        now: Instant,
    ) -> Result<(), ReleaseError> {
        let Some(c) = self.leases.remove(&lease) else {
            return Err(ReleaseError::StaleLease);
        };
        self.conn_mut(c).active -= 1;
        match how {
            Release::Discard => {
                if self.conn(c).draining.is_none() {
                    self.conn_mut(c).draining = Some(CloseReason::Discarded);
                    self.leave_if_unavailable(c);
                }
            }
            Release::Reuse { keep_alive, tag } => {
                if self.conn(c).kept {
                    event("model: a kept connection leased and released (kept ends)");
                }
                let strict = self.cfg.strict_tags;
                if strict && self.conn(c).tag != tag {
                    event("model: strict release keeps the connection's tag (release tag ignored)");
                }
                let conn = self.conn_mut(c);
                conn.updated = now;
                conn.kept = false;
                // §5 step 2: "with `strict_tags` it keeps the tag it connected
                // with".
                if !strict {
                    conn.tag = tag;
                }
                // `now + keep_alive` saturating to `Instant::MAX` is no
                // expiry (§2).
                conn.expiry = match (keep_alive.and_then(|k| never(now + k)), conn.validity) {
                    (Some(k), Some(v)) => Some(k.min(v)),
                    (k, v) => k.or(v),
                };
            }
        }
        let r = self.conn(c).route;
        self.after_release(c, now);
        self.settle(r);
        Ok(())
    }

    /// §7 `cancel` of an unpolled grant: "the grant undone: the lease is
    /// released keeping the connection's tag, `updated` and `expiry` as they
    /// were (§5 steps 1 and 3 without step 2's changes ...)", the timers due
    /// run again, then the route settles. The kept mark (§2) stays too:
    /// `updated` is not set.
    fn undo_grant(&mut self, lease: Lid, now: Instant) {
        let c = self
            .leases
            .remove(&lease)
            .expect("model: an unpolled grant's lease");
        self.conn_mut(c).active -= 1;
        event("model: cancel undoes an unpolled grant");
        let conn = self.conn(c);
        if conn.expiry.is_some_and(|e| e <= now) {
            event("model: an undone grant finds its connection's expiry passed");
        } else if conn.expiry != conn.validity {
            event("model: an undone grant keeps an earlier keep-alive expiry");
        }
        if conn.kept {
            event("model: an undone grant keeps the kept mark");
        }
        let r = conn.route;
        let idle_passed = conn.active == 0
            && conn.draining.is_none()
            && !conn.kept
            && self
                .cfg
                .idle_timeout
                .and_then(|t| never(conn.updated + t))
                .is_some_and(|d| d <= now);
        self.after_release(c, now);
        // 6de84b1: "since its `updated` is kept, its idle timeout may have
        // passed while the grant was unpolled: the timers due at `now` are
        // then processed again (§2 ...), before `settle(r)`".
        if idle_passed && self.conns.contains_key(&c) {
            event("model: an undone grant is past its idle timeout (timers run again)");
        }
        self.process_timers(now);
        self.settle(r);
    }

    /// §5 step 3.
    fn after_release(&mut self, c: Cid, now: Instant) {
        let conn = self.conn(c).clone();
        let r = conn.route;
        if let Some(reason) = conn.draining {
            if conn.active == 0 {
                self.close(c, reason);
            }
        } else if conn.expiry.is_some_and(|e| e <= now) {
            if conn.active == 0 {
                self.close(c, CloseReason::Expired);
            } else {
                self.start_draining(c, CloseReason::Expired);
            }
        } else if conn.active == 0 && self.allocated(r) > self.limit(r) {
            event("model: a release over the route limit closes RouteLimit");
            self.close(c, CloseReason::RouteLimit);
        } else if conn.active == 0 && self.over_total() {
            // §5 step 3: "the pool is over a lowered `max_total`".
            event("model: a release over a lowered max_total closes TotalLimit");
            if conn.guard {
                event("model: a guard connection closes TotalLimit");
            }
            if self.route(r).deleted {
                event("model: a deleted route's connection closes TotalLimit (not Drained)");
            }
            self.close(c, CloseReason::TotalLimit);
        } else if let Some(b) = if conn.active == 0 {
            self.yields(r)
        } else {
            None
        } {
            // §3.7a: "it closes `Evicted` instead of serving `r`, and `b`
            // moves to the front of the blocked list".
            event("model: a released connection yields to a blocked route");
            self.close(c, CloseReason::Evicted);
            if let Some(pos) = self.blocked.iter().position(|&x| x == b) {
                if pos > 0 {
                    event("model: the route yielded to moves to the front of the blocked list");
                }
                self.blocked.remove(pos);
                self.blocked.insert(0, b);
            }
        } else {
            self.place(c);
            self.offer(c);
            if self.conns.contains_key(&c) {
                self.after_available(c);
            }
        }
    }

    /// §2 (dd8eb13, c8b4d40): the idle timeout keeps idle connection `c` when
    /// "without the connection the route's open connections would not meet
    /// its preconnect ratio (the §3.2 preconnect check with `spare` and the
    /// idle counts less this connection and `connecting_capacity(r)` taken as
    /// 0 ...)". Reading: the check of §3.2 (ratio above 1, the ratio
    /// inequality, no retry backoff, the idle limits leave room, counting
    /// connecting connections there as §3.2 does) and §12's health (an
    /// unhealthy route makes no preconnect), not the limits of `create`.
    fn ratio_keeps(&self, c: Cid) -> bool {
        let conn = self.conn(c);
        let r = conn.route;
        let ratio = self.ratio_of(r) as u64;
        if ratio <= 1000 || !self.route(r).healthy || self.backoff_pending(r) {
            return false;
        }
        let q = self.route(r).queue.len() as u64;
        // "`connecting_capacity(r)` taken as 0: a connect in flight may come
        // up with less capacity than assumed".
        if self.connecting_capacity(r) > 0 {
            event("model: the ratio keep check with a connect in flight (counted as 0)");
        }
        let cc = 0;
        let active = self.active_of(r) as u64;
        let own = {
            let free = (conn.capacity - conn.active) as u64;
            conn.remaining.map_or(free, |rem| free.min(rem as u64))
        };
        let spare = self.spare(r) - own;
        let wanted = (q + active) * ratio > (cc + spare + active) * 1000;
        if !wanted {
            return false;
        }
        let connecting_r = self.connecting_of(r);
        let connecting = self
            .conns
            .values()
            .filter(|x| x.state == CState::Connecting)
            .count() as u32;
        let per_route = self
            .cfg
            .max_idle_per_route
            .is_none_or(|m| self.idle_of(r) - 1 + connecting_r < m);
        let total = self
            .cfg
            .max_idle
            .is_none_or(|m| self.total_idle() - 1 + connecting < m);
        if !(per_route && total) {
            event(
                "model: the ratio would keep an idle connection but the idle limits leave no room",
            );
        }
        per_route && total
    }

    /// The sequence number of the oldest queued waiter of `r`.
    fn oldest_waiter(&self, r: Rid) -> Option<u64> {
        self.route(r)
            .queue
            .iter()
            .map(|w| self.waiters[w].seq)
            .min()
    }

    /// §3.7a: a route `b` *wants capacity*: "live, not being deleted, the
    /// pool not closed, under its own route limit (`allocated(b) <
    /// limit(b)`), and demand (`len(queue(b)) > connecting_capacity(b)`)".
    fn wants_capacity(&self, b: Rid) -> bool {
        self.routes.iter().any(|x| x.id == b)
            && !self.route(b).deleted
            && !self.closed
            && self.allocated(b) < self.limit(b)
            && self.has_demand(b)
    }

    /// §3.7a (9f95602): a connection of `r` that a release leaves idle, while
    /// the total limit binds, yields to the first route `b != r` on the
    /// blocked list that wants capacity, is *short* (`allocated(b) == 0` or
    /// `allocated(b) + 1 < allocated(r)`) and has an oldest waiter older than
    /// every waiter queued on `r` (or `r` has none).
    fn yields(&self, r: Rid) -> Option<Rid> {
        if self.total() < self.cfg.max_total {
            return None;
        }
        if self.blocked.iter().any(|&b| {
            b != r
                && self.routes.iter().any(|x| x.id == b && !x.queue.is_empty())
                && !self.wants_capacity(b)
        }) {
            event(
                "model: yield check sees a blocked route with waiters that does not want capacity",
            );
        }
        let own = self.oldest_waiter(r);
        let ar = self.allocated(r);
        let older = |b: Rid| {
            let ob = self.oldest_waiter(b).expect("demand means a queued waiter");
            own.is_none_or(|or| ob < or)
        };
        let short = |b: Rid| {
            let ab = self.allocated(b);
            ab == 0 || ab + 1 < ar
        };
        let candidates: Vec<Rid> = self
            .blocked
            .iter()
            .copied()
            .filter(|&b| b != r && self.wants_capacity(b))
            .collect();
        if candidates.iter().any(|&b| older(b) && !short(b)) {
            event("model: yield passes over an older blocked route that is not short");
        }
        let found = candidates.iter().copied().find(|&b| short(b) && older(b));
        if let Some(b) = found {
            if self.allocated(b) > 0 {
                event("model: yield to a short blocked route that has connections");
            }
        }
        found
    }

    fn conn_check(&self, c: Cid) -> Result<&MConn, ConnError> {
        self.conns.get(&c).ok_or(ConnError::StaleConn)
    }

    /// §6
    pub fn connected(&mut self, c: Cid, capacity: u32, now: Instant) -> Result<(), ConnError> {
        self.connect_done(c, capacity, None, now)
    }

    /// §6 `connected_as`: `connected` "with the tag the connector decided".
    pub fn connected_as(
        &mut self,
        c: Cid,
        capacity: u32,
        tag: Option<Tag>,
        now: Instant,
    ) -> Result<(), ConnError> {
        self.connect_done(c, capacity, Some(tag), now)
    }

    /// `Pool::connect_tag`: the tag the connect of `c` was made for (strict
    /// tags, §3.3 step 4); `None` when `c` is not connecting.
    pub fn connect_tag(&self, c: Cid) -> Option<Tag> {
        self.conns
            .get(&c)
            .filter(|x| x.state == CState::Connecting)
            .and_then(|x| x.intent)
    }

    /// §2: the pool's next draw.
    fn draw(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.rng)
    }

    /// §2: `created + max_lifetime + jitter`; `None` without a lifetime or
    /// when the sum reaches `Instant::MAX` (never).
    fn validity_from(&mut self, now: Instant) -> Option<Instant> {
        let life = self.cfg.max_lifetime?;
        let p = self.cfg.max_lifetime_jitter_percent as u128;
        // "Nothing is drawn when `p == 0` or there is no lifetime."
        let extra = if p > 0 {
            let z = self.draw() as u128;
            let span = life.as_micros() as u128 * p / 100;
            let extra = (z * span) >> 64;
            event("model: lifetime jitter drawn");
            if now.saturating_add(life) == Instant::MAX {
                event("model: lifetime jitter drawn for a lifetime that never ends");
            }
            if extra > 0 {
                event("model: lifetime jitter extends a lifetime");
            }
            extra as u64
        } else {
            0
        };
        never(
            now.saturating_add(life)
                .saturating_add(wharf_core::Duration::from_micros(extra)),
        )
    }

    /// §6 `connected` / `connected_as` (`tag: Some(t)`).
    fn connect_done(
        &mut self,
        c: Cid,
        capacity: u32,
        tag: Option<Option<Tag>>,
        now: Instant,
    ) -> Result<(), ConnError> {
        let now = self.process_timers(now);
        let conn = self.conn_check(c)?;
        if conn.state != CState::Connecting || !conn.connect_polled {
            return Err(ConnError::WrongState);
        }
        if capacity == 0 {
            return Err(ConnError::ZeroCapacity);
        }
        if capacity > MAX_STREAMS {
            event("model: connected clamps the capacity to MAX_STREAMS");
        }
        let capacity = capacity.min(MAX_STREAMS);
        // "untagged (with `strict_tags`: tagged with `connect_tag(c)`)";
        // `connected_as` "is the same with the tag the connector decided".
        let intent = conn.intent;
        let tag = match tag {
            Some(t) => {
                if self.cfg.strict_tags && t != intent {
                    event("model: strict connected_as with another tag than the intent");
                } else if t.is_some() && !self.cfg.strict_tags {
                    event("model: connected_as with a tag (no strict tags)");
                }
                t
            }
            None if self.cfg.strict_tags => {
                if intent.is_some() {
                    event("model: strict connected adopts the intent tag");
                }
                intent
            }
            None => None,
        };
        let remaining = self.cfg.max_leases_per_conn;
        let r = conn.route;
        let validity = self.validity_from(now);
        {
            let conn = self.conn_mut(c);
            conn.state = CState::Ready;
            conn.capacity = capacity;
            conn.active = 0;
            conn.remaining = remaining;
            conn.created = now;
            conn.updated = now;
            conn.validity = validity;
            conn.expiry = validity;
            conn.kept = false;
            conn.tag = tag;
        }
        self.route_mut(r).connecting.retain(|&x| x != c);
        self.counters.connected += 1;
        self.place(c);
        self.offer(c);
        if self.conns.contains_key(&c) {
            self.after_available(c);
        }
        self.settle(r);
        Ok(())
    }

    /// §6
    pub fn connect_failed(
        &mut self,
        c: Cid,
        reason: ConnectFailure,
        now: Instant,
    ) -> Result<(), ConnError> {
        let now = self.process_timers(now);
        let conn = self.conn_check(c)?;
        if conn.state != CState::Connecting || !conn.connect_polled {
            return Err(ConnError::WrongState);
        }
        let r = conn.route;
        self.remove_from_lists(c);
        self.conns.remove(&c);
        self.connect_failure(r, reason, now);
        Ok(())
    }

    /// §7
    pub fn peer_closed(&mut self, c: Cid, now: Instant) -> Result<(), ConnError> {
        self.process_timers(now);
        let conn = self.conn_check(c)?.clone();
        let r = conn.route;
        match conn.state {
            CState::Connecting => return Err(ConnError::WrongState),
            CState::Validating => {
                self.close(c, CloseReason::PeerClosed);
                if let Some(w) = conn.vwaiter {
                    self.retry(w);
                }
            }
            CState::Ready => {
                if conn.active == 0 {
                    self.close(c, CloseReason::PeerClosed);
                } else {
                    self.start_draining(c, CloseReason::PeerClosed);
                }
            }
        }
        self.settle(r);
        Ok(())
    }

    /// §7 `set_capacity(c, k, now)`: an open connection's stream capacity
    /// changed (HTTP/2 SETTINGS).
    pub fn set_capacity(&mut self, c: Cid, k: u32, now: Instant) -> Result<(), ConnError> {
        self.process_timers(now);
        let conn = self.conn_check(c)?.clone();
        // "Connecting -> `WrongState`; `k == 0` -> `ZeroCapacity` ...; `k` is
        // clamped to `MAX_STREAMS`."
        if conn.state == CState::Connecting {
            return Err(ConnError::WrongState);
        }
        if k == 0 {
            return Err(ConnError::ZeroCapacity);
        }
        if k > MAX_STREAMS {
            event("model: set_capacity clamps to MAX_STREAMS");
        }
        let k = k.min(MAX_STREAMS);
        let r = conn.route;
        // "Validating and draining connections only record `k`": no place,
        // no offer; the route still settles (§3.1: at the end of every input
        // for each route it touched).
        if conn.state == CState::Validating || conn.draining.is_some() {
            event(if conn.state == CState::Validating {
                "model: set_capacity on a validating connection (recorded)"
            } else {
                "model: set_capacity on a draining connection (recorded)"
            });
            self.conn_mut(c).capacity = k;
            self.settle(r);
            return Ok(());
        }
        let was_available = Self::is_available(&conn);
        let raised = k > conn.capacity;
        self.conn_mut(c).capacity = k;
        if conn.active > k {
            event("model: set_capacity below the leases out (they stay)");
        }
        let available = self.available(c);
        match (was_available, available) {
            // "one that is now full leaves it (busy)".
            (true, false) => {
                event("model: set_capacity makes a ready connection full (busy)");
                self.leave_if_unavailable(c);
            }
            // "a full, non-draining ready connection that becomes available
            // is placed (§3.9)".
            (false, true) => {
                event("model: set_capacity makes a full connection available (placed)");
                self.place(c);
            }
            // "A connection on the ready list that stays available keeps its
            // place (only `spare` changes)".
            (true, true) => {
                if self.route(r).ready.len() > 1 {
                    event("model: set_capacity keeps a ready connection's place");
                }
            }
            (false, false) => event("model: set_capacity on a full connection that stays full"),
        }
        // "If `k` was raised and `c` is available: `offer(c)`."
        if raised && self.available(c) {
            let grants = self.counters.grants;
            self.offer(c);
            if self.counters.grants > grants {
                event("model: set_capacity raise serves queued waiters");
            }
        }
        self.settle(r);
        Ok(())
    }

    /// §7 `set_max_total(n, now)`.
    pub fn set_max_total(&mut self, n: u32, now: Instant) -> Result<(), ConfigError> {
        self.process_timers(now);
        if n == 0 {
            return Err(ConfigError::ZeroMaxTotal);
        }
        if n as usize > self.slots.conns {
            return Err(ConfigError::MaxTotalExceedsStorage);
        }
        if n < self.cfg.max_total && self.total() > n {
            event("model: set_max_total lowers below the connections open (over)");
        } else if n > self.cfg.max_total && !self.blocked.is_empty() {
            event("model: set_max_total raises with blocked routes");
        }
        // "lowering closes nothing now: the pool ... is *over* its limit
        // until enough connections closed".
        self.cfg.max_total = n;
        self.settle_all_routes();
        Ok(())
    }

    /// §7 `set_max_per_route(n, now)`.
    pub fn set_max_per_route(&mut self, n: u32, now: Instant) -> Result<(), ConfigError> {
        self.process_timers(now);
        if n == 0 {
            return Err(ConfigError::ZeroMaxPerRoute);
        }
        // "a default route limit below `min_idle_per_route` (or below a
        // route's own `min_idle` override without a limit override) ->
        // `MinIdleTooLarge`".
        if n < self.cfg.min_idle_per_route {
            return Err(ConfigError::MinIdleTooLarge);
        }
        if self
            .routes
            .iter()
            .any(|x| x.ov.limit.is_none() && x.ov.min_idle.is_some_and(|m| m > n))
        {
            event("model: set_max_per_route refused by a route's min_idle override");
            if self
                .routes
                .iter()
                .all(|x| x.deleted || x.ov.limit.is_some() || x.ov.min_idle.is_none_or(|m| m <= n))
            {
                event("model: set_max_per_route refused by a deleted route's min_idle override");
            }
            return Err(ConfigError::MinIdleTooLarge);
        }
        if self
            .routes
            .iter()
            .any(|x| x.ov.limit.is_none() && self.allocated(x.id) > n)
        {
            event("model: set_max_per_route lowers below a route's connections (over)");
        }
        self.cfg.max_per_route = n;
        self.settle_all_routes();
        Ok(())
    }

    /// §7: "Then every route settles (creation order)".
    fn settle_all_routes(&mut self) {
        let rs: Vec<Rid> = self.routes.iter().map(|x| x.id).collect();
        for r in rs {
            self.settle(r);
        }
    }

    /// §5 step 3, §7: the pool is *over* a lowered `max_total`. Reading (a
    /// text hole, reported): the connections the starvation guard opened
    /// above the limit (§3.3 step 2) do not count; only connections opened
    /// within `max_total` can be over a lowered one (and they can only be
    /// after `set_max_total` lowered it). Found as the core's behaviour.
    fn over_total(&self) -> bool {
        let counted = self.conns.values().filter(|c| !c.guard).count() as u32;
        if counted < self.total() && self.total() > self.cfg.max_total {
            event("model: over check with guard connections not counted");
        }
        counted > self.cfg.max_total
    }

    /// §7
    pub fn validated(&mut self, c: Cid, result: Validation, now: Instant) -> Result<(), ConnError> {
        let now = self.process_timers(now);
        let conn = self.conn_check(c)?.clone();
        if conn.state != CState::Validating || !conn.validate_polled {
            return Err(ConnError::WrongState);
        }
        let r = conn.route;
        match result {
            Validation::Stale => {
                self.counters.stale += 1;
                self.close(c, CloseReason::Stale);
                if let Some(w) = conn.vwaiter {
                    self.retry(w);
                }
            }
            Validation::Alive => {
                if self.conn(c).kept {
                    event("model: a kept connection validated (kept ends)");
                }
                self.conn_mut(c).updated = now;
                self.conn_mut(c).kept = false;
                let expired = conn.expiry.is_some_and(|e| e <= now);
                if conn.draining.is_some() || expired {
                    let reason = conn.draining.unwrap_or(CloseReason::Expired);
                    self.close(c, reason);
                    if let Some(w) = conn.vwaiter {
                        self.retry(w);
                    }
                } else {
                    {
                        let conn = self.conn_mut(c);
                        conn.state = CState::Ready;
                        conn.vwaiter = None;
                    }
                    if let Some(w) = conn.vwaiter {
                        self.grant(c, w);
                    }
                    self.place(c);
                    self.offer(c);
                    if self.conns.contains_key(&c) {
                        self.after_available(c);
                    }
                }
            }
        }
        self.settle(r);
        Ok(())
    }

    /// §7
    pub fn cancel(
        &mut self,
        w: Wid,
        policy: CancelPolicy,
        now: Instant,
    ) -> Result<MCancelled, CancelError> {
        let now = self.process_timers(now);
        let Some(wt) = self.waiters.get(&w).cloned() else {
            // §7: answered but not polled: the answer is withdrawn; a granted
            // lease is released as `Reuse { keep_alive: None, tag: <the
            // connection's tag> }` (§5, which settles the route).
            let pos = self.actions.iter().position(|a| {
                matches!(a, MAction::Granted { waiter, .. } | MAction::Failed { waiter, .. } if *waiter == w)
            });
            let Some(pos) = pos else {
                return Err(CancelError::StaleWaiter);
            };
            let a = self.actions.remove(pos).unwrap();
            self.answered_unpolled -= 1;
            let r = self.answered_route.remove(&w).unwrap();
            self.counters.cancels += 1;
            return Ok(match a {
                MAction::Granted { lease, conn, .. } => {
                    self.undo_grant(lease, now);
                    MCancelled::Grant { lease, conn }
                }
                MAction::Failed { reason, .. } => {
                    self.settle(r);
                    MCancelled::Failure(reason)
                }
                _ => unreachable!(),
            });
        };
        let r = wt.route;
        self.waiters.remove(&w);
        self.counters.cancels += 1;
        if let Some(c) = wt.validating {
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.vwaiter = None;
            }
        } else {
            self.route_mut(r).queue.retain(|&x| x != w);
            if policy == CancelPolicy::CloseExcess {
                if let Some(&oldest) = self.route(r).connecting.first() {
                    let q = self.route(r).queue.len() as u64;
                    let active = self.active_of(r) as u64;
                    let cc_per = self.per_conn();
                    let cc = self.connecting_capacity(r);
                    let ratio = self.ratio_of(r) as u64;
                    if (q + active) * ratio <= (cc - cc_per + active) * 1000 {
                        self.close(oldest, CloseReason::Excess);
                    }
                }
            }
        }
        if self.route(r).deleted
            && self.route(r).queue.is_empty()
            && !self.route(r).connecting.is_empty()
        {
            event("model: cancel empties the queue of a deleted route while connecting");
        }
        self.settle(r);
        Ok(MCancelled::Waiting)
    }

    /// §7
    pub fn drain(&mut self, scope: Option<u8>, mode: DrainMode, now: Instant) {
        self.process_timers(now);
        let rs: Vec<Rid> = match scope {
            None => self.routes.iter().map(|r| r.id).collect(),
            Some(k) => self.route_by_key(k).into_iter().collect(),
        };
        for &r in &rs {
            self.drain_route(r, mode);
        }
        if scope.is_none() && mode == DrainMode::DrainAndDelete {
            self.closed = true;
        }
        for r in rs {
            self.settle(r);
        }
    }

    /// §7 drain of one route, before it settles.
    fn drain_route(&mut self, r: Rid, mode: DrainMode) {
        let queue_empty = self.route(r).queue.is_empty();
        let ready = self.route(r).ready.clone();
        for &c in &ready {
            if self.idle(c) {
                self.close(c, CloseReason::Drained);
            }
        }
        if mode == DrainMode::DrainExisting {
            for &c in &ready {
                if self.conns.contains_key(&c) {
                    self.start_draining(c, CloseReason::Drained);
                }
            }
        } else {
            // Ambiguity (reported): §3.6 says a route created by
            // configuration alone gets no notice until used; the core
            // (sensibly) gives a deleted route its RouteIdle so its slot is
            // freed. The mark is cleared when the route is deleted.
            let key = self.route(r).key;
            let idle_unpolled = self.actions.contains(&MAction::RouteIdle { key });
            let route = self.route_mut(r);
            route.deleted = true;
            if !idle_unpolled {
                route.mark = false;
            }
        }
        if queue_empty {
            let connecting = self.route(r).connecting.clone();
            for c in connecting {
                self.close(c, CloseReason::Drained);
            }
        }
        if mode == DrainMode::DrainExisting {
            let busy: Vec<Cid> = self
                .conns
                .iter()
                .filter(|(_, x)| x.route == r && x.state != CState::Connecting)
                .map(|(&c, _)| c)
                .collect();
            for c in busy {
                self.start_draining(c, CloseReason::Drained);
            }
        }
    }

    /// §7
    pub fn set_route_config(
        &mut self,
        key: u8,
        cfg: RouteConfig,
        now: Instant,
    ) -> Result<(), RouteError> {
        self.process_timers(now);
        if cfg.max_connections == Some(0) {
            return Err(RouteError::Config(ConfigError::ZeroMaxPerRoute));
        }
        let limit = cfg.max_connections.unwrap_or(self.cfg.max_per_route);
        let min_idle = cfg.min_idle.unwrap_or(self.cfg.min_idle_per_route);
        if min_idle > limit || self.cfg.max_idle_per_route.is_some_and(|m| min_idle > m) {
            return Err(RouteError::Config(ConfigError::MinIdleTooLarge));
        }
        let ratio = match cfg.preconnect_ratio {
            Some(x) => Some(setting_ratio(x).map_err(RouteError::Config)?),
            None => None,
        };
        let ov = Overrides {
            limit: cfg.max_connections,
            min_idle: cfg.min_idle,
            ratio,
        };
        let r = match self.route_by_key(key) {
            Some(r) => r,
            None => {
                if ov.is_empty() {
                    return Ok(());
                }
                // Ambiguity (reported): §7 does not say what a closed pool does; the
                // core answers `Draining` (every route of a closed pool is deleted).
                if self.closed {
                    return Err(RouteError::Draining);
                }

                if self.routes.len() >= self.slots.routes {
                    return Err(RouteError::RouteTableFull);
                }
                self.new_route(key, true)
            }
        };
        if self.route(r).deleted {
            return Err(RouteError::Draining);
        }
        self.route_mut(r).ov = ov;
        // Ambiguity (reported): clearing the configuration of a route whose
        // idle notice is already given (or was never due: created by
        // configuration alone) frees its slot at once, silently, as the
        // RouteIdle poll would have (§3.6). This is what the core does.
        let idle_unpolled = self.actions.contains(&MAction::RouteIdle { key });
        if ov.is_empty()
            && self.route(r).healthy
            && self.route(r).mark
            && !idle_unpolled
            && self.allocated(r) == 0
            && self.pending_of(r) == 0
        {
            let i = self.ri(r);
            self.routes.remove(i);
            self.blocked.retain(|&b| b != r);
            return Ok(());
        }
        self.settle(r);
        Ok(())
    }

    /// Deliver the next action (with its side effects, §3.6, §3.11, §10).
    pub fn poll(&mut self) -> Option<MAction> {
        let a = self.actions.pop_front()?;
        match &a {
            MAction::Connect { conn, .. } => self.conn_mut(*conn).connect_polled = true,
            MAction::Validate { conn } => self.conn_mut(*conn).validate_polled = true,
            MAction::Close { .. } => {
                self.closing -= 1;
                self.unblock(None);
            }
            MAction::Granted { waiter, .. } | MAction::Failed { waiter, .. } => {
                self.answered_unpolled -= 1;
                self.answered_route.remove(waiter);
            }
            MAction::RouteIdle { key } => {
                let Some(r) = self.route_by_key(*key) else {
                    // Not reachable by the model's own rules; reported as a
                    // divergence by the harness if the core disagrees.
                    return Some(a);
                };
                let route = self.route(r);
                // §12: an unhealthy route is kept while idle, like a configured one.
                if (route.ov.is_empty() && route.healthy) || route.deleted {
                    let i = self.ri(r);
                    self.routes.remove(i);
                    self.blocked.retain(|&b| b != r);
                }
            }
        }
        Some(a)
    }

    // ----- §12 host hooks ---------------------------------------------------

    /// §12 `set_route_health`.
    pub fn set_route_health(
        &mut self,
        key: u8,
        healthy: bool,
        now: Instant,
    ) -> Result<(), RouteError> {
        self.process_timers(now);
        let r = match self.route_by_key(key) {
            Some(r) => r,
            None => {
                if healthy {
                    // Healthy is the default of a route not in the table.
                    return Ok(());
                }
                // As set_route_config (§7): a closed pool deletes every route.
                if self.closed {
                    return Err(RouteError::Draining);
                }
                if self.routes.len() >= self.slots.routes {
                    return Err(RouteError::RouteTableFull);
                }
                // "Marking a route unhealthy creates it ... (like per-route
                // configuration)": no notice until it has been used (§3.6).
                self.new_route(key, true)
            }
        };
        // Ambiguity (reported): §12 does not say what a route being deleted
        // does; the core takes the mark (it matters until the route is gone).
        let was_healthy = self.route(r).healthy;
        self.route_mut(r).healthy = healthy;
        // §12: "With `close_on_unhealthy`, a route that goes from healthy to
        // unhealthy is also drained as `DrainExisting` ... before it settles."
        if was_healthy && !healthy && self.cfg.close_on_unhealthy {
            event("model: close_on_unhealthy drains a route going unhealthy");
            if self.allocated(r) > 0 {
                event("model: close_on_unhealthy drains a route with connections");
            }
            if self.route(r).deleted {
                event("model: close_on_unhealthy drains a route being deleted");
            }
            self.drain_route(r, DrainMode::DrainExisting);
        }
        // Marked healthy again with nothing else keeping it: freed as a
        // configuration being cleared is (§7, set_route_config).
        let idle_unpolled = self.actions.contains(&MAction::RouteIdle { key });
        if healthy
            && !self.route(r).deleted
            && self.route(r).ov.is_empty()
            && self.route(r).mark
            && !idle_unpolled
            && self.allocated(r) == 0
            && self.pending_of(r) == 0
        {
            event("model: healthy again frees an idle route at once");
            let i = self.ri(r);
            self.routes.remove(i);
            self.blocked.retain(|&b| b != r);
            return Ok(());
        }
        self.settle(r);
        Ok(())
    }

    /// §12 `preconnect(key, ratio)`: Envoy's `maybePreconnect` for one host.
    pub fn preconnect(&mut self, key: u8, ratio: f32, now: Instant) -> Result<bool, RouteError> {
        // §2: every input that takes `now` first processes the due timers.
        self.process_timers(now);
        let ratio = ratio_milli(ratio).map_err(RouteError::Config)? as u64;
        // §12: "a ratio of 0 is "off" (`Ok(false)`, nothing created, no route
        // made"): before any route lookup, so also on a closed pool or a
        // route being deleted.
        if ratio == 0 {
            event("model: pool preconnect with ratio 0 (off)");
            return Ok(false);
        }
        let (r, fresh) = match self.route_by_key(key) {
            Some(r) => (r, false),
            None => {
                if self.closed {
                    return Err(RouteError::Draining);
                }
                if self.routes.len() >= self.slots.routes {
                    return Err(RouteError::RouteTableFull);
                }
                (self.new_route(key, true), true)
            }
        };
        if self.route(r).deleted || self.closed {
            return Err(RouteError::Draining);
        }
        let q = self.route(r).queue.len() as u64;
        let cc = self.connecting_capacity(r);
        let active = self.active_of(r) as u64;
        let wanted = if self.route(r).healthy {
            (q + active + 1) * ratio > (cc + active) * 1000
        } else {
            q > cc
        };
        if wanted && self.backoff_pending(r) {
            event("model: pool preconnect wanted during retry backoff");
        }
        // §12: "and the idle limits leave room (§3.2)".
        let wanted = if wanted && !self.idle_room(r) {
            event("model: pool preconnect refused by an idle limit");
            false
        } else {
            wanted
        };
        let created = if wanted {
            self.create(r, false, false)
        } else {
            Created::No
        };
        if fresh && created == Created::No {
            let i = self.ri(r);
            self.routes.remove(i);
            self.blocked.retain(|&b| b != r);
        }
        Ok(created != Created::No)
    }

    /// A retry backoff is pending for the route of `key`.
    pub fn backoff_pending_key(&self, key: u8) -> bool {
        self.route_by_key(key)
            .is_some_and(|r| self.backoff_pending(r))
    }

    /// `Pool::route_load` (zeros and healthy for a route not in the table).
    pub fn route_load(&self, key: u8) -> RouteLoad {
        match self.route_by_key(key) {
            None => RouteLoad {
                queued: 0,
                active: 0,
                connecting_capacity: 0,
                spare: 0,
                healthy: true,
            },
            Some(r) => RouteLoad {
                queued: self.route(r).queue.len() as u32,
                active: self.active_of(r),
                connecting_capacity: self.connecting_capacity(r),
                spare: self.spare(r),
                healthy: self.route(r).healthy,
            },
        }
    }

    // ----- observations -----------------------------------------------------

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            connections: self.total(),
            connecting: self
                .conns
                .values()
                .filter(|c| c.state == CState::Connecting)
                .count() as u32,
            idle: self.total_idle(),
            leased: self.leases.len() as u32,
            pending: self.waiters.len() as u32,
            closing: self.closing,
            routes: self.routes.len() as u32,
            max_total: self.cfg.max_total,
        }
    }

    pub fn route_stats(&self, key: u8) -> Option<RouteStats> {
        let r = self.route_by_key(key)?;
        let route = self.route(r);
        Some(RouteStats {
            connections: self.allocated(r),
            connecting: self.connecting_of(r),
            idle: self.idle_of(r),
            leased: self.active_of(r),
            pending: self.pending_of(r),
            limit: self.limit(r),
            connects: route.connects,
            grants: route.grants,
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The route key of a live connection.
    pub fn conn_key(&self, c: Cid) -> Option<u8> {
        self.conns.get(&c).map(|x| self.route(x.route).key)
    }

    pub fn has_route(&self, key: u8) -> bool {
        self.route_by_key(key).is_some()
    }

    pub fn is_pending(&self, w: Wid) -> bool {
        self.waiters.contains_key(&w)
    }

    pub fn now(&self) -> Instant {
        self.last_now
    }
}
