//! # wharf-embassy
//!
//! A connection pool over an [`embassy_net::Stack`], driven by the sans-I/O
//! [`wharf_core`] state machine. No heap: the core's storage, every socket's
//! receive and transmit buffer and all bookkeeping live in one [`State`] the
//! application provides (a `static` through `StaticCell`, sized by const
//! generics, as embassy-net's `TcpClientState`).
//!
//! - [`new`] returns a [`Pool`] handle (`Copy`, share it between tasks) and a
//!   [`Runner`] the application spawns (embassy's convention). The runner
//!   drives the core's timers, opens connections (preconnect and warm-up
//!   included), and closes them; connects for different slots proceed
//!   concurrently.
//! - [`Pool::lease`] waits for a connection of a [`Route`] and returns a
//!   [`Lease`]: an `embedded-io-async` `Read`/`Write`/`ReadReady`/`WriteReady`
//!   stream. Dropped, it goes back to the pool (or is closed if it is no longer
//!   healthy); [`Lease::discard`] closes it with a RST.
//! - The pool never has more than `N` sockets in the stack's socket set (a full
//!   smoltcp socket set panics): size `StackResources` for `N` plus the DNS
//!   socket plus the application's own sockets.
//! - Closing sends the FIN (`close()` + `flush()`), or a RST on discard
//!   (`abort()` + `flush()`), before the socket is freed. The core's
//!   `connect_timeout` bounds connects (embassy-net's connect can wait forever).
//! - Routes by IP endpoint or by host name (resolved through the stack's DNS;
//!   IP literals are parsed without a query).
//! - Clusters: [`Pool::lease_cluster`] leases through a [`Cluster`] (the
//!   core's `Cluster<Route, HOSTS>`: up to `HOSTS` hosts, each a [`Route`],
//!   with a [`Balancer`] and optional predictive preconnect) and returns the
//!   same [`Lease`] as a route lease ([`Lease::route`] tells the host). The
//!   cluster's part (preconnect, host pick, lease on the host's route) runs
//!   when the method is called, under the pool's lock; the returned future
//!   only waits, cancel-safe like a route lease. [`Pool::remove_host`] drains
//!   a host, [`Pool::set_host_health`] marks one (un)healthy; cluster failures
//!   are [`Error::Cluster`].
//!
//! All of it is single-threaded (the stack is `!Send`): run the runner and the
//! lease users on the same executor.
//!
//! ```text
//! static STATE: StaticCell<wharf_embassy::State<4, 4, 2, 1024, 1024>> = StaticCell::new();
//! let config = Config { max_total: 4, ..Config::default() };
//! let (pool, runner) = wharf_embassy::new(stack, STATE.init_with(State::new), config)?;
//! spawner.spawn(pool_task(runner))?;
//! let mut conn = pool.lease(&Route::host("broker.local", 1883)).await?;
//! conn.write_all(b"...").await?;
//!
//! // Two hosts in turn, connections opened ahead (ratio 1.5):
//! let mut cluster: Cluster<2> = Cluster::new(Balancer::RoundRobin);
//! cluster.add_host(Route::ip(Ipv4Address::new(10, 0, 0, 2), 80))?;
//! cluster.add_host(Route::ip(Ipv4Address::new(10, 0, 0, 3), 80))?;
//! cluster.set_predictive_ratio(1.5)?;
//! let mut conn = pool.lease_cluster(&mut cluster).await?; // 10.0.0.2
//! let other = pool.lease_cluster(&mut cluster).await?;    // 10.0.0.3
//! ```

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod fmt;

use core::cell::RefCell;
use core::future::{poll_fn, Future};
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::task::{Context, Poll, Waker};

use embassy_futures::select::{select, Either};
use embassy_net::dns::DnsQueryType;
use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_net::{IpAddress, IpEndpoint, Stack};
use embassy_time::{with_timeout, Timer};
use wharf_core::{
    Action, CancelPolicy, ConnId, LeaseOutcome, Release, Storage, Validation, WaiterId,
};

pub use wharf_core::{
    Balancer, CloseReason, ClusterError, Config, ConfigError, ConnectFailure, Counters, DrainMode,
    Duration, FailReason, Instant, PoolStats, RouteConfig, RouteError, RouteStats, Tag,
};

use fmt::{debug, warning};

/// The core pool type this backend drives, keyed by [`Route`].
pub type CorePool<'d> = wharf_core::Pool<'d, Route>;

/// A cluster of up to `HOSTS` hosts (each a [`Route`]) with a [`Balancer`]:
/// the core's [`wharf_core::Cluster`], a plain value the application keeps
/// beside the pool (in a task, or a `static` behind a `RefCell`/mutex) and
/// lends to [`Pool::lease_cluster`], [`Pool::remove_host`] and
/// [`Pool::set_host_health`]. Add hosts with `Cluster::add_host` and set the
/// predictive preconnect ratio with `Cluster::set_predictive_ratio` directly:
/// they do not touch the pool.
pub type Cluster<const HOSTS: usize> = wharf_core::Cluster<Route, HOSTS>;

/// Where a pooled connection goes: an IP endpoint, or a host name resolved
/// through the stack's DNS when a connection is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Route {
    /// An IP address and port.
    Ip(IpEndpoint),
    /// A host name (or an IP literal, parsed without a query) and a port.
    /// Names are `&'static str`: firmware keeps them in flash; a name built at
    /// run time can be given a `'static` home with `StaticCell`.
    Host {
        /// The name.
        name: &'static str,
        /// The TCP port.
        port: u16,
    },
}

impl Route {
    /// A route to an IP endpoint.
    pub fn ip(addr: impl Into<IpAddress>, port: u16) -> Route {
        Route::Ip(IpEndpoint::new(addr.into(), port))
    }
    /// A route to a host name (resolved with an `A` query).
    pub const fn host(name: &'static str, port: u16) -> Route {
        Route::Host { name, port }
    }
}

