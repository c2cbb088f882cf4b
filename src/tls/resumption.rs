//! Process-wide TLS resumption state: one ticketer and one session-ID cache for all workers.
//!
//! The session-ID cache (TLS 1.2 clients without tickets) is sharded by key so workers rarely
//! touch the same lock; tickets (TLS 1.3 and TLS 1.2) are stateless and need no cache at all.
//! The ticketer rotates its key every 6 hours (rustls' default), readers take a shared read lock.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

/// Number of independent session-cache shards.
const SHARDS: usize = 16;

/// Resumption state shared by every listener and worker, kept across reloads.
#[derive(Clone)]
pub struct Resumption {
    /// Crypto provider shared by all server configs.
    pub provider: Arc<CryptoProvider>,
    /// Ticket encrypter for TLS 1.3 and TLS 1.2 tickets.
    pub ticketer: Arc<dyn ProducesTickets>,
    /// TLS 1.2 session-ID cache.
    pub session_store: Arc<ShardedSessionCache>,
    /// TLS 1.3 tickets sent after each full handshake.
    pub tls13_tickets: usize,
}

impl fmt::Debug for Resumption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resumption")
            .field("session_store", &self.session_store)
            .field("tls13_tickets", &self.tls13_tickets)
            .finish_non_exhaustive()
    }
}

impl Resumption {
    /// Fresh resumption state holding up to `cache_entries` TLS 1.2 sessions.
    pub fn new(cache_entries: usize) -> Result<Self, rustls::Error> {
        Ok(Self {
            provider: super::provider(),
            ticketer: rustls::crypto::aws_lc_rs::Ticketer::new()?,
            session_store: Arc::new(ShardedSessionCache::new(cache_entries)),
            tls13_tickets: 2,
        })
    }
}

/// A TLS 1.2 session-ID cache split into shards chosen by a hash of the session ID.
pub struct ShardedSessionCache {
    shards: Vec<Arc<ServerSessionMemoryCache>>,
}

impl fmt::Debug for ShardedSessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedSessionCache")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl ShardedSessionCache {
    /// A cache holding about `entries` sessions in total.
    pub fn new(entries: usize) -> Self {
        let per_shard = (entries / SHARDS).max(1);
        Self {
            shards: (0..SHARDS)
                .map(|_| ServerSessionMemoryCache::new(per_shard))
                .collect(),
        }
    }

    fn shard(&self, key: &[u8]) -> &ServerSessionMemoryCache {
        // Session IDs are random bytes: the first one is already a uniform hash.
        let i = key.first().map_or(0, |b| usize::from(*b)) % self.shards.len();
        &self.shards[i]
    }
}

impl StoresServerSessions for ShardedSessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.shard(&key).put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.shard(key).get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.shard(key).take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_cache_round_trips() {
        let c = ShardedSessionCache::new(64);
        for i in 0u8..40 {
            assert!(c.put(vec![i, 1, 2], vec![i]));
        }
        for i in 0u8..40 {
            assert_eq!(c.get(&[i, 1, 2]), Some(vec![i]));
        }
        assert_eq!(c.take(&[3, 1, 2]), Some(vec![3]));
        assert_eq!(c.get(&[3, 1, 2]), None);
    }
}
