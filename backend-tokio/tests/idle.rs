//! Idle connections a server closed are never handed out (issue 12), on
//! real loopback sockets:
//! - the watch sees a FIN, a RST or bytes nobody asked for on an idle
//!   connection and closes it without a lease asking (and without the watch,
//!   the connection stays idle: the control);
//! - the hand-out check catches a close the watch has not reported (and
//!   without it, the dead connection is handed out: the control);
//! - under load with the default settings (100 tasks x 20 leases, 0-1 s
//!   pauses, servers closing or resetting connections idle for 200 ms), no
//!   lease gets a connection the server had closed; with both checks removed
//!   many do.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, request, Opts, Probe, Server};
use tokio::time::Instant;
use wharf_tokio::Lease;
use wharf_tokio::{CloseReason, Pool};

fn idle_server(after_ms: u64, reset: bool) -> Opts {
    Opts {
        idle_close: Some(Duration::from_millis(after_ms)),
        idle_reset: reset,
        ..Opts::default()
    }
}

/// One lease and request, then the connection goes idle; the server ends
/// it (as `opts` say). With the watch, the pool closes it without a lease
/// asking; without it, it stays idle.
async fn seen_without_a_lease(opts: Opts, watch: bool) {
    let server = Server::start(opts).await;
    let route = server.route();
    let (probe, counts) = Probe::new(watch, true);
    let pool = Pool::builder(probe).build().unwrap();
    {
        let mut l = pool.lease(&route).await.unwrap();
        assert!(request(&mut *l).await.unwrap().starts_with("OK 0 1"));
    }
    assert_eq!(pool.stats().idle, 1);
    if watch {
        assert!(
            eventually(|| pool.stats().connections == 0).await,
            "the watch closed the idle connection: {:?}",
            pool.stats()
        );
        let c = pool.counters();
        assert_eq!(c.closes_for(CloseReason::PeerClosed), 1);
        assert_eq!((c.grants, c.validations), (1, 0), "no lease asked");
        assert_eq!(counts.watched.load(Ordering::SeqCst), 1);
    } else {
        // The control: nothing watches, so nothing notices.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.stats().idle, 1);
        assert_eq!(pool.counters().closes_for(CloseReason::PeerClosed), 0);
    }
    pool.check_invariants().unwrap();
}

#[tokio::test]
async fn an_idle_fin_is_seen_without_a_lease() {
    seen_without_a_lease(idle_server(50, false), true).await;
    seen_without_a_lease(idle_server(50, false), false).await;
}

#[tokio::test]
async fn an_idle_reset_is_seen_without_a_lease() {
    seen_without_a_lease(idle_server(50, true), true).await;
    seen_without_a_lease(idle_server(50, true), false).await;
}

#[tokio::test]
async fn bytes_nobody_asked_for_make_an_idle_connection_unusable() {
    let push = Opts {
        push_idle: Some(Duration::from_millis(50)),
        ..Opts::default()
    };
    seen_without_a_lease(push.clone(), true).await;
    seen_without_a_lease(push, false).await;
}

/// The watch is off: the hand-out check (the readiness the reactor
/// recorded, confirmed by a peek) finds the FIN, closes the connection and
/// the lease gets a new one. Without the check, the dead one is handed out.
#[tokio::test]
async fn the_hand_out_check_catches_a_close_the_watch_did_not_report() {
    for check in [true, false] {
        let server = Server::start(idle_server(50, false)).await;
        let route = server.route();
        let (probe, counts) = Probe::new(false, check);
        let pool = Pool::builder(probe)
            .validate_after_inactivity(None)
            .build()
            .unwrap();
        drop(pool.lease(&route).await.unwrap());
        assert!(eventually(|| server.idle_closes() == 1).await);
        // Time for the FIN to reach the reactor.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut l = pool.lease(&route).await.unwrap();
        let first_read = request(&mut *l).await;
        let c = pool.counters();
        if check {
            let reply = first_read.unwrap();
            assert!(reply.starts_with("OK 1 1"), "{reply} {c:?}");
            assert_eq!(counts.broken.load(Ordering::SeqCst), 1);
            assert_eq!((c.connects, c.closes_for(CloseReason::PeerClosed)), (2, 1));
        } else {
            // The control: the dead connection was handed out.
            let e = first_read.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
            assert_eq!(c.connects, 1);
        }
        drop(l);
        pool.check_invariants().unwrap();
    }
}

/// A release that hands its connection straight to a waiting lease: the
/// server closed the connection while it was leased and unused; the release
/// check sees it, so the waiter gets a new connection, not the dead one.
#[tokio::test]
async fn a_release_does_not_hand_a_dead_connection_to_a_waiter() {
    let server = Server::start(idle_server(50, false)).await;
    let route = server.route();
    let (probe, _) = Probe::new(true, true);
    let pool = Pool::builder(probe).max_per_route(1).build().unwrap();
    let a = pool.lease(&route).await.unwrap();
    let waiter = {
        let (pool, route) = (pool.clone(), route.clone());
        tokio::spawn(async move {
            let mut b = pool.lease(&route).await.unwrap();
            request(&mut *b).await
        })
    };
    assert!(eventually(|| pool.stats().pending == 1).await);
    // The server closes the leased (unused) connection.
    assert!(eventually(|| server.idle_closes() == 1).await);
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(a);
    let reply = waiter.await.unwrap().unwrap();
    assert!(reply.starts_with("OK 1 1"), "a new connection: {reply}");
    let c = pool.counters();
    assert_eq!(c.connects, 2);
    assert_eq!(
        c.closes_for(CloseReason::Discarded) + c.closes_for(CloseReason::PeerClosed),
        1
    );
    pool.check_invariants().unwrap();
}

