//! The static state: everything the pool needs in one value the application
//! provides (its layout: the core's storage, the driver's tables, the socket
//! slots, the buffers, the shared part), and the only `unsafe` code of the
//! crate. The lowest module of the crate: the behaviour of the socket slots
//! is in `sockets.rs`, the public constructors in `pool.rs`.
//!
//! Three things need `unsafe`, each explained where it is:
//! - `State` holds values that borrow the stack (sockets, the driver) in
//!   `MaybeUninit` fields typed with `'static`, so the state itself has no
//!   lifetime and no drop glue (it can live in a `static`, like embassy-net's
//!   `StackResources`); [`new_with_options`] writes them for `'d`.
//! - Socket buffers: slot `j`'s receive and transmit buffers are lent to one
//!   [`PoolSocket`] at a time, tracked by an in-use flag that only the
//!   socket's drop clears (after the smoltcp socket is gone).
//! - `State` is `Send` so that a `StaticCell` can hold it.

use core::cell::{Cell, RefCell};
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::task::Waker;

use embassy_net::tcp::TcpSocket;
use embassy_net::Stack;
use embassy_sync::waitqueue::MultiWakerRegistration;
use wharf_core::{Config, ConfigError, ConnId, Storage};
use wharf_driver::{ConnEntry, Driver, Settings, Tables, Ticket};

use crate::options::Options;
use crate::route::Route;

/// The core pool type this backend drives, keyed by [`Route`] (runtime host
/// names of at most `H` bytes), over storage with 16-bit indices (a board's
/// pool has far fewer than 8,191 slots of each kind; a larger `State` does
/// not compile).
pub type CorePool<'d, const H: usize = 0> = wharf_core::Pool<'d, Route<H>, u16>;

/// The driver, with the embassy-net sockets as its I/O.
pub(crate) type Inner<'d, const H: usize> = Driver<'d, Route<H>, Net<'d>, u16>;

/// What the pool handle, the leases and the runner share (single-threaded:
/// the stack is `!Send`, so a `RefCell` is the lock, never held across an
/// `.await`).
pub(crate) struct Shared<'d, const H: usize> {
    pub inner: RefCell<Inner<'d, H>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) enum SlotState {
    /// No socket; the buffers are free.
    Free,
    /// Opening a connection for `conn` (the worker owns the socket; it
    /// reads the route's key from the core when it starts).
    Connecting {
        conn: ConnId,
        started: bool,
        abort: bool,
    },
    /// An open connection: its socket is in the driver's table or a lease.
    Open,
    /// Sending FIN/RST (the worker owns the socket once started).
    Closing { rst: bool, started: bool },
}

pub(crate) struct Slot<'d> {
    pub state: SlotState,
    /// The socket to close, until the worker takes it.
    pub closing: Option<PoolSocket<'d>>,
    pub waker: Option<Waker>,
}

impl<'d> Slot<'d> {
    pub const EMPTY: Slot<'d> = Slot {
        state: SlotState::Free,
        closing: None,
        waker: None,
    };
    pub(crate) fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// The driver's I/O: the stack, the socket slots and their buffers.
pub(crate) struct Net<'d> {
    pub stack: Stack<'d>,
    pub opts: Options,
    pub slots: &'d mut [Slot<'d>],
    pub pending: &'d mut [Option<ConnId>],
    pub bufs: Buffers<'d>,
    /// The runner's waker, registered as the receive waker of every idle
    /// socket (the idle watch, `sockets.rs`).
    pub watch_waker: Option<Waker>,
    /// The tasks in [`Pool::close`](crate::Pool::close), woken when a
    /// socket slot becomes free (more than four at once are all woken when
    /// a fifth registers, and register again).
    pub close_wakers: MultiWakerRegistration<4>,
}

/// Everything a pool needs, sized by const generics: `N` connection slots
/// (sockets, each with a `RX`-byte receive and `TX`-byte transmit buffer),
/// `W` waiter slots (pending lease requests), `R` route slots, and routes
/// whose host names known at run time have at most `H` bytes (default 0:
/// names in flash and IP endpoints only; see [`Route::name`]).
///
/// `Config::max_total` must be at most `N`; lease slots are `N` (one lease per
/// connection: plain TCP streams). A pool borrows its state for good
/// (`&'static mut`): put it in a `static` with
/// `StaticCell<State<N, W, R, TX, RX>>` initialised with
/// `init_with(State::new)`, which keeps it in `.bss` (a `ConstStaticCell`
/// works too but puts all of it in `.data`, buffers included); on a host,
/// `Box::leak` works too. The sockets it holds are never dropped with the
/// pool: like embassy-net's own sockets they stay in the stack's socket set,
/// pointing into the state's buffers, which is why the state is never
/// borrowed again (nor freed) once a pool has used it.
pub struct State<
    const N: usize,
    const W: usize,
    const R: usize,
    const TX: usize,
    const RX: usize,
    const H: usize = 0,
