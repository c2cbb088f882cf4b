//! Choosing a backend for one attempt: the pool's balancer, then per-backend
//! `max_connections`, then the pool's bounded wait queue.

use crate::lb::{InFlight, PickContext, Pool};

use super::error::ProxyError;

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

/// Picks a usable, untried backend with a free slot and counts the request on it.
/// Waits in the pool's queue when every candidate is at `max_connections`.
pub async fn acquire(
    pool: &Pool,
    ctx: &PickContext,
    tried: &Tried,
) -> Result<(usize, InFlight), ProxyError> {
    let limits = &pool.policy.limits;
    if let Some(found) = try_acquire(pool, ctx, tried) {
        return Ok(found);
    }
    if limits.max_connections.is_none() {
        return Err(ProxyError::NoBackend);
    }
    if !any_candidate(pool, tried) {
        return Err(ProxyError::NoBackend);
    }
    let Some(_place) = pool.queue.join(limits.queue_size) else {
        return Err(ProxyError::QueueFull);
    };
    let deadline = tokio::time::Instant::now() + limits.queue_timeout;
    loop {
        let notified = pool.queue.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(found) = try_acquire(pool, ctx, tried) {
            return Ok(found);
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {
                // One last look: a slot may have freed exactly at the deadline.
                return try_acquire(pool, ctx, tried).ok_or(ProxyError::QueueTimeout);
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
