//! Multiplexed connections (issue 12) over real loopback sockets: a fake
//! HTTP/2-like connection whose "connection task" reads control lines the
//! server sends (`SETTINGS <k>`, `GOAWAY`) and reports them to the pool
//! through the connector's `poll_event`, as an HTTP/2 connector reports a
//! SETTINGS frame and a GOAWAY. Leases share the connection (a `Clone`
//! handle, as hyper's `SendRequest`).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use wharf_tokio::Lease;
use wharf_tokio::{CloseReason, ConnEvent, Connector, Pool};

/// What the connection task learnt, for the pool's watch.
#[derive(Default)]
struct MuxState {
    capacity: AtomicU32,
    changed: AtomicBool,
    goaway: AtomicBool,
    waker: Mutex<Option<Waker>>,
    task: Mutex<Option<AbortHandle>>,
}

impl MuxState {
    fn wake(&self) {
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }
}

/// A lease's handle (every lease of the connection has a clone).
#[derive(Clone)]
struct Mux {
    state: Arc<MuxState>,
}

struct MuxConnector {
    /// Switch to show the tests fail without the watch.
    watch: bool,
}

impl Connector<SocketAddr> for MuxConnector {
    type Conn = Mux;
    type Error = io::Error;

    async fn connect(&self, addr: &SocketAddr) -> io::Result<Mux> {
        let stream = TcpStream::connect(addr).await?;
        let mut lines = BufReader::new(stream);
        // The server's first line is its SETTINGS (MAX_CONCURRENT_STREAMS).
        let mut first = String::new();
        lines.read_line(&mut first).await?;
        let k = parse_settings(&first).ok_or_else(|| io::Error::other("no SETTINGS"))?;
        let state = Arc::new(MuxState::default());
        state.capacity.store(k, Ordering::SeqCst);
        let st = state.clone();
        // The connection task: reads the server's frames.
        let task = tokio::spawn(async move {
            let mut line = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => {
                        st.goaway.store(true, Ordering::SeqCst);
                        st.wake();
                        return;
                    }
                    Ok(_) => {}
                }
                if let Some(k) = parse_settings(&line) {
                    st.capacity.store(k, Ordering::SeqCst);
                    st.changed.store(true, Ordering::SeqCst);
                } else if line.trim() == "GOAWAY" {
                    st.goaway.store(true, Ordering::SeqCst);
                }
                st.wake();
            }
        });
        *state.task.lock().unwrap() = Some(task.abort_handle());
        Ok(Mux { state })
    }

    fn multiplexed(&self, conn: &Mux) -> Option<u32> {
        Some(conn.state.capacity.load(Ordering::SeqCst))
    }

    fn share(&self, conn: &Mux) -> Option<Mux> {
        Some(conn.clone())
    }

    fn poll_event(&self, conn: &mut Mux, cx: &mut Context<'_>) -> Poll<ConnEvent> {
        if !self.watch {
            return Poll::Pending;
        }
        let s = &conn.state;
        // The waker first, then the flags: a frame that lands in between
        // wakes the new waker.
        *s.waker.lock().unwrap() = Some(cx.waker().clone());
        if s.goaway.load(Ordering::SeqCst) {
            return Poll::Ready(ConnEvent::PeerClosed);
        }
        if s.changed.swap(false, Ordering::SeqCst) {
            return Poll::Ready(ConnEvent::Capacity(s.capacity.load(Ordering::SeqCst)));
        }
        Poll::Pending
    }

    fn close(&self, conn: Mux) -> impl std::future::Future<Output = ()> + Send + 'static {
        if let Some(t) = conn.state.task.lock().unwrap().take() {
            t.abort();
        }
        async {}
    }
}

fn parse_settings(line: &str) -> Option<u32> {
    line.trim().strip_prefix("SETTINGS ")?.parse().ok()
}

/// A server that announces `SETTINGS <k>` on accept and sends what the test
/// asks to every connection it accepted.
struct MuxServer {
    addr: SocketAddr,
    conns: Arc<tokio::sync::Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicU32>,
}

