//! What the `metrics` feature costs on the warm path: get + drop of an idle
//! no-op connection from one task, 2^20 times, median of 7 rounds.
//!
//! ```sh
//! cargo run --release -p wharf-tokio --example metrics_cost                         # off
//! cargo run --release -p wharf-tokio --example metrics_cost --features metrics      # on, no recorder
//! WHARF_RECORDER=1 cargo run --release -p wharf-tokio --example metrics_cost --features metrics
//! ```
//!
//! With `WHARF_RECORDER=1` metrics-util's `DebuggingRecorder` is installed,
//! so every lease records its wait into a real histogram (a lock-free
//! bucket). Instructions per operation (repeatable, unlike time on a shared
//! machine): run under `valgrind --tool=callgrind` with `WHARF_COST_OPS=65536
//! WHARF_COST_ROUNDS=1` and with twice the operations; the difference over
//! 65,536. Prints `metrics_cost: feature=<on|off> recorder=<yes|no> ns_per_op=<n>`.

use std::convert::Infallible;
use std::time::Instant;

use wharf_tokio::{Connector, Pool};

struct Noop;

impl Connector<u8> for Noop {
    type Conn = u64;
    type Error = Infallible;
    async fn connect(&self, _: &u8) -> Result<u64, Infallible> {
        Ok(0)
    }
}

fn main() {
    let recorder = std::env::var("WHARF_RECORDER").is_ok_and(|v| v == "1");
    #[cfg(feature = "metrics")]
    if recorder {
        metrics_util::debugging::DebuggingRecorder::new()
            .install()
            .expect("recorder");
    }
    let env = |k: &str, d: u32| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    // For callgrind: fewer operations and one round.
    let ops: u32 = env("WHARF_COST_OPS", 1 << 20);
    let n_rounds = env("WHARF_COST_ROUNDS", 7) as usize;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rounds: Vec<f64> = rt.block_on(async {
        let pool = Pool::builder(Noop)
            .max_total(1)
            .validate_after_inactivity(None)
            .lease_timeout(None)
            .build()
            .unwrap();
        drop(pool.lease(&0).await.unwrap());
        let mut rounds = Vec::new();
        for _ in 0..n_rounds {
            let t = Instant::now();
            for _ in 0..ops {
                drop(pool.lease(&0).await.unwrap());
            }
            rounds.push(t.elapsed().as_nanos() as f64 / f64::from(ops));
        }
        rounds
    });
    rounds.sort_by(|a, b| a.total_cmp(b));
    println!(
        "metrics_cost: feature={} recorder={} ns_per_op={:.1} (rounds {:?})",
        if cfg!(feature = "metrics") {
            "on"
        } else {
            "off"
        },
        if recorder && cfg!(feature = "metrics") {
            "yes"
        } else {
            "no"
        },
        rounds[rounds.len() / 2],
        rounds
            .iter()
            .map(|r| (r * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
}
