//! Clusters: many hosts (routes) behind one handle, with a balancer and
//! predictive preconnect, kept in the pool's shared state (the table is in
//! `cluster_table.rs`).

use std::sync::Arc;

use wharf_core::Balancer;

use crate::cluster_table::{cluster_error, ClusterEntry, ClusterHandle, ClusterSlot, MAX_HOSTS};
use crate::connector::{Connector, RouteKey};
use crate::error::Error;
use crate::lease_future::{LeaseFuture, LeaseOptions, Target};
use crate::pool::Pool;
use crate::runtime::{Inner, Shared};

/// The most hosts one cluster holds.
pub const MAX_CLUSTER_HOSTS: usize = MAX_HOSTS;

impl<K: RouteKey, C: Connector<K>> Pool<K, C> {
    /// Adds a cluster: up to [`MAX_CLUSTER_HOSTS`] hosts (each a route of this
    /// pool, subject to its limits like any route) behind one handle, picked
    /// by `balancer`, with Envoy's predictive preconnect at
    /// `predictive_ratio` (0.0 or 1.0: off; otherwise up to 3.0). `name` only
    /// names the cluster in errors.
    ///
    /// Nothing is added if a host is listed twice ([`Error::Cluster`] with
    /// [`ClusterError::Duplicate`](crate::ClusterError::Duplicate)), there are too many hosts
    /// ([`ClusterError::Full`](crate::ClusterError::Full)) or the ratio is refused
    /// ([`Error::Config`]`(`[`ConfigError::Cluster`](crate::ConfigError::Cluster)`)`).
    pub fn add_cluster(
        &self,
        name: impl Into<String>,
        balancer: Balancer,
        hosts: impl IntoIterator<Item = K>,
        predictive_ratio: f32,
    ) -> Result<ClusterHandle, Error<C::Error>> {
        let shared = self.shared();
        let name = name.into();
        let mut cluster = Box::new(wharf_core::Cluster::<K, MAX_HOSTS>::new(balancer));
        if let Err(e) = cluster.set_predictive_ratio(predictive_ratio) {
            return Err(cluster_error(&*shared.connector, &name, None, e));
        }
        for host in hosts {
            if let Err(e) = cluster.add_host(host.clone()) {
                return Err(cluster_error(&*shared.connector, &name, Some(&host), e));
            }
        }
        let entry = ClusterEntry { name, cluster };
        let mut g = shared.lock();
        let pool = g.clusters.pool;
        let handle = match g.clusters.iter().position(|s| s.entry.is_none()) {
            Some(i) => {
                let slot = &mut g.clusters[i];
                slot.gen = slot.gen.wrapping_add(1);
                slot.entry = Some(entry);
                ClusterHandle {
                    pool,
                    index: i as u32,
                    gen: slot.gen,
                }
            }
            None => {
                g.clusters.push(ClusterSlot {
                    gen: 0,
                    entry: Some(entry),
                });
                ClusterHandle {
                    pool,
                    index: (g.clusters.len() - 1) as u32,
                    gen: 0,
                }
            }
        };
        Ok(handle)
    }

    /// Removes a cluster and drains each of its hosts for deletion, as
    /// [`Pool::remove_host`] does (a host that is also leased as a plain
    /// route, or belongs to another cluster, is drained too).
    pub fn remove_cluster(&self, cluster: ClusterHandle) -> Result<(), Error<C::Error>> {
        self.with_cluster(|inner, shared, now| {
            cluster.entry(&mut inner.clusters)?;
            let Some(ClusterEntry {
                name,
                cluster: mut c,
            }) = inner.clusters[cluster.index as usize].entry.take()
            else {
                return Err(Error::UnknownCluster);
            };
            while let Some(host) = c.host(0).cloned() {
                let r = inner.driver.input(|core| c.remove_host(core, &host, now));
                if let Err(e) = r {
                    return Err(cluster_error(&*shared.connector, &name, Some(&host), e));
                }
            }
            Ok(())
        })
    }

    /// Adds a host to a cluster (healthy). Its route is created on first use.
    ///
    /// [`Error::Cluster`] with [`ClusterError::Duplicate`](crate::ClusterError::Duplicate) if it is already
    /// there, [`ClusterError::Full`](crate::ClusterError::Full) beyond [`MAX_CLUSTER_HOSTS`].
    pub fn add_host(&self, cluster: ClusterHandle, host: K) -> Result<(), Error<C::Error>> {
        self.with_cluster(|inner, shared, _| {
            let entry = cluster.entry(&mut inner.clusters)?;
            let r = entry.cluster.add_host(host.clone());
            r.map_err(|e| cluster_error(&*shared.connector, &entry.name, Some(&host), e))
        })
    }

