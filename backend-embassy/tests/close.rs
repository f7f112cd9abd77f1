//! `Pool::close` and `Pool::is_closed` on embassy-net host stacks: a closed
//! pool refuses new leases at once, closes its idle connections, waits for
//! the leased ones, and completes only when every socket sent its FIN (the
//! server sees each one close); tasks waiting in `close` together all
//! complete. The `close` futures are polled with wakers of their own
//! ([`Woken`]), so a test sees whether the pool woke them (every future
//! inside one `select` shares the test task's waker, which the runner's
//! wakes would otherwise hide).

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use common::{echo, eventually, server, Log, Mode, SERVER};
use embassy_futures::select::{select, select3, Either, Either3};
use embassy_time::{Duration, Instant, Timer};
use wharf_embassy::{CloseReason, Config, Error, Options, Pool, Route, State};

type TestState = State<4, 8, 4, 1024, 1024>;

fn config() -> Config {
    Config {
        max_total: 4,
        max_per_route: 4,
        ..Config::default()
    }
}

fn route() -> Route {
    Route::ip(SERVER, 7030)
}

/// A waker that only records that it was woken.
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls `f` with a waker of its own, and again each time that waker is
/// woken, for at most `ms` milliseconds: `Some(output)` if it completed.
async fn poll_woken<F: Future>(mut f: Pin<&mut F>, ms: u64) -> Option<F::Output> {
    let flag = Arc::new(Woken(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let deadline = Instant::now() + Duration::from_millis(ms);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
            return Some(v);
        }
        while !flag.0.swap(false, Ordering::SeqCst) {
            if Instant::now() >= deadline {
                return None;
            }
            Timer::after_millis(1).await;
        }
    }
}

macro_rules! pool_test {
    (|$pool:ident, $log:ident| $test:expr) => {{
        two_stacks!(5, |client, server_stack| {
            let $log = Log::default();
            let state: &'static mut TestState = Box::leak(Box::new(TestState::new()));
            let (pool, mut runner) =
                wharf_embassy::new_with_options(client, state, config(), Options::default())
                    .unwrap();
            let $pool: &Pool<'_> = &pool;
            match select3(
                runner.run(),
                server(server_stack, 7030, Mode::Echo, &$log),
                async { $test },
            )
            .await
            {
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

#[tokio::test(flavor = "current_thread")]
async fn close_waits_for_the_leased_connection_and_every_fin() {
    pool_test!(|pool, log| {
        let mut a = pool.lease(&route()).await.unwrap();
        let mut b = pool.lease(&route()).await.unwrap();
        echo(&mut a, b"a").await;
        echo(&mut b, b"b").await;
        drop(a);
        assert_eq!(pool.stats().idle, 1);
        assert!(!pool.is_closed());

        let closing = pool.close();
        let mut closing = core::pin::pin!(closing);
        // Held lease: close does not complete (400 ms is long for loopback
        // stacks: the idle connection's FIN takes a few ms).
        assert!(
            poll_woken(closing.as_mut(), 400).await.is_none(),
            "close completed with a lease out"
        );
        assert!(pool.is_closed());
        assert!(matches!(pool.lease(&route()).await, Err(Error::Closed)));
        // The idle connection is closed already, gracefully.
        assert_eq!(pool.stats().connections, 1, "{:?}", pool.stats());
        assert!(
            eventually(1000, || log.fins() == 1).await,
            "{:?}",
            log.events()
        );

        // The lease still works until it is given back.
        echo(&mut b, b"still").await;
        let released = Instant::now();
        drop(b);
        assert!(
            poll_woken(closing.as_mut(), 2000).await.is_some(),
            "close was not woken to complete: {:?}",
            pool.stats()
        );
        let took = Instant::now() - released;
        assert!(took < Duration::from_millis(2000), "{took:?}");
        let s = pool.stats();
        assert_eq!((s.connections, s.closing, s.leased), (0, 0, 0), "{s:?}");
        // Both sockets sent their FIN; the server saw both close.
        assert!(
            eventually(1000, || log.fins() == 2).await,
            "{:?}",
            log.events()
        );
        assert_eq!(log.rsts(), 0);
        let c = pool.counters();
        assert_eq!(c.closes_for(CloseReason::Drained), 2, "{c:?}");
        // Closing again completes at once.
        match select(pool.close(), Timer::after_millis(100)).await {
            Either::First(()) => {}
            Either::Second(()) => panic!("a second close waited"),
        }
    })
}

#[tokio::test(flavor = "current_thread")]
async fn close_of_an_unused_pool_completes_at_once() {
    pool_test!(|pool, log| {
        match select(pool.close(), Timer::after_millis(100)).await {
            Either::First(()) => {}
            Either::Second(()) => panic!("close of an empty pool waited"),
        }
        assert!(pool.is_closed());
        assert!(matches!(pool.lease(&route()).await, Err(Error::Closed)));
        assert_eq!(log.accepted(), 0);
    })
}

#[tokio::test(flavor = "current_thread")]
async fn two_tasks_in_close_both_complete() {
    pool_test!(|pool, log| {
        let mut a = pool.lease(&route()).await.unwrap();
        echo(&mut a, b"a").await;
        let first = pool.close();
        let second = pool.close();
        let (mut first, mut second) = (core::pin::pin!(first), core::pin::pin!(second));
        assert!(poll_woken(first.as_mut(), 100).await.is_none());
        assert!(poll_woken(second.as_mut(), 100).await.is_none());
        // Both registered their own wakers; a wake-up now must reach both.
        let flags = [0, 1].map(|_| Arc::new(Woken(AtomicBool::new(false))));
        let wakers = flags.clone().map(Waker::from);
        assert!(first
            .as_mut()
            .poll(&mut Context::from_waker(&wakers[0]))
            .is_pending());
        assert!(second
            .as_mut()
            .poll(&mut Context::from_waker(&wakers[1]))
            .is_pending());
        drop(a);
        assert!(
            eventually(2000, || flags.iter().all(|f| f.0.load(Ordering::SeqCst))).await,
            "a task in close was not woken: {:?}",
            pool.stats()
        );
        assert!(first
            .as_mut()
            .poll(&mut Context::from_waker(&wakers[0]))
            .is_ready());
        assert!(second
            .as_mut()
            .poll(&mut Context::from_waker(&wakers[1]))
            .is_ready());
        assert!(
            eventually(1000, || log.fins() == 1).await,
            "{:?}",
            log.events()
        );
    })
}
