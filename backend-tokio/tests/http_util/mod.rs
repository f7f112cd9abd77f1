//! Helpers of the HTTP tests: a deadline for every wait, a connector that
//! hides the watch (the controls), and a raw HTTP/1.1 server that fails on
//! purpose.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wharf_tokio::http::{ConnectError, HttpConn, HttpConnector, HttpRoute};
use wharf_tokio::Connector;

pub const T: Duration = Duration::from_secs(30);

/// Runs `f` with a generous deadline, so a broken behaviour fails instead of
/// hanging.
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(T, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {T:?}: {what}"),
    }
}

/// Waits (polling) until `cond` holds, at most `T`.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

/// The HTTP connector without its watch and hand-out check: the pool hands
/// out connections the server closed (the controls of the tests).
pub struct Blind(pub HttpConnector);

impl Connector<HttpRoute> for Blind {
    type Conn = HttpConn;
    type Error = ConnectError;
    fn connect(
        &self,
        route: &HttpRoute,
    ) -> impl std::future::Future<Output = Result<HttpConn, ConnectError>> + Send {
        self.0.connect(route)
    }
    fn multiplexed(&self, conn: &HttpConn) -> Option<u32> {
        self.0.multiplexed(conn)
    }
    fn share(&self, conn: &HttpConn) -> Option<HttpConn> {
        self.0.share(conn)
    }
}

/// What the raw server does with a connection's request after the ones it
/// answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Reads the request, then closes (FIN) without a byte of response.
    Close,
    /// Reads the request, writes the start of a status line, then closes.
    Partial,
}

/// Counts of the raw server.
#[derive(Default, Debug)]
pub struct Counts {
    pub conns: AtomicUsize,
    pub requests: AtomicUsize,
}

impl Counts {
    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A raw HTTP/1.1 server: on each connection it answers the first `answer`
/// requests (`200`, body `conn <n> req <m>`, keep-alive), then does `then`
/// with the next one.
pub async fn flaky_server(answer: usize, then: Then) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let n = c.conns.fetch_add(1, Ordering::SeqCst) + 1;
            let c = c.clone();
            tokio::spawn(async move {
                let _ = serve(s, n, answer, then, &c).await;
            });
        }
    });
    (addr, counts)
}

async fn serve(
    mut s: TcpStream,
    conn: usize,
    answer: usize,
    then: Then,
    counts: &Counts,
) -> io::Result<()> {
    let mut buf = Vec::new();
    for req in 1.. {
        if !read_request(&mut s, &mut buf).await? {
            return Ok(());
        }
        counts.requests.fetch_add(1, Ordering::SeqCst);
        if req > answer {
            if then == Then::Partial {
                s.write_all(b"HTTP/1.1 200 OK\r\n").await?;
            }
            s.shutdown().await?;
            // Wait for the client's end.
            let mut sink = [0u8; 256];
            while s.read(&mut sink).await? > 0 {}
            return Ok(());
        }
        let body = format!("conn {conn} req {req}");
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-conn-id: {conn}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body.as_bytes()).await?;
    }
    Ok(())
}

/// What the scripted server does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `200`, body `conn <n> req <m>`, keep-alive.
    Answer,
    /// The same with `Connection: close`, then closes.
    AnswerClose,
    /// Reads the request, then closes (FIN) without a byte of response: a
    /// server that closed the connection as the request came (an idle
    /// timeout crossing it on the wire), deterministically.
    Close,
}

/// Counts of the scripted server, per connection.
#[derive(Default, Debug)]
pub struct Script {
    pub counts: Counts,
    /// Requests read per connection (index: connection number - 1).
    pub per_conn: std::sync::Mutex<Vec<usize>>,
}

impl Script {
    pub fn per_conn(&self) -> Vec<usize> {
        self.per_conn.lock().unwrap().clone()
    }
}

/// A raw HTTP/1.1 server that does `script[g - 1]` with the `g`-th request
/// it reads (over all its connections), and answers every request after the
/// script ([`Reply::Answer`]).
pub async fn scripted_server(script: &[Reply]) -> (SocketAddr, Arc<Script>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Script::default());
    let script: Arc<[Reply]> = script.into();
    let st = state.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let n = st.counts.conns.fetch_add(1, Ordering::SeqCst) + 1;
            st.per_conn.lock().unwrap().push(0);
            let (st, script) = (st.clone(), script.clone());
            tokio::spawn(async move {
                let _ = serve_script(s, n, &script, &st).await;
            });
        }
    });
    (addr, state)
}

async fn serve_script(
    mut s: TcpStream,
    conn: usize,
    script: &[Reply],
    st: &Script,
) -> io::Result<()> {
    let mut buf = Vec::new();
    for req in 1.. {
        if !read_request(&mut s, &mut buf).await? {
            return Ok(());
        }
        st.per_conn.lock().unwrap()[conn - 1] += 1;
        let g = st.counts.requests.fetch_add(1, Ordering::SeqCst);
        let reply = script.get(g).copied().unwrap_or(Reply::Answer);
        if reply == Reply::Close {
            s.shutdown().await?;
            let mut sink = [0u8; 256];
            while s.read(&mut sink).await? > 0 {}
            return Ok(());
        }
        let body = format!("conn {conn} req {req}");
        let close = if reply == Reply::AnswerClose {
            "connection: close\r\n"
        } else {
            ""
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-conn-id: {conn}\r\n{close}\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body.as_bytes()).await?;
        if reply == Reply::AnswerClose {
            s.shutdown().await?;
            let mut sink = [0u8; 256];
            while s.read(&mut sink).await? > 0 {}
            return Ok(());
        }
    }
    Ok(())
}

/// Reads one request (head and `content-length` body); false at EOF.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let mut chunk = [0u8; 1024];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(false);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Ok(true);
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(false);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
