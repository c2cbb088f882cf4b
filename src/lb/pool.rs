//! A named pool of backends behind its balancer, and its upstream timeouts.

use std::sync::Arc;
use std::time::Duration;

use super::queue::WaitQueue;
use super::retry::RetryBudget;
use super::{Backend, Balancer, PoolPolicy};

/// Upstream timeouts of a pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolTimeouts {
    /// Time allowed to open a TCP connection to a backend.
    pub connect: Duration,
    /// Time allowed from sending the request to receiving the response head.
    pub response: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub idle: Duration,
}

/// A named group of backends behind one balancer.
#[derive(Debug)]
pub struct Pool {
    /// Pool name (as in `[pools.NAME]`).
    pub name: String,
    /// Backends in file order.
    pub backends: Vec<Backend>,
    /// The algorithm that picks among them.
    pub balancer: Arc<dyn Balancer>,
    /// Upstream timeouts.
    pub timeouts: PoolTimeouts,
    /// Hashing, health checks, outlier detection, retries, limits.
    pub policy: PoolPolicy,
    /// Retry budget shared by all workers (carried over by pool name on reload).
    pub budget: Arc<RetryBudget>,
    /// Requests waiting for a backend slot (`max_connections`; carried over by pool name, so
    /// requests queued before a reload are woken by slots freed after it).
    pub queue: Arc<WaitQueue>,
}

impl Pool {
    /// A pool with fresh runtime state (retry budget, empty queue).
    pub fn new(
        name: String,
        backends: Vec<Backend>,
        balancer: Arc<dyn Balancer>,
        timeouts: PoolTimeouts,
        policy: PoolPolicy,
    ) -> Self {
        Self {
            budget: Arc::new(RetryBudget::new(&policy.retry)),
            queue: Arc::new(WaitQueue::default()),
            name,
            backends,
            balancer,
            timeouts,
            policy,
        }
    }

    /// Takes over the runtime state of `old`, the pool of the same name in the snapshot
    /// being replaced: its retry budget, its wait queue, and the state of every backend
    /// whose address is in both (health, ejection, counters, in-flight requests).
    pub fn carry_over(&mut self, old: &Pool) {
        self.budget = Arc::clone(&old.budget);
        self.queue = Arc::clone(&old.queue);
        for backend in &mut self.backends {
            if let Some(prev) = old.backends.iter().find(|b| b.address == backend.address) {
                backend.state = Arc::clone(&prev.state);
            }
        }
    }

    /// Whether this pool's balancer is what `algorithm.build(backends, policy)` would build
    /// now: same algorithm and `slow_start`, same backend addresses and weights in the same
    /// order. A reload then reuses it (its cursors keep turning, and a `maglev` table is not
    /// rebuilt: that is most of the cost of reloading a config with many maglev pools).
    pub fn balancer_fits(&self, backends: &[Backend], policy: &PoolPolicy) -> bool {
        self.policy.algorithm == policy.algorithm
            && self.policy.slow_start == policy.slow_start
            && self.backends.len() == backends.len()
            && self
                .backends
                .iter()
                .zip(backends)
                .all(|(a, b)| a.address == b.address && a.weight == b.weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::{Algorithm, PickContext};

    fn backends(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| {
                Backend::new(
                    format!("127.0.0.1:{}", 2000 + i).parse().unwrap(),
                    1 + i as u32,
                )
            })
            .collect()
    }

    fn contexts() -> [PickContext; 3] {
        let client = Some("192.0.2.1".parse().unwrap());
        [
            PickContext::default(),
            PickContext { client, hash: None },
            PickContext {
                client,
                hash: Some(42),
            },
        ]
    }

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::parse(a.name()), Some(a));
            assert!(Algorithm::NAMES.contains(&format!("\"{a}\"")));
        }
        assert_eq!(Algorithm::parse("roundrobin"), None);
        assert_eq!(Algorithm::parse("Maglev"), None);
        assert_eq!(Algorithm::default(), Algorithm::RoundRobin);
    }

    #[test]
    fn every_algorithm_skips_unusable_backends() {
        for a in Algorithm::ALL {
            let b = backends(5);
            let balancer = a.build(&b, &PoolPolicy::default());
            b[1].state.set_healthy(false);
            b[3].state.set_healthy(false);
            for ctx in contexts() {
                for _ in 0..500 {
                    let i = balancer.pick(&b, &ctx);
                    assert!(matches!(i, Some(0 | 2 | 4)), "{a} picked {i:?}");
                }
            }
            for x in &b {
                x.state.set_healthy(false);
            }
            for ctx in contexts() {
                assert_eq!(balancer.pick(&b, &ctx), None, "{a}, all down");
            }
            let empty = a.build(&[], &PoolPolicy::default());
            assert_eq!(empty.pick(&[], &PickContext::default()), None, "{a}, empty");
        }
    }

    #[test]
    fn every_algorithm_reaches_every_backend() {
        for a in Algorithm::ALL {
            let b = backends(4);
            let balancer = a.build(&b, &PoolPolicy::default());
            let mut seen = [false; 4];
            for k in 0..4_000u64 {
                let ctx = PickContext {
                    client: None,
                    hash: Some(k),
                };
                seen[balancer.pick(&b, &ctx).unwrap()] = true;
            }
            assert_eq!(seen, [true; 4], "{a}");
        }
    }
}
