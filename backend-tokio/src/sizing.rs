//! What a pool allocates at build: the bytes of the core's slots, the
//! driver's tables and this backend's per-slot state, computed from the
//! types' sizes (checked against [`Builder::max_storage`](crate::Builder::max_storage)
//! before anything is allocated), and whether the driver's tables can be
//! allocated (this backend's own tables allocate fallibly: `runtime::try_vec`).

use std::mem::size_of;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::Waker;

use tokio::task::AbortHandle;
use wharf_core::{ConnId, Storage};
use wharf_driver::{ConnEntry, Ticket};

use crate::connector::{Connector, RouteKey};
use crate::runtime::{Host, Op};

/// Slot counts of one pool.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slots {
    pub conns: usize,
    pub routes: usize,
    pub waiters: usize,
    pub leases: usize,
}

/// Bytes one slot of each kind costs in the core, from the const-generic
/// storage's size (one more slot of a kind, less the base).
fn core_slot_bytes<K>() -> [usize; 4] {
    let base = size_of::<Storage<K, 1, 1, 1, 1>>();
    [
        size_of::<Storage<K, 2, 1, 1, 1>>() - base,
        size_of::<Storage<K, 1, 2, 1, 1>>() - base,
        size_of::<Storage<K, 1, 1, 2, 1>>() - base,
        size_of::<Storage<K, 1, 1, 1, 2>>() - base,
    ]
}

/// The driver's tables: a connection entry per connection slot, an answer
/// ticket per waiter and connection slot, a `u32` per waiter slot.
pub(crate) fn driver_bytes<K: RouteKey, C: Connector<K>>(s: Slots) -> usize {
    let entry = size_of::<ConnEntry<C::Conn>>();
    let ticket = size_of::<Ticket<Arc<C::Error>, Host<K>>>();
    entry
        .saturating_mul(s.conns)
        .saturating_add(ticket.saturating_mul(s.waiters.saturating_add(s.conns)))
        .saturating_add(size_of::<u32>().saturating_mul(s.waiters))
}

/// This backend's state per connection slot: the watch mark, the waker and
/// its `Arc`, the connect task's abort handle, two queued operations.
fn backend_conn_bytes<K: RouteKey, C: Connector<K>>() -> usize {
    size_of::<AtomicBool>()
        + size_of::<Waker>()
        + 4 * size_of::<usize>() // the `Arc<SlotWaker>`: counts, slot, watch
        + size_of::<Option<(ConnId, AbortHandle)>>()
        + 2 * size_of::<Op<K, C::Conn>>()
}

/// Every byte the pool allocates at build for `s` (saturating).
pub(crate) fn build_bytes<K: RouteKey, C: Connector<K>>(s: Slots) -> usize {
    let [conn, route, waiter, lease] = core_slot_bytes::<K>();
    conn.saturating_add(backend_conn_bytes::<K, C>())
        .saturating_mul(s.conns)
        .saturating_add(route.saturating_mul(s.routes))
        .saturating_add(waiter.saturating_mul(s.waiters))
        .saturating_add(lease.saturating_mul(s.leases))
        .saturating_add(driver_bytes::<K, C>(s))
}

/// Whether `bytes` can be allocated now (the driver's tables are allocated
/// by the driver, which cannot report a failure: this asks first).
pub(crate) fn can_allocate(bytes: usize) -> bool {
    let mut probe: Vec<u8> = Vec::new();
    probe.try_reserve_exact(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TcpConnector;

    #[test]
    fn bytes_grow_with_each_kind_of_slot() {
        type K = (String, u16);
        let s = Slots {
            conns: 10,
            routes: 10,
            waiters: 10,
            leases: 10,
        };
        let base = build_bytes::<K, TcpConnector>(s);
        for more in [
            Slots { conns: 11, ..s },
            Slots { routes: 11, ..s },
            Slots { waiters: 11, ..s },
            Slots { leases: 11, ..s },
        ] {
            assert!(build_bytes::<K, TcpConnector>(more) > base, "{more:?}");
        }
        // A connection slot costs at least its core slot and driver entry.
        let per_conn = build_bytes::<K, TcpConnector>(Slots { conns: 11, ..s }) - base;
        assert!(per_conn >= size_of::<ConnEntry<tokio::net::TcpStream>>() + 64);
        let huge = Slots {
            conns: usize::MAX / 2,
            ..s
        };
        assert_eq!(build_bytes::<K, TcpConnector>(huge), usize::MAX);
    }
}
