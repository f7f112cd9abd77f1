//! The Wharf HTTP client against what a user would pick instead: hyper-util's
//! legacy `Client` (the pool under reqwest), in one run, against the same
//! local hyper server (`hyper_util::server::conn::auto`: HTTP/1.1 and h2c),
//! over HTTP/1.1 and HTTP/2 (prior knowledge), at 1, 32 and 256 concurrent
//! requests.
//!
//! Each cell (protocol x concurrency) builds both clients once, warms each
//! up, then runs `--rounds` timed rounds of `--secs` seconds, alternating
//! which client goes first, and reports the median requests/s, the median
//! CPU time per request of the whole process (client, server and runtime:
//! `/proc/self/stat`; steadier than requests/s on a shared machine), the
//! connections each client opened over the cell (its own count: Wharf's
//! stats, a counting connector around hyper-util's; checked against the
//! server's count of client ports) and its reuse (requests on a reused
//! connection / requests). Every request reads its response body to the end.
//!
//! Both clients get the settings a user would give them: hyper-util's
//! defaults (no connection limit; HTTP/2: `http2_only`); Wharf with as many
//! connections per host as there are concurrent requests (HTTP/1.1), or one
//! per host (HTTP/2; `H2_PER_HOST=n` for more) with its stream cap raised to
//! 256 (`H2_CAP`), so the server's 200 decides, as with hyper-util; its
//! defaults otherwise (retries on, no request timeout).
//!
//! ```text
//! cargo run --release -p wharf-tokio --features http --example http_vs_hyper_util
//! cargo run --release -p wharf-tokio --features http --example http_vs_hyper_util -- --rounds 3 --secs 0.2
//! # instructions per request: one client, one cell, rounds of a fixed count
//! valgrind --tool=callgrind target/release/examples/http_vs_hyper_util --only wharf --cell h2:1 --rounds 1 --requests 20000
//! ```

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The server: answers `ok`; records each connection's client port.
struct Server {
    addr: SocketAddr,
    ports: Arc<Mutex<HashSet<u16>>>,
}

async fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ports = Arc::new(Mutex::new(HashSet::new()));
    let p = ports.clone();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            p.lock().unwrap().insert(peer.port());
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Server { addr, ports }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    H1,
    H2,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Wharf,
    HyperUtil,
}

type HuConnector = hyper_util::client::legacy::connect::HttpConnector;

/// hyper-util's connector, counting the connections it opens (its pool
/// also keeps connects that finish after their request was served by
/// another connection, so the server's count by time would misattribute
/// them).
#[derive(Clone)]
struct Counting {
    inner: HuConnector,
    opened: Arc<AtomicU64>,
}

impl tower_service::Service<http::Uri> for Counting {
    type Response = <HuConnector as tower_service::Service<http::Uri>>::Response;
    type Error = <HuConnector as tower_service::Service<http::Uri>>::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let fut = self.inner.call(uri);
        let opened = self.opened.clone();
        Box::pin(async move {
            let r = fut.await;
            if r.is_ok() {
                opened.fetch_add(1, Ordering::Relaxed);
            }
            r
        })
    }
}

#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // two clients, cloned per task: no matter
enum AnyClient {
    Wharf(wharf_tokio::http::Client),
    HyperUtil(
        hyper_util::client::legacy::Client<Counting, Full<Bytes>>,
        Arc<AtomicU64>,
    ),
}

impl AnyClient {
    fn new(which: Which, proto: Proto, concurrency: usize) -> Self {
        match which {
            Which::Wharf => {
                let h2_per_host = std::env::var("H2_PER_HOST")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                let h2_cap = std::env::var("H2_CAP")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(256);
                let (per_host, h2) = match proto {
                    Proto::H1 => (concurrency as u32, false),
                    Proto::H2 => (h2_per_host, true),
                };
                AnyClient::Wharf(
                    wharf_tokio::http::Client::builder()
                        .max_total(per_host.max(25))
                        .max_per_host(per_host)
                        .max_pending(4096)
                        .http2_prior_knowledge(h2)
                        .h2_max_streams(h2_cap)
                        .build()
                        .unwrap(),
                )
            }
            Which::HyperUtil => {
                let mut b = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
                b.http2_only(proto == Proto::H2);
                // As `build_http()` does, with the counting connector.
                let mut inner = HuConnector::new();
                inner.enforce_http(false);
                let opened = Arc::new(AtomicU64::new(0));
                let connector = Counting {
                    inner,
                    opened: opened.clone(),
                };
                AnyClient::HyperUtil(b.build(connector), opened)
            }
        }
    }

