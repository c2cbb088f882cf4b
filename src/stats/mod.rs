//! Traffic statistics: one single-writer shard per worker, summed by readers, and the
//! windows the control thread computes from them once a second.
//!
//! Recording is relaxed atomic writes on the worker's own shard: no lock, no allocation, no
//! cache line written by two cores. Counters are kept per country slot (`shard`), and the
//! busiest autonomous systems in a heavy-hitter table per worker (`asn`); per pool, request
//! durations in one padded slot per worker (`pool`). The control thread
//! merges them (`view`), keeps a minute of per-second history with rates, baselines and
//! spike detection (`window`, `asn_window`), and, once a second (`ticker`), publishes a
//! [`StatsView`] for the admin API.

mod asn;
mod asn_window;
mod histogram;
mod pool;
mod settings;
mod shard;
mod ticker;
mod view;
mod window;

pub use crate::labels::{CountryIdx, HandshakeKind, StatusClass, UNKNOWN_COUNTRY};
pub use asn::{ASN_SLOTS, AsnEntry, AsnTable};
pub use histogram::{
    HISTOGRAM_BUCKETS, Histogram, HistogramSnapshot, LATENCY_BOUNDS_US, interpolated_quantile_us,
};
pub use pool::{PoolStats, PoolStatsSnapshot};
pub use settings::StatsSettings;
pub use shard::{Counters, CountersSnapshot, Shard, rejected_per_country, totals};
pub use ticker::{Ticker, log_event, unix_now};
pub use view::{
    AsnView, CountryView, HISTORY_SECONDS, SHORT_WINDOW, SpikeView, StatsView, TOP_ASNS,
    TotalRates, has_traffic, per_country, per_country_into,
};
pub use window::{HYSTERESIS, MIN_BASELINE_SECONDS, Onset, SpikeEvent, Windows};
