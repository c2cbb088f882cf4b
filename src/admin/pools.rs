//! `GET /pools`: every pool of the live config with the state of each backend, as JSON.
//!
//! ```json
//! { "pools": [ { "name": "web", "algorithm": "round_robin", "backends": [
//!     { "address": "10.0.0.1:8080", "weight": 1, "state": "up", "in_flight": 0,
//!       "requests": 12, "failures": 0, "consecutive_failures": 0, "latency_ewma_ms": 1.234 }
//! ] } ] }
//! ```
//!
//! `state` is `"down"` while active health checks have taken the backend out, else
//! `"ejected"` while outlier detection has, else `"up"`.

use serde_json::{Value, json};

use crate::config::Snapshot;
use crate::lb::{Backend, BackendState, Pool};

/// The `/pools` document for `snapshot`.
pub fn pools_json(snapshot: &Snapshot) -> Value {
    let pools: Vec<Value> = snapshot.pools.iter().map(|p| pool_json(p)).collect();
    json!({ "pools": pools })
}

fn pool_json(pool: &Pool) -> Value {
    let backends: Vec<Value> = pool.backends.iter().map(backend_json).collect();
    json!({
        "name": pool.name,
        "algorithm": pool.policy.algorithm.name(),
        "backends": backends,
    })
}

fn backend_json(backend: &Backend) -> Value {
    let s = &backend.state;
    json!({
        "address": backend.address.to_string(),
        "weight": backend.weight,
        "state": state_name(s),
        "in_flight": s.in_flight(),
        "requests": s.requests(),
        "failures": s.failures(),
        "consecutive_failures": s.consecutive_failures(),
        "latency_ewma_ms": (s.latency_ewma_us()).round() / 1000.0,
    })
}

/// `"down"`, `"ejected"` or `"up"`.
pub fn state_name(state: &BackendState) -> &'static str {
    if !state.is_healthy() {
        "down"
    } else if state.is_ejected() {
        "ejected"
    } else {
        "up"
    }
}
