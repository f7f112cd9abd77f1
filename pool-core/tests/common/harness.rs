//! The operation language and the harness that plays the backend: it feeds the
//! same inputs to the core and (when present) to the reference model, drains
//! `poll_action` after every input, maps the core's handles to the model's by
//! correspondence, and compares every observable output.
//!
//! One harness for the pool and the cluster layer (§12): with clusters
//! (`run_cluster_case`), cluster leases, host add/remove, health, predictive
//! ratios and `Pool::preconnect` are compared against `cluster::MCluster` as
//! well. Shared by the `model`, `model_cluster` and `regressions` tests and the
//! fuzz target (which runs without a model by default and checks the core's
//! own invariants and the harness's safety checks).

use std::collections::HashMap;

use super::cluster::MCluster;
use super::model::{Cid, Lid, MAction, MCancelled, MOutcome, Model, Slots, Wid};
use super::props;
use wharf_core::{
    Action, CancelPolicy, Cancelled, Config, ConnId, ConnectFailure, DrainMode, DrainScope,
    Duration, Instant, Lease, LeaseOutcome, Pool, Release, ReusePolicy, RouteConfig, Tag,
    Validation, WaiterId,
};
use wharf_core::{Balancer, Cluster, ClusterError, Index, LeaseError, Storage};

/// Route keys used by the harness on a pool without clusters (the storages
/// [`Size::Small`], [`Size::Big`], [`Size::Tight`]).
pub const KEYS: u8 = 3;
/// Route keys (hosts) used with clusters ([`Size::HostsSmall`],
/// [`Size::HostsBig`]).
pub const HOST_KEYS: u8 = 5;
/// Host slots of every cluster.
pub const HOSTS: usize = 4;

/// How a lease is given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelHow {
    Reuse {
        keep_alive_ms: Option<u32>,
        tag: Option<u8>,
    },
    Discard,
}

/// One input (indices are taken modulo the harness's current lists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lease {
        key: u8,
        tag: Option<u8>,
        deadline_ms: Option<u32>,
    },
    Release {
        idx: usize,
        how: RelHow,
    },
    ReleaseStale {
        idx: usize,
    },
    /// Release a lease of another pool (§5: `ForeignLease`): with an even
    /// `idx`, of a second small pool of the harness (same indices and
    /// generations as this pool's early leases); with an odd one, of a pool
    /// built earlier in this pool's storage.
    ReleaseForeign {
        idx: usize,
    },
    Cancel {
        idx: usize,
        excess: bool,
    },
    Connected {
        idx: usize,
        cap: u32,
        any: bool,
    },
    ConnectFailed {
        idx: usize,
        reason: u8,
        any: bool,
    },
    PeerClosed {
        idx: usize,
    },
    Validated {
        idx: usize,
        alive: bool,
        any: bool,
    },
    Advance {
        ms: u32,
    },
    AdvanceToTimer,
    /// After the next input, poll at most `n` actions and leave the rest
    /// queued (they are polled after a later input): exercises undelivered
    /// actions (§10: withdrawal, replacement, slots held until polled).
    Partial {
        n: u8,
    },
    /// `handle_timeout` with a `now` `ms` earlier than the current time, and
    /// the next input carries that older `now` too (§2).
    Backwards {
        ms: u32,
    },
    Drain {
        key: Option<u8>,
        delete: bool,
    },
    RouteConfig {
        key: u8,
        limit: Option<u32>,
        min_idle: Option<u32>,
        ratio_milli: Option<u32>,
    },
    /// §7 `set_capacity` (HTTP/2 SETTINGS) on an open connection; with `any`,
    /// on any connection the harness knows (connecting or closed ones too).
    SetCapacity {
        idx: usize,
        cap: u32,
        any: bool,
    },
    /// §6 `connected_as`: with `intent`, the tag the core says the connect
    /// was made for (`connect_tag`), else `tag`.
    ConnectedAs {
        idx: usize,
        cap: u32,
        tag: Option<u8>,
        intent: bool,
    },
    /// §7 `set_max_total`.
    SetMaxTotal {
        n: u32,
    },
    /// §7 `set_max_per_route`.
    SetMaxPerRoute {
        n: u32,
    },
    /// §12 `set_route_health` (with `close_on_unhealthy`, a route going
    /// unhealthy is drained).
    RouteHealth {
        key: u8,
        healthy: bool,
    },
    /// `Pool::preconnect` directly (§12).
    Preconnect {
        key: u8,
        ratio_milli: u32,
    },
    /// `Cluster::lease` on cluster `c` (modulo the clusters; nothing without
    /// clusters).
    ClusterLease {
        c: u8,
        tag: Option<u8>,
        deadline_ms: Option<u32>,
    },
    /// `Cluster::add_host`.
    AddHost {
        c: u8,
        key: u8,
    },
    /// `Cluster::remove_host`.
    RemoveHost {
        c: u8,
        key: u8,
    },
    /// `Cluster::set_health`.
    SetHealth {
        c: u8,
        key: u8,
        healthy: bool,
    },
    /// `Cluster::set_predictive_ratio(ratio_milli / 1000)`.
    SetRatio {
        c: u8,
        ratio_milli: u32,
    },
}

/// One cluster's initial shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    pub balancer: Balancer,
    pub hosts: Vec<u8>,
    pub ratio_milli: u32,
}

/// A pool configuration in harness terms (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cfg {
    pub max_total: u32,
    pub max_per_route: u32,
    pub max_pending: Option<u32>,
    pub max_leases: Option<u32>,
    pub fifo: bool,
    pub connect_timeout_ms: Option<u32>,
    pub idle_timeout_ms: Option<u32>,
    pub max_lifetime_ms: Option<u32>,
    pub validate_after_ms: Option<u32>,
    pub ratio_milli: u32,
    pub min_idle: u32,
    pub max_idle_per_route: Option<u32>,
    pub max_idle: Option<u32>,
    pub connecting_capacity: u32,
    pub max_leases_per_conn: Option<u32>,
    pub starvation_guard: bool,
    pub retry_backoff_ms: u32,
    /// `Config::max_lifetime_jitter_percent` (§2; above 100 is refused).
    pub jitter_percent: u8,
    /// `Config::seed` (route hashing, lifetime jitter).
    pub seed: u64,
    pub strict_tags: bool,
    pub close_on_unhealthy: bool,
}

/// Milliseconds; [`NEVER_MS`] is `Duration::MAX` (every sum with it
/// saturates at `Instant::MAX`, "never", §2).
fn ms(m: u32) -> Duration {
    if m == NEVER_MS {
        Duration::MAX
    } else {
        Duration::from_millis(m as u64)
    }
}

/// A duration in harness terms (`Cfg` timeouts, lease deadlines, keep-alive,
/// `Advance`) that stands for `Duration::MAX`: a lease deadline of
/// `Instant::MAX`, timeouts that saturate, `Advance` to `Instant::MAX`.
pub const NEVER_MS: u32 = u32::MAX;

impl Cfg {
    pub fn to_config(self) -> Config {
        Config {
            max_total: self.max_total,
            max_per_route: self.max_per_route,
            max_pending: self.max_pending,
            max_leases: self.max_leases,
            reuse: if self.fifo {
                ReusePolicy::Fifo
            } else {
                ReusePolicy::Lifo
            },
            connect_timeout: self.connect_timeout_ms.map(ms),
            idle_timeout: self.idle_timeout_ms.map(ms),
            max_lifetime: self.max_lifetime_ms.map(ms),
            validate_after_inactivity: self.validate_after_ms.map(ms),
            preconnect_ratio: self.ratio_milli as f32 / 1000.0,
            min_idle_per_route: self.min_idle,
            max_idle_per_route: self.max_idle_per_route,
            max_idle: self.max_idle,
            connecting_capacity: self.connecting_capacity,
            max_leases_per_conn: self.max_leases_per_conn,
            starvation_guard: self.starvation_guard,
            retry_backoff: ms(self.retry_backoff_ms),
            max_lifetime_jitter_percent: self.jitter_percent,
            seed: self.seed,
            strict_tags: self.strict_tags,
            close_on_unhealthy: self.close_on_unhealthy,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WState {
    Pending,
    Answered,
    Cancelled,
}

#[derive(Clone, Debug)]
struct WInfo {
    id: WaiterId,
    wid: Option<Wid>,
    key: u8,
    tag: Option<Tag>,
    state: WState,
}

#[derive(Clone, Copy, Debug)]
struct Held {
    lease: Lease,
    lid: Option<Lid>,
}

#[derive(Clone, Copy, Debug)]
struct ConnInfo {
    key: u8,
    tag: Option<Tag>,
    /// Discarded, peer-closed, drained, or out of leases: never handed out again.
    dead: bool,
    closed: bool,
    /// Gone by `connect_failed` (§6: no `Close` may follow).
    vanished: bool,
    grants: u32,
}

/// Drives a core pool (and optionally the model) with [`Op`]s.
pub struct Harness<'a, I: Index = u32> {
    pub pool: Pool<'a, u8, I>,
    pub model: Option<Model>,
    pub now: Instant,
    cfg: Config,
    conn_map: HashMap<ConnId, Cid>,
    conns: Vec<ConnId>,
    info: HashMap<ConnId, ConnInfo>,
    connecting: Vec<ConnId>,
    validating: Vec<ConnId>,
    leases: Vec<Held>,
    stale: Vec<Held>,
    live_lease_ids: HashMap<Lease, Lid>,
    waiters: Vec<WInfo>,
    waiter_pos: HashMap<WaiterId, usize>,
    pub steps: u64,
    pub trace: bool,
    next_limit: Option<usize>,
    poll_limit: Option<usize>,
    /// Connections made unusable by an input applied while older actions
    /// were still unpolled: a `Granted` issued before that input may still
    /// name them, so they are marked dead after the input's actions.
    pending_dead: Vec<ConnId>,
    pending_tags: Vec<(ConnId, Option<Tag>)>,
    skew_ms: u32,
    /// Every action was polled after the last input.
    drained: bool,
    /// Leases of a pool built earlier in this pool's storage (§5).
    earlier: Vec<Lease>,
    /// A second pool and leases it made (§5).
    other: Option<Pool<'a, u8>>,
    other_leases: Vec<Lease>,
    /// The properties that do not come from the model (`props.rs`).
    pub props: props::Props,
    /// The end phase goes on to `Instant::MAX` (see `run_case_in`).
    pub end_of_time: bool,
    /// Route keys of the sequence: `0..keys` ([`Size::keys`]).
    keys: u8,
    /// The cluster layer: each cluster with its model.
    clusters: Vec<(Cluster<u8, HOSTS>, MCluster)>,
}

/// A divergence or a violated check, with a description.
pub type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(format!($($arg)*));
        }
    };
}

