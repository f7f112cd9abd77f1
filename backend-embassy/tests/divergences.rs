//! The four places where the two backends used to behave differently, now
//! decided once in the driver (issue 11): the same four tests as
//! `backend-tokio/tests/divergences.rs`, against real embassy-net stacks.

mod common;

use std::vec::Vec;

use common::{echo, eventually, server, Log, Mode, BLACKHOLE, SERVER};
use embassy_futures::join::join;
use embassy_futures::select::{select3, Either3};
use embassy_time::Timer;
use wharf_embassy::{
    CancelPolicy, CloseReason, Config, ConnectFailure, Duration, Error, LeaseOptions, Options,
    Pool, Route, State, Tag,
};

type TestState = State<4, 4, 4, 1024, 1024>;

fn config() -> Config {
    Config {
        max_total: 4,
        max_per_route: 4,
        connect_timeout: Some(Duration::from_millis(300)),
        validate_after_inactivity: None,
        ..Config::default()
    }
}

fn route(port: u16) -> Route {
    Route::ip(SERVER, port)
}

/// Runs `$test` with a pool (config `$cfg`, options `$opts`) over the client
/// stack, its runner, an echo server on 7000 and a close-after-first server
/// on 7002.
macro_rules! pool_test {
    ($cfg:expr, $opts:expr, |$pool:ident, $log:ident| $test:expr) => {{
        two_stacks!(5, |client, server_stack| {
            let $log = Log::default();
            // A pool borrows its state for good (as firmware gives it a static).
            let state: &'static mut TestState = Box::leak(Box::new(TestState::new()));
            let (pool, mut runner) =
                wharf_embassy::new_with_options(client, state, $cfg, $opts).unwrap();
            let $pool: &Pool<'_> = &pool;
            let servers = join(
                server(server_stack, 7000, Mode::Echo, &$log),
                server(server_stack, 7002, Mode::CloseAfterFirst, &$log),
            );
            match select3(runner.run(), servers, async { $test }).await {
                Either3::Third(r) => {
                    pool.inspect(|p| p.check_invariants())
                        .expect("core invariants");
                    r
                }
                _ => unreachable!(),
            }
        })
    }};
}

/// 1. A connect that times out is reported and counted as a `Timeout`
///    (tokio used to rewrite a connector's timeout to `Local`; here the
///    pool's own connect timeout against a host that never answers).
#[tokio::test(flavor = "current_thread")]
async fn a_connect_timeout_is_reported_and_counted_as_a_timeout() {
    pool_test!(config(), Options::default(), |pool, _log| {
        let r = pool.lease(&Route::ip(BLACKHOLE, 7000)).await.err();
        assert_eq!(r, Some(Error::ConnectFailed(ConnectFailure::Timeout)));
        let c = pool.counters();
        assert_eq!(c.connect_failures_for(ConnectFailure::Timeout), 1);
        assert_eq!(c.connect_failures_for(ConnectFailure::Local), 0);
    })
}

