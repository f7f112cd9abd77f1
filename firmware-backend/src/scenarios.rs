//! The backend's scenarios: each builds its own pool (a `State` in its own
//! `static`) over the client stack, runs its runner beside the body, and
//! drains the pool when done (every socket closed and freed before the
//! next scenario).

use core::fmt::Write as _;
use core::pin::pin;

use embassy_futures::join::join;
use embassy_futures::select::{select, Either};
use embassy_net::Stack;
use embassy_time::{Duration as EDuration, Instant as EInstant, Timer};
use embedded_io_async::{Read, Write};
use embedded_nal_async::TcpConnect;
use wharf_embassy::nal::PooledConnect;
use wharf_embassy::{
    CloseReason, Config, ConnectFailure, DrainMode, Duration, Error, LeaseOptions, NameTooLong,
    State,
};
use wharf_testkit::Outcome;

use crate::check::{ensure, fail, ok, some};
use crate::net::{Logs, BLACKHOLE, ECHO, IDLE, IDLE_CLOSE_MS, ONCE, SERVER};

/// Connection slots of every scenario's pool.
pub const SLOTS: usize = 4;
/// Host names known at run time of up to 32 bytes.
pub const HOST: usize = 32;
/// Every scenario's pool state: 4 connection slots with 1 KiB buffers each
/// way, 4 waiters, 4 routes, 32-byte runtime host names.
pub type PoolState = State<SLOTS, 4, 4, 1024, 1024, HOST>;
type Route = wharf_embassy::Route<HOST>;
type Pool<'d> = wharf_embassy::Pool<'d, HOST>;

/// What every scenario gets: the client stack and the servers' logs.
pub struct Ctx<'a> {
    pub client: Stack<'a>,
    pub logs: &'a Logs,
}

fn config() -> Config {
    Config {
        max_total: SLOTS as u32,
        max_per_route: SLOTS as u32,
        connect_timeout: Some(Duration::from_millis(200)),
        validate_after_inactivity: None,
        ..Config::default()
    }
}

fn echo_route() -> Route {
    Route::ip(SERVER, ECHO)
}

/// Waits until `cond` holds (checked every 5 ms), at most `ms` milliseconds.
async fn eventually(ms: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = EInstant::now() + EDuration::from_millis(ms);
    while EInstant::now() < end {
        if cond() {
            return true;
        }
        Timer::after_millis(5).await;
    }
    cond()
}

/// The server has accepted exactly `n` connections (its accept completes a
/// moment after the client's connect: waited for, at most 500 ms).
async fn accepted(log: &crate::net::PortLog, n: u32) -> bool {
    eventually(500, || log.accepted.get() == n).await
}

/// Writes `msg` and reads the echo back.
async fn echo(io: &mut (impl Read + Write), msg: &[u8]) -> Outcome {
    let mut buf = [0u8; 64];
    ensure!(msg.len() <= buf.len());
    ok!(io.write_all(msg).await);
    ok!(io.flush().await);
    ok!(io.read_exact(&mut buf[..msg.len()]).await);
    ensure!(&buf[..msg.len()] == msg);
    Ok(())
}

/// Closes everything the pool holds (drain for deletion) and waits until
/// the connections are gone, then a little more for the last FIN's
/// acknowledgement (the in-memory link answers at once).
async fn cleanup(pool: &Pool<'_>) -> Outcome {
    pool.drain(None, DrainMode::DrainAndDelete);
    ensure!(eventually(2000, || pool.stats().connections == 0).await);
    Timer::after_millis(30).await;
    ensure!(pool.inspect(|p| p.check_invariants()).is_ok());
    Ok(())
}

