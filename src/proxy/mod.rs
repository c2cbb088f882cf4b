//! HTTP proxying: serving a downstream connection once the front (`runtime::front`) has let
//! it in, the per-request path (route, pick, forward with retries, record), header rewriting,
//! the per-worker upstream connection pool, and streaming bodies both ways.
//!
//! Everything here runs on one worker's thread: per-worker state is `Rc`/`RefCell`, and h2
//! streams are spawned with `spawn_local`, so nothing on this path is shared across cores
//! except the read-only snapshot and the per-backend atomics (per-pool stats have a slot per
//! worker: `pool_stats`).

pub mod conn;
pub mod context;
pub mod error;
pub mod headers;
pub mod idle;
pub mod pool_stats;
pub mod prefixed;
pub mod quick_ack;
pub mod request_body;
pub mod request_id;
pub mod response_body;
pub mod route;
pub mod semantics;
pub mod service;
pub mod tunnel;
pub mod upgrade;
pub mod upstream;
pub mod watch;

pub use conn::{HttpVersion, serve};
pub use context::{ConnCtx, WorkerHttp};
