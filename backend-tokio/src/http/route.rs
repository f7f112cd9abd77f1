//! Routes of the HTTP client: where a connection goes and what it is.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::uri::{Authority, Scheme};

/// Which HTTP version a route's connections speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// Plain `http://`: HTTP/1.1. `https://`: whatever ALPN picks (`h2`
    /// preferred, else `http/1.1`).
    Auto,
    /// HTTP/1.1 only (`https://`: ALPN offers `http/1.1` alone).
    Http1,
    /// HTTP/2 only: plain `http://` with prior knowledge (h2c, for internal
    /// services); `https://`: ALPN offers `h2` alone.
    Http2,
}

/// A route of the HTTP client: scheme, host and port, the protocol, and for
/// TLS the server name and the client identity. Connections of one route
/// never serve another, so connections made with one client identity never
/// carry a request of another.
///
/// The [`Client`](super::Client) makes the route of each request from its
/// URI, its version (`Version::HTTP_2` asks for [`Protocol::Http2`]) and its
/// extensions ([`Identity`], [`TlsServerName`]).
///
/// ```
/// use wharf_tokio::http::{HttpRoute, Protocol};
/// let r = HttpRoute::https("api.example.com", 443).unwrap().with_identity("alice");
/// assert_eq!(r.to_string(), "https://api.example.com:443 (identity alice)");
/// let r = HttpRoute::http("10.0.0.7", 8080).unwrap().with_protocol(Protocol::Http2);
/// assert_eq!(r.to_string(), "http://10.0.0.7:8080 (h2c)");
/// assert_eq!(HttpRoute::http("::1", 80).unwrap().host(), "::1");
/// assert!(HttpRoute::http("not a host", 80).is_none());
/// ```
///
/// Two routes are equal when their scheme, host (without case), port,
/// protocol, server name and identity are: `http://h/` and `http://h:80/`
/// are one route (each request still sends its own authority as `Host`).
#[derive(Clone)]
pub struct HttpRoute {
    pub(crate) tls: bool,
    pub(crate) authority: Authority,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    pub(crate) server_name: Option<Arc<str>>,
    pub(crate) identity: Option<Arc<str>>,
}

/// A request extension choosing the client identity (a client certificate
/// registered with [`ClientBuilder::tls_identity`](super::ClientBuilder::tls_identity))
/// for an `https://` request. Requests of different identities never share
/// a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity(pub Arc<str>);

impl Identity {
    /// The identity registered under `name`.
    pub fn new(name: &str) -> Self {
        Identity(Arc::from(name))
    }
}

/// A request extension setting the TLS server name (SNI and the name the
/// certificate must carry) of an `https://` request; default: the URI's
/// host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsServerName(pub Arc<str>);

fn authority(host: &str, port: u16) -> Option<Authority> {
    let s = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let a = Authority::try_from(s.as_str()).ok()?;
    (!a.host().is_empty() && !a.as_str().contains('@')).then_some(a)
}

impl HttpRoute {
    /// A plain `http://host:port` route (HTTP/1.1); `None` when `host` is
    /// not a host name or address.
    pub fn http(host: &str, port: u16) -> Option<Self> {
        Some(HttpRoute {
            tls: false,
            authority: authority(host, port)?,
            port,
            protocol: Protocol::Auto,
            server_name: None,
            identity: None,
        })
    }

    /// An `https://host:port` route (ALPN picks HTTP/2 or HTTP/1.1); `None`
    /// when `host` is not a host name or address.
    pub fn https(host: &str, port: u16) -> Option<Self> {
        Some(HttpRoute {
            tls: true,
            ..HttpRoute::http(host, port)?
        })
    }

    /// The route of a request (its URI, version and extensions), or why it
    /// has none.
    pub(crate) fn of_request<B>(
        req: &http::Request<B>,
        plain: Protocol,
        tls_default: Protocol,
    ) -> Result<Self, &'static str> {
        let uri = req.uri();
        let tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => false,
            Some(s) if *s == Scheme::HTTPS => true,
            Some(_) => return Err("unsupported scheme (http and https only)"),
            None => return Err("the URI has no scheme (an absolute URI is needed)"),
        };
        let auth = uri.authority().ok_or("the URI has no host")?;
        if auth.host().is_empty() {
            return Err("the URI has no host");
        }
        // What follows the host: `:port`, `:` or nothing (the scheme's
        // default port); a port that is not a `u16` is refused, not
        // replaced by the default.
        let hostport = auth.as_str().rsplit('@').next().unwrap_or_default();
        let port = match hostport.get(auth.host().len()..).unwrap_or_default() {
            "" | ":" => {
                if tls {
                    443
                } else {
                    80
                }
            }
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or("the URI's port is not valid")?,
        };
        let authority = if auth.as_str().contains('@') {
            authority(auth.host(), port).ok_or("the URI has no valid host")?
        } else {
            auth.clone()
        };
        let protocol = if req.version() == http::Version::HTTP_2 {
            Protocol::Http2
        } else if tls {
            tls_default
        } else {
            plain
        };
        let ext = req.extensions();
        let identity = ext.get::<Identity>().map(|i| i.0.clone());
        let server_name = ext.get::<TlsServerName>().map(|n| n.0.clone());
        if !tls && (identity.is_some() || server_name.is_some()) {
            return Err("a client identity or TLS server name on a plain http:// request");
        }
        Ok(HttpRoute {
            tls,
            authority,
            port,
            protocol,
            server_name,
            identity,
        })
    }

    /// Connections of this route speak `protocol`.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// TLS: the client identity (registered with
    /// [`ClientBuilder::tls_identity`](super::ClientBuilder::tls_identity)).
    pub fn with_identity(mut self, name: &str) -> Self {
        self.identity = Some(Arc::from(name));
        self
    }

    /// TLS: the server name (default: the host).
    pub fn with_server_name(mut self, name: &str) -> Self {
        self.server_name = Some(Arc::from(name));
        self
    }

    /// True for `https://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host (IPv6 addresses without brackets).
    pub fn host(&self) -> &str {
        let h = self.authority.host();
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The authority (`host[:port]`) as in the request's URI (the `Host`
    /// header of HTTP/1.1 requests).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The protocol asked for.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// TLS: the name the server's certificate must carry (and the SNI).
    pub fn server_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or_else(|| self.host())
    }

    /// TLS: the client identity, if any.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// Plain HTTP/2 with prior knowledge.
    pub(crate) fn is_h2c(&self) -> bool {
        !self.tls && self.protocol == Protocol::Http2
    }
}

