//! The stats windows, on the control thread once a second: per-second history per country,
//! rates over 1/10/60 s, a slow baseline, the spike ratio and spike events.
//!
//! Each tick sums the shards per country (`view::per_country`), takes the difference with
//! the previous tick, and appends it as one second to the country's ring of
//! `HISTORY_SECONDS`. A country gets a ring the first time it has traffic, refusals included
//! (a country whose every connection is refused still gets one).
//!
//! **Rates.** `conn_rate_*` (and `history`) count *opened* connections, as before: what
//! levee took on. A second also keeps what admission control shed (`SHED`: refusals of every
//! reason with `RejectReason::is_refusal`, connections and requests, not a dry run's "would
//! have") and the connections refused before they were opened (`REFUSED`:
//! `RejectReason::before_open`). `shed_rate_1s`/`shed_rate_10s` mirror `conn_rate_1s`/
//! `conn_rate_10s`. The *offered* rate is opened + refused before open: what clients tried.
//!
//! **Baseline.** An exponentially weighted moving average of the offered rate with
//! half-life `[stats] baseline_half_life`, fed with the second that *leaves* the 10 s window
//! (so it lags by 10 s): the baseline never contains the seconds the 10 s rate is compared
//! with, so the first ten seconds of a surge cannot raise their own yardstick, whatever the
//! half-life. Until it has seen `1/alpha` seconds the average is the plain mean of the
//! seconds it has seen (the usual bias correction), so a fresh process has a usable
//! baseline after a few seconds instead of one that starts at 0 and creeps up.
//!
//! **Spike.** `ratio = offered_rate_10s / max(baseline, spike_floor)`. The offered rate, not
//! the opened one: when admission control refuses a surging country's connections before
//! they open, its opened rate falls, but the surge has not ended, and a spike (and any cap
//! that follows it) must not flap off and on. Once the baseline has seen
//! `MIN_BASELINE_SECONDS` (so from the 14th second of the process), a country starts a spike
//! when `ratio >= spike_threshold` and `offered_rate_10s >= spike_min_rate`, and ends it when
//! either falls below `HYSTERESIS` times its limit: one event each way, never one per tick. A surge
//! that lasts is absorbed by the baseline in time (a 10x surge stops being a spike after
//! about a quarter of the half-life).
//!
//! **Resumed share.** Resumed / (full + resumed) handshakes over 10 s; its baseline is the
//! ratio of two moving averages (resumed and all handshakes per second, fed like the
//! baseline), which weighs busy seconds more than a mean of per-second shares would.

use std::net::IpAddr;

use super::asn_window::AsnWindows;
use super::histogram::{HISTOGRAM_BUCKETS, interpolated_quantile_us};
use super::settings::StatsSettings;
use super::shard::CountersSnapshot;
use super::view::{
    CountryView, HISTORY_SECONDS, SHORT_WINDOW, SpikeView, StatsView, TotalRates, has_traffic,
};
use crate::geo::country;
use crate::labels::{CountryIdx, StatusClass};

/// Seconds the baseline must have seen before a spike can start.
pub const MIN_BASELINE_SECONDS: u64 = 3;

/// A spike ends when its ratio or its rate falls below this share of its limit.
pub const HYSTERESIS: f64 = 0.8;

// Fields of one second of a country's history.
const CONN: usize = 0;
const REQ: usize = 1;
const REQ_5XX: usize = 2;
const HS_FULL: usize = 3;
const HS_RESUMED: usize = 4;
const HS_FAILED: usize = 5;
/// Connections and requests shed (`RejectReason::is_refusal`).
const SHED: usize = 6;
/// Connections refused before open (`RejectReason::before_open`).
const REFUSED: usize = 7;
const HIST: usize = 8;
const FIELDS: usize = HIST + HISTOGRAM_BUCKETS;

/// One second of a country: counts by field (100 bytes; a ring of 60 is 5.9 KiB).
type Second = [u32; FIELDS];
/// A sum of seconds.
type Sum = [u64; FIELDS];

