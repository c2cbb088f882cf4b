//! Least connections: the backend with the fewest requests in flight per unit of weight,
//! counted across all workers (each backend's shared `in_flight` atomic), as nginx's and
//! HAProxy's `leastconn` compare them (`in_flight / weight`).
//!
//! Ties (for instance every backend idle) are broken by where the scan starts: the next
//! entry of the pool's smooth weighted round-robin cycle (see `weighted`), read through one
//! shared `AtomicUsize`. So equally loaded backends take turns, in proportion to their
//! weights. During a `slow_start` window a recovered backend (which, idle, would win every
//! pick) keeps a pick it wins only with probability `slow_start_factor`; otherwise the pick
//! goes to the best other backend. Only the winner's factor is read, so a pick reads the
//! clock at most once.
//!
//! A pick compares at most `WINDOW` usable backends, scanning from the start backend, so its
//! cost is bounded in large pools: with up to `WINDOW` backends the choice is exact; beyond
//! it, successive picks look at windows that start at every backend in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::hash::mix64;
use super::weighted::{cycle_for, unit};
use super::{Backend, Balancer, PickContext};

/// Most usable backends compared per pick.
pub const WINDOW: usize = 8;

/// Fewest in-flight requests per unit of weight.
#[derive(Debug)]
pub struct LeastConn {
    /// Smooth weighted round-robin cycle: where each pick starts its scan.
    starts: Box<[u32]>,
    next: AtomicUsize,
    slow_start: Option<Duration>,
}

impl LeastConn {
    /// A least-connections balancer over `backends`; `slow_start` is the pool's ramp-up
    /// window.
    pub fn new(backends: &[Backend], slow_start: Option<Duration>) -> Self {
        Self {
            starts: cycle_for(backends),
            next: AtomicUsize::new(0),
            slow_start,
        }
    }

    /// The usable backend with the lowest `in_flight / weight` among the first `WINDOW`
    /// usable ones from `start` (the first on ties), leaving out `skip`; with `RUNNER_UP`,
    /// also the second best among those compared (a scan that stops early at an idle
    /// backend may not have one).
    #[inline]
    fn least<const RUNNER_UP: bool>(
        backends: &[Backend],
        start: usize,
        skip: Option<usize>,
    ) -> (Option<usize>, Option<usize>) {
        let n = backends.len();
        // (index, in flight, weight) of the best and second best so far.
        let mut best: Option<(usize, u64, u64)> = None;
        let mut second: Option<(usize, u64, u64)> = None;
        // load / weight < other_load / other_weight, without division (weights are below
        // 2^32 and in-flight counts far below 2^32).
        let lower = |load: u64, weight: u64, other: Option<(usize, u64, u64)>| match other {
            None => true,
            Some((_, ol, ow)) => load.saturating_mul(ow) < ol.saturating_mul(weight),
        };
        let mut compared = 0;
        for k in 0..n {
            let i = if start + k < n {
                start + k
            } else {
                start + k - n
            };
            let b = &backends[i];
            if Some(i) == skip || !b.state.is_usable() {
                continue;
            }
            let load = b.state.in_flight();
            let weight = u64::from(b.weight.max(1));
            if lower(load, weight, best) {
                if RUNNER_UP {
                    second = best;
                }
                best = Some((i, load, weight));
                if load == 0 {
                    // Nothing beats an idle backend.
                    break;
                }
            } else if RUNNER_UP && lower(load, weight, second) {
                second = Some((i, load, weight));
            }
            compared += 1;
            if compared >= WINDOW {
                break;
            }
        }
        (best.map(|(i, _, _)| i), second.map(|(i, _, _)| i))
    }
}

