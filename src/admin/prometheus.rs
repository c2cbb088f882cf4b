//! `GET /metrics`: the live config, the reload counters, the traffic stats and every backend's
//! state in the Prometheus text exposition format, version 0.0.4.
//!
//! The text is written by hand into one `String` (`prom_text`): the set of metric families
//! is fixed, and the `prometheus` and `prometheus-client` crates would want every value
//! copied into their own registry on each scrape (or kept there instead of in the
//! single-writer shards), which buys nothing here.
//!
//! Families (names and labels are a public interface: add, and rename only to follow the
//! naming conventions, keeping the old name one release as a deprecated alias):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `levee_build_info` | gauge (always 1) | `version`, `commit` |
//! | `levee_config_generation` | gauge | |
//! | `levee_config_info` | gauge (always 1) | `source_hash` |
//! | `levee_config_reloads_total` | counter | `result` = ok, error |
//! | `levee_config_last_reload_timestamp_seconds` | gauge (0 before any reload) | |
//! | `levee_connections_total` | counter | `country` |
//! | `levee_connections_active` | gauge | `country` |
//! | `levee_send_timeouts_total` | counter | |
//! | `levee_access_log_dropped_total` | counter | |
//! | `levee_tls_handshakes_total` | counter | `country`, `kind` = full, resumed, failed |
//! | `levee_tls_handshake_duration_seconds` | histogram | `country` |
//! | `levee_requests_total` | counter | `country`, `code_class` = 1xx .. 5xx |
//! | `levee_received_bytes_total` | counter | `country` |
//! | `levee_sent_bytes_total` | counter | `country` |
//! | `levee_bytes_received_total` | deprecated alias of `levee_received_bytes_total` | `country` |
//! | `levee_bytes_sent_total` | deprecated alias of `levee_sent_bytes_total` | `country` |
//! | `levee_upstream_latency_seconds` | histogram | `country` |
//! | `levee_country_spike_ratio` | gauge | `country` |
//! | `levee_country_connection_baseline_per_second` | gauge (offered new connections/s) | `country` |
//! | `levee_country_connection_baseline` | deprecated alias of `levee_country_connection_baseline_per_second` | `country` |
//! | `levee_country_spiking` | gauge (0 or 1) | `country` |
//! | `levee_asn_connections_total` | counter | `asn`, `org` |
//! | `levee_asn_requests_total` | counter | `asn`, `org` |
//! | `levee_admission_rejected_total` | counter | `country`, `reason` = max_connections, per_ip, handshake_queue_full, handshake_queue_timeout, slow_upload, rate_limit, tarpit, request_rate_limit, fair_share, auto_cap |
//! | `levee_admission_dry_run_total` | counter (connections an auto cap dry run would have refused; served) | `country` |
//! | `levee_admission_handshake_queue_depth` | gauge | |
//! | `levee_admission_handshake_limit` | gauge | `worker` |
//! | `levee_admission_handshake_queue_wait_seconds` | histogram (buckets as `levee_tls_handshake_duration_seconds`) | |
//! | `levee_admission_auto_cap_per_second` | gauge (new connections/s a spiking country is held to; only while capped) | `country`, `dry_run` = true, false |
//! | `levee_backend_up` | gauge | `pool`, `backend` |
//! | `levee_backend_in_flight` | gauge | `pool`, `backend` |
//! | `levee_backend_requests_total` | counter | `pool`, `backend` |
//! | `levee_backend_failures_total` | counter | `pool`, `backend` |
//! | `levee_backend_connect_errors_total` | counter | `pool`, `backend` |
//! | `levee_pool_requests_total` | counter | `pool`, `backend` (`""`: levee answered), `code_class` |
//! | `levee_pool_request_duration_seconds` | histogram | `pool` |
//! | `process_cpu_seconds_total` | counter | |
//! | `process_resident_memory_bytes`, `process_virtual_memory_bytes` | gauge | |
//! | `process_open_fds`, `process_max_fds` | gauge | |
//! | `process_start_time_seconds` | gauge | |
//!
//! The deprecated aliases (`levee_bytes_received_total`, `levee_bytes_sent_total`,
//! `levee_country_connection_baseline`) carry the same samples as their new names and are
//! removed in the next release.
//!
//! Labels stay bounded: `country` takes only the countries that have had traffic (of 253
//! slots; a refusal is traffic), plus `ZZ` (unknown) always; `asn` only the top ASNs of the last stats window (at
//! most `stats::TOP_ASNS`, and `asn="0"`, `org="other"` for the rest), so an ASN leaving the
//! top list stops being exported. Counters are read from the shards at scrape time; the
//! spike ratio, baseline and ASN counts come from the stats view, at most a second old.
//! Histogram buckets are the shard's (`stats::LATENCY_BOUNDS_US`, 100 µs to 10 s), made
//! cumulative; `_sum` is the exact sum the shard keeps, in whole microseconds.
//!
//! Per-backend and per-pool series come from the snapshot serving now, so a backend or pool
//! removed by a reload disappears from `/metrics`; one kept across a reload keeps its
//! counters (they carry over). `process_*` is read from `/proc/self` at scrape time.

