//! Host names known at run time as route keys (`Route::name`, a
//! `heapless::String<H>` in the route): resolved through a DNS server on
//! the server stack, pooled and reused like any route, the same route as
//! the `&'static str` spelling of the name; too long a name is a typed
//! error; a name the DNS does not know fails the connect.

mod common;

use common::{dns_server, echo, server, DnsLog, Log, Mode, SERVER};
use embassy_futures::join::join;
use embassy_futures::select::{select3, Either3};
use wharf_embassy::{Config, ConnectFailure, Duration, Error, NameTooLong, Pool, Route, State};

/// Route keys hold host names of up to 32 bytes.
const NAME: usize = 32;
const SLOTS: usize = 2;
type NamedState = State<SLOTS, 2, 4, 1024, 1024, NAME>;

fn config() -> Config {
    Config {
        max_total: SLOTS as u32,
        max_per_route: SLOTS as u32,
        connect_timeout: Some(Duration::from_secs(2)),
        validate_after_inactivity: None,
        ..Config::default()
    }
}

/// Runs `$test` with a pool whose routes hold names of up to `NAME` bytes,
/// an echo server on 7000 and a DNS server that knows `echo.test` and
/// `svc-<i>.wharf.test` (i < 4) as the server stack's address.
macro_rules! named_test {
    (|$pool:ident, $log:ident, $dns:ident| $test:expr) => {{
        two_stacks!(dns 3, |client, server_stack| {
            let $log = Log::default();
            let $dns = DnsLog::default();
            let names: Vec<std::string::String> = (0..4)
                .map(|i| format!("svc-{i}.wharf.test"))
                .chain(["echo.test".into()])
                .collect();
            let hosts: Vec<(&str, _)> = names.iter().map(|n| (n.as_str(), SERVER)).collect();
            let state: &'static mut NamedState = Box::leak(Box::new(NamedState::new()));
            let (pool, mut runner) = wharf_embassy::new(client, state, config()).unwrap();
            let $pool: &Pool<'_, NAME> = &pool;
            let servers = join(
                server(server_stack, 7000, Mode::Echo, &$log),
                dns_server(server_stack, &hosts, &$dns),
            );
            match select3(runner.run(), servers, async { $test }).await {
                Either3::Third(r) => {
                    pool.inspect(|p| p.check_invariants()).expect("invariants");
                    r
                }
                _ => unreachable!(),
            }
        })
    }};
}

#[tokio::test(flavor = "current_thread")]
async fn a_name_built_at_run_time_is_resolved_pooled_and_reused() {
    named_test!(|pool, log, dns| {
        // A name that exists only at run time (as read from a configuration).
        let id = std::hint::black_box(2);
        let runtime = format!("svc-{id}.wharf.test");
        let route = Route::<NAME>::name(&runtime, 7000).unwrap();
        drop(runtime); // the route holds its own copy

        let mut a = pool.lease(&route).await.unwrap();
        echo(&mut a, b"one").await;
        let first = a.id().conn();
        assert_eq!(a.route(), route);
        drop(a);
        let mut b = pool.lease(&route).await.unwrap();
        assert_eq!(b.id().conn(), first, "the idle connection is reused");
        echo(&mut b, b"two").await;
        drop(b);
        assert_eq!(log.accepted(), 1, "one TCP connection for both leases");
        assert_eq!(dns.count("svc-2.wharf.test"), 1, "one lookup per connect");

        // The same name spelt as a `&'static str` is the same route: its
        // lease gets the same connection.
        let same = Route::host("svc-2.wharf.test", 7000);
        assert_eq!(same, route);
        let c = pool.lease(&same).await.unwrap();
        assert_eq!(c.id().conn(), first);
        drop(c);
        assert_eq!(pool.stats().connections, 1);
        assert_eq!(log.accepted(), 1);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn names_of_different_hosts_are_different_routes() {
    named_test!(|pool, log, dns| {
        let routes: Vec<Route<NAME>> = (0..2)
            .map(|i| Route::name(&format!("svc-{i}.wharf.test"), 7000).unwrap())
            .collect();
        let mut a = pool.lease(&routes[0]).await.unwrap();
        let mut b = pool.lease(&routes[1]).await.unwrap();
        assert_ne!(a.id().conn(), b.id().conn());
        echo(&mut a, b"a").await;
        echo(&mut b, b"b").await;
        drop((a, b));
        assert_eq!(log.accepted(), 2);
        assert_eq!(pool.inspect(|p| p.routes().count()), 2);
        for (i, route) in routes.iter().enumerate() {
            assert_eq!(dns.count(&format!("svc-{i}.wharf.test")), 1);
            let stats = pool.route_stats(route).unwrap();
            assert_eq!((stats.connections, stats.idle), (1, 1));
        }
    })
}

#[tokio::test(flavor = "current_thread")]
async fn an_unknown_name_fails_the_connect_and_a_long_one_is_refused() {
    named_test!(|pool, log, dns| {
        let unknown = Route::<NAME>::name("nowhere.wharf.test", 7000).unwrap();
        assert_eq!(
            pool.lease(&unknown).await.err(),
            Some(Error::ConnectFailed(ConnectFailure::Local))
        );
        assert_eq!(dns.count("nowhere.wharf.test"), 1);
        assert_eq!(log.accepted(), 0);

        // 33 bytes: one more than the routes hold.
        let long = "a-host-name-of-33-bytes.wharf.te";
        let long = format!("{long}s");
        assert_eq!(long.len(), NAME + 1);
        assert_eq!(
            Route::<NAME>::name(&long, 7000),
            Err(NameTooLong {
                len: NAME + 1,
                capacity: NAME
            })
        );
        // Exactly 32 fits.
        assert!(Route::<NAME>::name(&long[..NAME], 7000).is_ok());

        // An IP literal given at run time is parsed without a query.
        let literal = Route::<NAME>::name(&SERVER.to_string(), 7000).unwrap();
        let mut l = pool.lease(&literal).await.unwrap();
        echo(&mut l, b"literal").await;
        drop(l);
        assert_eq!(dns.queries.borrow().len(), 1, "no query for a literal");
        assert_eq!(log.accepted(), 1);
    })
}
