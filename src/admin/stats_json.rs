//! `GET /stats`: one JSON document for people and for `levee top`.
//!
//! ```text
//! { "generated_at": unix s, "uptime_seconds": s,
//!   "config": { "generation", "source_hash", "reloads": { "ok", "failed",
//!               "last_reload_timestamp_seconds" } },
//!   "totals": { "connections", "connections_active", "tls_handshakes": { "full", "resumed",
//!               "failed" }, "requests": { "1xx" .. "5xx" }, "bytes_in", "bytes_out", "shed",
//!               "conn_rate_1s", "conn_rate_10s", "conn_rate_60s", "req_rate_10s",
//!               "shed_rate", "shed_rate_1s" },
//!   "countries": [ { "country", "connections", "connections_active", "conn_rate_1s",
//!               "conn_rate_10s", "conn_rate_60s", "offered_rate_10s", "shed", "shed_rate",
//!               "shed_rate_1s", "req_rate_10s", "baseline", "spike_ratio",
//!               "spiking", "tls_handshakes", "resumed_share", "resumed_share_baseline",
//!               "handshake_p50_ms", "handshake_p99_ms", "requests", "share_5xx", "bytes_in",
//!               "bytes_out", "history": [60] } ],
//!   "asns": [ { "asn", "org", "country", "connections", "conn_rate_10s", "requests",
//!               "history": [60] } ],
//!   "spikes": [ { "country", "since", "rate", "baseline", "ratio", "resumed_share",
//!               "handshake_p50_ms", "handshake_p99_ms",
//!               "top_asns": [ { "asn", "org", "conn_rate_10s" } ] } ],
//!   "workers": [ { "worker", "connections", "connections_active", "requests" } ],
//!   "admission": { "rejected": { "max_connections", "per_ip", "handshake_queue_full",
//!               "handshake_queue_timeout", "slow_upload", "rate_limit", "tarpit",
//!               "request_rate_limit", "fair_share", "auto_cap" },
//!               "dry_run_would_reject", "handshake_queue_depth",
//!               "queue_wait": { "p50_ms", "p99_ms", "count" },
//!               "auto": { "enabled", "dry_run", "headroom",
//!                         "caps": [ { "country", "cap_per_sec", "baseline", "ratio",
//!                                     "since", "dry_run" } ] } } }
//! ```
//!
//! Rates are per second; durations in milliseconds. Counters are read from the shards now;
//! rates, baselines, shares, quantiles, histories and ASN rows come from the stats view,
//! at most a second old. `countries` lists only countries that have had traffic (a refusal
//! counts: a country whose every connection is refused has a row), by `conn_rate_10s`
//! (highest first). `resumed_share`, `resumed_share_baseline` and the handshake quantiles
//! are `null` without data. `asns` is the top 100 ASNs by `conn_rate_10s`, then
//! `"asn": 0, "org": "other"` for every other connection (with or without an ASN); an
//! unknown organisation is `""`.
//!
//! Shedding: `shed` counts the connections and requests admission control refused since
//! start (every reason but a dry run's), `shed_rate` is its rate over the last 10 s (the
//! window of `conn_rate_10s`), `shed_rate_1s` over the last second. `conn_rate_*` and
//! `history` count opened connections; `offered_rate_10s` adds the connections refused
//! before they opened, and is the rate `baseline`, `spike_ratio` and `spikes[].rate` use.
//! `admission.rejected` is by reason over every country (`/metrics` has them per country)
//! and leaves out `auto_cap_dry_run`: what a dry run would have refused was served, so it
//! is reported apart, as the total `admission.dry_run_would_reject` (per country in
//! `/metrics`, `levee_admission_dry_run_total`). `admission.queue_wait` is the time
//! connections waited in the handshake queues, since start, over every worker (quantiles
//! interpolated in the histogram's buckets, `null` while `count` is 0). `admission.auto`
//! is the `[admission]` automatic mode as configured and the caps it holds now (new
//! connections a second, the baseline and spike ratio it started from, unix `since`).

use serde_json::{Value, json};

use super::state::AdminState;
use crate::admission::RejectReason;
use crate::geo::country;
use crate::stats::{
    AsnView, CountersSnapshot, CountryIdx, CountryView, HandshakeKind, HistogramSnapshot,
    StatsView, has_traffic, interpolated_quantile_us, per_country, totals, unix_now,
};