> {
    storage: Storage<Route<H>, N, R, W, N, u16>,
    tickets: [Ticket<(), ()>; W],
    by_core: [u32; W],
    pending: [Option<ConnId>; N],
    /// Slot `j`'s buffers are lent to a live socket (see [`Buffers`]).
    lent: [Cell<bool>; N],
    rx: [[u8; RX]; N],
    tx: [[u8; TX]; N],
    // Hold values that borrow the stack for 'd; written by `new` (so the state
    // itself has no lifetime and no drop glue, as `StackResources`).
    conns: MaybeUninit<[ConnEntry<PoolSocket<'static>>; N]>,
    slots: MaybeUninit<[Slot<'static>; N]>,
    shared: MaybeUninit<Shared<'static, H>>,
}

impl<
        const N: usize,
        const W: usize,
        const R: usize,
        const TX: usize,
        const RX: usize,
        const H: usize,
    > State<N, W, R, TX, RX, H>
{
    /// Empty state; `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        State {
            storage: Storage::new(),
            tickets: [const { Ticket::FREE }; W],
            by_core: [u32::MAX; W],
            pending: [None; N],
            lent: [const { Cell::new(false) }; N],
            rx: [[0; RX]; N],
            tx: [[0; TX]; N],
            conns: MaybeUninit::uninit(),
            slots: MaybeUninit::uninit(),
            shared: MaybeUninit::uninit(),
        }
    }
}

// SAFETY: a `State` that can be moved was never given to a pool (a pool
// borrows it for 'static), so it holds plain data and uninitialised
// `MaybeUninit` fields. The `!Send` values (stack handle, sockets, wakers, the
// `Cell` flags) are only used through the `Pool`/`Runner`/`Lease` handles,
// which are `!Send`. This lets the state live in a `static` (`StaticCell`
// needs `Send`).
unsafe impl<
        const N: usize,
        const W: usize,
        const R: usize,
        const TX: usize,
        const RX: usize,
        const H: usize,
    > Send for State<N, W, R, TX, RX, H>
{
}

impl<
        const N: usize,
        const W: usize,
        const R: usize,
        const TX: usize,
        const RX: usize,
        const H: usize,
    > Default for State<N, W, R, TX, RX, H>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Writes `N` copies of `value()` into `slots` and returns them as a slice
/// for `'d`.
///
/// # Safety
/// `U` must be `T` with `'static` in place of `'d` (the same type but for a
/// lifetime, hence the same layout).
unsafe fn init_slice<T, U, const N: usize>(
    slots: &mut MaybeUninit<[U; N]>,
    mut value: impl FnMut() -> T,
) -> &mut [T] {
    const { assert!(core::mem::size_of::<T>() == core::mem::size_of::<U>()) };
    let base = slots.as_mut_ptr().cast::<T>();
    for j in 0..N {
        // SAFETY: `base` points to `N` slots' worth of memory, borrowed
        // exclusively for 'd (a state is given to one pool only, for
        // 'static); `T` and `U` differ only in a lifetime (same layout). The
        // memory was uninitialised: nothing is overwritten.
        unsafe { base.add(j).write(value()) };
    }
    // SAFETY: all `N` slots were just initialised, and are borrowed for 'd.
    unsafe { core::slice::from_raw_parts_mut(base, N) }
}

impl<
        const N: usize,
        const W: usize,
        const R: usize,
        const TX: usize,
        const RX: usize,
        const H: usize,
    > State<N, W, R, TX, RX, H>
{
    /// Builds the pool's shared part in the state (see `wharf_embassy::new`).
    pub(crate) fn init<'d>(
        &'static mut self,
        stack: Stack<'d>,
        config: Config,
        opts: Options,
    ) -> Result<&'d Shared<'d, H>, ConfigError> {
        if N > u16::MAX as usize || W > u16::MAX as usize {
            return Err(ConfigError::BadStorage);
        }
        let State {
            storage,
            tickets,
            by_core,
            pending,
            lent,
            rx,
            tx,
            conns,
            slots,
            shared,
        } = self;
        let core = wharf_core::Pool::new(storage, config)?;
        pending.fill(None);
        // SAFETY: the tables are `ConnEntry<PoolSocket<'static>>` and
        // `Slot<'static>`, written as the same types for 'd.
        let conns: &'d mut [ConnEntry<PoolSocket<'d>>] =
            unsafe { init_slice(conns, || ConnEntry::EMPTY) };
        // SAFETY: as above.
        let slots: &'d mut [Slot<'d>] = unsafe { init_slice(slots, || Slot::EMPTY) };
        let buffers = Buffers {
            rx: rx.as_mut_ptr().cast::<u8>(),
            rx_len: RX,
            tx: tx.as_mut_ptr().cast::<u8>(),
            tx_len: TX,
            lent,
            _borrow: PhantomData,
        };
        let net = Net {
            stack,
            opts,
            slots,
            pending,
            bufs: buffers,
            watch_waker: None,
            close_wakers: MultiWakerRegistration::new(),
        };
        let settings = Settings {
            cancel_policy: opts.cancel_policy,
        };
        let driver = Driver::new(core, Tables::new(conns, tickets, by_core), net, settings);
        let shared: &'d Shared<'d, H> = {
            let p = shared.as_mut_ptr().cast::<Shared<'d, H>>();
            // SAFETY: as for the slots: exclusive for 'd, same layout (only a
            // lifetime differs), never dropped.
            unsafe {
                p.write(Shared {
                    inner: RefCell::new(driver),
                });
                &*p
            }
        };
        Ok(shared)
    }
}

