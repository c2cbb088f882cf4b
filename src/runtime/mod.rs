//! Threads: the per-core workers and their SO_REUSEPORT listening sockets.

pub mod accept;
pub mod listen;
pub mod local_snapshot;
pub mod worker;

pub use listen::bind_reuseport_group;
pub use local_snapshot::{LocalSnapshot, SnapshotHandle};
pub use worker::{WorkerCommand, WorkerHandle, WorkerSpec, spawn_worker};