/// A spike in progress.
#[derive(Debug, Clone, Copy)]
struct Spike {
    since: f64,
    peak_ratio: f64,
}

/// One country's history and averages.
#[derive(Debug)]
struct CountryWindow {
    ring: Box<[Second; HISTORY_SECONDS]>,
    /// Moving averages, per second: offered connections, resumed handshakes, full + resumed.
    baseline: f64,
    resumed: f64,
    handshakes: f64,
    spike: Option<Spike>,
    /// Connections and requests shed so far (as of the last tick).
    shed_total: u64,
}

impl CountryWindow {
    fn new() -> Self {
        Self {
            ring: Box::new([[0; FIELDS]; HISTORY_SECONDS]),
            baseline: 0.0,
            resumed: 0.0,
            handshakes: 0.0,
            spike: None,
            shed_total: 0,
        }
    }

    /// The sum of the last `n` seconds up to second `t` (seconds before 1 count as 0).
    fn sum(&self, t: u64, n: u64) -> Sum {
        let mut s = [0u64; FIELDS];
        for back in 0..n.min(t) {
            let second = &self.ring[slot(t - back)];
            for (d, &v) in s.iter_mut().zip(second) {
                *d += u64::from(v);
            }
        }
        s
    }
}

fn slot(t: u64) -> usize {
    (t % HISTORY_SECONDS as u64) as usize
}

/// A spike starting or ending, to be logged.
#[derive(Debug, Clone, PartialEq)]
pub enum SpikeEvent {
    /// A country started spiking.
    Started(SpikeView),
    /// A country's spike ended.
    Ended {
        /// The country.
        country: CountryIdx,
        /// How long it lasted, in seconds.
        lasted: f64,
        /// Its offered 10 s rate now.
        rate: f64,
        /// Its baseline now.
        baseline: f64,
        /// Its ratio now.
        ratio: f64,
        /// The highest ratio seen during the spike.
        peak_ratio: f64,
    },
}

/// The windows state, owned by the control thread.
#[derive(Debug)]
pub struct Windows {
    /// Seconds recorded so far.
    t: u64,
    prev: Vec<CountersSnapshot>,
    countries: Vec<Option<CountryWindow>>,
    asns: AsnWindows,
}

impl Windows {
    /// Windows over `slots` country slots.
    pub fn new(slots: usize) -> Self {
        Self {
            t: 0,
            prev: vec![CountersSnapshot::default(); slots],
            countries: (0..slots).map(|_| None).collect(),
            asns: AsnWindows::default(),
        }
    }

    /// Forgets the ASN organisation names (the ASN database changed).
    pub fn clear_asn_names(&mut self) {
        self.asns.clear_orgs();
    }

    /// Records `seconds` (at least 1) seconds of traffic up to the cumulative counters
    /// `now_counters` (per country) and the shards' ASN tables, and computes the view as of
    /// Unix time `now`. A tick that came late spreads its counts evenly over the seconds it
    /// covers. `org` names an ASN from one of its client addresses.
    pub fn advance(
        &mut self,
        now_counters: &[CountersSnapshot],
        asn_tables: &[Vec<super::AsnEntry>],
        seconds: u32,
        now: f64,
        settings: &StatsSettings,
        org: &mut dyn FnMut(u32, IpAddr) -> Option<String>,
    ) -> (StatsView, Vec<SpikeEvent>) {
        let k = seconds.max(1);
        let alpha = 1.0 - 0.5f64.powf(1.0 / settings.baseline_half_life.as_secs_f64().max(1.0));
        // Every connection and request of each second, for the ASN "other" row.
        let mut per_second = vec![(0u64, 0u64); k as usize];
        for (i, cur) in now_counters.iter().enumerate().take(self.prev.len()) {
            let delta = delta(cur, &self.prev[i]);
            if self.countries[i].is_none() && !has_traffic(cur) {
                continue;
            }
            let w = self.countries[i].get_or_insert_with(CountryWindow::new);
            for part in 0..k {
                let t = self.t + u64::from(part) + 1;
                let second = split(&delta, part, k);
                let total = &mut per_second[part as usize];
                total.0 += u64::from(second[CONN]);
                total.1 += u64::from(second[REQ]);
                w.ring[slot(t)] = second;
                feed(w, t, alpha);
            }
            w.shed_total = cur.shed();
            self.prev[i] = cur.clone();
        }
        self.t += u64::from(k);
        self.asns.advance(asn_tables, self.t, k, &per_second, org);
        self.view(now, settings)
    }

