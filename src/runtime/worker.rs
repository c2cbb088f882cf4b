//! A worker: one OS thread, one current-thread tokio runtime, its own listening sockets.
//!
//! The worker owns its state (`WorkerCtx`): its upstream pool, stats shard and handshake
//! gate. It reads the config through its own `arc_swap::Cache` (`LocalSnapshot`), so the
//! accept path touches no shared lock. Reloads
//! that add or remove listeners send it `WorkerCommand`s; nothing is re-bound otherwise.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::collections::HashMap;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle as TaskHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::access_log::WorkerLog;
use crate::admission::Admission;
use crate::config::Snapshot;
use crate::stats::Shard;

use super::accept;
use super::front::Front;
use super::worker_ctx::WorkerCtx;

/// How often idle upstream connections are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

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
    /// Listener changes sent by reloads.
    pub commands: mpsc::UnboundedReceiver<WorkerCommand>,
    /// Admission counts shared by every worker (open connections, per client IP).
    pub admission: Arc<Admission>,
    /// This worker's access-log buffer.
    pub access_log: WorkerLog,
}

/// A listener change a reload asks a worker to make (after the new snapshot is stored).
#[derive(Debug)]
pub enum WorkerCommand {
    /// Start accepting on this worker's socket of a new listener.
    Listen {
        /// Listener name.
        name: String,
        /// This worker's already bound SO_REUSEPORT socket.
        socket: std::net::TcpListener,
    },
    /// Stop accepting on a listener and close its socket; its connections drain: requests in
    /// flight finish, then each connection closes (HTTP/1 after its response, h2 by GOAWAY).
    Unlisten {
        /// Listener name.
        name: String,
    },
}

/// A running worker thread.
#[derive(Debug)]
pub struct WorkerHandle {
    /// The thread; joins when the worker has drained.
    pub thread: JoinHandle<()>,
}

/// Starts a worker thread: a `LocalRuntime` (one thread, `!Send` tasks spawned on it
/// directly). Not a `LocalSet` in a current-thread runtime: there, a task woken by the I/O
/// driver wakes the `LocalSet`, whose waker unparks the driver with an eventfd write, one
/// extra syscall (and epoll wakeup) per driver turn under load.
pub fn spawn_worker(spec: WorkerSpec) -> io::Result<WorkerHandle> {
    let (started, start) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
    let thread = std::thread::Builder::new()
        .name(format!("levee-worker-{}", spec.id))
        .spawn(move || {
            let built = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build_local(tokio::runtime::LocalOptions::default());
            let rt = match built {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            let _ = started.send(Ok(()));
            rt.block_on(run(spec));
        })?;
    start
        .recv()
        .map_err(|_| io::Error::other("worker thread ended before its runtime started"))??;
    Ok(WorkerHandle { thread })
}

async fn run(spec: WorkerSpec) {
    let worker = Rc::new(WorkerCtx::new(
        spec.id,
        Arc::clone(&spec.shard),
        Arc::clone(&spec.admission),
        Arc::clone(&spec.config),
        spec.access_log,
    ));
    let connections = TaskTracker::new();
    let mut accept_loops: HashMap<String, Accepting> = HashMap::new();
    for (name, socket) in spec.sockets {
        listen(&mut accept_loops, name, socket, &worker, &connections);
    }
    let sweeper = tokio::task::spawn_local(sweep_idle(Rc::clone(&worker)));
    let probe =
        tokio::task::spawn_local(crate::admission::probe::run(Rc::clone(&worker.handshakes)));
    let log = Rc::clone(&worker.http.access_log);
    let log_flusher = tokio::task::spawn_local(log.flush_when_due());
    let mut commands = spec.commands;
    loop {
        tokio::select! {
            _ = spec.shutdown.cancelled() => break,
            Some(command) = commands.recv() => match command {
                WorkerCommand::Listen { name, socket } => {
                    listen(&mut accept_loops, name, socket, &worker, &connections);
                }
                WorkerCommand::Unlisten { name } => {
                    if let Some(accepting) = accept_loops.remove(&name) {
                        // Aborting drops the socket: the kernel stops queueing connections
                        // for it. Connections already accepted finish their requests in
                        // flight, then close: left open, they would keep routing on the
                        // config they were accepted with (removed backends included).
                        accepting.task.abort();
                        accepting.drain.cancel();
                        debug!(worker = spec.id, listener = %name, "stopped accepting");
                    }
                }
            },
        }
    }

    let drain_for = spec.config.load().server.shutdown_timeout;
    worker.shutdown.cancel();
    for l in accept_loops.values() {
        l.task.abort();
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
    probe.abort();
    log_flusher.abort();
    // What is still buffered; lines of connections cut at the deadline follow when the
    // worker's state drops (`WorkerLog`'s `Drop`).
    worker.http.access_log.flush();
    debug!(worker = spec.id, "worker stopped");
}

/// One listener's accept loop on this worker, and the token its connections drain on.
struct Accepting {
    task: TaskHandle<()>,
    /// A child of the worker's shutdown token, also cancelled when the listener is removed.
    drain: CancellationToken,
}

/// Starts accepting on `socket` for listener `name` (replacing an accept loop of that name:
/// a listener moved to another address keeps its connections, and their drain token).
fn listen(
    accept_loops: &mut HashMap<String, Accepting>,
    name: String,
    socket: std::net::TcpListener,
    worker: &Rc<WorkerCtx>,
    connections: &TaskTracker,
) {
    match accept::listening(socket) {
        Ok(listener) => {
            let old = accept_loops.remove(&name);
            let drain = old
                .as_ref()
                .map_or_else(|| worker.shutdown.child_token(), |o| o.drain.clone());
            if let Some(old) = old {
                old.task.abort();
            }
            let front = Front {
                name: name.clone(),
                worker: Rc::clone(worker),
                connections: connections.clone(),
                drain: drain.clone(),
            };
            let task = tokio::task::spawn_local(accept::accept_loop(listener, front));
            accept_loops.insert(name, Accepting { task, drain });
        }
        Err(e) => warn!(worker = worker.id, listener = %name, error = %e, "cannot use socket"),
    }
}

async fn sweep_idle(worker: Rc<WorkerCtx>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let max_idle = worker
            .http
            .snapshot
            .current()
            .pools
            .iter()
            .map(|p| p.timeouts.idle)
            .max()
            .unwrap_or(Duration::from_secs(60));
        worker.http.upstream.sweep(max_idle);
    }
}
