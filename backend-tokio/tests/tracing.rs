//! The `tracing` feature (issue 18): the events of a scripted run on real
//! loopback sockets, captured by a `Subscriber` of this test binary, name
//! each connect, connect failure (with its reason), reuse, close (with the
//! core's reason), watched peer close and idle route, with the route as the
//! connector renders it; and they agree with the pool's own counters.

mod common;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{request, Opts, Server};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use wharf_test_servers::RefusedPort;
use wharf_tokio::{CloseReason, Lease, Pool, TcpConnector};

/// One captured event: its level, message and fields (as text).
#[derive(Clone, Debug)]
struct Captured {
    level: Level,
    message: String,
    fields: Vec<(String, String)>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Fields<'a>(&'a mut Captured);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let v = format!("{value:?}");
        if field.name() == "message" {
            self.0.message = v;
        } else {
            self.0.fields.push((field.name().to_string(), v));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .fields
            .push((field.name().to_string(), value.to_string()));
    }
}

/// Keeps every event of the `wharf_tokio` target.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl Subscriber for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target().starts_with("wharf_tokio")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut c = Captured {
            level: *e.metadata().level(),
            message: String::new(),
            fields: Vec::new(),
        };
        e.record(&mut Fields(&mut c));
        self.0.lock().unwrap().push(c);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Capture {
    fn named(&self, message: &str) -> Vec<Captured> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|c| c.message == message)
            .cloned()
            .collect()
    }
}

#[test]
fn tracing_events_of_a_scripted_run() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).expect("the only subscriber");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = Server::start(Opts {
            idle_close: Some(Duration::from_millis(100)),
            ..Opts::default()
        })
        .await;
        let route = server.route();
        let name = format!("127.0.0.1:{}", route.1);
        let refused = RefusedPort::new();
        let refused = (String::from("127.0.0.1"), refused.addr().port());
        let pool = Pool::builder(TcpConnector::new()).build().unwrap();

        // A connect, then two reuses.
        for _ in 0..3 {
            let mut l = pool.lease(&route).await.unwrap();
            assert!(request(&mut l).await.unwrap().starts_with("OK"));
        }
        // A discard: closed as Discarded.
        let mut l = pool.lease(&route).await.unwrap();
        Lease::discard(&mut l);
        drop(l);
        // A refused connect.
        assert!(pool.lease(&refused).await.is_err());
        // A connection the server closes while idle: the watch sees it.
        drop(pool.lease(&route).await.unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.stats().connections > 0 {
            assert!(std::time::Instant::now() < deadline, "idle close not seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let k = pool.counters();
        pool.close().await;

        let connects = capture.named("connect");
        let connected = capture.named("connected");
        assert_eq!(connects.len() as u64, k.connects, "{connects:?}");
        assert_eq!(connected.len() as u64, k.connected);
        assert!(connected.iter().all(|c| c.field("route") == Some(&name)));
        assert_eq!(
            connected.len(),
            2,
            "the first connection and the one after the discard"
        );

        let failed = capture.named("connect failed");
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].level, Level::WARN);
        assert_eq!(failed[0].field("reason"), Some("Remote"));
        let refused_name = format!("127.0.0.1:{}", refused.1);
        assert_eq!(failed[0].field("route"), Some(refused_name.as_str()));
        assert!(failed[0]
            .field("error")
            .is_some_and(|e| e.contains("refused")));

        let reuses = capture.named("reuse");
        assert_eq!(reuses.len() as u64, k.reuses, "{reuses:?}");
        assert_eq!(reuses[0].field("served"), Some("2"));

        let closes = capture.named("close");
        let reason = |r: CloseReason| {
            let r = format!("{r:?}");
            closes
                .iter()
                .filter(|c| c.field("reason") == Some(r.as_str()))
                .count() as u64
        };
        assert_eq!(reason(CloseReason::Discarded), 1);
        assert_eq!(
            reason(CloseReason::PeerClosed),
            k.closes_for(CloseReason::PeerClosed)
        );
        assert_eq!(reason(CloseReason::PeerClosed), 1);
        assert_eq!(
            closes.len() as u64,
            k.closes.iter().sum::<u64>(),
            "{closes:?}"
        );

        let watched = capture.named("watched");
        assert!(
            watched
                .iter()
                .any(|c| c.field("event") == Some("PeerClosed")),
            "{watched:?}"
        );
        let idle = capture.named("route idle");
        assert!(idle
            .iter()
            .any(|c| c.field("route") == Some(refused_name.as_str())));
    });
}
