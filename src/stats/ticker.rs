//! The control thread's stats task: once a second it reads the shards, advances the
//! windows (`window`), publishes the new view for the admin API and logs spike events;
//! with `[admission] auto`, it also looks for a cap's fast onset twenty times a second.
//! It runs on the control thread only; workers never wait for it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::shard::{CountersSnapshot, Shard};
use super::view::{StatsView, per_country_into};
use super::window::{SpikeEvent, Windows};
use crate::config::Snapshot;
use crate::geo::country;

/// Logs a spike event: a warning when it starts, an info line when it ends.
pub fn log_event(e: &SpikeEvent) {
    match e {
        SpikeEvent::Started(s) => {
            let top: Vec<String> = s
                .top_asns
                .iter()
                .map(|a| format!("AS{} {} ({:.1}/s)", a.asn, a.org, a.conn_rate_10s))
                .collect();
            let top = if top.is_empty() {
                "none".to_string()
            } else {
                top.join(", ")
            };
            warn!(
                target: "levee::spike",
                country = country::code(s.country),
                rate = round2(s.rate),
                baseline = round2(s.baseline),
                ratio = round2(s.ratio),
                resumed_share = s.resumed_share.map(round2),
                handshake_p50_ms = s.handshake_p50_ms.map(round2),
                handshake_p99_ms = s.handshake_p99_ms.map(round2),
                top_asns = %top,
                "traffic spike started"
            );
        }
        SpikeEvent::Ended {
            country: c,
            lasted,
            rate,
            baseline,
            ratio,
            peak_ratio,
        } => info!(
            target: "levee::spike",
            country = country::code(*c),
            lasted_s = round2(*lasted),
            rate = round2(*rate),
            baseline = round2(*baseline),
            ratio = round2(*ratio),
            peak_ratio = round2(*peak_ratio),
            "traffic spike ended"
        ),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the windows until `shutdown`: once a second, reads the shards, advances the
/// windows, publishes the view into `view` and logs spike events.
pub async fn run(
    shards: Arc<Vec<Arc<Shard>>>,
    config: Arc<ArcSwap<Snapshot>>,
    view: Arc<ArcSwap<StatsView>>,
    admission: Arc<crate::admission::Admission>,
    shutdown: CancellationToken,
) {
    let mut auto = crate::admission::auto::AutoController::default();
    let slots = shards.iter().map(|s| s.country_slots()).max().unwrap_or(1);
    let mut windows = Windows::new(slots);
    let mut counters = vec![CountersSnapshot::default(); slots];
    let mut tables: Vec<Vec<super::AsnEntry>> = vec![Vec::new(); shards.len()];
    let mut asn_db: Option<Arc<crate::geo::AsnDb>> = None;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    let mut last = Instant::now();
    // Between ticks: the automatic cap's fast onset (only with `[admission] auto`).
    let mut onset = tokio::time::interval(crate::admission::auto::ONSET_EVERY);
    onset.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
            _ = onset.tick() => {
                let snapshot = config.load();
                let settings = &snapshot.admission.auto;
                if settings.enabled {
                    per_country_into(&shards, &mut counters);
                    let onsets = windows.onsets(&counters, &snapshot.stats);
                    crate::admission::auto::after_onset(&onsets, settings, &admission, &mut auto);
                }
                continue;
            }
        }
        let elapsed = last.elapsed();
        last = Instant::now();
        // A tick that came late covers the seconds it missed.
        let seconds = elapsed.as_secs_f64().round().clamp(1.0, 60.0) as u32;
        let snapshot = config.load_full();
        let db = snapshot.geo.asn_db().cloned();
        if db.as_ref().map(Arc::as_ptr) != asn_db.as_ref().map(Arc::as_ptr) {
            windows.clear_asn_names();
            asn_db = db;
        }
        per_country_into(&shards, &mut counters);
        for (shard, table) in shards.iter().zip(&mut tables) {
            table.clear();
            shard.asns().read_into(table);
        }
        let mut org = |asn: u32, ip: IpAddr| {
            let db = asn_db.as_ref()?;
            match db.asn(ip) {
                (Some(n), Some(name)) if n == asn => Some(name.to_string()),
                _ => None,
            }
        };
        let (next, events) = windows.advance(
            &counters,
            &tables,
            seconds,
            unix_now(),
            &snapshot.stats,
            &mut org,
        );
        for e in &events {
            log_event(e);
        }
        let auto_settings = &snapshot.admission.auto;
        crate::admission::auto::after_tick(&next, auto_settings, &admission, &mut auto);
        view.store(Arc::new(next));
    }
}
