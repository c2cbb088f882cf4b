//! Smooth weighted round robin, as nginx does it: over one cycle each backend gets its
//! weight's share, spread out rather than in bursts (weights 5:1:1 give a,a,b,a,c,a,a).
//!
//! The cycle is computed once when the balancer is built (weights divided by their gcd,
//! scaled down proportionally if the cycle would exceed `MAX_CYCLE`), and a pick indexes it
//! with one shared `AtomicUsize`, so every worker walks the same cycle without a lock.
//! An unusable backend's slot passes to the next usable one in the cycle. During a
//! `slow_start` window a recovered backend keeps a slot only with probability
//! `slow_start_factor`; a slot it gives up passes to the next usable other backend in the
//! cycle. Only the first usable slot's factor is read, so a pick reads the clock at most
//! once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::hash::mix64;
use super::{Backend, Balancer, PickContext};

/// Longest precomputed cycle (entries); larger weight sums are scaled down to it.
pub const MAX_CYCLE: u64 = 4096;

/// Slots tried along the cycle before falling back to a scan of the backends.
const MAX_WALK: usize = 64;

/// Smooth weighted round robin over a precomputed cycle.
#[derive(Debug)]
pub struct Weighted {
    /// Backend indexes in smooth-WRR order; one full cycle.
    cycle: Box<[u32]>,
    next: AtomicUsize,
    slow_start: Option<Duration>,
}

impl Weighted {
    /// Precomputes the cycle for `backends`' weights. `slow_start` is the pool's ramp-up
    /// window for recovered backends.
    pub fn new(backends: &[Backend], slow_start: Option<Duration>) -> Self {
        Self {
            cycle: cycle_for(backends),
            next: AtomicUsize::new(0),
            slow_start,
        }
    }

    /// The precomputed cycle (backend indexes), for inspection.
    pub fn cycle(&self) -> &[u32] {
        &self.cycle
    }

    /// During slow start: whether `backend` keeps the slot of pick `ticket` (a coin with
    /// probability `slow_start_factor`).
    #[inline]
    fn keeps(&self, backend: &Backend, ticket: usize) -> bool {
        if self.slow_start.is_none() {
            return true;
        }
        let factor = backend.state.slow_start_factor(self.slow_start);
        factor >= 1.0 || unit(mix64(ticket as u64)) < factor
    }
}

impl Balancer for Weighted {
    fn pick(&self, backends: &[Backend], _ctx: &PickContext) -> Option<usize> {
        let len = self.cycle.len();
        if len == 0 || backends.is_empty() {
            return None;
        }
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let start = ticket % len;
        let usable = |i: usize| backends.get(i).is_some_and(|b| b.state.is_usable());
        // The first usable slot's backend, unless it is ramping up and gives the slot away.
        let mut declined = None;
        for step in 0..len.min(MAX_WALK) {
            let i = self.cycle[(start + step) % len] as usize;
            if Some(i) == declined || !usable(i) {
                continue;
            }
            if declined.is_none() && !self.keeps(&backends[i], ticket) {
                declined = Some(i);
                continue;
            }
            return Some(i);
        }
        if let Some(i) = declined {
            return Some(i);
        }
        // Many slots in a row refused: take the first usable backend after the slot's own
        // (bounded by the number of backends; ignores slow start, which only shapes load).
        let first = self.cycle[start] as usize;
        let n = backends.len();
        (1..=n)
            .map(|k| (first + k) % n)
            .find(|&i| backends[i].state.is_usable())
    }
}

/// The smooth weighted round-robin cycle of `backends`' weights (also used by `least_conn`
/// to break ties in proportion to weight).
pub(super) fn cycle_for(backends: &[Backend]) -> Box<[u32]> {
    let weights: Vec<u64> = backends.iter().map(|b| u64::from(b.weight)).collect();
    smooth_cycle(&reduce(&weights)).into_boxed_slice()
}