/// The `/stats` document.
pub fn stats_json(state: &AdminState) -> Value {
    let snapshot = state.config.load();
    let view = state.view.load();
    let reloads = state.reloader.stats();
    let per_country = per_country(&state.shards);
    let t = totals(state.shards.iter().map(|s| s.as_ref()));
    let workers: Vec<Value> = state
        .shards
        .iter()
        .map(|s| {
            let w = totals([s.as_ref()]);
            json!({
                "worker": s.worker,
                "connections": w.connections,
                "connections_active": w.connections_active,
                "requests": w.requests.iter().sum::<u64>(),
            })
        })
        .collect();
    let mut totals = counters_json(&t);
    if let Some(obj) = totals.as_object_mut() {
        obj.insert("send_timeouts".into(), json!(t.send_timeouts));
        obj.insert("conn_rate_1s".into(), json!(view.totals.conn_rate_1s));
        obj.insert("conn_rate_10s".into(), json!(view.totals.conn_rate_10s));
        obj.insert("conn_rate_60s".into(), json!(view.totals.conn_rate_60s));
        obj.insert("req_rate_10s".into(), json!(view.totals.req_rate_10s));
        obj.insert("shed_rate".into(), json!(view.totals.shed_rate_10s));
        obj.insert("shed_rate_1s".into(), json!(view.totals.shed_rate_1s));
    }
    json!({
        "generated_at": unix_now(),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "config": {
            "generation": snapshot.generation,
            "source_hash": format!("{:016x}", snapshot.source_hash),
            "reloads": {
                "ok": reloads.succeeded(),
                "failed": reloads.failed(),
                "last_reload_timestamp_seconds": reloads.last_reload_unix_seconds(),
            },
        },
        "totals": totals,
        "countries": countries_json(&per_country, &view),
        "asns": view.asns.iter().map(asn_json).collect::<Vec<_>>(),
        "spikes": spikes_json(&view),
        "workers": workers,
        "admission": admission_json(state, &t.rejected),
    })
}

/// Refusals by reason (all countries; `/metrics` has them per country) without the dry
/// run's, which come apart; the handshake queues' depth now and wait so far (all workers).
fn admission_json(state: &AdminState, by_reason: &[u64; RejectReason::COUNT]) -> Value {
    let rejected: serde_json::Map<String, Value> = RejectReason::ALL
        .iter()
        .filter(|r| r.is_refusal())
        .map(|r| (r.as_str().to_string(), json!(by_reason[*r as usize])))
        .collect();
    let depth: u64 = state.shards.iter().map(|s| s.handshake_queue_depth()).sum();
    let mut wait = HistogramSnapshot::default();
    for shard in state.shards.iter() {
        shard.add_handshake_queue_wait(&mut wait);
    }
    json!({
        "rejected": rejected,
        "dry_run_would_reject": by_reason[RejectReason::AutoCapDryRun as usize],
        "handshake_queue_depth": depth,
        "queue_wait": queue_wait_json(&wait),
        "auto": auto_json(state),
    })
}

/// `v` rounded to three decimals.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `[admission] auto` as configured, and the caps in force.
fn auto_json(state: &AdminState) -> Value {
    let settings = state.config.load().admission.auto;
    let caps: Vec<Value> = state
        .admission
        .auto_view
        .load()
        .iter()
        .map(|c| {
            json!({
                "country": country::code(c.country),
                "cap_per_sec": round3(c.cap_per_sec),
                "baseline": round3(c.baseline),
                "ratio": round3(c.ratio),
                "since": c.since,
                "dry_run": c.dry_run,
            })
        })
        .collect();
    json!({
        "enabled": settings.enabled,
        "dry_run": settings.dry_run,
        "headroom": settings.headroom,
        "caps": caps,
    })
}

/// `p50_ms`, `p99_ms` (interpolated, `null` when empty) and `count` of a wait histogram.
fn queue_wait_json(h: &HistogramSnapshot) -> Value {
    let ms = |q| interpolated_quantile_us(&h.buckets, q).map(|us| us / 1000.0);
    json!({ "p50_ms": ms(0.5), "p99_ms": ms(0.99), "count": h.count() })
}

/// Counter fields shared by `totals` and each country.
fn counters_json(c: &CountersSnapshot) -> Value {
    json!({
        "connections": c.connections,
        "connections_active": c.connections_active,
        "tls_handshakes": {
            "full": c.handshakes_of(HandshakeKind::Full),
            "resumed": c.handshakes_of(HandshakeKind::Resumed),
            "failed": c.handshakes_of(HandshakeKind::Failed),
        },
        "requests": {
            "1xx": c.requests[0], "2xx": c.requests[1], "3xx": c.requests[2],
            "4xx": c.requests[3], "5xx": c.requests[4],
        },
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
        "shed": c.shed(),
    })
}