use std::fmt::{self, Display};
use std::sync::Arc;

use super::prom_text::{Float, Hex16, family, histogram, sample};
use crate::config::Snapshot;
use crate::geo::country;
use crate::reload::ReloadStats;
use crate::stats::{
    CountersSnapshot, CountryIdx, HandshakeKind, Shard, StatsView, StatusClass, UNKNOWN_COUNTRY,
    has_traffic, per_country, totals,
};

/// The `Content-Type` of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Handshake kinds in the order of `CountersSnapshot::handshakes`.
const HANDSHAKE_KINDS: [HandshakeKind; 3] = [
    HandshakeKind::Full,
    HandshakeKind::Resumed,
    HandshakeKind::Failed,
];

/// `code_class` labels in the order of `CountersSnapshot::requests`.
const CODE_CLASSES: [&str; StatusClass::COUNT] = StatusClass::LABELS;

/// The HELP text of a name kept one release after its family was renamed to `new`.
macro_rules! deprecated {
    ($new:literal) => {
        concat!("Deprecated: use ", $new, "; removed in the next release.")
    };
}

/// Renders the whole `/metrics` document for the running `snapshot`, the reload counters,
/// the workers' stats shards and the latest stats `view`.
pub fn render_metrics(
    snapshot: &Snapshot,
    reloads: &ReloadStats,
    shards: &[Arc<Shard>],
    view: &StatsView,
    auto_caps: &[crate::admission::auto::ActiveCap],
    access_log_dropped: u64,
) -> String {
    let backends: usize = snapshot.pools.iter().map(|p| p.backends.len()).sum();
    let rows = country_rows(shards);
    let mut out = String::with_capacity(8 * 1024 + backends * 512 + rows.len() * 6 * 1024);
    // Writing into a `String` cannot fail; the `fmt::Result`s only thread `?` through.
    let _ = write_config(&mut out, snapshot, reloads)
        .and_then(|()| write_traffic(&mut out, &rows))
        .and_then(|()| write_send_timeouts(&mut out, shards))
        .and_then(|()| write_access_log(&mut out, access_log_dropped))
        .and_then(|()| write_windows(&mut out, &rows, view))
        .and_then(|()| write_asns(&mut out, view))
        .and_then(|()| super::prom_admission::write_admission(&mut out, shards))
        .and_then(|()| super::prom_admission::write_auto_caps(&mut out, auto_caps))
        .and_then(|()| write_backends(&mut out, snapshot))
        .and_then(|()| super::prom_pools::write_pools(&mut out, snapshot))
        .and_then(|()| super::prom_process::write_process(&mut out, &super::procfs::read()));
    out
}

/// Counters of one country, with the label they are exposed under.
struct CountryRow {
    idx: CountryIdx,
    country: &'static str,
    counters: CountersSnapshot,
}

/// One row per country that has had traffic, and `ZZ` always, in slot order.
fn country_rows(shards: &[Arc<Shard>]) -> Vec<CountryRow> {
    per_country(shards)
        .into_iter()
        .enumerate()
        .filter_map(|(i, counters)| {
            let idx = CountryIdx(u16::try_from(i).ok()?);
            (idx == UNKNOWN_COUNTRY || has_traffic(&counters)).then(|| CountryRow {
                idx,
                country: country::code(idx),
                counters,
            })
        })
        .collect()
}

