//! The report: per country and traffic kind, arrivals, successes, success rate, p50/p99/max
//! latency of the successes and failures by kind, over the window (the surge phase: from
//! `--surge-after` to the end); as a table or as JSON. A country whose new connections are
//! hello-mode ones ([`super::hello`]: ClientHello to server first flight) says so: kind
//! `hello` in the table, `connection_kind` in the JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::ctx::Lag;
use super::plan::{Plan, Role};
use super::record::{Failure, Kind, Recorder, Row};

/// The whole report, as printed with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `surge` or `capacity`.
    pub mode: &'static str,
    /// The target listener.
    pub target: String,
    /// Length of the run, seconds.
    pub duration_s: f64,
    /// Start of the window (seconds from the start); it ends with the run.
    pub window_from_s: f64,
    /// The surge: country and new connections per second (0: none).
    pub surge_country: String,
    /// New connections per second of the surge.
    pub surge_rate: f64,
    /// The surge's connections: `hello` (ClientHello to server first flight) or `full`.
    pub surge_mode: &'static str,
    /// New connections per second of each baseline country (0 with `--no-baseline`).
    pub baseline_rate: f64,
    /// Keep-alive clients per baseline country (0 with `--no-baseline`).
    pub keepalive_clients: usize,
    /// Requests per second of each keep-alive client (0 with `--no-baseline`).
    pub keepalive_rate: f64,
    /// How far behind schedule the client fell (open loop; 0 in capacity mode).
    pub client_lag: Lag,
    /// When the run started, seconds since the Unix epoch (the window starts
    /// `window_from_s` later: the surge's onset).
    pub started_unix_s: f64,
    /// Capacity mode: the closed-loop result.
    pub capacity: Option<Capacity>,
    /// One entry per country (only the surge country's with `--no-baseline`).
    pub countries: Vec<CountryReport>,
    /// The baseline countries pooled ("the others"): more samples than any one country, so
    /// its p99 is the steadier figure to compare runs by.
    pub others: Pooled,
}

/// Every baseline country's traffic together.
#[derive(Debug, Clone, Serialize)]
pub struct Pooled {
    /// New-connection attempts in the window.
    pub new_connections: Stats,
    /// Keep-alive requests in the window.
    pub keepalive: Stats,
    /// Both together.
    pub all: Stats,
}

/// The closed-loop result.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// The connections: `hello` (ClientHello to the server's first flight: the server's
    /// full-handshake capacity) or `full` (full handshake and `GET /`).
    pub kind: &'static str,
    /// Closed-loop clients.
    pub concurrency: usize,
    /// Successful new connections (server first flights in hello mode).
    pub ok: u64,
    /// Wall time until the last attempt finished, seconds.
    pub elapsed_s: f64,
    /// `ok / elapsed_s`: full handshakes per second (server side in hello mode).
    pub connections_per_s: f64,
}

/// One country.
#[derive(Debug, Clone, Serialize)]
pub struct CountryReport {
    /// ISO code.
    pub country: String,
    /// `baseline` or `surge`.
    pub role: Role,
    /// Its new connections: `full` (full handshake, `GET /`) or `hello` (ClientHello to the
    /// server's first flight; latency up to the flight).
    pub connection_kind: &'static str,
    /// Connections opened over the whole run, warm-up included (levee should count as many
    /// for this country).
    pub connections: u64,
    /// New-connection attempts in the window.
    pub new_connections: Stats,
    /// Keep-alive requests in the window.
    pub keepalive: Stats,
    /// Both together.
    pub all: Stats,
}

/// Outcomes of one kind of traffic.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Arrivals (skipped ones included).
    pub attempts: u64,
    /// Successes.
    pub ok: u64,
    /// `ok / attempts` (1 when there were none).
    pub success_rate: f64,
    /// Latency percentiles of the successes, milliseconds (0 when none).
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// The slowest successes (at most `SLOWEST`, slowest first) and when they arrived: shows
    /// whether a p99 comes from one moment (the surge's first second) or from all along.
    pub slowest: Vec<Slow>,
    /// Failures by kind.
    pub errors: Errors,
}

/// How many of the slowest successes a [`Stats`] lists.
pub const SLOWEST: usize = 5;

