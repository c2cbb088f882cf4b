//! `[pools.NAME]` policy keys -> `PoolPolicy`: hash key, retries and their budget, connection
//! limits and queue, slow start, `[pools.NAME.health_check]` and
//! `[pools.NAME.outlier_detection]`. Defaults are documented in config/levee.toml.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::super::file::{RawHealthCheck, RawOutlierDetection, RawPool, RawStatus};
use super::Scope;
use crate::lb::{
    Algorithm, ConnectionLimits, HashKey, HealthCheck, HealthProbe, OutlierDetection, PoolPolicy,
    RetryPolicy, Upgrades, parse_hash_key,
};

const RETRIES: u32 = 2;
const RETRIES_RANGE: (i64, i64) = (0, 10);
const RETRY_BUDGET_PERCENT: u32 = 20;
const PERCENT_RANGE: (i64, i64) = (0, 100);
const MAX_CONNECTIONS_RANGE: (i64, i64) = (1, 1_000_000);
/// Queue length when `max_connections` is set and `queue_size` is not.
const QUEUE_SIZE: u32 = 100;
const QUEUE_SIZE_RANGE: (i64, i64) = (0, 1_000_000);
const QUEUE_TIMEOUT: Duration = Duration::from_secs(1);

const CHECK_PATH: &str = "/";
const CHECK_STATUS: RangeInclusive<u16> = 200..=399;
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
const RISE: u32 = 2;
const FALL: u32 = 3;
const RISE_FALL_RANGE: (i64, i64) = (1, 100);

const CONSECUTIVE_FAILURES: u32 = 5;
const CONSECUTIVE_FAILURES_RANGE: (i64, i64) = (1, 1000);
const EJECTION_TIME: Duration = Duration::from_secs(30);
const MAX_EJECTED_PERCENT: u8 = 50;
const MAX_EJECTED_PERCENT_RANGE: (i64, i64) = (1, 100);

/// Everything of a pool besides its backends, algorithm and timeouts.
pub(super) fn pool_policy(
    s: &mut Scope<'_>,
    raw: &RawPool,
    algorithm: Algorithm,
) -> Option<PoolPolicy> {
    let hash_key = hash_key(s, raw.hash_key.as_deref());
    let retry = retry_policy(s, raw);
    let limits = connection_limits(s, raw);
    let slow_start = match raw.slow_start.as_deref() {
        None => Some(None),
        Some(text) => s
            .duration("slow_start", Some(text), Duration::ZERO)
            .map(|d| (!d.is_zero()).then_some(d)),
    };
    let health_check = match &raw.health_check {
        None => Some(None),
        Some(h) => health_check(&mut s.child("health_check"), h).map(Some),
    };
    let outlier = match &raw.outlier_detection {
        None => Some(None),
        Some(o) => outlier_detection(&mut s.child("outlier_detection"), o).map(Some),
    };
    Some(PoolPolicy {
        algorithm,
        hash_key: hash_key?,
        health_check: health_check?,
        outlier: outlier?,
        retry: retry?,
        limits: limits?,
        slow_start: slow_start?,
        upgrades: match raw.allow_upgrade {
            Some(false) => Upgrades::Refused,
            _ => Upgrades::Allowed,
        },
    })
}

/// `hash_key`: `client_ip` (default), `header:NAME` or `cookie:NAME`.
fn hash_key(s: &mut Scope<'_>, text: Option<&str>) -> Option<HashKey> {
    let Some(text) = text else {
        return Some(HashKey::default());
    };
    parse_hash_key(text).map_err(|e| s.add("hash_key", e)).ok()
}

/// `retries` and `retry_budget_percent`.
fn retry_policy(s: &mut Scope<'_>, raw: &RawPool) -> Option<RetryPolicy> {
    let retries = s.int("retries", raw.retries, RETRIES, RETRIES_RANGE);
    let percent = raw.retry_budget_percent;
    let percent = s.int(
        "retry_budget_percent",
        percent,
        RETRY_BUDGET_PERCENT,
        PERCENT_RANGE,
    );
    Some(RetryPolicy {
        retries: retries?,
        budget_ratio: f64::from(percent?) / 100.0,
        ..RetryPolicy::default()
    })
}

/// `max_connections`, `queue_size`, `queue_timeout`. The queue keys need `max_connections`.
fn connection_limits(s: &mut Scope<'_>, raw: &RawPool) -> Option<ConnectionLimits> {
    let limited = raw.max_connections.is_some();
    let max_connections = match raw.max_connections {
        None => Some(None),
        Some(n) => s
            .int("max_connections", Some(n), 0u32, MAX_CONNECTIONS_RANGE)
            .map(Some),
    };
    let queue_keys = [
        ("queue_size", raw.queue_size.is_some()),
        ("queue_timeout", raw.queue_timeout.is_some()),
    ];
    for (field, _) in queue_keys.iter().filter(|(_, set)| *set && !limited) {
        let reason = "has no effect without max_connections (requests wait in the queue only \
                      while every backend is at max_connections)";
        s.add(field, reason);
    }
    let default_size = if limited { QUEUE_SIZE } else { 0 };
    let queue_size = s.int("queue_size", raw.queue_size, default_size, QUEUE_SIZE_RANGE);
    let timeout = raw.queue_timeout.as_deref();
    let queue_timeout = s.timeout("queue_timeout", timeout, QUEUE_TIMEOUT);
    Some(ConnectionLimits {
        max_connections: max_connections?,
        queue_size: queue_size?,
        queue_timeout: queue_timeout?,
    })
}