impl<'a, I: Index> Harness<'a, I> {
    /// `slots` must describe the storage behind `pool`.
    pub fn new(pool: Pool<'a, u8, I>, cfg: Config, model: Option<Model>) -> Self {
        Harness {
            pool,
            model,
            now: Instant::from_millis(1_000),
            conn_map: HashMap::new(),
            conns: Vec::new(),
            info: HashMap::new(),
            connecting: Vec::new(),
            validating: Vec::new(),
            leases: Vec::new(),
            stale: Vec::new(),
            live_lease_ids: HashMap::new(),
            waiters: Vec::new(),
            waiter_pos: HashMap::new(),
            steps: 0,
            trace: false,
            next_limit: None,
            poll_limit: None,
            pending_dead: Vec::new(),
            pending_tags: Vec::new(),
            skew_ms: 0,
            drained: true,
            earlier: Vec::new(),
            other_leases: Vec::new(),
            other: None,
            props: props::Props::new(&cfg),
            end_of_time: false,
            keys: KEYS,
            clusters: Vec::new(),
            cfg,
        }
    }

    /// Adds a cluster (core and model) built from `spec`.
    pub fn add_cluster(&mut self, spec: &ClusterSpec) -> Check {
        let mut c = Cluster::new(spec.balancer);
        let mut m = MCluster::new(HOSTS, spec.balancer);
        for &k in &spec.hosts {
            let (a, b) = (c.add_host(k), m.add_host(k));
            ensure!(a == b, "add_host({k}): core {a:?}, model {b:?}");
        }
        let r = spec.ratio_milli as f32 / 1000.0;
        let (a, b) = (c.set_predictive_ratio(r), m.set_predictive_ratio(r));
        ensure!(a == b, "set_predictive_ratio({r}): core {a:?}, model {b:?}");
        self.clusters.push((c, m));
        Ok(())
    }

    /// Records a lease answer (direct or through a cluster) after comparing
    /// it with the model's.
    fn record_lease(
        &mut self,
        got: Result<LeaseOutcome, LeaseError>,
        want: Option<Result<MOutcome, LeaseError>>,
        (key, tag, deadline): (u8, Option<Tag>, Option<Instant>),
    ) -> Check {
        self.props.on_lease(key, tag, deadline, &got);
        match got {
            Ok(LeaseOutcome::Granted(l)) => {
                let mut lid = None;
                if let Some(w) = want {
                    let Ok(MOutcome::Granted { lease, conn }) = w else {
                        return Err(format!("lease: core Granted, model {w:?}"));
                    };
                    ensure!(
                        self.mconn(l.conn())? == conn,
                        "lease granted conn #{} vs model #{conn}",
                        self.mconn(l.conn())?
                    );
                    lid = Some(lease);
                }
                self.on_grant(l, lid, key, tag)?;
            }
            Ok(LeaseOutcome::Queued(w)) => {
                let mut wid = None;
                if let Some(mw) = want {
                    let Ok(MOutcome::Queued(x)) = mw else {
                        return Err(format!("lease: core Queued, model {mw:?}"));
                    };
                    wid = Some(x);
                }
                ensure!(
                    !self.waiter_pos.contains_key(&w),
                    "waiter handle {w:?} reused"
                );
                self.waiter_pos.insert(w, self.waiters.len());
                self.waiters.push(WInfo {
                    id: w,
                    wid,
                    key,
                    tag,
                    state: WState::Pending,
                });
            }
            Err(e) => {
                if let Some(w) = want {
                    ensure!(w == Err(e), "lease: core Err({e:?}), model {w:?}");
                }
            }
        }
        Ok(())
    }

    fn compare_clusters(&self) -> Check {
        for (c, _) in &self.clusters {
            if c.preconnects() > 0 {
                event("step with cluster preconnects > 0");
            }
        }
        let Some(m) = &self.model else { return Ok(()) };
        for (i, (c, mc)) in self.clusters.iter().enumerate() {
            ensure!(
                c.preconnects() == mc.preconnects(),
                "cluster {i}: preconnects core {}, model {}",
                c.preconnects(),
                mc.preconnects()
            );
            ensure!(
                c.last_pick() == mc.last_pick(),
                "cluster {i}: last_pick core {:?}, model {:?}",
                c.last_pick(),
                mc.last_pick()
            );
            let hosts: Vec<u8> = (0..c.len()).filter_map(|h| c.host(h).copied()).collect();
            let mhosts: Vec<u8> = (0..mc.len()).filter_map(|h| mc.host(h)).collect();
            ensure!(
                hosts == mhosts,
                "cluster {i}: hosts core {hosts:?}, model {mhosts:?}"
            );
        }
        for k in 0..self.keys {
            let (a, b) = (self.pool.route_load(&k), m.route_load(k));
            ensure!(a == b, "route_load({k}): core {a:?}\n  model {b:?}");
        }
        Ok(())
    }

    /// Takes up to two leases on route 0 of `pool` (a pool the harness does
    /// not drive otherwise), answering its connects at once.
    pub fn leases_of<J: Index>(pool: &mut Pool<'_, u8, J>, now: Instant) -> Vec<Lease> {
        let mut out = Vec::new();
        for _ in 0..2 {
            if let Ok(LeaseOutcome::Granted(l)) = pool.lease(&0, None, now, None) {
                out.push(l);
            }
            while let Some(a) = pool.poll_action() {
                match a {
                    Action::Connect { conn, .. } => {
                        let _ = pool.connected(conn, 2, now);
                    }
                    Action::Granted { lease, .. } => out.push(lease),
                    _ => {}
                }
            }
        }
        out
    }

    pub fn model_for(cfg: &Config, slots: Slots) -> Model {
        Model::new(cfg.clone(), slots).expect("harness: valid config")
    }

    fn mconn(&self, c: ConnId) -> Result<Cid, String> {
        self.conn_map
            .get(&c)
            .copied()
            .ok_or_else(|| format!("unknown core conn {c:?}"))
    }

    /// Register a granted lease (sync or by action) and check tag isolation
    /// and the other safety rules.
    fn on_grant(&mut self, lease: Lease, lid: Option<Lid>, key: u8, tag: Option<Tag>) -> Check {
        let c = lease.conn();
        let info = self
            .info
            .get_mut(&c)
            .ok_or_else(|| format!("grant on unknown conn {c:?}"))?;
        ensure!(
            info.key == key,
            "lease for route {key} got a connection of route {}",
            info.key
        );
        let old_tags = &self.pending_tags;
        // With strict tags only an equal tag is compatible (§3.7, §4 step 3).
        let strict = self.cfg.strict_tags;
        let compatible = |t: Option<Tag>| t == tag || (!strict && t.is_none());
        ensure!(
            compatible(info.tag) || old_tags.iter().any(|&(x, t)| x == c && compatible(t)),
            "lease asking tag {tag:?} got a connection tagged {:?}",
            info.tag
        );
        ensure!(
            !info.dead,
            "lease got a discarded/closed/draining connection {c:?}"
        );
        ensure!(!info.closed, "lease got a closed connection {c:?}");
        info.grants += 1;
        if self
            .cfg
            .max_leases_per_conn
            .is_some_and(|m| info.grants >= m)
        {
            info.dead = true;
        }
        ensure!(
            self.pool
                .route_of(c)
                .and_then(|r| self.pool.route_key(r).copied())
                == Some(key),
            "route_of({c:?}) does not name route {key}"
        );
        ensure!(
            !self.live_lease_ids.contains_key(&lease),
            "lease handle {lease:?} handed out twice"
        );
        if let Some(l) = lid {
            self.live_lease_ids.insert(lease, l);
        }
        self.leases.push(Held { lease, lid });
        Ok(())
    }