/// Why a lease failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// Too many pending lease requests (`max_pending` / the state's waiter
    /// slots) or leases in use (`max_leases`): answered at once, never queued.
    Overflow,
    /// Every route slot of the state is taken by another route.
    RouteTableFull,
    /// The route is being drained for deletion.
    Draining,
    /// The pool was drained for deletion as a whole.
    Closed,
    /// The lease's deadline passed before a connection was free.
    Timeout,
    /// A connect for the route failed (refused, no route, DNS, or timed out);
    /// every request queued on the route fails with it.
    ConnectFailed(ConnectFailure),
    /// A cluster call failed for a reason of the cluster itself:
    /// [`ClusterError::NoHosts`] (lease through an empty cluster) or
    /// [`ClusterError::UnknownHost`] (removing or marking a host that is not
    /// in the cluster). Never [`ClusterError::Lease`]: a lease that fails on
    /// the picked host reports the variant a route lease would
    /// ([`Error::Overflow`], [`Error::Draining`], ...).
    Cluster(ClusterError),
}

impl From<ClusterError> for Error {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Lease(e) => e.into(),
            e => Error::Cluster(e),
        }
    }
}

impl From<wharf_core::LeaseError> for Error {
    fn from(e: wharf_core::LeaseError) -> Self {
        use wharf_core::LeaseError as E;
        match e {
            E::Overflow => Error::Overflow,
            E::RouteTableFull => Error::RouteTableFull,
            E::Draining => Error::Draining,
            E::Closed => Error::Closed,
            E::Timeout => Error::Timeout,
        }
    }
}

impl From<FailReason> for Error {
    fn from(e: FailReason) -> Self {
        match e {
            FailReason::Timeout => Error::Timeout,
            FailReason::ConnectFailed(f) => Error::ConnectFailed(f),
            FailReason::Overflow => Error::Overflow,
            FailReason::Draining => Error::Draining,
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Overflow => f.write_str("pool overflow"),
            Error::RouteTableFull => f.write_str("route table full"),
            Error::Draining => f.write_str("route is draining"),
            Error::Closed => f.write_str("pool is closed"),
            Error::Timeout => f.write_str("lease timed out"),
            Error::ConnectFailed(r) => write!(f, "connect failed: {r:?}"),
            Error::Cluster(e) => write!(f, "cluster: {e}"),
        }
    }
}

impl core::error::Error for Error {}

/// Options of one lease request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LeaseOptions {
    /// State to match (see [`Tag`]): prefer a connection with this tag, else an
    /// untagged one.
    pub tag: Option<Tag>,
    /// Give up with [`Error::Timeout`] after this long.
    pub timeout: Option<Duration>,
}

/// Socket settings of the backend (the pool's behaviour is in [`Config`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Options {
    /// How long a close may wait for its FIN to be acknowledged (or its RST to
    /// be sent) before the socket is freed anyway (default 2 s).
    pub close_timeout: embassy_time::Duration,
    /// TCP keep-alive interval set on every socket (default none).
    pub keep_alive: Option<embassy_time::Duration>,
    /// smoltcp's socket timeout: a connection whose peer stops answering for
    /// this long is reset (default none).
    pub socket_timeout: Option<embassy_time::Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            close_timeout: embassy_time::Duration::from_secs(2),
            keep_alive: None,
            socket_timeout: None,
        }
    }
}

// ---------------------------------------------------------------------------
// State

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum SlotState {
    /// No socket; the buffers are free.
    Free,
    /// Opening a connection for `conn` (the worker owns the socket).
    Connecting {
        conn: ConnId,
        route: Route,
        started: bool,
        abort: bool,
    },
    /// An open connection: the socket is in `Slot::socket` (idle) or lent to a
    /// [`Lease`].
    Open { conn: ConnId },
    /// Sending FIN/RST (the worker owns the socket once started).
    Closing { rst: bool, started: bool },
}

struct Slot<'d> {
    state: SlotState,
    socket: Option<TcpSocket<'d>>,
    waker: Option<Waker>,
    /// The next close of this slot's connection sends a RST (explicit discard).
    rst: bool,
}

impl<'d> Slot<'d> {
    const EMPTY: Slot<'d> = Slot {
        state: SlotState::Free,
        socket: None,
        waker: None,
        rst: false,
    };
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TicketState {
    Free,
    Waiting(WaiterId),
    Answered(WaiterId, Result<wharf_core::Lease, FailReason>),
}

/// Where the answer to one queued lease request waits for its future. Kept
/// apart from the core's waiter slots, which are reused as soon as the answer
/// is polled.
struct Ticket {
    state: TicketState,
    waker: Option<Waker>,
}

impl Ticket {
    const EMPTY: Ticket = Ticket {
        state: TicketState::Free,
        waker: None,
    };
}

/// Everything a pool needs, sized by const generics: `N` connection slots
/// (sockets, each with a `RX`-byte receive and `TX`-byte transmit buffer),
/// `W` waiter slots (pending lease requests), `R` route slots.
///
/// `Config::max_total` must be at most `N`; lease slots are `N` (one lease per
/// connection: plain TCP streams). Put it in a `static`:
/// `StaticCell<State<N, W, R, TX, RX>>` initialised with
/// `init_with(State::new)` keeps it in `.bss` (a `ConstStaticCell` works too
/// but puts all of it in `.data`, buffers included). Any place that outlives
/// the stack borrow works; like embassy-net's `StackResources`, the sockets it
/// holds are not dropped with it: they stay in the stack's socket set, so give
/// a new pool a new stack too.
pub struct State<const N: usize, const W: usize, const R: usize, const TX: usize, const RX: usize> {
    storage: Storage<Route, N, R, W, N>,
    conn_slot: [Option<(ConnId, u16)>; N],
    pending: [Option<(ConnId, Route)>; N],
    tickets: [Ticket; W],
    ticket_of: [u16; W],
    rx: [[u8; RX]; N],
    tx: [[u8; TX]; N],
    // Hold values that borrow the stack for 'd; written by `new` (so the state
    // itself has no lifetime and no drop glue, as `StackResources`).
    slots: MaybeUninit<[Slot<'static>; N]>,
    shared: MaybeUninit<Shared<'static>>,
}

impl<const N: usize, const W: usize, const R: usize, const TX: usize, const RX: usize>
    State<N, W, R, TX, RX>
{
    /// Empty state; `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        State {
            storage: Storage::new(),
            conn_slot: [None; N],
            pending: [None; N],
            tickets: [const { Ticket::EMPTY }; W],
            ticket_of: [u16::MAX; W],
            rx: [[0; RX]; N],
            tx: [[0; TX]; N],
            slots: MaybeUninit::uninit(),
            shared: MaybeUninit::uninit(),
        }
    }
}

