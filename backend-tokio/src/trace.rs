//! `tracing` events (feature `tracing`); without the feature every function
//! here is empty and compiles away.
#![allow(unused_variables)]

use std::fmt;
use std::hash::Hash;
use std::io;

use wharf_core::{CloseReason, ConnId, ConnectFailure};

use crate::shared::Shared;
use crate::Connector;

#[cfg(feature = "tracing")]
fn route_of<K, C>(
    shared: &Shared<K, C>,
    core: &wharf_core::Pool<'static, K>,
    conn: ConnId,
) -> String
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    C: Connector<K>,
{
    core.route_of(conn)
        .and_then(|r| core.route_key(r))
        .map(|k| shared.describe(k))
        .unwrap_or_else(|| String::from("?"))
}

#[inline]
pub(crate) fn connect_start<K, C>(shared: &Shared<K, C>, key: &K, conn: ConnId)
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    C: Connector<K>,
{
    #[cfg(feature = "tracing")]
    tracing::debug!(route = %shared.describe(key), conn = conn.index(), "connect");
}

#[inline]
pub(crate) fn connected<K, C>(shared: &Shared<K, C>, key: &K, conn: ConnId)
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    C: Connector<K>,
{
    #[cfg(feature = "tracing")]
    tracing::debug!(route = %shared.describe(key), conn = conn.index(), "connected");
}

#[inline]
pub(crate) fn connect_failed<K, C>(
    shared: &Shared<K, C>,
    key: &K,
    conn: ConnId,
    reason: ConnectFailure,
    error: &io::Error,
) where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    C: Connector<K>,
{
    #[cfg(feature = "tracing")]
    tracing::warn!(route = %shared.describe(key), conn = conn.index(), ?reason, %error, "connect failed");
}

#[inline]
pub(crate) fn reuse<K, C>(
    shared: &Shared<K, C>,
    core: &wharf_core::Pool<'static, K>,
    conn: ConnId,
    served: u64,
) where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    C: Connector<K>,
{
    #[cfg(feature = "tracing")]
    if tracing::enabled!(tracing::Level::TRACE) {
        tracing::trace!(route = %route_of(shared, core, conn), conn = conn.index(), served, "reuse");
    }
}

#[inline]
pub(crate) fn validated<K, C>(
    shared: &Shared<K, C>,
    core: &wharf_core::Pool<'static, K>,
    conn: ConnId,
    stale: bool,
) where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    C: Connector<K>,
{
    #[cfg(feature = "tracing")]
    tracing::debug!(route = %route_of(shared, core, conn), conn = conn.index(), stale, "validated");
}

#[inline]
pub(crate) fn close<K, C>(shared: &Shared<K, C>, conn: ConnId, reason: CloseReason)
where
    K: Eq + Hash + Clone + fmt::Debug + Send + Sync + 'static,
    C: Connector<K>,
{
    #[cfg(feature = "tracing")]
    tracing::debug!(conn = conn.index(), ?reason, "close");
}
