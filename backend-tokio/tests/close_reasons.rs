//! `Connector::close_for`: every connection the pool closes reaches the
//! connector with the reason the pool counted it under, once; objects
//! disposed of without a reason go to `close`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wharf_tokio::{CloseReason, Connector, DrainMode, Lease, Pool};

#[derive(Default)]
struct Recording {
    next: Mutex<u64>,
    /// (connection, reason) per `close_for`.
    closed_for: Arc<Mutex<Vec<(u64, CloseReason)>>>,
    /// Connections handed to `close`.
    closed: Arc<Mutex<Vec<u64>>>,
}

impl Connector<u32> for Recording {
    type Conn = u64;
    type Error = Infallible;
    async fn connect(&self, _route: &u32) -> Result<u64, Infallible> {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        Ok(*n)
    }
    fn close(&self, conn: u64) -> impl Future<Output = ()> + Send + 'static {
        self.closed.lock().unwrap().push(conn);
        async {}
    }
    fn close_for(
        &self,
        conn: u64,
        reason: CloseReason,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.closed_for.lock().unwrap().push((conn, reason));
        async {}
    }
}

async fn eventually(mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("condition not reached in 2 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_close_reaches_the_connector_with_its_reason() {
    let pool = Pool::builder(Recording::default())
        .max_total(4)
        .max_per_route(4)
        .idle_timeout(Duration::from_millis(30))
        .validate_after_inactivity(None)
        .build()
        .unwrap();
    let closed_for = pool.connector().closed_for.clone();

    // Discarded: the lease says the connection is broken.
    let mut a = pool.lease(&1).await.unwrap();
    let id_a = *a;
    Lease::discard(&mut a);
    drop(a);
    // IdleTimeout: back idle, then left alone past the idle timeout.
    let b = pool.lease(&1).await.unwrap();
    let id_b = *b;
    drop(b);
    eventually(|| closed_for.lock().unwrap().len() == 2).await;
    // Drained: leased while the route is drained, closed when it comes back.
    let c = pool.lease(&2).await.unwrap();
    let id_c = *c;
    pool.drain(Some(&2), DrainMode::DrainAndDelete);
    drop(c);
    eventually(|| closed_for.lock().unwrap().len() == 3).await;

    let got = closed_for.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            (id_a, CloseReason::Discarded),
            (id_b, CloseReason::IdleTimeout),
            (id_c, CloseReason::Drained),
        ]
    );
    // Each close counted under the same reason, and `close` got none of
    // them.
    let counters = pool.counters();
    for reason in [
        CloseReason::Discarded,
        CloseReason::IdleTimeout,
        CloseReason::Drained,
    ] {
        assert_eq!(counters.closes_for(reason), 1, "{reason:?}");
    }
    assert!(pool.connector().closed.lock().unwrap().is_empty());
}

/// A connector that only has `close` (the default `close_for`) still gets
/// every connection.
#[derive(Default)]
struct OnlyClose {
    closed: Arc<Mutex<Vec<u64>>>,
}

impl Connector<u32> for OnlyClose {
    type Conn = u64;
    type Error = Infallible;
    async fn connect(&self, route: &u32) -> Result<u64, Infallible> {
        Ok(u64::from(*route))
    }
    fn close(&self, conn: u64) -> impl Future<Output = ()> + Send + 'static {
        self.closed.lock().unwrap().push(conn);
        async {}
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_default_close_for_is_close() {
    let pool = Pool::builder(OnlyClose::default()).build().unwrap();
    let mut l = pool.lease(&7).await.unwrap();
    Lease::discard(&mut l);
    drop(l);
    pool.close().await;
    assert_eq!(*pool.connector().closed.lock().unwrap(), vec![7]);
}
