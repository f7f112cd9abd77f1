//! Quickstart: a real pool over real loopback sockets.
//!
//! Starts a small HTTP/1.1 keep-alive server on four loopback ports (each port
//! is a route), then drives a burst of 20,000 requests from 300 tasks through
//! one `wharf_tokio::Pool` with per-route and total limits, preconnect and
//! warm-up. Prints progress while it runs, then a table per route and one
//! machine-readable line:
//!
//! `summary: requests=<n> errors=<e> connections=<c> reuse=<ratio> p99_wait_us=<w>`
//!
//! Run: `cargo run --release --example quickstart` (needs nothing outside the
//! repository; only 127.0.0.1 is used).

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wharf_tokio::Lease;
use wharf_tokio::{Pool, RouteConfig, TcpConnector};

const ROUTES: usize = 4;
const TASKS: usize = 300;
const REQUESTS: usize = 20_000;
const MAX_PER_ROUTE: u32 = 16;
const MAX_TOTAL: u32 = 48;

// ---------------------------------------------------------------- server

/// One keep-alive HTTP/1.1 server: answers every request with a small body
/// and announces a keep-alive of 30 s. Counts the connections it accepted.
async fn serve(listener: TcpListener, accepted: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = serve_conn(stream).await;
        });
    }
}

async fn serve_conn(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = [0u8; 2048];
    let mut filled = 0;
    loop {
        // Read one request head (requests carry no body here).
        let end = loop {
            if let Some(pos) = find(&buf[..filled], b"\r\n\r\n") {
                break pos + 4;
            }
            if filled == buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request head too long",
                ));
            }
            let n = s.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Ok(());
            }
            filled += n;
        };
        const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nKeep-Alive: timeout=30\r\n\r\nhello, wharf!";
        s.write_all(RESPONSE).await?;
        buf.copy_within(end..filled, 0);
        filled -= end;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------- client

/// The parts of a response the client cares about.
struct Response {
    status: u16,
    close: bool,
    keep_alive: Option<Duration>,
}

/// Sends `GET /` and reads the whole response (head + Content-Length body).
async fn get<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, host: &str) -> io::Result<Response> {
    let mut req = [0u8; 128];
    let head = format_request(&mut req, host);
    s.write_all(head).await?;
    let mut buf = [0u8; 1024];
    let mut filled = 0;
    let end = loop {
        if let Some(pos) = find(&buf[..filled], b"\r\n\r\n") {
            break pos + 4;
        }
        if filled == buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too long",
            ));
        }
        let n = s.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        filled += n;
    };
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
    let (mut len, mut close, mut keep_alive) = (0usize, false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            len = value
                .parse()
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        } else if name.eq_ignore_ascii_case("keep-alive") {
            keep_alive = value
                .split(',')
                .find_map(|p| p.trim().strip_prefix("timeout="))
                .and_then(|t| t.parse().ok())
                .map(Duration::from_secs);
        }
    }
    // The body: what is already buffered, then the rest.
    let mut have = filled - end;
    let mut sink = [0u8; 512];
    while have < len {
        let n = s.read(&mut sink[..(len - have).min(512)]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated body",
            ));
        }
        have += n;
    }
    Ok(Response {
        status,
        close,
        keep_alive,
    })
}

fn format_request<'a>(buf: &'a mut [u8; 128], host: &str) -> &'a [u8] {
    use std::io::Write;
    let mut c = io::Cursor::new(&mut buf[..]);
    let _ = write!(c, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let n = c.position() as usize;
    &buf[..n]
}

// ---------------------------------------------------------------- main