/// What a load run saw.
#[derive(Debug, Default)]
struct Outcome {
    leases: usize,
    /// First read of a handed-out connection was EOF or a reset, and the
    /// server had closed that connection before the pool's hand-out check
    /// ran (or the failure is unexplained): the pool handed out a dead one.
    dead: usize,
    /// First read failed, but the server closed the connection after the
    /// hand-out check: the race no pool can close (the close crossed the
    /// request on the wire; the HTTP layer retries a request never sent).
    race: usize,
    /// Connections the servers closed for being idle.
    idle_closes: usize,
    /// Reported closed by the watch / found broken by the hand-out or
    /// release check.
    watched: usize,
    broken: usize,
}

/// `tasks` tasks, `leases` leases each, after a pause of 0-1 s, over
/// `routes` servers closing connections idle for 200 ms (every other one
/// with a reset), through a pool with the default settings.
async fn load(watch: bool, check: bool, tasks: usize, leases: usize, routes: usize) -> Outcome {
    let mut servers = Vec::new();
    for i in 0..routes {
        servers.push(Server::start(idle_server(200, i % 2 == 1)).await);
    }
    let servers = Arc::new(servers);
    let (probe, counts) = Probe::new(watch, check);
    let pool = Pool::builder(probe).build().unwrap();
    // The server's id of each pool connection (learnt from its answers).
    let ids: Arc<Mutex<HashMap<wharf_tokio::core::ConnId, u64>>> = Arc::default();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (pool, servers, ids) = (pool.clone(), servers.clone(), ids.clone());
        handles.push(tokio::spawn(async move {
            let server = &servers[t % servers.len()];
            let route = server.route();
            let mut rng =
                0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
            let mut out = Outcome::default();
            for _ in 0..leases {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                tokio::time::sleep(Duration::from_millis(rng % 1000)).await;
                let mut l = pool.lease(&route).await.expect("lease");
                // When the pool checked it (the probe's hand-out check, run
                // in the poll that returned the lease), or now.
                let handed = common::last_check().unwrap_or_else(Instant::now);
                let conn = Lease::id(&l).conn();
                out.leases += 1;
                match request(&mut *l).await {
                    Ok(reply) => {
                        let id = reply.split(' ').nth(1).and_then(|s| s.parse().ok());
                        ids.lock().unwrap().insert(conn, id.expect("OK <id> <n>"));
                    }
                    Err(_) => {
                        Lease::discard(&mut l);
                        let id = ids.lock().unwrap().get(&conn).copied();
                        // The server notes the time of its close just after
                        // it closed: the client may see the close first.
                        let mut closed = None;
                        if let Some(id) = id {
                            for _ in 0..100 {
                                closed = server.idle_closed_at(id);
                                if closed.is_some() {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                        match closed {
                            Some(at) if at >= handed => {
                                out.race += 1;
                                eprintln!(
                                    "race: the server closed {} us after the hand-out check",
                                    at.duration_since(handed).as_micros()
                                );
                            }
                            other => {
                                out.dead += 1;
                                eprintln!(
                                    "dead: server id {id:?}, closed {:?} before the hand-out check",
                                    other.map(|at| handed.duration_since(at))
                                );
                            }
                        }
                    }
                }
            }
            out
        }));
    }
    let mut total = Outcome::default();
    for h in handles {
        let o = h.await.unwrap();
        total.leases += o.leases;
        total.dead += o.dead;
        total.race += o.race;
    }
    total.idle_closes = servers.iter().map(|s| s.idle_closes()).sum();
    total.watched = counts.watched.load(Ordering::SeqCst);
    total.broken = counts.broken.load(Ordering::SeqCst);
    pool.check_invariants().unwrap();
    eprintln!(
        "idle load (watch {watch}, check {check}): {total:?}; pool: {:?}",
        pool.counters()
    );
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_with_default_settings_no_dead_connection_is_handed_out() {
    let o = load(true, true, 100, 20, 20).await;
    assert_eq!(o.leases, 2000);
    assert!(o.idle_closes >= 200, "the servers closed enough: {o:?}");
    assert_eq!(o.dead, 0, "dead connections handed out: {o:?}");
    // The close crossing a request on the wire (the server closed after
    // the check): rare (0-3 in 2,000 on an idle machine), never the pool's
    // doing. On a loaded machine timers fire late and bunch up, so more
    // pauses end as the server's 200 ms idle close fires (up to 22 seen with
    // a build running): the bound leaves room for that.
    assert!(o.race * 20 <= o.leases, "{o:?}");
    // The watch saw most closes before a lease asked (over 97% on an idle
    // machine, 85% seen under load, when the pool's task runs late); the
    // hand-out check caught the ones in between (`dead` is 0). Without the
    // watch it sees none.
    assert!(o.watched * 4 >= o.idle_closes * 3, "{o:?}");
}

/// The control: without the watch and the hand-out check, the same kind of
/// load (smaller) gets dead connections (the default validation after 2 s
/// of inactivity does not cover 200 ms - 1 s pauses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_watch_and_the_check_dead_connections_are_handed_out() {
    let o = load(false, false, 20, 10, 4).await;
    assert_eq!(o.leases, 200);
    assert!(o.dead >= 10, "{o:?}");
}
