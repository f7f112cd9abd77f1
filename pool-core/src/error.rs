//! Typed errors for every input. An input that returns an error has changed
//! nothing except processing timers due at its `now`.

/// Why [`Pool::lease`](crate::Pool::lease) answered at once with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LeaseError {
    /// The waiter queue is full (`max_pending`) or the lease limit is reached:
    /// answered synchronously, never queued (Envoy's overflow).
    Overflow,
    /// The route is new and every route slot is taken.
    RouteTableFull,
    /// The route is being drained for deletion.
    Draining,
    /// The pool was drained for deletion as a whole.
    Closed,
    /// The deadline given had already passed (or was `now`: "do not wait") and
    /// no connection was ready.
    Timeout,
}

/// Why [`Pool::release`](crate::Pool::release) refused a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReleaseError {
    /// The lease was already released (or its connection closed under it).
    StaleLease,
    /// The lease was made by another pool.
    ForeignLease,
}

/// Why an input about a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnError {
    /// The handle names a connection that no longer exists (closed, timed out).
    StaleConn,
    /// The connection is not in the state this input is about (e.g. `connected`
    /// for a connection that is not connecting, or before its `Connect` action
    /// was polled).
    WrongState,
    /// `connected` with a stream capacity of 0.
    ZeroCapacity,
}

/// Why [`Pool::cancel`](crate::Pool::cancel) refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CancelError {
    /// The waiter was already answered and its answer polled (or never existed).
    /// If it was granted, the caller owns the lease and must release it.
    StaleWaiter,
}

/// Why a per-route input was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RouteError {
    /// Invalid settings.
    Config(crate::ConfigError),
    /// The route is new and every route slot is taken.
    RouteTableFull,
    /// The route is being drained for deletion.
    Draining,
    /// No such route.
    UnknownRoute,
}

macro_rules! display {
    ($t:ty, $($v:pat => $s:expr),+ $(,)?) => {
        impl core::fmt::Display for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self { $($v => f.write_str($s)),+ }
            }
        }
    };
}

display!(LeaseError,
    LeaseError::Overflow => "pool overflow: too many pending requests or leases",
    LeaseError::RouteTableFull => "route table full",
    LeaseError::Draining => "route is draining for deletion",
    LeaseError::Closed => "pool is closed",
    LeaseError::Timeout => "no connection ready and the lease may not wait (deadline reached)",
);
display!(ReleaseError,
    ReleaseError::StaleLease => "stale or double release",
    ReleaseError::ForeignLease => "lease made by another pool",
);
display!(ConnError,
    ConnError::StaleConn => "stale connection handle",
    ConnError::WrongState => "connection is not in the state this input expects",
    ConnError::ZeroCapacity => "stream capacity must be at least 1",
);
display!(CancelError, CancelError::StaleWaiter => "waiter already answered");

impl core::fmt::Display for RouteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RouteError::Config(e) => write!(f, "invalid route config: {e}"),
            RouteError::RouteTableFull => f.write_str("route table full"),
            RouteError::Draining => f.write_str("route is draining for deletion"),
            RouteError::UnknownRoute => f.write_str("unknown route"),
        }
    }
}

impl From<crate::ConfigError> for RouteError {
    fn from(e: crate::ConfigError) -> Self {
        RouteError::Config(e)
    }
}

impl core::error::Error for LeaseError {}
impl core::error::Error for ReleaseError {}
impl core::error::Error for ConnError {}
impl core::error::Error for CancelError {}
impl core::error::Error for RouteError {}
impl core::error::Error for crate::ConfigError {}
