//! `max_connections`: one process-wide atomic count of open client connections.
//!
//! Taken with a compare-and-swap at accept (so the limit is exact, never check-then-add) and
//! given back by [`ConnectionPermit`]'s `Drop`. It is one cache line written by every worker
//! twice per connection (not per request): the price of an exact process-wide limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The process-wide count of open client connections.
#[derive(Debug, Default)]
pub struct ConnectionLimit {
    open: AtomicUsize,
}

impl ConnectionLimit {
    /// Takes one slot when fewer than `limit` are open (`None`: no limit, the connection
    /// is still counted). `None` back means refused.
    pub fn try_acquire(self: &Arc<Self>, limit: Option<usize>) -> Option<ConnectionPermit> {
        match limit {
            None => {
                self.open.fetch_add(1, Ordering::AcqRel);
            }
            Some(max) => {
                self.open
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .ok()?;
            }
        }
        Some(ConnectionPermit {
            limit: Arc::clone(self),
        })
    }

    /// Client connections open now (holding a permit).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One open client connection; gives its slot back when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    limit: Arc<ConnectionLimit>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limit.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_exact_and_permits_give_back() {
        let l = Arc::new(ConnectionLimit::default());
        let held: Vec<_> = (0..3).map(|_| l.try_acquire(Some(3)).unwrap()).collect();
        assert!(l.try_acquire(Some(3)).is_none());
        assert_eq!(l.open(), 3);
        drop(held);
        assert_eq!(l.open(), 0);
        let unlimited: Vec<_> = (0..10).map(|_| l.try_acquire(None).unwrap()).collect();
        assert_eq!(l.open(), 10);
        assert!(l.try_acquire(Some(10)).is_none());
        drop(unlimited);
    }

    #[test]
    fn threads_never_exceed_the_limit() {
        let l = Arc::new(ConnectionLimit::default());
        let got: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let l = Arc::clone(&l);
                    s.spawn(move || {
                        (0..100)
                            .filter_map(|_| l.try_acquire(Some(50)))
                            .map(std::mem::forget)
                            .count()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(got, 50);
    }
}
