//! What the clients report while the run goes: per country and traffic kind, the arrivals in
//! the window, their outcomes and the latencies of the successful ones; per country, the
//! connections opened over the whole run (to compare with levee's own per-country count).

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connection refused, reset, or closed by the server before the response.
    Refused,
    /// The attempt did not finish within `--timeout`.
    Timeout,
    /// A TLS error (an alert, a certificate the client does not trust, ...).
    Tls,
    /// An HTTP response whose status is not 2xx.
    Status,
    /// Anything else (a local error, an HTTP protocol error).
    Other,
    /// Not started: `--max-in-flight` connections were already open.
    Skipped,
}

/// Number of [`Failure`] kinds.
pub const FAILURES: usize = 6;

/// The two kinds of client traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new connection: full handshake, `GET /`, close; or, in hello mode, ClientHello to
    /// the server's first flight ([`super::hello`]).
    New = 0,
    /// A request of a keep-alive client (reconnecting first when its connection closed).
    KeepAlive = 1,
}

/// Counts and latencies of one country and kind, within the window.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Arrivals, skipped ones included.
    pub attempts: u64,
    /// Successes.
    pub ok: u64,
    /// Failures by [`Failure`] (index = discriminant order).
    pub failures: [u64; FAILURES],
    /// Latencies of the successes, microseconds.
    pub latencies_us: Vec<u32>,
    /// When each success (same order as `latencies_us`) arrived, ms from the start.
    pub arrivals_ms: Vec<u32>,
}

impl Row {
    /// Adds `other`'s counts and latencies to this row.
    pub fn merge(&mut self, other: &Row) {
        self.attempts += other.attempts;
        self.ok += other.ok;
        for (a, b) in self.failures.iter_mut().zip(other.failures) {
            *a += b;
        }
        self.latencies_us.extend_from_slice(&other.latencies_us);
        self.arrivals_ms.extend_from_slice(&other.arrivals_ms);
    }
}

/// The shared record of a run: one [`Row`] per country and kind, and opened connections per
/// country.
#[derive(Debug)]
pub struct Recorder {
    window_from: Duration,
    rows: Vec<Mutex<Row>>,
    connections: Vec<AtomicU64>,
}

impl Recorder {
    /// A record for `countries` countries; arrivals before `window_from` are not counted in
    /// the rows (their connections are).
    pub fn new(countries: usize, window_from: Duration) -> Self {
        Self {
            window_from,
            rows: (0..countries * 2).map(|_| Mutex::default()).collect(),
            connections: (0..countries).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Notes a connection opened by `country` (TCP connected, PROXY header sent).
    pub fn opened(&self, country: usize) {
        if let Some(c) = self.connections.get(country) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records an arrival at `at` (offset from the start) and its outcome: the latency of a
    /// success, or why it failed.
    pub fn record(
        &self,
        country: usize,
        kind: Kind,
        at: Duration,
        outcome: Result<Duration, Failure>,
    ) {
        if at < self.window_from {
            return;
        }
        let Some(row) = self.rows.get(country * 2 + kind as usize) else {
            return;
        };
        let mut row = row.lock().unwrap_or_else(PoisonError::into_inner);
        row.attempts += 1;
        match outcome {
            Ok(latency) => {
                row.ok += 1;
                let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
                row.latencies_us.push(us);
                row.arrivals_ms
                    .push(u32::try_from(at.as_millis()).unwrap_or(u32::MAX));
            }
            Err(f) => row.failures[f as usize] += 1,
        }
    }

    /// The row of `country` and `kind` so far.
    pub fn row(&self, country: usize, kind: Kind) -> Row {
        self.rows
            .get(country * 2 + kind as usize)
            .map(|r| r.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .unwrap_or_default()
    }

    /// Connections `country` opened over the whole run.
    pub fn connections(&self, country: usize) -> u64 {
        self.connections
            .get(country)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_arrivals_only_count_connections() {
        let r = Recorder::new(2, Duration::from_secs(5));
        r.opened(1);
        r.record(
            1,
            Kind::New,
            Duration::from_secs(1),
            Ok(Duration::from_millis(3)),
        );
        r.record(
            1,
            Kind::New,
            Duration::from_secs(6),
            Ok(Duration::from_millis(4)),
        );
        r.record(1, Kind::New, Duration::from_secs(7), Err(Failure::Timeout));
        r.record(
            1,
            Kind::KeepAlive,
            Duration::from_secs(7),
            Err(Failure::Skipped),
        );
        let row = r.row(1, Kind::New);
        assert_eq!((row.attempts, row.ok), (2, 1));
        assert_eq!(row.latencies_us, [4000]);
        assert_eq!(row.failures[Failure::Timeout as usize], 1);
        assert_eq!(
            r.row(1, Kind::KeepAlive).failures[Failure::Skipped as usize],
            1
        );
        assert_eq!((r.connections(1), r.connections(0)), (1, 0));
    }
}