    fn view(&mut self, now: f64, settings: &StatsSettings) -> (StatsView, Vec<SpikeEvent>) {
        let t = self.t;
        let mut view = StatsView {
            at: now,
            ticks: t,
            ..StatsView::default()
        };
        let mut events = Vec::new();
        for (i, w) in self.countries.iter_mut().enumerate() {
            let Some(w) = w else { continue };
            let c = CountryIdx(u16::try_from(i).unwrap_or(0));
            let cv = country_view(c, w, t, settings);
            add_totals(&mut view.totals, &cv);
            if let Some(e) = spike_transition(w, &cv, t, now, settings) {
                events.push(e);
            }
            view.countries.push(CountryView {
                spiking: w.spike.is_some(),
                ..cv
            });
        }
        view.countries.sort_by(|a, b| {
            b.conn_rate_10s
                .total_cmp(&a.conn_rate_10s)
                .then(a.country.0.cmp(&b.country.0))
        });
        view.asns = self.asns.top(t);
        for cv in view.countries.iter().filter(|c| c.spiking) {
            let since = self.countries[usize::from(cv.country.0)]
                .as_ref()
                .and_then(|w| w.spike)
                .map_or(now, |s| s.since);
            view.spikes
                .push(spike_view(cv, since, self.asns.top_of(cv.country, t, 3)));
        }
        for e in &mut events {
            if let SpikeEvent::Started(s) = e {
                s.top_asns = self.asns.top_of(s.country, t, 3);
            }
        }
        (view, events)
    }
}

/// A country whose spike would start at the next tick if the second in progress ended now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Onset {
    /// The country.
    pub country: CountryIdx,
    /// Its projected offered 10 s rate: the last 9 seconds plus the second in progress.
    pub rate: f64,
    /// Its baseline.
    pub baseline: f64,
    /// `rate / max(baseline, spike_floor)`.
    pub ratio: f64,
}

impl Windows {
    /// The countries not spiking whose spike would start at the next tick if the second in
    /// progress ended now (`now_counters`: cumulative, as for `advance`): the same rule on
    /// the offered 10 s rate projected from the last 9 seconds and the offered connections
    /// since the last tick. That partial second only grows until the tick, so the tick flags
    /// such a spike in all but corner cases (the baseline moves by the second leaving the
    /// window). For the automatic cap's fast onset (`admission::auto`), between ticks.
    pub fn onsets(
        &self,
        now_counters: &[CountersSnapshot],
        settings: &StatsSettings,
    ) -> Vec<Onset> {
        let next = self.t + 1;
        if !baseline_ready(next) {
            return Vec::new();
        }
        let mut found = Vec::new();
        for (i, cur) in now_counters.iter().enumerate().take(self.prev.len()) {
            let prev = &self.prev[i];
            let partial = cur.connections.saturating_sub(prev.connections)
                + cur
                    .refused_before_open()
                    .saturating_sub(prev.refused_before_open());
            if partial == 0 {
                continue;
            }
            let (last, baseline) = match &self.countries[i] {
                Some(w) if w.spike.is_some() => continue,
                Some(w) => {
                    let s = w.sum(self.t, SHORT_WINDOW - 1);
                    (s[CONN] + s[REFUSED], w.baseline)
                }
                None => (0, 0.0),
            };
            let rate = (last + partial) as f64 / SHORT_WINDOW as f64;
            let ratio = rate / baseline.max(settings.spike_floor);
            if ratio >= settings.spike_threshold && rate >= settings.spike_min_rate {
                found.push(Onset {
                    country: CountryIdx(u16::try_from(i).unwrap_or(0)),
                    rate,
                    baseline,
                    ratio,
                });
            }
        }
        found
    }
}

