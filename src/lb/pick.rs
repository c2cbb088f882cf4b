//! How a pool serves one request: what it picks by (the pool's `hash_key` when its
//! algorithm hashes), the choice of a backend for each attempt (the balancer, then
//! per-backend `max_connections`, then the pool's bounded wait queue), and what an attempt's
//! outcome does to its backend (health counters, outlier detection).

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::{Algorithm, InFlight, PickContext, Pool, outlier, request_hash};

/// Why no backend was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// The pool has no usable backend left to try.
    #[error("no backend available")]
    NoBackend,
    /// Every backend is at `max_connections` and the pool's queue is full.
    #[error("pool queue full")]
    QueueFull,
    /// No backend slot freed up within `queue_timeout`.
    #[error("timed out in the pool queue")]
    QueueTimeout,
}

/// How one attempt on a backend ended, as far as the backend is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It answered with this status, after this long (a 5xx counts as a failure when the
    /// pool's outlier detection says `include_5xx`).
    Answered(StatusCode, Duration),
    /// It failed after the connection was made, or reusing a pooled one (reset, no answer
    /// in time, malformed answer).
    Failed,
    /// The connect failed (refused, unreachable, timed out): a failure, also counted as a
    /// connect error.
    ConnectFailed,
}

/// Backends already tried by this request (retries go elsewhere).
#[derive(Debug, Default)]
pub struct Tried {
    indexes: [usize; 8],
    len: usize,
}

impl Tried {
    /// Remembers backend `i` (the first 8 are remembered; more retries than that are rare).
    pub fn add(&mut self, i: usize) {
        if self.len < self.indexes.len() {
            self.indexes[self.len] = i;
            self.len += 1;
        }
    }

    /// Whether backend `i` was tried.
    pub fn contains(&self, i: usize) -> bool {
        self.indexes[..self.len].contains(&i)
    }
}

impl Pool {
    /// What this pool picks by for a request from `client` with `headers`: the hash of its
    /// `hash_key` when its algorithm hashes (`maglev`), else the client address alone.
    pub fn pick_context(&self, client: IpAddr, headers: &HeaderMap) -> PickContext {
        let hash = if self.policy.algorithm == Algorithm::Maglev {
            request_hash(&self.policy.hash_key, client, headers)
        } else {
            None
        };
        PickContext {
            client: Some(client),
            hash,
        }
    }

    /// Picks a usable, untried backend with a free slot for the request `ctx` describes and
    /// counts the request on it (`InFlight` until dropped). Waits in the pool's queue when
    /// every candidate is at `max_connections`.
    pub async fn pick_for(
        &self,
        ctx: &PickContext,
        tried: &Tried,
    ) -> Result<(usize, InFlight), PickError> {
        let limits = &self.policy.limits;
        if let Some(found) = try_acquire(self, ctx, tried) {
            return Ok(found);
        }
        if limits.max_connections.is_none() {
            return Err(PickError::NoBackend);
        }
        if !any_candidate(self, tried) {
            return Err(PickError::NoBackend);
        }
        let Some(_place) = self.queue.join(limits.queue_size) else {
            return Err(PickError::QueueFull);
        };
        let deadline = tokio::time::Instant::now() + limits.queue_timeout;
        loop {
            let notified = self.queue.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = try_acquire(self, ctx, tried) {
                return Ok(found);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {
                    // One last look: a slot may have freed exactly at the deadline.
                    return try_acquire(self, ctx, tried).ok_or(PickError::QueueTimeout);
                }
            }
        }
    }

    /// Records how an attempt on `backends[index]` ended: its health counters and latency,
    /// then outlier detection (which may eject it).
    pub fn record_outcome(&self, index: usize, outcome: Outcome) {
        let Some(backend) = self.backends.get(index) else {
            return;
        };
        match outcome {
            Outcome::Answered(status, _) if outlier::is_failure_status(self, status) => {
                backend.state.record_failure();
                outlier::on_failure(self, index);
            }
            Outcome::Answered(_, took) => {
                backend.state.record_success(took);
                outlier::on_success(self, index);
            }
            Outcome::Failed => {
                backend.state.record_failure();
                outlier::on_failure(self, index);
            }
            Outcome::ConnectFailed => {
                backend.state.record_connect_error();
                backend.state.record_failure();
                outlier::on_failure(self, index);
            }
        }
    }
}

/// The balancer's choice if it is free, else the next usable untried backend with a slot.
fn try_acquire(pool: &Pool, ctx: &PickContext, tried: &Tried) -> Option<(usize, InFlight)> {
    let max = pool.policy.limits.max_connections;
    let backends = &pool.backends;
    let first = pool.balancer.pick(backends, ctx)?;
    let n = backends.len();
    (0..n)
        .map(|k| (first + k) % n)
        .filter(|&i| !tried.contains(i) && (i == first || backends[i].state.is_usable()))
        .find_map(|i| backends[i].state.try_begin_request(max).map(|g| (i, g)))
}

/// Whether any usable backend remains untried (queueing for nothing would only delay 503).
fn any_candidate(pool: &Pool, tried: &Tried) -> bool {
    pool.backends
        .iter()
        .enumerate()
        .any(|(i, b)| !tried.contains(i) && b.state.is_usable())
}
