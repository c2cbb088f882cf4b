//! `GET /metrics`: the live config, the reload counters, the traffic stats and every backend's
//! state in the Prometheus text exposition format, version 0.0.4.
//!
//! The text is written by hand into one `String` with `std::fmt::Write`: the set of metric
//! families is fixed, and the `prometheus` and `prometheus-client` crates would want every
//! value copied into their own registry on each scrape (or kept there instead of in the
//! single-writer shards), which buys nothing here. Label values are escaped as the format
//! asks (`\\`, `\"`, `\n`).
//!
//! Families (names and labels are a public interface; add, never rename):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `levee_config_generation` | gauge | |
//! | `levee_config_info` | gauge (always 1) | `source_hash` |
//! | `levee_config_reloads_total` | counter | `result` = ok, error |
//! | `levee_config_last_reload_timestamp_seconds` | gauge (0 before any reload) | |
//! | `levee_connections_total` | counter | `country` |
//! | `levee_connections_active` | gauge | `country` |
//! | `levee_tls_handshakes_total` | counter | `country`, `kind` = full, resumed, failed |
//! | `levee_tls_handshake_duration_seconds` | histogram | `country` |
//! | `levee_requests_total` | counter | `country`, `code_class` = 1xx .. 5xx |
//! | `levee_bytes_received_total` | counter | `country` |
//! | `levee_bytes_sent_total` | counter | `country` |
//! | `levee_upstream_latency_seconds` | histogram | `country` |
//! | `levee_backend_up` | gauge | `pool`, `backend` |
//! | `levee_backend_in_flight` | gauge | `pool`, `backend` |
//! | `levee_backend_requests_total` | counter | `pool`, `backend` |
//! | `levee_backend_failures_total` | counter | `pool`, `backend` |
//!
//! `country` is `ZZ` (unknown) for all traffic until GeoIP tagging fills the other country
//! slots; `country_rows` is the one place that will then yield a row per country. Histogram
//! buckets are the shard's (`stats::LATENCY_BOUNDS_US`, 100 µs to 10 s), made cumulative
//! here; `_sum` is the exact sum the shard keeps, in whole microseconds.
//!
//! Per-backend series come from the snapshot serving now, so a backend removed by a reload
//! disappears from `/metrics`; one kept across a reload keeps its counters (they carry over).

use std::fmt::{self, Display, Write};
use std::sync::Arc;

use crate::config::Snapshot;
use crate::reload::ReloadStats;
use crate::stats::{
    CountersSnapshot, HandshakeKind, HistogramSnapshot, LATENCY_BOUNDS_US, Shard, totals,
};

/// The `Content-Type` of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Country label of the unknown-country slot (ISO 3166 user-assigned "ZZ").
const UNKNOWN_COUNTRY_LABEL: &str = "ZZ";

/// Handshake kinds in the order of `CountersSnapshot::handshakes`.
const HANDSHAKE_KINDS: [HandshakeKind; 3] = [
    HandshakeKind::Full,
    HandshakeKind::Resumed,
    HandshakeKind::Failed,
];

/// `code_class` labels in the order of `CountersSnapshot::requests`.
const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Renders the whole `/metrics` document for the running `snapshot`, the reload counters
/// and the workers' stats shards.
pub fn render_metrics(snapshot: &Snapshot, reloads: &ReloadStats, shards: &[Arc<Shard>]) -> String {
    let backends: usize = snapshot.pools.iter().map(|p| p.backends.len()).sum();
    let mut out = String::with_capacity(8 * 1024 + backends * 512);
    let rows = country_rows(shards);
    // Writing into a `String` cannot fail; the `fmt::Result`s only thread `?` through.
    let _ = write_config(&mut out, snapshot, reloads)
        .and_then(|()| write_traffic(&mut out, &rows))
        .and_then(|()| write_backends(&mut out, snapshot));
    out
}

/// Counters of one country, with the label they are exposed under.
struct CountryRow {
    country: &'static str,
    counters: CountersSnapshot,
}

/// One row per country label. Only the unknown slot exists until GeoIP lands, so this is one
/// `ZZ` row holding the total; per-country rows then come from each shard's country slots,
/// and every writer below already loops over the rows.
fn country_rows(shards: &[Arc<Shard>]) -> Vec<CountryRow> {
    vec![CountryRow {
        country: UNKNOWN_COUNTRY_LABEL,
        counters: totals(shards.iter().map(|s| s.as_ref())),
    }]
}