// SAFETY: a `State` that can be moved (not borrowed by a pool) holds plain
// data, and in its `MaybeUninit` fields either nothing or the leftovers of a
// pool whose borrow has ended, which are never read or dropped again (`new`
// overwrites them). The `!Send` values (stack handle, sockets, wakers) are
// only used through the `Pool`/`Runner`/`Lease` handles, which are `!Send`.
// This lets the state live in a `static` (`StaticCell` needs `Send`).
unsafe impl<const N: usize, const W: usize, const R: usize, const TX: usize, const RX: usize> Send
    for State<N, W, R, TX, RX>
{
}

impl<const N: usize, const W: usize, const R: usize, const TX: usize, const RX: usize> Default
    for State<N, W, R, TX, RX>
{
    fn default() -> Self {
        Self::new()
    }
}

struct Shared<'d> {
    inner: RefCell<Inner<'d>>,
}

struct Inner<'d> {
    pool: CorePool<'d>,
    stack: Stack<'d>,
    opts: Options,
    slots: &'d mut [Slot<'d>],
    conn_slot: &'d mut [Option<(ConnId, u16)>],
    pending: &'d mut [Option<(ConnId, Route)>],
    tickets: &'d mut [Ticket],
    ticket_of: &'d mut [u16],
    /// Base of `N` receive buffers of `rx_len` bytes each (and the same for
    /// transmit). Slot `j`'s buffers are lent to at most one socket at a time:
    /// the one created by the worker of slot `j` while the slot is not `Free`.
    rx: *mut u8,
    rx_len: usize,
    tx: *mut u8,
    tx_len: usize,
    timer_waker: Option<Waker>,
    armed: Option<Instant>,
    kicked: bool,
}

/// Creates a pool over `stack` in `state`, with the core's `config` and
/// default [`Options`].
///
/// Fails if `config` is invalid for the state's sizes (e.g. `max_total > N`).
pub fn new<'d, const N: usize, const W: usize, const R: usize, const TX: usize, const RX: usize>(
    stack: Stack<'d>,
    state: &'d mut State<N, W, R, TX, RX>,
    config: Config,
) -> Result<(Pool<'d>, Runner<'d, N>), ConfigError> {
    new_with_options(stack, state, config, Options::default())
}

/// [`new`] with socket [`Options`].
pub fn new_with_options<
    'd,
    const N: usize,
    const W: usize,
    const R: usize,
    const TX: usize,
    const RX: usize,
>(
    stack: Stack<'d>,
    state: &'d mut State<N, W, R, TX, RX>,
    config: Config,
    opts: Options,
) -> Result<(Pool<'d>, Runner<'d, N>), ConfigError> {
    if N > u16::MAX as usize || W > u16::MAX as usize {
        return Err(ConfigError::BadStorage);
    }
    let State {
        storage,
        slots,
        conn_slot,
        pending,
        tickets,
        ticket_of,
        rx,
        tx,
        shared,
    } = state;
    let pool = wharf_core::Pool::new(storage, config)?;
    // A state can serve again once an earlier pool's borrow has ended.
    conn_slot.fill(None);
    pending.fill(None);
    tickets.iter_mut().for_each(|t| *t = Ticket::EMPTY);
    ticket_of.fill(u16::MAX);
    let slots: &'d mut [Slot<'d>] = {
        let base = slots.as_mut_ptr().cast::<Slot<'d>>();
        for j in 0..N {
            // SAFETY: `base` points to `N` slots' worth of memory, borrowed
            // exclusively for 'd; `Slot<'static>` and `Slot<'d>` have the same
            // layout. Whatever an earlier pool left there is overwritten, never
            // dropped (its stack borrow has ended).
            unsafe { base.add(j).write(Slot::EMPTY) };
        }
        // SAFETY: all `N` slots were just initialised.
        unsafe { core::slice::from_raw_parts_mut(base, N) }
    };
    let inner = Inner {
        pool,
        stack,
        opts,
        slots,
        conn_slot,
        pending,
        tickets,
        ticket_of,
        rx: rx.as_mut_ptr().cast::<u8>(),
        rx_len: RX,
        tx: tx.as_mut_ptr().cast::<u8>(),
        tx_len: TX,
        timer_waker: None,
        armed: None,
        kicked: false,
    };
    let shared: &'d Shared<'d> = {
        let p = shared.as_mut_ptr().cast::<Shared<'d>>();
        // SAFETY: as for the slots: exclusive for 'd, same layout, never dropped.
        unsafe {
            p.write(Shared {
                inner: RefCell::new(inner),
            });
            &*p
        }
    };
    Ok((
        Pool { shared },
        Runner {
            shared,
            _slots: PhantomData,
        },
    ))
}

fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

/// The first tick at or after `t` (rounding down would wake the timer task
/// before the deadline, and it would spin until the clock reaches it).
fn to_embassy(t: Instant) -> embassy_time::Instant {
    const HZ: u64 = embassy_time::TICK_HZ;
    let ticks = if HZ <= 1_000_000 && 1_000_000 % HZ == 0 {
        // The usual tick rates (1 MHz, 1 kHz, ...): no 128-bit division.
        t.as_micros().div_ceil(1_000_000 / HZ)
    } else {
        let ticks = (u128::from(t.as_micros()) * u128::from(HZ)).div_ceil(1_000_000);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    };
    embassy_time::Instant::from_ticks(ticks)
}

