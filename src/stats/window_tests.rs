//! Window tests: rates, the lagged baseline, the spike ratio with its floor, spike events with
//! hysteresis, resumed share, handshake quantiles, late ticks, and shed traffic (its rates,
//! and the offered rate the spike detector uses).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;
use crate::admission::RejectReason;
use crate::stats::HandshakeKind;

// Checked against `country::index_of` in `the_constants_are_the_right_countries`.
const BR: CountryIdx = CountryIdx(31);
const DE: CountryIdx = CountryIdx(57);
const JP: CountryIdx = CountryIdx(114);

#[test]
fn the_constants_are_the_right_countries() {
    assert_eq!([BR, DE, JP], ["BR", "DE", "JP"].map(country::index_of),);
}

/// Cumulative counters fed to the windows second by second.
struct Feed {
    counters: Vec<CountersSnapshot>,
    windows: Windows,
    settings: StatsSettings,
    now: f64,
    events: Vec<SpikeEvent>,
}

impl Feed {
    fn new(settings: StatsSettings) -> Self {
        Self {
            counters: vec![CountersSnapshot::default(); country::COUNTRY_COUNT],
            windows: Windows::new(country::COUNTRY_COUNT),
            settings,
            now: 1_000.0,
            events: Vec::new(),
        }
    }

    fn conns(&mut self, c: CountryIdx, n: u64) {
        self.counters[usize::from(c.0)].connections += n;
    }

    fn refused(&mut self, c: CountryIdx, reason: RejectReason, n: u64) {
        self.counters[usize::from(c.0)].rejected[reason as usize] += n;
    }

    fn handshakes(&mut self, c: CountryIdx, kind: HandshakeKind, n: u64, bucket: usize) {
        let s = &mut self.counters[usize::from(c.0)];
        s.handshakes[kind as usize] += n;
        s.handshake_time.buckets[bucket] += n;
    }

    fn requests(&mut self, c: CountryIdx, ok: u64, errors: u64) {
        let s = &mut self.counters[usize::from(c.0)];
        s.requests[1] += ok;
        s.requests[4] += errors;
    }

    /// Advances `seconds` in one tick; returns the view.
    fn tick_n(&mut self, seconds: u32) -> StatsView {
        self.now += f64::from(seconds);
        let (view, events) = self.windows.advance(
            &self.counters,
            &[],
            seconds,
            self.now,
            &self.settings,
            &mut |_, _| None,
        );
        self.events.extend(events);
        view
    }

    fn tick(&mut self) -> StatsView {
        self.tick_n(1)
    }

    /// `seconds` seconds with `rates` new connections per second per country.
    fn steady(&mut self, seconds: u32, rates: &[(CountryIdx, u64)]) -> StatsView {
        let mut view = StatsView::default();
        for _ in 0..seconds {
            for &(c, n) in rates {
                self.conns(c, n);
            }
            view = self.tick();
        }
        view
    }

    fn started(&self) -> Vec<CountryIdx> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SpikeEvent::Started(s) => Some(s.country),
                SpikeEvent::Ended { .. } => None,
            })
            .collect()
    }

    fn ended(&self) -> Vec<CountryIdx> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SpikeEvent::Ended { country, .. } => Some(*country),
                SpikeEvent::Started(_) => None,
            })
            .collect()
    }
}

fn short_half_life() -> StatsSettings {
    StatsSettings {
        baseline_half_life: Duration::from_secs(5),
        ..StatsSettings::default()
    }
}

#[test]
fn rates_history_and_baseline_of_steady_traffic() {
    let mut f = Feed::new(StatsSettings::default());
    let v = f.steady(20, &[(BR, 5)]);
    let br = v.country(BR).unwrap();
    assert_eq!(
        (br.code, br.conn_rate_1s, br.conn_rate_10s),
        ("BR", 5.0, 5.0)
    );
    assert_eq!(br.conn_rate_60s, 5.0, "divided by the 20 s seen so far");
    assert!((br.baseline - 5.0).abs() < 1e-9, "{}", br.baseline);
    assert!((br.spike_ratio - 1.0).abs() < 1e-9);
    assert_eq!(br.history.len(), HISTORY_SECONDS);
    assert_eq!(br.history.iter().filter(|&&n| n == 5).count(), 20);
    assert_eq!(br.history[HISTORY_SECONDS - 21], 0);
    assert_eq!(v.totals.conn_rate_10s, 5.0);
    assert!(v.country(DE).is_none(), "no traffic, no row");
    assert!(f.events.is_empty());
}