    fn waiter_answer(&mut self, w: WaiterId) -> Result<usize, String> {
        let i = *self
            .waiter_pos
            .get(&w)
            .ok_or_else(|| format!("answer for unknown waiter {w:?}"))?;
        ensure!(
            self.waiters[i].state == WState::Pending,
            "waiter {w:?} answered twice (state {:?})",
            self.waiters[i].state
        );
        self.waiters[i].state = WState::Answered;
        Ok(i)
    }

    /// Poll both until empty, comparing action by action.
    fn drain_actions(&mut self) -> Check {
        for n in 0.. {
            ensure!(n < 100_000, "poll_action does not end");
            if self.poll_limit.is_some_and(|l| n >= l) {
                self.drained = false;
                return Ok(());
            }
            let has = self.pool.has_actions();
            let got = self.pool.poll_action();
            ensure!(
                has == got.is_some(),
                "has_actions() {has}, poll_action() {got:?}"
            );
            let want = self.model.as_mut().and_then(|m| m.poll());
            if self.trace {
                let key = match got {
                    Some(Action::Connect { route, .. }) => self.pool.route_key(route).copied(),
                    _ => None,
                };
                eprintln!("    core {got:?} (key {key:?}) / model {want:?}");
            }
            let Some(a) = got else {
                ensure!(
                    want.is_none() || self.model.is_none(),
                    "core has no more actions, model has {want:?}"
                );
                self.drained = true;
                return Ok(());
            };
            self.props.on_action(&self.pool, &a)?;
            let has_model = self.model.is_some();
            ensure!(
                !has_model || want.is_some(),
                "core has action {a:?}, model has none"
            );
            match a {
                Action::Connect { conn, route } => {
                    let key = *self
                        .pool
                        .route_key(route)
                        .ok_or("Connect names an unknown route")?;
                    if let Some(w) = &want {
                        let MAction::Connect { conn: mc, key: mk } = *w else {
                            return Err(format!("core Connect({key}), model {w:?}"));
                        };
                        ensure!(mk == key, "Connect on route {key}, model on route {mk}");
                        self.conn_map.insert(conn, mc);
                    }
                    ensure!(
                        !self.info.contains_key(&conn),
                        "Connect reuses a live handle {conn:?}"
                    );
                    self.info.insert(
                        conn,
                        ConnInfo {
                            key,
                            tag: None,
                            dead: false,
                            closed: false,
                            vanished: false,
                            grants: 0,
                        },
                    );
                    self.conns.push(conn);
                    self.connecting.push(conn);
                }
                Action::Close { conn, reason } => {
                    if let Some(w) = &want {
                        let mc = self.mconn(conn)?;
                        ensure!(
                            *w == MAction::Close { conn: mc, reason },
                            "core Close(#{mc}, {reason:?}), model {w:?}"
                        );
                    }
                    let info = self.info.get_mut(&conn).ok_or("Close of an unknown conn")?;
                    ensure!(
                        !info.vanished,
                        "Close({conn:?}, {reason:?}) for a connection that vanished on connect_failed (§6: no Close)"
                    );
                    ensure!(!info.closed, "conn {conn:?} closed twice");
                    info.closed = true;
                    self.connecting.retain(|&c| c != conn);
                    self.validating.retain(|&c| c != conn);
                    ensure!(
                        !self.leases.iter().any(|h| h.lease.conn() == conn),
                        "conn {conn:?} closed with leases outstanding"
                    );
                }
                Action::Validate { conn } => {
                    if let Some(w) = &want {
                        let mc = self.mconn(conn)?;
                        ensure!(
                            *w == MAction::Validate { conn: mc },
                            "core Validate(#{mc}), model {w:?}"
                        );
                    }
                    ensure!(
                        !self.validating.contains(&conn),
                        "Validate twice for {conn:?}"
                    );
                    self.validating.push(conn);
                }
                Action::Granted { waiter, lease } => {
                    let i = self.waiter_answer(waiter)?;
                    let mut lid = None;
                    if let Some(w) = &want {
                        let MAction::Granted {
                            waiter: mw,
                            lease: ml,
                            conn: mc,
                        } = *w
                        else {
                            return Err(format!("core Granted, model {w:?}"));
                        };
                        ensure!(
                            Some(mw) == self.waiters[i].wid,
                            "Granted to another waiter than the model's"
                        );
                        ensure!(
                            self.mconn(lease.conn())? == mc,
                            "Granted on conn #{} vs model #{mc}",
                            self.mconn(lease.conn())?
                        );
                        lid = Some(ml);
                    }
                    let (key, tag) = (self.waiters[i].key, self.waiters[i].tag);
                    self.on_grant(lease, lid, key, tag)?;
                }
                Action::Failed { waiter, reason } => {
                    let i = self.waiter_answer(waiter)?;
                    if let Some(w) = &want {
                        let mw = self.waiters[i].wid.ok_or("unmapped waiter")?;
                        ensure!(
                            *w == MAction::Failed { waiter: mw, reason },
                            "core Failed(w{mw}, {reason:?}), model {w:?}"
                        );
                    }
                }
                Action::RouteIdle { route, key } => {
                    if let Some(w) = &want {
                        ensure!(
                            *w == MAction::RouteIdle { key },
                            "core RouteIdle({key}), model {w:?}"
                        );
                        let kept = self.model.as_ref().unwrap().has_route(key);
                        let core_kept = self.pool.route_key(route).is_some();
                        ensure!(
                            kept == core_kept,
                            "after RouteIdle({key}) model keeps route: {kept}, core: {core_kept}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn compare_state(&mut self) -> Check {
        self.pool.check_invariants().map_err(|v| {
            format!(
                "check_invariants: invariant {} violated: {}",
                v.invariant, v.what
            )
        })?;
        let s = self.pool.stats();
        if !self.drained {
            return self.compare_model(s);
        }
        ensure!(
            s.closing == 0,
            "closing {} after every action was polled",
            s.closing
        );
        ensure!(
            s.leased as usize == self.leases.len(),
            "stats.leased {} vs {} held",
            s.leased,
            self.leases.len()
        );
        let pending = self
            .waiters
            .iter()
            .filter(|w| w.state == WState::Pending)
            .count();
        ensure!(
            s.pending as usize == pending,
            "stats.pending {} vs {} unanswered",
            s.pending,
            pending
        );
        ensure!(
            s.connecting as usize == self.connecting.len(),
            "stats.connecting {} vs {} outstanding connects",
            s.connecting,
            self.connecting.len()
        );
        self.compare_model(s)
    }

    fn compare_model(&self, s: wharf_core::PoolStats) -> Check {
        self.compare_clusters()?;
        let Some(m) = &self.model else { return Ok(()) };
        ensure!(s == m.stats(), "stats: core {s:?}\n  model {:?}", m.stats());
        for k in 0..self.keys {
            let (a, b) = (self.pool.route_stats(&k), m.route_stats(k));
            ensure!(a == b, "route_stats({k}): core {a:?}\n  model {b:?}");
        }
        let (a, b) = (self.pool.counters(), m.counters());
        ensure!(a == b, "counters: core {a:?}\n  model {b:?}");
        ensure!(self.pool.is_closed() == m.is_closed(), "is_closed differs");
        // §3.3 step 4: what each connect was made for (strict tags); the
        // others are `None` (checked at the end, `finish`).
        for &c in &self.connecting {
            let mc = self.mconn(c)?;
            let (a, b) = (self.pool.connect_tag(c), m.connect_tag(mc));
            ensure!(a == b, "connect_tag(#{mc}): core {a:?}, model {b:?}");
        }
        // §2: a deadline of `Instant::MAX` is none, and `poll_timeout()` does
        // not report it.
        ensure!(
            self.pool.poll_timeout() != Some(Instant::MAX),
            "poll_timeout reports Instant::MAX (never)"
        );
        if let Some(d) = m.next_deadline() {
            match self.pool.poll_timeout() {
                Some(t) => ensure!(
                    t <= d,
                    "poll_timeout {t:?} is later than the next event {d:?}"
                ),
                None => return Err(format!("poll_timeout None, model has an event at {d:?}")),
            }
        }
        Ok(())
    }

    /// Apply one operation to both, then compare everything.
    pub fn step(&mut self, op: &Op) -> Check {
        self.steps += 1;
        if self.trace {
            eprintln!("  [{}] t={} {op:?}", self.steps, self.now.as_micros());
        }
        if let Op::Partial { n } = *op {
            self.next_limit = Some(n as usize);
            return Ok(());
        }
        self.poll_limit = self.next_limit.take();
        let timer_only = matches!(
            op,
            Op::Advance { .. } | Op::AdvanceToTimer | Op::Backwards { .. }
        );
        self.props.begin_input(&self.pool, timer_only, self.drained);
        self.apply(op)?;
        self.drain_actions()?;
        self.poll_limit = None;
        if self.drained {
            for c in std::mem::take(&mut self.pending_dead) {
                if let Some(info) = self.info.get_mut(&c) {
                    info.dead = true;
                }
            }
            self.pending_tags.clear();
        }
        self.compare_state()?;
        self.props.end_input(&self.pool, self.drained)
    }

    /// The connection may never be handed out again (deferred past this
    /// input's actions if older actions were still unpolled before it).
    fn mark_dead(&mut self, c: ConnId) {
        if self.drained {
            self.info.get_mut(&c).unwrap().dead = true;
        } else {
            self.pending_dead.push(c);
        }
    }

    /// `DrainExisting` of route `key`: every connection of it that is not
    /// connecting may never be handed out again.
    fn mark_route_dead(&mut self, key: u8) {
        let dead: Vec<ConnId> = self
            .info
            .iter()
            .filter(|(c, i)| i.key == key && !self.connecting.contains(c))
            .map(|(&c, _)| c)
            .collect();
        for c in dead {
            self.mark_dead(c);
        }
    }

    /// The connection's new tag. If older actions are still unpolled, a
    /// `Granted` issued under the old tag may still come: the old tag stays
    /// acceptable until every action has been polled.
    fn set_tag(&mut self, c: ConnId, tag: Option<Tag>) {
        let info = self.info.get_mut(&c).unwrap();
        if !self.drained {
            self.pending_tags.push((c, info.tag));
        }
        info.tag = tag;
    }

    fn pick<T: Copy>(v: &[T], idx: usize) -> Option<T> {
        if v.is_empty() {
            None
        } else {
            Some(v[idx % v.len()])
        }
    }

    /// §12 with `close_on_unhealthy`: a route going from healthy to
    /// unhealthy is drained as `DrainExisting`.
    fn after_health(&mut self, key: u8, before: bool, healthy: bool, ok: bool) {
        // Nothing open on it may serve again.
        if ok && before && !healthy && self.cfg.close_on_unhealthy {
            event("close_on_unhealthy: a host goes unhealthy (drained)");
            self.mark_route_dead(key);
        }
    }

    fn apply(&mut self, op: &Op) -> Check {
        // After `Backwards`, the next input carries an older `now` (§2: it is
        // treated as the previous one).
        let skew = std::mem::take(&mut self.skew_ms) as u64 * 1000;
        let now = Instant::from_micros(self.now.as_micros().saturating_sub(skew));
        match *op {
            Op::Lease {
                key,
                tag,
                deadline_ms,
            } => {
                let tag = tag.map(|t| Tag(t as u64));
                let deadline = deadline_ms.map(|d| now + ms(d));
                let got = self.pool.lease(&key, tag, now, deadline);
                let want = self
                    .model
                    .as_mut()
                    .map(|m| m.lease(key, tag, now, deadline));
                self.record_lease(got, want, (key, tag, deadline))?;
            }
            Op::Release { idx, how } => {
                if self.leases.is_empty() {
                    return Ok(());
                }
                let h = self.leases.remove(idx % self.leases.len());
                let rel = match how {
                    RelHow::Discard => Release::Discard,
                    RelHow::Reuse { keep_alive_ms, tag } => Release::Reuse {
                        keep_alive: keep_alive_ms.map(ms),
                        tag: tag.map(|t| Tag(t as u64)),
                    },
                };
                let got = self.pool.release(h.lease, rel, now);
                ensure!(got.is_ok(), "release of a held lease failed: {got:?}");
                self.props.on_release(&self.pool, h.lease, rel);
                if let (Some(m), Some(l)) = (self.model.as_mut(), h.lid) {
                    let want = m.release(l, rel, now);
                    ensure!(want == got, "release: core {got:?}, model {want:?}");
                }
                self.live_lease_ids.remove(&h.lease);
                match rel {
                    Release::Discard => self.mark_dead(h.lease.conn()),
                    // §5 step 2: with strict tags the release's tag is ignored.
                    Release::Reuse { .. } if self.cfg.strict_tags => {}
                    Release::Reuse { tag, .. } => self.set_tag(h.lease.conn(), tag),
                }
                self.stale.push(h);
                if self.stale.len() > 8 {
                    self.stale.remove(0);
                }
            }
            Op::ReleaseStale { idx } => {
                let Some(h) = Self::pick(&self.stale, idx) else {
                    return Ok(());
                };
                let got = self.pool.release(h.lease, Release::REUSE, now);
                ensure!(
                    got == Err(wharf_core::ReleaseError::StaleLease),
                    "double release: {got:?}"
                );
                if let (Some(m), Some(l)) = (self.model.as_mut(), h.lid) {
                    let want = m.release(l, Release::REUSE, now);
                    ensure!(want == got, "stale release: core {got:?}, model {want:?}");
                }
            }
            Op::ReleaseForeign { idx } => {
                if self.other_leases.is_empty() {
                    if let Some(other) = self.other.as_mut() {
                        self.other_leases = Self::leases_of(other, self.now);
                    }
                }
                let from = if idx % 2 == 1 && !self.earlier.is_empty() {
                    &self.earlier
                } else {
                    &self.other_leases
                };
                let Some(l) = Self::pick(from, idx / 2) else {
                    return Ok(());
                };
                if self.leases.iter().any(|h| {
                    let (a, b) = (h.lease.id(), l.id());
                    let (c, d) = (h.lease.conn(), l.conn());
                    (a.index(), a.generation(), c.index(), c.generation())
                        == (b.index(), b.generation(), d.index(), d.generation())
                }) {
                    event("harness: a foreign lease with the index and generation of a lease held");
                }
                let got = self.pool.release(l, Release::REUSE, now);
                ensure!(got.is_err(), "a lease of another pool was accepted");
                if let Some(m) = self.model.as_mut() {
                    let want = m.release_foreign(now);
                    ensure!(want == got, "foreign release: core {got:?}, model {want:?}");
                }
            }
            Op::Cancel { idx, excess } => {
                if self.waiters.is_empty() {
                    return Ok(());
                }
                // Prefer pending waiters; any waiter otherwise (stale handle test).
                let pend: Vec<usize> = (0..self.waiters.len())
                    .filter(|&i| self.waiters[i].state == WState::Pending)
                    .collect();
                let i = if !pend.is_empty() && idx % 4 != 3 {
                    pend[idx % pend.len()]
                } else {
                    idx % self.waiters.len()
                };
                let policy = if excess {
                    CancelPolicy::CloseExcess
                } else {
                    CancelPolicy::Default
                };
                let w = self.waiters[i].clone();
                let got = self.pool.cancel(w.id, policy, now);
                let mut lid = None;
                if let (Some(m), Some(mw)) = (self.model.as_mut(), w.wid) {
                    let want = m.cancel(mw, policy, now);
                    let same = match (got, want) {
                        (Ok(Cancelled::Grant(l)), Ok(MCancelled::Grant { lease, conn })) => {
                            lid = Some(lease);
                            self.conn_map.get(&l.conn()) == Some(&conn)
                        }
                        (Ok(Cancelled::Waiting), Ok(MCancelled::Waiting)) => true,
                        (Ok(Cancelled::Failure(a)), Ok(MCancelled::Failure(b))) => a == b,
                        (Err(a), Err(b)) => a == b,
                        _ => false,
                    };
                    ensure!(same, "cancel: core {got:?}, model {want:?}");
                }
                if let Ok(Cancelled::Grant(l)) = got {
                    // The withdrawn grant's lease went back to the pool: a
                    // stale handle from now on (never one the harness holds).
                    ensure!(
                        !self.live_lease_ids.contains_key(&l)
                            && !self.leases.iter().any(|h| h.lease == l),
                        "cancel withdrew a grant of a lease in use {l:?}"
                    );
                    if let Some(info) = self.info.get_mut(&l.conn()) {
                        info.grants += 1;
                    }
                    self.stale.push(Held { lease: l, lid });
                    if self.stale.len() > 8 {
                        self.stale.remove(0);
                    }
                }
                if got.is_ok() {
                    self.props.on_cancel(w.id);
                    ensure!(
                        w.state == WState::Pending,
                        "cancel of an answered waiter succeeded"
                    );
                    self.waiters[i].state = WState::Cancelled;
                }
            }
            Op::Connected { idx, cap, any } => {
                let list = if any { &self.conns } else { &self.connecting };
                let Some(c) = Self::pick(list, idx) else {
                    return Ok(());
                };
                let was_connecting = self.connecting.contains(&c);
                // §6: with strict tags the connection is tagged with what its
                // connect was made for.
                let intent = self.pool.connect_tag(c);
                let got = self.pool.connected(c, cap, now);
                if let Some(m) = self.model.as_mut() {
                    let mc = *self.conn_map.get(&c).ok_or("unmapped conn")?;
                    let want = m.connected(mc, cap, now);
                    ensure!(
                        want == got,
                        "connected(#{mc}, {cap}): core {got:?}, model {want:?}"
                    );
                }
                if got.is_ok() {
                    self.props.on_connected(&self.pool, c, intent);
                    ensure!(
                        was_connecting,
                        "connected accepted for a conn that was not connecting"
                    );
                    ensure!(
                        self.cfg.strict_tags || intent.is_none(),
                        "connect_tag {intent:?} without strict tags"
                    );
                    self.connecting.retain(|&x| x != c);
                    self.info.get_mut(&c).unwrap().tag = intent;
                }
            }
            Op::ConnectedAs {
                idx,
                cap,
                tag,
                intent,
            } => {
                let Some(c) = Self::pick(&self.connecting, idx) else {
                    return Ok(());
                };
                let tag = if intent {
                    self.pool.connect_tag(c)
                } else {
                    tag.map(|t| Tag(t as u64))
                };
                let got = self.pool.connected_as(c, cap, tag, now);
                if let Some(m) = self.model.as_mut() {
                    let mc = *self.conn_map.get(&c).ok_or("unmapped conn")?;
                    let want = m.connected_as(mc, cap, tag, now);
                    ensure!(
                        want == got,
                        "connected_as(#{mc}, {cap}, {tag:?}): core {got:?}, model {want:?}"
                    );
                }
                match got {
                    Ok(()) => {
                        self.props.on_connected(&self.pool, c, tag);
                        self.connecting.retain(|&x| x != c);
                        self.info.get_mut(&c).unwrap().tag = tag;
                    }
                    Err(e) => super::model::event(&format!("harness: connected_as -> {e:?}")),
                }
            }
            Op::SetCapacity { idx, cap, any } => {
                let open: Vec<ConnId> = if any {
                    self.conns.clone()
                } else {
                    self.conns
                        .iter()
                        .copied()
                        .filter(|c| !self.info[c].closed && !self.connecting.contains(c))
                        .collect()
                };
                let Some(c) = Self::pick(&open, idx) else {
                    return Ok(());
                };
                let got = self.pool.set_capacity(c, cap, now);
                if let Some(m) = self.model.as_mut() {
                    let mc = *self.conn_map.get(&c).ok_or("unmapped conn")?;
                    let want = m.set_capacity(mc, cap, now);
                    ensure!(
                        want == got,
                        "set_capacity(#{mc}, {cap}): core {got:?}, model {want:?}"
                    );
                }
                ensure!(
                    got.is_err() || !self.connecting.contains(&c),
                    "set_capacity accepted for a connecting conn"
                );
                if let Err(e) = got {
                    super::model::event(&format!("harness: set_capacity -> {e:?}"));
                }
            }
            Op::SetMaxTotal { n } => {
                let got = self.pool.set_max_total(n, now);
                if let Some(m) = self.model.as_mut() {
                    let want = m.set_max_total(n, now);
                    ensure!(
                        want == got,
                        "set_max_total({n}): core {got:?}, model {want:?}"
                    );
                }
                match got {
                    Ok(()) => ensure!(
                        self.pool.stats().max_total == n,
                        "stats().max_total is not the new limit"
                    ),
                    Err(e) => super::model::event(&format!("harness: set_max_total -> {e:?}")),
                }
            }
            Op::SetMaxPerRoute { n } => {
                let got = self.pool.set_max_per_route(n, now);
                if let Some(m) = self.model.as_mut() {
                    let want = m.set_max_per_route(n, now);
                    ensure!(
                        want == got,
                        "set_max_per_route({n}): core {got:?}, model {want:?}"
                    );
                }
                if let Err(e) = got {
                    super::model::event(&format!("harness: set_max_per_route -> {e:?}"));
                }
            }
            Op::RouteHealth { key, healthy } => {
                let key = key % self.keys;
                let before = self.pool.route_load(&key).healthy;
                let got = self.pool.set_route_health(&key, healthy, now);
                if let Some(m) = self.model.as_mut() {
                    let want = m.set_route_health(key, healthy, now);
                    ensure!(
                        got == want,
                        "set_route_health({key}, {healthy}): core {got:?}, model {want:?}"
                    );
                }
                self.after_health(key, before, healthy, got.is_ok());
            }
            Op::ConnectFailed { idx, reason, any } => {
                let list = if any { &self.conns } else { &self.connecting };
                let Some(c) = Self::pick(list, idx) else {
                    return Ok(());
                };
                let reason = match reason % 3 {
                    0 => ConnectFailure::Timeout,
                    1 => ConnectFailure::Local,
                    _ => ConnectFailure::Remote,
                };
                let got = self.pool.connect_failed(c, reason, now);
                if let Some(m) = self.model.as_mut() {
                    let mc = *self.conn_map.get(&c).ok_or("unmapped conn")?;
                    let want = m.connect_failed(mc, reason, now);
                    ensure!(
                        want == got,
                        "connect_failed(#{mc}): core {got:?}, model {want:?}"
                    );
                }
                if got.is_ok() {
                    self.props.on_connect_failed(c);
                    self.connecting.retain(|&x| x != c);
                    let info = self.info.get_mut(&c).unwrap();
                    info.closed = true;
                    info.vanished = true;
                }
            }
            Op::PeerClosed { idx } => {
                let Some(c) = Self::pick(&self.conns, idx) else {
                    return Ok(());
                };
                let got = self.pool.peer_closed(c, now);
                if let Some(m) = self.model.as_mut() {
                    let mc = *self.conn_map.get(&c).ok_or("unmapped conn")?;
                    let want = m.peer_closed(mc, now);
                    ensure!(
                        want == got,
                        "peer_closed(#{mc}): core {got:?}, model {want:?}"
                    );
                }
                if got.is_ok() {
                    self.mark_dead(c);
                }
            }
            Op::Validated { idx, alive, any } => {
                let list = if any { &self.conns } else { &self.validating };
                let Some(c) = Self::pick(list, idx) else {
                    return Ok(());
                };
                let result = if alive {
                    Validation::Alive
                } else {
                    Validation::Stale
                };
                let got = self.pool.validated(c, result, now);
                if let Some(m) = self.model.as_mut() {
                    let mc = *self.conn_map.get(&c).ok_or("unmapped conn")?;
                    let want = m.validated(mc, result, now);
                    ensure!(
                        want == got,
                        "validated(#{mc}, {result:?}): core {got:?}, model {want:?}"
                    );
                }
                if got.is_ok() {
                    self.props.on_validated(&self.pool, c, result);
                    ensure!(
                        self.validating.contains(&c),
                        "validated accepted for a conn not validating"
                    );
                    self.validating.retain(|&x| x != c);
                }
            }
            Op::Advance { ms: d } => {
                self.now = self.now + ms(d);
                self.pool.handle_timeout(self.now);
                if let Some(m) = self.model.as_mut() {
                    m.handle_timeout(self.now);
                }
            }
            Op::AdvanceToTimer => {
                if let Some(t) = self.pool.poll_timeout() {
                    if t > self.now {
                        self.now = t;
                    }
                }
                self.pool.handle_timeout(self.now);
                if let Some(m) = self.model.as_mut() {
                    m.handle_timeout(self.now);
                }
            }
            Op::Partial { .. } => {}
            Op::Backwards { ms: d } => {
                self.skew_ms = d;
                let t = Instant::from_micros(now.as_micros().saturating_sub(d as u64 * 1000));
                self.pool.handle_timeout(t);
                if let Some(m) = self.model.as_mut() {
                    m.handle_timeout(t);
                }
            }
            Op::Drain { key, delete } => {
                let mode = if delete {
                    DrainMode::DrainAndDelete
                } else {
                    DrainMode::DrainExisting
                };
                let key = key.map(|k| k % self.keys);
                let scope = match &key {
                    Some(k) => DrainScope::Route(k),
                    None => DrainScope::All,
                };
                // Timers due now run first: let them run before marking what
                // the drain makes unusable.
                self.pool.drain(scope, mode, now);
                self.props.on_drain(&self.pool, key, mode);
                if let Some(m) = self.model.as_mut() {
                    m.drain(key, mode, now);
                }
                if mode == DrainMode::DrainExisting {
                    match key {
                        Some(k) => self.mark_route_dead(k),
                        None => (0..self.keys).for_each(|k| self.mark_route_dead(k)),
                    }
                }
            }
            Op::RouteConfig {
                key,
                limit,
                min_idle,
                ratio_milli,
            } => {
                let cfg = RouteConfig {
                    max_connections: limit,
                    min_idle,
                    preconnect_ratio: ratio_milli.map(|r| r as f32 / 1000.0),
                };
                let got = self.pool.set_route_config(&(key % self.keys), cfg, now);
                if let Some(m) = self.model.as_mut() {
                    let want = m.set_route_config(key % self.keys, cfg, now);
                    ensure!(
                        want == got,
                        "set_route_config: core {got:?}, model {want:?}"
                    );
                }
            }
            Op::Preconnect { key, ratio_milli } => {
                let key = key % self.keys;
                let r = ratio_milli as f32 / 1000.0;
                let got = self.pool.preconnect(&key, r, now);
                event(format!("pool preconnect -> {got:?}"));
                if let Some(m) = self.model.as_mut() {
                    let want = m.preconnect(key, r, now);
                    ensure!(
                        got == want,
                        "preconnect({key}, {r}): core {got:?}, model {want:?}"
                    );
                }
            }
            Op::ClusterLease {
                c,
                tag,
                deadline_ms,
            } => {
                if self.clusters.is_empty() {
                    return Ok(());
                }
                let ci = c as usize % self.clusters.len();
                let tag = tag.map(|t| Tag(t as u64));
                let deadline = deadline_ms.map(|d| now + ms(d));
                let (cl, mcl) = &mut self.clusters[ci];
                let got = cl.lease(&mut self.pool, tag, now, deadline);
                let want = self
                    .model
                    .as_mut()
                    .map(|m| mcl.lease(m, tag, now, deadline));
                let core_host = cl.last_pick().and_then(|h| cl.host(h).copied());
                if let Some(w) = &want {
                    let mhost = mcl.last_pick();
                    ensure!(
                        cl.last_pick() == mhost,
                        "cluster {ci} lease: picked host {:?} ({core_host:?}), model {mhost:?} ({:?}); core {got:?}, model {w:?}",
                        cl.last_pick(),
                        mhost.and_then(|h| mcl.host(h))
                    );
                }
                if self.trace {
                    eprintln!("    cluster {ci} picked {core_host:?}: {got:?}");
                }
                let pre = cl.preconnects();
                event(format!(
                    "cluster lease -> {}",
                    match &got {
                        Ok(l) => match l.outcome {
                            LeaseOutcome::Granted(_) => "granted".to_string(),
                            LeaseOutcome::Queued(_) => "queued".to_string(),
                        },
                        Err(e) => format!("{e:?}"),
                    }
                ));
                if self.pool.route_load(&core_host.unwrap_or(0)).healthy {
                    event("cluster lease on a healthy host");
                } else {
                    event("cluster lease on an unhealthy host (panic mode)");
                }
                if pre > 0 {
                    event("cluster lease with predictive preconnects made so far");
                }
                match got {
                    Ok(l) => {
                        let key = core_host.ok_or("lease without a host")?;
                        let (want, mhost) = match want {
                            None => (None, None),
                            Some(Ok(ml)) => (Some(Ok(ml.outcome)), Some(ml.host)),
                            Some(Err(e)) => {
                                return Err(format!(
                                    "cluster {ci} lease: core {got:?}, model Err({e:?})"
                                ))
                            }
                        };
                        ensure!(
                            mhost.is_none_or(|h| h == l.host),
                            "cluster {ci} lease: host {} vs model {mhost:?}",
                            l.host
                        );
                        self.record_lease(Ok(l.outcome), want, (key, tag, deadline))?;
                    }
                    Err(ClusterError::Lease(e)) => {
                        let key = core_host.ok_or("lease error without a host")?;
                        let want = match want {
                            None => None,
                            Some(Err(ClusterError::Lease(me))) => Some(Err(me)),
                            Some(w) => {
                                return Err(format!(
                                    "cluster {ci} lease: core Err(Lease({e:?})), model {w:?}"
                                ))
                            }
                        };
                        self.record_lease(Err(e), want, (key, tag, deadline))?;
                    }
                    Err(e) => {
                        if let Some(w) = want {
                            ensure!(
                                w == Err(e),
                                "cluster {ci} lease: core Err({e:?}), model {w:?}"
                            );
                        }
                    }
                }
            }
            Op::AddHost { c, key } => {
                if self.clusters.is_empty() {
                    return Ok(());
                }
                let ci = c as usize % self.clusters.len();
                let key = key % self.keys;
                let (cl, mcl) = &mut self.clusters[ci];
                let got = cl.add_host(key);
                event(format!("add_host -> {got:?}"));
                let want = mcl.add_host(key);
                ensure!(
                    self.model.is_none() || got == want,
                    "cluster {ci} add_host({key}): core {got:?}, model {want:?}"
                );
            }
            Op::RemoveHost { c, key } => {
                if self.clusters.is_empty() {
                    return Ok(());
                }
                let ci = c as usize % self.clusters.len();
                let key = key % self.keys;
                let (cl, mcl) = &mut self.clusters[ci];
                let got = cl.remove_host(&mut self.pool, &key, now);
                if got.is_ok() {
                    // Its route drains for deletion (if it is in the table).
                    self.props
                        .on_drain(&self.pool, Some(key), DrainMode::DrainAndDelete);
                }
                event(format!("remove_host -> {got:?}"));
                if let Some(m) = self.model.as_mut() {
                    let want = mcl.remove_host(m, key, now);
                    ensure!(
                        got == want,
                        "cluster {ci} remove_host({key}): core {got:?}, model {want:?}"
                    );
                }
            }
            Op::SetHealth { c, key, healthy } => {
                if self.clusters.is_empty() {
                    return Ok(());
                }
                let ci = c as usize % self.clusters.len();
                let key = key % self.keys;
                let before = self.pool.route_load(&key).healthy;
                let (cl, mcl) = &mut self.clusters[ci];
                let got = cl.set_health(&mut self.pool, &key, healthy, now);
                event(format!("set_health({healthy}) -> {got:?}"));
                if let Some(m) = self.model.as_mut() {
                    let want = mcl.set_health(m, key, healthy, now);
                    ensure!(
                        got == want,
                        "cluster {ci} set_health({key}, {healthy}): core {got:?}, model {want:?}"
                    );
                }
                self.after_health(key, before, healthy, got.is_ok());
            }
            Op::SetRatio { c, ratio_milli } => {
                if self.clusters.is_empty() {
                    return Ok(());
                }
                let ci = c as usize % self.clusters.len();
                let r = ratio_milli as f32 / 1000.0;
                let (cl, mcl) = &mut self.clusters[ci];
                let got = cl.set_predictive_ratio(r);
                let want = mcl.set_predictive_ratio(r);
                ensure!(
                    self.model.is_none() || got == want,
                    "cluster {ci} set_predictive_ratio({r}): core {got:?}, model {want:?}"
                );
            }
        }
        Ok(())
    }

    /// Give everything back, drain everything for deletion, run past every
    /// deadline, and check that the pool ends empty.
    pub fn finish(&mut self) -> Check {
        // Deliver whatever a trailing `Partial` left queued.
        self.next_limit = None;
        self.step(&Op::Advance { ms: 0 })?;
        // The no-demand phases of the properties (props.rs): leases held,
        // then every lease given back. Run without the model, the end phase
        // goes on to the end of time in between ("never" deadlines).
        self.no_demand("leases held", false)?;
        if self.end_of_time && !props::skipped("never") {
            self.step(&Op::Advance { ms: NEVER_MS })?;
        }
        self.no_demand("leases released", true)?;
        self.step(&Op::Drain {
            key: None,
            delete: true,
        })?;
        self.settle_all(10_000)?;
        self.step(&Op::Advance { ms: 100_000_000 })?;
        self.settle_all(10_000)?;
        let s = self.pool.stats();
        ensure!(
            s.connections == 0
                && s.connecting == 0
                && s.idle == 0
                && s.leased == 0
                && s.pending == 0,
            "pool not empty at the end: {s:?}"
        );
        ensure!(
            self.pool.is_closed(),
            "pool not closed after drain(All, DrainAndDelete)"
        );
        // Every route was deleted: each got its RouteIdle and its slot back.
        ensure!(
            s.routes == 0,
            "{} routes left after drain(All, DrainAndDelete)",
            s.routes
        );
        for k in 0..self.keys {
            ensure!(
                self.pool.route_stats(&k).is_none(),
                "route {k} still known at the end"
            );
        }
        for w in &self.waiters {
            ensure!(
                w.state != WState::Pending,
                "waiter {:?} never answered",
                w.id
            );
        }
        for (c, info) in &self.info {
            ensure!(info.closed, "conn {c:?} never closed");
            // `connect_tag` is `None` for a connection not connecting.
            let tag = self.pool.connect_tag(*c);
            ensure!(
                tag.is_none(),
                "connect_tag({c:?}) {tag:?} for a closed conn"
            );
        }
        let lease = self.pool.lease(&0, None, self.now, None);
        ensure!(
            lease == Err(wharf_core::LeaseError::Closed),
            "lease after close: {lease:?}"
        );
        if let Some(m) = self.model.as_mut() {
            let l = m.lease(0, None, self.now, None);
            ensure!(
                l == Err(wharf_core::LeaseError::Closed),
                "model lease after close: {l:?}"
            );
        }
        Ok(())
    }

    /// A no-demand phase for the properties (`props.rs`): no new lease; every
    /// connect is answered with success, every validation with alive, and time
    /// advances to each deadline, until nothing is outstanding and
    /// `poll_timeout()` is `None` or the phase's step budget is spent.
    /// `release`: first give every lease back (`settle_all`).
    fn no_demand(&mut self, label: &'static str, release: bool) -> Check {
        self.props.begin_phase(label);
        if release {
            // Under Miri every step is slow: a shorter budget for warm-up churn.
            self.settle_all(if cfg!(miri) { 40 } else { 400 })?;
        }
        let budget = if cfg!(miri) {
            self.props.phase_budget().min(20)
        } else {
            self.props.phase_budget()
        };
        let mut steps = 0;
        while steps < budget {
            if !self.connecting.is_empty() {
                self.step(&Op::Connected {
                    idx: 0,
                    cap: 1,
                    any: false,
                })?;
            } else if !self.validating.is_empty() {
                self.step(&Op::Validated {
                    idx: 0,
                    alive: true,
                    any: false,
                })?;
            } else {
                match self.pool.poll_timeout() {
                    Some(t) if t < Instant::MAX => self.step(&Op::AdvanceToTimer)?,
                    _ => break,
                }
            }
            steps += 1;
        }
        self.props.end_phase(&self.pool, self.drained, steps)
    }

    /// Answer every connect and validation and release every lease, until
    /// nothing is outstanding. Before the pool is closed, warm-up can churn
    /// forever (e.g. `min_idle` over all routes above `max_idle`: each connect
    /// closes an idle connection and warm-up opens another), so that phase
    /// stops after `budget` steps.
    fn settle_all(&mut self, budget: u64) -> Check {
        let start = self.steps;
        loop {
            if self.connecting.is_empty() && self.validating.is_empty() && self.leases.is_empty() {
                return Ok(());
            }
            if self.steps - start > budget {
                ensure!(
                    !self.pool.is_closed(),
                    "outstanding work never ends after close"
                );
                return Ok(());
            }
            if let Some(&c) = self.connecting.first() {
                self.step(&Op::Connected {
                    idx: 0,
                    cap: 1,
                    any: false,
                })?;
                ensure!(
                    self.connecting.first() != Some(&c),
                    "outstanding connect {c:?} refused"
                );
            } else if let Some(&c) = self.validating.first() {
                self.step(&Op::Validated {
                    idx: 0,
                    alive: true,
                    any: false,
                })?;
                ensure!(
                    self.validating.first() != Some(&c),
                    "outstanding validation {c:?} refused"
                );
            } else {
                self.step(&Op::Release {
                    idx: 0,
                    how: RelHow::Reuse {
                        keep_alive_ms: None,
                        tag: None,
                    },
                })?;
            }
        }
    }
}

/// Run one whole sequence. `with_model` selects differential mode.
pub fn run_sequence<'a, I: Index>(
    pool: Pool<'a, u8, I>,
    cfg: &Config,
    slots: Slots,
    model: Option<Model>,
    ops: &[Op],
    trace: bool,
) -> (u64, Check) {
    let extra = Extra {
        earlier: Vec::new(),
        other: None,
        slots,
        end_of_time: false,
        keys: KEYS,
        clusters: Vec::new(),
    };
    run_sequence_with(pool, cfg, model, ops, trace, extra)
}

/// What [`run_sequence_with`] needs beyond the pool and the sequence.
pub struct Extra<'a> {
    /// Leases of a pool built earlier in `pool`'s storage (§5).
    pub earlier: Vec<Lease>,
    /// A second pool (released by [`Op::ReleaseForeign`]).
    pub other: Option<Pool<'a, u8>>,
    /// The slots of `pool`'s storage (the properties' bounds).
    pub slots: Slots,
    /// The end phase goes on to `Instant::MAX` (the `never` property).
    pub end_of_time: bool,
    /// Route keys: `0..keys` ([`Size::keys`]).
    pub keys: u8,
    /// The cluster layer (none: the pool alone).
    pub clusters: Vec<ClusterSpec>,
}

/// [`run_sequence`] with leases of a pool built earlier in `pool`'s storage,
/// a second pool (released by [`Op::ReleaseForeign`]) and clusters.
pub fn run_sequence_with<'a, I: Index>(
    pool: Pool<'a, u8, I>,
    cfg: &Config,
    model: Option<Model>,
    ops: &[Op],
    trace: bool,
    extra: Extra<'a>,
) -> (u64, Check) {
    let end_of_time = extra.end_of_time;
    let mut h = Harness::new(pool, cfg.clone(), model);
    h.props.set_storage(extra.slots.conns);
    h.end_of_time = end_of_time;
    h.trace = trace;
    h.earlier = extra.earlier;
    h.other = extra.other;
    h.keys = extra.keys;
    for spec in &extra.clusters {
        if let Err(e) = h.add_cluster(spec) {
            return (0, Err(e));
        }
    }
    let first = h.compare_state();
    if first.is_err() {
        return (0, first);
    }
    // In the run to the end of time (core alone), whatever breaks only once
    // `now` reached `Instant::MAX` belongs to the `never` property (props.rs).
    let at_the_end = |h: &Harness<I>, e: String| {
        if h.end_of_time && h.pool.now() == Instant::MAX && !e.contains("property ") {
            format!("property never violated: when now reaches Instant::MAX: {e}")
        } else {
            e
        }
    };
    for op in ops {
        if let Err(e) = h.step(op) {
            let e = at_the_end(&h, e);
            return (h.steps, Err(format!("step {}: {op:?}: {e}", h.steps)));
        }
    }
    let c = *h.pool.counters();
    let r = h
        .finish()
        .map_err(|e| format!("end phase, step {}: {}", h.steps, at_the_end(&h, e)));
    if end_of_time {
        // Counted once, by the run compared with the model.
        return (h.steps, r);
    }
    let mut cover = COVERAGE.lock().unwrap();
    cover.0 += 1;
    let sum = &mut cover.1;
    sum.connects += c.connects;
    sum.preconnects += c.preconnects;
    sum.warmups += c.warmups;
    sum.guard_connects += c.guard_connects;
    sum.connected += c.connected;
    for i in 0..3 {
        sum.connect_failures[i] += c.connect_failures[i];
    }
    sum.grants += c.grants;
    sum.reuses += c.reuses;
    sum.validations += c.validations;
    sum.stale += c.stale;
    for i in 0..c.closes.len() {
        sum.closes[i] += c.closes[i];
    }
    sum.timeouts += c.timeouts;
    sum.overflows += c.overflows;
    sum.cancels += c.cancels;
    sum.queued += c.queued;
    (h.steps, r)
}

/// Sum of the core's counters over all sequences run (before their end
/// phase): a coverage summary (`WHARF_MODEL_COVERAGE=1`).
pub static COVERAGE: std::sync::Mutex<(u64, wharf_core::Counters)> = std::sync::Mutex::new((
    0,
    wharf_core::Counters {
        connects: 0,
        preconnects: 0,
        warmups: 0,
        guard_connects: 0,
        connected: 0,
        connect_failures: [0; 3],
        grants: 0,
        reuses: 0,
        validations: 0,
        stale: 0,
        closes: [0; wharf_core::CloseReason::ALL.len()],
        timeouts: 0,
        overflows: 0,
        cancels: 0,
        queued: 0,
    },
));

/// Named event counts over all sequences: the harness's and the cluster
/// model's, and the pool model's rare paths through its coverage hook
/// (`WHARF_MODEL_COVERAGE=1`, `WHARF_CLUSTER_MODEL_COVERAGE=1`).
pub static EVENTS: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

pub fn event(name: impl AsRef<str>) {
    let name = name.as_ref();
    let mut events = EVENTS.lock().unwrap();
    match events.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            events.insert(name.to_string(), 1);
        }
    }
}