/// Every country with traffic: live counters joined with its windows, by 10 s rate.
fn countries_json(per_country: &[CountersSnapshot], view: &StatsView) -> Vec<Value> {
    let mut rows: Vec<(f64, u64, Value)> = per_country
        .iter()
        .enumerate()
        .filter(|(_, c)| has_traffic(c))
        .map(|(i, c)| {
            let idx = CountryIdx(u16::try_from(i).unwrap_or(0));
            let w = view.country(idx);
            let rate = w.map_or(0.0, |w| w.conn_rate_10s);
            (rate, c.connections, country_json(idx, c, w))
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    rows.into_iter().map(|(_, _, v)| v).collect()
}

fn country_json(idx: CountryIdx, c: &CountersSnapshot, w: Option<&CountryView>) -> Value {
    let mut v = counters_json(c);
    let rates = match w {
        Some(w) => json!({
            "conn_rate_1s": w.conn_rate_1s,
            "conn_rate_10s": w.conn_rate_10s,
            "conn_rate_60s": w.conn_rate_60s,
            "offered_rate_10s": w.offered_rate_10s,
            "shed_rate": w.shed_rate_10s,
            "shed_rate_1s": w.shed_rate_1s,
            "req_rate_10s": w.req_rate_10s,
            "baseline": w.baseline,
            "spike_ratio": w.spike_ratio,
            "spiking": w.spiking,
            "resumed_share": w.resumed_share,
            "resumed_share_baseline": w.resumed_share_baseline,
            "handshake_p50_ms": w.handshake_p50_ms,
            "handshake_p99_ms": w.handshake_p99_ms,
            "share_5xx": w.share_5xx,
            "history": w.history,
        }),
        // Traffic that arrived after the last tick: no windows yet.
        None => json!({
            "conn_rate_1s": 0.0, "conn_rate_10s": 0.0, "conn_rate_60s": 0.0,
            "offered_rate_10s": 0.0, "shed_rate": 0.0, "shed_rate_1s": 0.0,
            "req_rate_10s": 0.0, "baseline": 0.0, "spike_ratio": 0.0, "spiking": false,
            "resumed_share": null, "resumed_share_baseline": null,
            "handshake_p50_ms": null, "handshake_p99_ms": null, "share_5xx": 0.0,
            "history": vec![0; crate::stats::HISTORY_SECONDS],
        }),
    };
    if let (Some(obj), Value::Object(rates)) = (v.as_object_mut(), rates) {
        obj.insert("country".into(), json!(country::code(idx)));
        obj.extend(rates);
    }
    v
}

fn asn_json(a: &AsnView) -> Value {
    json!({
        "asn": a.asn,
        "org": a.org,
        "country": country::code(a.country),
        "connections": a.connections,
        "conn_rate_10s": a.conn_rate_10s,
        "requests": a.requests,
        "history": a.history,
    })
}

fn spikes_json(view: &StatsView) -> Vec<Value> {
    view.spikes
        .iter()
        .map(|s| {
            let top: Vec<Value> = s
                .top_asns
                .iter()
                .map(|a| json!({ "asn": a.asn, "org": a.org, "conn_rate_10s": a.conn_rate_10s }))
                .collect();
            json!({
                "country": country::code(s.country),
                "since": s.since,
                "rate": s.rate,
                "baseline": s.baseline,
                "ratio": s.ratio,
                "resumed_share": s.resumed_share,
                "handshake_p50_ms": s.handshake_p50_ms,
                "handshake_p99_ms": s.handshake_p99_ms,
                "top_asns": top,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn view_of(idx: CountryIdx, rate: f64) -> CountryView {
        CountryView {
            country: idx,
            code: country::code(idx),
            conn_rate_1s: rate,
            conn_rate_10s: rate,
            conn_rate_60s: rate,
            offered_rate_10s: rate + 1.0,
            shed_rate_1s: 0.5,
            shed_rate_10s: 1.0,
            shed_total: 7,
            req_rate_10s: 2.0 * rate,
            baseline: 1.0,
            spike_ratio: rate,
            spiking: rate >= 5.0,
            resumed_share: Some(0.5),
            resumed_share_baseline: None,
            handshake_p50_ms: Some(1.5),
            handshake_p99_ms: None,
            share_5xx: 0.0,
            history: vec![1; crate::stats::HISTORY_SECONDS],
        }
    }

    #[test]
    fn countries_join_counters_and_windows_sorted_by_rate() {
        let (br, de, jp) = (
            country::index_of("BR"),
            country::index_of("DE"),
            country::index_of("JP"),
        );
        let mut counters = vec![CountersSnapshot::default(); country::COUNTRY_COUNT];
        counters[usize::from(br.0)].connections = 10;
        counters[usize::from(de.0)].connections = 50;
        counters[usize::from(de.0)].requests[4] = 3;
        counters[usize::from(de.0)].rejected[RejectReason::RateLimit as usize] = 4;
        counters[usize::from(de.0)].rejected[RejectReason::AutoCapDryRun as usize] = 9;
        counters[usize::from(jp.0)].connections = 99; // after the last tick: no windows
        let view = StatsView {
            countries: vec![view_of(de, 2.0), view_of(br, 7.0)],
            ..StatsView::default()
        };
        let rows = countries_json(&counters, &view);
        let order: Vec<&str> = rows
            .iter()
            .map(|r| r["country"].as_str().unwrap())
            .collect();
        assert_eq!(order, vec!["BR", "DE", "JP"]);
        let (b, d, j) = (&rows[0], &rows[1], &rows[2]);
        assert_eq!(b["connections"], 10);
        assert_eq!(b["spiking"], true);
        assert_eq!(b["req_rate_10s"], 14.0);
        assert_eq!(b["resumed_share"], 0.5);
        assert!(b["resumed_share_baseline"].is_null() && b["handshake_p99_ms"].is_null());
        assert_eq!(b["history"].as_array().unwrap().len(), 60);
        assert_eq!(d["requests"]["5xx"], 3);
        assert_eq!(d["shed"], 4, "the dry run's 9 are not shed");
        assert_eq!(
            (b["shed"].as_u64(), b["shed_rate"].as_f64()),
            (Some(0), Some(1.0))
        );
        assert_eq!(
            (b["shed_rate_1s"].as_f64(), b["offered_rate_10s"].as_f64()),
            (Some(0.5), Some(8.0))
        );
        assert_eq!(j["shed_rate"].as_f64(), Some(0.0));
        assert_eq!(d["tls_handshakes"]["full"], 0);
        assert_eq!(
            (j["conn_rate_10s"].as_f64(), j["spiking"].as_bool()),
            (Some(0.0), Some(false))
        );
        assert_eq!(j["history"].as_array().unwrap().len(), 60);
    }

    #[test]
    fn queue_wait_quantiles_and_count() {
        let empty = queue_wait_json(&HistogramSnapshot::default());
        assert!(empty["p50_ms"].is_null() && empty["p99_ms"].is_null());
        assert_eq!(empty["count"], 0);
        let mut h = HistogramSnapshot::default();
        h.buckets[3] = 10; // (500, 1000] µs
        let v = queue_wait_json(&h);
        assert_eq!(
            (
                v["p50_ms"].as_f64(),
                v["p99_ms"].as_f64(),
                v["count"].as_u64()
            ),
            (Some(0.75), Some(0.995), Some(10))
        );
    }

    #[test]
    fn asn_and_spike_rows() {
        let br = country::index_of("BR");
        let asn = AsnView {
            asn: 28_573,
            org: "Claro NXT".into(),
            country: br,
            connections: 5,
            requests: 9,
            conn_rate_10s: 0.5,
            history: vec![0; 60],
        };
        let v = asn_json(&asn);
        assert_eq!(
            (v["asn"].as_u64(), v["country"].as_str()),
            (Some(28_573), Some("BR"))
        );
        let view = StatsView {
            spikes: vec![crate::stats::SpikeView {
                country: br,
                since: 12.5,
                rate: 30.0,
                baseline: 5.0,
                ratio: 6.0,
                resumed_share: None,
                handshake_p50_ms: Some(1.0),
                handshake_p99_ms: Some(9.0),
                top_asns: vec![asn],
            }],
            ..StatsView::default()
        };
        let s = &spikes_json(&view)[0];
        assert_eq!(
            (s["country"].as_str(), s["ratio"].as_f64()),
            (Some("BR"), Some(6.0))
        );
        assert!(s["resumed_share"].is_null());
        assert_eq!(s["top_asns"][0]["org"], "Claro NXT");
    }
}