/// One slow success.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Slow {
    /// Arrival, seconds from the start of the run.
    pub at_s: f64,
    /// Latency, milliseconds.
    pub ms: f64,
}

/// Failures by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Errors {
    /// Refused, reset or closed before the response.
    pub refused: u64,
    /// Timed out.
    pub timeout: u64,
    /// TLS errors.
    pub tls: u64,
    /// Status other than 2xx.
    pub status: u64,
    /// Anything else.
    pub other: u64,
    /// Not started: too many connections in flight.
    pub skipped: u64,
}

impl Stats {
    fn of(mut row: Row) -> Self {
        let mut by_latency: Vec<(u32, u32)> = row
            .latencies_us
            .iter()
            .copied()
            .zip(row.arrivals_ms.iter().copied())
            .collect();
        by_latency.sort_unstable_by(|a, b| b.cmp(a));
        let slowest = by_latency
            .iter()
            .take(SLOWEST)
            .map(|&(us, at)| Slow {
                at_s: f64::from(at) / 1000.0,
                ms: f64::from(us) / 1000.0,
            })
            .collect();
        row.latencies_us.sort_unstable();
        let f = |k: Failure| row.failures[k as usize];
        Self {
            attempts: row.attempts,
            ok: row.ok,
            success_rate: if row.attempts == 0 {
                1.0
            } else {
                row.ok as f64 / row.attempts as f64
            },
            p50_ms: percentile(&row.latencies_us, 0.50),
            p99_ms: percentile(&row.latencies_us, 0.99),
            max_ms: row
                .latencies_us
                .last()
                .map_or(0.0, |&us| f64::from(us) / 1000.0),
            slowest,
            errors: Errors {
                refused: f(Failure::Refused),
                timeout: f(Failure::Timeout),
                tls: f(Failure::Tls),
                status: f(Failure::Status),
                other: f(Failure::Other),
                skipped: f(Failure::Skipped),
            },
        }
    }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    f64::from(sorted_us[i]) / 1000.0
}

/// The report of `plan` from what `rec` recorded.
pub fn build(
    plan: &Plan,
    rec: &Recorder,
    lag: Lag,
    started_unix_s: f64,
    capacity: Option<Capacity>,
) -> Report {
    let countries = plan
        .countries
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let new = rec.row(i, Kind::New);
            let ka = rec.row(i, Kind::KeepAlive);
            let mut all = new.clone();
            all.merge(&ka);
            CountryReport {
                country: c.code.clone(),
                role: c.role,
                connection_kind: if c.hello { "hello" } else { "full" },
                connections: rec.connections(i),
                new_connections: Stats::of(new),
                keepalive: Stats::of(ka),
                all: Stats::of(all),
            }
        })
        .collect();
    let (mut new, mut ka) = (Row::default(), Row::default());
    for (i, _) in plan
        .countries
        .iter()
        .enumerate()
        .filter(|(_, c)| c.role == Role::Baseline)
    {
        new.merge(&rec.row(i, Kind::New));
        ka.merge(&rec.row(i, Kind::KeepAlive));
    }
    let mut all = new.clone();
    all.merge(&ka);
    let others = Pooled {
        new_connections: Stats::of(new),
        keepalive: Stats::of(ka),
        all: Stats::of(all),
    };
    let a = &plan.args;
    Report {
        mode: if capacity.is_some() {
            "capacity"
        } else {
            "surge"
        },
        target: plan.target.to_string(),
        duration_s: plan.duration.as_secs_f64(),
        window_from_s: plan.window_from.as_secs_f64(),
        surge_country: a.surge_country.to_ascii_uppercase(),
        surge_rate: if capacity.is_some() {
            0.0
        } else {
            a.surge_rate
        },
        surge_mode: if a.surge_mode == "hello" {
            "hello"
        } else {
            "full"
        },
        baseline_rate: if a.no_baseline { 0.0 } else { a.baseline_rate },
        keepalive_clients: if a.no_baseline {
            0
        } else {
            a.keepalive_clients
        },
        keepalive_rate: if a.no_baseline { 0.0 } else { a.keepalive_rate },
        client_lag: lag,
        started_unix_s,
        capacity,
        countries,
        others,
    }
}

