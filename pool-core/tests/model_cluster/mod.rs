//! The cluster model: an independent model of `Cluster` (§12, `cluster.rs`)
//! and its differential harness (`harness.rs`), on top of the shared reference
//! pool model of `tests/model/mod.rs` (which carries the host hooks of §12).

#[path = "../model/mod.rs"]
mod pool;

pub use pool::*;

pub mod cluster;
pub mod harness;
