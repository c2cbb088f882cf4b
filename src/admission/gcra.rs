//! Token buckets as GCRA cells: one `AtomicU64` per bucket, shared by every worker.
//!
//! The generic cell rate algorithm keeps a bucket as one number, its *theoretical arrival
//! time* (TAT): the instant the bucket would be full again. A request at `now` passes when
//! `TAT - now <= tolerance` (tolerance = interval x (burst - 1)) and moves the TAT to
//! `max(TAT, now) + interval`. That is a token bucket of `burst` tokens refilled one per
//! `interval`, in one compare-and-swap and without a refill timer. A bucket is shared by
//! the workers (a limit of 20/s is 20/s for the process, not per core); the CAS is
//! lock-free and only runs for a key that has a limit.
//!
//! Times are nanoseconds since a process-wide [`Clock`] epoch, so 0 is "full" and the cells
//! survive reloads (a new rate applies to the same TAT at once).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest interval between two tokens, ~31.7 years (1e18 ns).
pub const MAX_INTERVAL_NS: u64 = 1_000_000_000_000_000_000;

/// The most a bucket's TAT may run ahead of now, ~146 years (2^62 ns): far from `u64::MAX`,
/// so `TAT + interval` cannot overflow for centuries of process uptime.
pub const MAX_TOLERANCE_NS: u64 = 1 << 62;

/// A rate as GCRA parameters: one token per `interval_ns`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Nanoseconds between two tokens (1e9 / per second).
    pub interval_ns: u64,
    /// Tokens the bucket holds when full (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `per_sec` tokens a second (> 0), `burst` at once (>= 1). A rate that is not a
    /// finite number above 0 fails closed: one token in 30 years.
    pub fn per_second(per_sec: f64, burst: u32) -> Self {
        let interval = if per_sec.is_finite() && per_sec > 0.0 {
            (1e9 / per_sec).clamp(1.0, MAX_INTERVAL_NS as f64) as u64
        } else {
            MAX_INTERVAL_NS
        };
        Self {
            interval_ns: interval,
            burst: burst.max(1),
        }
    }

    /// Tokens a second.
    pub fn per_sec(&self) -> f64 {
        1e9 / self.interval_ns.max(1) as f64
    }

    /// How far ahead of now the TAT may run, at most [`MAX_TOLERANCE_NS`]: a slow rate with a
    /// huge burst holds fewer tokens than it asked for, never an unbounded number.
    fn tolerance_ns(&self) -> u64 {
        self.interval_ns
            .saturating_mul(u64::from(self.burst.saturating_sub(1)))
            .min(MAX_TOLERANCE_NS)
    }
}

/// The process-wide time base of the cells.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }
}

impl Clock {
    /// Nanoseconds since the epoch (never 0, so a fresh cell reads as full).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// One bucket.
#[derive(Debug, Default)]
pub struct Cell {
    tat: AtomicU64,
}

impl Cell {
    /// Takes a token at `now`; `Err` carries how long until one is free.
    pub fn take(&self, rate: Rate, now: u64) -> Result<(), Duration> {
        let tolerance = rate.tolerance_ns();
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > tolerance {
                return Err(Duration::from_nanos(start - now - tolerance));
            }
            // Past `u64::MAX` the bucket is refused, not saturated into passing forever.
            let Some(next) = start.checked_add(rate.interval_ns) else {
                return Err(Duration::from_nanos(u64::MAX));
            };
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }

    /// Whether the bucket is full at `now` (nobody used it for a while).
    fn is_idle(&self, now: u64) -> bool {
        self.tat.load(Ordering::Relaxed) <= now
    }

