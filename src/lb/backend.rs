//! A backend and its mutable state, shared by every worker as atomics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::clock;
use crate::labels::StatusClass;

/// Weight of a new latency sample in the EWMA.
const EWMA_ALPHA: f64 = 0.3;

/// Mutable per-backend state shared by every worker (atomics only, no lock).
#[derive(Debug)]
pub struct BackendState {
    healthy: AtomicBool,
    ejected_until_ms: AtomicU64,
    ejections: AtomicU32,
    consecutive_failures: AtomicU32,
    usable_since_ms: AtomicU64,
    in_flight: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    latency_ewma_bits: AtomicU64,
    /// Responses the backend answered that went to the client, by `StatusClass`.
    answered: [AtomicU64; StatusClass::COUNT],
    /// Connects to the backend that failed (refused, unreachable, timed out).
    connect_errors: AtomicU64,
}

impl Default for BackendState {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            usable_since_ms: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency_ewma_bits: AtomicU64::new(0f64.to_bits()),
            answered: Default::default(),
            connect_errors: AtomicU64::new(0),
        }
    }
}

impl BackendState {
    /// Whether the backend may receive new requests: healthy and not ejected.
    /// Reads the clock only while an ejection is recorded.
    pub fn is_usable(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.is_ejected()
    }

    /// Whether active health checks consider the backend up.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Marks the backend up or down (health checks); returns whether that changed its state.
    pub fn set_healthy(&self, up: bool) -> bool {
        let was = self.healthy.swap(up, Ordering::Relaxed);
        if up && !was {
            self.usable_since_ms
                .store(clock::now_ms(), Ordering::Relaxed);
        }
        was != up
    }

    /// Whether an outlier ejection is in force now.
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && clock::now_ms() < until
    }

    /// Ejects the backend until `until_ms` (see `clock::now_ms`); counts the ejection.
    pub fn eject_until(&self, until_ms: u64) {
        self.ejected_until_ms.store(until_ms, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.usable_since_ms.store(until_ms, Ordering::Relaxed);
    }

    /// Ejections in a row so far (reset by `clear_ejections`), for doubling the ejection time.
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Forgets past ejections (the backend has behaved since).
    pub fn clear_ejections(&self) {
        self.ejections.store(0, Ordering::Relaxed);
        self.ejected_until_ms.store(0, Ordering::Relaxed);
    }

    /// Counts a request start; the returned guard counts its end.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Like `begin_request`, but only while fewer than `max` requests are in flight across
    /// all workers (exact: a compare-and-swap, not a check-then-add).
    pub fn try_begin_request(self: &Arc<Self>, max: Option<u32>) -> Option<InFlight> {
        let Some(max) = max else {
            return Some(self.begin_request());
        };
        self.in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < u64::from(max)).then_some(n + 1)
            })
            .ok()?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        Some(InFlight(Arc::clone(self)))
    }

    /// Whether a request could start now under `max` in-flight requests.
    pub fn has_capacity(&self, max: Option<u32>) -> bool {
        max.is_none_or(|m| self.in_flight() < u64::from(m))
    }

    /// Counts a failed request; returns the number of consecutive failures so far.
    pub fn record_failure(&self) -> u32 {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a successful response head after `latency`; resets the failure streak.
    pub fn record_success(&self, latency: Duration) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        let sample = latency.as_secs_f64() * 1e6;
        let old = f64::from_bits(self.latency_ewma_bits.load(Ordering::Relaxed));
        let new = if old == 0.0 {
            sample
        } else {
            old + EWMA_ALPHA * (sample - old)
        };
        // A lost update between workers only drops one sample: fine for an average.
        self.latency_ewma_bits
            .store(new.to_bits(), Ordering::Relaxed);
    }

    /// Latency EWMA in microseconds (0 before the first response).
    pub fn latency_ewma_us(&self) -> f64 {
        f64::from_bits(self.latency_ewma_bits.load(Ordering::Relaxed))
    }

    /// Consecutive failures so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Share of full weight (0.05..=1) during a `slow_start` window after recovery.
    pub fn slow_start_factor(&self, window: Option<Duration>) -> f64 {
        let Some(window) = window else { return 1.0 };
        let since = self.usable_since_ms.load(Ordering::Relaxed);
        if since == 0 {
            return 1.0;
        }
        let elapsed = clock::now_ms().saturating_sub(since) as f64;
        (elapsed / clock::ms(window).max(1) as f64).clamp(0.05, 1.0)
    }

    /// Requests currently in flight across all workers.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests started in total.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Failed requests in total.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Counts a request whose response from this backend went to the client with `status`
    /// (when it completes: one per request, not per attempt).
    pub fn record_answered(&self, status: u16) {
        self.answered[StatusClass::of(status) as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests this backend answered, by `StatusClass` (1xx..5xx).
    pub fn answered(&self) -> [u64; StatusClass::COUNT] {
        std::array::from_fn(|i| self.answered[i].load(Ordering::Relaxed))
    }

    /// Counts a failed connect to this backend (refused, unreachable or timed out).
    pub fn record_connect_error(&self) {
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed connects in total.
    pub fn connect_errors(&self) -> u64 {
        self.connect_errors.load(Ordering::Relaxed)
    }
}

/// Decrements the backend's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

impl InFlight {
    /// The state of the backend this request is in flight to.
    pub fn backend(&self) -> &BackendState {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One backend server of a pool.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Backend address.
    pub address: SocketAddr,
    /// Relative weight (used by weighted algorithms).
    pub weight: u32,
    /// The `Host`-style authority string, prebuilt (used when the client sent no Host).
    pub authority: http::HeaderValue,
    /// Shared mutable state.
    pub state: Arc<BackendState>,
}

impl Backend {
    /// A backend with fresh state.
    pub fn new(address: SocketAddr, weight: u32) -> Self {
        let authority = http::HeaderValue::from_str(&address.to_string())
            .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"));
        Self {
            address,
            weight,
            authority,
            state: Arc::new(BackendState::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_class_and_connect_errors_apart() {
        let s = BackendState::default();
        for status in [200, 204, 503, 404, 101, 302, 999] {
            s.record_answered(status);
        }
        assert_eq!(
            s.answered(),
            [1, 2, 1, 1, 2],
            "999 counts as 5xx, like the shards"
        );
        s.record_connect_error();
        s.record_connect_error();
        assert_eq!(s.connect_errors(), 2);
        assert_eq!(
            s.failures(),
            0,
            "connect errors are counted as failures by the caller"
        );
    }
}
