//! The weights of the fair handshake scheduler, one per country, and the "near capacity"
//! signal of the automatic mode.
//!
//! The control thread writes the weights once a second from the stats windows: a country's
//! weight is its baseline new-connection rate (offered connections, see `stats::window`),
//! raised to a floor of 1% of the total baseline (at least 0.1/s) so a country new to the
//! proxy is not starved. Countries without a baseline (and every country before the first
//! baselines exist) get that floor, so a fresh process shares handshakes equally by country.
//! The workers only read them, and only while their handshake queue is backed up.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::geo::country::COUNTRY_COUNT;
use crate::stats::CountryIdx;

/// Smallest weight (new connections a second).
pub const MIN_WEIGHT: f64 = 0.1;
/// A country's weight is at least this share of the total baseline.
pub const FLOOR_SHARE: f64 = 0.01;

/// Per-country weights and the saturation signal, shared by the workers and the control
/// thread.
#[derive(Debug)]
pub struct FairShares {
    weights: Box<[AtomicU32]>,
    floor: AtomicU32,
    epoch: Instant,
    /// Milliseconds since `epoch` when a handshake last had to wait (0: never).
    saturated_at_ms: AtomicU64,
}

impl Default for FairShares {
    fn default() -> Self {
        Self {
            weights: (0..COUNTRY_COUNT).map(|_| AtomicU32::new(0)).collect(),
            floor: AtomicU32::new((MIN_WEIGHT as f32).to_bits()),
            epoch: Instant::now(),
            saturated_at_ms: AtomicU64::new(0),
        }
    }
}

impl FairShares {
    /// The weight of country `c` (at least the floor).
    pub fn weight(&self, c: CountryIdx) -> f64 {
        let floor = f32::from_bits(self.floor.load(Ordering::Relaxed));
        let w = self
            .weights
            .get(usize::from(c.0))
            .map_or(0.0, |w| f32::from_bits(w.load(Ordering::Relaxed)));
        f64::from(w.max(floor)).max(MIN_WEIGHT)
    }

    /// Sets the weights from baselines (new connections a second) per country slot.
    pub fn set_baselines(&self, baselines: impl Iterator<Item = (CountryIdx, f64)> + Clone) {
        let total: f64 = baselines.clone().map(|(_, b)| b.max(0.0)).sum();
        let floor = (total * FLOOR_SHARE).max(MIN_WEIGHT);
        self.floor
            .store((floor as f32).to_bits(), Ordering::Relaxed);
        for w in self.weights.iter() {
            w.store(0, Ordering::Relaxed);
        }
        for (c, b) in baselines {
            if let Some(w) = self.weights.get(usize::from(c.0)) {
                w.store((b.max(0.0) as f32).to_bits(), Ordering::Relaxed);
            }
        }
    }

    /// A handshake had to wait for a slot (called by the gates; one relaxed store).
    pub fn mark_saturated(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.saturated_at_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// Whether a handshake had to wait within the last `within_ms` milliseconds.
    pub fn saturated_within(&self, within_ms: u64) -> bool {
        let at = self.saturated_at_ms.load(Ordering::Relaxed);
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        at != 0 && now.saturating_sub(at) <= within_ms
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_baselines_with_a_floor() {
        let s = FairShares::default();
        let (br, de, jp) = (CountryIdx(30), CountryIdx(60), CountryIdx(110));
        assert_eq!(s.weight(br), s.weight(de), "equal before any baseline");
        s.set_baselines([(br, 100.0), (de, 300.0)].into_iter());
        assert!((s.weight(br) - 100.0).abs() < 1e-3);
        assert!((s.weight(de) - 300.0).abs() < 1e-3);
        assert!((s.weight(jp) - 4.0).abs() < 1e-3, "1% of 400");
        assert!(!s.saturated_within(1000));
        s.mark_saturated();
        assert!(s.saturated_within(1000));
    }
}