/// The counts of `cur - prev` as one second (saturating: a racy read never goes negative).
fn delta(cur: &CountersSnapshot, prev: &CountersSnapshot) -> Sum {
    let d = |a: u64, b: u64| a.saturating_sub(b);
    let mut s = [0u64; FIELDS];
    s[CONN] = d(cur.connections, prev.connections);
    s[REQ] = cur
        .requests
        .iter()
        .zip(&prev.requests)
        .map(|(a, b)| d(*a, *b))
        .sum();
    let five = StatusClass::ServerError as usize;
    s[REQ_5XX] = d(cur.requests[five], prev.requests[five]);
    s[HS_FULL] = d(cur.handshakes[0], prev.handshakes[0]);
    s[HS_RESUMED] = d(cur.handshakes[1], prev.handshakes[1]);
    s[HS_FAILED] = d(cur.handshakes[2], prev.handshakes[2]);
    s[SHED] = d(cur.shed(), prev.shed());
    s[REFUSED] = d(cur.refused_before_open(), prev.refused_before_open());
    let (now_b, prev_b) = (&cur.handshake_time.buckets, &prev.handshake_time.buckets);
    for (j, (a, b)) in now_b.iter().zip(prev_b).enumerate() {
        s[HIST + j] = d(*a, *b);
    }
    s
}

/// Part `part` of `k` of `sum`, so the `k` parts add up to `sum` exactly.
fn split(sum: &Sum, part: u32, k: u32) -> Second {
    let (part, k) = (u64::from(part), u64::from(k));
    let mut s = [0u32; FIELDS];
    for (d, &v) in s.iter_mut().zip(sum) {
        let share = v * (part + 1) / k - v * part / k;
        *d = u32::try_from(share).unwrap_or(u32::MAX);
    }
    s
}

/// Feeds the averages with the second that just left the 10 s window, if any.
fn feed(w: &mut CountryWindow, t: u64, alpha: f64) {
    if t <= SHORT_WINDOW {
        return;
    }
    let fed = t - SHORT_WINDOW;
    // The plain mean of the seconds seen until 1/alpha of them, then the moving average;
    // but while the country spikes, only the moving average: a young plain mean would
    // swallow a surge within seconds (a surge a minute after start would be flagged for
    // a few seconds only), while the half-life is what the operator chose.
    let a = if w.spike.is_some() {
        alpha
    } else {
        alpha.max(1.0 / fed as f64)
    };
    let old = w.ring[slot(fed)];
    let ewma = |avg: &mut f64, x: u32| *avg += a * (f64::from(x) - *avg);
    ewma(&mut w.baseline, offered(&old));
    ewma(&mut w.resumed, old[HS_RESUMED]);
    ewma(
        &mut w.handshakes,
        old[HS_FULL].saturating_add(old[HS_RESUMED]),
    );
}

/// The offered connections of one second: opened plus refused before open.
fn offered(second: &Second) -> u32 {
    second[CONN].saturating_add(second[REFUSED])
}

fn baseline_ready(t: u64) -> bool {
    t >= SHORT_WINDOW + MIN_BASELINE_SECONDS
}

