//! The pool's typed errors.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

pub use wharf_core::{ClusterError, ConnectFailure};

/// Why a lease (or another pool operation) failed. `E` is the connector's
/// error type ([`Connector::Error`](crate::Connector::Error); `io::Error`
/// for [`TcpConnector`](crate::TcpConnector)), carried typed by
/// [`Error::ConnectFailed`].
///
/// Every variant that concerns a route names it (as the connector's
/// [`describe`](crate::Connector::describe) renders it, e.g. `127.0.0.1:8080`).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E = io::Error> {
    /// The lease waited for a connection longer than its lease timeout. With
    /// a lease timeout of zero ("do not wait") `waited` is zero: no
    /// connection was ready, and the lease failed at once without queueing.
    Timeout {
        /// The route.
        route: String,
        /// How long the lease waited before it gave up.
        waited: Duration,
    },
    /// Too many pending lease requests (`max_pending`) or leases in use: the
    /// request was refused at once and never queued (Envoy's overflow).
    Overflow {
        /// The route.
        route: String,
    },
    /// Connecting to the route failed; every lease waiting for the route
    /// fails with it. [`std::error::Error::source`] gives the connector's
    /// error.
    ConnectFailed {
        /// The route.
        route: String,
        /// Timeout (the pool's connect timeout, or the connector's error
        /// classified so), local (resolution, no route, socket exhaustion) or
        /// remote (refused, reset), as the connector's
        /// [`classify`](crate::Connector::classify) said.
        reason: ConnectFailure,
        /// The connector's error, typed; `None` when the pool's own connect
        /// timeout fired (the connector had not answered) or the connector's
        /// connect panicked (a `Local` failure).
        source: Option<Arc<E>>,
    },
    /// Every connection handed out to the lease was found closed by the
    /// peer ([`Driver::handout_tries`](wharf_driver::Driver::handout_tries)
    /// times in a row: each try closed one).
    PeerClosed {
        /// The route.
        route: String,
    },
    /// The pool was closed ([`Pool::close`](crate::Pool::close), or drained
    /// for deletion as a whole).
    Closed {
        /// The route.
        route: String,
    },
    /// The route is being drained for deletion
    /// ([`DrainMode::DrainAndDelete`](crate::DrainMode)).
    Draining {
        /// The route.
        route: String,
    },
    /// The route is new and every route slot is taken (see
    /// [`Builder::max_routes`](crate::Builder::max_routes)).
    RouteTableFull {
        /// The route.
        route: String,
    },
    /// The configuration was refused.
    Config(ConfigError),
    /// A cluster call failed for a reason of the cluster itself:
    /// [`ClusterError::NoHosts`] (a lease through a cluster with no host),
    /// [`ClusterError::Duplicate`] / [`ClusterError::Full`] (adding a host
    /// already there, or beyond [`MAX_CLUSTER_HOSTS`](crate::MAX_CLUSTER_HOSTS)),
    /// [`ClusterError::UnknownHost`] (removing or marking a host that is not
    /// in the cluster). Never [`ClusterError::Lease`] nor
    /// [`ClusterError::Config`]: a lease that fails on the picked host reports
    /// the variant a route lease would ([`Error::Overflow`],
    /// [`Error::Timeout`], ...), and a refused ratio is [`Error::Config`].
    Cluster {
        /// The cluster's name.
        cluster: String,
        /// The host concerned, if any.
        host: Option<String>,
        /// Why.
        error: ClusterError,
    },
    /// The [`ClusterHandle`](crate::ClusterHandle) names no cluster of this
    /// pool (the cluster was removed).
    UnknownCluster,
    /// The [`ClusterHandle`](crate::ClusterHandle) was issued by another
    /// pool (a handle is only valid with the pool, or a clone of the pool,
    /// whose [`add_cluster`](crate::Pool::add_cluster) returned it).
    ForeignCluster,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The core refused the pool-wide settings.
    Pool(wharf_core::ConfigError),
    /// The core refused a route's settings.
    Route {
        /// The route.
        route: String,
        /// Why.
        error: wharf_core::ConfigError,
    },
    /// The core refused a cluster's settings (its predictive ratio).
    Cluster {
        /// The cluster's name.
        cluster: String,
        /// Why.
        error: wharf_core::ConfigError,
    },
    /// `build()` was called outside a tokio runtime and no runtime handle was
    /// given with [`Builder::runtime`](crate::Builder::runtime).
    NoRuntime,
    /// More distinct routes were given to
    /// [`Builder::route`](crate::Builder::route) than
    /// [`Builder::max_routes`](crate::Builder::max_routes) holds.
    TooManyRoutes {
        /// Distinct routes configured.
        configured: usize,
        /// The `max_routes` setting.
        max_routes: usize,
    },
    /// The slots the settings ask for (`max_total` or `max_total_ceiling`,
    /// `max_routes`, `max_pending`, `max_leases`) would take more memory
    /// than [`Builder::max_storage`](crate::Builder::max_storage) allows.
    /// Nothing was allocated.
    StorageTooLarge {
        /// Bytes the pool would allocate.
        bytes: usize,
        /// The `max_storage` setting.
        limit: usize,
        /// Connection slots (`max_total` or its ceiling, plus 2).
        conns: usize,
        /// Route slots (`max_routes`).
        routes: usize,
        /// Waiter slots (`max_pending`).
        waiters: usize,
        /// Lease slots (`max_leases`, at least the connection slots).
        leases: usize,
    },
    /// A builder setting out of its range.
    Setting {
        /// The setting (the builder method's name).
        setting: &'static str,
        /// What it must be.
        reason: &'static str,
    },
}

