//! A scripted fake I/O for the driver: records every call in order, answers
//! validations as the test scripts, and accounts for every connection object
//! (each is created once by the test and must end closed, disposed of, or
//! still held).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};

use wharf_core::{CloseReason, Config, ConnId, Instant, Pool, Validation};
use wharf_driver::{Answer, Checked, ConnEvent, Driver, Io, Settings, Started, Tables, TicketId};

pub type Key = &'static str;

/// A connection object: not `Clone`, so the driver cannot duplicate it.
#[derive(Debug, PartialEq, Eq)]
pub struct Obj(pub u32);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Connect(ConnId, Key),
    Validate(ConnId, u32),
    Close(ConnId, CloseReason, Option<u32>),
    Dispose(u32),
    Failed,
    RouteIdle(Key),
}

/// How the fake answers `validate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Now(Validation),
    Later,
}

pub struct Fake {
    pub events: Vec<Ev>,
    /// Every connect asked for (never cleared).
    pub connects: Vec<ConnId>,
    pub check: Check,
    /// Objects out for a `Later` validation.
    pub checking: Vec<(ConnId, Obj)>,
    /// Objects closed or disposed of (each at most once).
    pub gone: BTreeSet<u32>,
    /// Every `watch` call: the connection and its object (kept apart from
    /// `events`, which stay the I/O the driver asked for).
    pub watched: Vec<(ConnId, u32)>,
    /// What `watch` answers for an object (once for a capacity, every time
    /// for a close).
    pub seen: std::collections::BTreeMap<u32, ConnEvent>,
    /// Handles made by `share` (object `n`'s are `1000 * k + n`).
    pub shared: u32,
}

impl Fake {
    fn gone(&mut self, n: u32) {
        assert!(self.gone.insert(n), "object {n} closed twice");
    }
}

impl Io<Key> for Fake {
    type Conn = Obj;
    type ConnectError = &'static str;
    /// Counts the failures delivered on the ticket.
    type Note = u32;

    fn connect(&mut self, conn: ConnId, route: &Key) {
        self.connects.push(conn);
        self.events.push(Ev::Connect(conn, route));
    }
    fn validate(&mut self, conn: ConnId, obj: Obj) -> Checked<Obj> {
        self.events.push(Ev::Validate(conn, obj.0));
        match self.check {
            Check::Now(v) => Checked::Done(obj, v),
            Check::Later => {
                self.checking.push((conn, obj));
                Checked::Pending
            }
        }
    }
    fn close(&mut self, conn: ConnId, reason: CloseReason, obj: Option<Obj>) {
        let n = obj.map(|o| o.0);
        if let Some(n) = n {
            self.gone(n);
        }
        self.events.push(Ev::Close(conn, reason, n));
    }
    fn dispose(&mut self, obj: Obj) {
        self.gone(obj.0);
        self.events.push(Ev::Dispose(obj.0));
    }
    fn failed(&mut self, note: &mut u32, _core: &Pool<'_, Key>) {
        *note += 1;
        self.events.push(Ev::Failed);
    }
    fn route_idle(&mut self, key: Key) {
        self.events.push(Ev::RouteIdle(key));
    }
    fn watch(&mut self, conn: ConnId, obj: &mut Obj) -> Option<ConnEvent> {
        self.watched.push((conn, obj.0));
        match self.seen.get(&obj.0).copied() {
            Some(ConnEvent::Capacity(k)) => {
                self.seen.remove(&obj.0);
                Some(ConnEvent::Capacity(k))
            }
            other => other,
        }
    }
    fn share(&mut self, obj: &Obj) -> Option<Obj> {
        self.shared += 1;
        Some(Obj(1000 * self.shared + obj.0))
    }
}

pub type D = Driver<'static, Key, Fake>;

pub fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

pub fn config() -> Config {
    Config {
        max_total: 4,
        max_per_route: 2,
        connect_timeout: Some(wharf_core::Duration::from_millis(100)),
        validate_after_inactivity: None,
        idle_timeout: None,
        retry_backoff: wharf_core::Duration::ZERO,
        ..Config::default()
    }
}

fn fake() -> Fake {
    Fake {
        events: Vec::new(),
        connects: Vec::new(),
        check: Check::Now(Validation::Alive),
        checking: Vec::new(),
        gone: BTreeSet::new(),
        watched: Vec::new(),
        seen: Default::default(),
        shared: 0,
    }
}

/// A driver over owned tables (4 connections, 8 waiters).
pub fn driver(cfg: Config, settings: Settings) -> D {
    let cap = wharf_core::Capacity {
        conns: 6,
        routes: 4,
        waiters: 8,
        leases: 6,
    };
    let core = Pool::with_capacity(cap, cfg).unwrap();
    Driver::new(core, Tables::with_capacity(6, 8), fake(), settings)
}

/// A driver over borrowed, fixed tables with `tickets` answer tickets.
pub fn fixed_driver(cfg: Config, tickets: usize) -> D {
    let cap = wharf_core::Capacity {
        conns: 6,
        routes: 4,
        waiters: 8,
        leases: 6,
    };
    let core = Pool::with_capacity(cap, cfg).unwrap();
    let conns = Box::leak((0..6).map(|_| wharf_driver::ConnEntry::EMPTY).collect());
    let tickets = Box::leak(
        (0..tickets)
            .map(|_| wharf_driver::Ticket::free(0u32))
            .collect(),
    );
    let by_core = Box::leak(vec![0u32; 8].into_boxed_slice());
    Driver::new(
        core,
        Tables::new(conns, tickets, by_core),
        fake(),
        Settings::default(),
    )
}

/// A waker that counts its wakes.
pub struct Count(pub AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn waker() -> (Waker, Arc<Count>) {
    let c = Arc::new(Count(AtomicUsize::new(0)));
    (Waker::from(c.clone()), c)
}

impl Count {
    pub fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Leases and expects a queued request.
pub fn queue(d: &mut D, key: Key, now: Instant) -> TicketId {
    match d.lease(&key, None, now, None) {
        Ok(Started::Queued(t)) => t,
        other => panic!("expected a queued request, got {other:?}"),
    }
}

/// The answer of a ticket that must be ready.
pub fn answer(d: &mut D, t: TicketId) -> Answer<Obj, &'static str, u32> {
    match d.poll_answer(t, Waker::noop()) {
        Poll::Ready(a) => a,
        Poll::Pending => panic!("no answer yet"),
    }
}

/// The last `Connect` asked for.
pub fn last_connect(d: &D) -> ConnId {
    *d.io().connects.last().expect("a connect was asked for")
}

/// Takes the events seen so far.
pub fn events(d: &mut D) -> Vec<Ev> {
    std::mem::take(&mut d.io_mut().events)
}

/// Core invariants hold, and every object the test created is accounted
/// for: closed or disposed of, or in `held` (leases, validations).
pub fn check(d: &D, created: u32, held: &[u32]) {
    d.core().check_invariants().expect("core invariants");
    let gone = &d.io().gone;
    let idle = d.core().stats().idle as usize;
    let checking = d.io().checking.len();
    for n in held {
        assert!(!gone.contains(n), "object {n} is held but was closed");
    }
    assert_eq!(
        gone.len() + held.len() + idle + checking,
        created as usize,
        "objects: {} gone, {} held, {idle} idle, {checking} checking, {created} created",
        gone.len(),
        held.len()
    );
}
