//! Passive outlier detection: a backend whose requests keep failing is ejected for a while.
//!
//! The proxy service reports the outcome of each upstream attempt. After
//! `consecutive_failures` failures in a row (connect errors, resets, timeouts; 5xx responses
//! when `include_5xx`) the backend is ejected for `ejection_time`, doubled for every earlier
//! ejection in the same streak (at most `MAX_EJECTION` or `ejection_time`, whichever is
//! longer). An ejection ends by itself: `BackendState::is_usable` compares the clock with the
//! ejection deadline. The first success after an ejection clears the streak. No ejection is
//! made when it would leave more than `max_ejected_percent` of the pool ejected.
//!
//! A backend that comes back and fails its first request is ejected again at once (its
//! failure streak was never broken by a success), for twice as long.
//!
//! Only atomics are touched; two workers ejecting different backends at the same instant may
//! overshoot `max_ejected_percent` by one backend.

use std::time::Duration;

use http::StatusCode;

use super::{OutlierDetection, Pool, clock};

/// Longest ejection, unless `ejection_time` itself is longer (then it never grows).
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Whether a response with `status` counts as a failure of its backend for `pool`: a 5xx,
/// when the pool's outlier detection has `include_5xx`.
pub fn is_failure_status(pool: &Pool, status: StatusCode) -> bool {
    status.is_server_error() && pool.policy.outlier.as_ref().is_some_and(|o| o.include_5xx)
}

/// Reports a failed attempt on `pool.backends[backend_index]`: call it right after
/// `BackendState::record_failure` (which counts the failure). Ejects the backend when its
/// streak of consecutive failures has reached the threshold.
pub fn on_failure(pool: &Pool, backend_index: usize) {
    let (Some(policy), Some(backend)) = (&pool.policy.outlier, pool.backends.get(backend_index))
    else {
        return;
    };
    let state = &backend.state;
    let failures = state.consecutive_failures();
    if failures < policy.consecutive_failures || state.is_ejected() {
        return;
    }
    if !may_eject(pool, policy) {
        tracing::debug!(
            pool = %pool.name,
            backend = %backend.address,
            max_ejected_percent = policy.max_ejected_percent,
            "backend not ejected: too many backends of the pool are ejected already"
        );
        return;
    }
    let duration = ejection_duration(policy, state.ejections());
    state.eject_until(clock::now_ms().saturating_add(clock::ms(duration)));
    tracing::warn!(
        pool = %pool.name,
        backend = %backend.address,
        duration = %humantime::format_duration(duration),
        consecutive_failures = failures,
        "backend ejected by outlier detection"
    );
}

/// Reports a successful attempt on `pool.backends[backend_index]`: call it after
/// `BackendState::record_success` (which ends the failure streak). Forgets past ejections
/// once the backend is back and answering.
pub fn on_success(pool: &Pool, backend_index: usize) {
    let Some(backend) = pool.backends.get(backend_index) else {
        return;
    };
    let state = &backend.state;
    if state.ejections() != 0 && !state.is_ejected() {
        state.clear_ejections();
        tracing::info!(
            pool = %pool.name,
            backend = %backend.address,
            "backend answers again after its ejection"
        );
    }
}

/// How long the next ejection lasts after `previous` ejections in the streak.
pub fn ejection_duration(policy: &OutlierDetection, previous: u32) -> Duration {
    let cap = MAX_EJECTION.max(policy.ejection_time);
    let factor = 1u32.checked_shl(previous.min(31)).unwrap_or(u32::MAX);
    policy.ejection_time.saturating_mul(factor).min(cap)
}

