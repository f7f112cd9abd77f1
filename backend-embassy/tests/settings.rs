//! Every setting has one meaning (issue 16), on real embassy-net stacks:
//! settings no pool could honour are refused by `new` with the core's
//! typed error, and a zero lease timeout means "do not wait".

mod common;

use common::{server, Log, Mode, SERVER};
use embassy_futures::select::{select3, Either3};
use wharf_embassy::{Config, ConfigError, Duration, Error, LeaseOptions, Route, State};

type TestState = State<2, 2, 2, 1024, 1024>;

fn state() -> &'static mut TestState {
    Box::leak(Box::new(TestState::new()))
}

#[tokio::test(flavor = "current_thread")]
async fn refused_settings_are_typed_errors() {
    two_stacks!(3, |client, _server| {
        let refused = |cfg: Config| wharf_embassy::new(client, state(), cfg).err();
        let base = Config {
            max_total: 2,
            ..Config::default()
        };
        // No waiting room, no warm-up: nothing could ever be served.
        let never = Config {
            max_pending: Some(0),
            ..base.clone()
        };
        assert_eq!(refused(never), Some(ConfigError::NeverServes));
        for cfg in [
            Config {
                connect_timeout: Some(Duration::ZERO),
                ..base.clone()
            },
            Config {
                idle_timeout: Some(Duration::ZERO),
                ..base.clone()
            },
            Config {
                max_lifetime: Some(Duration::ZERO),
                ..base.clone()
            },
        ] {
            assert_eq!(refused(cfg), Some(ConfigError::ZeroTimeout));
        }
        let jitter = Config {
            max_lifetime_jitter_percent: 101,
            ..base.clone()
        };
        assert_eq!(refused(jitter), Some(ConfigError::BadJitter));
        let too_many = Config {
            max_total: 3,
            ..base.clone()
        };
        assert_eq!(refused(too_many), Some(ConfigError::MaxTotalExceedsStorage));
    })
}

#[tokio::test(flavor = "current_thread")]
async fn zero_timeout_means_do_not_wait() {
    two_stacks!(3, |client, server_stack| {
        let log = Log::default();
        let cfg = Config {
            max_total: 2,
            validate_after_inactivity: None,
            ..Config::default()
        };
        let (pool, mut runner) = wharf_embassy::new(client, state(), cfg).unwrap();
        let route = Route::ip(SERVER, 7200);
        let now = LeaseOptions {
            timeout: Some(Duration::ZERO),
            ..Default::default()
        };
        let test = async {
            // Nothing ready: fails at once, nothing changed.
            assert_eq!(
                pool.lease_with(&route, now).await.err(),
                Some(Error::Timeout)
            );
            assert_eq!(pool.counters().connects, 0);
            assert!(pool.route_stats(&route).is_none());
            // A lease that waits opens one; once idle, one that does not
            // wait gets it, and while it is out the next fails at once.
            drop(pool.lease(&route).await.unwrap());
            let held = pool.lease_with(&route, now).await.unwrap();
            assert_eq!(
                pool.lease_with(&route, now).await.err(),
                Some(Error::Timeout)
            );
            drop(held);
            assert_eq!(pool.counters().connects, 1);
            assert_eq!(pool.stats().pending, 0);
        };
        match select3(
            runner.run(),
            server(server_stack, 7200, Mode::Echo, &log),
            test,
        )
        .await
        {
            Either3::Third(()) => {}
            _ => unreachable!(),
        }
    })
}
