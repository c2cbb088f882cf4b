//! A named pool of backends, its algorithm and its upstream timeouts.

use std::sync::Arc;
use std::time::Duration;

use super::queue::WaitQueue;
use super::retry::RetryBudget;
use super::{Backend, Balancer, LeastConn, Maglev, P2c, PoolPolicy, RoundRobin, Weighted};

/// Load-balancing algorithm names accepted in `pools.NAME.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// `round_robin`: each usable backend in turn.
    #[default]
    RoundRobin,
    /// `weighted`: smooth weighted round robin (nginx's), by `weight`.
    Weighted,
    /// `least_conn`: fewest requests in flight per unit of weight, across all workers.
    LeastConn,
    /// `p2c`: power of two random choices on in-flight requests times latency EWMA.
    P2c,
    /// `maglev`: consistent hashing of the pool's `hash_key` with a Maglev table.
    Maglev,
}

impl Algorithm {
    /// Every algorithm, in documentation order.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::RoundRobin,
        Algorithm::Weighted,
        Algorithm::LeastConn,
        Algorithm::P2c,
        Algorithm::Maglev,
    ];

    /// The accepted names, for error messages: `"round_robin", "weighted", ...`.
    pub const NAMES: &'static str =
        "\"round_robin\", \"weighted\", \"least_conn\", \"p2c\", \"maglev\"";

    /// The algorithm called `name` in a config file, if any.
    pub fn parse(name: &str) -> Option<Algorithm> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The name of this algorithm in a config file.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::Weighted => "weighted",
            Algorithm::LeastConn => "least_conn",
            Algorithm::P2c => "p2c",
            Algorithm::Maglev => "maglev",
        }
    }

    /// Builds a fresh balancer for this algorithm over `backends`. Tables (`weighted`'s
    /// cycle, `maglev`'s lookup table) are precomputed here, off the hot path; `policy`
    /// supplies the `slow_start` window.
    pub fn build(self, backends: &[Backend], policy: &PoolPolicy) -> Box<dyn Balancer> {
        let slow_start = policy.slow_start;
        match self {
            Algorithm::RoundRobin => Box::new(RoundRobin::new()),
            Algorithm::Weighted => Box::new(Weighted::new(backends, slow_start)),
            Algorithm::LeastConn => Box::new(LeastConn::new(backends, slow_start)),
            Algorithm::P2c => Box::new(P2c::new(backends, slow_start)),
            Algorithm::Maglev => Box::new(Maglev::new(backends)),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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
    use crate::lb::PickContext;

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
