//! Counting a completed request on its pool and backend, for `levee_pool_requests_total` and
//! `levee_pool_request_duration_seconds`.
//!
//! A request a backend answered is counted on that backend's `BackendState` (per-backend
//! atomics every worker already writes when the request starts: `requests`, `in_flight`),
//! by the status class the client got. A request routed to the pool that no backend
//! answered (levee's own 502/503/504 after failed attempts or with no backend to pick, or a
//! 4xx for a client body it refused) is counted on the pool's stats as levee's answer, in this
//! worker's slot. Every routed request's duration goes into this worker's slot of the pool's
//! histogram. No lock, no allocation.

use std::time::Instant;

use http::StatusCode;

use crate::config::{PoolId, Snapshot};
use crate::lb::InFlight;

/// Counts a request of `pool` (none: refused before routing, not counted here) that
/// completed on `worker`, `start`ed then, answered with `status`, by the backend
/// `answered_by` is in flight to, or by levee itself when `None`.
pub fn completed(
    snapshot: &Snapshot,
    pool: Option<PoolId>,
    answered_by: Option<&InFlight>,
    status: StatusCode,
    start: Instant,
    worker: usize,
) {
    let Some(stats) = pool.and_then(|id| snapshot.pool_stats(id)) else {
        return;
    };
    let status = status.as_u16();
    if let Some(in_flight) = answered_by {
        in_flight.backend().record_answered(status);
    }
    stats.request(worker, status, answered_by.is_none(), start.elapsed());
}