#[derive(Default)]
struct RouteTally {
    requests: u64,
    errors: u64,
    waits_us: Vec<u32>,
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Servers.
    let mut routes = Vec::new();
    let mut accepted = Vec::new();
    for _ in 0..ROUTES {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let count = Arc::new(AtomicUsize::new(0));
        tokio::spawn(serve(listener, count.clone()));
        routes.push((String::from("127.0.0.1"), port));
        accepted.push(count);
    }
    println!(
        "wharf quickstart: {REQUESTS} requests from {TASKS} tasks over {ROUTES} routes \
         (ports {}), max {MAX_PER_ROUTE} connections per route, {MAX_TOTAL} in total",
        routes
            .iter()
            .map(|r| r.1.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The pool: limits, preconnect (ratio 1.5) and two warm connections per
    // route, opened as soon as the pool is built.
    let mut builder = Pool::builder(TcpConnector::new())
        .max_total(MAX_TOTAL)
        .max_per_route(MAX_PER_ROUTE)
        .max_pending(TASKS as u32)
        .preconnect_ratio(1.5)
        .connect_timeout(Duration::from_secs(2))
        .lease_timeout(Duration::from_secs(10));
    for route in &routes {
        builder = builder.route(
            route.clone(),
            RouteConfig {
                min_idle: Some(2),
                ..RouteConfig::default()
            },
        );
    }
    let pool = builder.build()?;

    // Let warm-up open its connections before the burst (bounded wait).
    for _ in 0..200 {
        if pool.stats().idle >= (2 * ROUTES) as u32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "warm: {} idle connections before the burst",
        pool.stats().idle
    );

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (pool, routes, next, done) = (pool.clone(), routes.clone(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally: Vec<RouteTally> = (0..ROUTES).map(|_| RouteTally::default()).collect();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                if n >= REQUESTS {
                    break;
                }
                let r = n % ROUTES;
                let route = &routes[r];
                let t = &mut tally[r];
                t.requests += 1;
                let t0 = Instant::now();
                match pool.lease(route).await {
                    Ok(mut conn) => {
                        t.waits_us
                            .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        match get(&mut conn, &route.0).await {
                            Ok(resp) => {
                                if resp.status != 200 {
                                    t.errors += 1;
                                }
                                if resp.close {
                                    Lease::discard(&mut conn);
                                }
                                if let Some(ka) = resp.keep_alive {
                                    Lease::set_keep_alive(&mut conn, ka);
                                }
                            }
                            Err(e) => {
                                eprintln!("request on {}:{} failed: {e}", route.0, route.1);
                                t.errors += 1;
                                Lease::discard(&mut conn);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("lease failed: {e}");
                        t.errors += 1;
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            tally
        }));
    }

    // Progress while it runs.
    let progress = {
        let (pool, done) = (pool.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let d = done.load(Ordering::Relaxed);
                let s = pool.stats();
                println!(
                    "progress: {d:>6}/{REQUESTS} requests  connections {:>3} (idle {:>3}, leased {:>3})  waiting {:>3}",
                    s.connections, s.idle, s.leased, s.pending
                );
            }
        })
    };

    let mut per_route: Vec<RouteTally> = (0..ROUTES).map(|_| RouteTally::default()).collect();
    for t in tasks {
        for (acc, t) in per_route.iter_mut().zip(t.await?) {
            acc.requests += t.requests;
            acc.errors += t.errors;
            acc.waits_us.extend(t.waits_us);
        }
    }
    let elapsed = started.elapsed();
    progress.abort();
    let counters = pool.counters();
    pool.check_invariants()
        .map_err(|e| format!("invariant violated: {e:?}"))?;
    pool.close().await;

    // The table.
    println!();
    println!(
        "{:<17} {:>9} {:>7} {:>12} {:>9} {:>8} {:>8} {:>8} {:>12}",
        "route",
        "requests",
        "errors",
        "connections",
        "grants",
        "reuse",
        "p50 µs",
        "p99 µs",
        "preconnects"
    );
    let mut all_waits = Vec::with_capacity(REQUESTS);
    let (mut requests, mut errors) = (0, 0);
    for (i, t) in per_route.iter_mut().enumerate() {
        t.waits_us.sort_unstable();
        // Connections opened for the route = connections its server accepted
        // (every connect reaches the server; the core's per-route counters
        // start over when an idle route is forgotten).
        let opened = accepted[i].load(Ordering::Relaxed) as u64;
        let granted = t.waits_us.len() as u64;
        let reuse = if granted == 0 {
            0.0
        } else {
            granted.saturating_sub(opened) as f64 / granted as f64
        };
        println!(
            "{:<17} {:>9} {:>7} {:>12} {:>9} {:>8.4} {:>8} {:>8} {:>12}",
            format!("{}:{}", routes[i].0, routes[i].1),
            t.requests,
            t.errors,
            opened,
            granted,
            reuse,
            percentile(&t.waits_us, 0.50),
            percentile(&t.waits_us, 0.99),
            "-", // the core counts preconnects pool-wide only
        );
        requests += t.requests;
        errors += t.errors;
        all_waits.extend_from_slice(&t.waits_us);
    }
    all_waits.sort_unstable();
    let reuse = if counters.grants == 0 {
        0.0
    } else {
        counters.reuses as f64 / counters.grants as f64
    };
    let p99 = percentile(&all_waits, 0.99);
    println!(
        "{:<17} {:>9} {:>7} {:>12} {:>9} {:>8.4} {:>8} {:>8} {:>12}",
        "total",
        requests,
        errors,
        counters.connects,
        counters.grants,
        reuse,
        percentile(&all_waits, 0.50),
        p99,
        counters.preconnects,
    );
    println!();
    println!(
        "connects {} (preconnects {}, warm-ups {}), closes {:?}, {:.0} requests/s over {:.2?}",
        counters.connects,
        counters.preconnects,
        counters.warmups,
        wharf_tokio::CloseReason::ALL
            .iter()
            .filter(|r| counters.closes_for(**r) > 0)
            .map(|r| (*r, counters.closes_for(*r)))
            .collect::<Vec<_>>(),
        requests as f64 / elapsed.as_secs_f64(),
        elapsed,
    );
    println!(
        "summary: requests={requests} errors={errors} connections={} reuse={reuse:.4} p99_wait_us={p99}",
        counters.connects
    );
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
