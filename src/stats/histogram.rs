//! A fixed-bucket latency histogram of relaxed atomics (Prometheus-style cumulative on read).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds; one more bucket catches everything above.
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// Latency histogram written by one worker.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Adds this histogram's current values into `into`.
    pub fn add_to(&self, into: &mut HistogramSnapshot) {
        for (dst, src) in into.buckets.iter_mut().zip(&self.buckets) {
            *dst += src.load(Ordering::Relaxed);
        }
        into.sum_us += self.sum_us.load(Ordering::Relaxed);
    }
}

/// A plain copy of a histogram (or a sum of several).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Per-bucket (non-cumulative) counts; the last bucket is +Inf.
    pub buckets: [u64; BUCKETS],
    /// Sum of all observations in microseconds.
    pub sum_us: u64,
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Upper bound (µs) of the bucket holding quantile `q` (0..=1); `None` when empty.
    pub fn quantile_upper_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BOUNDS_US.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }
}

/// Buckets of a histogram (`LATENCY_BOUNDS_US` order, `+Inf` last).
pub const HISTOGRAM_BUCKETS: usize = BUCKETS;

/// Quantile `q` (0..=1) of non-cumulative `buckets`, in µs, interpolated linearly inside the
/// bucket that holds it (as Prometheus' `histogram_quantile` does); the `+Inf` bucket
/// answers its lower bound. `None` when empty.
pub fn interpolated_quantile_us(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut seen = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let before = seen;
        seen += n;
        if seen as f64 >= rank {
            let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_US[i - 1] } as f64;
            let Some(&upper) = LATENCY_BOUNDS_US.get(i) else {
                return Some(lower);
            };
            let within = ((rank - before as f64) / n as f64).clamp(0.0, 1.0);
            return Some(lower + (upper as f64 - lower) * within);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let h = Histogram::default();
        for _ in 0..99 {
            h.record(Duration::from_micros(80));
        }
        h.record(Duration::from_millis(3));
        let mut s = HistogramSnapshot::default();
        h.add_to(&mut s);
        assert_eq!(s.count(), 100);
        assert_eq!(s.quantile_upper_us(0.5), Some(100));
        assert_eq!(s.quantile_upper_us(1.0), Some(5_000));
        assert_eq!(s.sum_us, 99 * 80 + 3000);
    }

    #[test]
    fn interpolated_quantiles() {
        let mut b = [0u64; BUCKETS];
        assert_eq!(interpolated_quantile_us(&b, 0.5), None);
        b[3] = 10; // (500, 1000] µs
        assert_eq!(interpolated_quantile_us(&b, 0.5), Some(750.0));
        assert_eq!(interpolated_quantile_us(&b, 1.0), Some(1000.0));
        b[BUCKETS - 1] = 10; // above 10 s
        assert_eq!(interpolated_quantile_us(&b, 0.99), Some(10_000_000.0));
        assert_eq!(interpolated_quantile_us(&b, 0.25), Some(750.0));
    }
}
