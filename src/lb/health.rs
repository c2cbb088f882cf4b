//! Active health checks, run once per process on the control thread (never on a worker).
//!
//! `run` follows the live config: it reads the snapshot every `RESYNC` and, when the snapshot
//! changed, keeps one task per (pool name, backend address) of every pool with a
//! `health_check`. A task probes its backend every `interval`, each probe bounded by `timeout`:
//! an HTTP/1.1 `GET path` on a fresh plain-TCP connection (`Host` = the backend address) whose
//! status must fall in the expected range, or a TCP connect. After `fall` failures in a row an
//! up backend is marked down; after `rise` successes in a row a down backend is marked up
//! (`BackendState::set_healthy`). Each transition is logged once: warn when down, info when up.
//!
//! Backends start up, so a pool serves at once; a dead backend is taken out after
//! `fall x interval`. A task restarts (with a fresh streak) when its check settings or its
//! backend state object change; a backend that leaves the config is marked up again, so state
//! carried into a snapshot without checks is never left down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Backend, BackendState, HealthCheck, HealthProbe, Pool};

/// How often `run` looks for a new config snapshot.
pub const RESYNC: Duration = Duration::from_millis(500);

/// `User-Agent` of HTTP checks.
const USER_AGENT: &str = concat!("levee-health-check/", env!("CARGO_PKG_VERSION"));

/// A check task, keyed by (pool name, backend address).
type Key = (String, SocketAddr);

#[derive(Debug)]
struct Checker {
    state: Arc<BackendState>,
    check: HealthCheck,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A config whose pools the health checks follow (the config snapshot; `lb` knows no more
/// of it than this).
pub trait PoolSet: Send + Sync + 'static {
    /// Every pool of this config.
    fn pools(&self) -> &[Arc<Pool>];
}

/// Runs the health checks of every pool of the live config until `shutdown` is cancelled.
pub async fn run<C: PoolSet>(config: Arc<ArcSwap<C>>, shutdown: CancellationToken) {
    let mut checkers: HashMap<Key, Checker> = HashMap::new();
    let mut current: Option<Arc<C>> = None;
    loop {
        let snapshot = config.load_full();
        if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &snapshot)) {
            sync(&mut checkers, snapshot.pools(), &shutdown);
            current = Some(snapshot);
        }
        tokio::select! {
            _ = tokio::time::sleep(RESYNC) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    for (_, c) in checkers.drain() {
        c.stop.cancel();
        let _ = c.task.await;
    }
}

/// Starts, restarts and stops check tasks so that they match `snapshot`.
fn sync(checkers: &mut HashMap<Key, Checker>, pools: &[Arc<Pool>], shutdown: &CancellationToken) {
    let mut wanted: HashMap<Key, (Backend, HealthCheck)> = HashMap::new();
    for pool in pools {
        let Some(check) = &pool.policy.health_check else {
            continue;
        };
        for b in &pool.backends {
            wanted.insert((pool.name.clone(), b.address), (b.clone(), check.clone()));
        }
    }
    checkers.retain(|key, c| {
        let same = wanted
            .get(key)
            .is_some_and(|(b, check)| Arc::ptr_eq(&b.state, &c.state) && *check == c.check);
        if !same {
            c.stop.cancel();
            if !wanted.contains_key(key) {
                c.state.set_healthy(true);
            }
        }
        same
    });
    for (key, (backend, check)) in wanted {
        if checkers.contains_key(&key) {
            continue;
        }
        let stop = shutdown.child_token();
        let state = Arc::clone(&backend.state);
        let task = tokio::spawn(check_backend(
            key.0.clone(),
            backend,
            check.clone(),
            stop.clone(),
        ));
        let checker = Checker {
            state,
            check,
            stop,
            task,
        };
        checkers.insert(key, checker);
    }
}

/// Probes one backend every `interval` until `stop`, and applies `rise` / `fall`.
async fn check_backend(
    pool: String,
    backend: Backend,
    check: HealthCheck,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut streak = Streak::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        let outcome = tokio::select! {
            r = probe(&backend, &check) => r,
            _ = stop.cancelled() => return,
        };
        let healthy = backend.state.is_healthy();
        let Some(up) = streak.observe(outcome.is_ok(), healthy, check.rise, check.fall) else {
            continue;
        };
        if !backend.state.set_healthy(up) {
            continue;
        }
        let addr = backend.address;
        match outcome {
            Ok(()) => tracing::info!(
                pool = %pool,
                backend = %addr,
                reason = %format!("{} consecutive checks passed", check.rise),
                "backend marked up by health check"
            ),
            Err(reason) => tracing::warn!(
                pool = %pool,
                backend = %addr,
                reason = %format!("{} consecutive checks failed, last: {reason}", check.fall),
                "backend marked down by health check"
            ),
        }
    }
}

