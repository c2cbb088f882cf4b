//! Threads: the per-core workers (`worker`), their SO_REUSEPORT listening sockets (`listen`),
//! each listener's accept loop (`accept`), and the front (`front`): a connection's way in,
//! from accept to HTTP serving, in one place.

pub mod accept;
pub mod front;
pub mod listen;
pub mod worker;
pub mod worker_ctx;

pub use listen::bind_reuseport_group;
pub use worker::{WorkerCommand, WorkerHandle, WorkerSpec, spawn_worker};
pub use worker_ctx::{ShardGauge, WorkerCtx};
