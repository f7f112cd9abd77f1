//! Quickstart: the Wharf HTTP client against real hyper servers that close
//! connections, on loopback.
//!
//! Three routes: two HTTP/1.1 servers (hyper) that close a connection idle
//! for 200 ms and close one after 300 requests (`Connection: close`), and
//! an HTTP/2 server (h2c, prior knowledge) that allows 4 concurrent streams
//! per connection and sends GOAWAY after 2,000. One `wharf_tokio::http::Client`
//! with limits (16 connections per route, 2 for the HTTP/2 route, 48 in
//! total) drives 24,000 requests from 300 tasks in three waves, 400 ms
//! apart (so the servers close the idle connections between waves). It
//! prints progress, a table per route, and one machine-readable line:
//!
//! `summary: requests=<n> errors=<n> connections=<n> reuse=<f> p99_wait_us=<n> h2_max_streams_in_use=<n>`
//!
//! Run: `cargo run --release --example quickstart` (nothing outside the
//! repository; only 127.0.0.1 is used).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_test_servers::{CloseReason, Http1Server, Http2Server, HttpServer};
use wharf_tokio::http::http::{Request, Version};
use wharf_tokio::http::{Body, Client, HttpRoute, Protocol};
use wharf_tokio::RouteConfig;

const TASKS: usize = 300;
const WAVES: usize = 3;
const PER_WAVE: usize = 8_000;
const REQUESTS: usize = WAVES * PER_WAVE;
const PAUSE: Duration = Duration::from_millis(400);
const MAX_PER_ROUTE: u32 = 16;
const H2_CONNECTIONS: u32 = 2;
const MAX_TOTAL: u32 = 48;
const H1_IDLE: Duration = Duration::from_millis(200);
const H1_MAX_REQUESTS: u64 = 300;
const H2_STREAMS: u32 = 4;
const H2_MAX_REQUESTS: u64 = 2_000;

#[derive(Default)]
struct Tally {
    requests: u64,
    errors: u64,
    latency_us: Vec<u32>,
    wait_us: Vec<u32>,
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Servers.
    let mut servers: Vec<HttpServer> = Vec::new();
    for _ in 0..2 {
        servers.push(
            Http1Server::builder()
                .idle_timeout(H1_IDLE)
                .max_requests_per_conn(H1_MAX_REQUESTS)
                .close_linger(Duration::ZERO)
                .body_size(64)
                .start()
                .await,
        );
    }
    servers.push(
        Http2Server::builder()
            .max_concurrent_streams(H2_STREAMS)
            .max_requests_per_conn(H2_MAX_REQUESTS)
            .close_linger(Duration::ZERO)
            .body_size(64)
            .start()
            .await,
    );
    let is_h2 = |i: usize| i == 2;
    let urls: Vec<String> = servers.iter().map(|s| s.url("/")).collect();
    println!(
        "wharf quickstart: {REQUESTS} requests from {TASKS} tasks in {WAVES} waves {PAUSE:?} apart, \
         over 3 routes; at most {MAX_PER_ROUTE} connections per route ({H2_CONNECTIONS} for HTTP/2) \
         and {MAX_TOTAL} open at once in total"
    );
    for (i, u) in urls.iter().enumerate() {
        if is_h2(i) {
            println!(
                "  {u}  HTTP/2 (h2c): {H2_STREAMS} streams per connection, GOAWAY after {H2_MAX_REQUESTS}"
            );
        } else {
            println!(
                "  {u}  HTTP/1.1: closes a connection idle {H1_IDLE:?}, and after {H1_MAX_REQUESTS} requests"
            );
        }
    }

    // The client. Requests to the HTTP/2 server ask for HTTP/2 (prior
    // knowledge); its route gets a limit of its own.
    let h2_route = HttpRoute::http("127.0.0.1", servers[2].addr().port())
        .ok_or("no route")?
        .with_protocol(Protocol::Http2);
    let client = Client::builder()
        .max_total(MAX_TOTAL)
        .max_per_host(MAX_PER_ROUTE)
        .max_pending(TASKS as u32)
        .route(
            h2_route,
            RouteConfig {
                max_connections: Some(H2_CONNECTIONS),
                ..RouteConfig::default()
            },
        )
        .build()?;

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let peak_open = Arc::new(AtomicU32::new(0));
    let started = Instant::now();