#[test]
fn a_burst_from_one_country_flags_it_once_and_clears() {
    let mut f = Feed::new(short_half_life());
    let steady = [(BR, 5), (DE, 5), (JP, 5)];
    f.steady(14, &steady);
    assert!(f.events.is_empty());
    // 10x from BR: rate_10s = 5 + 4.5 k after k seconds; the ratio reaches 5 at k = 5.
    for k in 1..=8 {
        let v = f.steady(1, &[(BR, 50), (DE, 5), (JP, 5)]);
        let br = v.country(BR).unwrap();
        assert_eq!(br.spiking, k >= 5, "second {k}: {br:?}");
        assert!(
            (br.baseline - 5.0).abs() < 1e-9,
            "the lag keeps the burst out"
        );
        if k == 5 {
            assert_eq!(v.spikes.len(), 1);
            let s = &v.spikes[0];
            assert_eq!((s.country, s.rate, s.baseline), (BR, 27.5, 5.0));
            assert_eq!(s.ratio, 5.5);
        }
    }
    assert_eq!(f.started(), vec![BR]);
    // Back to steady: it ends once, when the rate falls under 80% of spike_min_rate.
    for _ in 0..12 {
        f.steady(1, &steady);
    }
    assert_eq!(f.started(), vec![BR], "no second event");
    assert_eq!(f.ended(), vec![BR]);
    let v = f.tick();
    assert!(v.spikes.is_empty() && v.countries.iter().all(|c| !c.spiking));
}

#[test]
fn hysteresis_keeps_a_spike_until_well_under_the_limits() {
    let settings = StatsSettings::default(); // threshold 5, min rate 20
    let mut w = CountryWindow::new();
    let t = 100;
    let mut step = |ratio: f64, rate: f64| {
        let mut cv = country_view(BR, &w, t, &settings);
        cv.spike_ratio = ratio;
        cv.offered_rate_10s = rate;
        let e = spike_transition(&mut w, &cv, t, 0.0, &settings);
        (e, w.spike.is_some())
    };
    assert_eq!(step(4.9, 100.0), (None, false));
    assert_eq!(step(50.0, 19.0), (None, false), "under spike_min_rate");
    let (e, on) = step(5.5, 30.0);
    assert!(matches!(e, Some(SpikeEvent::Started(_))) && on);
    assert_eq!(step(4.5, 30.0), (None, true));
    assert_eq!(step(4.01, 16.5), (None, true));
    assert_eq!(step(9.0, 30.0), (None, true));
    let (e, on) = step(3.9, 30.0);
    match e {
        Some(SpikeEvent::Ended { peak_ratio, .. }) => assert_eq!(peak_ratio, 9.0),
        other => panic!("{other:?}"),
    }
    assert!(!on);
    // The rate falling under 80% of spike_min_rate ends it too.
    assert!(matches!(step(6.0, 30.0).0, Some(SpikeEvent::Started(_))));
    assert!(matches!(step(6.0, 15.9).0, Some(SpikeEvent::Ended { .. })));
}

#[test]
fn the_floor_bounds_the_ratio_of_a_country_from_nothing() {
    let settings = StatsSettings {
        spike_floor: 2.0,
        ..StatsSettings::default()
    };
    let mut f = Feed::new(settings);
    f.steady(20, &[(DE, 5)]);
    let v = f.steady(10, &[(DE, 5), (JP, 30)]);
    let jp = v.country(JP).unwrap();
    assert_eq!((jp.baseline, jp.conn_rate_10s), (0.0, 30.0));
    assert_eq!(jp.spike_ratio, 15.0, "30 / max(0, floor 2)");
    assert_eq!(f.started(), vec![JP]);
}

#[test]
fn nothing_spikes_before_the_baseline_has_data() {
    let mut f = Feed::new(StatsSettings::default());
    let v = f.steady(SHORT_WINDOW as u32 + 2, &[(BR, 500)]);
    assert_eq!(v.country(BR).unwrap().spike_ratio, 0.0);
    assert!(f.events.is_empty());
}

