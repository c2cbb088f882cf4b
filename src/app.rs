//! Wiring: bind sockets, start the workers and the control thread, shut down gracefully.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::access_log::AccessLog;
use crate::admin::AdminState;
use crate::config::{self, BuildContext, Snapshot};
use crate::reload::{BoundListener, ReloadReport, ReloadSource, Reloader};
use crate::runtime::{WorkerHandle, WorkerSpec, bind_reuseport_group, spawn_worker};
use crate::stats::{CountersSnapshot, Shard, totals};
use crate::tls::Resumption;

/// How long a stopping process waits for the access log's last lines to be written.
const ACCESS_LOG_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Country slots per stats shard: one per country code (`ZZ` first).
const COUNTRY_SLOTS: usize = crate::geo::country::COUNTRY_COUNT;

/// A running levee: its bound addresses and the handle to stop it.
#[derive(Debug)]
pub struct Running {
    reloader: Arc<Reloader>,
    admin: Option<SocketAddr>,
    shutdown: CancellationToken,
    workers: Vec<WorkerHandle>,
    control: Option<JoinHandle<()>>,
    shards: Arc<Vec<Arc<Shard>>>,
    config: Arc<ArcSwap<Snapshot>>,
    access_log: AccessLog,
}

impl Running {
    /// The bound address of the listener called `name` (real port when configured with 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.reloader
            .listeners()
            .into_iter()
            .find(|l| l.name == name)
            .map(|l| l.bound)
    }

    /// Reloads the config from its file now (what SIGHUP and `POST /reload` do). Blocking.
    pub fn reload(&self) -> ReloadReport {
        self.reloader.reload()
    }

    /// The reloader shared by every reload trigger.
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// The bound admin API address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Stats summed over every worker.
    pub fn totals(&self) -> CountersSnapshot {
        totals(self.shards.iter().map(|s| s.as_ref()))
    }

    /// Stats of each worker separately (index = worker id).
    pub fn worker_totals(&self) -> Vec<CountersSnapshot> {
        self.shards.iter().map(|s| totals([s.as_ref()])).collect()
    }

    /// The current config snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.config.load_full()
    }

    /// A token that starts the graceful shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Reopens the access-log file by name (SIGUSR1, for logrotate).
    pub fn reopen_access_log(&self) {
        self.access_log.reopen();
    }

    /// Starts the graceful shutdown (returns at once).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every worker has drained and stopped.
    pub fn wait(mut self) {
        for w in self.workers.drain(..) {
            if w.thread.join().is_err() {
                warn!("a worker thread panicked");
            }
        }
        self.shutdown.cancel();
        if let Some(c) = self.control.take() {
            let _ = c.join();
        }
        // The workers have shipped their last lines; the writer drains them, then ends.
        self.access_log.finish(ACCESS_LOG_DRAIN);
    }

    /// Shuts down and waits.
    pub fn stop(self) {
        self.shutdown();
        self.wait();
    }
}

/// A fresh build context for the first snapshot of a process, with the default TLS
/// session-ID cache size.
pub fn initial_context(base_dir: &Path) -> anyhow::Result<BuildContext> {
    context_with_cache(base_dir, config::validate::DEFAULT_TLS_SESSION_CACHE)
}

/// A fresh build context whose TLS 1.2 session-ID cache holds `session_cache` entries.
fn context_with_cache(base_dir: &Path, session_cache: usize) -> anyhow::Result<BuildContext> {
    Ok(BuildContext {
        resumption: Resumption::new(session_cache).context("TLS ticketer")?,
        base_dir: base_dir.to_path_buf(),
        generation: 1,
        previous: None,
        generated_cert: Arc::default(),
    })
}

/// Binds every socket and starts the workers and the control thread, for a config that was
/// not read from a file (it cannot be reloaded).
pub fn start(snapshot: Snapshot) -> anyhow::Result<Running> {
    start_with(snapshot, None)
}

