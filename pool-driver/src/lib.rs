//! # wharf-driver
//!
//! The driver around the [`wharf_core`] state machine, written once for every
//! backend: `#![no_std]`, allocation-free (its tables are handed in, like the
//! core's storage, or allocated once with feature `alloc`), no `unsafe`.
//!
//! A backend keeps what is truly its own: the lock (a `Mutex` on tokio, a
//! `RefCell` on embassy) around one [`Driver`], the clock, spawning, and the
//! sockets behind its [`Io`]. The driver owns the rest:
//!
//! - **The action pump.** Every input is a driver method that calls the core
//!   and then drains `poll_action` until `None` (the only call of it in a
//!   backend's serving code). `Connect`, `Validate` and `Close` go to [`Io`]
//!   in the core's order (a close before the connect that replaces it);
//!   `Granted` and `Failed` go to answer tickets, waking their futures
//!   through [`core::task::Waker`]: at once, or, for a backend whose lock
//!   should not be held across a wake (a wake can unpark a thread), kept
//!   for it to take and wake after releasing the lock
//!   ([`Driver::defer_wakes`], [`Driver::take_waker`]).
//! - **The answer table** ([`Ticket`]): one ticket per waiting lease request,
//!   kept until its future picks the answer up (the core reuses its own
//!   waiter slot as soon as the answer is polled).
//! - **The connection table** ([`ConnEntry`]), indexed by `ConnId::index()`:
//!   the object while idle, the tag and keep-alive it was last released
//!   with, whether it is connecting, being validated or leased. Every
//!   backend result (connected, connect failed, validated) is checked
//!   against the slot's whole `ConnId` (index and generation), so a result
//!   that comes back for a connection the pool has given up on is disposed
//!   of, never mixed up with the slot's next connection. A grant and a
//!   release are checked once, by the core (its lease names the slot's
//!   connection: the driver fills a slot at the core's `Connect` and empties
//!   it at its `Close`); a release the core refuses (a second one) has its
//!   object disposed of.
//! - **The abandoned-grant rule.** A connection granted to a request whose
//!   future was dropped goes back with the tag and remaining keep-alive it
//!   had ([`Driver::cancel`]).
//! - **Connect failures.** The backend's classification is kept as it is
//!   (a backend-reported `Timeout` is a timeout, as the core's own), and the
//!   backend's error goes to every request the failure fails
//!   ([`Driver::connect_failed`]).
//! - **The hand-out check rule.** The backend checks a connection when it
//!   is handed out; a dead one goes back with [`Driver::dead_at_handout`]
//!   (closed as `PeerClosed`) and the request asks again, at most
//!   [`Driver::handout_tries`] times.
//! - **Watching** ([`Io::watch`], [`ConnEvent`]). An object coming into the
//!   table (connected, given back for reuse, validated) is watched; what
//!   the backend's watcher saw becomes the core's `peer_closed` (an idle
//!   connection closes at once, one with leases out drains) or
//!   `set_capacity`, at once ([`Driver::watch`], [`Driver::watch_all`]).
//!   The hand-out check gets the connection's idle time
//!   ([`Handout::idle`]).
//! - **Multiplexed connections** ([`Driver::connected_multiplexed`]): the
//!   object stays in the table and each lease gets a handle from
//!   [`Io::share`]; the connection table counts the handles out.
//! - **The timer re-arm rule** ([`Driver::arm_timer`],
//!   [`Driver::poll_timer`]): the timer task is woken only when an input
//!   moves the next deadline earlier than the one it sleeps until.
//! - **The cancel policy** ([`Settings`]).
//!
//! See [`Driver`] for a complete example.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod connect;
mod conns;
mod driver;
mod io;
mod lease;
mod pump;
mod table;
mod tickets;
mod timer;
mod watch;

pub use connect::Unwanted;
pub use conns::{ConnEntry, Handout};
pub use driver::{Driver, Settings, Tables};
pub use io::{Checked, ConnEvent, Io};
pub use lease::{Returned, StartError, Started};
pub use tickets::{Answer, Ticket, TicketId};