    /// Removes a host from a cluster; its route drains for deletion: idle
    /// connections close now, leased ones when they come back (after serving
    /// the leases already waiting on the host, if any), route leases on it
    /// fail with [`Error::Draining`] (as do waiting ones once the host has no
    /// connection left), and the route is freed once empty. Later cluster
    /// leases go to the other hosts.
    ///
    /// [`Error::Cluster`] with [`ClusterError::UnknownHost`](crate::ClusterError::UnknownHost) if it is not in
    /// the cluster.
    pub fn remove_host(&self, cluster: ClusterHandle, host: &K) -> Result<(), Error<C::Error>> {
        self.with_cluster(|inner, shared, now| {
            let Inner { driver, clusters } = inner;
            let entry = cluster.entry(clusters)?;
            let r = driver.input(|core| entry.cluster.remove_host(core, host, now));
            r.map_err(|e| cluster_error(&*shared.connector, &entry.name, Some(host), e))
        })
    }

    /// Marks a cluster host healthy or not. The balancer skips unhealthy
    /// hosts while any host of the cluster is healthy (all are eligible when
    /// none is). The mark is set on the route in the pool too (the core's
    /// `set_route_health`): an unhealthy route connects only for demand (no
    /// preconnect, no warm-up), for route leases as well.
    ///
    /// [`Error::Cluster`] with [`ClusterError::UnknownHost`](crate::ClusterError::UnknownHost) if it is not in
    /// the cluster; [`Error::RouteTableFull`] if the route had to be created
    /// to hold the mark and no route slot is free.
    pub fn set_host_health(
        &self,
        cluster: ClusterHandle,
        host: &K,
        healthy: bool,
    ) -> Result<(), Error<C::Error>> {
        self.with_cluster(|inner, shared, now| {
            let Inner { driver, clusters } = inner;
            let entry = cluster.entry(clusters)?;
            let r = driver.input(|core| entry.cluster.set_health(core, host, healthy, now));
            r.map_err(|e| cluster_error(&*shared.connector, &entry.name, Some(host), e))
        })
    }

    /// Sets a cluster's predictive preconnect ratio (0.0 turns it off,
    /// otherwise 1.0..=3.0).
    pub fn set_cluster_predictive_ratio(
        &self,
        cluster: ClusterHandle,
        ratio: f32,
    ) -> Result<(), Error<C::Error>> {
        self.with_cluster(|inner, shared, _| {
            let entry = cluster.entry(&mut inner.clusters)?;
            let r = entry.cluster.set_predictive_ratio(ratio);
            r.map_err(|e| cluster_error(&*shared.connector, &entry.name, None, e))
        })
    }

    /// The hosts of a cluster, in order.
    pub fn cluster_hosts(&self, cluster: ClusterHandle) -> Result<Vec<K>, Error<C::Error>> {
        let mut g = self.shared().lock();
        let entry = cluster.entry(&mut g.clusters)?;
        Ok((0..entry.cluster.len())
            .filter_map(|i| entry.cluster.host(i).cloned())
            .collect())
    }

    /// Connections a cluster's predictive preconnect started.
    pub fn cluster_preconnects(&self, cluster: ClusterHandle) -> Result<u64, Error<C::Error>> {
        let mut g = self.shared().lock();
        Ok(cluster.entry(&mut g.clusters)?.cluster.preconnects())
    }

    /// Leases a connection through a cluster (see
    /// [`Pool::lease_cluster_with`]).
    pub fn lease_cluster(&self, cluster: ClusterHandle) -> LeaseFuture<'_, K, C> {
        self.lease_cluster_with(cluster, LeaseOptions::new())
    }

    /// Leases a connection through a cluster, with a tag and/or a lease
    /// timeout of its own, and returns the same [`Lease`](crate::Lease) as a
    /// route lease ([`Lease::route`](crate::Lease::route) tells the host).
    ///
    /// When the future is first polled, under the pool's lock: predictive
    /// preconnect (connects for the hosts the next picks go to, within every
    /// limit), the balancer's pick among the healthy hosts, and the core's
    /// lease on that host's route. From there it is a route lease: granted at
    /// once when the host has an idle connection (no allocation), or queued
    /// FIFO on the host's route until a connection is free, its deadline
    /// passes or its connect fails. Cancel-safe like [`Pool::lease`].
    ///
    /// Errors: [`Error::UnknownCluster`], [`Error::Cluster`] with
    /// [`ClusterError::NoHosts`](crate::ClusterError::NoHosts) for a cluster with no host, else what a
    /// route lease on the picked host returns. A lease refused at once
    /// ([`Error::Overflow`], [`Error::Draining`], ...) names the cluster
    /// (`cluster <name>`) as its route, the core not saying which host it
    /// picked; a failure after queueing names the host.
    pub fn lease_cluster_with(
        &self,
        cluster: ClusterHandle,
        options: LeaseOptions,
    ) -> LeaseFuture<'_, K, C> {
        LeaseFuture::new(self.shared(), Target::Cluster(cluster), options)
    }

    /// Runs a cluster operation under the lock (its core calls go through
    /// the driver, which drains the core), then runs the queued work.
    fn with_cluster<R>(
        &self,
        f: impl FnOnce(
            &mut Inner<K, C>,
            &Shared<K, C>,
            wharf_core::Instant,
        ) -> Result<R, Error<C::Error>>,
    ) -> Result<R, Error<C::Error>> {
        let shared: &Arc<Shared<K, C>> = self.shared();
        let now = shared.now();
        let mut g = shared.lock();
        let r = f(&mut g, shared, now);
        shared.finish(g);
        r
    }
}
