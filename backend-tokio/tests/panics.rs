//! A connector that panics in one of the pool's tasks (a connect, a
//! validation, a close) is a bug in the connector, but it must not cost the
//! pool a connection slot for good, leave a lease waiting for an answer that
//! never comes, or keep `close()` from completing: the pool treats the
//! panic as the failure of that one step (the panic hook still reports it).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wharf_tokio::{ConnectFailure, Connector, Error, Pool};

/// Route 0: connects panic. Route 1: connects work. With `stale_panics`, a
/// validation panics; with `close_panics`, a close panics at once (`1`) or
/// after it was polled once and yielded (`2`).
#[derive(Default)]
struct Buggy {
    stale_panics: bool,
    close_panics: u8,
    connects: AtomicU32,
    closes: Arc<AtomicU32>,
}

impl Connector<u32> for Buggy {
    type Conn = u32;
    type Error = Infallible;
    async fn connect(&self, route: &u32) -> Result<u32, Infallible> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        if *route == 0 {
            panic!("test connector: connect panics on route 0");
        }
        Ok(*route)
    }
    async fn is_stale(&self, _conn: &mut u32) -> bool {
        tokio::task::yield_now().await;
        if self.stale_panics {
            panic!("test connector: is_stale panics");
        }
        false
    }
    fn close(&self, _conn: u32) -> impl Future<Output = ()> + Send + 'static {
        let how = self.close_panics;
        let closes = self.closes.clone();
        async move {
            if how == 1 {
                panic!("test connector: close panics at its first poll");
            }
            tokio::task::yield_now().await;
            if how == 2 {
                panic!("test connector: close panics after a yield");
            }
            closes.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn pool(c: Buggy) -> Pool<u32, Buggy> {
    Pool::builder(c)
        .max_total(1)
        .max_per_route(1)
        // No connect timeout: nothing but the pool's handling of the panic
        // can end the connect.
        .connect_timeout(None)
        .lease_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A bound on the whole test, so a hang fails instead of blocking the run
/// (every awaited step here ends in milliseconds when the pool is right).
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the pool never answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_panics_fails_its_lease_and_frees_the_slot() {
    let pool = pool(Buggy::default());
    let r = bounded(pool.lease(&0)).await;
    match r {
        Err(Error::ConnectFailed {
            reason: ConnectFailure::Local,
            source: None,
            ..
        }) => {}
        other => panic!("expected a local connect failure, got {other:?}"),
    }
    let s = pool.stats();
    assert_eq!((s.connections, s.connecting), (0, 0), "{s:?}");
    // The pool's only slot is free again: route 1 connects and serves.
    let lease = bounded(pool.lease(&1)).await.unwrap();
    assert_eq!(*lease, 1);
    drop(lease);
    pool.check_invariants().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_that_panics_closes_the_connection_and_the_lease_gets_another() {
    let pool = Pool::builder(Buggy {
        stale_panics: true,
        ..Buggy::default()
    })
    .max_total(1)
    .max_per_route(1)
    .connect_timeout(None)
    .validate_after_inactivity(Duration::from_millis(1))
    .lease_timeout(Duration::from_secs(5))
    .build()
    .unwrap();
    drop(bounded(pool.lease(&1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Idle past `validate_after_inactivity`: validated, the check panics,
    // the connection is closed as stale and a new one is made.
    let lease = bounded(pool.lease(&1)).await.unwrap();
    assert_eq!(*lease, 1);
    assert_eq!(pool.connector().connects.load(Ordering::SeqCst), 2);
    assert_eq!(
        pool.counters().closes_for(wharf_tokio::CloseReason::Stale),
        1
    );
    drop(lease);
    pool.check_invariants().unwrap();
}

async fn close_completes_with(close_panics: u8) {
    let pool = pool(Buggy {
        close_panics,
        ..Buggy::default()
    });
    drop(bounded(pool.lease(&1)).await.unwrap());
    bounded(pool.close()).await;
    assert!(pool.is_closed());
    let s = pool.stats();
    assert_eq!(s.connections, 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_completes_when_a_close_panics_at_its_first_poll() {
    close_completes_with(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_completes_when_a_close_panics_after_yielding() {
    close_completes_with(2).await;
}
