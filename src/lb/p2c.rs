//! Power of two random choices, weighted by latency, as Envoy's least-request and Linkerd's
//! balancers do: draw two backends at random and take the one with the lower
//! `(in_flight + 1) * max(latency_ewma_us, 1)`.
//!
//! Weights shape the draw, not the score: the two candidates are drawn from the pool's smooth
//! weighted round-robin cycle (see `weighted`), so each is a backend with probability
//! proportional to its weight (with equal weights: two distinct backends, uniformly). Idle
//! backends therefore share load by weight, and load and latency decide between the two.
//!
//! In-flight counts and the latency EWMA are the backends' shared atomics, so every worker
//! sees the same load. The random draw is a splitmix64 of a shared `AtomicU64` counter: no
//! lock, no thread-local, nothing allocated. During a `slow_start` window a recovered
//! backend that wins a pick keeps it only with probability `slow_start_factor` (otherwise the
//! other candidate gets it); only the winner's factor is read, so a pick reads the clock at
//! most once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::hash::mix64;
use super::weighted::{cycle_for, unit};
use super::{Backend, Balancer, PickContext};

/// Increment of the random counter (the 64-bit golden ratio, as splitmix64 uses).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Random pairs drawn before falling back to a scan when every sample was unusable.
const DRAWS: usize = 4;

/// Power of two choices on in-flight requests times latency EWMA.
#[derive(Debug)]
pub struct P2c {
    /// Smooth weighted round-robin cycle: candidates are drawn from it.
    cycle: Box<[u32]>,
    rng: AtomicU64,
    slow_start: Option<Duration>,
}

impl P2c {
    /// A p2c balancer over `backends`; `slow_start` is the pool's ramp-up window.
    pub fn new(backends: &[Backend], slow_start: Option<Duration>) -> Self {
        Self {
            cycle: cycle_for(backends),
            rng: AtomicU64::new(0),
            slow_start,
        }
    }

    /// 64 random bits.
    #[inline]
    fn random(&self) -> u64 {
        mix64(self.rng.fetch_add(GAMMA, Ordering::Relaxed))
    }

    /// Cost of sending one more request to `b` (lower is better).
    #[inline]
    fn score(&self, b: &Backend) -> f64 {
        let load = b.state.in_flight().saturating_add(1) as f64;
        load * b.state.latency_ewma_us().max(1.0)
    }

    /// During slow start: whether `winner` keeps the pick (a coin with probability
    /// `slow_start_factor`, from the random word `r`).
    #[inline]
    fn keeps(&self, winner: &Backend, r: u64) -> bool {
        if self.slow_start.is_none() {
            return true;
        }
        let factor = winner.state.slow_start_factor(self.slow_start);
        factor >= 1.0 || unit(mix64(r)) < factor
    }
}

/// `r` reduced to 0..n without division (Lemire's multiply-shift); `n` < 2^32.
#[inline]
fn below(r: u32, n: usize) -> usize {
    ((u64::from(r) * n as u64) >> 32) as usize
}