impl MuxServer {
    async fn start(k: u32) -> MuxServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(tokio::sync::Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicU32::new(0));
        let (c, a) = (conns.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                if s.write_all(format!("SETTINGS {k}\n").as_bytes())
                    .await
                    .is_ok()
                {
                    c.lock().await.push(s);
                    a.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        MuxServer {
            addr,
            conns,
            accepted,
        }
    }

    /// Sends `line` on connection `i` (in accept order).
    async fn send(&self, i: usize, line: &str) {
        let mut conns = self.conns.lock().await;
        conns[i].write_all(line.as_bytes()).await.unwrap();
    }
}

fn pool(watch: bool) -> Pool<SocketAddr, MuxConnector> {
    Pool::builder(MuxConnector { watch })
        .max_per_route(1)
        .max_leases(16)
        .connecting_capacity(4)
        .build()
        .unwrap()
}

/// Polls `f` once: `Some` if it is done.
fn now_or_never<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match std::pin::Pin::new(f).poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Waits (bounded) until `f` holds.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..300 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

#[tokio::test]
async fn four_leases_share_a_connection_of_capacity_4_and_the_fifth_waits() {
    let server = MuxServer::start(4).await;
    let pool = pool(true);
    let route = server.addr;
    let mut leases = Vec::new();
    for _ in 0..4 {
        leases.push(pool.lease(&route).await.unwrap());
    }
    let conn = Lease::id(&leases[0]).conn();
    assert!(
        leases.iter().all(|l| Lease::id(l).conn() == conn),
        "one connection"
    );
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    let s = pool.stats();
    assert_eq!((s.connections, s.leased), (1, 4), "{s:?}");

    // The fifth queues: the connection is full and the route at its limit.
    let mut fifth = Box::pin(pool.lease(&route));
    assert!(now_or_never(&mut fifth).is_none());
    assert_eq!(pool.stats().pending, 1);
    drop(leases.pop());
    let fifth = fifth.await.unwrap();
    assert_eq!(
        Lease::id(&fifth).conn(),
        conn,
        "granted on the same connection"
    );
    assert_eq!(pool.counters().connects, 1);
    drop((leases, fifth));
    assert_eq!(pool.stats().idle, 1);
    pool.check_invariants().unwrap();
}

/// The peer lowers its capacity from 4 to 1 while 3 leases are out: no new
/// lease starts until fewer than 1 are out. Without the watch the pool never
/// hears of it and grants the new lease at once (the control).
#[tokio::test]
async fn a_capacity_lowered_from_4_to_1_with_3_leases_out() {
    for watch in [true, false] {
        let server = MuxServer::start(4).await;
        let pool = pool(watch);
        let route = server.addr;
        let mut leases = Vec::new();
        for _ in 0..3 {
            leases.push(pool.lease(&route).await.unwrap());
        }
        server.send(0, "SETTINGS 1\n").await;
        // Time for the frame to reach the connection task and the pool.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut next = Box::pin(pool.lease(&route));
        if !watch {
            // The control: the pool did not hear of it.
            assert!(now_or_never(&mut next).is_some(), "granted at once");
            continue;
        }
        assert!(now_or_never(&mut next).is_none(), "over the new capacity");
        drop(leases.pop());
        drop(leases.pop());
        tokio::task::yield_now().await;
        assert!(now_or_never(&mut next).is_none(), "one out: still full");
        drop(leases.pop());
        let l = next.await.unwrap();
        assert_eq!(pool.counters().connects, 1);
        // Raised again: a second lease fits at once.
        server.send(0, "SETTINGS 2\n").await;
        let second = tokio::time::timeout(Duration::from_secs(2), pool.lease(&route))
            .await
            .expect("the raise serves the next lease")
            .unwrap();
        assert_eq!(Lease::id(&second).conn(), Lease::id(&l).conn());
        drop((l, second));
        pool.check_invariants().unwrap();
    }
}

/// The peer shuts the connection down gracefully (a GOAWAY) with 2 leases
/// out: they finish, no new lease goes to it (a new connection is made), and
/// it closes as `PeerClosed` with its last lease. Without the watch the new
/// lease goes to the old connection (the control).
#[tokio::test]
async fn a_goaway_drains_the_connection() {
    for watch in [true, false] {
        let server = MuxServer::start(4).await;
        let pool = Pool::builder(MuxConnector { watch })
            .max_per_route(2)
            .max_leases(16)
            .connecting_capacity(4)
            .build()
            .unwrap();
        let route = server.addr;
        let a = pool.lease(&route).await.unwrap();
        let b = pool.lease(&route).await.unwrap();
        let old = Lease::id(&a).conn();
        server.send(0, "GOAWAY\n").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let c = pool.lease(&route).await.unwrap();
        if !watch {
            assert_eq!(Lease::id(&c).conn(), old, "the control: not drained");
            continue;
        }
        assert_ne!(Lease::id(&c).conn(), old, "a new connection");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
        drop(a);
        assert_eq!(pool.stats().connections, 2, "drains until its last lease");
        drop(b);
        assert!(eventually(|| pool.stats().connections == 1).await);
        assert_eq!(pool.counters().closes_for(CloseReason::PeerClosed), 1);
        drop(c);
        pool.check_invariants().unwrap();
    }
}

/// Envoy's `max_requests_per_connection` on a multiplexed connection: the
/// lease that uses the last one drains it.
#[tokio::test]
async fn the_lease_that_uses_the_last_of_max_leases_per_conn_drains_it() {
    let server = MuxServer::start(4).await;
    let pool = Pool::builder(MuxConnector { watch: true })
        .max_per_route(2)
        .max_leases(16)
        .max_leases_per_conn(3)
        .build()
        .unwrap();
    let route = server.addr;
    let l: Vec<_> = [(); 3].iter().map(|_| pool.lease(&route)).collect();
    let mut leases = Vec::new();
    for f in l {
        leases.push(f.await.unwrap());
    }
    let first = Lease::id(&leases[0]).conn();
    assert!(leases.iter().all(|l| Lease::id(l).conn() == first));
    let fourth = pool.lease(&route).await.unwrap();
    assert_ne!(
        Lease::id(&fourth).conn(),
        first,
        "the first connection drains"
    );
    drop(leases);
    assert!(eventually(|| pool.stats().connections == 1).await);
    drop(fourth);
    pool.check_invariants().unwrap();
}
