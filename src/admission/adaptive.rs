//! The adaptive handshake limit: each worker's cap on TLS handshakes in flight when
//! `max_handshakes_in_flight` is not set (the default), found from what handshakes cost
//! the worker instead of from a number an operator has to guess.
//!
//! **What it protects.** A worker is one thread. A full TLS handshake is a block of CPU
//! work (key exchange and signature: ~0.1 ms with ECDSA P-256, ~1.5 ms with RSA-4096 on the
//! development machine) that nothing can interrupt. When more handshakes are ready
//! than the core can do, every other task of the worker (keep-alive requests, the
//! handshakes of other countries, the accept loop) waits behind them in the runtime's run
//! queue, and the fair queue of [`super::handshakes`] never gets to choose, because nobody
//! waits in it. The limit moves that wait from the run queue into the fair queue.
//!
//! **The signal: scheduling delay.** A probe task of the worker sleeps [`PROBE_EVERY`]
//! and measures how late it wakes: that lateness is how long any task that becomes ready
//! waits for the core now (the event-loop delay). It does not depend on the clients'
//! network: a surge of far-away clients (VPN users with long round trips, the seed's
//! night) holds handshakes longer without delaying anyone, and does not lower the limit.
//! The probe runs only while the worker has handshakes (parked after [`IDLE_AFTER`] of
//! none), so an idle worker has no timer.
//!
//! **The control law** (a delay-target AIMD, as TCP Vegas or CoDel use queueing delay),
//! once per [`WINDOW`]:
//! - the window's mean delay above the target, while handshakes made at least
//!   [`MIN_WORK_SHARE`] of the worker's time: the limit is cut to
//!   `min(limit, peak in flight) x target / delay`, by at most half per window
//!   ([`MAX_CUT`]), never below [`MIN_LIMIT`];
//! - the mean delay under half the target while the limit was reached (a handshake
//!   waited, or the peak touched it): the limit grows by `sqrt(limit)` (at least 1), up
//!   to [`MAX_LIMIT`];
//! - otherwise it stays.
//!
//! The target is `max(`[`MIN_TARGET`]`, `[`TARGET_PER_WORK`]` x` the mean CPU time of one
//! handshake on this worker`)`: a single RSA-4096 signature delays the probe by its own
//! length however few handshakes run, so the target scales with the certificate; with
//! ECDSA it stays at [`MIN_TARGET`]. The limit starts low ([`INITIAL_LIMIT`]) and grows
//! while the worker keeps up: a flood at a fresh worker's door meets a small limit at once,
//! not one it takes several windows to cut. A queue of requests with no handshakes behind it
//! (a burst of keep-alive requests) does not lower the limit: handshakes are then under
//! [`MIN_WORK_SHARE`] of the time, and cutting them would not help.
//!
//! Pure state: the gate feeds it (probe delays, handshake work, peaks) and reads the
//! limit; nothing here reads a clock.

use std::time::{Duration, Instant};

/// Limit before the first window (per worker).
pub const INITIAL_LIMIT: f64 = 4.0;
/// Smallest limit: one slot for the busiest country, one kept free for the others (see
/// `HandshakeGate::may_take`).
pub const MIN_LIMIT: f64 = 2.0;
/// Largest limit.
pub const MAX_LIMIT: f64 = 4096.0;
/// How often the probe measures the worker's scheduling delay.
pub const PROBE_EVERY: Duration = Duration::from_millis(5);
/// One control window.
pub const WINDOW: Duration = Duration::from_millis(100);
/// Smallest delay target (mean probe delay over a window).
pub const MIN_TARGET: Duration = Duration::from_millis(2);
/// The delay target in handshakes' worth of CPU time.
pub const TARGET_PER_WORK: f64 = 1.0;
/// Share of the window's time the worker spent in handshakes below which a long delay is
/// not theirs to fix.
pub const MIN_WORK_SHARE: f64 = 0.25;
/// The deepest cut of one window: the limit keeps at least this share.
pub const MAX_CUT: f64 = 0.5;
/// The probe parks after this long without a handshake.
pub const IDLE_AFTER: Duration = Duration::from_secs(1);

/// One worker's adaptive limit and the window it is measuring.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    limit: f64,
    window_start: Instant,
    delay_sum: Duration,
    delay_samples: u32,
    /// CPU time spent in handshakes in this window.
    work: Duration,
    /// Most handshakes in flight at once in this window.
    peak: usize,
    /// A handshake had to wait for a slot in this window.
    queued: bool,
    /// Mean CPU time of one handshake (moving average), for the target.
    work_per_handshake: Option<Duration>,
}

