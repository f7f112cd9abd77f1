//! Cooperative scheduling: leases granted at once still spend the task's
//! tokio budget (one unit per 128 lease polls on a thread), as tokio's own
//! resources (a semaphore permit, a channel message, a socket read) do, so
//! a task that only leases and releases in a loop yields to the runtime
//! within 16,384 leases instead of starving every other task and timer on
//! its worker for good.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use wharf_tokio::{Connector, LeaseOptions, Pool, Tag};

struct Numbers;

impl Connector<u32> for Numbers {
    type Conn = u64;
    type Error = Infallible;
    async fn connect(&self, route: &u32) -> Result<u64, Infallible> {
        Ok(u64::from(*route))
    }
}

fn pool() -> Pool<u32, Numbers> {
    Pool::builder(Numbers)
        .max_total(4)
        .max_per_route(4)
        .validate_after_inactivity(None)
        .build()
        .unwrap()
}

/// Leases `n` times on one task (each granted at once); whether a task
/// spawned before the loop ran meanwhile.
async fn other_task_ran_during(pool: &Pool<u32, Numbers>, n: u32) -> bool {
    drop(pool.lease(&1).await.unwrap());
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    tokio::spawn(async move { flag.store(true, Ordering::Relaxed) });
    for _ in 0..n {
        std::hint::black_box(*pool.lease(&1).await.unwrap());
    }
    ran.load(Ordering::Relaxed)
}

/// Leases and releases on one task until another task on the same
/// current-thread runtime has run; returns how many leases that took.
async fn leases_until_other_task_ran(pool: &Pool<u32, Numbers>, opts: LeaseOptions) -> u64 {
    // The connection exists and is idle before the loop: every lease in the
    // loop is granted at its first poll, with nothing to wait for.
    drop(pool.lease(&1).await.unwrap());
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    tokio::spawn(async move { flag.store(true, Ordering::Relaxed) });
    // Without budget the loop never returns Pending, the spawned task never
    // runs, and the loop stops at the cap.
    const CAP: u64 = 1_000_000;
    let mut n = 0;
    while !ran.load(Ordering::Relaxed) && n < CAP {
        let lease = pool.lease_with(&1, opts).await.unwrap();
        std::hint::black_box(*lease);
        n += 1;
    }
    assert!(
        ran.load(Ordering::Relaxed),
        "the other task never ran in {CAP} leases granted at once"
    );
    n
}

#[tokio::test(flavor = "current_thread")]
async fn a_loop_of_leases_granted_at_once_yields_to_other_tasks() {
    let pool = pool();
    let n = leases_until_other_task_ran(&pool, LeaseOptions::new()).await;
    // tokio's budget is 128 units per task poll, and a lease spends one
    // unit per 128 polls on its thread.
    assert!(n <= 128 * 128 + 128, "{n} leases before yielding");
    assert_eq!(pool.stats().leased, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn cooperative_false_spends_no_budget() {
    // The opt-out does what it says: 40,000 leases granted at once, and the
    // task never yielded. The default pool yields within them.
    let off = Pool::builder(Numbers)
        .max_total(4)
        .cooperative(false)
        .validate_after_inactivity(None)
        .build()
        .unwrap();
    assert!(!other_task_ran_during(&off, 40_000).await);
    assert!(other_task_ran_during(&pool(), 40_000).await);
}

#[tokio::test(flavor = "current_thread")]
async fn tagged_and_zero_timeout_leases_spend_the_budget_too() {
    let pool = pool();
    let opts = LeaseOptions::new()
        .tag(Tag(7))
        .timeout(std::time::Duration::ZERO);
    let n = leases_until_other_task_ran(&pool, opts).await;
    assert!(n <= 128 * 128 + 128, "{n} leases before yielding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_fires_while_every_worker_loops_on_warm_leases() {
    // Both workers loop on warm leases of their own route (never queued).
    // A task sleeping 5 ms must still run and wake: without budget neither
    // worker ever yields, so the task is never polled and its timer never
    // fires.
    let pool = Pool::builder(Numbers)
        .max_total(2)
        .max_per_route(1)
        .validate_after_inactivity(None)
        .build()
        .unwrap();
    drop(pool.lease(&1).await.unwrap());
    drop(pool.lease(&2).await.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = [1, 2]
        .into_iter()
        .map(|route| {
            let (pool, stop) = (pool.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let lease = pool.lease(&route).await.unwrap();
                    std::hint::black_box(*lease);
                }
            })
        })
        .collect();
    // Give the loops the workers before the sleeper is spawned.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let woke = Arc::new(AtomicBool::new(false));
    let (w, s) = (woke.clone(), stop.clone());
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        w.store(true, Ordering::Relaxed);
        s.store(true, Ordering::Relaxed);
    });
    // A hang guard, not a speed check: after 20 s the loops are stopped so
    // the test ends and says what happened instead of hanging.
    let guard = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(20));
        guard.store(true, Ordering::Relaxed);
    });
    for l in loops {
        l.await.unwrap();
    }
    assert!(
        woke.load(Ordering::Relaxed),
        "the sleeping task never ran while the workers looped on leases"
    );
}
