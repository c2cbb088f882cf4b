//! Per-pool policy: hashing key, health checks, outlier detection, retries, queueing.
//!
//! Typed values only; `config::validate` builds them from `[pools.NAME]`.

use std::ops::RangeInclusive;
use std::time::Duration;

use http::HeaderName;

use super::{Backend, Balancer, LeastConn, Maglev, P2c, RoundRobin, Weighted};

/// Load-balancing algorithm names accepted in `pools.NAME.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// `round_robin`: each usable backend in turn.
    #[default]
    RoundRobin,
    /// `weighted`: smooth weighted round robin (nginx's), by `weight`.
    Weighted,
    /// `least_conn`: fewest requests in flight per unit of weight, across all workers.
    LeastConn,
    /// `p2c`: power of two random choices on in-flight requests times latency EWMA.
    P2c,
    /// `maglev`: consistent hashing of the pool's `hash_key` with a Maglev table.
    Maglev,
}

impl Algorithm {
    /// Every algorithm, in documentation order.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::RoundRobin,
        Algorithm::Weighted,
        Algorithm::LeastConn,
        Algorithm::P2c,
        Algorithm::Maglev,
    ];

    /// The accepted names, for error messages: `"round_robin", "weighted", ...`.
    pub const NAMES: &'static str =
        "\"round_robin\", \"weighted\", \"least_conn\", \"p2c\", \"maglev\"";

    /// The algorithm called `name` in a config file, if any.
    pub fn parse(name: &str) -> Option<Algorithm> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The name of this algorithm in a config file.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::Weighted => "weighted",
            Algorithm::LeastConn => "least_conn",
            Algorithm::P2c => "p2c",
            Algorithm::Maglev => "maglev",
        }
    }

    /// Builds a fresh balancer for this algorithm over `backends`. Tables (`weighted`'s
    /// cycle, `maglev`'s lookup table) are precomputed here, off the hot path; `policy`
    /// supplies the `slow_start` window.
    pub fn build(self, backends: &[Backend], policy: &PoolPolicy) -> Box<dyn Balancer> {
        let slow_start = policy.slow_start;
        match self {
            Algorithm::RoundRobin => Box::new(RoundRobin::new()),
            Algorithm::Weighted => Box::new(Weighted::new(backends, slow_start)),
            Algorithm::LeastConn => Box::new(LeastConn::new(backends, slow_start)),
            Algorithm::P2c => Box::new(P2c::new(backends, slow_start)),
            Algorithm::Maglev => Box::new(Maglev::new(backends)),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `maglev` hashes to choose a backend (`pools.NAME.hash_key`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashKey {
    /// The client IP address.
    #[default]
    ClientIp,
    /// The value of a request header (`header:NAME`).
    Header(HeaderName),
    /// The value of a cookie (`cookie:NAME`).
    Cookie(String),
}

/// How a health check probes a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// `GET path` over HTTP/1.1; healthy when the status is in `status`.
    Http {
        /// Request path.
        path: String,
        /// Accepted status codes.
        status: RangeInclusive<u16>,
    },
    /// A TCP connect.
    Tcp,
}

/// `[pools.NAME.health_check]`: active checks, run once per process on the control thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What to probe.
    pub probe: HealthProbe,
    /// Time between probes of one backend.
    pub interval: Duration,
    /// Time allowed for one probe.
    pub timeout: Duration,
    /// Consecutive successes that bring a down backend back.
    pub rise: u32,
    /// Consecutive failures that take an up backend out.
    pub fall: u32,
}

/// `[pools.NAME.outlier_detection]`: passive ejection on consecutive failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Consecutive failures (connect errors, resets, timeouts; 5xx if `include_5xx`) that eject.
    pub consecutive_failures: u32,
    /// First ejection time; doubles for each further ejection while the backend keeps failing.
    pub ejection_time: Duration,
    /// Most ejections in force at once, as a percentage of the pool's backends.
    pub max_ejected_percent: u8,
    /// Whether 5xx responses count as failures.
    pub include_5xx: bool,
}

/// Retry settings of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries per request on another backend (default 2).
    pub retries: u32,
    /// Retries may add at most this fraction of the pool's requests (default 0.2).
    pub budget_ratio: f64,
    /// Retries always allowed per second regardless of the ratio, so a quiet pool can retry.
    pub budget_min_per_sec: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 2,
            budget_ratio: 0.2,
            budget_min_per_sec: 10,
        }
    }
}

/// Connection limits: per-backend `max_connections` and the pool's wait queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionLimits {
    /// Most requests in flight per backend (across all workers); `None` = unlimited.
    pub max_connections: Option<u32>,
    /// Requests that may wait for a free slot; beyond it: 503.
    pub queue_size: u32,
    /// How long a request may wait in the queue before 503.
    pub queue_timeout: Duration,
}

/// Everything a pool does besides picking.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolPolicy {
    /// The algorithm the pool's balancer was built from (`pools.NAME.algorithm`), for display.
    pub algorithm: Algorithm,
    /// Key hashed by `maglev`.
    pub hash_key: HashKey,
    /// Active health checks; `None` = backends are assumed healthy.
    pub health_check: Option<HealthCheck>,
    /// Passive outlier detection; `None` = off.
    pub outlier: Option<OutlierDetection>,
    /// Retries and their budget.
    pub retry: RetryPolicy,
    /// Per-backend limits and the queue.
    pub limits: ConnectionLimits,
    /// A recovered backend's weight ramps from ~0 to full over this window.
    pub slow_start: Option<Duration>,
    /// Whether requests to this pool may upgrade (`pools.NAME.allow_upgrade`).
    pub upgrades: Upgrades,
}

/// Whether a pool forwards protocol upgrades (WebSocket and others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Upgrades {
    /// `Upgrade` and h2 extended CONNECT are forwarded (the default).
    #[default]
    Allowed,
    /// They are not: `Upgrade` is stripped as hop-by-hop, extended CONNECT gets 405.
    Refused,
}
