//! The stats windows' tick on the control thread, and the automatic caps beside it.
//!
//! Once a second: read the shards and advance the windows (`stats::Ticker`), log the spike
//! events, let the automatic cap controller (`admission::auto`) start or end caps on what the
//! new view shows, and publish the view for the admin API. Twenty times a second between
//! ticks: ask the windows which spike would start now (the fast onset); with `[admission]
//! auto`, cap it at once; and bring the tick forward, so the spike is flagged (logged, in
//! `/stats` and the dashboard) within [`ONSET_EVERY`](auto::ONSET_EVERY) of the moment its
//! rule is met instead of at the next whole second. The tick brought forward closes a
//! second shorter than one: the seconds that follow keep their one-second cadence from
//! it, and at most one tick in a row is brought forward (a corner case where the tick does
//! not confirm the onset cannot shorten second after second). Stats measure, admission
//! decides; this loop only sequences them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::admission::Admission;
use crate::admission::auto::{self, AutoController};
use crate::config::Snapshot;
use crate::stats::{Shard, StatsView, Ticker, log_event};

/// Runs the windows until `shutdown`, publishing each second's view into `view`.
pub async fn run(
    shards: Arc<Vec<Arc<Shard>>>,
    config: Arc<ArcSwap<Snapshot>>,
    view: Arc<ArcSwap<StatsView>>,
    admission: Arc<Admission>,
    shutdown: CancellationToken,
) {
    let mut caps = AutoController::default();
    let mut ticker = Ticker::new(&shards);
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval.tick().await;
    let mut last = Instant::now();
    // Between ticks: the fast onset (caps with `[admission] auto`; the tick brought forward).
    let mut onset = tokio::time::interval(auto::ONSET_EVERY);
    onset.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut brought_forward = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => brought_forward = false,
            _ = onset.tick() => {
                let snapshot = config.load();
                let onsets = ticker.onsets(&shards, &snapshot.stats);
                let settings = &snapshot.admission.auto;
                if settings.enabled {
                    auto::after_onset(&onsets, settings, &admission, &mut caps);
                }
                if onsets.is_empty() || brought_forward {
                    continue;
                }
                brought_forward = true;
                interval.reset();
            }
        }
        let elapsed = last.elapsed();
        last = Instant::now();
        // A tick that came late covers the seconds it missed.
        let seconds = elapsed.as_secs_f64().round().clamp(1.0, 60.0) as u32;
        let snapshot = config.load_full();
        let asn_db = snapshot.geo.asn_db();
        let (next, events) = ticker.tick(&shards, seconds, &snapshot.stats, asn_db);
        for e in &events {
            log_event(e);
        }
        auto::after_tick(&next, &snapshot.admission.auto, &admission, &mut caps);
        view.store(Arc::new(next));
    }
}
