//! What the proxy's unit tests share: a worker context over a minimal config.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::conn::WorkerCtx;
use super::upstream::UpstreamPool;
use crate::admission::{Admission, HandshakeGate};
use crate::config::load_str;
use crate::config::validate::test_support::{MINIMAL, context};
use crate::geo::country;
use crate::runtime::LocalSnapshot;
use crate::stats::Shard;

/// A worker (id 0, its own shard and admission state) whose config is the minimal one plus
/// `[admission]` with `admission_toml`.
pub fn worker(admission_toml: &str) -> WorkerCtx {
    worker_for(&format!("{MINIMAL}[admission]\n{admission_toml}\n"))
}

/// A worker (id 0, its own shard and admission state) running the config `source`.
#[allow(clippy::unwrap_used)] // tests may panic
pub fn worker_for(source: &str) -> WorkerCtx {
    let snapshot = load_str(source, &context(Path::new("."))).unwrap();
    let shard = Arc::new(Shard::new(0, country::COUNTRY_COUNT));
    let admission = Arc::new(Admission::default());
    WorkerCtx {
        id: 0,
        handshakes: HandshakeGate::new(Arc::clone(&shard), Arc::clone(&admission.shares)),
        shard,
        upstream: UpstreamPool::new(),
        shutdown: CancellationToken::new(),
        snapshot: LocalSnapshot::new(Arc::new(ArcSwap::from_pointee(snapshot))),
        admission,
    }
}