/// Consecutive probe results of one backend.
#[derive(Debug, Default)]
struct Streak {
    successes: u32,
    failures: u32,
}

impl Streak {
    /// Counts one probe result; returns the state to switch to when the streak says so.
    fn observe(&mut self, ok: bool, healthy: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            (!healthy && self.successes >= rise).then_some(true)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            (healthy && self.failures >= fall).then_some(false)
        }
    }
}

/// One probe, bounded by the check's `timeout`; `Err` says why it failed.
async fn probe(backend: &Backend, check: &HealthCheck) -> Result<(), String> {
    let attempt = async {
        match &check.probe {
            HealthProbe::Tcp => TcpStream::connect(backend.address)
                .await
                .map(drop)
                .map_err(|e| format!("connect: {e}")),
            HealthProbe::Http { path, status } => http_probe(backend, path, status).await,
        }
    };
    let limit = check.timeout;
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}",
                humantime::format_duration(limit)
            ))
        })
}

/// `GET path` over HTTP/1.1 on a new connection; the status must be in `expected`.
async fn http_probe(
    backend: &Backend,
    path: &str,
    expected: &RangeInclusive<u16>,
) -> Result<(), String> {
    let tcp = TcpStream::connect(backend.address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let req = Request::get(path)
        .header(header::HOST, backend.authority.clone())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let send = sender.send_request(req);
    tokio::pin!(conn, send);
    // The connection task must be driven for the response to arrive; when it ends first, the
    // response (or the reason there is none) is already waiting in `send`.
    let resp = tokio::select! {
        biased;
        r = &mut send => r,
        _ = &mut conn => send.await,
    }
    .map_err(|e| format!("HTTP: {e}"))?;
    let code = resp.status().as_u16();
    if expected.contains(&code) {
        Ok(())
    } else {
        let (low, high) = (expected.start(), expected.end());
        Err(format!("status {code}, expected {low}-{high}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_fall_failures_up_after_rise_successes() {
        let mut s = Streak::default();
        assert_eq!(s.observe(false, true, 2, 3), None);
        assert_eq!(s.observe(false, true, 2, 3), None);
        // A success breaks the failure streak.
        assert_eq!(s.observe(true, true, 2, 3), None);
        assert_eq!(s.observe(false, true, 2, 3), None);
        assert_eq!(s.observe(false, true, 2, 3), None);
        assert_eq!(s.observe(false, true, 2, 3), Some(false));
        // Down: more failures change nothing; rise successes bring it back.
        assert_eq!(s.observe(false, false, 2, 3), None);
        assert_eq!(s.observe(true, false, 2, 3), None);
        assert_eq!(s.observe(true, false, 2, 3), Some(true));
        assert_eq!(s.observe(true, true, 2, 3), None);
    }

    #[test]
    fn rise_and_fall_of_one_switch_at_once() {
        let mut s = Streak::default();
        assert_eq!(s.observe(false, true, 1, 1), Some(false));
        assert_eq!(s.observe(true, false, 1, 1), Some(true));
    }
}
