//! The runner: the timer task and one worker per socket slot (connects,
//! closes), all in one future the application spawns.

use core::future::poll_fn;
use core::marker::PhantomData;
use core::task::Poll;

use embassy_futures::select::{select, Either};
use embassy_net::dns::DnsQueryType;
use embassy_net::tcp::ConnectError;
use embassy_net::IpEndpoint;
use embassy_time::{with_timeout, Timer};
use wharf_core::{ConnId, ConnectFailure};

use crate::clock::{now, to_embassy};
use crate::fmt::{debug, warning};
use crate::route::Route;
use crate::sockets::Job;
use crate::state::PoolSocket;
use crate::state::Shared;

/// Drives the pool: timers, connects, closes. Spawn [`Runner::run`] on the
/// executor that uses the pool.
pub struct Runner<'d, const N: usize, const H: usize = 0> {
    shared: &'d Shared<'d, H>,
    _slots: PhantomData<[(); N]>,
}

impl<'d, const N: usize, const H: usize> Runner<'d, N, H> {
    pub(crate) fn new(shared: &'d Shared<'d, H>) -> Self {
        Runner {
            shared,
            _slots: PhantomData,
        }
    }

    /// Runs forever: one worker per connection slot (connects and closes for
    /// different slots proceed concurrently) and the core's timer.
    pub async fn run(&mut self) -> ! {
        let shared = self.shared;
        let workers: [_; N] = core::array::from_fn(|j| worker(shared, j));
        let timer_and_watch = select(timer(shared), watch(shared));
        match select(timer_and_watch, embassy_futures::join::join_array(workers)).await {
            Either::First(Either::First(never) | Either::Second(never)) => never,
            // Only with N == 0 (no worker at all).
            Either::Second(_) => timer(shared).await,
        }
    }
}

/// The idle watch: the runner's waker is the receive waker of every idle
/// socket; each time the runner is polled, the sockets the driver holds are
/// asked again (a few slots on firmware: a scan of `N` in-memory socket
/// states), and one the peer closed or reset, or that holds bytes nobody
/// asked for, is closed at once (`PeerClosed`) without a lease asking.
async fn watch<const H: usize>(shared: &Shared<'_, H>) -> ! {
    poll_fn(|cx| {
        let mut inner = shared.inner.borrow_mut();
        crate::sockets::set_waker(&mut inner.io_mut().watch_waker, cx.waker());
        inner.watch_all(now());
        Poll::<core::convert::Infallible>::Pending
    })
    .await;
    unreachable!("the watch never ends")
}

/// Sleeps until the armed deadline, or until an input moves it earlier (the
/// driver's re-arm rule), then feeds the core's timers.
async fn timer<const H: usize>(shared: &Shared<'_, H>) -> ! {
    loop {
        let next = shared.inner.borrow_mut().arm_timer();
        let kick = poll_fn(|cx| shared.inner.borrow_mut().poll_timer(cx.waker()));
        match next {
            Some(t) => {
                select(Timer::at(to_embassy(t)), kick).await;
            }
            None => kick.await,
        }
        shared.inner.borrow_mut().handle_timeout(now());
    }
}

/// Completes when the pool no longer wants connection `conn` of slot `j`.
async fn abort_signal<const H: usize>(shared: &Shared<'_, H>, j: usize, conn: ConnId) {
    poll_fn(move |cx| shared.inner.borrow_mut().io_mut().poll_abort(j, conn, cx)).await
}

async fn worker<const H: usize>(shared: &Shared<'_, H>, j: usize) -> ! {
    loop {
        let job = poll_fn(|cx| {
            let mut inner = shared.inner.borrow_mut();
            // The route's key is read from the core when the connect starts
            // (the slots keep only the connection's id).
            let route = inner.io().unstarted_connect(j).and_then(|conn| {
                let core = inner.core();
                core.route_of(conn).and_then(|r| core.route_key(r)).cloned()
            });
            inner.io_mut().take_job(j, route, cx)
        })
        .await;
        match job {
            Job::Again => {}
            // The route is borrowed from the job (one copy of the key in the
            // worker's future, not two).
            Job::Connect {
                conn,
                route: Some(ref route),
            } => connect(shared, j, conn, route).await,
            Job::Connect { conn, route: None } => {
                // Cannot happen: a connecting connection belongs to a live route.
                warning!("connect {:?} of no live route", conn);
                connect_failed(shared, j, conn, ConnectFailure::Local);
            }
            Job::Close { socket, rst } => {
                let t = shared.inner.borrow().io().opts.close_timeout;
                close(socket, rst, t).await;
                shared.inner.borrow_mut().io_mut().slot_freed(j);
            }
        }
    }
}

