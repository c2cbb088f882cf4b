//! `max_connections_per_ip`: open connections per client IP, exact across workers.
//!
//! Per-worker counts cannot give an exact cap (a client's connections spread over workers),
//! so the count is process-wide, in 64 shards, each a `Mutex<HashMap<IpAddr, u32>>`, picked
//! by a hash of the address. A connection touches its shard twice: once when it opens and
//! once when it closes (the [`IpPermit`]'s `Drop`), never per request, and holds the lock
//! for one map update. Two workers contend only for connections whose addresses hash to the
//! same shard at the same moment, which costs far less than the TLS handshake that follows.
//! An address with no open connection is removed, so the map holds only live clients.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Number of shards (a power of two).
const SHARDS: usize = 64;

/// Open connections per client IP, shared by every worker.
#[derive(Debug)]
pub struct PerIpLimit {
    shards: Box<[Mutex<HashMap<IpAddr, u32>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for PerIpLimit {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl PerIpLimit {
    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        let i = usize::try_from(self.hasher.hash_one(ip) % SHARDS as u64).unwrap_or(0);
        &self.shards[i]
    }

    /// Counts one more connection from `ip` when it has fewer than `limit` open. `None`
    /// back means refused.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, limit: u32) -> Option<IpPermit> {
        let mut map = self
            .shard(ip)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                map.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(IpPermit {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Connections open now from `ip` (counted by a permit).
    pub fn open(&self, ip: IpAddr) -> u32 {
        let map = self
            .shard(ip)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&ip).copied().unwrap_or(0)
    }

    fn release(&self, ip: IpAddr) {
        let mut map = self
            .shard(ip)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// One open connection of a client IP; uncounts it when dropped.
#[derive(Debug)]
pub struct IpPermit {
    limits: Arc<PerIpLimit>,
    ip: IpAddr,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_cap() {
        let l = Arc::new(PerIpLimit::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let a1 = l.try_acquire(a, 2).unwrap();
        let _a2 = l.try_acquire(a, 2).unwrap();
        assert!(l.try_acquire(a, 2).is_none());
        let _b1 = l.try_acquire(b, 2).unwrap();
        assert_eq!((l.open(a), l.open(b)), (2, 1));
        drop(a1);
        assert_eq!(l.open(a), 1);
        assert!(l.try_acquire(a, 2).is_some(), "a slot freed up");
        assert!(l.try_acquire(b, 0).is_none());
        assert_eq!(l.open(b), 1);
    }

    #[test]
    fn closed_addresses_leave_the_map() {
        let l = Arc::new(PerIpLimit::default());
        for i in 0..200u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            drop(l.try_acquire(ip, 1).unwrap());
        }
        let left: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert_eq!(left, 0);
    }
}
