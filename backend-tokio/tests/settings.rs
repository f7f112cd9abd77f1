//! Every setting has one meaning, checked at build (issue 16): each bad
//! setting is a typed error naming it, "do not wait" is a zero lease
//! timeout, and the core's new settings (lifetime jitter, strict tags,
//! close on unhealthy, live limits, a seed) reach the pool, on real
//! loopback sockets.

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{request, Opts, Server};
use tokio::net::TcpStream;
use wharf_tokio::core::ConfigError as Core;
use wharf_tokio::{
    CloseReason, ConfigError, Connector, Error, Lease, LeaseOptions, Pool, RouteConfig, Tag,
    TcpConnector,
};

type Route = (String, u16);

fn builder() -> wharf_tokio::Builder<Route, TcpConnector> {
    Pool::builder(TcpConnector::new())
}

fn config_error<T>(r: Result<T, Error>) -> (ConfigError, String) {
    match r {
        Err(Error::Config(e)) => {
            let text = Error::<io::Error>::Config(e.clone()).to_string();
            (e, text)
        }
        Err(e) => panic!("expected a configuration error, got {e}"),
        Ok(_) => panic!("expected a configuration error, the pool was built"),
    }
}

#[tokio::test]
async fn no_waiting_room_without_warm_up_never_serves() {
    let (e, text) = config_error(builder().max_pending(0).build());
    assert_eq!(e, ConfigError::Pool(Core::NeverServes));
    assert!(
        text.contains("max_pending") && text.contains("min_idle_per_route"),
        "{text}"
    );

    // With warm-up it builds, and a lease takes a warmed connection without
    // waiting; with none ready it overflows at once (nothing may wait).
    let server = Server::start(Opts::default()).await;
    let pool = builder()
        .max_pending(0)
        .min_idle_per_route(1)
        // A route is kept (and warmed) while it carries a setting.
        .route(
            server.route(),
            RouteConfig {
                min_idle: Some(1),
                ..RouteConfig::default()
            },
        )
        .build()
        .unwrap();
    let route = server.route();
    let first = pool.lease(&route).await;
    assert!(matches!(first, Err(Error::Overflow { .. })), "{first:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.stats().idle == 0 {
        assert!(
            Instant::now() < deadline,
            "warm-up never opened a connection"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut l = pool.lease(&route).await.unwrap();
    assert!(request(&mut l).await.unwrap().starts_with("OK"));
}

#[tokio::test]
async fn zero_lease_timeout_means_do_not_wait() {
    let server = Server::start(Opts::default()).await;
    let route = server.route();
    let pool = builder().lease_timeout(Duration::ZERO).build().unwrap();

    // Nothing ready: fails at once, typed, and nothing changed (no route,
    // no connect).
    let e = pool.lease(&route).await.unwrap_err();
    assert!(
        matches!(&e, Error::Timeout { waited, .. } if waited.is_zero()),
        "{e:?}"
    );
    assert!(e.is_timeout());
    let text = e.to_string();
    assert!(
        text.contains("no connection was ready") && text.contains("does not wait"),
        "{text}"
    );
    assert_eq!(pool.counters().connects, 0);
    assert!(pool.route_stats(&route).is_none());

    // A lease that may wait opens a connection; once it is idle a lease that
    // does not wait gets it.
    let waits = LeaseOptions::new().timeout(Duration::from_secs(5));
    drop(pool.lease_with(&route, waits).await.unwrap());
    let mut l = pool.lease(&route).await.unwrap();
    assert!(request(&mut l).await.unwrap().starts_with("OK"));
    // ... and while it is out, the next one fails at once.
    let e = pool.lease(&route).await.unwrap_err();
    assert!(matches!(&e, Error::Timeout { waited, .. } if waited.is_zero()));
    drop(l);
    assert_eq!(pool.counters().connects, 1);
    assert_eq!(pool.stats().pending, 0);

    // The same for one lease on a pool that waits by default.
    let pool = builder().build().unwrap();
    let now = LeaseOptions::new().timeout(Duration::ZERO);
    assert!(pool.lease_with(&route, now).await.unwrap_err().is_timeout());
    drop(pool.lease(&route).await.unwrap());
    assert!(pool.lease_with(&route, now).await.is_ok());
}

#[tokio::test]
async fn zero_connect_idle_and_lifetime_stay_errors() {
    for b in [
        builder().connect_timeout(Duration::ZERO),
        builder().idle_timeout(Duration::ZERO),
        builder().max_lifetime(Duration::ZERO),
    ] {
        let (e, text) = config_error(b.build());
        assert_eq!(e, ConfigError::Pool(Core::ZeroTimeout));
        assert!(
            text.contains("timeouts and lifetimes must be positive"),
            "{text}"
        );
    }
    // `None` is the way to say "unbounded".
    assert!(builder()
        .connect_timeout(None)
        .idle_timeout(None)
        .build()
        .is_ok());
}

#[tokio::test]
async fn too_many_routes_is_a_build_error_naming_the_setting() {
    let r = |p: u16| (String::from("127.0.0.1"), p);
    let b = builder()
        .max_routes(2)
        .route(r(1), RouteConfig::default())
        .route(r(2), RouteConfig::default())
        .route(r(3), RouteConfig::default());
    let (e, text) = config_error(b.build());
    assert_eq!(
        e,
        ConfigError::TooManyRoutes {
            configured: 3,
            max_routes: 2
        }
    );
    assert!(
        text.contains("max_routes") && !text.contains("lease"),
        "{text}"
    );
    // The same route twice is one route.
    let b = builder()
        .max_routes(1)
        .route(r(1), RouteConfig::default())
        .route(r(1), RouteConfig::default());
    assert!(b.build().is_ok());
    let (e, text) = config_error(builder().max_routes(0).build());
    assert!(
        matches!(
            e,
            ConfigError::Setting {
                setting: "max_routes",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        text.starts_with("invalid pool configuration: max_routes"),
        "{text}"
    );
}

#[tokio::test]
async fn huge_storage_is_a_typed_error_never_an_abort() {
    // Refused from the types' sizes before anything is allocated.
    let started = Instant::now();
    let (e, text) = config_error(builder().max_total(1 << 26).build());
    let ConfigError::StorageTooLarge {
        bytes,
        limit,
        conns,
        ..
    } = e
    else {
        panic!("{e:?}");
    };
    assert_eq!(limit, wharf_tokio::DEFAULT_MAX_STORAGE);
    assert_eq!(conns, (1 << 26) + 2);
    assert!(bytes > limit);
    assert!(
        text.contains("max_total") && text.contains("max_storage"),
        "{text}"
    );
    // The same through the ceiling of live limits, and for waiters.
    let (e, _) = config_error(builder().max_total_ceiling(1 << 26).build());
    assert!(matches!(e, ConfigError::StorageTooLarge { .. }));
    let (e, _) = config_error(builder().max_pending(u32::MAX).build());
    assert!(matches!(e, ConfigError::StorageTooLarge { .. }));
    // A budget of its own: a small one refuses the defaults.
    let (e, _) = config_error(builder().max_storage(1024).build());
    assert!(matches!(e, ConfigError::StorageTooLarge { .. }));
    assert!(started.elapsed() < Duration::from_secs(30));

    // Past the budget check, an allocation the allocator refuses is
    // `OutOfMemory` (the core's `try_reserve`). 2^30 - 8 connection slots
    // are far more than this machine's memory; with the kernel's heuristic
    // overcommit (mode 0, the default) or none (mode 2) the reservation
    // fails. Under "always overcommit" (mode 1) it would succeed and the
    // pages would be touched, so that mode is not exercised.
    let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if matches!(mode.trim(), "0" | "2") {
        let r = builder()
            .max_storage(usize::MAX)
            .max_total((1 << 30) - 8)
            .build();
        let (e, text) = config_error(r);
        assert_eq!(e, ConfigError::Pool(Core::OutOfMemory));
        assert!(text.contains("could not be allocated"), "{text}");
    } else {
        eprintln!("overcommit mode {mode:?}: OutOfMemory not exercised");
    }
}

#[tokio::test]
async fn other_builder_ranges() {
    let (e, _) = config_error(builder().max_lifetime_jitter(101).build());
    assert_eq!(e, ConfigError::Pool(Core::BadJitter));
    assert!(builder().max_lifetime_jitter(100).build().is_ok());
    let (e, _) = config_error(builder().max_total(8).max_total_ceiling(4).build());
    assert!(matches!(
        e,
        ConfigError::Setting {
            setting: "max_total_ceiling",
            ..
        }
    ));
    let (e, _) = config_error(builder().preconnect_ratio(0.5).build());
    assert_eq!(e, ConfigError::Pool(Core::BadPreconnectRatio));
    let (e, _) = config_error(builder().max_total(0).build());
    assert_eq!(e, ConfigError::Pool(Core::ZeroMaxTotal));
}

#[tokio::test]
async fn live_limits_raise_and_lower() {
    let server = Server::start(Opts::default()).await;
    let route = server.route();
    let pool = builder()
        .max_total(1)
        .max_per_route(1)
        .max_total_ceiling(4)
        .build()
        .unwrap();
    let a = pool.lease(&route).await.unwrap();
    // At the limit: a second lease waits ...
    let second = tokio::spawn({
        let pool = pool.clone();
        let route = route.clone();
        async move { pool.lease(&route).await.map(|mut l| Lease::discard(&mut l)) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.stats().pending, 1);
    // ... until both limits are raised on the live pool.
    pool.set_max_total(2).unwrap();
    assert_eq!(pool.stats().pending, 1, "the route limit still holds it");
    pool.set_max_per_route(2).unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(pool.counters().connects, 2);

    // Above the ceiling, zero, and a per-route limit below min_idle: typed,
    // nothing changes.
    let e = pool.set_max_total(5).unwrap_err();
    assert!(matches!(
        e,
        Error::Config(ConfigError::Pool(Core::MaxTotalExceedsStorage))
    ));
    assert!(matches!(
        pool.set_max_total(0),
        Err(Error::Config(ConfigError::Pool(Core::ZeroMaxTotal)))
    ));
    assert!(matches!(
        pool.set_max_per_route(0),
        Err(Error::Config(ConfigError::Pool(Core::ZeroMaxPerRoute)))
    ));
    assert_eq!(pool.stats().max_total, 2);

    // Lowered: nothing closes now; the connection released over the limit
    // closes.
    let b = pool.lease(&route).await.unwrap();
    assert_eq!(pool.stats().connections, 2);
    pool.set_max_total(1).unwrap();
    assert_eq!(pool.stats().connections, 2);
    drop(a);
    assert_eq!(pool.counters().closes[CloseReason::TotalLimit as usize], 1);
    drop(b);
    assert_eq!(pool.stats().connections, 1);
    assert_eq!(pool.stats().idle, 1);
}

/// A TCP connector that records the identity each connect was made for and
/// when each connection was closed.
#[derive(Default)]
struct Recording {
    tcp: TcpConnector,
    connects: Mutex<Vec<Option<Tag>>>,
    closed: Arc<Mutex<Vec<Instant>>>,
}

impl Connector<Route> for Recording {
    type Conn = TcpStream;
    type Error = io::Error;
    async fn connect(&self, route: &Route) -> io::Result<TcpStream> {
        self.tcp.connect_host(&route.0, route.1).await
    }
    async fn connect_as(&self, route: &Route, tag: Option<Tag>) -> io::Result<TcpStream> {
        self.connects.lock().unwrap().push(tag);
        self.connect(route).await
    }
    fn close(&self, conn: TcpStream) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.closed.lock().unwrap().push(Instant::now());
        async move { drop(conn) }
    }
}

#[tokio::test]
async fn strict_tags_fix_the_identity_at_connect() {
    let server = Server::start(Opts::default()).await;
    let route = server.route();
    let alice = Tag(1);
    let bob = Tag(2);
    let pool = Pool::builder(Recording::default())
        .strict_tags(true)
        .max_per_route(4)
        .build()
        .unwrap();
    let as_alice = LeaseOptions::new().tag(alice);
    let as_bob = LeaseOptions::new().tag(bob);
    // A connect made for alice is opened as alice and keeps her tag.
    let mut l = pool.lease_with(&route, as_alice).await.unwrap();
    assert_eq!(Lease::tag(&l), Some(alice));
    Lease::set_tag(&mut l, Some(bob)); // ignored: the identity is fixed
    drop(l);
    // Neither bob nor an untagged lease takes alice's idle connection.
    drop(pool.lease_with(&route, as_bob).await.unwrap());
    drop(pool.lease(&route).await.unwrap());
    assert_eq!(pool.counters().connects, 3);
    // Alice gets hers back; an untagged connection is not alice's either.
    let l = pool.lease_with(&route, as_alice).await.unwrap();
    assert_eq!(Lease::tag(&l), Some(alice));
    drop(l);
    assert_eq!(pool.counters().connects, 3);
    assert_eq!(pool.counters().reuses, 1);
    let connects = pool_connector_tags(&pool);
    assert_eq!(connects, vec![Some(alice), Some(bob), None]);

    // Without strict tags: the connector is told no identity, and a tagged
    // lease takes an untagged connection.
    let pool = Pool::builder(Recording::default()).build().unwrap();
    drop(pool.lease(&route).await.unwrap());
    let l = pool.lease_with(&route, as_alice).await.unwrap();
    drop(l);
    assert_eq!(pool.counters().connects, 1);
    assert_eq!(pool_connector_tags(&pool), vec![None]);
}

fn pool_connector_tags(pool: &Pool<Route, Recording>) -> Vec<Option<Tag>> {
    pool.connector().connects.lock().unwrap().clone()
}

#[tokio::test]
async fn close_on_unhealthy_closes_idle_and_drains_busy() {
    let server = Server::start(Opts::default()).await;
    let route = server.route();
    for close in [false, true] {
        let pool = builder().close_on_unhealthy(close).build().unwrap();
        let busy = pool.lease(&route).await.unwrap();
        drop(pool.lease(&route).await.unwrap());
        assert_eq!(pool.stats().idle, 1);
        pool.set_route_health(&route, false).unwrap();
        if close {
            assert_eq!(pool.stats().idle, 0, "the idle connection closed at once");
            drop(busy);
            assert_eq!(
                pool.stats().connections,
                0,
                "the busy one closed when released"
            );
        } else {
            assert_eq!(pool.stats().idle, 1, "unhealthy only stops preconnects");
            drop(busy);
            assert_eq!(pool.stats().connections, 2);
        }
        // Unhealthy still connects for demand.
        drop(pool.lease(&route).await.unwrap());
    }
}

#[tokio::test]
async fn lifetime_jitter_spreads_expiry() {
    let server = Server::start(Opts::default()).await;
    let route = server.route();
    let mut spreads = Vec::new();
    for jitter in [0u8, 100] {
        let connector = Recording::default();
        let closed = connector.closed.clone();
        let pool = Pool::builder(connector)
            .max_per_route(8)
            .max_lifetime(Duration::from_millis(300))
            .max_lifetime_jitter(jitter)
            .seed(7)
            .build()
            .unwrap();
        // Eight connections opened together.
        let mut leases = Vec::new();
        for _ in 0..8 {
            leases.push(pool.lease(&route).await.unwrap());
        }
        drop(leases);
        let deadline = Instant::now() + Duration::from_secs(5);
        while closed.lock().unwrap().len() < 8 {
            assert!(Instant::now() < deadline, "connections did not expire");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pool.counters().closes[CloseReason::Expired as usize], 8);
        let t = closed.lock().unwrap().clone();
        let spread = *t.iter().max().unwrap() - *t.iter().min().unwrap();
        spreads.push(spread);
    }
    // Without jitter they expire together (one timer pass); with 100% they
    // spread over up to 300 ms (eight seeded draws).
    assert!(spreads[0] < Duration::from_millis(60), "{spreads:?}");
    assert!(spreads[1] > Duration::from_millis(100), "{spreads:?}");
}

#[tokio::test]
async fn seeds_are_random_per_pool_unless_set() {
    assert_eq!(builder().seed(42).config().seed, 42);
    let p1 = builder().build().unwrap();
    let p2 = builder().build().unwrap();
    assert_ne!(p1.seed(), p2.seed(), "each pool draws its own seed");
    assert_eq!(builder().seed(42).build().unwrap().seed(), 42);
}
