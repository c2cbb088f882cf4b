//! A worker's side of the access log: its own buffer, shipped whole to the writer thread.
//!
//! A line is formatted into the worker's buffer (no lock, no syscall). The buffer goes to the
//! writer when it holds [`SHIP_BYTES`], or [`SHIP_AFTER`] after its first line (the worker's
//! flush task), or when the worker stops. Shipping is a `try_send` on the bounded queue: when
//! the writer cannot keep up and the queue is full, the batch's lines are counted as dropped
//! (`levee_access_log_dropped_total`) and the worker goes on; it never waits for the sink.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use super::entry::AccessEntry;
use super::format::LineFormat;
use crate::config::LogFormat;

/// A buffer this full is shipped at once.
pub const SHIP_BYTES: usize = 32 * 1024;

/// A buffer is shipped at the latest this long after its first line (a quiet worker's lines
/// reach the sink within this delay).
pub const SHIP_AFTER: Duration = Duration::from_millis(100);

/// How long a stopping worker waits for room in the queue for its last lines.
const LAST_SHIP_WAIT: Duration = Duration::from_secs(2);

/// Lines on their way to the sink.
#[derive(Debug)]
pub struct Batch {
    /// Whole lines, each ending in `\n`.
    pub bytes: Vec<u8>,
    /// How many.
    pub lines: u64,
}

/// The lines a worker has formatted and not shipped yet.
#[derive(Debug)]
struct Pending {
    bytes: Vec<u8>,
    lines: u64,
    format: LineFormat,
}

/// One worker's access log (owned by the worker thread; not shared with other workers).
#[derive(Debug)]
pub struct WorkerLog {
    pending: RefCell<Pending>,
    queue: SyncSender<Batch>,
    dropped: Arc<AtomicU64>,
    /// Woken by a buffer's first line: the flush task ships it `SHIP_AFTER` later.
    due: Notify,
}

impl WorkerLog {
    /// A worker log shipping `format` lines to `queue`, counting lost lines in `dropped`.
    pub(super) fn new(
        format: LogFormat,
        queue: SyncSender<Batch>,
        dropped: Arc<AtomicU64>,
    ) -> Self {
        Self {
            pending: RefCell::new(Pending {
                bytes: Vec::new(),
                lines: 0,
                format: LineFormat::new(format),
            }),
            queue,
            dropped,
            due: Notify::new(),
        }
    }

    /// A worker log whose lines go nowhere (counted as dropped): for a worker started without
    /// a process around it (unit tests, tools).
    pub fn discarding() -> Self {
        let (queue, _) = std::sync::mpsc::sync_channel(1);
        Self::new(LogFormat::Text, queue, Arc::default())
    }

    /// Adds `entry`'s line, stamped now.
    pub fn write(&self, entry: &AccessEntry<'_>) {
        let Ok(mut pending) = self.pending.try_borrow_mut() else {
            // Not reachable (nothing here re-enters), but never a panic on the data path.
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let p = &mut *pending;
        if p.bytes.capacity() == 0 {
            p.bytes.reserve(SHIP_BYTES + SHIP_BYTES / 4);
        }
        p.format.append(&mut p.bytes, entry, SystemTime::now());
        p.lines += 1;
        if p.bytes.len() >= SHIP_BYTES {
            self.ship(p);
        } else if p.lines == 1 {
            self.due.notify_one();
        }
    }

    /// Ships what is buffered now.
    pub fn flush(&self) {
        if let Ok(mut pending) = self.pending.try_borrow_mut() {
            self.ship(&mut pending);
        }
    }

    /// The flush task of a worker: ships each buffer `SHIP_AFTER` after its first line.
    /// Runs until aborted.
    pub async fn flush_when_due(self: std::rc::Rc<Self>) {
        loop {
            self.due.notified().await;
            tokio::time::sleep(SHIP_AFTER).await;
            self.flush();
        }
    }

    fn ship(&self, p: &mut Pending) {
        if p.lines == 0 {
            return;
        }
        let batch = Batch {
            bytes: std::mem::take(&mut p.bytes),
            lines: std::mem::take(&mut p.lines),
        };
        match self.queue.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => {
                self.dropped.fetch_add(batch.lines, Ordering::Relaxed);
                // Keep the allocation for the next lines.
                p.bytes = batch.bytes;
                p.bytes.clear();
            }
        }
    }
}

impl Drop for WorkerLog {
    /// A stopping worker's last lines: waits (bounded) for room in the queue rather than
    /// dropping them, so a shutdown loses nothing while the sink keeps up.
    fn drop(&mut self) {
        let p = self.pending.get_mut();
        if p.lines == 0 {
            return;
        }
        let mut batch = Batch {
            bytes: std::mem::take(&mut p.bytes),
            lines: p.lines,
        };
        let deadline = Instant::now() + LAST_SHIP_WAIT;
        loop {
            match self.queue.try_send(batch) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    batch = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                    self.dropped.fetch_add(back.lines, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}