/// 2. A grant whose future was dropped goes back with the tag and the
///    keep-alive its connection was released with (this backend used to
///    release it as `Release::REUSE`, losing both).
#[tokio::test(flavor = "current_thread")]
async fn an_abandoned_grant_keeps_its_tag_and_keep_alive() {
    let cfg = Config {
        max_per_route: 1,
        ..config()
    };
    pool_test!(cfg, Options::default(), |pool, _log| {
        let tagged = LeaseOptions {
            tag: Some(Tag(7)),
            ..Default::default()
        };
        let r = &route(7000);
        let abandon = |keep_alive: Duration| async move {
            let mut holder = pool.lease(r).await.unwrap();
            echo(&mut holder, b"hold").await;
            let conn = holder.id().conn();
            holder.set_tag(Some(Tag(7)));
            holder.set_keep_alive(Some(keep_alive));
            let mut waiting = Box::pin(pool.lease_with(r, tagged));
            assert!(embassy_futures::poll_once(waiting.as_mut()).is_pending());
            drop(holder); // granted to the waiting request...
            assert_eq!(pool.stats().leased, 1);
            drop(waiting); // ...whose future is dropped before it looks.
            assert_eq!(pool.stats().leased, 0);
            assert_eq!(pool.stats().idle, 1);
            conn
        };

        // The tag stayed: a lease for another tag does not get it (the
        // route's one slot is made free for it: the tagged connection closes).
        let conn = abandon(Duration::from_secs(60)).await;
        let other_tag = LeaseOptions {
            tag: Some(Tag(8)),
            ..Default::default()
        };
        let other = pool.lease_with(r, other_tag).await.unwrap();
        assert_ne!(other.id().conn(), conn, "the tag was lost");
        assert_eq!(pool.counters().closes_for(CloseReason::RouteLimit), 1);
        drop(other);
        pool.drain(None, wharf_embassy::DrainMode::DrainExisting);

        // The keep-alive stayed: the connection expires 150 ms after its release.
        abandon(Duration::from_millis(150)).await;
        assert!(
            eventually(1000, || pool.counters().closes_for(CloseReason::Expired)
                == 1)
            .await,
            "the keep-alive was lost: {:?}",
            pool.counters()
        );
        assert_eq!(pool.stats().idle, 0);
    })
}

/// 3. The cancel policy is the application's (`Options::cancel_policy`;
///    this backend used to hard-code `Default`): `CloseExcess` aborts a
///    connect no request needs any more.
#[tokio::test(flavor = "current_thread")]
async fn the_cancel_policy_is_configurable() {
    for policy in [CancelPolicy::Default, CancelPolicy::CloseExcess] {
        let opts = Options {
            cancel_policy: policy,
            ..Options::default()
        };
        let cfg = Config {
            connect_timeout: Some(Duration::from_secs(5)),
            ..config()
        };
        pool_test!(cfg, opts, |pool, _log| {
            let never = Route::ip(BLACKHOLE, 7000);
            {
                let mut waiting = Box::pin(pool.lease(&never));
                assert!(embassy_futures::poll_once(waiting.as_mut()).is_pending());
                assert_eq!(pool.stats().connecting, 1);
            }
            if policy == CancelPolicy::CloseExcess {
                assert_eq!(pool.stats().connecting, 0);
                assert_eq!(pool.counters().closes_for(CloseReason::Excess), 1);
                // The aborted connect's socket slot is given back.
                let mut leases = Vec::new();
                for _ in 0..4 {
                    leases.push(pool.lease(&route(7000)).await.unwrap());
                }
            } else {
                Timer::after_millis(50).await;
                assert_eq!(pool.stats().connecting, 1, "the connect goes on");
                assert_eq!(pool.counters().closes_for(CloseReason::Excess), 0);
            }
        })
    }
}

/// 4. A connection the peer closed while it was idle is never handed out,
///    even without a validation due (tokio used to hand it out unchecked).
#[tokio::test(flavor = "current_thread")]
async fn a_connection_the_peer_closed_while_idle_is_not_handed_out() {
    pool_test!(config(), Options::default(), |pool, log| {
        let mut a = pool.lease(&route(7002)).await.unwrap();
        echo(&mut a, b"only once").await;
        let first = a.id().conn();
        drop(a);
        assert_eq!(pool.stats().idle, 1);
        // The server closes after its first echo: wait for its FIN.
        Timer::after_millis(100).await;
        let mut b = pool.lease(&route(7002)).await.unwrap();
        assert_ne!(b.id().conn(), first);
        echo(&mut b, b"fresh").await;
        let c = pool.counters();
        assert_eq!(c.closes_for(CloseReason::PeerClosed), 1);
        assert_eq!(c.validations, 0);
        assert_eq!(log.accepted(), 2);
    })
}
