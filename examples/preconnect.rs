//! Predictive preconnect, simulated in virtual time (no sockets).
//!
//! `cargo run --release --example preconnect`
//!
//! Bursts of requests arrive at a cluster of hosts whose connects take 10 ms.
//! Each request leases a connection through the cluster (round robin), holds it
//! for a short service time and releases it; connections idle out between
//! bursts, so every burst starts cold, and the servers close a connection after
//! five requests, so connections are replaced all the time. The example sweeps the cluster's
//! predictive preconnect ratio from 1.0 (off) to 3.0, prints p50/p99 lease wait
//! and connections opened per ratio, and writes an SVG chart to
//! `target/preconnect.svg`. Tune the ratio by looking at it: a higher ratio
//! hides connect latency at the price of connections opened ahead.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;

use wharf::{
    Action, Balancer, Capacity, Cluster, Config, Duration, Instant, LeaseOutcome, Pool, Release,
};

const HOSTS: [&str; 4] = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"];
const CONNECT: u64 = 10_000; // µs
const BURSTS: u64 = 20;
const BURST_EVERY: u64 = 1_000_000; // µs
const PER_BURST: u64 = 400;
const MAX_REQUESTS: u32 = 20;

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive(u64),
    Connected(wharf::ConnId),
    Release(wharf::Lease),
}

struct Row {
    ratio: f32,
    p50: f64,
    p99: f64,
    connections: u64,
    preconnects: u64,
}

