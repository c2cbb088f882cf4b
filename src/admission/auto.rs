//! `[admission] auto`: while a country's traffic spike is flagged AND the proxy is near its
//! handshake capacity, cap that country's new connections to its baseline x
//! `auto_headroom`, until the spike ends.
//!
//! "Near capacity" is a fact, not a guess: a TLS handshake had to wait for a slot of
//! `max_handshakes_in_flight` within the last [`NEAR_CAPACITY_MS`] (the key `auto` needs).
//! The spike and the baseline come from the stats windows, which measure the *offered*
//! connection rate (opened plus refused before opening), so a cap does not end its own
//! spike by refusing connections.
//!
//! Two halves: [`AutoCaps`], the caps the workers check (one atomic per country, plus a
//! GCRA bucket per capped country; the check is one relaxed load when nothing is capped),
//! and [`AutoController`], run by the control thread once a second after the windows,
//! which starts and stops caps and logs each start and stop once (target
//! `levee::admission`). With `dry_run` the caps are set and checked the same way, but a
//! connection over its cap is only counted (`auto_cap_dry_run`) and served.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::gcra::{Cell, Clock, Rate};
use super::settings::AutoSettings;
use super::shares::FairShares;
use crate::geo::country::{self, COUNTRY_COUNT};
use crate::stats::{CountryIdx, Onset, StatsView};

/// A handshake wait within this many milliseconds means "near handshake capacity".
pub const NEAR_CAPACITY_MS: u64 = 2000;
/// Smallest cap, new connections a second (a country with no baseline is not shut out).
pub const MIN_CAP: f64 = 1.0;
/// How often the control thread looks for a fast onset between stats ticks (reading the
/// shards' per-country counters costs a few microseconds).
pub const ONSET_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
/// Seconds after a country's cap ended during which it gets no fast onset.
pub const ONSET_QUIET_S: f64 = 10.0;

/// The caps the workers check.
#[derive(Debug)]
pub struct AutoCaps {
    clock: Clock,
    /// Cap per country slot as a GCRA interval in nanoseconds; 0: not capped.
    intervals: Box<[AtomicU64]>,
    cells: Box<[Cell]>,
    active: AtomicUsize,
}

impl Default for AutoCaps {
    fn default() -> Self {
        Self {
            clock: Clock::default(),
            intervals: (0..COUNTRY_COUNT).map(|_| AtomicU64::new(0)).collect(),
            cells: (0..COUNTRY_COUNT).map(|_| Cell::default()).collect(),
            active: AtomicUsize::new(0),
        }
    }
}

/// What a capped country's new connection gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapCheck {
    /// Under its cap, or not capped.
    Pass,
    /// Over its cap: refuse it.
    Over,
}

impl AutoCaps {
    /// Whether country `c` has a cap in force.
    pub fn is_capped(&self, c: CountryIdx) -> bool {
        self.active.load(Ordering::Relaxed) != 0
            && self
                .intervals
                .get(usize::from(c.0))
                .is_some_and(|a| a.load(Ordering::Relaxed) != 0)
    }

    /// Takes a token from country `c`'s cap, if it has one.
    pub fn check(&self, c: CountryIdx) -> CapCheck {
        if self.active.load(Ordering::Relaxed) == 0 {
            return CapCheck::Pass;
        }
        let i = usize::from(c.0);
        let interval = self
            .intervals
            .get(i)
            .map_or(0, |a| a.load(Ordering::Relaxed));
        let Some(cell) = self.cells.get(i).filter(|_| interval != 0) else {
            return CapCheck::Pass;
        };
        let rate = Rate {
            interval_ns: interval,
            burst: burst_of(interval),
        };
        match cell.take(rate, self.clock.now_ns()) {
            Ok(()) => CapCheck::Pass,
            Err(_) => CapCheck::Over,
        }
    }