    /// Connections this client opened.
    fn opened(&self) -> u64 {
        match self {
            AnyClient::Wharf(c) => {
                let s = c.stats();
                s.http1_connections + s.http2_connections
            }
            AnyClient::HyperUtil(_, n) => n.load(Ordering::Relaxed),
        }
    }

    /// One request, body read to the end.
    async fn get(&self, url: &str) -> Result<(), String> {
        match self {
            AnyClient::Wharf(c) => {
                let r = c.get(url).await.map_err(|e| e.to_string())?;
                if r.status() != 200 {
                    return Err(format!("status {}", r.status()));
                }
                r.into_body().bytes().await.map_err(|e| e.to_string())?;
            }
            AnyClient::HyperUtil(c, _) => {
                let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
                let r = c.request(req).await.map_err(|e| e.to_string())?;
                if r.status() != 200 {
                    return Err(format!("status {}", r.status()));
                }
                r.into_body().collect().await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// CPU time of this process so far (user + system, all threads; Linux's
/// `/proc/self/stat`, in clock ticks of 10 ms), or `None` elsewhere.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// How long a round runs.
#[derive(Clone, Copy, Debug)]
enum Length {
    /// For this many seconds.
    Secs(f64),
    /// Until exactly this many requests were sent (for instruction counts:
    /// two runs of different counts, the difference per request).
    Requests(u64),
}

/// `concurrency` tasks send requests for the round's length; returns the
/// requests done.
async fn round(
    client: &AnyClient,
    url: &str,
    concurrency: usize,
    length: Length,
) -> (u64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    // Count mode: each request takes a ticket first; none past the count.
    let tickets = Arc::new(AtomicU64::new(0));
    let limit = match length {
        Length::Secs(_) => u64::MAX,
        Length::Requests(n) => n,
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, stop, done, tickets) = (
            client.clone(),
            url.to_string(),
            stop.clone(),
            done.clone(),
            tickets.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed)
                && (limit == u64::MAX || tickets.fetch_add(1, Ordering::Relaxed) < limit)
            {
                if let Err(e) = client.get(&url).await {
                    panic!("request failed: {e}");
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    if let Length::Secs(secs) = length {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
    }
    for t in tasks {
        t.await.unwrap();
    }
    (done.load(Ordering::Relaxed), start.elapsed())
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = arg("--rounds", 5.0).max(1.0) as usize;
    let secs = arg("--secs", 1.0);
    // For profiling: `--only wharf|hyper-util` runs one client, `--cell h1:32`
    // one cell.
    let only = arg_str("--only");
    let cell = arg_str("--cell");
    // For instruction counts (callgrind): `--requests N` makes each timed
    // round exactly N requests (and the warm-up `--warmup W`, 1000 by
    // default) instead of `--secs` seconds.
    let requests_per_round = arg_str("--requests").and_then(|v| v.parse::<u64>().ok());
    let warmup = arg("--warmup", 1000.0) as u64;
    let server = server().await;
    let url = format!("http://{}/", server.addr);
    println!(
        "Wharf HTTP client vs hyper-util legacy Client, one local hyper server ({}), {rounds} rounds of {} per client and cell, median",
        server.addr,
        match requests_per_round {
            Some(n) => format!("{n} requests"),
            None => format!("{secs} s"),
        }
    );
    println!();
    println!("| protocol | concurrent | client | requests/s (median) | min - max | CPU µs/request (median) | requests | connections | reuse |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    let mut misses = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        for concurrency in [1usize, 32, 256] {
            let name = format!(
                "{}:{concurrency}",
                if proto == Proto::H1 { "h1" } else { "h2" }
            );
            if cell.as_ref().is_some_and(|c| *c != name) {
                continue;
            }
            let clients = [Which::Wharf, Which::HyperUtil]
                .map(|w| (w, AnyClient::new(w, proto, concurrency)));
            let mut rps: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            let mut cpu_us: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            let mut requests = [0u64; 2];
            let server_before = server.ports.lock().unwrap().len();
            let skip = |i: usize| only.as_deref().is_some_and(|o| (o == "wharf") != (i == 0));
            for (i, (_, c)) in clients.iter().enumerate() {
                if skip(i) {
                    continue;
                }
                // Warm-up (counted in requests and connections, not timed).
                let warm = match requests_per_round {
                    Some(_) => Length::Requests(warmup),
                    None => Length::Secs((secs / 5.0).max(0.05)),
                };
                let (n, _) = round(c, &url, concurrency, warm).await;
                requests[i] += n;
            }
            for r in 0..rounds {
                for k in 0..2 {
                    // Alternate which client goes first.
                    let i = (r + k) % 2;
                    if skip(i) {
                        continue;
                    }
                    let cpu0 = cpu_time();
                    let length = match requests_per_round {
                        Some(n) => Length::Requests(n),
                        None => Length::Secs(secs),
                    };
                    let (n, took) = round(&clients[i].1, &url, concurrency, length).await;
                    if let (Some(a), Some(b)) = (cpu0, cpu_time()) {
                        cpu_us[i].push((b - a).as_secs_f64() * 1e6 / n.max(1) as f64);
                    }
                    requests[i] += n;
                    rps[i].push(n as f64 / took.as_secs_f64());
                }
            }
            let conns = [clients[0].1.opened(), clients[1].1.opened()];
            // Cross-check: the server saw the connections both opened.
            let server_new = (server.ports.lock().unwrap().len() - server_before) as u64;
            assert!(
                server_new <= conns[0] + conns[1],
                "server saw {server_new} new connections, the clients report {conns:?}"
            );
            let mut med = [0.0; 2];
            for (i, (w, _)) in clients.iter().enumerate() {
                if skip(i) {
                    continue;
                }
                med[i] = median(rps[i].clone());
                let lo = rps[i].iter().cloned().fold(f64::MAX, f64::min);
                let hi = rps[i].iter().cloned().fold(0.0, f64::max);
                let reuse = requests[i].saturating_sub(conns[i]) as f64 / requests[i].max(1) as f64;
                let name = match w {
                    Which::Wharf => "wharf",
                    Which::HyperUtil => "hyper-util",
                };
                let version = match proto {
                    Proto::H1 => Version::HTTP_11,
                    Proto::H2 => Version::HTTP_2,
                };
                println!(
                    "| {version:?} | {concurrency} | {name} | {:.0} | {:.0} - {:.0} | {:.1} | {} | {} | {:.4}% |",
                    med[i],
                    lo,
                    hi,
                    median(cpu_us[i].clone()),
                    requests[i],
                    conns[i],
                    reuse * 100.0
                );
            }
            if only.is_none() && med[0] < med[1] {
                misses.push(format!(
                    "{proto:?} x {concurrency}: wharf {:.0}/s < hyper-util {:.0}/s ({:+.1}%)",
                    med[0],
                    med[1],
                    (med[0] / med[1] - 1.0) * 100.0
                ));
            }
            if let AnyClient::Wharf(c) = &clients[0].1 {
                let s = c.stats();
                assert_eq!(s.failed, 0, "wharf: failed requests");
                if std::env::var_os("WHARF_DEBUG").is_some() {
                    let k = c.pool().counters();
                    let closes: Vec<_> = wharf_tokio::CloseReason::ALL
                        .iter()
                        .filter(|r| k.closes_for(**r) > 0)
                        .map(|r| (*r, k.closes_for(*r)))
                        .collect();
                    eprintln!(
                        "wharf {name}: {s:?} connects {} closes {closes:?}",
                        k.connects
                    );
                }
            }
        }
    }
    println!();
    if misses.is_empty() {
        println!("result: wharf >= hyper-util in every row");
    } else {
        for m in &misses {
            println!("below hyper-util: {m}");
        }
    }
}
