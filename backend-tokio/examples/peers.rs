//! Wharf against the pools users would pick instead, in one run.
//!
//! `cargo run --release -p wharf-tokio --example peers`
//!
//! Wharf, deadpool and bb8 hold the same no-op connection (a `u64`) on the same
//! tokio runtime (2 worker threads). For each configuration (pool size, tasks)
//! every task does get + drop in a loop, 2^20 operations in total; the pools
//! run interleaved per configuration, 5 rounds (`WHARF_PEERS_ROUNDS`), and the
//! median round counts (the machines are shared and noisy: compare ratios
//! within one run). Context switches of the process (all threads, from
//! procfs) are counted per pool and reported per 2^20 operations. Every
//! pool is set up for the same work: no check on checkout, no timeouts armed
//! on the fast path.
//!
//! Each pool makes its connections before the timed loop
//! (`WHARF_PEERS_COLD=1`: it does not, see [`warm`]); `WHARF_PEERS_COUNTERS=1`
//! prints Wharf's grants and queued leases of each run to stderr.
//!
//! For profiling: `WHARF_PEERS_ONLY=wharf:8:1` runs one pool and one
//! configuration, `WHARF_PEERS_OPS=65536` fewer operations (e.g. under
//! `valgrind --tool=callgrind`).
//!
//! Prints `{"pool":..,"size":..,"tasks":..,"ops_per_s":..,"ctx_switches_per_2^20":..}`
//! per row, then
//! `{"min_ratio_vs_best_peer": min over configurations of wharf / max(deadpool, bb8),
//! "uncooperative": the same for wharf-uncooperative}`.
//!
//! `wharf` is the pool as built by default: its lease future spends tokio's
//! cooperative budget, as deadpool's semaphore does (a task yields every
//! 128 gets); `wharf-uncooperative` is built with `cooperative(false)` and,
//! as bb8's warm `get`, never yields.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_tokio::{Connector, Pool};