fn set_waker(slot: &mut Option<Waker>, w: &Waker) {
    match slot {
        Some(old) if old.will_wake(w) => {}
        _ => *slot = Some(w.clone()),
    }
}

enum Job<'d> {
    Connect { conn: ConnId, route: Route },
    Close { socket: TcpSocket<'d>, rst: bool },
}

impl<'d> Inner<'d> {
    /// Drains the core's actions (the rule after every input) and wakes the
    /// timer task if the next deadline moved earlier.
    fn pump(&mut self, now: Instant) {
        while let Some(action) = self.pool.poll_action() {
            match action {
                Action::Connect { conn, route } => {
                    let Some(key) = self.pool.route_key(route).copied() else {
                        warning!("connect for an unknown route {:?}", route);
                        continue;
                    };
                    debug!("connect {:?} to {:?}", conn, key);
                    self.start_connect(conn, key);
                }
                Action::Close { conn, reason } => {
                    debug!("close {:?}: {:?}", conn, reason);
                    self.close_conn(conn, reason);
                }
                Action::Validate { conn } => {
                    let result = if self.is_alive(conn) {
                        Validation::Alive
                    } else {
                        Validation::Stale
                    };
                    debug!("validate {:?}: {:?}", conn, result);
                    // An input in the middle of the drain: its actions join this loop.
                    if let Err(e) = self.pool.validated(conn, result, now) {
                        warning!("validated({:?}) refused: {:?}", conn, e);
                    }
                }
                Action::Granted { waiter, lease } => self.answer(waiter, Ok(lease), now),
                Action::Failed { waiter, reason } => self.answer(waiter, Err(reason), now),
                Action::RouteIdle { .. } => {}
            }
        }
        let next = self.pool.poll_timeout();
        if let Some(t) = next {
            if self.armed.is_none_or(|a| t < a) && !self.kicked {
                self.kicked = true;
                if let Some(w) = self.timer_waker.take() {
                    w.wake();
                }
            }
        }
    }

    fn slot_of(&self, conn: ConnId) -> Option<usize> {
        match self.conn_slot.get(conn.index()) {
            Some(Some((c, j))) if *c == conn => Some(*j as usize),
            _ => None,
        }
    }

    fn start_connect(&mut self, conn: ConnId, route: Route) {
        if let Some(j) = self.slots.iter().position(|s| s.state == SlotState::Free) {
            self.assign(j, conn, route);
        } else if let Some(p) = self.pending.iter_mut().find(|p| p.is_none()) {
            // Every socket slot is busy finishing a close: start when one frees.
            *p = Some((conn, route));
        } else {
            // Cannot happen: pending connects are live core connections, at most N.
            warning!("no room for connect {:?}", conn);
        }
    }

    fn assign(&mut self, j: usize, conn: ConnId, route: Route) {
        self.conn_slot[conn.index()] = Some((conn, j as u16));
        let slot = &mut self.slots[j];
        slot.state = SlotState::Connecting {
            conn,
            route,
            started: false,
            abort: false,
        };
        slot.rst = false;
        slot.wake();
    }

    /// Slot `j`'s socket has been dropped: hand it to the oldest pending connect.
    fn slot_freed(&mut self, j: usize) {
        self.slots[j].state = SlotState::Free;
        if let Some((conn, route)) = self.pending[0].take() {
            self.pending.rotate_left(1);
            self.assign(j, conn, route);
        }
    }

