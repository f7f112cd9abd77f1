//! Routes: where a pooled connection goes.

use embassy_net::{IpAddress, IpEndpoint};

/// Where a pooled connection goes: an IP endpoint, or a host name resolved
/// through the stack's DNS when a connection is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Route {
    /// An IP address and port.
    Ip(IpEndpoint),
    /// A host name (or an IP literal, parsed without a query) and a port.
    /// Names are `&'static str`: firmware keeps them in flash; a name built at
    /// run time can be given a `'static` home with `StaticCell`.
    Host {
        /// The name.
        name: &'static str,
        /// The TCP port.
        port: u16,
    },
}

impl Route {
    /// A route to an IP endpoint.
    pub fn ip(addr: impl Into<IpAddress>, port: u16) -> Route {
        Route::Ip(IpEndpoint::new(addr.into(), port))
    }
    /// A route to a host name (resolved with an `A` query).
    pub const fn host(name: &'static str, port: u16) -> Route {
        Route::Host { name, port }
    }
}
