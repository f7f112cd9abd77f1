//! The `metrics` feature (issue 18): after a scripted run on real loopback
//! sockets, every gauge, counter and the lease-wait histogram a recorder
//! (metrics-util's `DebuggingRecorder`, installed as the global recorder of
//! this test binary) holds equals the pool's own stats and counters.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{request, Opts, Server};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use wharf_test_servers::RefusedPort;
use wharf_tokio::{CloseReason, ConnectFailure, Lease, LeaseOptions, Pool, TcpConnector};

/// `(kind, name, sorted labels)` -> value.
type Seen = HashMap<(MetricKind, String, Vec<(String, String)>), DebugValue>;

fn label_set(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

fn get<'a>(
    seen: &'a Seen,
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> &'a DebugValue {
    seen.get(&(kind, name.to_string(), label_set(labels)))
        .unwrap_or_else(|| panic!("{name} {labels:?} not reported"))
}

fn counter(seen: &Seen, name: &str, labels: &[(&str, &str)]) -> u64 {
    match get(seen, MetricKind::Counter, name, labels) {
        DebugValue::Counter(v) => *v,
        v => panic!("{name}: {v:?}"),
    }
}

fn gauge(seen: &Seen, name: &str, labels: &[(&str, &str)]) -> u32 {
    match get(seen, MetricKind::Gauge, name, labels) {
        DebugValue::Gauge(v) => v.0 as u32,
        v => panic!("{name}: {v:?}"),
    }
}