    fn close_conn(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| matches!(p, Some((c, _)) if *c == conn))
        {
            self.pending[i] = None;
            self.pending[i..].rotate_left(1);
            return;
        }
        let Some(j) = self.slot_of(conn) else {
            warning!("close for unknown {:?}", conn);
            return;
        };
        self.conn_slot[conn.index()] = None;
        let slot = &mut self.slots[j];
        match &mut slot.state {
            SlotState::Connecting { abort, .. } => *abort = true,
            SlotState::Open { .. } if slot.socket.is_some() => {
                let rst = slot.rst || reason == CloseReason::ConnectTimeout;
                slot.state = SlotState::Closing {
                    rst,
                    started: false,
                };
            }
            other => {
                // The core closes only connections without a lease.
                warning!("close of {:?} in state {:?}", conn, other);
                return;
            }
        }
        slot.wake();
    }

    fn is_alive(&self, conn: ConnId) -> bool {
        let Some(j) = self.slot_of(conn) else {
            return false;
        };
        match &self.slots[j].socket {
            Some(s) => healthy(s),
            None => false,
        }
    }

    fn answer(
        &mut self,
        waiter: WaiterId,
        result: Result<wharf_core::Lease, FailReason>,
        now: Instant,
    ) {
        let t = self
            .ticket_of
            .get(waiter.index())
            .copied()
            .unwrap_or(u16::MAX) as usize;
        match self.tickets.get_mut(t) {
            Some(ticket) if ticket.state == TicketState::Waiting(waiter) => {
                ticket.state = TicketState::Answered(waiter, result);
                if let Some(w) = ticket.waker.take() {
                    w.wake();
                }
            }
            _ => {
                // Nobody waits for it (cannot happen: cancel withdraws answers).
                warning!("answer for unknown waiter {:?}", waiter);
                if let Ok(lease) = result {
                    let _ = self.pool.release(lease, Release::REUSE, now);
                }
            }
        }
    }

    fn take_job(&mut self, j: usize, cx: &mut Context<'_>) -> Poll<Job<'d>> {
        let slot = &mut self.slots[j];
        match &mut slot.state {
            SlotState::Connecting {
                abort: true,
                started: false,
                ..
            } => {
                // Given up before it started: nothing to abort.
                self.slot_freed(j);
                self.take_job(j, cx)
            }
            SlotState::Connecting {
                conn,
                route,
                started,
                ..
            } if !*started => {
                *started = true;
                Poll::Ready(Job::Connect {
                    conn: *conn,
                    route: *route,
                })
            }
            SlotState::Closing { rst, started } if !*started => {
                *started = true;
                let rst = *rst;
                match slot.socket.take() {
                    Some(socket) => Poll::Ready(Job::Close { socket, rst }),
                    None => {
                        // Cannot happen: the core closes only idle connections,
                        // whose socket is in the slot. Keep the slot busy (its
                        // buffers may still be in use) rather than free it.
                        warning!("close of slot {:?} without its socket", j);
                        set_waker(&mut slot.waker, cx.waker());
                        Poll::Pending
                    }
                }
            }
            _ => {
                set_waker(&mut slot.waker, cx.waker());
                Poll::Pending
            }
        }
    }

    fn poll_abort(&mut self, j: usize, conn: ConnId, cx: &mut Context<'_>) -> Poll<()> {
        let slot = &mut self.slots[j];
        match slot.state {
            SlotState::Connecting {
                conn: c,
                abort: false,
                ..
            } if c == conn => {
                set_waker(&mut slot.waker, cx.waker());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// # Safety
    /// Slot `j` must be `Connecting` and its worker must not hold another
    /// socket on these buffers (the previous one was dropped before the slot
    /// became `Free`).
    unsafe fn buffers(&self, j: usize) -> (&'d mut [u8], &'d mut [u8]) {
        debug_assert!(j < self.slots.len());
        // SAFETY: `rx`/`tx` come from `&'d mut [[u8; LEN]; N]` borrowed for 'd
        // and used only here; slot `j`'s ranges are disjoint from every other
        // slot's, and the caller guarantees no other live socket uses them.
        unsafe {
            (
                core::slice::from_raw_parts_mut(self.rx.add(j * self.rx_len), self.rx_len),
                core::slice::from_raw_parts_mut(self.tx.add(j * self.tx_len), self.tx_len),
            )
        }
    }
}

/// A socket that can be handed out (or kept): established, and nothing unread.
fn healthy(s: &TcpSocket<'_>) -> bool {
    s.state() == embassy_net::tcp::State::Established && !s.can_recv()
}

// ---------------------------------------------------------------------------
// Pool handle

/// A handle to the pool: `Copy`, share it between the tasks of one executor.
#[derive(Clone, Copy)]
pub struct Pool<'d> {
    shared: &'d Shared<'d>,
}

impl<'d> Pool<'d> {
    /// Leases a connection of `route`, waiting for one if needed.
    pub async fn lease(&self, route: &Route) -> Result<Lease<'d>, Error> {
        self.lease_with(route, LeaseOptions::default()).await
    }

    /// Leases a connection with a tag and/or a timeout.
    ///
    /// Cancel-safe: dropping the future withdraws the request (and gives back a
    /// connection granted but not yet picked up).
    pub async fn lease_with(&self, route: &Route, opts: LeaseOptions) -> Result<Lease<'d>, Error> {
        let deadline = opts.timeout.map(|d| now() + d);
        // A connection found dead when it is handed out (the peer closed it
        // while it was idle and no validation was due) is closed and the
        // request tried again; each try closes one, so this ends.
        let tries = self.shared.inner.borrow().slots.len() + 2;
        for _ in 0..tries {
            if let Some(lease) = self.lease_once(route, opts.tag, deadline).await? {
                return Ok(lease);
            }
        }
        Err(Error::ConnectFailed(ConnectFailure::Remote))
    }

    async fn lease_once(
        &self,
        route: &Route,
        tag: Option<Tag>,
        deadline: Option<Instant>,
    ) -> Result<Option<Lease<'d>>, Error> {
        let started =
            self.start(|pool, now| pool.lease(route, tag, now, deadline).map_err(Error::from))?;
        started.finish().await
    }

    /// The synchronous part of a lease: takes an answer ticket, asks the core
    /// (`ask`, under the lock) and pumps. A grant is turned into a [`Lease`]
    /// at once; a queued request holds its ticket in a guard that withdraws
    /// it when dropped. Either way nothing is left behind if the result is
    /// dropped without being finished.
    fn start(
        &self,
        ask: impl FnOnce(&mut CorePool<'d>, Instant) -> Result<LeaseOutcome, Error>,
    ) -> Result<Started<'d>, Error> {
        let now = now();
        let (outcome, ticket) = {
            let mut inner = self.shared.inner.borrow_mut();
            let Some(t) = inner
                .tickets
                .iter()
                .position(|t| t.state == TicketState::Free)
            else {
                return Err(Error::Overflow);
            };
            let outcome = ask(&mut inner.pool, now);
            if let Ok(LeaseOutcome::Queued(w)) = outcome {
                inner.tickets[t].state = TicketState::Waiting(w);
                inner.ticket_of[w.index()] = t as u16;
            }
            inner.pump(now);
            (outcome, t)
        };
        Ok(match outcome? {
            LeaseOutcome::Granted(lease) => Started::Granted(self.make_lease(lease)),
            LeaseOutcome::Queued(_) => Started::Queued(TicketGuard {
                shared: self.shared,
                ticket,
                armed: true,
            }),
        })
    }

    /// Takes the granted connection's socket, unless the peer has closed it
    /// meanwhile: then the connection is closed (`PeerClosed`) and `None`.
    fn make_lease(&self, lease: wharf_core::Lease) -> Option<Lease<'d>> {
        let mut inner = self.shared.inner.borrow_mut();
        let j = inner
            .slot_of(lease.conn())
            .expect("granted connection has a socket slot");
        let socket = inner.slots[j]
            .socket
            .take()
            .expect("granted connection is idle");
        if socket.state() != embassy_net::tcp::State::Established {
            let now = now();
            inner.slots[j].socket = Some(socket);
            let _ = inner.pool.peer_closed(lease.conn(), now);
            let _ = inner.pool.release(lease, Release::REUSE, now);
            inner.pump(now);
            return None;
        }
        Some(Lease {
            shared: self.shared,
            lease,
            slot: j,
            socket: Some(socket),
            keep_alive: None,
            tag: None,
            discard: false,
        })
    }

    /// Leases a connection through a cluster: predictive preconnect, a host
    /// pick by the cluster's balancer, then a lease on that host's route (see
    /// [`Pool::lease_cluster_with`]).
    pub fn lease_cluster<const HOSTS: usize>(
        &self,
        cluster: &mut Cluster<HOSTS>,
    ) -> impl Future<Output = Result<Lease<'d>, Error>> + 'd {
        self.lease_cluster_with(cluster, LeaseOptions::default())
    }

    /// Leases a connection through a cluster, with a tag and/or a timeout.
    ///
    /// The cluster's part runs at once, when this is called (not when the
    /// future is first polled), under the pool's lock: predictive preconnect
    /// (connects for the hosts the next picks will go to), the host pick, and
    /// the lease on the picked host's route. The cluster is not borrowed
    /// afterwards. The returned future only waits for the answer, exactly as a
    /// route lease does; it is cancel-safe: dropping it, polled or not,
    /// withdraws the request (or gives back a connection already granted).
    ///
    /// Errors: [`Error::Cluster`]`(`[`ClusterError::NoHosts`]`)` for an empty
    /// cluster, [`Error::Overflow`] when no answer ticket is free (the cluster
    /// is then left untouched), else what a route lease on the picked host
    /// returns. A granted connection found closed by the peer is closed and
    /// the request is retried on the same host.
    pub fn lease_cluster_with<const HOSTS: usize>(
        &self,
        cluster: &mut Cluster<HOSTS>,
        opts: LeaseOptions,
    ) -> impl Future<Output = Result<Lease<'d>, Error>> + 'd {
        let deadline = opts.timeout.map(|d| now() + d);
        let mut host = None;
        let started = self.start(|pool, now| {
            let picked = cluster.lease(pool, opts.tag, now, deadline)?;
            host = cluster.host(picked.host).copied();
            Ok(picked.outcome)
        });
        let pool = *self;
        async move {
            if let Some(lease) = started?.finish().await? {
                return Ok(lease);
            }
            let route = host.expect("a lease outcome comes with its host");
            let tries = pool.shared.inner.borrow().slots.len() + 1;
            for _ in 0..tries {
                if let Some(lease) = pool.lease_once(&route, opts.tag, deadline).await? {
                    return Ok(lease);
                }
            }
            Err(Error::ConnectFailed(ConnectFailure::Remote))
        }
    }

    /// Removes `host` from `cluster`; its route drains for deletion
    /// (`DrainAndDelete`): idle connections close (FIN), leased ones close
    /// when they come back, new route leases on it fail with
    /// [`Error::Draining`], and the route is freed once empty. Later cluster
    /// leases go to the other hosts.
    ///
    /// [`Error::Cluster`]`(`[`ClusterError::UnknownHost`]`)` if it is not in
    /// the cluster.
    pub fn remove_host<const HOSTS: usize>(
        &self,
        cluster: &mut Cluster<HOSTS>,
        host: &Route,
    ) -> Result<(), Error> {
        let now = now();
        let mut inner = self.shared.inner.borrow_mut();
        let r = cluster.remove_host(&mut inner.pool, host, now);
        inner.pump(now);
        Ok(r?)
    }

    /// Marks a cluster host healthy or not. The balancer skips unhealthy
    /// hosts while any host is healthy (all hosts are eligible when none is);
    /// an unhealthy host's route connects only for demand (no preconnect, no
    /// warm-up). The mark is also set on the route in the pool (the core's
    /// `set_route_health`), so route leases see it too.
    ///
    /// [`Error::Cluster`]`(`[`ClusterError::UnknownHost`]`)` if it is not in
    /// the cluster; [`Error::RouteTableFull`] if the route had to be created
    /// to hold the mark and no route slot is free.
    pub fn set_host_health<const HOSTS: usize>(
        &self,
        cluster: &mut Cluster<HOSTS>,
        host: &Route,
        healthy: bool,
    ) -> Result<(), Error> {
        let now = now();
        let mut inner = self.shared.inner.borrow_mut();
        let r = cluster.set_health(&mut inner.pool, host, healthy, now);
        inner.pump(now);
        Ok(r?)
    }

    /// Pool-wide gauges.
    pub fn stats(&self) -> PoolStats {
        self.shared.inner.borrow().pool.stats()
    }

    /// One route's gauges (`None` if the route is not in the table).
    pub fn route_stats(&self, route: &Route) -> Option<RouteStats> {
        self.shared.inner.borrow().pool.route_stats(route)
    }

    /// The core's counters.
    pub fn counters(&self) -> Counters {
        *self.shared.inner.borrow().pool.counters()
    }

    /// Per-route overrides (limit, warm-up, preconnect ratio).
    pub fn set_route_config(&self, route: &Route, cfg: RouteConfig) -> Result<(), RouteError> {
        let now = now();
        let mut inner = self.shared.inner.borrow_mut();
        let r = inner.pool.set_route_config(route, cfg, now);
        inner.pump(now);
        r
    }

    /// Drains one route (`Some`) or all of them (`None`); see the core's
    /// `DrainMode`.
    pub fn drain(&self, route: Option<&Route>, mode: DrainMode) {
        let now = now();
        let mut inner = self.shared.inner.borrow_mut();
        let scope = match route {
            Some(r) => wharf_core::DrainScope::Route(r),
            None => wharf_core::DrainScope::All,
        };
        inner.pool.drain(scope, mode, now);
        inner.pump(now);
    }

    /// Runs `f` on the core pool (diagnostics: `check_invariants`, stats).
    pub fn inspect<T>(&self, f: impl FnOnce(&CorePool<'d>) -> T) -> T {
        f(&self.shared.inner.borrow().pool)
    }
}

