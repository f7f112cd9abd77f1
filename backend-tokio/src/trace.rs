//! `tracing` events (feature `tracing`); without the feature every function
//! here is empty and compiles away. Routes are rendered by the connector's
//! `describe`.
#![allow(unused_variables)]

use wharf_core::{CloseReason, ConnId, ConnectFailure, Pool};

use crate::connector::{Connector, RouteKey};

#[cfg(feature = "tracing")]
fn route_of<K: RouteKey, C: Connector<K>>(
    connector: &C,
    core: &Pool<'_, K>,
    conn: ConnId,
) -> String {
    core.route_of(conn)
        .and_then(|r| core.route_key(r))
        .map(|k| connector.describe(k))
        .unwrap_or_else(|| String::from("?"))
}

#[inline]
pub(crate) fn connect_start<K: RouteKey, C: Connector<K>>(connector: &C, key: &K, conn: ConnId) {
    #[cfg(feature = "tracing")]
    tracing::debug!(route = %connector.describe(key), conn = conn.index(), "connect");
}

#[inline]
pub(crate) fn connected<K: RouteKey, C: Connector<K>>(connector: &C, key: &K, conn: ConnId) {
    #[cfg(feature = "tracing")]
    tracing::debug!(route = %connector.describe(key), conn = conn.index(), "connected");
}

#[inline]
pub(crate) fn connect_failed<K: RouteKey, C: Connector<K>>(
    connector: &C,
    key: &K,
    conn: ConnId,
    reason: ConnectFailure,
    error: &dyn std::fmt::Display,
) {
    #[cfg(feature = "tracing")]
    tracing::warn!(route = %connector.describe(key), conn = conn.index(), ?reason, %error, "connect failed");
}

#[inline]
pub(crate) fn reuse<K: RouteKey, C: Connector<K>, I: wharf_driver::Io<K>>(
    connector: &C,
    driver: &wharf_driver::Driver<'_, K, I>,
    conn: ConnId,
) {
    #[cfg(feature = "tracing")]
    if tracing::enabled!(tracing::Level::TRACE) {
        let served = driver.served(conn);
        tracing::trace!(route = %route_of(connector, driver.core(), conn), conn = conn.index(), served, "reuse");
    }
}

#[inline]
pub(crate) fn validated<K: RouteKey, C: Connector<K>>(
    connector: &C,
    core: &Pool<'_, K>,
    conn: ConnId,
    stale: bool,
) {
    #[cfg(feature = "tracing")]
    tracing::debug!(route = %route_of(connector, core, conn), conn = conn.index(), stale, "validated");
}

#[inline]
pub(crate) fn close(conn: ConnId, reason: CloseReason) {
    #[cfg(feature = "tracing")]
    tracing::debug!(conn = conn.index(), ?reason, "close");
}

#[inline]
pub(crate) fn route_idle<K: RouteKey, C: Connector<K>>(connector: &C, key: &K) {
    #[cfg(feature = "tracing")]
    tracing::debug!(route = %connector.describe(key), "route idle");
}

#[inline]
pub(crate) fn dead_at_handout(conn: ConnId) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        conn = conn.index(),
        "dead at hand-out: closed, asking again"
    );
}

#[inline]
pub(crate) fn watched(conn: ConnId, event: wharf_driver::ConnEvent) {
    #[cfg(feature = "tracing")]
    tracing::debug!(conn = conn.index(), ?event, "watched");
}