impl Default for AdaptiveLimit {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl AdaptiveLimit {
    /// A limit at [`INITIAL_LIMIT`], its first window starting at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            limit: INITIAL_LIMIT,
            window_start: now,
            delay_sum: Duration::ZERO,
            delay_samples: 0,
            work: Duration::ZERO,
            peak: 0,
            queued: false,
            work_per_handshake: None,
        }
    }

    /// The limit now (whole handshakes).
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// The delay target the limit steers to.
    pub fn target(&self) -> Duration {
        let per = self.work_per_handshake.unwrap_or(Duration::ZERO);
        MIN_TARGET.max(per.mul_f64(TARGET_PER_WORK))
    }

    /// `in_flight` handshakes run now (after one took a slot).
    pub fn note_in_flight(&mut self, in_flight: usize) {
        self.peak = self.peak.max(in_flight);
    }

    /// A handshake had to wait for a slot.
    pub fn note_queued(&mut self) {
        self.queued = true;
    }

    /// One handshake's CPU time on this worker.
    pub fn note_work(&mut self, spent: Duration) {
        self.work += spent;
        self.work_per_handshake = Some(match self.work_per_handshake {
            None => spent,
            // A moving average over ~16 handshakes.
            Some(avg) => avg.mul_f64(15.0 / 16.0) + spent / 16,
        });
    }

    /// A probe woke `delay` late at `now`; `in_flight` handshakes run now. At the end of a
    /// window, applies the control law; returns whether the limit changed.
    pub fn on_delay(&mut self, now: Instant, delay: Duration, in_flight: usize) -> bool {
        self.delay_sum += delay;
        self.delay_samples += 1;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return false;
        }
        let before = self.limit();
        let mean = self.delay_sum / self.delay_samples.max(1);
        let target = self.target();
        let share = self.work.as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
        let reached = self.queued || self.peak >= before;
        if mean > target && share >= MIN_WORK_SHARE && self.peak > 0 {
            let factor = (target.as_secs_f64() / mean.as_secs_f64()).max(MAX_CUT);
            let used = self.limit.min(self.peak as f64);
            self.limit = (used * factor).max(MIN_LIMIT);
        } else if mean * 2 <= target && reached {
            self.limit = (self.limit + self.limit.sqrt().max(1.0)).min(MAX_LIMIT);
        }
        self.window_start = now;
        self.delay_sum = Duration::ZERO;
        self.delay_samples = 0;
        self.work = Duration::ZERO;
        self.peak = in_flight;
        self.queued = false;
        self.limit() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds one window of probe delays (one every `PROBE_EVERY`) with `work` of handshake
    /// CPU time and `peak` in flight; returns the limit after it.
    fn window(
        l: &mut AdaptiveLimit,
        now: &mut Instant,
        delay: Duration,
        work: Duration,
        peak: usize,
    ) -> usize {
        l.note_in_flight(peak);
        let probes = (WINDOW.as_millis() / PROBE_EVERY.as_millis()) as u32;
        for _ in 0..probes {
            l.note_work(work / probes);
            *now += PROBE_EVERY;
            l.on_delay(*now, delay, peak);
        }
        l.limit()
    }

    #[test]
    fn a_handshake_flood_that_delays_the_worker_cuts_the_limit_to_its_floor() {
        let mut now = Instant::now();
        let mut l = AdaptiveLimit::new(now);
        let mut last = l.limit();
        // Handshakes take 80% of the time and the probe is 20 ms late.
        for _ in 0..10 {
            let next = window(&mut l, &mut now, 20 * MS, 80 * MS, last);
            assert!(next <= last);
            last = next;
        }
        assert_eq!(last, MIN_LIMIT as usize);
    }

    #[test]
    fn the_limit_grows_back_while_it_binds_and_the_worker_is_prompt() {
        let mut now = Instant::now();
        let mut l = AdaptiveLimit::new(now);
        let initial = l.limit();
        window(&mut l, &mut now, 50 * MS, 90 * MS, initial);
        let low = l.limit();
        assert!(low < initial);
        // The limit is reached (peak = limit) and the delay is low: it grows.
        let mut last = low;
        for _ in 0..20 {
            let peak = l.limit();
            last = window(&mut l, &mut now, MS / 2, 30 * MS, peak);
        }
        assert!(last > 64, "grew from {low} to {last}");
    }

    #[test]
    fn an_unused_limit_does_not_grow_and_a_request_burst_does_not_cut_it() {
        let mut now = Instant::now();
        let mut l = AdaptiveLimit::new(now);
        // Few handshakes, worker prompt: no growth (the limit never bound).
        let initial = INITIAL_LIMIT as usize;
        assert_eq!(window(&mut l, &mut now, Duration::ZERO, MS, 3), initial);
        // A long delay with handshakes 2% of the time (a keep-alive burst): no cut.
        assert_eq!(window(&mut l, &mut now, 30 * MS, 2 * MS, 3), initial);
    }

    #[test]
    fn expensive_handshakes_raise_the_target() {
        let mut now = Instant::now();
        let mut l = AdaptiveLimit::new(now);
        assert_eq!(l.target(), MIN_TARGET);
        // 8 ms per handshake, the probe 6 ms late on average: under the target of 8 ms,
        // so the limit holds where ECDSA's 2 ms target would cut it.
        for _ in 0..4 {
            l.note_work(8 * MS);
        }
        assert!(l.target() >= 7 * MS, "{:?}", l.target());
        // (One window's handshakes, 8 ms each: 20 x 8 ms.)
        assert_eq!(
            window(&mut l, &mut now, 6 * MS, 160 * MS, 4),
            INITIAL_LIMIT as usize
        );
    }
}
