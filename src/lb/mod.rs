//! Load balancing: pools of backends and the algorithms that pick one.
//!
//! Picking takes no lock and allocates nothing. Per-backend state is shared by every worker
//! through `Arc<BackendState>` (atomics only). Algorithms live one per file behind `Balancer`.

mod backend;
pub mod clock;
pub mod hash;
pub mod health;
mod least_conn;
mod maglev;
pub mod outlier;
mod p2c;
mod pick;
mod policy;
mod pool;
pub mod queue;
pub mod retry;
mod round_robin;
mod weighted;

pub use backend::{Backend, BackendState, InFlight};
pub use hash::{parse_hash_key, request_hash};
pub use least_conn::LeastConn;
pub use maglev::Maglev;
pub use p2c::P2c;
pub use pick::{Outcome, PickError, Tried};
pub use policy::{
    Algorithm, ConnectionLimits, HashKey, HealthCheck, HealthProbe, OutlierDetection, PoolPolicy,
    RetryPolicy, Upgrades,
};
pub use pool::{Pool, PoolTimeouts};
pub use round_robin::RoundRobin;
pub use weighted::Weighted;

/// What a balancer may look at when picking.
#[derive(Debug, Default, Clone, Copy)]
pub struct PickContext {
    /// Client address, when known.
    pub client: Option<std::net::IpAddr>,
    /// Hash of the pool's `hash_key` for this request (used by `maglev`).
    pub hash: Option<u64>,
}

/// A load-balancing algorithm over a fixed list of backends.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Returns the index of the chosen backend, or `None` when none is usable.
    fn pick(&self, backends: &[Backend], ctx: &PickContext) -> Option<usize>;
}
