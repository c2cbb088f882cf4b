//! The per-pool wait queue used when every backend is at `max_connections`.
//!
//! Like HAProxy's maxconn queue: a bounded number of requests wait (FIFO-ish, woken one at a
//! time as slots free up) for at most `queue_timeout`; beyond `queue_size` they get 503 at
//! once. Shared by all workers; touched only when a pool has limits and is saturated.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::Notify;

/// Waiting requests of one pool.
#[derive(Debug, Default)]
pub struct WaitQueue {
    waiting: AtomicU32,
    slot_freed: Notify,
}

/// A place in the queue; leaving the queue (drop) frees it.
#[derive(Debug)]
pub struct QueuePlace<'a>(&'a WaitQueue);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WaitQueue {
    /// Joins the queue if fewer than `size` requests wait; `None` when it is full.
    pub fn join(&self, size: u32) -> Option<QueuePlace<'_>> {
        self.waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < size).then_some(n + 1)
            })
            .ok()
            .map(|_| QueuePlace(self))
    }

    /// Requests waiting now.
    pub fn len(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A request of this pool finished: wake one waiter, if any.
    pub fn slot_freed(&self) {
        if !self.is_empty() {
            self.slot_freed.notify_one();
        }
    }

    /// A future that resolves when a slot may have been freed. Create (and `enable`) it
    /// before re-checking capacity so a wake-up in between is not lost.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.slot_freed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded() {
        let q = WaitQueue::default();
        let a = q.join(2);
        let b = q.join(2);
        assert!(a.is_some() && b.is_some());
        assert!(q.join(2).is_none());
        drop(a);
        assert!(q.join(2).is_some());
    }
}
