//! Load balancing: pools of backends and the algorithms that pick one.
//!
//! Picking takes no lock and allocates nothing. Per-backend state is shared by every worker
//! through `Arc<BackendState>` (atomics only). Algorithms live one per file behind `Balancer`.

mod pool;
mod round_robin;

pub use pool::{Algorithm, Backend, BackendState, InFlight, Pool, PoolTimeouts};
pub use round_robin::RoundRobin;

/// What a balancer may look at when picking (grows with hash keys, client address, ...).
#[derive(Debug, Default, Clone, Copy)]
pub struct PickContext {
    /// Client address, when known.
    pub client: Option<std::net::IpAddr>,
}

/// A load-balancing algorithm over a fixed list of backends.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Returns the index of the chosen backend, or `None` when none is usable.
    fn pick(&self, backends: &[Backend], ctx: &PickContext) -> Option<usize>;
}
