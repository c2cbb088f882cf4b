//! Round robin: each backend in turn, skipping backends marked down.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Backend, Balancer, PickContext};

/// Plain round robin over the usable backends.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A round robin starting at the first backend.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, backends: &[Backend], _ctx: &PickContext) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start.wrapping_add(i)) % n)
            .find(|&i| backends[i].state.is_usable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn backends(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend::new(format!("127.0.0.1:{}", 1000 + i).parse().unwrap(), 1))
            .collect()
    }

    #[test]
    fn cycles_evenly() {
        let rr = RoundRobin::new();
        let b = backends(3);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[rr.pick(&b, &PickContext::default()).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn skips_down_backends() {
        let rr = RoundRobin::new();
        let b = backends(3);
        b[1].state.set_healthy(false);
        for _ in 0..10 {
            assert_ne!(rr.pick(&b, &PickContext::default()), Some(1));
        }
        b[0].state.set_healthy(false);
        b[2].state.set_healthy(false);
        assert_eq!(rr.pick(&b, &PickContext::default()), None);
        let _ = Arc::clone(&b[0].state);
    }
}