#[test]
fn resumed_share_quantiles_and_5xx_share() {
    let mut f = Feed::new(short_half_life());
    // 20 s: 3 resumed of 4 handshakes per second, 500 µs .. 1 ms; 1 in 10 requests a 5xx.
    for _ in 0..20 {
        f.conns(BR, 4);
        f.handshakes(BR, HandshakeKind::Resumed, 3, 3);
        f.handshakes(BR, HandshakeKind::Full, 1, 3);
        f.handshakes(BR, HandshakeKind::Failed, 1, 0);
        f.requests(BR, 9, 1);
        f.tick();
    }
    let v = f.tick();
    let br = v.country(BR).unwrap();
    assert_eq!(br.resumed_share, Some(0.75));
    assert!((br.resumed_share_baseline.unwrap() - 0.75).abs() < 1e-9);
    // 20 of 100 handshakes in the first bucket (the failed ones), 80 in (500, 1000] µs.
    let p50 = br.handshake_p50_ms.unwrap();
    assert!((p50 - 0.6875).abs() < 1e-9, "{p50}");
    assert!((br.handshake_p99_ms.unwrap() - 0.99375).abs() < 1e-9);
    assert!((br.share_5xx - 0.1).abs() < 1e-9);
    assert!(
        (br.req_rate_10s - 9.0).abs() < 1e-9,
        "one quiet second in ten"
    );
    // A collapse of resumption: all full for 10 s.
    for _ in 0..10 {
        f.handshakes(BR, HandshakeKind::Full, 4, 3);
        f.tick();
    }
    let br = f.tick().country(BR).unwrap().clone();
    assert_eq!(br.resumed_share, Some(0.0));
    assert!(
        br.resumed_share_baseline.unwrap() > 0.5,
        "the baseline lags"
    );
}

#[test]
fn a_late_tick_spreads_its_counts() {
    let mut f = Feed::new(StatsSettings::default());
    f.conns(BR, 30);
    let v = f.tick_n(3);
    let br = v.country(BR).unwrap();
    assert_eq!(&br.history[HISTORY_SECONDS - 3..], &[10, 10, 10]);
    assert_eq!((br.conn_rate_1s, br.conn_rate_10s), (10.0, 10.0));
    assert_eq!(v.ticks, 3);
}

#[test]
fn countries_are_sorted_by_rate() {
    let mut f = Feed::new(StatsSettings::default());
    let v = f.steady(3, &[(BR, 1), (DE, 7), (JP, 3)]);
    let order: Vec<&str> = v.countries.iter().map(|c| c.code).collect();
    assert_eq!(order, vec!["DE", "JP", "BR"]);
    assert_eq!(v.totals.conn_rate_1s, 11.0);
}

#[test]
fn shed_rates_count_refusals_but_not_a_dry_run() {
    let mut f = Feed::new(StatsSettings::default());
    for _ in 0..10 {
        f.conns(BR, 6);
        f.refused(BR, RejectReason::RateLimit, 2); // before open
        f.refused(BR, RejectReason::HandshakeQueueFull, 1); // after open
        f.refused(BR, RejectReason::RequestRateLimit, 1); // a request
        f.refused(BR, RejectReason::AutoCapDryRun, 5); // served
        f.tick();
    }
    let v = f.tick();
    let br = v.country(BR).unwrap();
    assert_eq!(br.shed_rate_1s, 0.0, "nothing in the last second");
    assert_eq!(br.shed_rate_10s, 3.6, "36 shed in 10 s");
    assert_eq!(br.shed_total, 40);
    assert_eq!(br.conn_rate_10s, 5.4, "opened only");
    assert_eq!(br.offered_rate_10s, 7.2, "opened + refused before open");
    assert_eq!(br.history.iter().map(|&n| u64::from(n)).sum::<u64>(), 60);
    f.refused(BR, RejectReason::PerIp, 3);
    let v = f.tick();
    assert_eq!(v.country(BR).unwrap().shed_rate_1s, 3.0);
    assert_eq!(v.totals.shed_rate_1s, 3.0);
}

#[test]
fn a_country_with_only_refused_connections_gets_a_row() {
    let mut f = Feed::new(StatsSettings::default());
    f.steady(2, &[(DE, 1)]);
    f.refused(JP, RejectReason::AutoCap, 4);
    let v = f.tick();
    let jp = v.country(JP).expect("a row from refusals alone");
    assert_eq!((jp.conn_rate_1s, jp.shed_rate_1s), (0.0, 4.0));
}