/// By scheme, host (without case), port, protocol, server name and
/// identity: not by the authority's text, whose port may be written or
/// left to the scheme's default.
impl PartialEq for HttpRoute {
    fn eq(&self, other: &Self) -> bool {
        self.tls == other.tls
            && self.port == other.port
            && self.protocol == other.protocol
            && self
                .authority
                .host()
                .eq_ignore_ascii_case(other.authority.host())
            && self.server_name == other.server_name
            && self.identity == other.identity
    }
}

impl Eq for HttpRoute {}

/// As [`PartialEq`]: the host (compared without case) is lowercased in
/// 16-byte chunks rather than hashed a byte at a time.
impl Hash for HttpRoute {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.tls.hash(state);
        self.port.hash(state);
        self.protocol.hash(state);
        let a = self.authority.host().as_bytes();
        state.write_usize(a.len());
        for chunk in a.chunks(16) {
            let mut buf = [0u8; 16];
            buf[..chunk.len()].copy_from_slice(chunk);
            buf.make_ascii_lowercase();
            state.write(&buf[..chunk.len()]);
        }
        self.server_name.hash(state);
        self.identity.hash(state);
    }
}

impl fmt::Display for HttpRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let host = self.authority.host();
        write!(f, "{scheme}://{host}:{}", self.port)?;
        let mut notes = Vec::new();
        match (self.tls, self.protocol) {
            (false, Protocol::Http2) => notes.push(String::from("h2c")),
            (true, Protocol::Http2) => notes.push(String::from("h2 only")),
            (true, Protocol::Http1) => notes.push(String::from("http/1.1 only")),
            _ => {}
        }
        if let Some(n) = &self.server_name {
            notes.push(format!("server name {n}"));
        }
        if let Some(i) = &self.identity {
            notes.push(format!("identity {i}"));
        }
        if !notes.is_empty() {
            write!(f, " ({})", notes.join(", "))?;
        }
        Ok(())
    }
}

impl fmt::Debug for HttpRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(uri: &str) -> Result<HttpRoute, &'static str> {
        HttpRoute::of_request(
            &http::Request::get(uri).body(()).unwrap(),
            Protocol::Auto,
            Protocol::Auto,
        )
    }

    #[test]
    fn routes_of_requests() {
        let r = route("http://Example.com/x").unwrap();
        assert_eq!((r.host(), r.port(), r.is_tls()), ("Example.com", 80, false));
        assert_eq!(
            r,
            route("http://example.com/y?q").unwrap(),
            "host case and path do not matter"
        );
        assert_ne!(r, route("https://example.com/").unwrap());
        assert_eq!(route("https://[::1]:8443/").unwrap().host(), "::1");
        assert_eq!(
            route("http://user:pw@h:81/").unwrap().authority().as_str(),
            "h:81"
        );
        assert!(route("/relative").is_err());
        assert!(route("ftp://h/").is_err());
        let mut req = http::Request::get("https://h/").body(()).unwrap();
        req.extensions_mut().insert(Identity::new("alice"));
        let alice = HttpRoute::of_request(&req, Protocol::Auto, Protocol::Auto).unwrap();
        assert_eq!(alice.identity(), Some("alice"));
        assert_ne!(
            alice,
            route("https://h/").unwrap(),
            "identities are routes of their own"
        );
        let mut req = http::Request::get("http://h/").body(()).unwrap();
        req.extensions_mut().insert(Identity::new("alice"));
        assert!(HttpRoute::of_request(&req, Protocol::Auto, Protocol::Auto).is_err());
        let h2 = http::Request::get("http://h/")
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap();
        assert!(HttpRoute::of_request(&h2, Protocol::Auto, Protocol::Auto)
            .unwrap()
            .is_h2c());
    }
}
