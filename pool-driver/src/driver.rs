//! The [`Driver`]: the core, the backend's [`Io`], and the tables the core's
//! handles index. Construction and accessors; the inputs are in `lease.rs`
//! and `connect.rs`, the action pump in `pump.rs`.

use core::hash::Hash;
use core::task::{Poll, Waker};

use wharf_core::{CancelPolicy, Index, Instant, Pool};

use crate::conns::ConnEntry;
use crate::io::Io;
use crate::table::Table;
use crate::tickets::{State, Ticket, NONE};
use crate::timer::Timer;

/// The backend's settings the driver applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Settings {
    /// What dropping a waiting lease future does beyond withdrawing it
    /// (passed to the core's `cancel`).
    pub cancel_policy: CancelPolicy,
}

/// The driver's tables, handed in like the core's storage.
///
/// - `conns`: one [`ConnEntry`] per core connection slot (at least the
///   `CONNS` / `Capacity::conns` the core was built with).
/// - `tickets`: answer tickets, one per lease request waiting or answered and
///   not yet picked up by its future. A borrowed table is fixed (when every
///   ticket is taken, a lease is refused with
///   [`StartError::NoTicket`](crate::StartError::NoTicket)); an owned one
///   grows.
/// - `by_core`: one `u32` per core waiter slot (at least `WAITERS` /
///   `Capacity::waiters`).
pub struct Tables<'a, T, E, N> {
    pub(crate) conns: Table<'a, ConnEntry<T>>,
    pub(crate) tickets: Table<'a, Ticket<E, N>>,
    pub(crate) by_core: Table<'a, u32>,
}

impl<'a, T, E, N> Tables<'a, T, E, N> {
    /// Tables over borrowed slices (firmware: arrays in the application's
    /// state). Their contents are reset by [`Driver::new`].
    pub fn new(
        conns: &'a mut [ConnEntry<T>],
        tickets: &'a mut [Ticket<E, N>],
        by_core: &'a mut [u32],
    ) -> Self {
        Tables {
            conns: Table::Borrowed(conns),
            tickets: Table::Borrowed(tickets),
            by_core: Table::Borrowed(by_core),
        }
    }
}

#[cfg(feature = "alloc")]
impl<T, E, N: Default> Tables<'static, T, E, N> {
    /// Tables allocated once here (feature `alloc`): `conns` and `waiters` as
    /// given to the core's `Capacity`; `waiters + conns` tickets to start
    /// with (the queued requests plus one granted answer per connection),
    /// grown if more answers wait to be picked up.
    pub fn with_capacity(conns: usize, waiters: usize) -> Self {
        use alloc::vec::Vec;
        Tables {
            conns: Table::Owned((0..conns).map(|_| ConnEntry::EMPTY).collect()),
            tickets: Table::Owned(
                (0..waiters + conns)
                    .map(|_| Ticket::free(N::default()))
                    .collect::<Vec<_>>(),
            ),
            by_core: Table::Owned(alloc::vec![NONE; waiters]),
        }
    }
}