/// A uniform number in [0, 1) from 53 random bits.
#[inline]
pub(super) fn unit(r: u64) -> f64 {
    (r >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Weights divided by their gcd, then scaled so their sum is at most
/// `max(MAX_CYCLE, number of backends)` (each stays at least 1). A weight of 0 counts as 1.
fn reduce(weights: &[u64]) -> Vec<u64> {
    let weights: Vec<u64> = weights.iter().map(|&w| w.max(1)).collect();
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut reduced: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let sum: u64 = reduced.iter().sum();
    let cap = MAX_CYCLE.max(reduced.len() as u64);
    if sum > cap {
        // Proportional, rounded down, never below 1: the sum stays within cap + n.
        let budget = cap.saturating_sub(reduced.len() as u64).max(1);
        for w in &mut reduced {
            *w = 1 + (*w).saturating_mul(budget) / sum;
        }
    }
    reduced
}

/// One cycle of nginx's smooth weighted round robin: each step adds every weight to its
/// backend's current value, picks the largest (the first on ties) and subtracts the total
/// from it. Over one cycle every current value returns to 0.
fn smooth_cycle(weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    let weights: Vec<i64> = weights
        .iter()
        .map(|&w| i64::try_from(w).unwrap_or(i64::MAX))
        .collect();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let total_i = i64::try_from(total).unwrap_or(i64::MAX);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let best = argmax(&current);
        current[best] -= total_i;
        cycle.push(u32::try_from(best).unwrap_or(u32::MAX));
    }
    cycle
}

/// Index of the largest value, the first one on ties.
fn argmax(values: &[i64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighted(weights: &[u32]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend::new(format!("127.0.0.1:{}", 1000 + i).parse().unwrap(), w))
            .collect()
    }

    fn picks(w: &Weighted, b: &[Backend], n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| w.pick(b, &PickContext::default()).unwrap())
            .collect()
    }

    #[test]
    fn follows_nginx_smooth_sequence() {
        let b = weighted(&[5, 1, 1]);
        let w = Weighted::new(&b, None);
        assert_eq!(w.cycle(), &[0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(
            picks(&w, &b, 14),
            [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]
        );
    }

    /// Longest run of `x` in `seq`.
    fn longest_run(seq: &[usize], x: usize) -> usize {
        let mut best = 0;
        let mut run = 0;
        for &v in seq {
            run = if v == x { run + 1 } else { 0 };
            best = best.max(run);
        }
        best
    }

    #[test]
    fn one_two_seven_share_without_bursts() {
        let b = weighted(&[1, 2, 7]);
        let w = Weighted::new(&b, None);
        let seq = picks(&w, &b, 10_000);
        let mut counts = [0usize; 3];
        for &i in &seq {
            counts[i] += 1;
        }
        for (got, want) in counts.iter().zip([1_000usize, 2_000, 7_000]) {
            assert!(got.abs_diff(want) <= 300, "counts {counts:?}");
        }
        // nginx's cycle for 1:2:7 is c,b,c,c,a,c,c,b,c,c; repeated, the heaviest runs at most
        // 3 in a row (across the cycle boundary), where a plain WRR would send 7.
        let cycle: Vec<usize> = w.cycle().iter().map(|&i| i as usize).collect();
        assert_eq!(cycle, [2, 1, 2, 2, 0, 2, 2, 1, 2, 2]);
        assert_eq!(longest_run(&seq, 2), 3);
        let b = weighted(&[5, 1, 1]);
        let w = Weighted::new(&b, None);
        // a,a,b,a,c,a,a | a,a,b,...: at most 4 in a row.
        assert_eq!(longest_run(&picks(&w, &b, 700), 0), 4);
    }

    #[test]
    fn reduces_by_gcd_and_caps_the_cycle() {
        let b = weighted(&[100, 200, 700]);
        assert_eq!(Weighted::new(&b, None).cycle().len(), 10);
        let b = weighted(&[65_535, 1, 30_000]);
        let w = Weighted::new(&b, None);
        assert!(w.cycle().len() as u64 <= MAX_CYCLE + 3);
        let count = |i| w.cycle().iter().filter(|&&x| x == i).count();
        assert!(count(1) >= 1, "a light backend keeps a slot");
        let ratio = count(0) as f64 / count(2) as f64;
        assert!((ratio - 65_535.0 / 30_000.0).abs() < 0.01, "ratio {ratio}");
    }

    #[test]
    fn skips_unusable_backends() {
        let b = weighted(&[1, 2, 7]);
        let w = Weighted::new(&b, None);
        b[2].state.set_healthy(false);
        let seq = picks(&w, &b, 3_000);
        assert!(!seq.contains(&2));
        let a = seq.iter().filter(|&&i| i == 0).count();
        assert!(a > 300 && a < 1_500, "a got {a} of 3000");
        b[0].state.set_healthy(false);
        b[1].state.set_healthy(false);
        assert_eq!(w.pick(&b, &PickContext::default()), None);
        assert_eq!(
            Weighted::new(&[], None).pick(&[], &PickContext::default()),
            None
        );
    }

    #[test]
    fn many_unusable_backends_fall_back_to_a_scan() {
        let b = weighted(&vec![1; 300]);
        let w = Weighted::new(&b, None);
        for x in &b[..299] {
            x.state.set_healthy(false);
        }
        for _ in 0..1_000 {
            assert_eq!(w.pick(&b, &PickContext::default()), Some(299));
        }
    }

    #[test]
    fn slow_start_ramps_a_recovered_backend() {
        let b = weighted(&[1, 1]);
        let w = Weighted::new(&b, Some(Duration::from_secs(3_600)));
        // The clock's epoch must be behind us, or the recovery time reads as "never".
        let _ = super::super::clock::now_ms();
        std::thread::sleep(Duration::from_millis(3));
        b[1].state.set_healthy(false);
        b[1].state.set_healthy(true); // just recovered: ~5% of its share
        let to_recovered = picks(&w, &b, 10_000).iter().filter(|&&i| i == 1).count();
        assert!(to_recovered < 1_000, "recovered backend got {to_recovered}");
        assert!(to_recovered > 100, "recovered backend got {to_recovered}");
    }
}
