//! The pool's typed errors.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

pub use wharf_core::{ClusterError, ConnectFailure};

/// Why a lease (or another pool operation) failed.
///
/// Every variant that concerns a route names it (as the connector's
/// [`describe`](crate::Connector::describe) renders it, e.g. `127.0.0.1:8080`).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The lease waited for a connection longer than its lease timeout.
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
    /// fails with it. [`std::error::Error::source`] gives the `io::Error`.
    ConnectFailed {
        /// The route.
        route: String,
        /// Timeout (the pool's connect timeout), local (resolution, no route,
        /// socket exhaustion) or remote (refused, reset).
        reason: ConnectFailure,
        /// The connector's error (for a connect timeout, a `TimedOut` error).
        source: Arc<io::Error>,
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
}

impl Error {
    /// The route this error is about, if any.
    pub fn route(&self) -> Option<&str> {
        match self {
            Error::Timeout { route, .. }
            | Error::Overflow { route }
            | Error::ConnectFailed { route, .. }
            | Error::Closed { route }
            | Error::Draining { route }
            | Error::RouteTableFull { route } => Some(route),
            Error::Cluster { host, .. } => host.as_deref(),
            Error::Config(_) | Error::UnknownCluster => None,
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
                write!(f, "connect to route {route} {what}: {source}")
            }
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
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ConnectFailed { source, .. } => Some(&**source),
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
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

/// The error of a route call the core refused.
pub(crate) fn route_error(route: String, e: wharf_core::RouteError) -> Error {
    use wharf_core::RouteError as E;
    match e {
        E::Config(error) => Error::Config(ConfigError::Route { route, error }),
        E::RouteTableFull => Error::RouteTableFull { route },
        E::Draining | E::UnknownRoute => Error::Draining { route },
    }
}

/// The error of a lease the core refused at once.
pub(crate) fn lease_error(route: String, e: wharf_core::LeaseError) -> Error {
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
pub(crate) fn fail_error(
    route: String,
    reason: wharf_core::FailReason,
    source: Option<Arc<io::Error>>,
    waited: Duration,
) -> Error {
    use wharf_core::FailReason as F;
    match reason {
        F::Timeout => Error::Timeout { route, waited },
        F::Overflow => Error::Overflow { route },
        F::Draining => Error::Draining { route },
        F::ConnectFailed(reason) => {
            let source = source.unwrap_or_else(|| {
                Arc::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    match reason {
                        ConnectFailure::Timeout => "connect timed out",
                        _ => "connect failed",
                    },
                ))
            });
            Error::ConnectFailed {
                route,
                reason,
                source,
            }
        }
    }
}

/// The error of a lease whose every hand-out found its connection closed by
/// the peer ([`Driver::handout_tries`](wharf_driver::Driver::handout_tries)
/// times in a row).
pub(crate) fn dead_error(route: String) -> Error {
    Error::ConnectFailed {
        route,
        reason: ConnectFailure::Remote,
        source: Arc::new(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "every connection handed out was closed by the peer",
        )),
    }
}
