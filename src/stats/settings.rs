//! `[stats]`: the typed settings of the windows and spike detection.

use std::time::Duration;

/// `[stats]`: traffic windows and spike detection, read by the control thread every second
/// (a reload changes them at once).
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSettings {
    /// A country spikes when its 10 s connection rate is at least this many times its
    /// baseline (with `spike_floor`)...
    pub spike_threshold: f64,
    /// ... and at least this many new connections per second.
    pub spike_min_rate: f64,
    /// Smallest baseline the spike ratio divides by (connections per second).
    pub spike_floor: f64,
    /// Half-life of the baseline's exponentially weighted moving average.
    pub baseline_half_life: Duration,
}

impl Default for StatsSettings {
    fn default() -> Self {
        Self {
            spike_threshold: 5.0,
            spike_min_rate: 20.0,
            spike_floor: 1.0,
            baseline_half_life: Duration::from_secs(600),
        }
    }
}