fn write_config(out: &mut String, snapshot: &Snapshot, reloads: &ReloadStats) -> fmt::Result {
    let name = "levee_build_info";
    family(
        out,
        name,
        "gauge",
        "Always 1: the version and commit levee was built from.",
    )?;
    let labels: [(&str, &dyn Display); 2] = [
        ("version", &env!("CARGO_PKG_VERSION")),
        ("commit", &env!("LEVEE_COMMIT")),
    ];
    sample(out, name, &labels, 1)?;
    family(
        out,
        "levee_config_generation",
        "gauge",
        "Generation of the config snapshot serving now (1 at start, +1 per successful reload).",
    )?;
    sample(out, "levee_config_generation", &[], snapshot.generation)?;

    family(
        out,
        "levee_config_info",
        "gauge",
        "The config snapshot serving now; source_hash is the hash of its source, as in /stats.",
    )?;
    let hash = Hex16(snapshot.source_hash);
    sample(out, "levee_config_info", &[("source_hash", &hash)], 1)?;

    family(
        out,
        "levee_config_reloads_total",
        "counter",
        "Config reloads by result: ok (a new snapshot was stored) or error (refused).",
    )?;
    let name = "levee_config_reloads_total";
    sample(out, name, &[("result", &"ok")], reloads.succeeded())?;
    sample(out, name, &[("result", &"error")], reloads.failed())?;

    family(
        out,
        "levee_config_last_reload_timestamp_seconds",
        "gauge",
        "Unix time of the last reload attempt, successful or not (0: none yet).",
    )?;
    sample(
        out,
        "levee_config_last_reload_timestamp_seconds",
        &[],
        Float(reloads.last_reload_unix_seconds()),
    )
}

/// `levee_send_timeouts_total`: counted per worker, summed here.
fn write_send_timeouts(out: &mut String, shards: &[Arc<Shard>]) -> fmt::Result {
    let name = "levee_send_timeouts_total";
    let help = "Client connections closed because writing to them made no progress for \
                send_timeout.";
    family(out, name, "counter", help)?;
    let total = totals(shards.iter().map(|s| s.as_ref())).send_timeouts;
    sample(out, name, &[], total)
}

fn write_access_log(out: &mut String, dropped: u64) -> fmt::Result {
    let name = "levee_access_log_dropped_total";
    let help = "Access-log lines lost because the sink could not keep up (queue full) or \
                failed to write.";
    family(out, name, "counter", help)?;
    sample(out, name, &[], dropped)
}

fn write_traffic(out: &mut String, rows: &[CountryRow]) -> fmt::Result {
    counter_by_country(
        out,
        rows,
        "levee_connections_total",
        "counter",
        "Client connections accepted.",
        |c| c.connections,
    )?;
    counter_by_country(
        out,
        rows,
        "levee_connections_active",
        "gauge",
        "Client connections open now.",
        |c| c.connections_active,
    )?;

    let name = "levee_tls_handshakes_total";
    family(
        out,
        name,
        "counter",
        "TLS handshakes by kind: full, resumed, or failed (including timeouts).",
    )?;
    for row in rows {
        for kind in HANDSHAKE_KINDS {
            let labels: [(&str, &dyn Display); 2] =
                [("country", &row.country), ("kind", &kind.as_str())];
            sample(out, name, &labels, row.counters.handshakes_of(kind))?;
        }
    }

    let name = "levee_tls_handshake_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "TLS handshake time, from the ClientHello to the end of the handshake.",
    )?;
    for row in rows {
        let labels: [(&str, &dyn Display); 1] = [("country", &row.country)];
        histogram(out, name, &labels, &row.counters.handshake_time)?;
    }

    let name = "levee_requests_total";
    family(
        out,
        name,
        "counter",
        "Requests whose response went to the client to its end, by status class (levee's own errors included).",
    )?;
    for row in rows {
        for (class, n) in CODE_CLASSES.iter().zip(row.counters.requests) {
            let labels: [(&str, &dyn Display); 2] =
                [("country", &row.country), ("code_class", class)];
            sample(out, name, &labels, n)?;
        }
    }

    type Pick = fn(&CountersSnapshot) -> u64;
    let bytes: [(&str, &str, Pick); 4] = [
        (
            "levee_received_bytes_total",
            "Request body bytes received from clients.",
            |c| c.bytes_in,
        ),
        (
            "levee_bytes_received_total",
            deprecated!("levee_received_bytes_total"),
            |c| c.bytes_in,
        ),
        (
            "levee_sent_bytes_total",
            "Response body bytes sent to clients.",
            |c| c.bytes_out,
        ),
        (
            "levee_bytes_sent_total",
            deprecated!("levee_sent_bytes_total"),
            |c| c.bytes_out,
        ),
    ];
    for (name, help, pick) in bytes {
        counter_by_country(out, rows, name, "counter", help, pick)?;
    }

    let name = "levee_upstream_latency_seconds";
    family(
        out,
        name,
        "histogram",
        "Time from sending a request upstream to the backend's response head.",
    )?;
    for row in rows {
        let labels: [(&str, &dyn Display); 1] = [("country", &row.country)];
        histogram(out, name, &labels, &row.counters.upstream_time)?;
    }
    Ok(())
}

