//! Clusters: many hosts (routes) behind a handle checked against its pool,
//! the same shape as `wharf-tokio`'s (`add_cluster` returns a `Copy`
//! [`ClusterHandle`]; `lease_cluster(handle)`, `add_host`, `remove_host`,
//! `set_host_health`, `set_cluster_predictive_ratio`, `remove_cluster` take
//! it). With no heap, the cluster lives in a [`ClusterSlot`] the
//! application provides (a `static`, or a local that outlives the handle's
//! use), as it provides the pool's [`State`](crate::State).

use core::cell::{Cell, RefCell};
use core::future::Future;

use wharf_core::Balancer;

use crate::clock::now;
use crate::error::Error;
use crate::lease::Lease;
use crate::options::LeaseOptions;
use crate::pool::Pool;
use crate::request::Request;
use crate::route::Route;

/// The core's cluster of up to `HOSTS` hosts.
type CoreCluster<const HOSTS: usize, const H: usize> = wharf_core::Cluster<Route<H>, HOSTS>;

/// Room for one cluster of up to `HOSTS` hosts, given to
/// [`Pool::add_cluster`]. `const`-constructible, so it can be a `static`
/// (through `StaticCell`) or a local; a removed cluster's slot can take a
/// new one (older handles then fail with [`Error::UnknownCluster`]).
///
/// `H` is the room for a runtime host name in each host's [`Route`], as in
/// the pool's [`State`](crate::State) (default 0).
pub struct ClusterSlot<const HOSTS: usize, const H: usize = 0> {
    /// The pool that holds the cluster (its identity) and the cluster.
    entry: RefCell<Option<(usize, CoreCluster<HOSTS, H>)>>,
    gen: Cell<u32>,
}

impl<const HOSTS: usize, const H: usize> ClusterSlot<HOSTS, H> {
    /// An empty slot.
    pub const fn new() -> Self {
        ClusterSlot {
            entry: RefCell::new(None),
            gen: Cell::new(0),
        }
    }
}

impl<const HOSTS: usize, const H: usize> Default for ClusterSlot<HOSTS, H> {
    fn default() -> Self {
        Self::new()
    }
}

/// A cluster of a [`Pool`], returned by [`Pool::add_cluster`]: a small
/// `Copy` handle (the slot, the issuing pool's identity and the slot's
/// generation), checked by every call that takes it. Used with another
/// pool it fails with [`Error::ForeignCluster`]; once the cluster is
/// removed ([`Pool::remove_cluster`]), with [`Error::UnknownCluster`], even
/// when its slot holds another cluster.
pub struct ClusterHandle<'c, const HOSTS: usize, const H: usize = 0> {
    slot: &'c ClusterSlot<HOSTS, H>,
    pool: usize,
    gen: u32,
}

impl<const HOSTS: usize, const H: usize> Clone for ClusterHandle<'_, HOSTS, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<const HOSTS: usize, const H: usize> Copy for ClusterHandle<'_, HOSTS, H> {}

impl<const HOSTS: usize, const H: usize> core::fmt::Debug for ClusterHandle<'_, HOSTS, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("gen", &self.gen)
            .finish_non_exhaustive()
    }
}

impl<const HOSTS: usize, const H: usize> PartialEq for ClusterHandle<'_, HOSTS, H> {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::eq(self.slot, other.slot) && self.pool == other.pool && self.gen == other.gen
    }
}

impl<const HOSTS: usize, const H: usize> Eq for ClusterHandle<'_, HOSTS, H> {}

impl<'d, const H: usize> Pool<'d, H> {
    /// This pool's identity (cluster handles carry it).
    fn id(&self) -> usize {
        self.shared() as *const _ as usize
    }

