//! The writer thread: takes the workers' batches off the queue and writes them to the sink,
//! stdout or the file of `[server] access_log_path`.
//!
//! The file is opened for appending; SIGUSR1 (`AccessLog::reopen`) reopens it by name, as
//! nginx does, so logrotate can move it away and signal. A reload that changes
//! `access_log_path` moves the log to the new file within [`CHECK_EVERY`]. A sink that fails
//! (disk full, the file's directory gone) loses the batch, counted as dropped, and is
//! reported at most once per [`REPORT_EVERY`]; a file that cannot be reopened leaves the log
//! on the sink it had.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tracing::{info, warn};

use super::worker::Batch;
use crate::config::Snapshot;

/// How often the writer looks for a reopen request or a new path when no batch arrives.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// At most one report of a failing sink per this long.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Where lines go.
#[derive(Debug)]
pub enum Sink {
    /// The process's stdout (whole batches, under its lock, so other log lines never land
    /// inside an access-log line).
    Stdout,
    /// An append-only file, by name.
    File {
        /// As configured (joined to the config file's directory).
        path: PathBuf,
        /// The open file.
        file: File,
    },
}

impl Sink {
    /// Stdout for `None`, else `path` opened for appending (created if missing).
    pub fn open(path: Option<&Path>) -> io::Result<Self> {
        match path {
            None => Ok(Sink::Stdout),
            Some(path) => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                Ok(Sink::File {
                    path: path.to_path_buf(),
                    file,
                })
            }
        }
    }

    /// The file's path, `None` for stdout.
    fn path(&self) -> Option<&Path> {
        match self {
            Sink::Stdout => None,
            Sink::File { path, .. } => Some(path),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::File { file, .. } => file.write_all(bytes),
        }
    }
}

/// What the writer thread owns.
pub struct Writer {
    /// Batches from every worker.
    pub queue: Receiver<Batch>,
    /// The sink opened at start.
    pub sink: Sink,
    /// The live config (`server.access_log_path`).
    pub config: Arc<ArcSwap<Snapshot>>,
    /// Set by SIGUSR1.
    pub reopen: Arc<AtomicBool>,
    /// Lines lost.
    pub dropped: Arc<AtomicU64>,
}

impl Writer {
    /// Writes batches until every worker's sender is gone and the queue is empty.
    pub fn run(mut self) {
        let mut last_report: Option<Instant> = None;
        loop {
            match self.queue.recv_timeout(CHECK_EVERY) {
                Ok(batch) => {
                    if let Err(e) = self.sink.write_all(&batch.bytes) {
                        self.dropped.fetch_add(batch.lines, Ordering::Relaxed);
                        if last_report.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                            last_report = Some(Instant::now());
                            warn!(error = %e, lines = batch.lines, sink = %self.describe(),
                                "access log: cannot write; lines dropped");
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.follow_config();
        }
        if let Sink::File { file, .. } = &mut self.sink {
            let _ = file.flush();
        }
    }

    /// Reopens the file when asked (SIGUSR1) or when a reload changed the path.
    fn follow_config(&mut self) {
        let requested = self.reopen.swap(false, Ordering::Relaxed);
        let config = self.config.load();
        let wanted = config.server.access_log_path.as_deref();
        if !requested && wanted == self.sink.path() {
            return;
        }
        match Sink::open(wanted) {
            Ok(sink) => {
                if wanted != self.sink.path() {
                    info!(from = %self.describe(), to = %describe(wanted), "access log moved");
                }
                self.sink = sink;
            }
            Err(e) => warn!(
                key = "server.access_log_path",
                error = %e,
                path = %describe(wanted),
                still = %self.describe(),
                "access log: cannot open the file; still writing where it was"
            ),
        }
    }

    fn describe(&self) -> String {
        describe(self.sink.path())
    }
}

/// A sink's name in log lines.
fn describe(path: Option<&Path>) -> String {
    path.map_or_else(|| "stdout".to_string(), |p| p.display().to_string())
}