/// The driver: the core behind the backend's lock, the backend's [`Io`],
/// the connection-object table and the answer table.
///
/// Every input goes through a driver method that calls the core and then
/// drains its actions (the core's rule: after every input, `poll_action`
/// until `None`); this is the only place `poll_action` is called. Grants and
/// failures go to the answer tickets (their futures are woken); connects,
/// validations and closes go to [`Io`]. After each drain the timer re-arm
/// rule runs ([`Driver::arm_timer`], [`Driver::poll_timer`]).
///
/// ```
/// use core::task::{Poll, Waker};
/// use wharf_core::{CloseReason, Config, ConnId, Instant, Pool, Storage, Validation};
/// use wharf_driver::{Answer, Checked, ConnEntry, Driver, Io, Settings, Started, Tables, Ticket};
///
/// /// A backend whose "connections" are numbers; it records the connects asked for.
/// #[derive(Default)]
/// struct Numbers { connects: Vec<ConnId>, closed: Vec<u32> }
///
/// impl Io<&'static str> for Numbers {
///     type Conn = u32;
///     type ConnectError = ();
///     type Note = ();
///     fn connect(&mut self, conn: ConnId, _route: &&'static str) { self.connects.push(conn) }
///     fn validate(&mut self, _: ConnId, n: u32) -> Checked<u32> { Checked::Done(n, Validation::Alive) }
///     fn close(&mut self, _: ConnId, _: CloseReason, n: Option<u32>) { self.closed.extend(n) }
///     fn dispose(&mut self, n: u32) { self.closed.push(n) }
/// }
///
/// let mut storage: Storage<&str, 2, 1, 2, 2> = Storage::new();
/// let core = Pool::new(&mut storage, Config { max_total: 2, ..Config::default() }).unwrap();
/// let mut conns = [ConnEntry::EMPTY, ConnEntry::EMPTY];
/// let mut tickets = [Ticket::FREE, Ticket::FREE];
/// let mut by_core = [0u32; 2];
/// let tables = Tables::new(&mut conns, &mut tickets, &mut by_core);
/// let mut driver = Driver::new(core, tables, Numbers::default(), Settings::default());
///
/// let t0 = Instant::from_millis(0);
/// let Ok(Started::Queued(ticket)) = driver.lease(&"db", None, t0, None) else { panic!() };
/// let conn = driver.io().connects[0];
/// assert!(driver.poll_answer(ticket, Waker::noop()).is_pending());
///
/// // The backend connected: the waiting request gets the object.
/// driver.connected(conn, 42, Instant::from_millis(1)).unwrap();
/// let Poll::Ready(Answer::Granted(h)) = driver.poll_answer(ticket, Waker::noop()) else { panic!() };
/// assert_eq!(h.conn, 42);
///
/// // Back for reuse; the next lease gets it at once.
/// driver.release(h.lease, h.conn, wharf_driver::Returned::REUSE, Instant::from_millis(2));
/// let Ok(Started::Granted(again)) = driver.lease(&"db", None, Instant::from_millis(3), None) else { panic!() };
/// assert_eq!((again.conn, again.reused), (42, true));
/// assert_eq!(driver.served(again.lease.conn()), 2);
/// ```
pub struct Driver<'a, K, I: Io<K, Ix>, Ix: Index = u32> {
    pub(crate) core: Pool<'a, K, Ix>,
    pub(crate) conns: Table<'a, ConnEntry<I::Conn>>,
    pub(crate) tickets: Table<'a, Ticket<I::ConnectError, I::Note>>,
    pub(crate) by_core: Table<'a, u32>,
    /// Head of the free tickets (threaded through `State::Free`).
    pub(crate) free: u32,
    pub(crate) io: I,
    pub(crate) settings: Settings,
    pub(crate) timer: Timer,
    /// The error of the connect being reported, for the requests it fails.
    pub(crate) connect_error: Option<I::ConnectError>,
    /// Head of the deferred wakes (tickets answered since the last
    /// [`Driver::take_waker`]), threaded through the tickets; `NONE`: none.
    pub(crate) wakes: u32,
    /// The connection whose `connected` input is being drained: a grant of
    /// it then is straight from its connect (not a reuse).
    pub(crate) arriving: Option<wharf_core::ConnId>,
}

impl<'a, K: Eq + Hash + Clone, I: Io<K, Ix>, Ix: Index> Driver<'a, K, I, Ix> {
    /// A driver around `core` (fresh: no input yet), over `tables`, doing its
    /// I/O through `io`. The tables are reset.
    pub fn new(
        core: Pool<'a, K, Ix>,
        tables: Tables<'a, I::Conn, I::ConnectError, I::Note>,
        io: I,
        settings: Settings,
    ) -> Self {
        let Tables {
            mut conns,
            mut tickets,
            mut by_core,
        } = tables;
        conns.iter_mut().for_each(|e| *e = ConnEntry::EMPTY);
        by_core.iter_mut().for_each(|s| *s = NONE);
        let n = tickets.len();
        for (i, t) in tickets.iter_mut().enumerate() {
            let next = if i + 1 < n { (i + 1) as u32 } else { NONE };
            *t = Ticket::free(I::Note::default());
            t.state = State::Free { next };
        }
        Driver {
            core,
            conns,
            tickets,
            by_core,
            free: if n > 0 { 0 } else { NONE },
            io,
            settings,
            timer: Timer::new(),
            connect_error: None,
            wakes: NONE,
            arriving: None,
        }
    }

