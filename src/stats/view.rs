//! What readers see: the shards merged per country on read ([`per_country`]), and the
//! [`StatsView`] the control thread computes once a second (rates, baselines, spike ratios,
//! top ASNs, spikes) and publishes through an `ArcSwap` for the admin API.
//!
//! Counters are always read live from the shards; only what needs history (rates,
//! baselines, quantiles over a window, ASN rankings) comes from the view, which is at most
//! a second old. Nothing here runs on a worker.

use std::sync::Arc;

use super::shard::{CountersSnapshot, Shard};
use crate::labels::CountryIdx;

/// The short rate window, in seconds (the spike ratio's numerator).
pub const SHORT_WINDOW: u64 = 10;

/// Seconds of per-second history kept (and shown) per country and per ASN.
pub const HISTORY_SECONDS: usize = 60;

/// How many ASNs the view ranks (the rest are summed as "other", ASN 0).
pub const TOP_ASNS: usize = 100;

/// The counters of every country slot, summed over `shards` (index = `CountryIdx`).
pub fn per_country(shards: &[Arc<Shard>]) -> Vec<CountersSnapshot> {
    let slots = shards.iter().map(|s| s.country_slots()).max().unwrap_or(1);
    let mut out = vec![CountersSnapshot::default(); slots];
    per_country_into(shards, &mut out);
    out
}

/// Like [`per_country`], into `out` (cleared first; its length is the number of slots).
pub fn per_country_into(shards: &[Arc<Shard>], out: &mut [CountersSnapshot]) {
    for (i, c) in out.iter_mut().enumerate() {
        *c = CountersSnapshot::default();
        let idx = CountryIdx(u16::try_from(i).unwrap_or(u16::MAX));
        for shard in shards {
            shard.add_country(idx, c);
        }
    }
}

/// Whether a country's counters show any traffic at all (a refusal is traffic: a country
/// whose every connection is refused still has a row).
pub fn has_traffic(c: &CountersSnapshot) -> bool {
    c.connections > 0
        || c.rejected.iter().any(|&n| n > 0)
        || c.requests.iter().any(|&n| n > 0)
        || c.handshakes.iter().any(|&n| n > 0)
        || c.bytes_in > 0
        || c.bytes_out > 0
}

/// Rates of the whole process (sums over countries), per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TotalRates {
    /// New connections in the last second.
    pub conn_rate_1s: f64,
    /// New connections per second over the last 10 s.
    pub conn_rate_10s: f64,
    /// New connections per second over the last 60 s.
    pub conn_rate_60s: f64,
    /// Requests per second over the last 10 s.
    pub req_rate_10s: f64,
    /// Connections and requests shed in the last second.
    pub shed_rate_1s: f64,
    /// Connections and requests shed per second over the last 10 s.
    pub shed_rate_10s: f64,
}

/// One country's windows, as of the last tick.
#[derive(Debug, Clone, PartialEq)]
pub struct CountryView {
    /// The country slot.
    pub country: CountryIdx,
    /// Its code (`"BR"`, `"ZZ"`).
    pub code: &'static str,
    /// New connections in the last second.
    pub conn_rate_1s: f64,
    /// New connections per second over the last 10 s.
    pub conn_rate_10s: f64,
    /// New connections per second over the last 60 s.
    pub conn_rate_60s: f64,
    /// Offered connections (opened + refused before open) per second over the last 10 s.
    pub offered_rate_10s: f64,
    /// Connections and requests shed (refused, not dry run) in the last second.
    pub shed_rate_1s: f64,
    /// Connections and requests shed per second over the last 10 s.
    pub shed_rate_10s: f64,
    /// Connections and requests shed since start, as of the tick.
    pub shed_total: u64,
    /// Requests per second over the last 10 s.
    pub req_rate_10s: f64,
    /// Slow moving average of the offered connection rate (0 until it has data).
    pub baseline: f64,
    /// `offered_rate_10s / max(baseline, spike_floor)`.
    pub spike_ratio: f64,
    /// Whether a spike is in progress.
    pub spiking: bool,
    /// Resumed / (full + resumed) handshakes over the last 10 s; `None` without handshakes.
    pub resumed_share: Option<f64>,
    /// The same share's slow moving average; `None` before it has data.
    pub resumed_share_baseline: Option<f64>,
    /// Median handshake time over the last 60 s, in ms.
    pub handshake_p50_ms: Option<f64>,
    /// 99th percentile handshake time over the last 60 s, in ms.
    pub handshake_p99_ms: Option<f64>,
    /// 5xx / requests over the last 10 s (0 without requests).
    pub share_5xx: f64,
    /// New (opened) connections per second, the last `HISTORY_SECONDS`, oldest first.
    pub history: Vec<u32>,
}

