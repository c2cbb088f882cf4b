//! The stats side of the control thread's tick: [`Ticker`] reads the shards and advances the
//! windows (`window`) once a second, or tells which spike would start now (the fast onset);
//! [`log_event`] logs a spike event. The loop that drives it, and acts on what it finds
//! (the automatic caps), is `control::windows`. Workers never wait for it.

use std::net::IpAddr;
use std::sync::Arc;

use tracing::{info, warn};

use super::asn::AsnEntry;
use super::settings::StatsSettings;
use super::shard::{CountersSnapshot, Shard};
use super::view::{StatsView, per_country_into};
use super::window::{Onset, SpikeEvent, Windows};
use crate::geo::{AsnDb, country};

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

/// The windows and the buffers they are fed from, owned by the control thread.
#[derive(Debug)]
pub struct Ticker {
    windows: Windows,
    counters: Vec<CountersSnapshot>,
    tables: Vec<Vec<AsnEntry>>,
    /// The ASN database the windows' organisation names came from.
    asn_db: Option<Arc<AsnDb>>,
}

impl Ticker {
    /// A ticker over `shards` (one per worker), with empty windows.
    pub fn new(shards: &[Arc<Shard>]) -> Self {
        let slots = shards.iter().map(|s| s.country_slots()).max().unwrap_or(1);
        Self {
            windows: Windows::new(slots),
            counters: vec![CountersSnapshot::default(); slots],
            tables: vec![Vec::new(); shards.len()],
            asn_db: None,
        }
    }

    /// Reads the shards and advances the windows by `seconds` (a late tick covers the
    /// seconds it missed): the view to publish and the spike events to log. `asn_db` names
    /// the top ASNs' organisations (a new database forgets the names taken from the old).
    pub fn tick(
        &mut self,
        shards: &[Arc<Shard>],
        seconds: u32,
        settings: &StatsSettings,
        asn_db: Option<&Arc<AsnDb>>,
    ) -> (StatsView, Vec<SpikeEvent>) {
        if asn_db.map(Arc::as_ptr) != self.asn_db.as_ref().map(Arc::as_ptr) {
            self.windows.clear_asn_names();
            self.asn_db = asn_db.cloned();
        }
        per_country_into(shards, &mut self.counters);
        for (shard, table) in shards.iter().zip(&mut self.tables) {
            table.clear();
            shard.asns().read_into(table);
        }
        let db = self.asn_db.as_ref();
        let mut org = |asn: u32, ip: IpAddr| match db?.asn(ip) {
            (Some(n), Some(name)) if n == asn => Some(name.to_string()),
            _ => None,
        };
        self.windows.advance(
            &self.counters,
            &self.tables,
            seconds,
            unix_now(),
            settings,
            &mut org,
        )
    }

    /// The spikes that would start if the second in progress ended now (the fast onset).
    pub fn onsets(&mut self, shards: &[Arc<Shard>], settings: &StatsSettings) -> Vec<Onset> {
        per_country_into(shards, &mut self.counters);
        self.windows.onsets(&self.counters, settings)
    }
}