/// The report as a text table.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    if let Some(c) = &r.capacity {
        if c.kind == "hello" {
            let _ = writeln!(
                out,
                "capacity: {:.0} server first flights/s (hello: ClientHello to the server's \
                 first flight), {} ok in {:.1} s, {} closed-loop clients",
                c.connections_per_s, c.ok, c.elapsed_s, c.concurrency
            );
            let _ = writeln!(
                out,
                "hint: this is the server's full-handshake capacity (its key exchange and \
                 signature per connection; the client does no cryptography). If the server \
                 was not near 100% of its CPU, the client or the machine was the limit."
            );
        } else {
            let _ = writeln!(
                out,
                "capacity: {:.0} new connections/s (full handshake + GET /), {} ok in {:.1} s, \
                 {} closed-loop clients",
                c.connections_per_s, c.ok, c.elapsed_s, c.concurrency
            );
        }
    } else {
        let _ = writeln!(
            out,
            "window: {:.1} s .. {:.1} s (from the surge start to the end; warm-up excluded); \
             surge {} at {}/s ({})",
            r.window_from_s, r.duration_s, r.surge_country, r.surge_rate, r.surge_mode
        );
        let _ = writeln!(
            out,
            "client lag: {} late starts (> {} ms), max {:.1} ms; last arrival started at {:.1} s",
            r.client_lag.late_starts,
            super::ctx::LATE.as_millis(),
            r.client_lag.max_lag_ms,
            r.client_lag.last_start_s
        );
    }
    let _ = writeln!(
        out,
        "{:<7} {:<8} {:<9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>5} {:>6} {:>5} {:>7}",
        "country",
        "role",
        "kind",
        "attempts",
        "ok",
        "success",
        "p50 ms",
        "p99 ms",
        "max ms",
        "refused",
        "timeout",
        "tls",
        "status",
        "other",
        "skipped"
    );
    for c in &r.countries {
        let role = match c.role {
            Role::Baseline => "baseline",
            Role::Surge => "surge",
        };
        let new = if c.connection_kind == "hello" {
            "hello"
        } else {
            "new"
        };
        for (kind, s) in [(new, &c.new_connections), ("keepalive", &c.keepalive)] {
            if s.attempts == 0 && kind == "keepalive" {
                continue;
            }
            let e = &s.errors;
            let _ = writeln!(
                out,
                "{:<7} {:<8} {:<9} {:>8} {:>8} {:>7.2}% {:>8.1} {:>8.1} {:>8.1} {:>7} {:>7} {:>5} {:>6} {:>5} {:>7}",
                c.country,
                role,
                kind,
                s.attempts,
                s.ok,
                s.success_rate * 100.0,
                s.p50_ms,
                s.p99_ms,
                s.max_ms,
                e.refused,
                e.timeout,
                e.tls,
                e.status,
                e.other,
                e.skipped
            );
        }
    }
    let o = &r.others;
    if o.all.attempts > 0 {
        for (kind, s) in [("new", &o.new_connections), ("keepalive", &o.keepalive)] {
            let _ = writeln!(
                out,
                "{:<7} {:<8} {:<9} {:>8} {:>8} {:>7.2}% {:>8.1} {:>8.1} {:>8.1}",
                "others",
                "pooled",
                kind,
                s.attempts,
                s.ok,
                s.success_rate * 100.0,
                s.p50_ms,
                s.p99_ms,
                s.max_ms
            );
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
        assert_eq!(percentile(&[7000], 0.99), 7.0);
    }

    #[test]
    fn stats_count_skips_as_failed_attempts() {
        let mut row = Row {
            attempts: 4,
            ok: 2,
            latencies_us: vec![3000, 1000],
            arrivals_ms: vec![12_500, 11_000],
            ..Row::default()
        };
        row.failures[Failure::Skipped as usize] = 2;
        let s = Stats::of(row);
        assert_eq!(s.success_rate, 0.5);
        assert_eq!((s.p50_ms, s.max_ms, s.errors.skipped), (1.0, 3.0, 2));
        // The slowest first, each with its own arrival time.
        let slowest: Vec<(f64, f64)> = s.slowest.iter().map(|x| (x.at_s, x.ms)).collect();
        assert_eq!(slowest, [(12.5, 3.0), (11.0, 1.0)]);
    }
}