/// One ASN row (or the "other" row, ASN 0).
#[derive(Debug, Clone, PartialEq)]
pub struct AsnView {
    /// Autonomous system number (0: every ASN not listed).
    pub asn: u32,
    /// Its organisation from the ASN database; "" when unknown, "other" for ASN 0.
    pub org: String,
    /// Country of its clients (as first seen).
    pub country: CountryIdx,
    /// New connections counted while it was tracked.
    pub connections: u64,
    /// Requests counted while it was tracked.
    pub requests: u64,
    /// New connections per second over the last 10 s.
    pub conn_rate_10s: f64,
    /// New connections per second, the last `HISTORY_SECONDS`, oldest first.
    pub history: Vec<u32>,
}

/// A country spiking now.
#[derive(Debug, Clone, PartialEq)]
pub struct SpikeView {
    /// The country.
    pub country: CountryIdx,
    /// Unix time the spike started.
    pub since: f64,
    /// Its offered 10 s connection rate now (opened + refused before open).
    pub rate: f64,
    /// Its baseline.
    pub baseline: f64,
    /// Its spike ratio.
    pub ratio: f64,
    /// Its resumed share over 10 s.
    pub resumed_share: Option<f64>,
    /// Its handshake median over 60 s, ms.
    pub handshake_p50_ms: Option<f64>,
    /// Its handshake 99th percentile over 60 s, ms.
    pub handshake_p99_ms: Option<f64>,
    /// Its top ASNs by 10 s connection rate (up to 3).
    pub top_asns: Vec<AsnView>,
}

/// Everything the windows computed at one tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsView {
    /// Unix time of the tick (0: no tick yet).
    pub at: f64,
    /// Ticks so far (seconds of history).
    pub ticks: u64,
    /// Whole-process rates.
    pub totals: TotalRates,
    /// Countries that have had traffic, sorted by `conn_rate_10s`, highest first.
    pub countries: Vec<CountryView>,
    /// Top ASNs by `conn_rate_10s` (then connections), then the "other" row.
    pub asns: Vec<AsnView>,
    /// Countries spiking now.
    pub spikes: Vec<SpikeView>,
}

impl StatsView {
    /// The view of country `c`, if it has had traffic.
    pub fn country(&self, c: CountryIdx) -> Option<&CountryView> {
        self.countries.iter().find(|v| v.country == c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::HandshakeKind;

    #[test]
    fn shards_merge_per_country() {
        let a = Arc::new(Shard::new(0, 4));
        let b = Arc::new(Shard::new(1, 4));
        a.connection_opened(CountryIdx(2));
        b.connection_opened(CountryIdx(2));
        b.handshake(
            CountryIdx(3),
            HandshakeKind::Full,
            std::time::Duration::from_millis(1),
        );
        let c = per_country(&[a, b]);
        assert_eq!(c.len(), 4);
        assert_eq!(c[2].connections, 2);
        assert_eq!(c[3].handshakes_of(HandshakeKind::Full), 1);
        assert!(!has_traffic(&c[0]) && has_traffic(&c[2]) && has_traffic(&c[3]));
    }
}
