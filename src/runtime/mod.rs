//! Threads: the per-core workers and their SO_REUSEPORT listening sockets.

pub mod listen;
pub mod worker;

pub use listen::bind_reuseport_group;
pub use worker::{WorkerHandle, WorkerSpec, spawn_worker};
