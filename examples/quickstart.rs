//! Quickstart (virtual time): drives the core through a scripted scenario with
//! three routes, per-route and total limits, a burst of leases, a connect
//! failure and a lease timeout, and prints what the pool asked the backend to do.
//!
//! Run: `cargo run --release --example quickstart`

use wharf::{
    Action, Config, ConnectFailure, Duration, Instant, LeaseOutcome, Pool, Release, Storage,
};

fn main() {
    let mut storage: Storage<&str, 8, 4, 32, 8> = Storage::new();
    let config = Config { max_total: 6, max_per_route: 3, ..Config::default() };
    let mut pool = Pool::new(&mut storage, config).expect("valid config");
    let ms = Instant::from_millis;
    let mut connects = Vec::new();
    let mut leases = Vec::new();

    let drain = |pool: &mut Pool<&str>, connects: &mut Vec<_>, leases: &mut Vec<_>| {
        while let Some(a) = pool.poll_action() {
            match &a {
                Action::Connect { conn, route } => {
                    println!("  -> connect {:?} to {}", conn.index(), pool.route_key(*route).unwrap());
                    connects.push(*conn);
                }
                Action::Granted { lease, .. } => {
                    println!("  -> granted lease on connection {}", lease.conn().index());
                    leases.push(*lease);
                }
                other => println!("  -> {other:?}"),
            }
        }
    };

    println!("t=0: a burst of 10 leases over three routes (limits: 3 per route, 6 in total)");
    for (i, route) in ["api:443", "db:5432", "cache:6379"].iter().cycle().take(10).enumerate() {
        let deadline = Some(ms(50));
        match pool.lease(route, None, ms(i as u64), deadline) {
            Ok(LeaseOutcome::Granted(l)) => leases.push(l),
            Ok(LeaseOutcome::Queued(_)) => {}
            Err(e) => println!("  lease {i} refused: {e}"),
        }
        drain(&mut pool, &mut connects, &mut leases);
    }

    println!("t=10ms: the backend finishes its connects; the cache host refuses");
    for conn in connects.drain(..).collect::<Vec<_>>() {
        let route = pool.route_of(conn).and_then(|r| pool.route_key(r).copied());
        if route == Some("cache:6379") {
            pool.connect_failed(conn, ConnectFailure::Remote, ms(10)).unwrap();
        } else {
            pool.connected(conn, 1, ms(10)).unwrap();
        }
        drain(&mut pool, &mut connects, &mut leases);
    }

    println!("t=20ms: every lease is released and reused by the next waiter");
    for lease in leases.drain(..).collect::<Vec<_>>() {
        pool.release(lease, Release::REUSE, ms(20)).unwrap();
        drain(&mut pool, &mut connects, &mut leases);
    }

    println!("t=25ms: 3 more leases on api:443 with a 15 ms deadline; nobody releases in time");
    for _ in 0..3 {
        let _ = pool.lease(&"api:443", None, ms(25), Some(ms(40)));
        drain(&mut pool, &mut connects, &mut leases);
    }

    println!("t=60ms: deadlines pass");
    pool.handle_timeout(ms(60));
    drain(&mut pool, &mut connects, &mut leases);
    for lease in leases.drain(..).collect::<Vec<_>>() {
        pool.release(lease, Release::REUSE, ms(61)).unwrap();
    }
    pool.handle_timeout(ms(61) + Duration::from_secs(120));
    drain(&mut pool, &mut connects, &mut leases);

    let c = pool.counters();
    println!(
        "\nsummary: connects={} connected={} failed={} grants={} reuses={} timeouts={} idle_closes={}",
        c.connects,
        c.connected,
        c.connect_failures.iter().sum::<u64>(),
        c.grants,
        c.reuses,
        c.timeouts,
        c.closes_for(wharf::CloseReason::IdleTimeout)
    );
    pool.check_invariants().expect("invariants hold");
}
