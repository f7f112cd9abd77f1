//! # wharf-testkit
//!
//! Wharf's shared test kit (`publish = false`). Today it holds the core's
//! behaviour **scenarios**, `no_std` and allocation-free, written once and run
//! in two places:
//!
//! - on the host, as the test target `tests/scenarios.rs` (part of
//!   `cargo test --workspace`);
//! - on a Cortex-M4 under QEMU (`mps2-an386`), by `firmware-tests/`, whose
//!   binary only prints what [`run_all`] reports.
//!
//! A scenario drives the core through its public API and asserts what
//! `docs/SEMANTICS.md` says must happen. A failed check returns a [`Failure`]
//! naming the scenario's own source line (the helpers are
//! `#[track_caller]`), and no helper can overflow or panic: more actions
//! than [`Acts`] holds is itself a reported failure.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[macro_use]
mod check;
mod scenarios;

pub use check::{Acts, Failure, Outcome};
pub use scenarios::{failing_example, run_all, storage_sizes, Scenario, SCENARIOS};
