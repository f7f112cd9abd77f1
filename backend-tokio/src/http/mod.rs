//! An HTTP/1.1 and HTTP/2 client over the pool (feature `http`; TLS with
//! feature `rustls`), built on hyper 1.x's client connections
//! (`hyper::client::conn::{http1, http2}`) and hyper-util's tokio glue.
//!
//! What it adds to hyper: per-host and total connection limits with FIFO
//! waiting and deadlines (the pool's), connections a server closed never
//! handed out (each connection's task reports its end to the pool at once),
//! HTTP/2 streams counted against the server's `MAX_CONCURRENT_STREAMS`
//! (updated when its SETTINGS change; a GOAWAY drains the connection), and
//! the retries that are safe.
//!
//! - [`Client`] / [`ClientBuilder`]: send requests; the response's
//!   [`ResponseBody`] holds the connection until it is read to the end.
//! - [`HttpRoute`]: scheme, host, port, protocol, and for TLS the server
//!   name and the client [`Identity`].
//! - [`HttpConnector`]: TCP, TLS (ALPN `h2`, `http/1.1`), hyper's handshake;
//!   [`HttpConn`]: the connection the pool holds.
//! - [`HttpError`]: typed, naming the route; [`ConnectError`] says which
//!   step of a connect failed.
//!
//! ```
//! use http::Request;
//! use wharf_tokio::http::{Body, Client};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let h2 = wharf_test_servers::Http2Server::builder().max_concurrent_streams(8).start().await;
//! # let url = h2.url("/echo");
//! let client = Client::builder()
//!     .max_total(32)
//!     .max_per_host(2)
//!     .http2_prior_knowledge(true) // plain http:// speaks h2c
//!     .build()?;
//! let req = Request::post(&url).body(Body::from("hi"))?;
//! let resp = client.request(req).await?;
//! assert_eq!(resp.version(), http::Version::HTTP_2);
//! assert_eq!(resp.body().info().streams, 1);
//! assert_eq!(&resp.into_body().bytes().await?[..], b"hi");
//! // The server's SETTINGS said 8 streams per connection.
//! let route = client.route(&Request::get(&url).body(())?)?;
//! assert_eq!(route.to_string(), format!("http://127.0.0.1:{} (h2c)", h2.addr().port()));
//! let conn = client.pool().lease(&route).await?;
//! assert_eq!(conn.stream_capacity(), Some(8));
//! # Ok(())
//! # }
//! ```

mod body;
mod client;
mod conn;
mod connector;
mod error;
mod io;
mod route;
#[cfg(feature = "rustls")]
mod tls;

pub use body::{Body, BoxError, ResponseBody};
pub use client::{Client, ClientBuilder, ClientStats, HttpLease, RequestInfo};
pub use conn::HttpConn;
pub use connector::{HttpConnect, HttpConnector};
pub use error::{ConnectError, ConnectStep, HttpError};
pub use route::{HttpRoute, Identity, Protocol, TlsServerName};
#[cfg(feature = "rustls")]
pub use tls::provider;

/// The `http` crate (requests, responses, headers), as this module uses it.
pub use http;
/// rustls, as the TLS settings of [`ClientBuilder`] take it.
#[cfg(feature = "rustls")]
pub use rustls;