/// Runs `$body` (an expression of type `Outcome`, using `$pool`) with a
/// pool of its own over the client stack and the pool's runner beside it,
/// then [`cleanup`].
macro_rules! with_pool {
    ($ctx:expr, $config:expr, |$pool:ident| $body:expr) => {{
        static STATE: static_cell::StaticCell<PoolState> = static_cell::StaticCell::new();
        let state = some!(STATE.try_init_with(PoolState::new));
        let (pool, mut runner) = ok!(wharf_embassy::new($ctx.client, state, $config));
        let $pool = &pool;
        let body = async {
            let r: Outcome = async { $body }.await;
            let c = cleanup($pool).await;
            r.and(c)
        };
        match select(runner.run(), body).await {
            Either::First(never) => never,
            Either::Second(r) => r,
        }
    }};
}

// ---------------------------------------------------------------------------

/// A lease is an embedded-io-async stream over a pooled socket.
pub async fn lease_write_read(ctx: &Ctx<'_>) -> Outcome {
    with_pool!(ctx, config(), |pool| {
        let mut l = ok!(pool.lease(&echo_route()).await);
        echo(&mut l, b"hello from the pool").await?;
        ensure!(pool.stats().leased == 1);
        ensure!(accepted(&ctx.logs.echo, 1).await);
        drop(l);
        ensure!(pool.stats().idle == 1);
        Ok(())
    })
}

/// A released connection is handed out again: one TCP connection at the
/// server for two leases.
pub async fn reuse_of_a_kept_connection(ctx: &Ctx<'_>) -> Outcome {
    with_pool!(ctx, config(), |pool| {
        let mut a = ok!(pool.lease(&echo_route()).await);
        echo(&mut a, b"one").await?;
        let first = a.id().conn();
        drop(a);
        let mut b = ok!(pool.lease(&echo_route()).await);
        ensure!(b.id().conn() == first);
        echo(&mut b, b"two").await?;
        drop(b);
        ensure!(accepted(&ctx.logs.echo, 1).await);
        let c = pool.counters();
        ensure!((c.connects, c.reuses, c.grants) == (1, 1, 2));
        Ok(())
    })
}