/// Small storage: 4 connections, 2 routes (3 keys: the table fills), 4
/// waiters, 4 leases.
pub type Small = Storage<u8, 4, 2, 4, 4>;
pub const SMALL: Slots = Slots {
    conns: 4,
    routes: 2,
    waiters: 4,
    leases: 4,
};
/// Larger storage: 8 connections, 4 routes, 10 waiters, 10 leases, with
/// 16-bit indices (every other storage has the default `u32`), so every
/// sequence run exercises both index widths.
pub type Big = Storage<u8, 8, 4, 10, 10, u16>;
pub const BIG: Slots = Slots {
    conns: 8,
    routes: 4,
    waiters: 10,
    leases: 10,
};

/// Small storage for clusters: 4 connections, 3 routes (5 keys: the table
/// fills), 4 waiters, 4 leases.
pub type HostsSmall = Storage<u8, 4, 3, 4, 4>;
pub const HOSTS_SMALL: Slots = Slots {
    conns: 4,
    routes: 3,
    waiters: 4,
    leases: 4,
};
/// Larger storage for clusters: 8 connections, 5 routes, 10 waiters, 10
/// leases, 16-bit indices (as [`Big`]).
pub type HostsBig = Storage<u8, 8, 5, 10, 10, u16>;
pub const HOSTS_BIG: Slots = Slots {
    conns: 8,
    routes: 5,
    waiters: 10,
    leases: 10,
};