impl<E> Error<E> {
    /// The route this error is about, if any.
    pub fn route(&self) -> Option<&str> {
        match self {
            Error::Timeout { route, .. }
            | Error::PeerClosed { route }
            | Error::Overflow { route }
            | Error::ConnectFailed { route, .. }
            | Error::Closed { route }
            | Error::Draining { route }
            | Error::RouteTableFull { route } => Some(route),
            Error::Cluster { host, .. } => host.as_deref(),
            Error::Config(_) | Error::UnknownCluster | Error::ForeignCluster => None,
        }
    }

    /// The cluster this error is about, for [`Error::Cluster`] and a refused
    /// cluster setting.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Error::Cluster { cluster, .. }
            | Error::Config(ConfigError::Cluster { cluster, .. }) => Some(cluster),
            _ => None,
        }
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout { route, waited } if waited.is_zero() => write!(
                f,
                "lease on route {route} failed at once: no connection was ready and the \
                 lease does not wait (lease timeout 0)"
            ),
            Error::Timeout { route, waited } => {
                write!(
                    f,
                    "lease on route {route} timed out after waiting {waited:?}"
                )
            }
            Error::Overflow { route } => {
                write!(
                    f,
                    "lease on route {route} refused: too many pending requests or leases"
                )
            }
            Error::ConnectFailed {
                route,
                reason,
                source,
            } => {
                let what = match reason {
                    ConnectFailure::Timeout => "timed out",
                    ConnectFailure::Local => "failed locally",
                    ConnectFailure::Remote => "failed at the remote end",
                };
                match source {
                    Some(source) => write!(f, "connect to route {route} {what}: {source}"),
                    None => write!(f, "connect to route {route} {what}"),
                }
            }
            Error::PeerClosed { route } => write!(
                f,
                "lease on route {route} failed: every connection handed out was closed by the peer"
            ),
            Error::Closed { route } => {
                write!(f, "lease on route {route} refused: the pool is closed")
            }
            Error::Draining { route } => {
                write!(
                    f,
                    "lease on route {route} refused: the route is draining for deletion"
                )
            }
            Error::RouteTableFull { route } => {
                write!(f, "lease on route {route} refused: the route table is full")
            }
            Error::Config(e) => write!(f, "invalid pool configuration: {e}"),
            Error::Cluster {
                cluster,
                host: Some(host),
                error,
            } => write!(f, "cluster {cluster}, host {host}: {error}"),
            Error::Cluster {
                cluster,
                host: None,
                error,
            } => write!(f, "cluster {cluster}: {error}"),
            Error::UnknownCluster => f.write_str("no such cluster (it was removed)"),
            Error::ForeignCluster => f.write_str("the cluster handle was issued by another pool"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ConnectFailed {
                source: Some(source),
                ..
            } => Some(&**source),
            Error::Config(ConfigError::Pool(e))
            | Error::Config(ConfigError::Route { error: e, .. })
            | Error::Config(ConfigError::Cluster { error: e, .. }) => Some(e),
            Error::Cluster { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Pool(e) => write!(f, "{e}"),
            ConfigError::Route { route, error } => write!(f, "route {route}: {error}"),
            ConfigError::Cluster { cluster, error } => write!(f, "cluster {cluster}: {error}"),
            ConfigError::NoRuntime => {
                f.write_str("no tokio runtime: build inside one or pass Builder::runtime")
            }
            ConfigError::TooManyRoutes {
                configured,
                max_routes,
            } => write!(
                f,
                "{configured} routes configured with Builder::route but max_routes is \
                 {max_routes}: raise max_routes"
            ),
            ConfigError::StorageTooLarge {
                bytes,
                limit,
                conns,
                routes,
                waiters,
                leases,
            } => write!(
                f,
                "the pool's slots would take {bytes} bytes, above max_storage ({limit}): \
                 {conns} connection slots (max_total or max_total_ceiling, + 2), {routes} \
                 route slots (max_routes), {waiters} waiter slots (max_pending), {leases} \
                 lease slots (max_leases); lower them or raise max_storage"
            ),
            ConfigError::Setting { setting, reason } => write!(f, "{setting} {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl<E> From<ConfigError> for Error<E> {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

/// The error of a route call the core refused.
pub(crate) fn route_error<E>(route: String, e: wharf_core::RouteError) -> Error<E> {
    use wharf_core::RouteError as E;
    match e {
        E::Config(error) => Error::Config(ConfigError::Route { route, error }),
        E::RouteTableFull => Error::RouteTableFull { route },
        E::Draining | E::UnknownRoute => Error::Draining { route },
    }
}

/// The error of a lease the core refused at once.
pub(crate) fn lease_error<E>(route: String, e: wharf_core::LeaseError) -> Error<E> {
    use wharf_core::LeaseError as E;
    match e {
        E::Overflow => Error::Overflow { route },
        E::RouteTableFull => Error::RouteTableFull { route },
        E::Draining => Error::Draining { route },
        E::Closed => Error::Closed { route },
        E::Timeout => Error::Timeout {
            route,
            waited: Duration::ZERO,
        },
    }
}

/// The error of a waiting lease request that failed.
pub(crate) fn fail_error<E>(
    route: String,
    reason: wharf_core::FailReason,
    source: Option<Arc<E>>,
    waited: Duration,
) -> Error<E> {
    use wharf_core::FailReason as F;
    match reason {
        F::Timeout => Error::Timeout { route, waited },
        F::Overflow => Error::Overflow { route },
        F::Draining => Error::Draining { route },
        F::ConnectFailed(reason) => Error::ConnectFailed {
            route,
            reason,
            source,
        },
    }
}

/// The error of a lease whose every hand-out found its connection closed by
/// the peer ([`Driver::handout_tries`](wharf_driver::Driver::handout_tries)
/// times in a row).
pub(crate) fn dead_error<E>(route: String) -> Error<E> {
    Error::PeerClosed { route }
}
