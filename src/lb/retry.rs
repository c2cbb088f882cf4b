//! The retry budget of a pool: retries may add at most a fixed share to the pool's load.
//!
//! A token bucket shared by all workers (one atomic): every first attempt deposits
//! `budget_ratio` of a token, every retry withdraws one whole token, and a small floor of
//! `budget_min_per_sec` tokens is added each second so a quiet pool can still retry. A pool
//! whose backends all fail therefore cannot multiply its load: retries stay within the ratio.
//!
//! A retry after a refused connect (nothing listens: the backend died) does not withdraw: it
//! put no load on any backend, and when one of N backends dies 1/N of the traffic meets it,
//! more than any sane ratio, until health checks take it out. `retries` still bounds it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::RetryPolicy;
use super::clock;

/// Milli-tokens per token.
const TOKEN: i64 = 1000;
/// Most tokens the bucket holds, in seconds' worth of the floor (and at least this many).
const MAX_TOKENS: i64 = 100;

/// A pool's retry budget (shared atomics, no lock).
#[derive(Debug)]
pub struct RetryBudget {
    milli_tokens: AtomicI64,
    last_refill_ms: AtomicU64,
}

impl RetryBudget {
    /// A budget that starts with one second's floor of tokens.
    pub fn new(policy: &RetryPolicy) -> Self {
        Self {
            milli_tokens: AtomicI64::new(i64::from(policy.budget_min_per_sec) * TOKEN),
            last_refill_ms: AtomicU64::new(clock::now_ms()),
        }
    }

    /// A first attempt was made: deposit `budget_ratio` of a token.
    pub fn deposit(&self, policy: &RetryPolicy) {
        let add = (policy.budget_ratio * TOKEN as f64) as i64;
        if add <= 0 {
            return;
        }
        let cap = cap(policy);
        // Relaxed add then clamp: a brief overshoot by concurrent deposits is harmless.
        let now = self.milli_tokens.fetch_add(add, Ordering::Relaxed) + add;
        if now > cap {
            self.milli_tokens.fetch_sub(now - cap, Ordering::Relaxed);
        }
    }

    /// Takes one token for a retry; `false` when the budget is spent.
    pub fn try_withdraw(&self, policy: &RetryPolicy) -> bool {
        self.refill(policy);
        self.milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= TOKEN).then_some(t - TOKEN)
            })
            .is_ok()
    }

    /// Adds the per-second floor for every whole second since the last refill.
    fn refill(&self, policy: &RetryPolicy) {
        let now = clock::now_ms();
        let last = self.last_refill_ms.load(Ordering::Relaxed);
        let secs = now.saturating_sub(last) / 1000;
        if secs == 0 || policy.budget_min_per_sec == 0 {
            return;
        }
        let swapped = self.last_refill_ms.compare_exchange(
            last,
            last + secs * 1000,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if swapped.is_ok() {
            let add = i64::try_from(secs).unwrap_or(i64::MAX / 2)
                * i64::from(policy.budget_min_per_sec)
                * TOKEN;
            let cap = cap(policy);
            let now = self.milli_tokens.fetch_add(add, Ordering::Relaxed) + add;
            if now > cap {
                self.milli_tokens.fetch_sub(now - cap, Ordering::Relaxed);
            }
        }
    }
}

fn cap(policy: &RetryPolicy) -> i64 {
    i64::from(policy.budget_min_per_sec).max(MAX_TOKENS) * TOKEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_the_ratio() {
        let policy = RetryPolicy {
            retries: 2,
            budget_ratio: 0.2,
            budget_min_per_sec: 0,
        };
        let b = RetryBudget::new(&policy);
        let mut retries = 0;
        for _ in 0..1000 {
            b.deposit(&policy);
            // Every request fails and asks for two retries.
            for _ in 0..2 {
                if b.try_withdraw(&policy) {
                    retries += 1;
                }
            }
        }
        assert!(
            (195..=200).contains(&retries),
            "{retries} retries for 1000 requests"
        );
    }

    #[test]
    fn empty_budget_refuses() {
        let policy = RetryPolicy {
            retries: 2,
            budget_ratio: 0.0,
            budget_min_per_sec: 0,
        };
        let b = RetryBudget::new(&policy);
        assert!(!b.try_withdraw(&policy));
    }
}