impl Balancer for LeastConn {
    fn pick(&self, backends: &[Backend], _ctx: &PickContext) -> Option<usize> {
        let n = backends.len();
        if n == 0 || self.starts.is_empty() {
            return None;
        }
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let start = (self.starts[ticket % self.starts.len()] as usize).min(n - 1);
        if self.slow_start.is_none() {
            return Self::least::<false>(backends, start, None).0;
        }
        let (winner, runner_up) = Self::least::<true>(backends, start, None);
        let winner = winner?;
        let factor = backends[winner].state.slow_start_factor(self.slow_start);
        if factor >= 1.0 || unit(mix64(ticket as u64)) < factor {
            return Some(winner);
        }
        // A recovered backend gives the pick away: to the runner-up, or the best of the rest.
        runner_up
            .or_else(|| Self::least::<false>(backends, start, Some(winner)).0)
            .or(Some(winner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::InFlight;

    fn backends(weights: &[u32]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend::new(format!("127.0.0.1:{}", 1000 + i).parse().unwrap(), w))
            .collect()
    }

    fn hold(b: &Backend, n: usize) -> Vec<InFlight> {
        (0..n).map(|_| b.state.begin_request()).collect()
    }

    #[test]
    fn prefers_fewer_in_flight() {
        let b = backends(&[1, 1, 1]);
        let lc = LeastConn::new(&b, None);
        let _a = hold(&b[0], 3);
        let _c = hold(&b[2], 1);
        for _ in 0..10 {
            assert_eq!(lc.pick(&b, &PickContext::default()), Some(1));
        }
        let _b = hold(&b[1], 2);
        for _ in 0..10 {
            assert_eq!(lc.pick(&b, &PickContext::default()), Some(2));
        }
    }

    #[test]
    fn ties_rotate() {
        let b = backends(&[1, 1, 1]);
        let lc = LeastConn::new(&b, None);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[lc.pick(&b, &PickContext::default()).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn load_follows_weights() {
        let b = backends(&[1, 3]);
        let lc = LeastConn::new(&b, None);
        // Requests that never finish: they pile up 1:3.
        let mut held = Vec::new();
        for _ in 0..400 {
            let i = lc.pick(&b, &PickContext::default()).unwrap();
            held.push(b[i].state.begin_request());
        }
        assert_eq!(b[0].state.in_flight(), 100);
        assert_eq!(b[1].state.in_flight(), 300);
    }

    #[test]
    fn idle_backends_take_turns_by_weight() {
        let b = backends(&[1, 2, 7]);
        let lc = LeastConn::new(&b, None);
        let mut counts = [0; 3];
        for _ in 0..1_000 {
            counts[lc.pick(&b, &PickContext::default()).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 200, 700]);
    }

    #[test]
    fn skips_unusable_and_returns_none_when_all_are() {
        let b = backends(&[1, 1, 1]);
        let lc = LeastConn::new(&b, None);
        let _busy = hold(&b[0], 5);
        b[1].state.set_healthy(false);
        b[2].state.set_healthy(false);
        for _ in 0..10 {
            assert_eq!(lc.pick(&b, &PickContext::default()), Some(0));
        }
        b[0].state.set_healthy(false);
        assert_eq!(lc.pick(&b, &PickContext::default()), None);
        assert_eq!(
            LeastConn::new(&[], None).pick(&[], &PickContext::default()),
            None
        );
    }

    #[test]
    fn large_pools_look_past_unusable_backends() {
        let b = backends(&[1; 300]);
        let lc = LeastConn::new(&b, None);
        for x in &b[..299] {
            x.state.set_healthy(false);
        }
        for _ in 0..300 {
            assert_eq!(lc.pick(&b, &PickContext::default()), Some(299));
        }
    }

    #[test]
    fn slow_start_holds_back_a_recovered_idle_backend() {
        let b = backends(&[1, 1]);
        let lc = LeastConn::new(&b, Some(Duration::from_secs(3_600)));
        let _busy = hold(&b[0], 3);
        // The clock's epoch must be behind us, or the recovery time reads as "never".
        let _ = crate::lb::clock::now_ms();
        std::thread::sleep(Duration::from_millis(3));
        b[1].state.set_healthy(false);
        b[1].state.set_healthy(true);
        let to_recovered = (0..10_000)
            .filter(|_| lc.pick(&b, &PickContext::default()) == Some(1))
            .count();
        // Idle, it would win every pick; ramping from 5%, it wins about 5%.
        assert!((200..1_000).contains(&to_recovered), "{to_recovered}");
    }

    #[test]
    fn large_pools_still_avoid_a_busy_backend() {
        let b = backends(&[1; 300]);
        let lc = LeastConn::new(&b, None);
        let _busy = hold(&b[7], 10);
        for _ in 0..3_000 {
            assert_ne!(lc.pick(&b, &PickContext::default()), Some(7));
        }
    }
}