fn ops() -> usize {
    std::env::var("WHARF_PEERS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20)
}
const CONFIGS: [(u32, usize); 5] = [(8, 1), (8, 8), (8, 32), (16, 32), (32, 32)];
const ROUNDS: usize = 5;

struct NoopConnector;

impl Connector<u32> for NoopConnector {
    type Conn = u64;
    type Error = io::Error;
    async fn connect(&self, _route: &u32) -> io::Result<u64> {
        Ok(0)
    }
}

struct DeadpoolManager;

impl deadpool::managed::Manager for DeadpoolManager {
    type Type = u64;
    type Error = Infallible;
    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

struct Bb8Manager;

impl bb8::ManageConnection for Bb8Manager {
    type Connection = u64;
    type Error = Infallible;
    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn is_valid(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

/// Runs `tasks` tasks sharing `OPS` get+drop operations; returns ops/s.
async fn drive<F, Fut>(tasks: usize, get_drop: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let get_drop = Arc::new(get_drop);
    let per_task = ops() / tasks;
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let f = get_drop.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    f().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
    (per_task * tasks) as f64 / start.elapsed().as_secs_f64()
}

async fn wharf(size: u32, tasks: usize, cooperative: bool) -> f64 {
    let pool = Pool::builder(NoopConnector)
        .cooperative(cooperative)
        .max_total(size)
        .max_per_route(size)
        .max_pending(1024)
        .validate_after_inactivity(None)
        .idle_timeout(None)
        .build()
        .expect("pool");
    if warm() {
        let mut held = Vec::new();
        for _ in 0..size {
            held.push(pool.lease(&0).await.expect("lease"));
        }
    }
    let counted = pool.clone();
    let ops = drive(tasks, move || {
        let pool = pool.clone();
        async move {
            let lease = pool.lease(&0).await.expect("lease");
            std::hint::black_box(*lease);
        }
    })
    .await;
    if std::env::var_os("WHARF_PEERS_COUNTERS").is_some() {
        let c = counted.counters();
        eprintln!("wharf counters: grants {} queued {}", c.grants, c.queued);
    }
    ops
}

async fn deadpool(size: u32, tasks: usize) -> f64 {
    let pool: deadpool::managed::Pool<DeadpoolManager> =
        deadpool::managed::Pool::builder(DeadpoolManager)
            .max_size(size as usize)
            .build()
            .expect("pool");
    if warm() {
        let mut held = Vec::new();
        for _ in 0..size {
            held.push(pool.get().await.map_err(|_| ()).expect("get"));
        }
    }
    drive(tasks, move || {
        let pool = pool.clone();
        async move {
            let obj = pool.get().await.map_err(|_| ()).expect("get");
            std::hint::black_box(*obj);
        }
    })
    .await
}

async fn bb8(size: u32, tasks: usize) -> f64 {
    let pool = bb8::Pool::builder()
        .max_size(size)
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(30))
        .build(Bb8Manager)
        .await
        .expect("pool");
    if warm() {
        let mut held = Vec::new();
        for _ in 0..size {
            held.push(pool.get().await.expect("get"));
        }
    }
    drive(tasks, move || {
        let pool = pool.clone();
        async move {
            let conn = pool.get().await.expect("get");
            std::hint::black_box(*conn);
        }
    })
    .await
}

/// Context switches of the whole process so far (every thread's voluntary and
/// involuntary switches, from `/proc/self/task/*/status`; 0 where there is no
/// procfs).
fn context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut n = 0;
    for t in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                n += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    n
}

/// Every pool makes its `size` connections before the timed loop (each
/// connection leased and held, then all dropped), unless `WHARF_PEERS_COLD`
/// is set: the loop then measures the steady state, not how a pool starts
/// under a load that saturates it. Cold, 32 tasks that arrive while Wharf's
/// first connections are being made queue FIFO, each release hands its
/// connection to the oldest waiter, and the load (every task leases again at
/// once) keeps the queue from ever draining: a FIFO hand-off convoy, every
/// get queued (docs/PERFORMANCE.md). deadpool's semaphore also serves
/// waiters in FIFO order; bb8 lets a running task take an idle connection
/// before a woken waiter does.
fn warm() -> bool {
    std::env::var_os("WHARF_PEERS_COLD").is_none()
}

/// Rounds per configuration: each round runs the three pools one after the
/// other (interleaved, so a burst of load from elsewhere hits all three), and
/// the median round counts.
fn rounds() -> usize {
    std::env::var("WHARF_PEERS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(only) = std::env::var("WHARF_PEERS_ONLY") {
        let mut it = only.split(':');
        let (pool, size, tasks) = (it.next(), it.next(), it.next());
        let size: u32 = size.and_then(|s| s.parse().ok()).unwrap_or(8);
        let tasks: usize = tasks.and_then(|s| s.parse().ok()).unwrap_or(1);
        let ops = match pool {
            Some("deadpool") => rt.block_on(deadpool(size, tasks)),
            Some("bb8") => rt.block_on(bb8(size, tasks)),
            Some("wharf-uncooperative") => rt.block_on(wharf(size, tasks, false)),
            _ => rt.block_on(wharf(size, tasks, true)),
        };
        println!(
            r#"{{"pool":"{}","size":{size},"tasks":{tasks},"ops_per_s":{ops:.0}}}"#,
            pool.unwrap_or("wharf")
        );
        return;
    }
    let names = ["wharf", "deadpool", "bb8", "wharf-uncooperative"];
    let mut min_ratio = f64::INFINITY;
    let mut min_ratio_uncoop = f64::INFINITY;
    for (size, tasks) in CONFIGS {
        let mut ops: [Vec<f64>; 4] = Default::default();
        let mut switches = [0u64; 4];
        for _ in 0..rounds() {
            for (i, name) in names.iter().enumerate() {
                let before = context_switches();
                let r = match *name {
                    "wharf" => rt.block_on(wharf(size, tasks, true)),
                    "wharf-uncooperative" => rt.block_on(wharf(size, tasks, false)),
                    "deadpool" => rt.block_on(deadpool(size, tasks)),
                    _ => rt.block_on(bb8(size, tasks)),
                };
                switches[i] += context_switches() - before;
                ops[i].push(r);
            }
        }
        let med: Vec<f64> = ops.iter().map(|v| median(v.clone())).collect();
        for (i, name) in names.iter().enumerate() {
            // Context switches per 2^20 operations, averaged over the rounds.
            let per = switches[i] as f64 * (1u64 << 20) as f64 / (rounds() * self::ops()) as f64;
            println!(
                r#"{{"pool":"{name}","size":{size},"tasks":{tasks},"ops_per_s":{:.0},"ctx_switches_per_2^20":{per:.0}}}"#,
                med[i]
            );
        }
        min_ratio = min_ratio.min(med[0] / med[1].max(med[2]));
        min_ratio_uncoop = min_ratio_uncoop.min(med[3] / med[1].max(med[2]));
    }
    println!(
        r#"{{"min_ratio_vs_best_peer":{min_ratio:.2},"uncooperative":{min_ratio_uncoop:.2}}}"#
    );
}
