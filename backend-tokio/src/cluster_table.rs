//! The cluster table kept under the pool's lock: handles, slots, and the
//! typed errors of the core's cluster calls.

use wharf_core::ClusterError;

use crate::connector::{Connector, RouteKey};
use crate::error::{lease_error, ConfigError, Error};

/// The most hosts a cluster holds.
pub(crate) const MAX_HOSTS: usize = 64;

/// The clusters of one pool: slots ([`ClusterHandle`] indexes them; a
/// removed cluster's slot is reused with a new generation) and the pool's
/// identity, which every handle it issued carries.
pub(crate) struct ClusterTable<K> {
    pub pool: u64,
    pub slots: Vec<ClusterSlot<K>>,
}

impl<K> std::ops::Deref for ClusterTable<K> {
    type Target = Vec<ClusterSlot<K>>;
    fn deref(&self) -> &Self::Target {
        &self.slots
    }
}

impl<K> std::ops::DerefMut for ClusterTable<K> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.slots
    }
}

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
/// (the issuing pool's identity, slot and generation), checked by every call
/// that takes it. A handle used with another pool fails with
/// [`Error::ForeignCluster`] (clones of the issuing pool are the same pool);
/// once the cluster is removed
/// ([`Pool::remove_cluster`](crate::Pool::remove_cluster)) every call with
/// the handle fails with [`Error::UnknownCluster`], even once its slot holds
/// another cluster. `wharf-embassy`'s `ClusterHandle` has the same shape.
///
/// ```
/// use wharf_tokio::{Balancer, Error, Pool, TcpConnector};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let a = Pool::<(String, u16), _>::builder(TcpConnector::new()).build()?;
/// let b = Pool::<(String, u16), _>::builder(TcpConnector::new()).build()?;
/// let hosts = [(String::from("127.0.0.1"), 1)];
/// let api = a.add_cluster("api", Balancer::RoundRobin, hosts.clone(), 0.0)?;
/// assert!(a.cluster_hosts(api).is_ok());
/// assert!(matches!(b.cluster_hosts(api), Err(Error::ForeignCluster)));
/// assert!(matches!(b.lease_cluster(api).await, Err(Error::ForeignCluster)));
/// a.remove_cluster(api)?;
/// assert!(matches!(a.cluster_hosts(api), Err(Error::UnknownCluster)));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterHandle {
    pub(crate) pool: u64,
    pub(crate) index: u32,
    pub(crate) gen: u32,
}

impl ClusterHandle {
    /// The cluster this handle names, if it is this pool's and still there.
    pub(crate) fn entry<K, E>(
        self,
        clusters: &mut ClusterTable<K>,
    ) -> Result<&mut ClusterEntry<K>, Error<E>> {
        if self.pool != clusters.pool {
            return Err(Error::ForeignCluster);
        }
        clusters
            .slots
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
