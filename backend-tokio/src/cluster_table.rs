//! The cluster table kept under the pool's lock: handles, slots, and the
//! typed errors of the core's cluster calls.

use wharf_core::ClusterError;

use crate::connector::{Connector, RouteKey};
use crate::error::{lease_error, ConfigError, Error};

/// The most hosts a cluster holds.
pub(crate) const MAX_HOSTS: usize = 64;

/// One cluster slot.
pub(crate) struct ClusterSlot<K> {
    pub gen: u32,
    pub entry: Option<ClusterEntry<K>>,
}

/// A cluster: its name (for errors) and the core's cluster (boxed: it holds
/// `MAX_HOSTS` host slots).
pub(crate) struct ClusterEntry<K> {
    pub name: String,
    pub cluster: Box<wharf_core::Cluster<K, MAX_HOSTS>>,
}

/// A cluster of a [`Pool`](crate::Pool), returned by
/// [`Pool::add_cluster`](crate::Pool::add_cluster): a small `Copy` handle
/// (slot and generation). Once the cluster is removed
/// ([`Pool::remove_cluster`](crate::Pool::remove_cluster)) every call with
/// the handle fails with [`Error::UnknownCluster`]. A handle is only
/// meaningful for the pool (and its clones) that returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterHandle {
    pub(crate) index: u32,
    pub(crate) gen: u32,
}

impl ClusterHandle {
    /// The cluster this handle names, if it is still there.
    pub(crate) fn entry<K, E>(
        self,
        clusters: &mut [ClusterSlot<K>],
    ) -> Result<&mut ClusterEntry<K>, Error<E>> {
        clusters
            .get_mut(self.index as usize)
            .filter(|s| s.gen == self.gen)
            .and_then(|s| s.entry.as_mut())
            .ok_or(Error::UnknownCluster)
    }
}

/// The typed error of a core cluster error.
pub(crate) fn cluster_error<K: RouteKey, C: Connector<K>>(
    connector: &C,
    name: &str,
    host: Option<&K>,
    e: ClusterError,
) -> Error<C::Error> {
    match e {
        ClusterError::Lease(e) => {
            let route = match host {
                Some(k) => connector.describe(k),
                None => format!("cluster {name}"),
            };
            lease_error(route, e)
        }
        ClusterError::Config(error) => Error::Config(ConfigError::Cluster {
            cluster: name.to_owned(),
            error,
        }),
        error => Error::Cluster {
            cluster: name.to_owned(),
            host: host.map(|k| connector.describe(k)),
            error,
        },
    }
}
