//! Real servers for Wharf's tests, built once: an HTTP/1.1 and HTTP/2 server (hyper and `h2`)
//! with the behaviours real servers have (idle timeouts, request limits, `Connection: close` or
//! not, resets, GOAWAY, `MAX_CONCURRENT_STREAMS` changes, TLS with client certificates and
//! ALPN), and a raw TCP server with per-connection faults (FIN/RST on idle or after N requests,
//! hangs, refused and hanging connects, a seeded random mix).
//!
//! Every server runs on the caller's tokio runtime, binds `127.0.0.1:0`, and stops when its
//! handle is dropped (or `shutdown().await`, which waits until all its tasks are gone). Every
//! server counts what it saw ([`Stats`], [`ConnInfo`]) and lets a test wait for a condition
//! instead of sleeping ([`StatsHandle::wait_for`]).
//!
//! | type | what |
//! |---|---|
//! | [`Http1Server::builder`] / [`Http2Server::builder`] → [`HttpServer`] | HTTP/1.1, HTTP/2 (h2c or TLS), both by ALPN |
//! | [`TestPki`] | CA, server certificate, client identities ("alice", "bob", …), rustls configs |
//! | [`TcpFaultServer`] | line protocol with [`Fault`]s per connection or a [`FaultMix`] |
//! | [`RefusedPort`], [`HangingConnect`] | connects refused at once / hanging |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use wharf_test_servers::{CloseReason, Http1Server};
//! let server = Http1Server::builder()
//!     .idle_timeout(Duration::from_millis(100))
//!     .start()
//!     .await;
//! let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
//! let s = server
//!     .wait_for("idle close", |s| s.closed_for(&CloseReason::IdleTimeout) == 1)
//!     .await;
//! assert_eq!(s.accepted, 1);
//! # drop(tcp);
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod http;
mod net;
mod stats;
mod tcp;
mod tls;

pub use crate::http::{
    CloseMode, Handler, Http1Server, Http2Server, HttpServer, HttpServerBuilder, RequestCtx,
};
pub use crate::stats::{CloseReason, ConnInfo, Protocol, Stats, StatsHandle, DEFAULT_WAIT};
pub use crate::tcp::{
    Fault, FaultMix, HangingConnect, RefusedPort, TcpFaultServer, TcpFaultServerBuilder,
};
pub use crate::tls::{provider, Alpn, ClientAuth, ClientIdentity, ServerTls, TestPki, SERVER_NAME};

/// Re-exported for tests that build their own TLS configs with the same versions.
pub use rustls;
/// Re-exported for tests that connect with TLS.
pub use tokio_rustls;