/// Storage sizes of the harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// [`SMALL`].
    Small,
    /// [`BIG`].
    Big,
    /// Exactly `n` connection slots (1 or 2), as many as `max_total` (which is
    /// lowered to `n` if needed): the storage `Storage` allows at its tightest.
    Tight(u8),
    /// [`HOSTS_SMALL`], with [`HOST_KEYS`] keys (clusters).
    HostsSmall,
    /// [`HOSTS_BIG`], with [`HOST_KEYS`] keys (clusters).
    HostsBig,
}

impl Size {
    /// The storage for clusters, small or big.
    pub fn hosts(big: bool) -> Size {
        if big {
            Size::HostsBig
        } else {
            Size::HostsSmall
        }
    }

    pub fn slots(self) -> Slots {
        match self {
            Size::Small => SMALL,
            Size::Big => BIG,
            Size::Tight(n) => Slots {
                conns: if n <= 1 { 1 } else { 2 },
                ..SMALL
            },
            Size::HostsSmall => HOSTS_SMALL,
            Size::HostsBig => HOSTS_BIG,
        }
    }

    /// The route keys a sequence on this storage uses: `0..keys()`.
    pub fn keys(self) -> u8 {
        match self {
            Size::HostsSmall | Size::HostsBig => HOST_KEYS,
            _ => KEYS,
        }
    }
}