fn simulate(ratio: f32) -> Row {
    let cap = Capacity {
        conns: 128,
        routes: 8,
        waiters: 512,
        leases: 128,
    };
    let config = Config {
        max_total: 96,
        max_per_route: 24,
        idle_timeout: Some(Duration::from_secs(5)),
        validate_after_inactivity: None,
        // The servers close a connection after a few requests (HTTP/1 `max`
        // keep-alive), so connections are replaced all the time.
        max_leases_per_conn: Some(MAX_REQUESTS),
        ..Config::default()
    };
    let mut pool: Pool<'static, &str> = Pool::with_capacity(cap, config).unwrap();
    let mut cluster: Cluster<&str, 4> = Cluster::new(Balancer::RoundRobin);
    for h in HOSTS {
        cluster.add_host(h).unwrap();
    }
    cluster
        .set_predictive_ratio(if ratio <= 1.0 { 0.0 } else { ratio })
        .unwrap();

    // Arrivals: within each burst, inter-arrival times from a fixed xorshift
    // sequence (mean 0.5 ms), so every ratio sees the same workload.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut events = BinaryHeap::new();
    let mut id = 0u64;
    for b in 0..BURSTS {
        let mut t = b * BURST_EVERY;
        for _ in 0..PER_BURST {
            t += next() % 1_000;
            events.push(Reverse((t, Ev::Arrive(id))));
            id += 1;
        }
    }
    let service = |i: u64| 4_000 + (i * 7919) % 8_000; // 4..12 ms
    let mut started = std::collections::HashMap::new();
    let mut waiter_of = std::collections::HashMap::new();
    let mut waits = Vec::new();
    let mut now = 0u64;
    loop {
        let timer = pool.poll_timeout().map(|t| t.as_micros());
        let ev_t = events.peek().map(|Reverse((t, _))| *t);
        let t = match (ev_t, timer) {
            (None, None) => break,
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap(),
        };
        now = now.max(t);
        let at = Instant::from_micros(now);
        if ev_t == Some(t) {
            let Reverse((_, ev)) = events.pop().unwrap();
            match ev {
                Ev::Arrive(i) => match cluster.lease(&mut pool, None, at, None) {
                    Ok(l) => match l.outcome {
                        LeaseOutcome::Granted(lease) => {
                            waits.push(0);
                            events.push(Reverse((now + service(i), Ev::Release(lease))));
                        }
                        LeaseOutcome::Queued(w) => {
                            waiter_of.insert(w, i);
                            started.insert(w, now);
                        }
                    },
                    Err(e) => panic!("lease failed: {e}"),
                },
                Ev::Connected(c) => {
                    let _ = pool.connected(c, 1, at);
                }
                Ev::Release(l) => pool.release(l, Release::REUSE, at).unwrap(),
            }
        } else {
            pool.handle_timeout(at);
        }
        while let Some(a) = pool.poll_action() {
            match a {
                Action::Connect { conn, .. } => {
                    events.push(Reverse((now + CONNECT, Ev::Connected(conn))))
                }
                Action::Granted { waiter, lease } => {
                    waits.push(now - started.remove(&waiter).unwrap());
                    let i = waiter_of.remove(&waiter).unwrap();
                    events.push(Reverse((now + service(i), Ev::Release(lease))));
                }
                Action::Failed { reason, .. } => panic!("lease failed: {reason:?}"),
                _ => {}
            }
        }
    }
    pool.check_invariants().unwrap();
    assert_eq!(waits.len() as u64, BURSTS * PER_BURST);
    waits.sort_unstable();
    let pct = |p: f64| waits[((waits.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    Row {
        ratio,
        p50: pct(0.50),
        p99: pct(0.99),
        connections: pool.counters().connects,
        preconnects: cluster.preconnects(),
    }
}

fn svg(rows: &[Row]) -> String {
    let (w, h, m) = (720.0, 420.0, 60.0);
    let max_wait = rows.iter().map(|r| r.p99).fold(1.0, f64::max) * 1.1;
    let max_conn = rows
        .iter()
        .map(|r| r.connections as f64)
        .fold(1.0, f64::max)
        * 1.1;
    let x = |ratio: f32| m + (ratio as f64 - 1.0) / 2.0 * (w - 2.0 * m);
    let yw = |v: f64| h - m - v / max_wait * (h - 2.0 * m);
    let yc = |v: f64| h - m - v / max_conn * (h - 2.0 * m);
    let line = |pts: Vec<(f64, f64)>, color: &str| {
        let d: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        format!(
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            d.join(" ")
        )
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">Predictive preconnect: lease wait and connections vs ratio</text>"#,
        w / 2.0
    );
    let _ = write!(
        s,
        r#"<line x1="{m}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        h - m,
        w - m,
        h - m
    );
    let _ = write!(
        s,
        r#"<line x1="{m}" y1="{m}" x2="{m}" y2="{}" stroke="black"/>"#,
        h - m
    );
    let _ = write!(
        s,
        r#"<line x1="{}" y1="{m}" x2="{}" y2="{}" stroke="black"/>"#,
        w - m,
        w - m,
        h - m
    );
    for r in rows {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.2}</text>"#,
            x(r.ratio),
            h - m + 16.0,
            r.ratio
        );
    }
    for k in 0..=4 {
        let v = max_wait * k as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{v:.1}</text>"#,
            m - 6.0,
            yw(v) + 4.0
        );
        let c = max_conn * k as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}">{c:.0}</text>"#,
            w - m + 6.0,
            yc(c) + 4.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">preconnect ratio</text>"#,
        w / 2.0,
        h - 18.0
    );
    let _ = write!(
        s,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">lease wait (ms)</text>"#,
        h / 2.0,
        h / 2.0
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" transform="rotate(90 {} {})" text-anchor="middle">connections opened</text>"#,
        w - 16.0,
        h / 2.0,
        w - 16.0,
        h / 2.0
    );
    s += &line(
        rows.iter().map(|r| (x(r.ratio), yw(r.p99))).collect(),
        "#d62728",
    );
    s += &line(
        rows.iter().map(|r| (x(r.ratio), yw(r.p50))).collect(),
        "#1f77b4",
    );
    s += &line(
        rows.iter()
            .map(|r| (x(r.ratio), yc(r.connections as f64)))
            .collect(),
        "#2ca02c",
    );
    for (i, (name, color)) in [
        ("p99 wait", "#d62728"),
        ("p50 wait", "#1f77b4"),
        ("connections", "#2ca02c"),
    ]
    .iter()
    .enumerate()
    {
        let y = m + 14.0 + i as f64 * 16.0;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{}">{name}</text>"#,
            m + 12.0,
            y - 4.0,
            m + 30.0,
            y
        );
    }
    s += "</svg>\n";
    s
}

fn main() {
    let ratios = [1.0f32, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0];
    let rows: Vec<Row> = ratios.iter().map(|&r| simulate(r)).collect();
    println!(
        "{} bursts of {} requests, {} hosts, {} ms connects, {} requests per connection, idle out between bursts\n",
        BURSTS,
        PER_BURST,
        HOSTS.len(),
        CONNECT / 1000,
        MAX_REQUESTS
    );
    println!(
        "{:>6} {:>10} {:>10} {:>12} {:>12}",
        "ratio", "p50 ms", "p99 ms", "connections", "preconnects"
    );
    for r in &rows {
        println!(
            "{:>6.2} {:>10.2} {:>10.2} {:>12} {:>12}",
            r.ratio, r.p50, r.p99, r.connections, r.preconnects
        );
    }
    let base = rows[0].p99;
    let at15 = rows
        .iter()
        .find(|r| r.ratio == 1.5)
        .map(|r| r.p99)
        .unwrap_or(base);
    println!(
        "\np99 at ratio 1.5 / p99 at ratio 1.0 = {:.2}",
        at15 / base.max(f64::MIN_POSITIVE)
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("preconnect.svg");
    std::fs::write(&path, svg(&rows)).unwrap();
    println!("chart: {}", path.display());
}