/// A lease request after its synchronous part (see `Pool::start`).
enum Started<'d> {
    /// Granted at once (`None`: the connection was found dead and closed).
    Granted(Option<Lease<'d>>),
    /// Queued: the answer comes through the ticket.
    Queued(TicketGuard<'d>),
}

impl<'d> Started<'d> {
    /// Waits for the answer of a queued request (the normal waiter path).
    async fn finish(self) -> Result<Option<Lease<'d>>, Error> {
        let mut guard = match self {
            Started::Granted(lease) => return Ok(lease),
            Started::Queued(guard) => guard,
        };
        let shared = guard.shared;
        let ticket = guard.ticket;
        let answer = poll_fn(|cx| {
            let mut inner = shared.inner.borrow_mut();
            let t = &mut inner.tickets[ticket];
            match t.state {
                TicketState::Answered(_, r) => {
                    t.state = TicketState::Free;
                    Poll::Ready(r)
                }
                _ => {
                    set_waker(&mut t.waker, cx.waker());
                    Poll::Pending
                }
            }
        })
        .await;
        guard.armed = false;
        let lease = answer?;
        Ok(Pool { shared }.make_lease(lease))
    }
}

struct TicketGuard<'d> {
    shared: &'d Shared<'d>,
    ticket: usize,
    armed: bool,
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let now = now();
        let mut inner = self.shared.inner.borrow_mut();
        let state = core::mem::replace(&mut inner.tickets[self.ticket].state, TicketState::Free);
        inner.tickets[self.ticket].waker = None;
        match state {
            TicketState::Waiting(w) => {
                if let Err(e) = inner.pool.cancel(w, CancelPolicy::Default, now).map(|_| ()) {
                    warning!("cancel({:?}) refused: {:?}", w, e);
                }
            }
            TicketState::Answered(_, Ok(lease)) => {
                let _ = inner.pool.release(lease, Release::REUSE, now);
            }
            TicketState::Answered(_, Err(_)) | TicketState::Free => {}
        }
        inner.pump(now);
    }
}