impl Balancer for P2c {
    fn pick(&self, backends: &[Backend], _ctx: &PickContext) -> Option<usize> {
        let n = backends.len();
        if n < 2 {
            return backends.first().filter(|b| b.state.is_usable()).map(|_| 0);
        }
        let len = self.cycle.len().min(u32::MAX as usize);
        let draws = if len < 2 { 0 } else { DRAWS };
        let mut r = self.random();
        for _ in 0..draws {
            // Two distinct cycle slots from the two halves of one random word.
            let sa = below(r as u32, len);
            let mut sb = below((r >> 32) as u32, len - 1);
            if sb >= sa {
                sb += 1;
            }
            let (a, b) = (self.cycle[sa] as usize, self.cycle[sb] as usize);
            let (Some(ba), Some(bb)) = (backends.get(a), backends.get(b)) else {
                continue;
            };
            match (ba.state.is_usable(), bb.state.is_usable()) {
                (true, true) if a != b => {
                    let (win, lose) = if self.score(bb) < self.score(ba) {
                        (b, a)
                    } else {
                        (a, b)
                    };
                    return Some(if self.keeps(&backends[win], r) {
                        win
                    } else {
                        lose
                    });
                }
                (true, _) => return Some(a),
                (false, true) => return Some(b),
                (false, false) => r = self.random(),
            }
        }
        // Mostly unusable: the first usable backend from a random start.
        let start = below(r as u32, n);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| backends[i].state.is_usable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend::new(format!("127.0.0.1:{}", 1000 + i).parse().unwrap(), 1))
            .collect()
    }

    fn counts(p: &P2c, b: &[Backend], picks: usize) -> Vec<usize> {
        let mut c = vec![0; b.len()];
        for _ in 0..picks {
            c[p.pick(b, &PickContext::default()).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn spreads_evenly_when_backends_look_alike() {
        let b = backends(4);
        let c = counts(&P2c::new(&b, None), &b, 10_000);
        for x in c {
            assert!(x.abs_diff(2_500) < 300, "{x}");
        }
    }

    #[test]
    fn avoids_a_backend_with_ten_times_the_latency() {
        let b = backends(3);
        b[0].state.record_success(Duration::from_millis(10));
        b[1].state.record_success(Duration::from_millis(1));
        b[2].state.record_success(Duration::from_millis(1));
        let c = counts(&P2c::new(&b, None), &b, 10_000);
        assert!(c[0] < 500, "slow backend got {c:?}");
    }

    #[test]
    fn prefers_fewer_in_flight_at_equal_latency() {
        let b = backends(2);
        let _held: Vec<_> = (0..4).map(|_| b[0].state.begin_request()).collect();
        let c = counts(&P2c::new(&b, None), &b, 100);
        assert_eq!(c, [0, 100]);
    }

    #[test]
    fn idle_backends_share_by_weight() {
        let mut b = backends(3);
        b[0].weight = 1;
        b[1].weight = 2;
        b[2].weight = 7;
        let p = P2c::new(&b, None);
        // Same in-flight and latency everywhere: the first candidate wins, drawn by weight.
        let c = counts(&p, &b, 10_000);
        for (got, want) in c.iter().zip([1_000usize, 2_000, 7_000]) {
            assert!(got.abs_diff(want) <= 300, "{c:?}");
        }
    }

    #[test]
    fn skips_unusable_and_returns_none_when_all_are() {
        let b = backends(10);
        for x in &b[..9] {
            x.state.set_healthy(false);
        }
        let p = P2c::new(&b, None);
        for _ in 0..1_000 {
            assert_eq!(p.pick(&b, &PickContext::default()), Some(9));
        }
        b[9].state.set_healthy(false);
        assert_eq!(p.pick(&b, &PickContext::default()), None);
        assert_eq!(p.pick(&b[..1], &PickContext::default()), None);
        assert_eq!(p.pick(&[], &PickContext::default()), None);
        b[0].state.set_healthy(true);
        assert_eq!(p.pick(&b[..1], &PickContext::default()), Some(0));
    }

    #[test]
    fn slow_start_holds_back_a_recovered_backend() {
        let b = backends(2);
        b[0].state.record_success(Duration::from_millis(5));
        b[1].state.record_success(Duration::from_millis(1));
        let p = P2c::new(&b, Some(Duration::from_secs(3_600)));
        // The clock's epoch must be behind us, or the recovery time reads as "never".
        let _ = crate::lb::clock::now_ms();
        std::thread::sleep(Duration::from_millis(3));
        b[1].state.set_healthy(false);
        b[1].state.set_healthy(true);
        let c = counts(&p, &b, 10_000);
        // Faster, it would win every pick; ramping from 5%, it wins about 5%.
        assert!((200..1_000).contains(&c[1]), "{c:?}");
    }

    #[test]
    fn draws_distinct_pairs_over_the_whole_range() {
        for n in [2usize, 3, 7, 300] {
            let mut seen = vec![false; n];
            let p = P2c::new(&backends(n), None);
            for _ in 0..(n * 50) {
                let r = p.random();
                let a = below(r as u32, n);
                let mut b = below((r >> 32) as u32, n - 1);
                if b >= a {
                    b += 1;
                }
                assert!(a < n && b < n && a != b);
                seen[a] = true;
                seen[b] = true;
            }
            assert!(seen.iter().all(|&s| s), "n = {n}");
        }
    }
}