/// Tight storages (`Size::Tight`): 1 or 2 connections, otherwise as `Small`.
pub type Tight1 = Storage<u8, 1, 2, 4, 4>;
pub type Tight2 = Storage<u8, 2, 2, 4, 4>;
/// The second pool's storage (§5 foreign leases): 2 connections, 1 route, 2
/// waiters, 2 leases.
pub type Other = Storage<u8, 2, 1, 2, 2>;

/// Run one sequence on a fresh pool; returns operations run and the verdict.
pub fn run_case(
    big: bool,
    cfg: &Cfg,
    ops: &[Op],
    with_model: bool,
    trace: bool,
) -> (u64, Result<(), String>) {
    let size = if big { Size::Big } else { Size::Small };
    run_case_in(size, cfg, ops, with_model, trace)
}

/// As [`run_case`] with any storage size. With the model, the sequence runs
/// twice: compared with the model, then the core alone with the end phase
/// going on to `Instant::MAX` in between its no-demand phases (the "never"
/// property of `props.rs`; the first run's end phase stays at finite times).
pub fn run_case_in(
    size: Size,
    cfg: &Cfg,
    ops: &[Op],
    with_model: bool,
    trace: bool,
) -> (u64, Result<(), String>) {
    let (n, r) = run_storage(size, cfg, &[], ops, with_model, trace, !with_model);
    if r.is_err() || !with_model || props::skipped("never") {
        return (n, r);
    }
    let (_, r) = run_storage(size, cfg, &[], ops, false, trace, true);
    (
        n,
        r.map_err(|e| format!("core alone, to the end of time: {e}")),
    )
}