/// Whether one more ejection keeps the ejected share of the pool within the limit.
fn may_eject(pool: &Pool, policy: &OutlierDetection) -> bool {
    let ejected = pool
        .backends
        .iter()
        .filter(|b| b.state.is_ejected())
        .count();
    let total = pool.backends.len();
    (ejected + 1) * 100 <= usize::from(policy.max_ejected_percent) * total
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use crate::lb::{Backend, PoolPolicy, PoolTimeouts, RoundRobin};

    fn pool(n: usize, outlier: Option<OutlierDetection>) -> Pool {
        let backends = (0..n)
            .map(|i| Backend::new(format!("127.0.0.1:{}", 2000 + i).parse().unwrap(), 1))
            .collect();
        let timeouts = PoolTimeouts {
            connect: Duration::from_secs(1),
            response: Duration::from_secs(1),
            idle: Duration::from_secs(1),
        };
        let policy = PoolPolicy {
            outlier,
            ..PoolPolicy::default()
        };
        Pool::new(
            "p".into(),
            backends,
            std::sync::Arc::new(RoundRobin::new()),
            timeouts,
            policy,
        )
    }

    fn detection(failures: u32, percent: u8) -> OutlierDetection {
        OutlierDetection {
            consecutive_failures: failures,
            ejection_time: Duration::from_secs(30),
            max_ejected_percent: percent,
            include_5xx: false,
        }
    }

    fn fail(pool: &Pool, i: usize) {
        pool.backends[i].state.record_failure();
        on_failure(pool, i);
    }

    #[test]
    fn ejects_after_the_threshold_and_clears_after_success() {
        let p = pool(4, Some(detection(3, 50)));
        fail(&p, 0);
        fail(&p, 0);
        assert!(p.backends[0].state.is_usable());
        fail(&p, 0);
        assert!(p.backends[0].state.is_ejected());
        assert_eq!(p.backends[0].state.ejections(), 1);
        // Further failures while ejected do not stack ejections.
        fail(&p, 0);
        assert_eq!(p.backends[0].state.ejections(), 1);
        // A success while still ejected keeps the ejection.
        on_success(&p, 0);
        assert!(p.backends[0].state.is_ejected());
        p.backends[0].state.eject_until(1);
        assert!(!p.backends[0].state.is_ejected());
        p.backends[0].state.record_success(Duration::from_millis(1));
        on_success(&p, 0);
        assert_eq!(p.backends[0].state.ejections(), 0);
    }

    #[test]
    fn never_ejects_more_than_the_percentage() {
        let p = pool(4, Some(detection(1, 50)));
        for i in 0..4 {
            fail(&p, i);
        }
        let ejected = p.backends.iter().filter(|b| b.state.is_ejected()).count();
        assert_eq!(ejected, 2);
        let single = pool(1, Some(detection(1, 50)));
        fail(&single, 0);
        assert!(!single.backends[0].state.is_ejected());
        let all = pool(1, Some(detection(1, 100)));
        fail(&all, 0);
        assert!(all.backends[0].state.is_ejected());
    }

    #[test]
    fn ejection_time_doubles_up_to_the_cap() {
        let d = detection(1, 50);
        assert_eq!(ejection_duration(&d, 0), Duration::from_secs(30));
        assert_eq!(ejection_duration(&d, 1), Duration::from_secs(60));
        assert_eq!(ejection_duration(&d, 3), Duration::from_secs(240));
        assert_eq!(ejection_duration(&d, 4), MAX_EJECTION);
        assert_eq!(ejection_duration(&d, 100), MAX_EJECTION);
        let long = OutlierDetection {
            ejection_time: Duration::from_secs(600),
            ..d
        };
        assert_eq!(ejection_duration(&long, 5), Duration::from_secs(600));
    }

    #[test]
    fn off_without_policy_and_5xx_only_when_included() {
        let p = pool(2, None);
        for _ in 0..10 {
            fail(&p, 0);
        }
        assert!(!p.backends[0].state.is_ejected());
        assert!(!is_failure_status(&p, StatusCode::BAD_GATEWAY));
        let mut d = detection(1, 50);
        assert!(!is_failure_status(
            &pool(2, Some(d.clone())),
            StatusCode::BAD_GATEWAY
        ));
        d.include_5xx = true;
        let p = pool(2, Some(d));
        assert!(is_failure_status(&p, StatusCode::SERVICE_UNAVAILABLE));
        assert!(!is_failure_status(&p, StatusCode::NOT_FOUND));
        on_failure(&p, 99);
        on_success(&p, 99);
    }
}
