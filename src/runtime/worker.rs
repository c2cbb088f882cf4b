//! A worker: one OS thread, one current-thread tokio runtime, its own listening sockets.
//!
//! The worker owns its upstream pool and stats shard. It reads the config through its own
//! `arc_swap::Cache`, so the accept path touches no shared lock.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::{ArcSwap, Cache};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::Snapshot;
use crate::proxy::upstream::UpstreamPool;
use crate::proxy::{WorkerCtx, serve_connection};
use crate::stats::Shard;

/// How often idle upstream connections are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Pause after an accept error such as EMFILE, instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Everything a worker thread starts with.
#[derive(Debug)]
pub struct WorkerSpec {
    /// Worker index.
    pub id: usize,
    /// (listener name, this worker's socket for it).
    pub sockets: Vec<(String, std::net::TcpListener)>,
    /// The live config.
    pub config: Arc<ArcSwap<Snapshot>>,
    /// This worker's stats shard.
    pub shard: Arc<Shard>,
    /// Cancelled by the process to start a graceful shutdown.
    pub shutdown: CancellationToken,
}

/// A running worker thread.
#[derive(Debug)]
pub struct WorkerHandle {
    /// The thread; joins when the worker has drained.
    pub thread: JoinHandle<()>,
}

/// Starts a worker thread.
pub fn spawn_worker(spec: WorkerSpec) -> io::Result<WorkerHandle> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name(format!("levee-worker-{}", spec.id))
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(spec));
        })?;
    Ok(WorkerHandle { thread })
}

async fn run(spec: WorkerSpec) {
    let worker = Rc::new(WorkerCtx {
        id: spec.id,
        shard: Arc::clone(&spec.shard),
        upstream: UpstreamPool::new(),
        // Worker-local token: connections wait on it without touching a cross-core lock.
        shutdown: CancellationToken::new(),
    });
    let connections = TaskTracker::new();
    let mut accept_loops = Vec::new();
    for (name, socket) in spec.sockets {
        match TcpListener::from_std(socket) {
            Ok(listener) => accept_loops.push(tokio::task::spawn_local(accept_loop(
                name,
                listener,
                Arc::clone(&spec.config),
                Rc::clone(&worker),
                connections.clone(),
            ))),
            Err(e) => warn!(worker = spec.id, listener = %name, error = %e, "cannot use socket"),
        }
    }
    let sweeper =
        tokio::task::spawn_local(sweep_idle(Rc::clone(&worker), Arc::clone(&spec.config)));
    spec.shutdown.cancelled().await;

    let drain_for = spec.config.load().server.shutdown_timeout;
    worker.shutdown.cancel();
    for l in &accept_loops {
        l.abort();
    }
    connections.close();
    if tokio::time::timeout(drain_for, connections.wait())
        .await
        .is_err()
    {
        warn!(
            worker = spec.id,
            "shutdown timeout reached with requests still in flight"
        );
    }
    sweeper.abort();
    debug!(worker = spec.id, "worker stopped");
}

async fn accept_loop(
    name: String,
    listener: TcpListener,
    config: Arc<ArcSwap<Snapshot>>,
    worker: Rc<WorkerCtx>,
    connections: TaskTracker,
) {
    let mut config = Cache::new(config);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS and friends: back off instead of spinning.
                debug!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let snapshot = Arc::clone(config.load());
        let Some(l) = snapshot.listener(&name).cloned() else {
            info!(listener = %name, "listener no longer configured; closing its socket");
            return;
        };
        connections.spawn_local(serve_connection(tcp, peer, snapshot, l, Rc::clone(&worker)));
    }
}

async fn sweep_idle(worker: Rc<WorkerCtx>, config: Arc<ArcSwap<Snapshot>>) {
    let mut config = Cache::new(config);
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let max_idle = config
            .load()
            .pools
            .iter()
            .map(|p| p.timeouts.idle)
            .max()
            .unwrap_or(Duration::from_secs(60));
        worker.upstream.sweep(max_idle);
    }
}
