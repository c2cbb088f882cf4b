//! A worker's view of the live config: the newest snapshot, handed out as a worker-local `Rc`.
//!
//! Each request routes on the newest snapshot (so keep-alive and h2 connections pick up new
//! pools without reconnecting). Cloning the `Arc<Snapshot>` per request would write its
//! shared reference count from every core on every request; instead the worker wraps the
//! snapshot once in an `Rc` and requests clone that (a non-atomic, core-local increment).
//! `arc_swap::Cache` makes the check for a newer snapshot one shared read-mostly load.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};

use super::Snapshot;

/// A snapshot held by a worker: requests clone the `Rc` around it, never the `Arc` inside.
#[derive(Debug)]
pub struct SnapshotHandle(Arc<Snapshot>);

impl SnapshotHandle {
    /// The shared snapshot.
    pub fn arc(&self) -> &Arc<Snapshot> {
        &self.0
    }
}

impl std::ops::Deref for SnapshotHandle {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.0
    }
}

/// The newest config snapshot, as seen by one worker thread.
pub struct LocalSnapshot {
    cache: RefCell<Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>>,
    current: RefCell<Rc<SnapshotHandle>>,
}

impl std::fmt::Debug for LocalSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSnapshot")
            .field("generation", &self.current.borrow().generation)
            .finish_non_exhaustive()
    }
}

impl LocalSnapshot {
    /// A view of `config`, starting at its current snapshot.
    pub fn new(config: Arc<ArcSwap<Snapshot>>) -> Self {
        let mut cache = Cache::new(config);
        let current = Rc::new(SnapshotHandle(Arc::clone(cache.load())));
        Self {
            cache: RefCell::new(cache),
            current: RefCell::new(current),
        }
    }

    /// The newest snapshot.
    pub fn current(&self) -> Rc<SnapshotHandle> {
        let mut cache = self.cache.borrow_mut();
        let newest = cache.load();
        let mut current = self.current.borrow_mut();
        if !Arc::ptr_eq(newest, current.arc()) {
            *current = Rc::new(SnapshotHandle(Arc::clone(newest)));
        }
        Rc::clone(&current)
    }
}