#[test]
fn a_country_refused_before_open_keeps_its_spike() {
    let mut f = Feed::new(StatsSettings::default()); // half-life 10 min
    let steady = [(BR, 5), (DE, 5)];
    f.steady(14, &steady);
    // BR surges to 60/s; admission control refuses every one of its connections before open.
    for k in 1..=40 {
        f.conns(DE, 5);
        f.refused(BR, RejectReason::RateLimit, 40);
        f.refused(BR, RejectReason::AutoCap, 20);
        let v = f.tick();
        let br = v.country(BR).unwrap();
        assert_eq!(br.conn_rate_1s, 0.0, "nothing opened");
        if k >= 10 {
            assert_eq!((br.conn_rate_10s, br.offered_rate_10s), (0.0, 60.0));
            assert_eq!(br.shed_rate_10s, 60.0);
        }
        assert_eq!(br.spiking, k >= 4, "second {k}: {br:?}");
    }
    assert_eq!(f.started(), vec![BR]);
    assert!(
        f.ended().is_empty(),
        "refusing the surge does not end its spike"
    );
    let v = f.tick();
    assert_eq!(v.spikes.len(), 1);
    assert_eq!(
        v.spikes[0].rate, 54.0,
        "the offered rate, 9 of 10 s at 60/s"
    );
}

#[test]
fn onsets_predict_the_spike_the_next_tick_flags() {
    let steady = [(BR, 5), (DE, 5)];
    // Mid-second, before the baseline is ready: nothing, however large.
    let mut young = Feed::new(short_half_life());
    young.steady(11, &steady);
    young.conns(BR, 1_000);
    assert!(
        young
            .windows
            .onsets(&young.counters, &young.settings)
            .is_empty()
    );

    let mut f = Feed::new(short_half_life());
    f.steady(15, &steady);
    // Part of a second: BR 100 opened + 200 refused before open, DE at its rate.
    f.conns(BR, 100);
    f.refused(BR, RejectReason::AutoCap, 200);
    f.conns(DE, 5);
    let onsets = f.windows.onsets(&f.counters, &f.settings);
    assert_eq!(onsets.len(), 1, "{onsets:?}");
    let o = onsets[0];
    // The last 9 seconds (9 x 5) plus this one's 300.
    assert_eq!(o.country, BR);
    assert!((o.rate - 34.5).abs() < 1e-9, "{o:?}");
    assert!((o.baseline - 5.0).abs() < 1e-9 && (o.ratio - 6.9).abs() < 1e-9);
    // The tick that ends this second flags it; from then on it is no onset.
    let v = f.tick();
    assert!(v.country(BR).unwrap().spiking);
    f.conns(BR, 300);
    assert!(f.windows.onsets(&f.counters, &f.settings).is_empty());
}

#[test]
fn onsets_need_the_rate_and_the_ratio() {
    let mut f = Feed::new(short_half_life());
    f.steady(20, &[(BR, 5), (DE, 30)]);
    // BR: (45 + 50) / 10 = 9.5/s, under spike_min_rate. DE: (270 + 100) / 10 = 37/s, over
    // the min rate but 1.2x its baseline.
    f.conns(BR, 50);
    f.conns(DE, 100);
    assert!(f.windows.onsets(&f.counters, &f.settings).is_empty());
}

/// No false cap (issue 15): a country whose traffic triples over five minutes (a growing
/// audience, not a flood) on the shipped defaults never spikes, neither at a tick nor by a
/// fast onset, so `auto` never caps it (a cap needs a spike). A fixed 10x step does.
#[test]
fn a_country_tripling_over_five_minutes_never_spikes() {
    let mut f = Feed::new(StatsSettings::default());
    // An hour at its usual 100/s (the baseline settles; DE beside it).
    f.steady(3_600, &[(BR, 100), (DE, 50)]);
    // 100/s -> 300/s, linearly over 300 s, then held for 20 minutes.
    for s in 0..1_500u64 {
        let rate = 100 + (200 * s.min(300)) / 300;
        f.conns(BR, rate / 2);
        assert!(
            f.windows.onsets(&f.counters, &f.settings).is_empty(),
            "an onset at {s} s"
        );
        f.conns(BR, rate - rate / 2);
        f.conns(DE, 50);
        f.tick();
    }
    assert!(f.started().is_empty(), "{:?}", f.started());
    // The same country jumping to 10x at once is a spike.
    f.steady(12, &[(BR, 3_000), (DE, 50)]);
    assert_eq!(f.started(), [BR]);
}
