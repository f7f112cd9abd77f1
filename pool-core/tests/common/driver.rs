//! What the differential tests do around the harness: the seed of a run, the
//! kind of a failure, and delta debugging of a failing sequence (std only, so
//! that the fuzz target can include this folder without proptest).

use super::harness::{Check, Op};

/// The seed of a run: `var` (a `u64`) replays one; by default every run
/// explores a new seed (printed on failure).
pub fn seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::process::id() as u64);
            h.finish()
        })
}

/// What kind of failure a verdict is, so that shrinking keeps the failure it
/// started from instead of wandering to another one: a property of
/// `tests/common/props.rs` by its name (`property <name>`), anything else by
/// its check message without the step, the operation and the numbers
/// (handles, times).
pub fn kind(verdict: &str) -> String {
    if let Some(i) = verdict.find("property ") {
        let name = verdict[i..].split(" violated").next().unwrap_or("property");
        return name.to_string();
    }
    // "step N: <op>: <check>" or "end phase, step N: <check>".
    let rest = verdict.find("step ").map_or(verdict, |i| &verdict[i..]);
    let rest = rest.split_once(": ").map_or(rest, |x| x.1);
    let check = if verdict.starts_with("end phase") {
        rest
    } else if rest.split(": ").next().unwrap_or("").contains('{') {
        rest.split_once("}: ").map_or(rest, |x| x.1)
    } else {
        rest.split_once(": ").map_or(rest, |x| x.1)
    };
    check
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(120)
        .collect()
}

/// Delta debugging: drop chunks of operations while the sequence still fails
/// the same way (the same [`kind`]); `run` runs a sequence and gives its
/// verdict.
pub fn shrink(mut ops: Vec<Op>, run: impl Fn(&[Op]) -> Check) -> Vec<Op> {
    let first = run(&ops).err().map(|e| kind(&e));
    let fails = |ops: &[Op]| run(ops).err().is_some_and(|e| Some(kind(&e)) == first);
    let mut chunk = ops.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < ops.len() {
            let mut cand = ops.clone();
            cand.drain(i..(i + chunk).min(ops.len()));
            if fails(&cand) {
                ops = cand;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 {
            return ops;
        }
        chunk = chunk.div_ceil(2);
    }
}
