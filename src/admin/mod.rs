//! The admin API, served on the control thread (never on a worker), its embedded browser
//! page (`dashboard`, a client of `/stats` like `levee top`), and its HTTP client
//! (`client`), used by `levee reload` and `levee top`.

pub mod client;
mod dashboard;
mod pools;
mod procfs;
mod prom_admission;
mod prom_pools;
mod prom_process;
mod prom_text;
mod prometheus;
mod server;
mod state;
mod stats_json;

pub use pools::{pools_json, state_name};
pub use prometheus::{METRICS_CONTENT_TYPE, render_metrics};
pub use server::{
    CONNECTION_LIFETIME as ADMIN_CONNECTION_LIFETIME, HEADER_TIMEOUT as ADMIN_HEADER_TIMEOUT,
    MAX_CONNECTIONS as ADMIN_MAX_CONNECTIONS, serve_admin,
};
pub use state::AdminState;
pub use stats_json::stats_json;
