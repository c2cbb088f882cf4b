//! levee: a thread-per-core, TLS-terminating, load-balancing HTTP reverse proxy.
//!
//! Map of the house (see docs/DESIGN.md for the flow of a connection):
//! - [`cli`]: the command line (`run`, `check`, `reload`, `demo`).
//! - [`app`]: wiring; `app::start(snapshot) -> Running` is what tests and `main` call.
//! - [`config`]: TOML -> validated immutable [`config::Snapshot`].
//! - [`runtime`]: worker threads (current-thread tokio each) and SO_REUSEPORT sockets.
//! - [`tls`]: certificates and SNI, shared resumption state, the timed handshake.
//! - [`proxy`]: per-connection HTTP serving, routing, header rewriting, upstream pool.
//! - [`lb`]: pools, backends and balancing algorithms.
//! - [`reload`]: hot reload: validate, bind, one atomic store.
//! - [`stats`]: per-worker stats shards.
//! - [`geo`]: GeoIP databases (country, ASN) opened with each snapshot, and address lookup.
//! - [`admin`]: the admin API on the control thread.
//! - [`demo`]: built-in demo backends for `levee demo`.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod geo;
pub mod lb;
pub mod proxy;
pub mod reload;
pub mod runtime;
pub mod stats;
pub mod tls;
