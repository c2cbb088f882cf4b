//! A named pool of backends, its algorithm and its upstream timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::{Balancer, PickContext, RoundRobin};

/// Load-balancing algorithm names accepted in `pools.NAME.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Each backend in turn.
    #[default]
    RoundRobin,
}

impl Algorithm {
    /// Builds a fresh balancer for this algorithm.
    pub fn build(self) -> Box<dyn Balancer> {
        match self {
            Algorithm::RoundRobin => Box::new(RoundRobin::new()),
        }
    }
}

/// Upstream timeouts of a pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolTimeouts {
    /// Time allowed to open a TCP connection to a backend.
    pub connect: Duration,
    /// Time allowed from sending the request to receiving the response head.
    pub response: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub idle: Duration,
}

/// Mutable per-backend state shared by every worker (atomics only).
#[derive(Debug)]
pub struct BackendState {
    up: AtomicBool,
    in_flight: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
}

impl Default for BackendState {
    fn default() -> Self {
        Self {
            up: AtomicBool::new(true),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

impl BackendState {
    /// Whether the backend may receive new requests.
    pub fn is_usable(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Marks the backend up or down.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// Counts a request start; the returned guard counts its end.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Counts a failed request (connect error, reset, timeout).
    pub fn record_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
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
}

/// Decrements the backend's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

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

/// A named group of backends behind one balancer.
#[derive(Debug)]
pub struct Pool {
    /// Pool name (as in `[pools.NAME]`).
    pub name: String,
    /// Backends in file order.
    pub backends: Vec<Backend>,
    /// The algorithm that picks among them.
    pub balancer: Box<dyn Balancer>,
    /// Upstream timeouts.
    pub timeouts: PoolTimeouts,
}

impl Pool {
    /// Picks a backend for one request.
    pub fn pick(&self, ctx: &PickContext) -> Option<&Backend> {
        self.balancer
            .pick(&self.backends, ctx)
            .and_then(|i| self.backends.get(i))
    }
}
