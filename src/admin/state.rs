//! What the admin endpoints read ([`AdminState`]): the shards, the live config, the reloader,
//! the stats windows' view and the admission state.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::config::Snapshot;
use crate::reload::Reloader;
use crate::stats::{Shard, StatsView};

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Every worker's stats shard.
    pub shards: Arc<Vec<Arc<Shard>>>,
    /// The live config.
    pub config: Arc<ArcSwap<Snapshot>>,
    /// Reloads the config (`POST /reload`).
    pub reloader: Arc<Reloader>,
    /// The stats windows' latest view (rates, baselines, spikes, top ASNs).
    pub view: Arc<ArcSwap<StatsView>>,
    /// When the process started serving.
    pub started: Instant,
    /// Admission state (automatic caps in force).
    pub admission: Arc<crate::admission::Admission>,
    /// Access-log lines lost (`levee_access_log_dropped_total`).
    pub access_log_dropped: Arc<std::sync::atomic::AtomicU64>,
}