fn country_view(c: CountryIdx, w: &CountryWindow, t: u64, settings: &StatsSettings) -> CountryView {
    let n10 = SHORT_WINDOW.min(t).max(1) as f64;
    let n60 = (HISTORY_SECONDS as u64).min(t).max(1) as f64;
    let s10 = w.sum(t, SHORT_WINDOW);
    let s60 = w.sum(t, HISTORY_SECONDS as u64);
    let offered10 = (s10[CONN] + s10[REFUSED]) as f64 / n10;
    let last = |field: usize| {
        if t > 0 {
            f64::from(w.ring[slot(t)][field])
        } else {
            0.0
        }
    };
    let handshakes10 = s10[HS_FULL] + s10[HS_RESUMED];
    let ms = |q| interpolated_quantile_us(&s60[HIST..], q).map(|us| us / 1000.0);
    let ready = baseline_ready(t);
    let history = (0..HISTORY_SECONDS as u64)
        .rev()
        .map(|back| {
            if back < t {
                w.ring[slot(t - back)][CONN]
            } else {
                0
            }
        })
        .collect();
    CountryView {
        country: c,
        code: country::code(c),
        conn_rate_1s: last(CONN),
        conn_rate_10s: s10[CONN] as f64 / n10,
        conn_rate_60s: s60[CONN] as f64 / n60,
        offered_rate_10s: offered10,
        shed_rate_1s: last(SHED),
        shed_rate_10s: s10[SHED] as f64 / n10,
        shed_total: w.shed_total,
        req_rate_10s: s10[REQ] as f64 / n10,
        baseline: w.baseline,
        spike_ratio: if ready {
            offered10 / w.baseline.max(settings.spike_floor)
        } else {
            0.0
        },
        spiking: false,
        resumed_share: (handshakes10 > 0).then(|| s10[HS_RESUMED] as f64 / handshakes10 as f64),
        resumed_share_baseline: (t > SHORT_WINDOW && w.handshakes > 1e-9)
            .then(|| (w.resumed / w.handshakes).clamp(0.0, 1.0)),
        handshake_p50_ms: ms(0.5),
        handshake_p99_ms: ms(0.99),
        share_5xx: if s10[REQ] > 0 {
            s10[REQ_5XX] as f64 / s10[REQ] as f64
        } else {
            0.0
        },
        history,
    }
}

fn add_totals(t: &mut TotalRates, c: &CountryView) {
    t.conn_rate_1s += c.conn_rate_1s;
    t.conn_rate_10s += c.conn_rate_10s;
    t.conn_rate_60s += c.conn_rate_60s;
    t.req_rate_10s += c.req_rate_10s;
    t.shed_rate_1s += c.shed_rate_1s;
    t.shed_rate_10s += c.shed_rate_10s;
}

/// Starts or ends `w`'s spike from its view `cv`; the event, if the state changed.
fn spike_transition(
    w: &mut CountryWindow,
    cv: &CountryView,
    t: u64,
    now: f64,
    s: &StatsSettings,
) -> Option<SpikeEvent> {
    let (rate, ratio) = (cv.offered_rate_10s, cv.spike_ratio);
    match &mut w.spike {
        None if baseline_ready(t) && ratio >= s.spike_threshold && rate >= s.spike_min_rate => {
            w.spike = Some(Spike {
                since: now,
                peak_ratio: ratio,
            });
            Some(SpikeEvent::Started(spike_view(cv, now, Vec::new())))
        }
        None => None,
        Some(spike)
            if ratio < s.spike_threshold * HYSTERESIS || rate < s.spike_min_rate * HYSTERESIS =>
        {
            let ended = SpikeEvent::Ended {
                country: cv.country,
                lasted: now - spike.since,
                rate,
                baseline: cv.baseline,
                ratio,
                peak_ratio: spike.peak_ratio,
            };
            w.spike = None;
            Some(ended)
        }
        Some(spike) => {
            spike.peak_ratio = spike.peak_ratio.max(ratio);
            None
        }
    }
}

fn spike_view(cv: &CountryView, since: f64, top_asns: Vec<super::AsnView>) -> SpikeView {
    SpikeView {
        country: cv.country,
        since,
        rate: cv.offered_rate_10s,
        baseline: cv.baseline,
        ratio: cv.spike_ratio,
        resumed_share: cv.resumed_share,
        handshake_p50_ms: cv.handshake_p50_ms,
        handshake_p99_ms: cv.handshake_p99_ms,
        top_asns,
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
