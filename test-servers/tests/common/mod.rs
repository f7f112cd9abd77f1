//! Real clients for the servers' tests: hyper's client connections and raw sockets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub const T: Duration = Duration::from_secs(20);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `f` with a generous deadline, so a broken behaviour fails the test instead of hanging.
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(T, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {T:?}: {what}"),
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn conn_id(&self) -> u64 {
        self.header("x-conn-id").unwrap().parse().unwrap()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn collect(r: http::Response<hyper::body::Incoming>) -> hyper::Result<Resp> {
    let (parts, body) = r.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// An HTTP/1.1 client connection (hyper), its driver task spawned.
pub struct H1 {
    pub send: http1::SendRequest<Full<Bytes>>,
    pub driver: JoinHandle<hyper::Result<()>>,
}

pub async fn h1_over<IO>(io: IO) -> H1
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = http1::handshake(TokioIo::new(io))
        .await
        .expect("h1 handshake");
    let driver = tokio::spawn(conn);
    H1 { send, driver }
}

pub async fn h1(addr: SocketAddr) -> H1 {
    h1_over(TcpStream::connect(addr).await.expect("connect")).await
}

impl H1 {
    pub async fn get(&mut self, path: &str) -> hyper::Result<Resp> {
        self.request("GET", path, Bytes::new()).await
    }

    pub async fn request(&mut self, method: &str, path: &str, body: Bytes) -> hyper::Result<Resp> {
        self.send.ready().await?;
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(body))
            .unwrap();
        collect(self.send.send_request(req).await?).await
    }
}

/// An HTTP/2 client connection (hyper, prior knowledge or over TLS), its driver spawned.
#[derive(Clone)]
pub struct H2 {
    pub send: http2::SendRequest<Full<Bytes>>,
}

pub async fn h2_over<IO>(io: IO) -> (H2, JoinHandle<hyper::Result<()>>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .expect("h2 handshake");
    (H2 { send }, tokio::spawn(conn))
}

pub async fn h2(addr: SocketAddr) -> (H2, JoinHandle<hyper::Result<()>>) {
    h2_over(TcpStream::connect(addr).await.expect("connect")).await
}

impl H2 {
    pub async fn get(&self, path: &str) -> hyper::Result<Resp> {
        self.request("GET", path, Bytes::new()).await
    }

    pub async fn request(&self, method: &str, path: &str, body: Bytes) -> hyper::Result<Resp> {
        let mut send = self.send.clone();
        send.ready().await?;
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://localhost{path}"))
            .body(Full::new(body))
            .unwrap();
        collect(send.send_request(req).await?).await
    }
}

/// A raw HTTP/1.1 exchange on a socket: writes a GET, reads one response (Content-Length).
pub async fn raw_get(s: &mut TcpStream, path: &str) -> std::io::Result<Resp> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    raw_read_response(s).await
}

pub async fn raw_read_response(s: &mut TcpStream) -> std::io::Result<Resp> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "EOF before a response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = http::HeaderMap::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (k, v) = l.split_once(':').unwrap();
        headers.append(
            http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            v.trim().parse().unwrap(),
        );
    }
    let len: usize = headers
        .get("content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Resp {
        status,
        headers,
        body: Bytes::copy_from_slice(&buf[head_end..head_end + len]),
    })
}

/// What a read on a socket the server closed shows.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    Eof,
    Reset,
    Data(usize),
    Other(std::io::ErrorKind),
}

pub async fn read_end(s: &mut TcpStream) -> ReadEnd {
    let mut b = [0u8; 1024];
    match within("read on a closed socket", s.read(&mut b)).await {
        Ok(0) => ReadEnd::Eof,
        Ok(n) => ReadEnd::Data(n),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => ReadEnd::Reset,
        Err(e) => ReadEnd::Other(e.kind()),
    }
}