    /// Runs `f` on the cluster `c` names, if it is this pool's and still
    /// there.
    fn with<const HOSTS: usize, R>(
        &self,
        c: ClusterHandle<'_, HOSTS, H>,
        f: impl FnOnce(&mut CoreCluster<HOSTS, H>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if c.pool != self.id() {
            return Err(Error::ForeignCluster);
        }
        if c.slot.gen.get() != c.gen {
            return Err(Error::UnknownCluster);
        }
        let mut entry = c.slot.entry.borrow_mut();
        match entry.as_mut() {
            Some((pool, cluster)) if *pool == c.pool => f(cluster),
            _ => Err(Error::UnknownCluster),
        }
    }

    /// Adds a cluster in `slot`: `hosts` (each a [`Route`] of this pool,
    /// subject to its limits like any route) picked by `balancer`, with
    /// Envoy's predictive preconnect at `predictive_ratio` (0.0 or 1.0: off;
    /// otherwise up to 3.0). Nothing is added if the slot holds a cluster
    /// ([`Error::ClusterSlotInUse`]), a host is listed twice
    /// ([`Error::Cluster`]`(`[`ClusterError::Duplicate`](crate::ClusterError::Duplicate)`)`),
    /// there are more than `HOSTS` ([`ClusterError::Full`](crate::ClusterError::Full)),
    /// or the ratio is refused ([`ClusterError::Config`](crate::ClusterError::Config)).
    pub fn add_cluster<'c, const HOSTS: usize>(
        &self,
        slot: &'c ClusterSlot<HOSTS, H>,
        balancer: Balancer,
        hosts: impl IntoIterator<Item = Route<H>>,
        predictive_ratio: f32,
    ) -> Result<ClusterHandle<'c, HOSTS, H>, Error> {
        let mut entry = slot
            .entry
            .try_borrow_mut()
            .map_err(|_| Error::ClusterSlotInUse)?;
        if entry.is_some() {
            return Err(Error::ClusterSlotInUse);
        }
        let mut cluster = CoreCluster::<HOSTS, H>::new(balancer);
        cluster.set_predictive_ratio(predictive_ratio)?;
        for host in hosts {
            cluster.add_host(host)?;
        }
        *entry = Some((self.id(), cluster));
        Ok(ClusterHandle {
            slot,
            pool: self.id(),
            gen: slot.gen.get(),
        })
    }

    /// Removes a cluster: each host is drained for deletion as
    /// [`Pool::remove_host`] does, the slot is freed, and the handle (and
    /// its copies) fail with [`Error::UnknownCluster`] from now on.
    pub fn remove_cluster<const HOSTS: usize>(
        &self,
        c: ClusterHandle<'_, HOSTS, H>,
    ) -> Result<(), Error> {
        let shared = self.shared();
        self.with(c, |cluster| {
            let now = now();
            let mut inner = shared.inner.borrow_mut();
            while let Some(host) = cluster.host(0).cloned() {
                inner.input(|core| cluster.remove_host(core, &host, now))?;
            }
            Ok(())
        })?;
        *c.slot.entry.borrow_mut() = None;
        c.slot.gen.set(c.gen.wrapping_add(1));
        Ok(())
    }

    /// Adds a host to a cluster (healthy); its route is created on first use.
    /// [`Error::Cluster`] with `Duplicate` if it is there, `Full` beyond
    /// `HOSTS`.
    pub fn add_host<const HOSTS: usize>(
        &self,
        c: ClusterHandle<'_, HOSTS, H>,
        host: Route<H>,
    ) -> Result<(), Error> {
        self.with(c, |cluster| Ok(cluster.add_host(host)?))
    }

    /// Removes `host` from the cluster; its route drains for deletion
    /// (`DrainAndDelete`): idle connections close (FIN), leased ones close
    /// when they come back, new route leases on it fail with
    /// [`Error::Draining`], and the route is freed once empty. Later cluster
    /// leases go to the other hosts.
    ///
    /// [`Error::Cluster`]`(`[`ClusterError::UnknownHost`](crate::ClusterError::UnknownHost)`)` if it is not in
    /// the cluster.
    pub fn remove_host<const HOSTS: usize>(
        &self,
        c: ClusterHandle<'_, HOSTS, H>,
        host: &Route<H>,
    ) -> Result<(), Error> {
        let shared = self.shared();
        self.with(c, |cluster| {
            let now = now();
            let mut inner = shared.inner.borrow_mut();
            Ok(inner.input(|core| cluster.remove_host(core, host, now))?)
        })
    }

    /// Marks a cluster host healthy or not. The balancer skips unhealthy
    /// hosts while any host is healthy (all hosts are eligible when none is);
    /// an unhealthy host's route connects only for demand (no preconnect, no
    /// warm-up), and with `Config::close_on_unhealthy` its idle connections
    /// close and its busy ones drain. The mark is also set on the route in
    /// the pool (the core's `set_route_health`), so route leases see it too.
    ///
    /// [`Error::Cluster`]`(`[`ClusterError::UnknownHost`](crate::ClusterError::UnknownHost)`)` if it is not in
    /// the cluster; [`Error::RouteTableFull`] if the route had to be created
    /// to hold the mark and no route slot is free.
    pub fn set_host_health<const HOSTS: usize>(
        &self,
        c: ClusterHandle<'_, HOSTS, H>,
        host: &Route<H>,
        healthy: bool,
    ) -> Result<(), Error> {
        let shared = self.shared();
        self.with(c, |cluster| {
            let now = now();
            let mut inner = shared.inner.borrow_mut();
            Ok(inner.input(|core| cluster.set_health(core, host, healthy, now))?)
        })
    }

    /// Sets a cluster's predictive preconnect ratio (0.0 turns it off,
    /// otherwise 1.0..=3.0).
    pub fn set_cluster_predictive_ratio<const HOSTS: usize>(
        &self,
        c: ClusterHandle<'_, HOSTS, H>,
        ratio: f32,
    ) -> Result<(), Error> {
        self.with(c, |cluster| Ok(cluster.set_predictive_ratio(ratio)?))
    }

    /// The cluster's `i`-th host (in the order they were added), `None`
    /// past the last.
    pub fn cluster_host<const HOSTS: usize>(
        &self,
        c: ClusterHandle<'_, HOSTS, H>,
        i: usize,
    ) -> Result<Option<Route<H>>, Error> {
        self.with(c, |cluster| Ok(cluster.host(i).cloned()))
    }

    /// The number of hosts in the cluster.
    pub fn cluster_len<const HOSTS: usize>(
        &self,
        c: ClusterHandle<'_, HOSTS, H>,
    ) -> Result<usize, Error> {
        self.with(c, |cluster| Ok(cluster.len()))
    }

    /// Connections the cluster's predictive preconnect started.
    pub fn cluster_preconnects<const HOSTS: usize>(
        &self,
        c: ClusterHandle<'_, HOSTS, H>,
    ) -> Result<u64, Error> {
        self.with(c, |cluster| Ok(cluster.preconnects()))
    }

    /// Leases a connection through a cluster: predictive preconnect, a host
    /// pick by the cluster's balancer, then a lease on that host's route (see
    /// [`Pool::lease_cluster_with`]).
    pub fn lease_cluster<const HOSTS: usize>(
        &self,
        c: ClusterHandle<'_, HOSTS, H>,
    ) -> impl Future<Output = Result<Lease<'d, H>, Error>> + 'd {
        self.lease_cluster_with(c, LeaseOptions::default())
    }

    /// Leases a connection through a cluster, with a tag and/or a timeout
    /// (`Some(ZERO)`: do not wait, see [`LeaseOptions::timeout`]).
    ///
    /// The cluster's part runs at once, when this is called (not when the
    /// future is first polled), under the pool's lock: predictive preconnect
    /// (connects for the hosts the next picks will go to), the host pick, and
    /// the lease on the picked host's route. The returned future only waits
    /// for the answer, exactly as a route lease does; it is cancel-safe:
    /// dropping it, polled or not, withdraws the request (or gives back a
    /// connection already granted).
    ///
    /// Errors: [`Error::ForeignCluster`], [`Error::UnknownCluster`],
    /// [`Error::Cluster`]`(`[`ClusterError::NoHosts`](crate::ClusterError::NoHosts)`)` for an empty
    /// cluster, [`Error::Overflow`] when no answer ticket is free (the cluster
    /// is then left untouched), else what a route lease on the picked host
    /// returns. A granted connection found closed by the peer is closed and
    /// the request is retried on the same host.
    pub fn lease_cluster_with<const HOSTS: usize>(
        &self,
        c: ClusterHandle<'_, HOSTS, H>,
        opts: LeaseOptions,
    ) -> impl Future<Output = Result<Lease<'d, H>, Error>> + 'd {
        let deadline = opts.timeout.map(|d| now() + d);
        let mut host = None;
        let shared = self.shared();
        let started = self.with(c, |cluster| {
            Request::start(shared, |pool, now| {
                let picked = cluster.lease(pool, opts.tag, now, deadline)?;
                host = cluster.host(picked.host).cloned();
                Ok(picked.outcome)
            })
        });
        let pool = *self;
        async move {
            if let Some(lease) = started?.finish().await? {
                return Ok(lease);
            }
            // Dead at hand-out: ask again on the same host (the cluster's
            // request was the first try).
            let Some(route) = host else {
                return Err(Error::PeerClosed);
            };
            pool.lease_retrying(&route, opts.tag, deadline, 1).await
        }
    }
}