fn write_config(out: &mut String, snapshot: &Snapshot, reloads: &ReloadStats) -> fmt::Result {
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
        histogram(out, name, row.country, &row.counters.handshake_time)?;
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

    counter_by_country(
        out,
        rows,
        "levee_bytes_received_total",
        "counter",
        "Request body bytes received from clients.",
        |c| c.bytes_in,
    )?;
    counter_by_country(
        out,
        rows,
        "levee_bytes_sent_total",
        "counter",
        "Response body bytes sent to clients.",
        |c| c.bytes_out,
    )?;

    let name = "levee_upstream_latency_seconds";
    family(
        out,
        name,
        "histogram",
        "Time from sending a request upstream to the backend's response head.",
    )?;
    for row in rows {
        histogram(out, name, row.country, &row.counters.upstream_time)?;
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

fn write_backends(out: &mut String, snapshot: &Snapshot) -> fmt::Result {
    type Pick = fn(&crate::lb::BackendState) -> u64;
    let families: [(&str, &str, &str, Pick); 4] = [
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

/// `# HELP` and `# TYPE` lines of one family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    write!(out, "# HELP {name} ")?;
    Escaper {
        out: &mut *out,
        quotes: false,
    }
    .write_str(help)?;
    writeln!(out, "\n# TYPE {name} {kind}")
}

/// One sample line: `name{label="value",...} value`.
fn sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &dyn Display)],
    value: impl Display,
) -> fmt::Result {
    out.push_str(name);
    write_labels(out, labels, None)?;
    writeln!(out, " {value}")
}

/// `{a="x",b="y"}` (nothing when there are no labels), with `le` last when given.
fn write_labels(
    out: &mut String,
    labels: &[(&str, &dyn Display)],
    le: Option<&dyn Display>,
) -> fmt::Result {
    let le = le.map(|v| ("le", v));
    let mut all = labels.iter().copied().chain(le).peekable();
    if all.peek().is_none() {
        return Ok(());
    }
    out.push('{');
    for (i, (key, value)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write!(out, "{key}=\"")?;
        write!(
            Escaper {
                out: &mut *out,
                quotes: true
            },
            "{value}"
        )?;
        out.push('"');
    }
    out.push('}');
    Ok(())
}

/// The `_bucket` (cumulative, `+Inf` last), `_sum` and `_count` lines of one histogram.
fn histogram(out: &mut String, name: &str, country: &str, h: &HistogramSnapshot) -> fmt::Result {
    let labels: [(&str, &dyn Display); 1] = [("country", &country)];
    let mut cumulative = 0u64;
    for (i, n) in h.buckets.iter().enumerate() {
        cumulative += n;
        let le: &dyn Display = match LATENCY_BOUNDS_US.get(i) {
            Some(&us) => &Seconds(us),
            None => &"+Inf",
        };
        write!(out, "{name}_bucket")?;
        write_labels(out, &labels, Some(le))?;
        writeln!(out, " {cumulative}")?;
    }
    write!(out, "{name}_sum")?;
    write_labels(out, &labels, None)?;
    writeln!(out, " {}", Seconds(h.sum_us))?;
    write!(out, "{name}_count")?;
    write_labels(out, &labels, None)?;
    writeln!(out, " {cumulative}")
}

/// Writes through to `out`, escaping `\` and newline, and `"` when `quotes` (label values;
/// `# HELP` text leaves quotes alone).
struct Escaper<'a> {
    out: &'a mut String,
    quotes: bool,
}

impl Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find(|c| c == '\\' || c == '\n' || (self.quotes && c == '"')) {
            self.out.push_str(&rest[..i]);
            self.out.push_str(match rest.as_bytes()[i] {
                b'\\' => "\\\\",
                b'\n' => "\\n",
                _ => "\\\"",
            });
            rest = &rest[i + 1..];
        }
        self.out.push_str(rest);
        Ok(())
    }
}

/// Microseconds shown as exact decimal seconds (`2500` -> `0.0025`), no float rounding.
struct Seconds(u64);

impl Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, micros) = (self.0 / 1_000_000, self.0 % 1_000_000);
        if micros == 0 {
            return write!(f, "{whole}");
        }
        // Trailing zeros of the six fractional digits dropped: 250 µs is 0.00025.
        let (mut frac, mut width) = (micros, 6);
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        write!(f, "{whole}.{frac:0width$}")
    }
}

/// A float sample value with the format's spellings of the special values.
struct Float(f64);

impl Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

/// A `u64` as 16 lower-case hex digits (the source hash, as `/stats` shows it).
struct Hex16(u64);

