//! Traffic statistics: one single-writer shard per worker, summed by readers.
//!
//! Recording is relaxed atomic adds on the worker's own shard: no lock, no allocation, no
//! cache line written by two cores. Counters are kept per country slot so GeoIP tagging can
//! fill them in; until then every connection lands in the `UNKNOWN_COUNTRY` slot.

mod histogram;
mod shard;

pub use histogram::{Histogram, HistogramSnapshot, LATENCY_BOUNDS_US};
pub use shard::{
    Counters, CountersSnapshot, CountryIdx, HandshakeKind, Shard, StatusClass, UNKNOWN_COUNTRY,
    totals,
};