    fn set(&self, c: CountryIdx, per_sec: Option<f64>) {
        let Some(slot) = self.intervals.get(usize::from(c.0)) else {
            return;
        };
        let interval = per_sec.map_or(0, |r| Rate::per_second(r, 1).interval_ns);
        let before = slot.swap(interval, Ordering::Relaxed);
        match (before == 0, interval == 0) {
            (true, false) => {
                self.active.fetch_add(1, Ordering::Relaxed);
            }
            (false, true) => {
                self.active.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// One second's worth of tokens (at least one) as the burst of a cap.
fn burst_of(interval_ns: u64) -> u32 {
    let per_sec = 1e9 / interval_ns.max(1) as f64;
    per_sec.ceil().clamp(1.0, 1e7) as u32
}

/// A cap in force.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveCap {
    /// The capped country.
    pub country: CountryIdx,
    /// New connections a second it is held to.
    pub cap_per_sec: f64,
    /// Its baseline when the cap started.
    pub baseline: f64,
    /// Its spike ratio when the cap started.
    pub ratio: f64,
    /// Unix time the cap started.
    pub since: f64,
    /// Whether it only counts (dry run).
    pub dry_run: bool,
}

/// A start or stop, for the log and the tests.
#[derive(Debug, Clone, PartialEq)]
pub enum CapEvent {
    /// A cap started.
    Started(ActiveCap),
    /// A cap ended (its spike ended, or `auto` was turned off).
    Ended(ActiveCap),
}

/// Starts and stops caps from the stats view; lives on the control thread. Also remembers
/// each spiking country's baseline when its spike was flagged (its fair-share weight).
#[derive(Debug, Default)]
pub struct AutoController {
    active: BTreeMap<u16, ActiveCap>,
    frozen: BTreeMap<u16, f64>,
    /// Unix time each country's last cap ended: no fast onset for it within `ONSET_QUIET_S`.
    ended_at: BTreeMap<u16, f64>,
}

impl AutoController {
    /// The caps in force.
    pub fn active(&self) -> impl Iterator<Item = &ActiveCap> {
        self.active.values()
    }

    /// One tick: caps spiking countries while near capacity, lifts caps whose spike ended.
    pub fn tick(
        &mut self,
        view: &StatsView,
        settings: &AutoSettings,
        shares: &FairShares,
        caps: &AutoCaps,
        now_unix: f64,
    ) -> Vec<CapEvent> {
        let mut events = Vec::new();
        let spiking = |c: CountryIdx| view.spikes.iter().any(|s| s.country == c);
        let ended: Vec<u16> = self
            .active
            .iter()
            .filter(|(_, cap)| {
                !settings.enabled || cap.dry_run != settings.dry_run || !spiking(cap.country)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in ended {
            if let Some(cap) = self.active.remove(&k) {
                caps.set(cap.country, None);
                self.ended_at.insert(k, now_unix);
                events.push(CapEvent::Ended(cap));
            }
        }
        if !settings.enabled || !shares.saturated_within(NEAR_CAPACITY_MS) {
            return events;
        }
        for spike in &view.spikes {
            if self.active.contains_key(&spike.country.0) {
                continue;
            }
            let (baseline, ratio) = (spike.baseline, spike.ratio);
            events.push(self.start(spike.country, baseline, ratio, settings, caps, now_unix));
        }
        events
    }

    /// Starts a cap of `baseline x headroom` (at least `MIN_CAP`) on `country`.
    fn start(
        &mut self,
        country: CountryIdx,
        baseline: f64,
        ratio: f64,
        settings: &AutoSettings,
        caps: &AutoCaps,
        now_unix: f64,
    ) -> CapEvent {
        let cap = ActiveCap {
            country,
            cap_per_sec: (baseline * settings.headroom).max(MIN_CAP),
            baseline,
            ratio,
            since: now_unix,
            dry_run: settings.dry_run,
        };
        caps.set(country, Some(cap.cap_per_sec));
        self.active.insert(country.0, cap.clone());
        CapEvent::Started(cap)
    }

    /// The fast onset, between stats ticks: caps at once each country of `onsets` (whose
    /// spike the next tick would flag, see `Windows::onsets`) while near capacity, instead of
    /// up to a second later at the tick, which then keeps the cap while the spike lasts.
    /// A country whose cap ended within `ONSET_QUIET_S` waits for the tick, so a cap the tick
    /// did not confirm cannot flap.
    pub fn onset(
        &mut self,
        onsets: &[Onset],
        settings: &AutoSettings,
        shares: &FairShares,
        caps: &AutoCaps,
        now_unix: f64,
    ) -> Vec<CapEvent> {
        if !settings.enabled || !shares.saturated_within(NEAR_CAPACITY_MS) {
            return Vec::new();
        }
        let mut events = Vec::new();
        for o in onsets {
            let k = o.country.0;
            let quiet = self
                .ended_at
                .get(&k)
                .is_some_and(|&at| now_unix - at < ONSET_QUIET_S);
            if self.active.contains_key(&k) || quiet {
                continue;
            }
            events.push(self.start(o.country, o.baseline, o.ratio, settings, caps, now_unix));
        }
        events
    }
}

/// The control thread's admission work between stats ticks (every `ONSET_EVERY`): the fast
/// onset of caps for the countries of `onsets`, logged and published like the tick's.
pub fn after_onset(
    onsets: &[Onset],
    settings: &AutoSettings,
    admission: &super::Admission,
    ctl: &mut AutoController,
) {
    let now = crate::stats::unix_now();
    let events = ctl.onset(onsets, settings, &admission.shares, &admission.auto, now);
    publish(&events, admission, ctl);
}

/// Logs `events` and, if there are any, publishes the caps in force.
fn publish(events: &[CapEvent], admission: &super::Admission, ctl: &AutoController) {
    for e in events {
        log_event(e);
    }
    if !events.is_empty() {
        let caps: Vec<ActiveCap> = ctl.active().cloned().collect();
        admission.auto_view.store(std::sync::Arc::new(caps));
    }
}

/// The control thread's admission work after each stats tick: the fair-share weights from
/// the new baselines, then the automatic caps (events logged once each). The caps in
/// force are published in `admission.auto_view` for `/stats` and `/metrics`.
pub fn after_tick(
    view: &StatsView,
    settings: &AutoSettings,
    admission: &super::Admission,
    ctl: &mut AutoController,
) {
    ctl.frozen
        .retain(|c, _| view.spikes.iter().any(|s| s.country.0 == *c));
    for c in view.countries.iter().filter(|c| c.spiking) {
        ctl.frozen.entry(c.country.0).or_insert(c.baseline);
    }
    let frozen = &ctl.frozen;
    let baselines = view.countries.iter().map(|c| {
        let at_start = frozen.get(&c.country.0).copied().unwrap_or(f64::INFINITY);
        (c.country, c.baseline.min(at_start))
    });
    admission.shares.set_baselines(baselines);
    let events = ctl.tick(
        view,
        settings,
        &admission.shares,
        &admission.auto,
        crate::stats::unix_now(),
    );
    publish(&events, admission, ctl);
}

/// Logs a cap event once, on `levee::admission`.
pub fn log_event(e: &CapEvent) {
    match e {
        CapEvent::Started(c) => tracing::warn!(
            target: "levee::admission",
            country = country::code(c.country),
            cap_per_sec = round2(c.cap_per_sec),
            baseline = round2(c.baseline),
            ratio = round2(c.ratio),
            dry_run = c.dry_run,
            "automatic admission cap started"
        ),
        CapEvent::Ended(c) => tracing::info!(
            target: "levee::admission",
            country = country::code(c.country),
            cap_per_sec = round2(c.cap_per_sec),
            dry_run = c.dry_run,
            "automatic admission cap ended"
        ),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stats::SpikeView;

    fn view_with_spike(c: Option<CountryIdx>) -> StatsView {
        let mut v = StatsView::default();
        if let Some(country) = c {
            v.spikes.push(SpikeView {
                country,
                since: 0.0,
                rate: 100.0,
                baseline: 10.0,
                ratio: 10.0,
                resumed_share: None,
                handshake_p50_ms: None,
                handshake_p99_ms: None,
                top_asns: Vec::new(),
            });
        }
        v
    }

    #[test]
    fn starts_only_near_capacity_and_stops_with_the_spike() {
        let (caps, shares) = (AutoCaps::default(), FairShares::default());
        let settings = AutoSettings {
            enabled: true,
            dry_run: false,
            headroom: 2.0,
        };
        let br = country::index_of("BR");
        let mut ctl = AutoController::default();
        let spike = view_with_spike(Some(br));
        assert!(ctl.tick(&spike, &settings, &shares, &caps, 1.0).is_empty());
        assert_eq!(caps.check(br), CapCheck::Pass);
        shares.mark_saturated();
        let events = ctl.tick(&spike, &settings, &shares, &caps, 2.0);
        assert!(matches!(&events[..], [CapEvent::Started(c)] if c.cap_per_sec == 20.0));
        assert!(
            ctl.tick(&spike, &settings, &shares, &caps, 3.0).is_empty(),
            "once"
        );
        let passed = (0..100)
            .filter(|_| caps.check(br) == CapCheck::Pass)
            .count();
        assert_eq!(passed, 20, "a second's worth of the cap");
        let de = country::index_of("DE");
        assert_eq!(caps.check(de), CapCheck::Pass);
        let events = ctl.tick(&view_with_spike(None), &settings, &shares, &caps, 4.0);
        assert!(matches!(&events[..], [CapEvent::Ended(_)]));
        assert_eq!(caps.check(br), CapCheck::Pass);
        assert_eq!(ctl.active().count(), 0);
    }
    #[test]
    fn fast_onset_caps_at_once_near_capacity_and_never_flaps() {
        let (caps, shares) = (AutoCaps::default(), FairShares::default());
        let settings = AutoSettings {
            enabled: true,
            dry_run: false,
            headroom: 2.0,
        };
        let br = country::index_of("BR");
        let onset = [Onset {
            country: br,
            rate: 500.0,
            baseline: 10.0,
            ratio: 50.0,
        }];
        let mut ctl = AutoController::default();
        assert!(
            ctl.onset(&onset, &settings, &shares, &caps, 1.0).is_empty(),
            "not near capacity"
        );
        shares.mark_saturated();
        let events = ctl.onset(&onset, &settings, &shares, &caps, 1.1);
        assert!(matches!(&events[..], [CapEvent::Started(c)] if c.cap_per_sec == 20.0));
        assert!(
            ctl.onset(&onset, &settings, &shares, &caps, 1.2).is_empty(),
            "once"
        );
        // The tick keeps it while the spike is flagged, ends it when it is not.
        assert!(
            ctl.tick(&view_with_spike(Some(br)), &settings, &shares, &caps, 2.0)
                .is_empty()
        );
        let events = ctl.tick(&view_with_spike(None), &settings, &shares, &caps, 3.0);
        assert!(matches!(&events[..], [CapEvent::Ended(_)]));
        // No fast onset again within the quiet period; after it, there is.
        let quiet = ctl.onset(&onset, &settings, &shares, &caps, 3.0 + ONSET_QUIET_S - 1.0);
        assert!(quiet.is_empty());
        assert_eq!(caps.check(br), CapCheck::Pass);
        let events = ctl.onset(&onset, &settings, &shares, &caps, 3.0 + ONSET_QUIET_S);
        assert!(matches!(&events[..], [CapEvent::Started(_)]));
    }
}