/// A family with one sample per country, `value` picked from the row's counters.
fn counter_by_country(
    out: &mut String,
    rows: &[CountryRow],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&CountersSnapshot) -> u64,
) -> fmt::Result {
    family(out, name, kind, help)?;
    for row in rows {
        sample(
            out,
            name,
            &[("country", &row.country)],
            value(&row.counters),
        )?;
    }
    Ok(())
}

/// The spike ratio, baseline and spike state of each country row, from the stats view.
fn write_windows(out: &mut String, rows: &[CountryRow], view: &StatsView) -> fmt::Result {
    type Pick = fn(&crate::stats::CountryView) -> f64;
    let families: [(&str, &str, Pick); 4] = [
        (
            "levee_country_spike_ratio",
            "Offered new connections per second (opened + refused before open) over the last 10 s divided by the baseline (at least [stats] spike_floor); 0 until the baseline has data.",
            |c| c.spike_ratio,
        ),
        (
            "levee_country_connection_baseline_per_second",
            "Slow moving average of offered new connections per second, opened + refused before open (half-life [stats] baseline_half_life).",
            |c| c.baseline,
        ),
        (
            "levee_country_connection_baseline",
            deprecated!("levee_country_connection_baseline_per_second"),
            |c| c.baseline,
        ),
        (
            "levee_country_spiking",
            "1 while the country is flagged as spiking, else 0.",
            |c| if c.spiking { 1.0 } else { 0.0 },
        ),
    ];
    for (name, help, pick) in families {
        family(out, name, "gauge", help)?;
        for row in rows {
            let value = view.country(row.idx).map_or(0.0, pick);
            sample(out, name, &[("country", &row.country)], Float(value))?;
        }
    }
    Ok(())
}

/// Connections and requests of the top ASNs of the stats view, and of "other" (`asn="0"`).
fn write_asns(out: &mut String, view: &StatsView) -> fmt::Result {
    type Pick = fn(&crate::stats::AsnView) -> u64;
    let families: [(&str, &str, Pick); 2] = [
        (
            "levee_asn_connections_total",
            "New connections by autonomous system, for the top ASNs only (asn 0: all others); counted while the ASN is tracked.",
            |a| a.connections,
        ),
        (
            "levee_asn_requests_total",
            "Requests by autonomous system, for the top ASNs only (asn 0: all others); counted while the ASN is tracked.",
            |a| a.requests,
        ),
    ];
    for (name, help, pick) in families {
        family(out, name, "counter", help)?;
        for a in &view.asns {
            let labels: [(&str, &dyn Display); 2] = [("asn", &a.asn), ("org", &a.org)];
            sample(out, name, &labels, pick(a))?;
        }
    }
    Ok(())
}

