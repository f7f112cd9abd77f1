//! # wharf
//!
//! One connection-pool state machine for microcontrollers and servers.
//!
//! This facade re-exports [`wharf_core`] (the sans-I/O pool: `#![no_std]`, no
//! allocation, no clock) at its root, and the driver both backends run
//! around it as [`driver`] (for a backend of your own). The backends arrive
//! behind features: `tokio` (servers, real TCP) and `embassy`
//! (microcontrollers, embassy-net); `defmt` turns on defmt support, `alloc`
//! runtime-sized storage.
//!
//! ```
//! use wharf::{Config, LeaseOutcome, Pool, Storage, Instant};
//! let mut storage: Storage<u16, 8, 4, 8, 8> = Storage::new();
//! let mut pool = Pool::new(&mut storage, Config { max_total: 8, ..Config::default() }).unwrap();
//! let out = pool.lease(&443, None, Instant::ZERO, None).unwrap();
//! assert!(matches!(out, LeaseOutcome::Queued(_)));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use wharf_core::*;

/// The driver around the core (action pump, answer tickets, connection
/// table), re-exported from [`wharf_driver`]: `#![no_std]`, no allocation.
pub use wharf_driver as driver;

/// The tokio backend (feature `tokio`): an async pool over tokio sockets,
/// re-exported from [`wharf_tokio`].
#[cfg(feature = "tokio")]
pub use wharf_tokio as tokio;

/// The embassy backend (feature `embassy`): a pool over embassy-net sockets
/// for microcontrollers, re-exported from [`wharf_embassy`].
#[cfg(feature = "embassy")]
pub use wharf_embassy as embassy;

/// The README's code, compiled and run as doctests with `--features
/// tokio,embassy` (`.ci/steps/29-readme.sh`): the tokio and core snippets
/// run, the embassy snippet compiles.
#[cfg(all(doctest, feature = "tokio", feature = "embassy"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
