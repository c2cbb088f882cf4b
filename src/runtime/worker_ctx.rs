//! A worker's state, shared by its connections ([`WorkerCtx`]): its HTTP side (stats shard,
//! upstream pool, the live snapshot), its handshake gate, and its shutdown token.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::access_log::WorkerLog;
use crate::admission::{Admission, GateObserver, HandshakeGate};
use crate::config::{LocalSnapshot, Snapshot};
use crate::proxy::WorkerHttp;
use crate::proxy::request_id::RequestIds;
use crate::proxy::upstream::UpstreamPool;
use crate::stats::Shard;

/// State owned by one worker thread and shared by its connections.
#[derive(Debug)]
pub struct WorkerCtx {
    /// Worker index.
    pub id: usize,
    /// The HTTP side: stats shard, upstream pool, the live snapshot, admission state.
    pub http: Rc<WorkerHttp>,
    /// This worker's TLS handshake cap and queue.
    pub handshakes: Rc<HandshakeGate>,
    /// Cancelled when the worker starts its graceful shutdown.
    pub shutdown: CancellationToken,
}

impl WorkerCtx {
    /// A worker's state: `shard` is its stats shard, `admission` the process's admission
    /// state, `config` the live config, `access_log` its own access-log buffer.
    pub fn new(
        id: usize,
        shard: Arc<Shard>,
        admission: Arc<Admission>,
        config: Arc<ArcSwap<Snapshot>>,
        access_log: WorkerLog,
    ) -> Self {
        let observer = Box::new(ShardGauge(Arc::clone(&shard)));
        let handshakes = HandshakeGate::new(observer, Arc::clone(&admission.shares));
        let http = Rc::new(WorkerHttp {
            shard,
            upstream: UpstreamPool::new(),
            snapshot: LocalSnapshot::new(config),
            admission,
            request_ids: RequestIds::new(),
            access_log: Rc::new(access_log),
        });
        Self {
            id,
            http,
            handshakes,
            // Worker-local token: connections wait on it without touching a cross-core lock.
            shutdown: CancellationToken::new(),
        }
    }

    /// This worker's stats shard.
    pub fn shard(&self) -> &Shard {
        &self.http.shard
    }

    /// Admission state shared by every worker.
    pub fn admission(&self) -> &Admission {
        &self.http.admission
    }
}

/// The handshake gate's queue, published on the worker's stats shard.
#[derive(Debug)]
pub struct ShardGauge(pub Arc<Shard>);

impl GateObserver for ShardGauge {
    fn queue_depth(&self, waiting: usize) {
        self.0.set_handshake_queue_depth(waiting);
    }
    fn limit(&self, limit: usize) {
        self.0.set_handshake_limit(limit);
    }

    fn queue_waited(&self, waited: Duration) {
        self.0.handshake_queue_waited(waited);
    }
}