/// Like `start`, with the file (and build context) reloads read from.
pub fn start_with(snapshot: Snapshot, source: Option<ReloadSource>) -> anyhow::Result<Running> {
    let workers = snapshot.server.workers.get();
    let backlog = snapshot.server.backlog;
    info!(
        generation = snapshot.generation,
        source_hash = %format!("{:016x}", snapshot.source_hash),
        workers,
        "config loaded"
    );
    for w in crate::config::warnings(&snapshot) {
        warn!(key = w.key, "{}", w.reason);
    }
    let mut per_worker: Vec<Vec<(String, std::net::TcpListener)>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut listeners = Vec::new();
    for l in &snapshot.listeners {
        let (sockets, addr) = bind_reuseport_group(l.listen, workers, backlog)
            .with_context(|| format!("listeners.{}: cannot listen on {}", l.name, l.listen))?;
        for (slot, socket) in per_worker.iter_mut().zip(sockets) {
            slot.push((l.name.clone(), socket));
        }
        if l.tls.as_ref().is_some_and(|t| t.generated_certificate) {
            warn!(listener = %l.name, "no certificate configured: serving a generated self-signed certificate");
        }
        info!(listener = %l.name, %addr, tls = l.tls.is_some(), "listening");
        listeners.push(BoundListener {
            name: l.name.clone(),
            configured: l.listen,
            bound: addr,
        });
    }
    let admin_socket = match snapshot.admin.listen {
        Some(addr) => {
            let s = std::net::TcpListener::bind(addr)
                .with_context(|| format!("admin.listen: cannot listen on {addr}"))?;
            s.set_nonblocking(true)?;
            Some(s)
        }
        None => None,
    };
    let admin = admin_socket.as_ref().map(|s| s.local_addr()).transpose()?;
    let shutdown = CancellationToken::new();
    let shards: Arc<Vec<Arc<Shard>>> = Arc::new(
        (0..workers)
            .map(|i| Arc::new(Shard::new(i, COUNTRY_SLOTS)))
            .collect(),
    );
    let config = Arc::new(ArcSwap::from_pointee(snapshot));
    let access_log = AccessLog::start(&config)?;
    let mut handles = Vec::with_capacity(workers);
    let mut commands = Vec::with_capacity(workers);
    let admission = Arc::new(crate::admission::Admission::default());
    for (id, sockets) in per_worker.into_iter().enumerate() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        commands.push(tx);
        handles.push(spawn_worker(WorkerSpec {
            id,
            sockets,
            config: Arc::clone(&config),
            shard: Arc::clone(&shards[id]),
            shutdown: shutdown.clone(),
            commands: rx,
            admission: Arc::clone(&admission),
            access_log: access_log.worker_log(),
        })?);
    }
    let reloader = Arc::new(Reloader::new(
        source,
        Arc::clone(&config),
        commands,
        listeners,
    ));
    let state = AdminState {
        shards: Arc::clone(&shards),
        config: Arc::clone(&config),
        reloader: Arc::clone(&reloader),
        view: Arc::default(),
        started: std::time::Instant::now(),
        admission: Arc::clone(&admission),
        access_log_dropped: access_log.dropped(),
    };
    let control = crate::control::spawn(admin_socket, state, shutdown.clone())?;
    if let Some(a) = admin {
        info!(admin = %a, "admin API listening");
    }
    Ok(Running {
        reloader,
        admin,
        shutdown,
        workers: handles,
        control: Some(control),
        shards,
        config,
        access_log,
    })
}

/// Starts levee on `snapshot` (loaded from `source`), serves until SIGTERM or SIGINT
/// (reloading on SIGHUP), then drains and returns.
pub fn run_config(snapshot: Snapshot, source: ReloadSource) -> anyhow::Result<()> {
    let running = start_with(snapshot, Some(source))?;
    let token = running.shutdown_token();
    wait_then_stop(running, token)
}

/// Serves until SIGTERM/SIGINT (or `token` is cancelled), reloading on SIGHUP, then drains
/// and stops `running`.
pub fn wait_then_stop(running: Running, token: CancellationToken) -> anyhow::Result<()> {
    wait_for_signal(token, &running)?;
    info!("shutting down: no new connections, draining in-flight requests");
    running.stop();
    info!("stopped");
    Ok(())
}

/// Loads and validates a config file for a new process; returns the snapshot and the
/// source later reloads read.
///
/// The resumption state outlives every snapshot, so its cache size
/// (`server.tls_session_cache`) is read from a first parse of the file.
pub fn load(path: &Path) -> anyhow::Result<(Snapshot, ReloadSource)> {
    let cache = std::fs::read_to_string(path)
        .ok()
        .and_then(|src| config::file::parse(&src).ok())
        .map_or(config::validate::DEFAULT_TLS_SESSION_CACHE, |raw| {
            config::validate::tls_session_cache(&raw)
        });
    let ctx = context_with_cache(Path::new("."), cache)?;
    let snapshot = config::load_file(path, &ctx)
        .map_err(|e| anyhow!("invalid config {}:\n{e}", path.display()))?;
    let source = ReloadSource {
        path: path.to_path_buf(),
        ctx,
    };
    Ok((snapshot, source))
}

/// Blocks until SIGTERM/SIGINT, or until `token` is cancelled elsewhere; then cancels it.
/// SIGHUP reloads the config meanwhile; SIGUSR1 reopens the access-log file.
fn wait_for_signal(token: CancellationToken, running: &Running) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        loop {
            tokio::select! {
                _ = term.recv() => info!(signal = "SIGTERM", "signal received"),
                _ = int.recv() => info!(signal = "SIGINT", "signal received"),
                _ = hup.recv() => {
                    info!(signal = "SIGHUP", "signal received: reloading the config");
                    let reloader = Arc::clone(running.reloader());
                    // The report is logged by the reload itself.
                    let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
                    continue;
                }
                _ = usr1.recv() => {
                    info!(signal = "SIGUSR1", "signal received: reopening the access log");
                    running.reopen_access_log();
                    continue;
                }
                _ = token.cancelled() => {}
            }
            break;
        }
        token.cancel();
        Ok::<_, std::io::Error>(())
    })?;
    Ok(())
}