/// `[pools.NAME.health_check]`.
fn health_check(s: &mut Scope<'_>, raw: &RawHealthCheck) -> Option<HealthCheck> {
    let probe = probe(s, raw);
    let interval = s.timeout("interval", raw.interval.as_deref(), CHECK_INTERVAL);
    let timeout = s.timeout("timeout", raw.timeout.as_deref(), CHECK_TIMEOUT);
    let rise = s.int("rise", raw.rise, RISE, RISE_FALL_RANGE);
    let fall = s.int("fall", raw.fall, FALL, RISE_FALL_RANGE);
    let (interval, timeout) = (interval?, timeout?);
    if timeout > interval {
        let interval_text = humantime::format_duration(interval);
        s.add(
            "timeout",
            format!("must not be longer than interval ({interval_text})"),
        );
        return None;
    }
    Some(HealthCheck {
        probe: probe?,
        interval,
        timeout,
        rise: rise?,
        fall: fall?,
    })
}

/// `type` (`http` by default, or `tcp`), with `path` and `status` for HTTP.
fn probe(s: &mut Scope<'_>, raw: &RawHealthCheck) -> Option<HealthProbe> {
    match raw.kind.as_deref() {
        None | Some("http") => {
            let path = check_path(s, raw.path.as_deref().unwrap_or(CHECK_PATH));
            let status = match &raw.status {
                None => Some(CHECK_STATUS),
                Some(st) => status_range(s, st),
            };
            Some(HealthProbe::Http {
                path: path?,
                status: status?,
            })
        }
        Some("tcp") => {
            let http_only = [
                ("path", raw.path.is_some()),
                ("status", raw.status.is_some()),
            ];
            let mut ok = true;
            for (field, _) in http_only.iter().filter(|(_, set)| *set) {
                s.add(field, "applies only to type = \"http\"");
                ok = false;
            }
            ok.then_some(HealthProbe::Tcp)
        }
        Some(other) => {
            let reason = format!("unknown check type \"{other}\" (expected \"http\" or \"tcp\")");
            s.add("type", reason);
            None
        }
    }
}

/// An origin-form request target: starts with `/`, may carry a query.
fn check_path(s: &mut Scope<'_>, path: &str) -> Option<String> {
    let valid = path.starts_with('/') && path.parse::<http::uri::PathAndQuery>().is_ok();
    if !valid {
        let reason = format!("\"{path}\" is not a request path (expected e.g. \"/healthz\")");
        s.add("path", reason);
    }
    valid.then(|| path.to_string())
}

/// `status`: `200`, `"200"` or `"200-399"`, codes 100 to 599.
fn status_range(s: &mut Scope<'_>, raw: &RawStatus) -> Option<RangeInclusive<u16>> {
    let (parsed, shown) = match raw {
        RawStatus::Code(c) => (u16::try_from(*c).ok().map(|c| c..=c), c.to_string()),
        RawStatus::Text(t) => (parse_status_text(t), format!("\"{t}\"")),
    };
    let problem = match parsed {
        None => "expected a status code such as 200 or a range such as \"200-399\"",
        Some(r) if r.start() > r.end() => "the range is empty (its low end is above its high end)",
        Some(r) if *r.start() < 100 || *r.end() > 599 => "status codes run from 100 to 599",
        Some(r) => return Some(r),
    };
    s.add("status", format!("invalid status {shown}: {problem}"));
    None
}

fn parse_status_text(text: &str) -> Option<RangeInclusive<u16>> {
    let code = |t: &str| t.trim().parse::<u16>().ok();
    match text.split_once('-') {
        Some((low, high)) => Some(code(low)?..=code(high)?),
        None => code(text).map(|c| c..=c),
    }
}

/// `[pools.NAME.outlier_detection]`.
fn outlier_detection(s: &mut Scope<'_>, raw: &RawOutlierDetection) -> Option<OutlierDetection> {
    let consecutive_failures = s.int(
        "consecutive_failures",
        raw.consecutive_failures,
        CONSECUTIVE_FAILURES,
        CONSECUTIVE_FAILURES_RANGE,
    );
    let ejection = raw.ejection_time.as_deref();
    let ejection_time = s.timeout("ejection_time", ejection, EJECTION_TIME);
    let max_ejected_percent = s.int(
        "max_ejected_percent",
        raw.max_ejected_percent,
        MAX_EJECTED_PERCENT,
        MAX_EJECTED_PERCENT_RANGE,
    );
    Some(OutlierDetection {
        consecutive_failures: consecutive_failures?,
        ejection_time: ejection_time?,
        max_ejected_percent: max_ejected_percent?,
        include_5xx: raw.include_5xx.unwrap_or(false),
    })
}