/// Sends the FIN (or RST) and waits until it is acknowledged (or sent),
/// bounded, then frees the socket (dropping a `TcpSocket` sends nothing).
async fn close(mut socket: PoolSocket<'_>, rst: bool, timeout: embassy_time::Duration) {
    if rst {
        socket.abort();
    } else {
        socket.close();
    }
    let _ = with_timeout(timeout, socket.flush()).await;
}

async fn connect<const H: usize>(shared: &Shared<'_, H>, j: usize, conn: ConnId, route: &Route<H>) {
    let (stack, opts) = {
        let inner = shared.inner.borrow();
        (inner.io().stack, inner.io().opts)
    };
    let endpoint = match route {
        Route::Ip(ep) => Some(*ep),
        named => {
            let name = named.host_name().unwrap_or("");
            let port = named.port();
            match select(
                stack.dns_query(name, DnsQueryType::A),
                abort_signal(shared, j, conn),
            )
            .await
            {
                Either::First(Ok(addrs)) => addrs.first().map(|a| IpEndpoint::new(*a, port)),
                Either::First(Err(_)) => None,
                Either::Second(()) => {
                    shared.inner.borrow_mut().io_mut().slot_freed(j);
                    return;
                }
            }
        }
    };
    let Some(endpoint) = endpoint else {
        connect_failed(shared, j, conn, ConnectFailure::Local);
        return;
    };
    let socket = shared.inner.borrow().io().socket(j);
    let Some(mut socket) = socket else {
        // The slot's buffers are still lent (cannot happen: the slot's
        // previous socket was dropped before the slot became free).
        warning!("slot {:?} has no free buffers", j);
        connect_failed(shared, j, conn, ConnectFailure::Local);
        return;
    };
    socket.set_keep_alive(opts.keep_alive);
    socket.set_timeout(opts.socket_timeout);
    match select(socket.connect(endpoint), abort_signal(shared, j, conn)).await {
        Either::First(Ok(())) => {
            let wanted = shared.inner.borrow().io().wanted(j, conn);
            if !wanted {
                close(socket, true, opts.close_timeout).await;
                shared.inner.borrow_mut().io_mut().slot_freed(j);
                return;
            }
            let mut inner = shared.inner.borrow_mut();
            inner.io_mut().opened(j);
            // Refused when it timed out at this very instant: the driver
            // disposes of the socket (closed with a RST by this worker).
            if inner.connected(conn, socket, now()).is_err() {
                debug!("connected({:?}) came too late", conn);
            }
        }
        Either::First(Err(e)) => {
            drop(socket);
            let reason = match e {
                ConnectError::ConnectionReset => ConnectFailure::Remote,
                ConnectError::TimedOut => ConnectFailure::Timeout,
                ConnectError::InvalidState | ConnectError::NoRoute => ConnectFailure::Local,
            };
            debug!("connect {:?} failed: {:?}", conn, e);
            connect_failed(shared, j, conn, reason);
        }
        Either::Second(()) => {
            // The pool gave up on it (connect timeout, drain): abort the attempt.
            close(socket, true, opts.close_timeout).await;
            shared.inner.borrow_mut().io_mut().slot_freed(j);
        }
    }
}

fn connect_failed<const H: usize>(
    shared: &Shared<'_, H>,
    j: usize,
    conn: ConnId,
    reason: ConnectFailure,
) {
    let now = now();
    let mut inner = shared.inner.borrow_mut();
    let wanted = inner.io().wanted(j, conn);
    inner.io_mut().slot_freed(j);
    if wanted && inner.connect_failed(conn, reason, (), now).is_err() {
        warning!("connect_failed({:?}) came too late", conn);
    }
}
