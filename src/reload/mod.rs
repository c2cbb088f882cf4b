//! Hot reload: read and validate the config file, bind new listeners, then one `store`.
//!
//! Whatever triggers it (SIGHUP, `POST /reload`, `levee reload`, the file watch), a reload runs
//! `Reloader::reload`, one at a time. Everything that can fail happens before the store: the
//! file is read, parsed and validated with every file it names (`config::reload::rebuild`),
//! and the sockets of new or moved listeners are bound. Only then is the new snapshot stored,
//! with a single `ArcSwap::store`, and the workers are told which listeners to start or stop
//! accepting on. On any error the running snapshot is untouched: the errors are logged once,
//! counted, and returned to the caller.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

use crate::config::{self, BuildContext, ConfigError, ConfigErrors, Snapshot};
use crate::runtime::{WorkerCommand, bind_reuseport_group};

pub mod watch;

/// A listener as bound: its name, the address configured, and the address it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundListener {
    /// Listener name.
    pub name: String,
    /// `listen` as configured (port 0 stays 0 here).
    pub configured: SocketAddr,
    /// The bound address (the real port).
    pub bound: SocketAddr,
}

/// What one reload did.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// Whether the new config was stored.
    pub ok: bool,
    /// Generation serving after the reload (unchanged when it failed).
    pub generation: u64,
    /// Source hash of the snapshot serving after the reload.
    pub source_hash: u64,
    /// Time from reading the file to the store (or to the failure).
    pub took: Duration,
    /// Why it failed, each naming its key; empty when `ok`.
    pub errors: Vec<ConfigError>,
}

impl ReloadReport {
    /// The report as JSON: `{ok, generation, source_hash, took_ms}` plus `errors` when it
    /// failed (`[{key, reason}]`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "ok": self.ok,
            "generation": self.generation,
            "source_hash": format!("{:016x}", self.source_hash),
            "took_ms": self.took.as_secs_f64() * 1000.0,
        });
        if !self.ok {
            doc["errors"] = self
                .errors
                .iter()
                .map(|e| serde_json::json!({ "key": e.key, "reason": e.reason }))
                .collect();
        }
        doc
    }
}

/// Reload counters, for `/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct ReloadStats {
    ok: AtomicU64,
    failed: AtomicU64,
    last_unix_ms: AtomicU64,
}

