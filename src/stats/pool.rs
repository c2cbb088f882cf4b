//! Per-pool request stats: how long whole requests took, and the requests levee answered
//! itself for the pool (no backend's answer reached the client), one padded slot per worker.
//!
//! Every worker serves every pool, so one histogram per pool would be a cache line written
//! by every core on every request. Instead each worker writes only its own `CachePadded`
//! slot (single writer, relaxed atomics, as in a stats shard) and `/metrics` sums the slots.
//! A slot is 256 bytes (a 17-bucket histogram of 144 bytes and 5 counters, padded), so a
//! pool costs 256 bytes a worker. The stats live beside the snapshot's pools
//! (`config::Snapshot::pool_stats`), carried over by pool name on reload like the retry
//! budget, and freed with the last snapshot that names the pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::histogram::{Histogram, HistogramSnapshot};
use crate::labels::StatusClass;

/// One worker's counts for one pool.
#[derive(Debug, Default)]
struct PoolSlot {
    duration: Histogram,
    answered_by_levee: [AtomicU64; StatusClass::COUNT],
}

/// Request stats of one pool, one slot per worker.
#[derive(Debug)]
pub struct PoolStats {
    slots: Box<[CachePadded<PoolSlot>]>,
}

/// The sum of a pool's worker slots.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PoolStatsSnapshot {
    /// Whole-request durations (request head in to the end of the response body).
    pub duration: HistogramSnapshot,
    /// Requests of the pool that levee answered itself (no backend's answer reached the
    /// client), by `StatusClass`.
    pub answered_by_levee: [u64; StatusClass::COUNT],
}

impl PoolStats {
    /// Stats for a pool served by `workers` workers (at least one slot).
    pub fn new(workers: usize) -> Self {
        Self {
            slots: (0..workers.max(1))
                .map(|_| CachePadded::new(PoolSlot::default()))
                .collect(),
        }
    }

    /// Number of worker slots.
    pub fn workers(&self) -> usize {
        self.slots.len()
    }

    /// A request of this pool completed on `worker` after `took`; `by_levee` when levee
    /// answered it itself, with `status`. Only `worker` calls this for its slot (an index out
    /// of range, which the app never passes, falls back to slot 0: still counted, merely
    /// shared).
    pub fn request(&self, worker: usize, status: u16, by_levee: bool, took: Duration) {
        let Some(slot) = self.slots.get(worker).or_else(|| self.slots.first()) else {
            return;
        };
        slot.duration.record(took);
        if by_levee {
            slot.answered_by_levee[StatusClass::of(status) as usize]
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sums the worker slots.
    pub fn snapshot(&self) -> PoolStatsSnapshot {
        let mut s = PoolStatsSnapshot::default();
        for slot in self.slots.iter() {
            slot.duration.add_to(&mut s.duration);
            for (d, a) in s.answered_by_levee.iter_mut().zip(&slot.answered_by_levee) {
                *d += a.load(Ordering::Relaxed);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_sum_and_only_levee_answers_are_counted_by_class() {
        let stats = PoolStats::new(2);
        stats.request(0, 200, false, Duration::from_millis(2));
        stats.request(1, 503, true, Duration::from_micros(50));
        stats.request(1, 429, true, Duration::from_micros(50));
        stats.request(7, 502, true, Duration::from_secs(20));
        let s = stats.snapshot();
        assert_eq!(s.duration.count(), 4, "every request has a duration");
        assert_eq!(s.answered_by_levee, [0, 0, 0, 1, 2]);
        assert_eq!(s.duration.sum_us, 2_000 + 50 + 50 + 20_000_000);
        assert_eq!(s.duration.buckets[0], 2, "<= 100 µs");
        assert_eq!(*s.duration.buckets.last().unwrap(), 1, "+Inf");
    }

    #[test]
    fn a_slot_is_four_cache_lines_at_most() {
        let slot = std::mem::size_of::<CachePadded<PoolSlot>>();
        assert!(slot <= 256, "{slot}");
        assert_eq!(PoolStats::new(0).workers(), 1);
    }
}
