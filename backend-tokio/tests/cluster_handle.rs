//! A cluster handle is checked against the pool that issued it (issue 18):
//! every cluster call with another pool's handle is `Error::ForeignCluster`
//! and changes nothing on either pool; clones of the issuing pool accept it;
//! a removed cluster's handle is `Error::UnknownCluster`, even once its slot
//! holds a new cluster.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use wharf_tokio::{Balancer, Error, Pool, TcpConnector};

#[tokio::test]
async fn foreign_and_removed_handles_are_typed_errors() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host: SocketAddr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = server.accept().await {
            held.push(s);
        }
    });
    let a: Pool<SocketAddr, TcpConnector> = Pool::builder(TcpConnector::new()).build().unwrap();
    let b: Pool<SocketAddr, TcpConnector> = Pool::builder(TcpConnector::new()).build().unwrap();
    let api = a
        .add_cluster("api", Balancer::RoundRobin, [host], 0.0)
        .unwrap();
    let foreign = |r: Result<(), Error>| assert!(matches!(r, Err(Error::ForeignCluster)), "{r:?}");
    foreign(b.add_host(api, host));
    foreign(b.remove_host(api, &host));
    foreign(b.set_host_health(api, &host, false));
    foreign(b.set_cluster_predictive_ratio(api, 2.0));
    foreign(b.remove_cluster(api));
    assert!(matches!(b.cluster_hosts(api), Err(Error::ForeignCluster)));
    assert!(matches!(
        b.cluster_preconnects(api),
        Err(Error::ForeignCluster)
    ));
    assert!(matches!(
        b.lease_cluster(api).await,
        Err(Error::ForeignCluster)
    ));
    assert_eq!(b.counters().connects, 0);
    assert_eq!(b.stats().routes, 0);
    // A clone of the issuing pool is the same pool.
    let a2 = a.clone();
    let l = a2.lease_cluster(api).await.unwrap();
    assert_eq!(wharf_tokio::Lease::route(&l), Some(host));
    drop(l);
    assert_eq!(a.cluster_hosts(api).unwrap(), vec![host]);
    // Removed: unknown, also once the slot holds another cluster.
    a.remove_cluster(api).unwrap();
    let again = a
        .add_cluster("again", Balancer::RoundRobin, [host], 0.0)
        .unwrap();
    assert_ne!(again, api);
    assert!(matches!(
        a.lease_cluster(api).await,
        Err(Error::UnknownCluster)
    ));
    assert!(matches!(a.cluster_hosts(api), Err(Error::UnknownCluster)));
    assert!(a.lease_cluster(again).await.is_ok());
    // The other pool's handle for the new cluster is still foreign to `b`.
    assert!(matches!(b.cluster_hosts(again), Err(Error::ForeignCluster)));
}
