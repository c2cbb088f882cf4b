//! levee: a thread-per-core, TLS-terminating, load-balancing HTTP reverse proxy.
//!
//! Map of the house (see docs/DESIGN.md for the flow of a connection). The top-level modules
//! form a DAG (checked by `tests/module_dag.rs`):
//! - [`cli`]: the command line (`run`, `check`, `reload`, `geo lookup`, `top`, `demo`, `bench`).
//! - [`app`]: wiring; `app::start(snapshot) -> Running` is what tests and `main` call.
//! - [`config`]: TOML -> validated immutable [`config::Snapshot`].
//! - [`runtime`]: worker threads (current-thread tokio each), SO_REUSEPORT sockets, and the
//!   front (`runtime::front`): a connection's way in, from accept to HTTP serving.
//! - [`control`]: the control thread: admin API, health checks, config watch, and the stats
//!   tick with the automatic caps beside it.
//! - [`labels`]: the leaf every layer may name: country index, handshake kinds, reject
//!   reasons.
//! - [`tls`]: certificates and SNI, shared resumption state, the timed handshake.
//! - [`net`]: the real client address: PROXY protocol v1/v2 and trusted `X-Forwarded-For`.
//! - [`proxy`]: HTTP serving of a connection let in, the per-request path (prepare, pick,
//!   forward with retries, record), header rewriting, upstream pool.
//! - [`lb`]: pools, backends and balancing algorithms.
//! - [`reload`]: hot reload: validate, bind, one atomic store.
//! - [`stats`]: per-worker stats shards, and the windows (rates, baselines, spikes) over them.
//! - [`geo`]: GeoIP databases (country, ASN) opened with each snapshot, address lookup, and
//!   the per-connection client tag (country slot, ASN, upstream header values).
//! - [`admission`]: admission control's mechanisms and verdicts: connection caps (process,
//!   per IP), buckets, automatic caps, the per-worker handshake gate and queue, the minimum
//!   upload rate. The caller records each verdict.
//! - [`admin`]: the admin API on the control thread.
//! - [`access_log`]: the access log: per-worker buffers, a writer thread, stdout or a file.
//! - [`demo`]: `levee demo`: built-in backends and synthetic per-country traffic.
//! - [`top`]: `levee top`, a live terminal view of per-country traffic over the admin API.
//! - [`surge`]: `levee bench surge`, the surge-replay load tool (loopback only).

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod geo;
pub mod labels;
pub mod lb;
pub mod net;
pub mod proxy;
pub mod reload;
pub mod runtime;
pub mod stats;
pub mod surge;
pub mod tls;
pub mod top;