/// The socket buffers of the `N` slots, lent one slot at a time.
pub(crate) struct Buffers<'d> {
    /// Base of `N` receive buffers of `rx_len` bytes each (and the same for
    /// transmit), from `&'static mut [[u8; LEN]; N]`: used only here.
    rx: *mut u8,
    rx_len: usize,
    tx: *mut u8,
    tx_len: usize,
    /// Slot `j`'s buffers belong to a live [`PoolSocket`].
    lent: &'d [Cell<bool>],
    _borrow: PhantomData<&'d mut [u8]>,
}

impl<'d> Buffers<'d> {
    /// Slot `j`'s buffers belong to a live socket (or `j` is out of range).
    pub(crate) fn is_lent(&self, j: usize) -> bool {
        self.lent.get(j).is_none_or(Cell::get)
    }

    /// A socket on slot `j`'s buffers, unless they are lent to a live
    /// socket already (or `j` is out of range).
    pub(crate) fn socket(&self, stack: Stack<'d>, j: usize) -> Option<PoolSocket<'d>> {
        let flag = self.lent.get(j)?;
        if flag.get() {
            return None;
        }
        flag.set(true);
        // SAFETY: `rx`/`tx` come from `&'static mut [[u8; LEN]; N]`, never
        // used again but here; slot `j < N`'s ranges are disjoint from every
        // other slot's; its flag was clear, so no live socket uses them, and
        // it stays set until the socket made here is gone (`BufGuard` is
        // dropped after the `TcpSocket`, whose drop removes the smoltcp
        // socket, the only holder of the slices, from the stack).
        let (rx, tx) = unsafe {
            (
                core::slice::from_raw_parts_mut(self.rx.add(j * self.rx_len), self.rx_len),
                core::slice::from_raw_parts_mut(self.tx.add(j * self.tx_len), self.tx_len),
            )
        };
        Some(PoolSocket {
            socket: TcpSocket::new(stack, rx, tx),
            slot: j as u16,
            rst: false,
            _guard: BufGuard(flag),
        })
    }
}

/// Clears a slot's in-use flag when dropped.
struct BufGuard<'d>(&'d Cell<bool>);

impl Drop for BufGuard<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// A pooled connection: a `TcpSocket` on one slot's buffers. The socket
/// never leaves this value (no `&mut TcpSocket` is handed out, so it cannot
/// be swapped or moved out), which keeps the buffer-lending rule local to
/// this file: the fields drop in order, socket first, flag last.
pub(crate) struct PoolSocket<'d> {
    socket: TcpSocket<'d>,
    slot: u16,
    /// Close with a RST (discarded) rather than a FIN.
    pub rst: bool,
    _guard: BufGuard<'d>,
}

impl<'d> PoolSocket<'d> {
    /// The socket slot whose buffers it uses.
    pub(crate) fn slot(&self) -> usize {
        self.slot as usize
    }

    /// The socket, for reading its state.
    pub(crate) fn get(&self) -> &TcpSocket<'d> {
        &self.socket
    }

    pub(crate) fn set_timeout(&mut self, t: Option<embassy_time::Duration>) {
        self.socket.set_timeout(t)
    }
    pub(crate) fn set_keep_alive(&mut self, t: Option<embassy_time::Duration>) {
        self.socket.set_keep_alive(t)
    }
    pub(crate) fn set_hop_limit(&mut self, h: Option<u8>) {
        self.socket.set_hop_limit(h)
    }
    pub(crate) fn set_nagle_enabled(&mut self, on: bool) {
        self.socket.set_nagle_enabled(on)
    }
    pub(crate) fn close(&mut self) {
        self.socket.close()
    }
    pub(crate) fn abort(&mut self) {
        self.socket.abort()
    }
    pub(crate) async fn connect(
        &mut self,
        ep: embassy_net::IpEndpoint,
    ) -> Result<(), embassy_net::tcp::ConnectError> {
        self.socket.connect(ep).await
    }
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> Result<usize, embassy_net::tcp::Error> {
        self.socket.read(buf).await
    }
    pub(crate) async fn write(&mut self, buf: &[u8]) -> Result<usize, embassy_net::tcp::Error> {
        self.socket.write(buf).await
    }
    pub(crate) async fn flush(&mut self) -> Result<(), embassy_net::tcp::Error> {
        self.socket.flush().await
    }
    pub(crate) fn read_ready(&mut self) -> Result<bool, embassy_net::tcp::Error> {
        embedded_io_async::ReadReady::read_ready(&mut self.socket)
    }
    pub(crate) fn write_ready(&mut self) -> Result<bool, embassy_net::tcp::Error> {
        embedded_io_async::WriteReady::write_ready(&mut self.socket)
    }
    pub(crate) fn split(
        &mut self,
    ) -> (
        embassy_net::tcp::TcpReader<'_>,
        embassy_net::tcp::TcpWriter<'_>,
    ) {
        self.socket.split()
    }
}