impl Display for Hex16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        write_labels(&mut out, &[("v", &s)], None).unwrap();
        out
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escaped("plain"), r#"{v="plain"}"#);
        assert_eq!(escaped(r#"a"b"#), r#"{v="a\"b"}"#);
        assert_eq!(escaped(r"a\b"), r#"{v="a\\b"}"#);
        assert_eq!(escaped("a\nb"), r#"{v="a\nb"}"#);
        assert_eq!(escaped("\\\"\n"), r#"{v="\\\"\n"}"#);
        assert_eq!(escaped("é✓"), "{v=\"é✓\"}");
    }

    #[test]
    fn help_text_escapes_backslash_and_newline_but_not_quotes() {
        let mut out = String::new();
        family(&mut out, "m", "gauge", "a \"b\" c\\d\ne").unwrap();
        assert_eq!(out, "# HELP m a \"b\" c\\\\d\\ne\n# TYPE m gauge\n");
    }

    #[test]
    fn labels_and_no_labels() {
        let mut out = String::new();
        sample(&mut out, "m", &[], 3).unwrap();
        let labels: [(&str, &dyn Display); 2] = [("a", &"x"), ("b", &7)];
        sample(&mut out, "m", &labels, 4).unwrap();
        assert_eq!(out, "m 3\nm{a=\"x\",b=\"7\"} 4\n");
    }

    #[test]
    fn seconds_are_exact_decimals() {
        let s = |us| Seconds(us).to_string();
        assert_eq!(s(0), "0");
        assert_eq!(s(100), "0.0001");
        assert_eq!(s(250), "0.00025");
        assert_eq!(s(2_500), "0.0025");
        assert_eq!(s(1_000_000), "1");
        assert_eq!(s(1_500_000), "1.5");
        assert_eq!(s(10_000_001), "10.000001");
        assert_eq!(s(u64::MAX), "18446744073709.551615");
    }

    #[test]
    fn floats_use_the_format_spellings() {
        assert_eq!(Float(0.0).to_string(), "0");
        assert_eq!(Float(1_712_345_678.125).to_string(), "1712345678.125");
        assert_eq!(Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Float(f64::NEG_INFINITY).to_string(), "-Inf");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = HistogramSnapshot::default();
        h.buckets[0] = 2; // <= 100 µs
        h.buckets[3] = 5; // <= 1 ms
        h.buckets[LATENCY_BOUNDS_US.len()] = 1; // above 10 s
        h.sum_us = 2 * 80 + 5 * 900 + 12_000_000;
        let mut out = String::new();
        histogram(&mut out, "h", "ZZ", &h).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), LATENCY_BOUNDS_US.len() + 1 + 2, "{out}");

        let buckets: Vec<(&str, u64)> = lines[..=LATENCY_BOUNDS_US.len()]
            .iter()
            .map(|l| {
                let rest = l.strip_prefix("h_bucket{country=\"ZZ\",le=\"").unwrap();
                let (le, value) = rest.split_once("\"} ").unwrap();
                (le, value.parse().unwrap())
            })
            .collect();
        assert_eq!(buckets[0], ("0.0001", 2));
        assert_eq!(buckets[1], ("0.00025", 2));
        assert_eq!(buckets[3], ("0.001", 7));
        assert_eq!(buckets[LATENCY_BOUNDS_US.len() - 1], ("10", 7));
        assert_eq!(buckets[LATENCY_BOUNDS_US.len()], ("+Inf", 8));
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{out}");
        let les: Vec<f64> = buckets
            .iter()
            .map(|(le, _)| le.parse::<f64>().unwrap_or(f64::INFINITY))
            .collect();
        assert!(les.windows(2).all(|w| w[0] < w[1]), "{out}");

        assert_eq!(lines[lines.len() - 2], "h_sum{country=\"ZZ\"} 12.00466");
        assert_eq!(lines[lines.len() - 1], "h_count{country=\"ZZ\"} 8");
    }

    #[test]
    fn empty_histogram_has_zero_buckets_sum_and_count() {
        let mut out = String::new();
        histogram(&mut out, "h", "ZZ", &HistogramSnapshot::default()).unwrap();
        assert!(out.lines().all(|l| l.ends_with(" 0")), "{out}");
        assert!(out.contains("h_bucket{country=\"ZZ\",le=\"+Inf\"} 0\n"));
    }

    #[test]
    fn traffic_families_come_once_each_with_country_rows() {
        let shard = Arc::new(Shard::new(0, 1));
        shard.connection_opened(crate::stats::UNKNOWN_COUNTRY);
        shard.request(crate::stats::UNKNOWN_COUNTRY, 204, 3, 5);
        let rows = country_rows(&[shard]);
        let mut out = String::new();
        write_traffic(&mut out, &rows).unwrap();
        assert!(out.contains("levee_connections_total{country=\"ZZ\"} 1\n"));
        assert!(out.contains("levee_connections_active{country=\"ZZ\"} 1\n"));
        assert!(out.contains("levee_requests_total{country=\"ZZ\",code_class=\"2xx\"} 1\n"));
        assert!(out.contains("levee_bytes_received_total{country=\"ZZ\"} 3\n"));
        assert!(out.contains("levee_bytes_sent_total{country=\"ZZ\"} 5\n"));
        assert!(out.contains("levee_tls_handshakes_total{country=\"ZZ\",kind=\"resumed\"} 0\n"));
        let types = out.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(types, 8, "{out}");
    }
}