    // Progress while it runs (and the most connections open at once, as the
    // pool's gauge shows it every 20 ms).
    let progress = {
        let (client, done, peak_open) = (client.clone(), done.clone(), peak_open.clone());
        tokio::spawn(async move {
            let mut tick = 0u32;
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let s = client.pool().stats();
                peak_open.fetch_max(s.connections, Ordering::Relaxed);
                tick += 1;
                if tick.is_multiple_of(10) {
                    let c = client.stats();
                    println!(
                        "progress: {:>6}/{REQUESTS} requests  connections {:>2} (idle {:>2}, leases {:>3})  waiting {:>3}  opened {:>3}",
                        done.load(Ordering::Relaxed),
                        s.connections,
                        s.idle,
                        s.leased,
                        s.pending,
                        c.http1_connections + c.http2_connections,
                    );
                }
            }
        })
    };

    let mut per_route: Vec<Tally> = (0..servers.len()).map(|_| Tally::default()).collect();
    for wave in 0..WAVES {
        if wave > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        let end = ((wave + 1) * PER_WAVE) as u64;
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let (client, urls, next, done) =
                (client.clone(), urls.clone(), next.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut tally: Vec<Tally> = (0..urls.len()).map(|_| Tally::default()).collect();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= end {
                        next.fetch_sub(1, Ordering::Relaxed);
                        break;
                    }
                    let r = (n % urls.len() as u64) as usize;
                    let t = &mut tally[r];
                    t.requests += 1;
                    let version = if is_h2(r) {
                        Version::HTTP_2
                    } else {
                        Version::HTTP_11
                    };
                    let req = Request::get(urls[r].as_str())
                        .version(version)
                        .body(Body::empty());
                    let t0 = Instant::now();
                    let result = match req {
                        Ok(req) => match client.request(req).await {
                            Ok(resp) => {
                                let wait = resp.body().info().pool_wait;
                                let ok = resp.status() == 200;
                                match resp.into_body().bytes().await {
                                    Ok(b) if ok && b.len() == 64 => Ok(wait),
                                    Ok(_) => Err(String::from("unexpected response")),
                                    Err(e) => Err(e.to_string()),
                                }
                            }
                            Err(e) => Err(e.to_string()),
                        },
                        Err(e) => Err(e.to_string()),
                    };
                    match result {
                        Ok(wait) => {
                            t.latency_us.push(us(t0.elapsed()));
                            t.wait_us.push(us(wait));
                        }
                        Err(e) => {
                            eprintln!("request to {} failed: {e}", urls[r]);
                            t.errors += 1;
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                tally
            }));
        }
        for t in tasks {
            for (acc, t) in per_route.iter_mut().zip(t.await?) {
                acc.requests += t.requests;
                acc.errors += t.errors;
                acc.latency_us.extend(t.latency_us);
                acc.wait_us.extend(t.wait_us);
            }
        }
    }
    let elapsed = started.elapsed();
    progress.abort();
    let stats = client.stats();
    let counters = client.pool().counters();
    client
        .pool()
        .check_invariants()
        .map_err(|e| format!("invariant violated: {e:?}"))?;
    client.close().await;

    // The table (connections and streams as the servers saw them).
    println!();
    println!(
        "{:<22} {:>8} {:>7} {:>12} {:>13} {:>8} {:>9} {:>9} {:>10}",
        "route",
        "requests",
        "errors",
        "connections",
        "streams/conn",
        "reuse",
        "p50 µs",
        "p99 µs",
        "p99 wait"
    );
    let mut all_waits = Vec::with_capacity(REQUESTS);
    let (mut requests, mut errors, mut connections) = (0u64, 0u64, 0u64);
    for (i, t) in per_route.iter_mut().enumerate() {
        t.latency_us.sort_unstable();
        t.wait_us.sort_unstable();
        let s = servers[i].stats();
        let streams = if is_h2(i) {
            format!("{} max", s.peak_streams())
        } else {
            String::from("1")
        };
        println!(
            "{:<22} {:>8} {:>7} {:>12} {:>13} {:>8.4} {:>9} {:>9} {:>10}",
            urls[i].trim_end_matches('/'),
            t.requests,
            t.errors,
            s.accepted,
            streams,
            t.requests.saturating_sub(s.accepted) as f64 / t.requests.max(1) as f64,
            percentile(&t.latency_us, 0.50),
            percentile(&t.latency_us, 0.99),
            percentile(&t.wait_us, 0.99),
        );
        requests += t.requests;
        errors += t.errors;
        connections += s.accepted;
        all_waits.extend_from_slice(&t.wait_us);
    }
    all_waits.sort_unstable();
    let reuse = requests.saturating_sub(connections) as f64 / requests.max(1) as f64;
    let p99_wait = percentile(&all_waits, 0.99);
    println!(
        "{:<22} {:>8} {:>7} {:>12} {:>13} {:>8.4} {:>9} {:>9} {:>10}",
        "total", requests, errors, connections, "", reuse, "", "", p99_wait
    );

    // Why more connections were opened than are ever open at once: the
    // servers closed some (and the client closed the rest at the end).
    let closed = |i: usize, reason: &CloseReason| servers[i].stats().closed_for(reason);
    let idle = closed(0, &CloseReason::IdleTimeout) + closed(1, &CloseReason::IdleTimeout);
    let limit = closed(0, &CloseReason::MaxRequests) + closed(1, &CloseReason::MaxRequests);
    let goaway = closed(2, &CloseReason::MaxRequests) + closed(2, &CloseReason::GoAway);
    println!();
    println!(
        "connections: {connections} opened over the run, at most {} open at once (limit {MAX_TOTAL}): \
         {} closed by the servers ({idle} idle for {H1_IDLE:?} between waves, {limit} after \
         {H1_MAX_REQUESTS} requests, {goaway} by GOAWAY after {H2_MAX_REQUESTS} streams), \
         {} open until the client closed at the end",
        peak_open.load(Ordering::Relaxed),
        idle + limit + goaway,
        connections.saturating_sub(idle + limit + goaway),
    );
    println!(
        "client: {} HTTP/1.1 and {} HTTP/2 connections, retries {} unsent + {} reused-connection, \
         most HTTP/2 streams on one connection {}; pool grants {}, reuses {}; \
         late requests at the servers {}; {:.0} requests/s over {:.2?}",
        stats.http1_connections,
        stats.http2_connections,
        stats.retried_unsent,
        stats.retried_reused,
        stats.max_streams_in_use,
        counters.grants,
        counters.reuses,
        servers.iter().map(|s| s.stats().late_requests).sum::<u64>(),
        requests as f64 / elapsed.as_secs_f64(),
        elapsed,
    );
    println!(
        "summary: requests={requests} errors={errors} connections={connections} reuse={reuse:.4} \
         p99_wait_us={p99_wait} h2_max_streams_in_use={}",
        stats.max_streams_in_use
    );
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
