//! The access log, off the request path: one line per request, when its response ends.
//!
//! Each worker formats its lines into its own buffer ([`WorkerLog`]: no lock, no syscall per
//! line) and ships whole buffers over one bounded queue to a writer thread
//! ([`writer::Writer`]), which writes them to stdout or to `[server] access_log_path`. The
//! only thing workers share is that queue, touched once per batch (32 KiB, or 100 ms after a
//! buffer's first line), never per line. Memory is bounded by [`QUEUE_BATCHES`] batches plus
//! one buffer per worker; when the sink cannot keep up, lines are dropped and counted
//! (`levee_access_log_dropped_total`) rather than stalling a worker. At shutdown the
//! workers ship what they hold and the writer drains the queue before the process exits.
//!
//! DESIGN note: before issue 14 each line was a `tracing` event through the global fmt
//! subscriber, written synchronously under the stdout lock every worker shares (a third of
//! levee's CPU per request). The line shapes are unchanged (see `format`), but the log is no
//! longer filtered by `--log-level`/`RUST_LOG`: like nginx's `access_log` beside its
//! `error_log`, it is switched by `[server] access_log` and `[listeners] access_log` only.

mod entry;
mod format;
mod worker;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;

pub use entry::{AccessEntry, StatusFrom};
pub use format::LineFormat;
pub use worker::{Batch, SHIP_AFTER, SHIP_BYTES, WorkerLog};

use crate::config::Snapshot;

/// Batches the queue holds (about 4 MiB of lines at most): enough for the writer to ride out
/// a slow write of a few hundred milliseconds at full load.
pub const QUEUE_BATCHES: usize = 128;

/// The process's access log: the writer thread and what workers need to reach it.
#[derive(Debug)]
pub struct AccessLog {
    /// Cloned into each worker's log; dropped by `finish` so the writer sees the end.
    queue: Option<SyncSender<Batch>>,
    format: crate::config::LogFormat,
    dropped: Arc<AtomicU64>,
    reopen: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Opens the sink of `config`'s `server.access_log_path` (stdout without one) and starts
    /// the writer thread. The line format (`server.log_format`) is fixed for the process.
    pub fn start(config: &Arc<ArcSwap<Snapshot>>) -> anyhow::Result<Self> {
        let snapshot = config.load();
        let path = snapshot.server.access_log_path.as_deref();
        let sink = writer::Sink::open(path).with_context(|| {
            let shown = path.map(|p| p.display().to_string()).unwrap_or_default();
            format!("server.access_log_path: cannot open \"{shown}\"")
        })?;
        let (queue, batches) = sync_channel(QUEUE_BATCHES);
        let dropped = Arc::new(AtomicU64::new(0));
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = writer::Writer {
            queue: batches,
            sink,
            config: Arc::clone(config),
            reopen: Arc::clone(&reopen),
            dropped: Arc::clone(&dropped),
        };
        let thread = std::thread::Builder::new()
            .name("levee-access-log".to_string())
            .spawn(move || writer.run())
            .context("access log writer thread")?;
        Ok(Self {
            queue: Some(queue),
            format: snapshot.server.log_format,
            dropped,
            reopen,
            thread: Some(thread),
        })
    }

    /// A new worker's log (each worker has its own).
    pub fn worker_log(&self) -> WorkerLog {
        match &self.queue {
            Some(queue) => WorkerLog::new(self.format, queue.clone(), Arc::clone(&self.dropped)),
            None => WorkerLog::discarding(),
        }
    }

    /// Asks the writer to reopen the file by name (SIGUSR1, after logrotate moved it).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Lines lost so far (queue full or sink failing): `levee_access_log_dropped_total`.
    pub fn dropped(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.dropped)
    }

    /// Waits (up to `wait`) for the writer to write everything the stopped workers shipped.
    /// Call after every worker has stopped (their logs hold the other senders).
    pub fn finish(&mut self, wait: Duration) {
        self.queue = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + wait;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!("access log: the sink did not take the last lines in time");
        }
    }
}