impl ReloadStats {
    /// Reloads that stored a new snapshot.
    pub fn succeeded(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Reloads refused (the running config kept serving).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Unix time in seconds of the last reload attempt, successful or not (0: none yet).
    pub fn last_reload_unix_seconds(&self) -> f64 {
        self.last_unix_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    fn record(&self, ok: bool) {
        let counter = if ok { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_unix_ms.store(now, Ordering::Relaxed);
    }
}

/// Where reloads read the config: the file, and the build context the running snapshot was
/// built with (it holds the TLS resumption state that every snapshot must share).
#[derive(Debug, Clone)]
pub struct ReloadSource {
    /// The config file.
    pub path: PathBuf,
    /// Build context of the first load (its `base_dir` is where the process started).
    pub ctx: BuildContext,
}

/// Reloads the running config from its file. Shared by every reload trigger.
#[derive(Debug)]
pub struct Reloader {
    source: Option<ReloadSource>,
    config: Arc<ArcSwap<Snapshot>>,
    workers: Vec<UnboundedSender<WorkerCommand>>,
    /// The listeners as bound now; also serializes reloads (held for a whole reload).
    bound: Mutex<Vec<BoundListener>>,
    stats: ReloadStats,
}

impl Reloader {
    /// A reloader for `source` (`None`: a config given as text, which cannot be reloaded).
    /// Relative paths inside the file resolve against its directory, as on the first load.
    pub fn new(
        source: Option<ReloadSource>,
        config: Arc<ArcSwap<Snapshot>>,
        workers: Vec<UnboundedSender<WorkerCommand>>,
        bound: Vec<BoundListener>,
    ) -> Self {
        let source = source.map(|mut s| {
            if let Some(dir) = s.path.parent() {
                s.ctx.base_dir = s.ctx.base_dir.join(dir);
            }
            s
        });
        Self {
            source,
            config,
            workers,
            bound: Mutex::new(bound),
            stats: ReloadStats::default(),
        }
    }

    /// The config file reloads read, if any.
    pub fn path(&self) -> Option<&Path> {
        self.source.as_ref().map(|s| s.path.as_path())
    }

    /// Reload counters.
    pub fn stats(&self) -> &ReloadStats {
        &self.stats
    }

    /// The listeners as bound now.
    pub fn listeners(&self) -> Vec<BoundListener> {
        self.bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the config file and, if all of it is valid and every new listener binds,
    /// replaces the running snapshot. Blocking (file reads, certificate parsing, binds): call
    /// it off any async worker, e.g. with `spawn_blocking`. Reloads run one at a time.
    pub fn reload(&self) -> ReloadReport {
        let mut bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let running = self.config.load_full();
        let result = self.prepare(&running, &bound).map(|(snapshot, binds)| {
            let snapshot = Arc::new(snapshot);
            self.config.store(Arc::clone(&snapshot));
            *bound = self.apply_listeners(&snapshot, &bound, binds);
            snapshot
        });
        let took = started.elapsed();
        self.stats.record(result.is_ok());
        match result {
            Ok(snapshot) => {
                info!(
                    generation = snapshot.generation,
                    source_hash = %format!("{:016x}", snapshot.source_hash),
                    took_ms = took.as_secs_f64() * 1000.0,
                    "config reloaded"
                );
                for w in config::warnings(&snapshot) {
                    warn!(key = w.key, "{}", w.reason);
                }
                report(&snapshot, took, Vec::new())
            }
            Err(errors) => {
                warn!(
                    generation = running.generation,
                    errors = %errors,
                    "config reload refused; the running config keeps serving"
                );
                report(&running, took, errors.0)
            }
        }
    }

    /// Everything that can fail: read, validate, bind the new listeners' sockets.
    fn prepare(
        &self,
        running: &Arc<Snapshot>,
        bound: &[BoundListener],
    ) -> Result<(Snapshot, Vec<NewSockets>), ConfigErrors> {
        let Some(ReloadSource { path, ctx }) = &self.source else {
            return Err(ConfigError::new("", "levee was started without a config file").into());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "",
                format!("cannot read config file {}: {e}", path.display()),
            )
        })?;
        let snapshot = config::reload::rebuild(&text, ctx, running)?;
        let binds = self.bind_new_listeners(&snapshot, bound)?;
        Ok((snapshot, binds))
    }

    /// Binds a socket group for each listener that is new or moved to another address.
    fn bind_new_listeners(
        &self,
        snapshot: &Snapshot,
        bound: &[BoundListener],
    ) -> Result<Vec<NewSockets>, ConfigErrors> {
        let workers = snapshot.server.workers.get();
        let mut binds = Vec::new();
        let mut errors = Vec::new();
        for (i, l) in snapshot.listeners.iter().enumerate() {
            let unchanged = bound
                .iter()
                .any(|b| b.name == l.name && b.configured == l.listen);
            if unchanged {
                continue;
            }
            match bind_reuseport_group(l.listen, workers, snapshot.server.backlog) {
                Ok((sockets, addr)) => binds.push(NewSockets {
                    name: l.name.clone(),
                    configured: l.listen,
                    bound: addr,
                    sockets,
                }),
                Err(e) => errors.push(ConfigError::new(
                    format!("listeners[{i}].listen"),
                    format!("cannot listen on {}: {e}", l.listen),
                )),
            }
        }
        if errors.is_empty() {
            Ok(binds)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// After the store: workers start accepting on new sockets and stop on removed
    /// listeners. Returns the listeners as bound now.
    fn apply_listeners(
        &self,
        snapshot: &Snapshot,
        before: &[BoundListener],
        binds: Vec<NewSockets>,
    ) -> Vec<BoundListener> {
        for old in before {
            if snapshot.listener(&old.name).is_none() {
                info!(listener = %old.name, address = %old.bound, "listener removed: no longer accepting, its connections drain");
                self.send_all(|| WorkerCommand::Unlisten {
                    name: old.name.clone(),
                });
            }
        }
        let mut now: Vec<BoundListener> = before
            .iter()
            .filter(|b| {
                let kept = snapshot.listener(&b.name).map(|l| l.listen);
                kept == Some(b.configured)
            })
            .cloned()
            .collect();
        for new in binds {
            info!(listener = %new.name, address = %new.bound, "listening");
            for (worker, socket) in self.workers.iter().zip(new.sockets) {
                let command = WorkerCommand::Listen {
                    name: new.name.clone(),
                    socket,
                };
                if worker.send(command).is_err() {
                    warn!(listener = %new.name, "a worker has stopped; it will not accept here");
                }
            }
            now.push(BoundListener {
                name: new.name,
                configured: new.configured,
                bound: new.bound,
            });
        }
        now
    }

    fn send_all(&self, command: impl Fn() -> WorkerCommand) {
        for worker in &self.workers {
            // A worker that is gone is shutting down; nothing to tell it.
            let _ = worker.send(command());
        }
    }
}

/// The sockets bound for one new (or moved) listener, one per worker.
struct NewSockets {
    name: String,
    configured: SocketAddr,
    bound: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

fn report(snapshot: &Snapshot, took: Duration, errors: Vec<ConfigError>) -> ReloadReport {
    ReloadReport {
        ok: errors.is_empty(),
        generation: snapshot.generation,
        source_hash: snapshot.source_hash,
        took,
        errors,
    }
}