#[test]
fn metrics_match_the_pools_own_counts() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = Server::start(Opts::default()).await;
        let route = server.route();
        let refused = RefusedPort::new();
        let refused = (String::from("127.0.0.1"), refused.addr().port());
        let pool = Pool::builder(TcpConnector::new())
            .max_total(3)
            .max_per_route(2)
            .metrics_name("scripted")
            .metrics_interval(None)
            .build()
            .unwrap();
        let mut completed = 0u64;

        // Three leases one after the other: one connect, two reuses.
        for _ in 0..3 {
            let mut l = pool.lease(&route).await.unwrap();
            completed += 1;
            assert!(request(&mut l).await.unwrap().starts_with("OK"));
        }
        // A connect refused.
        let e = pool.lease(&refused).await.unwrap_err();
        completed += 1;
        assert!(matches!(
            e,
            wharf_tokio::Error::ConnectFailed {
                reason: ConnectFailure::Remote,
                ..
            }
        ));
        // Both connections of the route out: a third lease times out.
        let a = pool.lease(&route).await.unwrap();
        let mut b = pool.lease(&route).await.unwrap();
        completed += 2;
        let quick = LeaseOptions::new().timeout(Duration::from_millis(30));
        assert!(pool
            .lease_with(&route, quick)
            .await
            .unwrap_err()
            .is_timeout());
        completed += 1;
        // One discarded (closes), one kept out while the gauges are read.
        Lease::discard(&mut b);
        drop(b);
        // A lease future dropped while it waits (a cancel, no wait recorded).
        {
            drop(pool.lease(&route)); // never polled: not even a waiter
            let held = pool.lease(&route).await.unwrap();
            completed += 1;
            let mut waiting = Box::pin(pool.lease(&route));
            assert!(futures_poll_once(waiting.as_mut()).await.is_none());
            drop(waiting);
            drop(held);
        }

        pool.export_metrics();
        let stats = pool.stats();
        let counters = pool.counters();
        let rs = pool.route_stats(&route).unwrap();
        assert_eq!(stats.leased, 1, "{stats:?}");
        assert!(counters.reuses >= 2 && counters.timeouts == 1 && counters.cancels == 1);
        assert_eq!(counters.closes_for(CloseReason::Discarded), 1);

        let mut seen = Seen::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            labels.sort();
            seen.insert((kind, key.name().to_string(), labels), value);
        }
        let p = ("pool", "scripted");

        // Gauges: connections by state, leased, pending, per route.
        let state = |s| gauge(&seen, "wharf_connections", &[p, ("state", s)]);
        assert_eq!(state("connecting"), stats.connecting);
        assert_eq!(state("idle"), stats.idle);
        assert_eq!(
            state("busy"),
            stats.connections - stats.connecting - stats.idle
        );
        assert_eq!(state("closing"), stats.closing);
        assert_eq!(gauge(&seen, "wharf_leased", &[p]), stats.leased);
        assert_eq!(gauge(&seen, "wharf_pending", &[p]), stats.pending);
        let r = ("route", format!("127.0.0.1:{}", route.1));
        let r = (r.0, r.1.as_str());
        assert_eq!(
            gauge(&seen, "wharf_route_connections", &[p, r]),
            rs.connections
        );
        assert_eq!(gauge(&seen, "wharf_route_idle", &[p, r]), rs.idle);
        assert_eq!(gauge(&seen, "wharf_route_leased", &[p, r]), rs.leased);
        assert_eq!(gauge(&seen, "wharf_route_pending", &[p, r]), rs.pending);
        assert_eq!((rs.connections, rs.leased), (2, 1), "{rs:?}");

        // Counters: the pool's own.
        let c = |name| counter(&seen, name, &[p]);
        assert_eq!(c("wharf_connects_total"), counters.connects);
        assert_eq!(c("wharf_grants_total"), counters.grants);
        assert_eq!(c("wharf_reuses_total"), counters.reuses);
        assert_eq!(c("wharf_validations_total"), counters.validations);
        assert_eq!(c("wharf_timeouts_total"), counters.timeouts);
        assert_eq!(c("wharf_overflows_total"), counters.overflows);
        assert_eq!(c("wharf_cancels_total"), counters.cancels);
        for (reason, f) in [
            ("timeout", ConnectFailure::Timeout),
            ("local", ConnectFailure::Local),
            ("remote", ConnectFailure::Remote),
        ] {
            let v = counter(
                &seen,
                "wharf_connect_failures_total",
                &[p, ("reason", reason)],
            );
            assert_eq!(v, counters.connect_failures_for(f), "{reason}");
        }
        assert_eq!(
            counter(
                &seen,
                "wharf_connect_failures_total",
                &[p, ("reason", "remote")]
            ),
            1
        );
        for (reason, r) in [
            ("discarded", CloseReason::Discarded),
            ("idle_timeout", CloseReason::IdleTimeout),
            ("peer_closed", CloseReason::PeerClosed),
            ("total_limit", CloseReason::TotalLimit),
        ] {
            let v = counter(&seen, "wharf_closes_total", &[p, ("reason", reason)]);
            assert_eq!(v, counters.closes_for(r), "{reason}");
        }
        let all_closes: u64 = seen
            .iter()
            .filter(|((k, n, _), _)| *k == MetricKind::Counter && n == "wharf_closes_total")
            .map(|(_, v)| match v {
                DebugValue::Counter(v) => *v,
                _ => 0,
            })
            .sum();
        assert_eq!(all_closes, counters.closes.iter().sum::<u64>());

        // The lease-wait histogram: one value per completed lease future;
        // the timed-out one waited its 30 ms.
        let DebugValue::Histogram(waits) = get(
            &seen,
            MetricKind::Histogram,
            "wharf_lease_wait_seconds",
            &[p],
        ) else {
            panic!("not a histogram")
        };
        assert_eq!(waits.len() as u64, completed, "{waits:?}");
        assert!(waits.iter().any(|w| w.0 >= 0.030), "{waits:?}");
        assert!(waits.iter().all(|w| w.0 >= 0.0 && w.0 < 5.0), "{waits:?}");
        drop(a);
    });
}

/// Polls a future once: `Some` if it completed.
async fn futures_poll_once<F: std::future::Future + ?Sized>(
    mut f: std::pin::Pin<&mut F>,
) -> Option<F::Output> {
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}