/// At the route limit a lease waits: with a timeout it fails as `Timeout`;
/// without, it gets the connection released next.
pub async fn route_limit_waits_and_times_out(ctx: &Ctx<'_>) -> Outcome {
    let cfg = Config {
        max_per_route: 2,
        ..config()
    };
    with_pool!(ctx, cfg, |pool| {
        let r = echo_route();
        let a = ok!(pool.lease(&r).await);
        let b = ok!(pool.lease(&r).await);
        let short = LeaseOptions {
            timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        ensure!(pool.lease_with(&r, short).await.err() == Some(Error::Timeout));
        let a_conn = a.id().conn();
        let release = async {
            Timer::after_millis(20).await;
            drop(a);
        };
        let (got, ()) = join(pool.lease(&r), release).await;
        let got = ok!(got);
        ensure!(got.id().conn() == a_conn);
        ensure!(accepted(&ctx.logs.echo, 2).await);
        drop((got, b));
        Ok(())
    })
}

/// The server closes a leased connection: the lease reads its FIN
/// (`Ok(0)`), and the pool closes it instead of keeping it.
pub async fn server_close_while_leased_is_read_as_fin(ctx: &Ctx<'_>) -> Outcome {
    with_pool!(ctx, config(), |pool| {
        let r = Route::ip(SERVER, ONCE);
        let mut l = ok!(pool.lease(&r).await);
        echo(&mut l, b"once").await?;
        let mut buf = [0u8; 8];
        ensure!(ok!(l.read(&mut buf).await) == 0);
        drop(l);
        ensure!(eventually(500, || pool.stats().connections == 0).await);
        ensure!(pool.counters().closes_for(CloseReason::PeerClosed) == 1);
        // A new lease gets a new connection.
        let mut l = ok!(pool.lease(&r).await);
        echo(&mut l, b"again").await?;
        ensure!(accepted(&ctx.logs.once, 2).await);
        Ok(())
    })
}

/// The server closes an idle connection (FIN): the runner's idle watch
/// closes it at once, before any lease asks, and the next lease connects
/// anew.
pub async fn server_close_while_idle_is_seen(ctx: &Ctx<'_>) -> Outcome {
    with_pool!(ctx, config(), |pool| {
        let r = Route::ip(SERVER, IDLE);
        let mut l = ok!(pool.lease(&r).await);
        echo(&mut l, b"idle soon").await?;
        let first = l.id().conn();
        drop(l);
        ensure!(pool.stats().idle == 1);
        ensure!(eventually(IDLE_CLOSE_MS + 500, || pool.stats().connections == 0).await);
        ensure!(ctx.logs.idle.idle_closed.get() == 1);
        ensure!(pool.counters().closes_for(CloseReason::PeerClosed) == 1);
        let mut l = ok!(pool.lease(&r).await);
        ensure!(l.id().conn() != first);
        echo(&mut l, b"fresh").await?;
        ensure!(accepted(&ctx.logs.idle, 2).await);
        Ok(())
    })
}

/// The pool closes with a FIN (the server reads 0), never a RST.
pub async fn pool_close_is_a_fin(ctx: &Ctx<'_>) -> Outcome {
    with_pool!(ctx, config(), |pool| {
        let mut l = ok!(pool.lease(&echo_route()).await);
        echo(&mut l, b"bye").await?;
        drop(l);
        pool.drain(None, DrainMode::DrainExisting);
        ensure!(eventually(1000, || ctx.logs.echo.fins.get() == 1).await);
        ensure!(ctx.logs.echo.rsts.get() == 0);
        ensure!(pool.counters().closes_for(CloseReason::Drained) == 1);
        Ok(())
    })
}

/// `Lease::discard` closes with a RST.
pub async fn discard_is_a_rst(ctx: &Ctx<'_>) -> Outcome {
    with_pool!(ctx, config(), |pool| {
        let mut l = ok!(pool.lease(&echo_route()).await);
        echo(&mut l, b"broken").await?;
        l.discard();
        ensure!(eventually(1000, || ctx.logs.echo.rsts.get() == 1).await);
        ensure!(ctx.logs.echo.fins.get() == 0);
        ensure!(pool.stats().connections == 0);
        Ok(())
    })
}

/// A host that never answers: the pool's connect timeout aborts the
/// connect (embassy-net's would wait forever), and the slot works again.
pub async fn connect_timeout(ctx: &Ctx<'_>) -> Outcome {
    with_pool!(ctx, config(), |pool| {
        let start = EInstant::now();
        let r = pool.lease(&Route::ip(BLACKHOLE, ECHO)).await.err();
        let took = start.elapsed();
        ensure!(r == Some(Error::ConnectFailed(ConnectFailure::Timeout)));
        ensure!(took >= EDuration::from_millis(190));
        ensure!(took < EDuration::from_millis(1000));
        let c = pool.counters();
        ensure!(c.connect_failures_for(ConnectFailure::Timeout) == 1);
        ensure!(c.closes_for(CloseReason::ConnectTimeout) == 1);
        ensure!(pool.stats().connections == 0);
        // The aborted connect's socket was given back: all slots connect.
        let mut leases: heapless::Vec<_, SLOTS> = heapless::Vec::new();
        for _ in 0..SLOTS {
            let l = ok!(pool.lease(&echo_route()).await);
            if leases.push(l).is_err() {
                fail!("more leases than slots");
            }
        }
        ensure!(pool.stats().leased == SLOTS as u32);
        ensure!(accepted(&ctx.logs.echo, SLOTS as u32).await);
        Ok(())
    })
}

/// Nobody listens: the connect is refused (`Remote`).
pub async fn refused_connect(ctx: &Ctx<'_>) -> Outcome {
    with_pool!(ctx, config(), |pool| {
        let r = pool.lease(&Route::ip(SERVER, 7999)).await.err();
        ensure!(r == Some(Error::ConnectFailed(ConnectFailure::Remote)));
        ensure!(pool.stats().connections == 0);
        Ok(())
    })
}

/// A host name known only at run time, in the route (no heap): resolved
/// through the DNS server on the server stack, pooled and reused, the same
/// route as its `&'static str` spelling; an unknown name fails the
/// connect; too long a name is a typed error.
pub async fn runtime_host_name(ctx: &Ctx<'_>) -> Outcome {
    with_pool!(ctx, config(), |pool| {
        let mut name: heapless::String<40> = heapless::String::new();
        ok!(write!(name, "svc-{}.wharf.test", core::hint::black_box(2)));
        let r = ok!(Route::name(&name, ECHO));
        ensure!(r == Route::host("svc-2.wharf.test", ECHO));
        let mut a = ok!(pool.lease(&r).await);
        echo(&mut a, b"by name").await?;
        let first = a.id().conn();
        drop(a);
        let b = ok!(pool.lease(&Route::host("svc-2.wharf.test", ECHO)).await);
        ensure!(b.id().conn() == first);
        drop(b);
        ensure!(ctx.logs.dns_queries.get() == 1);
        ensure!(accepted(&ctx.logs.echo, 1).await);

        let unknown = ok!(Route::name("nowhere.wharf.test", ECHO));
        let e = pool.lease(&unknown).await.err();
        ensure!(e == Some(Error::ConnectFailed(ConnectFailure::Local)));
        ensure!(ctx.logs.dns_queries.get() == 2);

        let long = "a-host-name-of-33-bytes.wharf.tst";
        ensure!(long.len() == HOST + 1);
        ensure!(
            Route::name(long, ECHO).err()
                == Some(NameTooLong {
                    len: HOST + 1,
                    capacity: HOST
                })
        );
        Ok(())
    })
}

/// `embedded-nal-async`'s `TcpConnect` over the pool: connects are leases,
/// reused.
pub async fn nal_connects_are_pooled(ctx: &Ctx<'_>) -> Outcome {
    with_pool!(ctx, config(), |pool| {
        let tcp = PooledConnect::new(*pool);
        let addr =
            core::net::SocketAddr::new(core::net::Ipv4Addr::from(SERVER.octets()).into(), ECHO);
        for i in 0..5u8 {
            let mut c = ok!(tcp.connect(addr).await);
            echo(&mut c, &[b'n', i]).await?;
        }
        ensure!(accepted(&ctx.logs.echo, 1).await);
        let (a, b) = join(tcp.connect(addr), tcp.connect(addr)).await;
        let (a, b) = (ok!(a), ok!(b));
        ensure!(a.lease().id().conn() != b.lease().id().conn());
        drop((a, b));
        ensure!(accepted(&ctx.logs.echo, 2).await);
        ensure!(pool.counters().grants == 7);
        Ok(())
    })
}

/// A waiting lease dropped after its connection was granted: the
/// connection goes back to the pool (idle), not lost.
pub async fn cancel_of_a_waiting_lease(ctx: &Ctx<'_>) -> Outcome {
    let cfg = Config {
        max_per_route: 1,
        ..config()
    };
    with_pool!(ctx, cfg, |pool| {
        let r = echo_route();
        let holder = ok!(pool.lease(&r).await);
        let conn = holder.id().conn();
        {
            let mut waiting = pin!(pool.lease(&r));
            ensure!(embassy_futures::poll_once(waiting.as_mut()).is_pending());
            drop(holder); // granted to the waiting request...
            ensure!(pool.stats().leased == 1);
        } // ...whose future is dropped before it looks.
        ensure!(pool.stats().leased == 0);
        ensure!(pool.stats().idle == 1);
        let l = ok!(pool.lease(&r).await);
        ensure!(l.id().conn() == conn);
        ensure!(accepted(&ctx.logs.echo, 1).await);
        Ok(())
    })
}
