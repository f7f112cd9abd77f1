//! The HTTP client's typed errors.

use std::fmt;
use std::time::Duration;

/// Why an HTTP request (or building the client) failed. Every variant about
/// a request names its route (`https://host:port (identity alice)`).
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpError {
    /// The request cannot be sent as it is: a relative URI, a scheme other
    /// than `http`/`https`, `https` without the `rustls` feature or without
    /// TLS roots, an unknown client identity.
    InvalidRequest {
        /// The request's URI.
        uri: String,
        /// Why.
        reason: &'static str,
    },
    /// No connection for the request: the pool's error, which names the
    /// route ([`Error::Timeout`](crate::Error::Timeout) waiting for a
    /// connection, [`Error::Overflow`](crate::Error::Overflow),
    /// [`Error::ConnectFailed`](crate::Error::ConnectFailed) with the
    /// connector's [`ConnectError`] as its source, ...).
    Pool(crate::Error<ConnectError>),
    /// The request failed on its connection (hyper's error). It may have
    /// reached the server: the client retried it where that is safe (see
    /// [`Client`](super::Client)) and gave up.
    Request {
        /// The route.
        route: String,
        /// Attempts made (1 = not retried).
        attempts: u32,
        /// hyper's error.
        source: hyper::Error,
    },
    /// No response head within the request timeout
    /// ([`ClientBuilder::request_timeout`](super::ClientBuilder::request_timeout)),
    /// waiting for a connection and retries included.
    Timeout {
        /// The route.
        route: String,
        /// The timeout.
        after: Duration,
    },
    /// Reading the response body failed (the connection is closed).
    Body {
        /// The route.
        route: String,
        /// hyper's error.
        source: hyper::Error,
    },
    /// The client's configuration was refused (the pool's limits, a TLS
    /// certificate or key).
    Config {
        /// What was refused.
        what: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl HttpError {
    /// The route this error is about, if any.
    pub fn route(&self) -> Option<&str> {
        match self {
            HttpError::Pool(e) => e.route(),
            HttpError::Request { route, .. }
            | HttpError::Timeout { route, .. }
            | HttpError::Body { route, .. } => Some(route),
            HttpError::InvalidRequest { .. } | HttpError::Config { .. } => None,
        }
    }

    /// True for a timeout: the request timeout, the pool's lease timeout or
    /// its connect timeout.
    pub fn is_timeout(&self) -> bool {
        match self {
            HttpError::Timeout { .. } => true,
            HttpError::Pool(crate::Error::ConnectFailed { reason, .. }) => {
                *reason == crate::ConnectFailure::Timeout
            }
            HttpError::Pool(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// True when connecting failed (TCP, TLS or the HTTP/2 handshake).
    pub fn is_connect(&self) -> bool {
        matches!(self, HttpError::Pool(crate::Error::ConnectFailed { .. }))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::InvalidRequest { uri, reason } => {
                write!(f, "request to {uri} cannot be sent: {reason}")
            }
            HttpError::Pool(e) => write!(f, "{e}"),
            HttpError::Request {
                route,
                attempts,
                source,
            } => {
                write!(f, "request on route {route} failed")?;
                if *attempts > 1 {
                    write!(f, " ({attempts} attempts)")?;
                }
                write!(f, ": {source}")
            }
            HttpError::Timeout { route, after } => {
                write!(f, "request on route {route}: no response within {after:?}")
            }
            HttpError::Body { route, source } => {
                write!(
                    f,
                    "reading the response body on route {route} failed: {source}"
                )
            }
            HttpError::Config { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::Pool(e) => Some(e),
            HttpError::Request { source, .. } | HttpError::Body { source, .. } => Some(source),
            HttpError::Config { source, .. } => Some(&**source),
            HttpError::InvalidRequest { .. } | HttpError::Timeout { .. } => None,
        }
    }
}

impl From<crate::Error<ConnectError>> for HttpError {
    fn from(e: crate::Error<ConnectError>) -> Self {
        HttpError::Pool(e)
    }
}

/// Which step of a connect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectStep {
    /// Name resolution or the TCP connect.
    Tcp,
    /// The TLS handshake (certificate, ALPN, ...).
    Tls,
    /// hyper's HTTP/1.1 or HTTP/2 handshake, or the wait for the HTTP/2
    /// server's first SETTINGS frame.
    Handshake,
}

/// A connect of [`HttpConnector`](super::HttpConnector) failed: the step,
/// and the error (the connector's [`Connector::Error`](crate::Connector::Error)).
/// It reaches the caller typed, as the source of
/// [`Error::ConnectFailed`](crate::Error::ConnectFailed).
#[derive(Debug)]
pub struct ConnectError {
    /// The step.
    pub step: ConnectStep,
    /// The error.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl ConnectError {
    pub(crate) fn new(
        step: ConnectStep,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ConnectError {
            step,
            source: source.into(),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.step {
            ConnectStep::Tcp => "TCP connect",
            ConnectStep::Tls => "TLS handshake",
            ConnectStep::Handshake => "HTTP handshake",
        };
        write!(f, "{step}: {}", self.source)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
