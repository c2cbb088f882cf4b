//! The per-pool families of `/metrics`: requests by the backend that answered and the status
//! class the client got, and whole-request durations.
//!
//! Per-backend counts are read from each backend's `BackendState`, levee's own answers and
//! the durations from the pool's per-worker stats (`stats::PoolStats`), summed here. Only
//! the pools and backends of the snapshot serving now are listed; both carry their counts
//! over a reload by pool name (and backend address).

use std::fmt::{self, Display};

use super::prom_text::{family, histogram, sample};
use crate::config::{PoolId, Snapshot};
use crate::labels::StatusClass;
use crate::stats::PoolStatsSnapshot;

/// The `backend` label of the requests levee answered itself for a pool.
pub(super) const LEVEE_ANSWERED: &str = "";

/// Writes `levee_pool_requests_total` and `levee_pool_request_duration_seconds`.
pub(super) fn write_pools(out: &mut String, snapshot: &Snapshot) -> fmt::Result {
    let stats: Vec<PoolStatsSnapshot> = (0..snapshot.pools.len())
        .map(|i| snapshot.pool_stats(PoolId(i)).map(|s| s.snapshot()))
        .map(Option::unwrap_or_default)
        .collect();
    write_requests(out, snapshot, &stats)?;
    let name = "levee_pool_request_duration_seconds";
    let help = "Whole-request time per pool, from the request head to the end of the response \
                body, levee's own answers included.";
    family(out, name, "histogram", help)?;
    for (pool, s) in snapshot.pools.iter().zip(&stats) {
        histogram(out, name, &[("pool", &pool.name)], &s.duration)?;
    }
    Ok(())
}

fn write_requests(
    out: &mut String,
    snapshot: &Snapshot,
    stats: &[PoolStatsSnapshot],
) -> fmt::Result {
    let name = "levee_pool_requests_total";
    let help = "Requests routed to the pool, counted when the response ends, by the backend \
                whose answer the client got and its status class. backend=\"\": levee answered \
                itself (no backend to pick, every attempt failed or timed out, or the client's \
                body was refused). Requests refused before routing (400, 429) are only in \
                levee_requests_total.";
    family(out, name, "counter", help)?;
    for (pool, s) in snapshot.pools.iter().zip(stats) {
        for backend in &pool.backends {
            let address: &dyn Display = &backend.address;
            by_class(out, name, &pool.name, address, backend.state.answered())?;
        }
        by_class(out, name, &pool.name, &LEVEE_ANSWERED, s.answered_by_levee)?;
    }
    Ok(())
}

/// One sample per status class of one (pool, backend) pair.
fn by_class(
    out: &mut String,
    name: &str,
    pool: &str,
    backend: &dyn Display,
    counts: [u64; StatusClass::COUNT],
) -> fmt::Result {
    for (class, n) in StatusClass::LABELS.iter().zip(counts) {
        let labels: [(&str, &dyn Display); 3] =
            [("pool", &pool), ("backend", backend), ("code_class", class)];
        sample(out, name, &labels, n)?;
    }
    Ok(())
}
