//! Routes: where a pooled connection goes.

use core::hash::{Hash, Hasher};

use embassy_net::{IpAddress, IpEndpoint};

/// A host name known at run time, stored inline (no heap): at most `H`
/// bytes, `H` at most 255 (a DNS name has at most 253), checked when the
/// crate is compiled. Its length is one byte.
pub type HostName<const H: usize> = heapless::String<H, u8>;

/// Where a pooled connection goes: an IP endpoint, or a host name resolved
/// through the stack's DNS when a connection is opened.
///
/// `H` is the longest host name known at run time that the route can hold
/// ([`Route::name`]); it is a parameter of the pool's [`State`](crate::State)
/// too (default 0: only `&'static str` names and IP endpoints). A name is
/// the same route whichever way it is stored: `Route::host("a", 1)` and
/// `Route::name("a", 1)` are equal and hash alike.
///
/// ```
/// use wharf_embassy::{NameTooLong, Route};
///
/// // A name read at run time (from a configuration page in flash, a
/// // provisioning message, ...), kept inline in the route: no heap.
/// let from_config: &str = "broker.local";
/// let broker = Route::<32>::name(from_config, 1883)?;
/// assert_eq!(broker, Route::host("broker.local", 1883));
/// assert_eq!(broker.host_name(), Some("broker.local"));
///
/// // Longer than the route's capacity: a typed error, no panic.
/// let long = "a-rather-long-host-name.example.net";
/// assert_eq!(
///     Route::<16>::name(long, 80),
///     Err(NameTooLong { len: long.len(), capacity: 16 })
/// );
/// # Ok::<(), NameTooLong>(())
/// ```
#[derive(Clone, Debug)]
pub enum Route<const H: usize = 0> {
    /// An IP address and port.
    Ip(IpEndpoint),
    /// A host name (or an IP literal, parsed without a query) kept in flash,
    /// and a port.
    Host {
        /// The name.
        name: &'static str,
        /// The TCP port.
        port: u16,
    },
    /// A host name (or an IP literal) known at run time, stored in the
    /// route (at most `H` bytes), and a port. Made by [`Route::name`].
    Name {
        /// The name.
        name: HostName<H>,
        /// The TCP port.
        port: u16,
    },
}

/// A host name longer than the route's capacity `H` (see [`Route::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NameTooLong {
    /// The name's length in bytes.
    pub len: usize,
    /// The most a name may have (`H`).
    pub capacity: usize,
}

impl core::fmt::Display for NameTooLong {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "host name of {} bytes is longer than the route's {}",
            self.len, self.capacity
        )
    }
}

impl core::error::Error for NameTooLong {}

impl<const H: usize> Route<H> {
    /// A route to an IP endpoint.
    pub fn ip(addr: impl Into<IpAddress>, port: u16) -> Self {
        Route::Ip(IpEndpoint::new(addr.into(), port))
    }

    /// A route to a host name kept in flash (resolved with an `A` query).
    pub const fn host(name: &'static str, port: u16) -> Self {
        Route::Host { name, port }
    }

    /// A route to a host name known at run time (resolved with an `A`
    /// query; an IP literal is parsed without one), copied into the route.
    ///
    /// [`NameTooLong`] if `name` has more than `H` bytes.
    pub fn name(name: &str, port: u16) -> Result<Self, NameTooLong> {
        match HostName::<H>::try_from(name) {
            Ok(name) => Ok(Route::Name { name, port }),
            Err(_) => Err(NameTooLong {
                len: name.len(),
                capacity: H,
            }),
        }
    }

    /// The host name, for a route by name (either kind).
    pub fn host_name(&self) -> Option<&str> {
        match self {
            Route::Ip(_) => None,
            Route::Host { name, .. } => Some(name),
            Route::Name { name, .. } => Some(name.as_str()),
        }
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        match self {
            Route::Ip(ep) => ep.port,
            Route::Host { port, .. } | Route::Name { port, .. } => *port,
        }
    }
}

impl<const H: usize> PartialEq for Route<H> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Route::Ip(a), Route::Ip(b)) => a == b,
            (Route::Ip(_), _) | (_, Route::Ip(_)) => false,
            _ => self.port() == other.port() && self.host_name() == other.host_name(),
        }
    }
}

impl<const H: usize> Eq for Route<H> {}

impl<const H: usize> Hash for Route<H> {
    fn hash<S: Hasher>(&self, state: &mut S) {
        match self {
            Route::Ip(ep) => {
                0u8.hash(state);
                ep.hash(state);
            }
            named => {
                1u8.hash(state);
                named.host_name().hash(state);
                named.port().hash(state);
            }
        }
    }
}

#[cfg(feature = "defmt")]
impl<const H: usize> defmt::Format for Route<H> {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Route::Ip(ep) => defmt::write!(f, "{}", ep),
            named => defmt::write!(
                f,
                "{=str}:{=u16}",
                named.host_name().unwrap_or(""),
                named.port()
            ),
        }
    }
}
