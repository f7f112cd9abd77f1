//! Request bodies ([`Body`]) and response bodies ([`ResponseBody`], which
//! hold the connection's lease until they are read to the end).

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::client::{HttpLease, RequestInfo};
use super::connector::HttpConnect;
use super::error::HttpError;
use crate::lease::Lease;

/// Errors a streaming request body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body: empty, a buffer, or a stream.
///
/// Empty and buffered bodies can be sent again, so the client may retry
/// such a request (see [`Client`](super::Client)); a streaming body is
/// sent once.
///
/// ```
/// use wharf_tokio::http::Body;
/// assert!(Body::empty().is_replayable());
/// assert!(Body::from("hello").is_replayable());
/// let stream = http_body_util::Full::new(bytes::Bytes::from_static(b"x"));
/// assert!(!Body::stream(stream).is_replayable());
/// ```
pub struct Body {
    kind: Kind,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl Body {
    /// No body.
    pub const fn empty() -> Body {
        Body { kind: Kind::Empty }
    }

    /// A buffered body.
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        let b = bytes.into();
        if b.is_empty() {
            return Body::empty();
        }
        Body {
            kind: Kind::Full(Some(b)),
        }
    }

    /// A streaming body (sent once: a request with it is never retried
    /// after it was sent).
    pub fn stream<B>(body: B) -> Body
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Body {
            kind: Kind::Stream(body.map_err(Into::into).boxed_unsync()),
        }
    }

    /// True for an empty or buffered body (a copy can be sent again).
    pub fn is_replayable(&self) -> bool {
        !matches!(self.kind, Kind::Stream(_))
    }

    /// A copy for a retry (empty and buffered bodies only; cheap: the
    /// buffer is shared).
    pub(crate) fn try_clone(&self) -> Option<Body> {
        match &self.kind {
            Kind::Empty => Some(Body::empty()),
            Kind::Full(b) => Some(Body {
                kind: Kind::Full(b.clone()),
            }),
            Kind::Stream(_) => None,
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Empty => f.write_str("Body::Empty"),
            Kind::Full(b) => write!(f, "Body::Full({} bytes)", b.as_ref().map_or(0, |b| b.len())),
            Kind::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

impl From<()> for Body {
    fn from(_: ()) -> Self {
        Body::empty()
    }
}
impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::full(b)
    }
}
impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Body::full(b)
    }
}
impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::full(s)
    }
}
impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::full(Bytes::from_static(s.as_bytes()))
    }
}
impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Self {
        Body::full(Bytes::from_static(s))
    }
}
impl From<http_body_util::Empty<Bytes>> for Body {
    fn from(_: http_body_util::Empty<Bytes>) -> Self {
        Body::empty()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(s) => s.size_hint(),
        }
    }
}

/// The lease a response body holds, and (HTTP/2) its stream count.
pub(crate) struct Held<C: HttpConnect> {
    pub(crate) lease: HttpLease<C>,
    pub(crate) h2: bool,
    /// HTTP/1: a request was handed to hyper and its response head has not
    /// come. Dropped so (the request future was dropped: a timeout, a
    /// caller that gave up), the connection is closed, not reused: hyper
    /// ends it (its response is still on the way), so it would fail the
    /// next request given it.
    pub(crate) in_flight: bool,
}

impl<C: HttpConnect> Drop for Held<C> {
    fn drop(&mut self) {
        if self.h2 {
            self.lease.state.stream_closed();
        } else if self.in_flight {
            Lease::discard(&mut self.lease);
        }
    }
}

/// A response body. It holds the connection's lease until it is read to
/// the end (then the connection goes back to the pool at once) or dropped
/// (HTTP/1: the connection, stopped in the middle of a response, is closed;
/// HTTP/2: the stream is reset and the connection serves on).
///
/// An [`http_body::Body`]; [`bytes`](ResponseBody::bytes) reads it all.
pub struct ResponseBody<C: HttpConnect = super::HttpConnector> {
    inner: Incoming,
    held: Option<Held<C>>,
    info: RequestInfo,
}

impl<C: HttpConnect> fmt::Debug for ResponseBody<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("holds_connection", &self.held.is_some())
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl<C: HttpConnect> ResponseBody<C> {
    pub(crate) fn new(inner: Incoming, held: Held<C>, info: RequestInfo) -> Self {
        let mut b = ResponseBody {
            inner,
            held: Some(held),
            info,
        };
        if http_body::Body::is_end_stream(&b.inner) {
            b.release();
        }
        b
    }

    /// What happened to the request on its way (pool wait, reuse, retries,
    /// the connection's version and streams).
    pub fn info(&self) -> &RequestInfo {
        &self.info
    }

    /// True while it holds its connection's lease (until the end of the
    /// body was read).
    pub fn holds_connection(&self) -> bool {
        self.held.is_some()
    }

    /// Reads the whole body.
    pub async fn bytes(self) -> Result<Bytes, HttpError> {
        Ok(self.collect().await?.to_bytes())
    }

    fn release(&mut self) {
        self.held = None;
    }

    #[cold]
    fn failed(&mut self, e: hyper::Error) -> HttpError {
        let route = match &mut self.held {
            Some(h) => {
                Lease::discard(&mut h.lease);
                Lease::route(&h.lease).map_or_else(String::new, |r| r.to_string())
            }
            None => String::new(),
        };
        self.release();
        HttpError::Body { route, source: e }
    }
}

impl<C: HttpConnect> Drop for ResponseBody<C> {
    fn drop(&mut self) {
        if let Some(h) = &mut self.held {
            // HTTP/1 in the middle of a response: hyper closes it.
            if !h.h2 {
                Lease::discard(&mut h.lease);
            }
        }
    }
}

impl<C: HttpConnect> http_body::Body for ResponseBody<C> {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if this.inner.is_end_stream() {
                    this.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(this.failed(e)))),
            None => {
                this.release();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