// ---------------------------------------------------------------------------
// Lease

/// A leased connection: a TCP stream (embedded-io-async `Read`, `Write`,
/// `ReadReady`, `WriteReady`).
///
/// Dropped, it goes back to the pool for reuse, unless it is no longer
/// healthy (peer closed, reset, unread data left), in which case the pool
/// closes it (FIN). [`Lease::discard`] closes it with a RST.
pub struct Lease<'d> {
    shared: &'d Shared<'d>,
    lease: wharf_core::Lease,
    slot: usize,
    socket: Option<TcpSocket<'d>>,
    keep_alive: Option<Duration>,
    tag: Option<Tag>,
    discard: bool,
}

impl<'d> Lease<'d> {
    /// The core's lease handle (its connection id names the connection).
    pub fn id(&self) -> wharf_core::Lease {
        self.lease
    }

    /// The route of the connection (for a cluster lease: the picked host).
    pub fn route(&self) -> Route {
        let inner = self.shared.inner.borrow();
        inner
            .pool
            .route_of(self.lease.conn())
            .and_then(|r| inner.pool.route_key(r))
            .copied()
            .expect("a leased connection is live in its route")
    }

    /// Keep the connection at most this long after it goes back (HTTP
    /// `Keep-Alive: timeout=`); default: the pool's lifetime rules only.
    pub fn set_keep_alive(&mut self, keep_alive: Option<Duration>) {
        self.keep_alive = keep_alive;
    }

    /// Tag the connection when it goes back (state matching, see [`Tag`]).
    pub fn set_tag(&mut self, tag: Option<Tag>) {
        self.tag = tag;
    }

    /// The socket, for its settings and state. Do not close it: use
    /// [`Lease::discard`] (a socket closed by hand is closed by the pool too
    /// when the lease is dropped, as it is no longer healthy).
    pub fn socket(&mut self) -> &mut TcpSocket<'d> {
        self.socket.as_mut().expect("lease holds its socket")
    }

    /// Closes the connection with a RST instead of returning it.
    pub fn discard(mut self) {
        self.discard = true;
    }
}

impl core::fmt::Debug for Lease<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lease")
            .field("lease", &self.lease)
            .field("slot", &self.slot)
            .finish()
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        // Closed or reset by the peer: closed as `PeerClosed`. Unread data
        // left: not reusable, closed as `Discarded` (with a FIN).
        let peer_closed = !self.discard && socket.state() != embassy_net::tcp::State::Established;
        let how = if peer_closed {
            // `peer_closed` below marks it draining: it closes as it comes back.
            Release::REUSE
        } else if self.discard || socket.can_recv() {
            Release::Discard
        } else {
            Release::Reuse {
                keep_alive: self.keep_alive,
                tag: self.tag,
            }
        };
        let now = now();
        let mut inner = self.shared.inner.borrow_mut();
        if peer_closed {
            let _ = inner.pool.peer_closed(self.lease.conn(), now);
        }
        let slot = &mut inner.slots[self.slot];
        slot.socket = Some(socket);
        slot.rst = self.discard;
        if let Err(e) = inner.pool.release(self.lease, how, now) {
            // Cannot happen (the core never closes a connection with a lease);
            // free the socket anyway.
            warning!("release({:?}) refused: {:?}", self.lease, e);
            let slot = &mut inner.slots[self.slot];
            slot.state = SlotState::Closing {
                rst: true,
                started: false,
            };
            slot.wake();
        }
        inner.pump(now);
    }
}

impl embedded_io_async::ErrorType for Lease<'_> {
    type Error = embassy_net::tcp::Error;
}

impl embedded_io_async::Read for Lease<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.socket().read(buf).await
    }
}

impl embedded_io_async::Write for Lease<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.socket().write(buf).await
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.socket().flush().await
    }
}

impl embedded_io_async::ReadReady for Lease<'_> {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        embedded_io_async::ReadReady::read_ready(self.socket())
    }
}

impl embedded_io_async::WriteReady for Lease<'_> {
    fn write_ready(&mut self) -> Result<bool, Self::Error> {
        embedded_io_async::WriteReady::write_ready(self.socket())
    }
}

// ---------------------------------------------------------------------------
// Runner

/// Drives the pool: timers, connects, closes. Spawn [`Runner::run`] on the
/// executor that uses the pool.
pub struct Runner<'d, const N: usize> {
    shared: &'d Shared<'d>,
    _slots: PhantomData<[(); N]>,
}