fn write_backends(out: &mut String, snapshot: &Snapshot) -> fmt::Result {
    type Pick = fn(&crate::lb::BackendState) -> u64;
    let families: [(&str, &str, &str, Pick); 5] = [
        (
            "levee_backend_up",
            "gauge",
            "1 when the backend may get requests, 0 when health checks took it down or outlier detection ejected it.",
            |s| u64::from(s.is_usable()),
        ),
        (
            "levee_backend_in_flight",
            "gauge",
            "Requests in flight to the backend, across all workers.",
            |s| s.in_flight(),
        ),
        (
            "levee_backend_requests_total",
            "counter",
            "Attempts started on the backend (a retry is one more).",
            |s| s.requests(),
        ),
        (
            "levee_backend_failures_total",
            "counter",
            "Failed attempts on the backend: connect errors, timeouts, resets, and 5xx when outlier detection counts them.",
            |s| s.failures(),
        ),
        (
            "levee_backend_connect_errors_total",
            "counter",
            "Connects to the backend that failed (refused, unreachable, or over the pool's connect_timeout) on the request path; health checks not included.",
            |s| s.connect_errors(),
        ),
    ];
    for (name, kind, help, pick) in families {
        family(out, name, kind, help)?;
        for pool in &snapshot.pools {
            for backend in &pool.backends {
                let labels: [(&str, &dyn Display); 2] =
                    [("pool", &pool.name), ("backend", &backend.address)];
                sample(out, name, &labels, pick(&backend.state))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_families_come_once_each_with_country_rows() {
        let shard = Arc::new(Shard::new(0, 1));
        shard.connection_opened(crate::stats::UNKNOWN_COUNTRY);
        shard.request(crate::stats::UNKNOWN_COUNTRY, 204, 3, 5);
        let rows = country_rows(&[shard]);
        assert_eq!(rows.len(), 1, "only ZZ");
        let mut out = String::new();
        write_traffic(&mut out, &rows).unwrap();
        assert!(out.contains("levee_connections_total{country=\"ZZ\"} 1\n"));
        assert!(out.contains("levee_connections_active{country=\"ZZ\"} 1\n"));
        assert!(out.contains("levee_requests_total{country=\"ZZ\",code_class=\"2xx\"} 1\n"));
        assert!(out.contains("levee_received_bytes_total{country=\"ZZ\"} 3\n"));
        assert!(out.contains("levee_sent_bytes_total{country=\"ZZ\"} 5\n"));
        assert!(out.contains("levee_bytes_received_total{country=\"ZZ\"} 3\n"));
        assert!(out.contains("levee_bytes_sent_total{country=\"ZZ\"} 5\n"));
        assert!(out.contains(
            "# HELP levee_bytes_sent_total Deprecated: use levee_sent_bytes_total; removed in the next release.\n"
        ));
        assert!(out.contains("levee_tls_handshakes_total{country=\"ZZ\",kind=\"resumed\"} 0\n"));
        let types = out.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(types, 10, "{out}");
    }

    #[test]
    fn rows_are_the_countries_with_traffic_and_zz() {
        let shard = Arc::new(Shard::new(0, country::COUNTRY_COUNT));
        let (br, de) = (country::index_of("BR"), country::index_of("DE"));
        shard.connection_opened(br);
        shard.request(de, 503, 0, 0);
        let rows = country_rows(&[shard]);
        let labels: Vec<&str> = rows.iter().map(|r| r.country).collect();
        assert_eq!(labels, vec!["ZZ", "BR", "DE"]);
        let mut view = StatsView::default();
        view.countries.push(crate::stats::CountryView {
            country: br,
            code: "BR",
            conn_rate_1s: 0.0,
            conn_rate_10s: 60.0,
            conn_rate_60s: 0.0,
            offered_rate_10s: 60.0,
            shed_rate_1s: 0.0,
            shed_rate_10s: 0.0,
            shed_total: 0,
            req_rate_10s: 0.0,
            baseline: 10.0,
            spike_ratio: 6.0,
            spiking: true,
            resumed_share: None,
            resumed_share_baseline: None,
            handshake_p50_ms: None,
            handshake_p99_ms: None,
            share_5xx: 0.0,
            history: Vec::new(),
        });
        view.asns.push(crate::stats::AsnView {
            asn: 64_500,
            org: "Example \"Net\"".into(),
            country: br,
            connections: 12,
            requests: 30,
            conn_rate_10s: 1.2,
            history: Vec::new(),
        });
        let mut out = String::new();
        write_windows(&mut out, &rows, &view).unwrap();
        write_asns(&mut out, &view).unwrap();
        assert!(
            out.contains("levee_country_spike_ratio{country=\"BR\"} 6\n"),
            "{out}"
        );
        assert!(out.contains("levee_country_spike_ratio{country=\"DE\"} 0\n"));
        assert!(out.contains("levee_country_connection_baseline_per_second{country=\"BR\"} 10\n"));
        assert!(out.contains("levee_country_connection_baseline{country=\"BR\"} 10\n"));
        assert!(out.contains("levee_country_spiking{country=\"BR\"} 1\n"));
        assert!(out.contains("levee_country_spiking{country=\"ZZ\"} 0\n"));
        assert!(out.contains(
            "levee_asn_connections_total{asn=\"64500\",org=\"Example \\\"Net\\\"\"} 12\n"
        ));
        assert!(out.contains("levee_asn_requests_total{asn=\"64500\""));
    }
}
