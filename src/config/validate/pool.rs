//! `[pools.NAME]` -> `Pool`: the algorithm, upstream timeouts, backends, and the pool's policy
//! (built by `policy`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::super::file::{RawBackend, RawPool, key_segment};
use super::{ConfigError, Scope, policy};
use crate::config::Snapshot;
use crate::lb::{Algorithm, Backend, Pool, PoolTimeouts};
use crate::stats::PoolStats;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const WEIGHT_RANGE: (i64, i64) = (1, 65_535);

/// Builds every pool, in name order (the order of `PoolId`s).
/// On a reload, each pool takes over the runtime state of its namesake in `previous`
/// (see `Pool::carry_over`).
pub(super) fn build_pools(
    raw: &BTreeMap<String, RawPool>,
    previous: Option<&Snapshot>,
    errs: &mut Vec<ConfigError>,
) -> Option<Vec<Arc<Pool>>> {
    let built: Vec<Option<Arc<Pool>>> = raw
        .iter()
        .map(|(name, p)| {
            let old = previous.and_then(|s| s.pool_index.get(name).map(|&id| s.pool(id)));
            let mut pool = build_pool(&mut Scope::new(errs, pool_key(name)), name, p, old)?;
            if let Some(old) = old {
                pool.carry_over(old);
            }
            Some(Arc::new(pool))
        })
        .collect();
    built.into_iter().collect()
}

/// The request stats of each pool of `pools` (same order), for `workers` workers: on a
/// reload, a pool's namesake in `previous` hands its stats over, so its counters and
/// durations go on; a new pool starts at zero, and a removed pool's stats go with the last
/// snapshot that has it.
pub(super) fn build_pool_stats(
    pools: &[Arc<Pool>],
    workers: usize,
    previous: Option<&Snapshot>,
) -> Vec<Arc<PoolStats>> {
    pools
        .iter()
        .map(|pool| {
            let old = previous
                .and_then(|s| {
                    s.pool_index
                        .get(&pool.name)
                        .and_then(|&id| s.pool_stats(id))
                })
                .filter(|old| old.workers() == workers);
            old.map_or_else(|| Arc::new(PoolStats::new(workers)), Arc::clone)
        })
        .collect()
}

/// `pools.api`, or `pools."a.b"` when the name is not a bare TOML key.
fn pool_key(name: &str) -> String {
    format!("pools.{}", key_segment(name))
}

/// `old`: the pool of the same name being replaced, whose balancer is reused if it fits.
fn build_pool(
    s: &mut Scope<'_>,
    name: &str,
    raw: &RawPool,
    old: Option<&Arc<Pool>>,
) -> Option<Pool> {
    if name.trim().is_empty() {
        s.add("", "pool name must not be empty");
    }
    let algorithm = algorithm(s, raw.algorithm.as_deref());
    let timeouts = pool_timeouts(s, raw);
    let policy = policy::pool_policy(s, raw, algorithm.unwrap_or_default());
    let backends = build_backends(s, &raw.backends)?;
    algorithm?;
    let policy = policy?;
    let balancer = match old {
        Some(old) if old.balancer_fits(&backends, &policy) => Arc::clone(&old.balancer),
        _ => Arc::from(policy.algorithm.build(&backends, &policy)),
    };
    Some(Pool::new(
        name.to_string(),
        backends,
        balancer,
        timeouts?,
        policy,
    ))
}

/// `algorithm`; default `round_robin`.
fn algorithm(s: &mut Scope<'_>, name: Option<&str>) -> Option<Algorithm> {
    let Some(name) = name else {
        return Some(Algorithm::default());
    };
    let algorithm = Algorithm::parse(name);
    if algorithm.is_none() {
        let expected = Algorithm::NAMES;
        let reason = format!("unknown algorithm \"{name}\" (expected one of {expected})");
        s.add("algorithm", reason);
    }
    algorithm
}

fn pool_timeouts(s: &mut Scope<'_>, raw: &RawPool) -> Option<PoolTimeouts> {
    let connect = raw.connect_timeout.as_deref();
    let connect = s.timeout("connect_timeout", connect, CONNECT_TIMEOUT);
    let response = raw.response_timeout.as_deref();
    let response = s.timeout("response_timeout", response, RESPONSE_TIMEOUT);
    let idle = raw.idle_timeout.as_deref();
    let idle = s.timeout("idle_timeout", idle, POOL_IDLE_TIMEOUT);
    Some(PoolTimeouts {
        connect: connect?,
        response: response?,
        idle: idle?,
    })
}

fn build_backends(s: &mut Scope<'_>, raw: &[RawBackend]) -> Option<Vec<Backend>> {
    if raw.is_empty() {
        s.add("backends", "a pool needs at least one backend");
        return None;
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    let mut backends = Some(Vec::with_capacity(raw.len()));
    for (i, b) in raw.iter().enumerate() {
        let mut s = s.child(&format!("backends[{i}]"));
        let address = backend_address(&mut s, &b.address);
        if let Some(addr) = address {
            match seen.get(&addr) {
                Some(first) => s.add(
                    "address",
                    format!("duplicate backend {addr} (also backends[{first}])"),
                ),
                None => drop(seen.insert(addr, i)),
            }
        }
        let weight = s.int("weight", b.weight, 1u32, WEIGHT_RANGE);
        match (address, weight, backends.as_mut()) {
            (Some(a), Some(w), Some(list)) => list.push(Backend::new(a, w)),
            _ => backends = None,
        }
    }
    backends
}

fn backend_address(s: &mut Scope<'_>, text: &str) -> Option<SocketAddr> {
    let addr = s.addr("address", text)?;
    let problem = if addr.port() == 0 {
        "port 0 cannot be connected to"
    } else if addr.ip().is_unspecified() {
        "an unspecified address (0.0.0.0 or ::) cannot be connected to"
    } else {
        return Some(addr);
    };
    s.add(
        "address",
        format!("invalid backend address \"{text}\": {problem}"),
    );
    None
}