/// One sequence on a fresh pool with the cluster layer: `clusters` are built
/// (core and [`MCluster`]) before the first operation, on the storage for
/// clusters ([`Size::hosts`], [`HOST_KEYS`] keys). It runs once: the run of
/// the core alone to `Instant::MAX` is the pool's ([`run_case_in`]); without
/// the model the end phase goes on to `Instant::MAX` as there.
pub fn run_cluster_case(
    big: bool,
    cfg: &Cfg,
    clusters: &[ClusterSpec],
    ops: &[Op],
    with_model: bool,
    trace: bool,
) -> (u64, Result<(), String>) {
    let size = Size::hosts(big);
    run_storage(size, cfg, clusters, ops, with_model, trace, !with_model)
}

fn run_storage(
    size: Size,
    cfg: &Cfg,
    clusters: &[ClusterSpec],
    ops: &[Op],
    with_model: bool,
    trace: bool,
    end_of_time: bool,
) -> (u64, Result<(), String>) {
    // The model reports its rare paths through this hook (coverage; counting
    // costs a lock per event, so only when asked for).
    if std::env::var_os("WHARF_MODEL_COVERAGE").is_some()
        || std::env::var_os("WHARF_CLUSTER_MODEL_COVERAGE").is_some()
    {
        let _ = super::model::COVERAGE.set(|what| event(what));
    }
    let slots = size.slots();
    let mut config = cfg.to_config();
    config.max_total = config.max_total.min(slots.conns as u32);
    // A pool built earlier in the same storage leaves leases behind that the
    // pool of the sequence did not make (§5), if the sequence releases any.
    let foreign = ops.iter().any(|op| matches!(op, Op::ReleaseForeign { .. }));
    let start = Instant::from_millis(1_000);
    let mut other_storage: Box<Other> = Box::new(Storage::new());
    let other = foreign.then(|| {
        let cfg = Config {
            max_total: 2,
            max_per_route: 2,
            ..Config::default()
        };
        Pool::new(&mut other_storage, cfg).expect("the other pool")
    });
    // A generic function, not a closure: the storages differ in index width.
    #[allow(clippy::too_many_arguments)]
    fn run<I: Index>(
        pool: Pool<'_, u8, I>,
        earlier: Vec<Lease>,
        other: Option<Pool<'_, u8>>,
        ctx: (&Config, Slots, bool, bool, Size, &[ClusterSpec]),
        ops: &[Op],
        trace: bool,
    ) -> (u64, Check) {
        let (config, slots, with_model, end_of_time, size, clusters) = ctx;
        let c = pool.capacity();
        if (c.conns, c.routes, c.waiters, c.leases)
            != (slots.conns, slots.routes, slots.waiters, slots.leases)
        {
            return (0, Err(format!("Pool::capacity {c:?}, storage {slots:?}")));
        }
        let model = with_model.then(|| Harness::<I>::model_for(config, slots));
        let extra = Extra {
            earlier,
            other,
            slots,
            end_of_time,
            keys: size.keys(),
            clusters: clusters.to_vec(),
        };
        run_sequence_with(pool, config, model, ops, trace, extra)
    }
    macro_rules! run_in {
        ($storage:ty) => {{
            let mut storage: Box<$storage> = Box::new(Storage::new());
            // A configuration the core refuses must be refused by the model
            // with the same error (§4 `NeverServes`, §2 `BadJitter`, ...);
            // then there is nothing to run.
            let core = Pool::new(&mut storage, config.clone()).map(|_| ());
            if with_model {
                let model = Model::new(config.clone(), slots).map(|_| ());
                if core != model {
                    return (0, Err(format!("Pool::new: core {core:?}, model {model:?}")));
                }
            }
            if let Err(e) = core {
                super::model::event(&format!("harness: configuration refused: {e:?}"));
                return (0, Ok(()));
            }
            let mut earlier = Vec::new();
            if foreign {
                let mut p = Pool::new(&mut storage, config.clone()).expect("valid config");
                earlier = Harness::<u32>::leases_of(&mut p, start);
            }
            run(
                Pool::new(&mut storage, config.clone()).expect("valid config"),
                earlier,
                other,
                (&config, slots, with_model, end_of_time, size, clusters),
                ops,
                trace,
            )
        }};
    }
    match size {
        Size::Big => run_in!(Big),
        Size::Small => run_in!(Small),
        Size::Tight(n) if n <= 1 => run_in!(Tight1),
        Size::Tight(_) => run_in!(Tight2),
        Size::HostsSmall => run_in!(HostsSmall),
        Size::HostsBig => run_in!(HostsBig),
    }
}