impl<'d, const N: usize> Runner<'d, N> {
    /// Runs forever: one worker per connection slot (connects and closes for
    /// different slots proceed concurrently) and the core's timer.
    pub async fn run(&mut self) -> ! {
        let shared = self.shared;
        let workers: [_; N] = core::array::from_fn(|j| worker(shared, j));
        match select(timer(shared), embassy_futures::join::join_array(workers)).await {
            Either::First(never) => never,
            // Only with N == 0 (no worker at all).
            Either::Second(_) => timer(shared).await,
        }
    }
}

async fn timer(shared: &Shared<'_>) -> ! {
    loop {
        let next = {
            let mut inner = shared.inner.borrow_mut();
            let next = inner.pool.poll_timeout();
            inner.armed = Some(next.unwrap_or(Instant::MAX));
            inner.kicked = false;
            next
        };
        let kick = poll_fn(|cx| {
            let mut inner = shared.inner.borrow_mut();
            if inner.kicked {
                Poll::Ready(())
            } else {
                set_waker(&mut inner.timer_waker, cx.waker());
                Poll::Pending
            }
        });
        match next {
            Some(t) => {
                select(Timer::at(to_embassy(t)), kick).await;
            }
            None => kick.await,
        }
        let now = now();
        let mut inner = shared.inner.borrow_mut();
        inner.pool.handle_timeout(now);
        inner.pump(now);
    }
}

/// Completes when the pool no longer wants connection `conn` of slot `j`.
async fn abort_signal(shared: &Shared<'_>, j: usize, conn: ConnId) {
    poll_fn(move |cx| shared.inner.borrow_mut().poll_abort(j, conn, cx)).await
}

async fn worker(shared: &Shared<'_>, j: usize) -> ! {
    loop {
        let job = poll_fn(|cx| shared.inner.borrow_mut().take_job(j, cx)).await;
        match job {
            Job::Connect { conn, route } => connect(shared, j, conn, route).await,
            Job::Close { socket, rst } => {
                let t = shared.inner.borrow().opts.close_timeout;
                close(socket, rst, t).await;
                shared.inner.borrow_mut().slot_freed(j);
            }
        }
    }
}

async fn close(mut socket: TcpSocket<'_>, rst: bool, timeout: embassy_time::Duration) {
    if rst {
        socket.abort();
    } else {
        socket.close();
    }
    // Wait until the FIN is acknowledged (or the RST sent), bounded.
    let _ = with_timeout(timeout, socket.flush()).await;
}

async fn connect(shared: &Shared<'_>, j: usize, conn: ConnId, route: Route) {
    let (stack, opts) = {
        let inner = shared.inner.borrow();
        (inner.stack, inner.opts)
    };
    let endpoint = match route {
        Route::Ip(ep) => Some(ep),
        Route::Host { name, port } => {
            match select(
                stack.dns_query(name, DnsQueryType::A),
                abort_signal(shared, j, conn),
            )
            .await
            {
                Either::First(Ok(addrs)) => addrs.first().map(|a| IpEndpoint::new(*a, port)),
                Either::First(Err(_)) => None,
                Either::Second(()) => {
                    shared.inner.borrow_mut().slot_freed(j);
                    return;
                }
            }
        }
    };
    let Some(endpoint) = endpoint else {
        connect_failed(shared, j, conn, ConnectFailure::Local);
        return;
    };
    // SAFETY: slot j is `Connecting` (its worker is here) and its previous
    // socket was dropped before the slot became free.
    let (rx, tx) = unsafe { shared.inner.borrow().buffers(j) };
    let mut socket = TcpSocket::new(stack, rx, tx);
    socket.set_keep_alive(opts.keep_alive);
    socket.set_timeout(opts.socket_timeout);
    match select(socket.connect(endpoint), abort_signal(shared, j, conn)).await {
        Either::First(Ok(())) => {
            let still_wanted = matches!(
                shared.inner.borrow().slots[j].state,
                SlotState::Connecting { conn: c, abort: false, .. } if c == conn
            );
            if !still_wanted {
                close(socket, true, opts.close_timeout).await;
                shared.inner.borrow_mut().slot_freed(j);
                return;
            }
            let now = now();
            let mut inner = shared.inner.borrow_mut();
            inner.slots[j].state = SlotState::Open { conn };
            inner.slots[j].socket = Some(socket);
            let accepted = inner.pool.connected(conn, 1, now);
            // Refused when it timed out at this very instant: its Close comes in the pump.
            inner.pump(now);
            if let Err(e) = accepted {
                warning!("connected({:?}) refused: {:?}", conn, e);
                if inner.slots[j].state == (SlotState::Open { conn }) {
                    inner.conn_slot[conn.index()] = None;
                    let slot = &mut inner.slots[j];
                    slot.state = SlotState::Closing {
                        rst: true,
                        started: false,
                    };
                    slot.wake();
                }
            }
        }
        Either::First(Err(e)) => {
            drop(socket);
            let reason = match e {
                ConnectError::ConnectionReset => ConnectFailure::Remote,
                ConnectError::TimedOut => ConnectFailure::Timeout,
                ConnectError::InvalidState | ConnectError::NoRoute => ConnectFailure::Local,
            };
            debug!("connect {:?} failed: {:?}", conn, e);
            connect_failed(shared, j, conn, reason);
        }
        Either::Second(()) => {
            // The pool gave up on it (connect timeout, drain): abort the attempt.
            close(socket, true, opts.close_timeout).await;
            shared.inner.borrow_mut().slot_freed(j);
        }
    }
}

fn connect_failed(shared: &Shared<'_>, j: usize, conn: ConnId, reason: ConnectFailure) {
    let now = now();
    let mut inner = shared.inner.borrow_mut();
    let wanted = matches!(
        inner.slots[j].state,
        SlotState::Connecting { conn: c, abort: false, .. } if c == conn
    );
    if wanted {
        inner.conn_slot[conn.index()] = None;
    }
    inner.slot_freed(j);
    if wanted {
        if let Err(e) = inner.pool.connect_failed(conn, reason, now) {
            warning!("connect_failed({:?}) refused: {:?}", conn, e);
        }
    }
    inner.pump(now);
}
