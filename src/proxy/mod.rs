//! HTTP proxying: serving a downstream connection, routing, header rewriting, the per-worker
//! upstream connection pool, and streaming bodies both ways.
//!
//! Everything here runs on one worker's thread: per-worker state is `Rc`/`RefCell`, and h2
//! streams are spawned with `spawn_local`, so nothing on this path is shared across cores
//! except the read-only snapshot and the per-backend atomics.

pub mod acquire;
pub mod admit;
pub mod body;
pub mod conn;
pub mod early;
pub mod error;
pub mod headers;
pub mod idle;
pub mod route;
pub mod service;
#[cfg(test)]
mod test_support;
pub mod upstream;

pub use conn::{Accepted, ConnCtx, WorkerCtx, serve_connection};