/// `WHARF_MODEL_AVOID` (comma-separated) steers generation away from a rule,
/// e.g. past an already-reported divergence, so a run can look for new ones:
/// `cf-timeout` (connect_failed with reason Timeout), `ratio0` (ratio 0,
/// §12), `never` (`Instant::MAX` deadlines, saturating timeouts and inputs at
/// `now == Instant::MAX`, §2), `keep` (`min_idle`, §2), `mlpc`
/// (`max_leases_per_conn`, §1), `idle-limit` (idle limits, §3.2). See also
/// [`avoid_cfg`].
pub fn avoid(op: Op, list: &str) -> Op {
    let has = |k: &str| list.split(',').any(|x| x.trim() == k);
    match op {
        Op::ConnectFailed { idx, reason, any } if has("cf-timeout") && reason % 3 == 0 => {
            Op::ConnectFailed {
                idx,
                reason: 1,
                any,
            }
        }
        Op::Lease {
            key,
            tag,
            deadline_ms: Some(NEVER_MS),
        } if has("never") => Op::Lease {
            key,
            tag,
            deadline_ms: None,
        },
        Op::Release {
            idx,
            how:
                RelHow::Reuse {
                    keep_alive_ms: Some(NEVER_MS),
                    tag,
                },
        } if has("never") => Op::Release {
            idx,
            how: RelHow::Reuse {
                keep_alive_ms: None,
                tag,
            },
        },
        Op::Advance { ms: NEVER_MS } if has("never") => Op::Advance { ms: 0 },
        Op::RouteConfig {
            key,
            limit,
            min_idle,
            ratio_milli,
        } if has("ratio0") || has("keep") => Op::RouteConfig {
            key,
            limit,
            min_idle: if has("keep") { None } else { min_idle },
            ratio_milli: match ratio_milli {
                Some(0) if has("ratio0") => Some(1000),
                r => r,
            },
        },
        op => op,
    }
}

/// The configuration side of [`avoid`].
pub fn avoid_cfg(mut cfg: Cfg, list: &str) -> Cfg {
    let has = |k: &str| list.split(',').any(|x| x.trim() == k);
    if has("ratio0") && cfg.ratio_milli == 0 {
        cfg.ratio_milli = 1000;
    }
    if has("never") {
        for t in [
            &mut cfg.connect_timeout_ms,
            &mut cfg.idle_timeout_ms,
            &mut cfg.max_lifetime_ms,
        ] {
            if *t == Some(NEVER_MS) {
                *t = None;
            }
        }
        if cfg.retry_backoff_ms == NEVER_MS {
            cfg.retry_backoff_ms = 1000;
        }
    }
    if has("keep") {
        cfg.min_idle = 0;
    }
    if has("mlpc") {
        cfg.max_leases_per_conn = None;
    }
    if has("idle-limit") {
        cfg.max_idle_per_route = None;
        cfg.max_idle = None;
    }
    cfg
}