    /// The core, for reading (stats, counters, route keys, invariants).
    #[inline]
    pub fn core(&self) -> &Pool<'a, K, Ix> {
        &self.core
    }

    /// The backend's I/O state.
    #[inline]
    pub fn io(&self) -> &I {
        &self.io
    }

    /// The backend's I/O state, to change it (socket slots, work queues).
    #[inline]
    pub fn io_mut(&mut self) -> &mut I {
        &mut self.io
    }

    /// The settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Any other input (drain, route configuration, cluster hosts and
    /// health, preconnect): `f` calls the core, then the driver drains its
    /// actions. `now` must be what `f` passes to the core.
    pub fn input<R>(&mut self, f: impl FnOnce(&mut Pool<'a, K, Ix>) -> R) -> R {
        let r = f(&mut self.core);
        self.pump();
        r
    }

    /// The timer fired (or was kicked): the core's timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
        self.pump();
    }

    /// The timer task arms: returns the deadline to sleep until (`None`:
    /// until kicked). Call it after [`Driver::handle_timeout`], then wait for
    /// the deadline or [`Driver::poll_timer`], whichever comes first.
    pub fn arm_timer(&mut self) -> Option<Instant> {
        let next = self.core.poll_timeout();
        self.timer.arm(next);
        next
    }

    /// Ready when an input moved the next deadline earlier than the one
    /// armed (or [`Driver::kick_timer`] was called); keeps `waker` otherwise.
    pub fn poll_timer(&mut self, waker: &Waker) -> Poll<()> {
        self.timer.poll_kick(waker)
    }

    /// Wakes the timer task now (e.g. to see the pool being shut down).
    pub fn kick_timer(&mut self) {
        self.timer.kick();
    }

    /// Defers the wakes an input causes (a lease future's answer, the timer
    /// task's kick) until the backend takes them with
    /// [`Driver::take_waker`], so that it can wake them after releasing its
    /// lock: a wake can be a system call (another thread unparked), which a
    /// lock should not be held across. Off by default (every wake happens
    /// in the input, as a `RefCell` backend wants). A backend that turns it
    /// on takes every waker after each input before another thread can
    /// take the lock.
    pub fn defer_wakes(&mut self, on: bool) {
        self.timer.defer = on;
    }

    /// A deferred wake waits to be taken ([`Driver::take_waker`]).
    #[inline(always)]
    pub fn has_wakes(&self) -> bool {
        self.wakes != NONE || self.timer.wake_pending
    }

    /// The next deferred wake: the waker, taken out (wake it once the lock
    /// is released). `None` when there is none left.
    pub fn take_waker(&mut self) -> Option<Waker> {
        if self.timer.wake_pending {
            self.timer.wake_pending = false;
            if let Some(w) = self.timer.waker.take() {
                return Some(w);
            }
        }
        while self.wakes != NONE {
            let t = self.wakes as usize;
            let ticket = self.tickets.get_mut(t)?;
            self.wakes = ticket.wake_next;
            ticket.listed = false;
            ticket.wake_next = NONE;
            // A ticket freed (its answer picked up) after it was listed has
            // no waker, or a later request's: a spurious wake is harmless.
            if let Some(w) = ticket.waker.take() {
                return Some(w);
            }
        }
        None
    }

    /// Leases handed out on `conn` so far (0 for a connection the driver
    /// does not hold).
    pub fn served(&self, conn: wharf_core::ConnId) -> u32 {
        self.conns
            .get(conn.index())
            .filter(|e| e.is(conn))
            .map_or(0, |e| e.served)
    }

    /// True while `conn`'s connect runs (the pool still wants it).
    pub fn is_connecting(&self, conn: wharf_core::ConnId) -> bool {
        self.conns
            .get(conn.index())
            .is_some_and(|e| e.is(conn) && matches!(e.hold, crate::conns::Hold::Connecting))
    }

    /// How many times a lease request may find the connection handed to it
    /// dead before it gives up: each try closes one connection, so this is
    /// the number of connection slots plus two.
    pub fn handout_tries(&self) -> usize {
        self.conns.len() + 2
    }
}
