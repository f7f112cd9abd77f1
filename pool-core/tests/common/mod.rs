//! What the differential tests share: the reference models, the one operation
//! language and the one harness that drives the core and the models side by
//! side, and the properties that do not come from the model.
//!
//! - `model.rs`: the reference pool model (written from `docs/SEMANTICS.md`,
//!   never from the core's code), with the host hooks of §12.
//! - `cluster.rs`: the reference cluster model (§12), on top of the pool model.
//! - `harness.rs`: the operation language [`harness::Op`] (pool operations and
//!   cluster operations) and the harness, with an optional cluster layer.
//! - `props.rs`: the properties checked in the same runs (liveness, fairness,
//!   bounded work, churn, "never").
//! - `driver.rs`: around the harness: a run's seed, a failure's kind, delta
//!   debugging of a failing sequence.
//!
//! Used by the `model`, `model_cluster` and `regressions` tests (each
//! `tests/<name>/main.rs` includes this folder with
//! `#[path = "../common/mod.rs"] mod common;`) and by the fuzz target
//! (`fuzz/fuzz_targets/ops.rs`). Cargo does not build `tests/common/` as a
//! test of its own (it has no `main.rs`). Each user uses a part of it.

#![allow(dead_code)]

pub mod cluster;
pub mod driver;
pub mod harness;
pub mod model;
pub mod props;