    fn reset(&self) {
        self.tat.store(0, Ordering::Relaxed);
    }
}

/// Slots of the ASN bucket table.
pub const ASN_CELLS: usize = 4096;

/// Buckets for autonomous systems: a fixed table of `ASN_CELLS` cells, each stamped with
/// the ASN using it. A cell whose owner has been idle long enough for its bucket to be full
/// is taken over by the next ASN that hashes there; two ASNs both active in one cell share
/// it (rare with 4096 slots; the effect is a stricter limit for both, never a looser one).
#[derive(Debug)]
pub struct AsnCells {
    owners: Box<[AtomicU32]>,
    cells: Box<[Cell]>,
}

impl Default for AsnCells {
    fn default() -> Self {
        Self {
            owners: (0..ASN_CELLS).map(|_| AtomicU32::new(0)).collect(),
            cells: (0..ASN_CELLS).map(|_| Cell::default()).collect(),
        }
    }
}

impl AsnCells {
    /// The bucket of `asn` at `now`.
    pub fn cell(&self, asn: u32, now: u64) -> &Cell {
        let i = (asn.wrapping_mul(0x9E37_79B1) >> 20) as usize % ASN_CELLS;
        let (Some(owner), Some(cell)) = (self.owners.get(i), self.cells.get(i)) else {
            // Unreachable: `i < ASN_CELLS`, the length of both tables.
            return &self.cells[0];
        };
        if owner.load(Ordering::Relaxed) != asn && cell.is_idle(now) {
            owner.store(asn, Ordering::Relaxed);
            cell.reset();
        }
        cell
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn burst_then_steady_rate() {
        let cell = Cell::default();
        let rate = Rate::per_second(10.0, 5);
        let t0 = 10 * SEC;
        let passed = (0..20).filter(|_| cell.take(rate, t0).is_ok()).count();
        assert_eq!(passed, 5, "a full bucket gives its burst at once");
        let wait = cell.take(rate, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        // One second later the bucket is full again: its burst, not the ten tokens of a second.
        let t1 = t0 + SEC;
        let passed = (0..20).filter(|_| cell.take(rate, t1).is_ok()).count();
        assert_eq!(passed, 5);
        // 300 ms after that: three tokens.
        let passed = (0..20)
            .filter(|_| cell.take(rate, t1 + 300_000_000).is_ok())
            .count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn admits_the_rate_over_time() {
        let cell = Cell::default();
        let rate = Rate::per_second(20.0, 20);
        // 200 attempts a second for 10 seconds, evenly spaced.
        let ok = (0..2000u64)
            .filter(|i| cell.take(rate, SEC + i * SEC / 200).is_ok())
            .count();
        assert!((200..=221).contains(&ok), "{ok}");
    }

    #[test]
    fn a_rate_that_is_not_a_positive_number_fails_closed() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let rate = Rate::per_second(bad, 1);
            assert_eq!(rate.interval_ns, MAX_INTERVAL_NS, "{bad}");
            let cell = Cell::default();
            assert!(cell.take(rate, SEC).is_ok(), "one token, the burst");
            assert!(cell.take(rate, 2 * SEC).is_err(), "{bad}: then none");
        }
        assert_eq!(Rate::per_second(1e12, 1).interval_ns, 1, "faster than 1/ns");
    }

    #[test]
    fn a_slow_rate_with_a_huge_burst_stays_bounded() {
        // 1 every 2000 s with a burst of ten million: the tolerance would overflow u64.
        let rate = Rate::per_second(0.0005, 10_000_000);
        let cell = Cell::default();
        let passed = (0..3_000_000)
            .filter(|_| cell.take(rate, SEC).is_ok())
            .count();
        let cap = (MAX_TOLERANCE_NS / rate.interval_ns + 1) as usize;
        assert_eq!(
            passed, cap,
            "the burst is cut at the tolerance bound, not unbounded"
        );
        // The slowest rate: TAT near u64::MAX refuses instead of wrapping or saturating.
        let slowest = Rate {
            interval_ns: u64::MAX / 2,
            burst: u32::MAX,
        };
        let cell = Cell::default();
        let passed = (0..10).filter(|_| cell.take(slowest, SEC).is_ok()).count();
        assert!(passed <= 2, "{passed}");
        assert!(cell.take(slowest, u64::MAX - 1).is_err());
    }

    #[test]
    fn asn_cells_are_per_asn_and_reclaimed_when_idle() {
        let cells = AsnCells::default();
        let rate = Rate::per_second(1.0, 1);
        let now = 5 * SEC;
        assert!(cells.cell(64500, now).take(rate, now).is_ok());
        assert!(cells.cell(64500, now).take(rate, now).is_err());
        assert!(cells.cell(64501, now).take(rate, now).is_ok(), "own bucket");
        assert!(
            cells
                .cell(64500, now + 2 * SEC)
                .take(rate, now + 2 * SEC)
                .is_ok()
        );
    }
}
