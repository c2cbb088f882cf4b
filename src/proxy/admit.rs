//! Admission of a new connection once its real client address and tag are known, before
//! any TLS byte is answered: the allowlist, the country and ASN buckets (reject or
//! tarpit), the automatic cap, then the per-IP cap. Every refusal is counted by country
//! and reason on the worker's shard.
//!
//! The decision itself (`decide`) is synchronous, so the accept loop can take it for a
//! connection whose PROXY header is already in (see `proxy::early`) without a task; only a
//! tarpit needs time, and `hold_tarpitted` spends it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::conn::WorkerCtx;
use crate::admission::auto::CapCheck;
use crate::admission::{
    Admission, AdmissionSettings, IpPermit, LimitAction, MAX_TARPITTED, RejectReason,
};
use crate::geo::ClientTag;

/// A connection let in.
#[derive(Debug)]
pub struct Admitted {
    /// Its per-IP slot (held until the connection closes), when that cap is set.
    pub ip_permit: Option<IpPermit>,
    /// Allowlisted: never limited, and served first by the handshake scheduler.
    pub allowlisted: bool,
}

/// A connection refused: why, and whether it is to be held (tarpitted) before it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The reason, already counted on the worker's shard.
    pub reason: RejectReason,
    /// Hold it for `tarpit_delay`, then close (its place among `MAX_TARPITTED` is taken; give
    /// it back with `hold_tarpitted`).
    pub tarpit: bool,
}

/// Decides whether a new connection from `client` (tagged `tag`) is let in, counting a
/// refusal by country and reason.
pub fn decide(
    worker: &WorkerCtx,
    settings: &AdmissionSettings,
    client: IpAddr,
    tag: &ClientTag,
) -> Result<Admitted, Refusal> {
    let shard = &worker.shard;
    let rules = &settings.rate_limits;
    let allowlisted = rules.allowed(client, tag);
    if !allowlisted {
        if !rules.is_empty() {
            if let Err(limited) = worker.admission.rates.admit_connection(rules, tag) {
                return Err(over_bucket(worker, tag, limited.action));
            }
        }
        if worker.admission.auto.check(tag.country) == CapCheck::Over {
            if settings.auto.dry_run {
                shard.admission_rejected(tag.country, RejectReason::AutoCapDryRun);
            } else {
                shard.admission_rejected(tag.country, RejectReason::AutoCap);
                debug!("refused: automatic cap");
                return Err(closed(RejectReason::AutoCap));
            }
        }
    }
    let ip_permit = match settings.max_connections_per_ip {
        None => None,
        Some(limit) => {
            let Some(p) = worker.admission.per_ip.try_acquire(client, limit) else {
                shard.admission_rejected(tag.country, RejectReason::PerIp);
                debug!("refused: max_connections_per_ip");
                return Err(closed(RejectReason::PerIp));
            };
            Some(p)
        }
    };
    Ok(Admitted {
        ip_permit,
        allowlisted,
    })
}

/// `decide`, then the tarpit's hold when the refusal asks for one; `Err` names the reason.
pub async fn admit(
    worker: &WorkerCtx,
    settings: &AdmissionSettings,
    client: IpAddr,
    tag: &ClientTag,
    drain: &CancellationToken,
) -> Result<Admitted, RejectReason> {
    match decide(worker, settings, client, tag) {
        Ok(admitted) => Ok(admitted),
        Err(refusal) => {
            if refusal.tarpit {
                hold_tarpitted(&worker.admission, settings, drain).await;
            }
            Err(refusal.reason)
        }
    }
}

/// Holds a tarpitted connection for `tarpit_delay` (or until `drain`), then gives its place
/// among `MAX_TARPITTED` back (also if this future is dropped). The caller closes it
/// afterwards.
pub async fn hold_tarpitted(
    admission: &Admission,
    settings: &AdmissionSettings,
    drain: &CancellationToken,
) {
    let _place = TarpitPlace(&admission.tarpitted);
    tokio::select! {
        _ = tokio::time::sleep(settings.rate_limits.tarpit_delay) => {}
        _ = drain.cancelled() => {}
    }
}

/// A place among the tarpitted connections, given back when dropped.
struct TarpitPlace<'a>(&'a AtomicUsize);

impl Drop for TarpitPlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A refusal closed at once.
fn closed(reason: RejectReason) -> Refusal {
    Refusal {
        reason,
        tarpit: false,
    }
}

/// Refuses a connection over its bucket: at once, or after a tarpit when its rule says so
/// and fewer than `MAX_TARPITTED` are held.
fn over_bucket(worker: &WorkerCtx, tag: &ClientTag, action: LimitAction) -> Refusal {
    let tarpit = action == LimitAction::Tarpit
        && worker
            .admission
            .tarpitted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_TARPITTED).then_some(n + 1)
            })
            .is_ok();
    let reason = if tarpit {
        debug!("refused: rate limit, tarpit");
        RejectReason::Tarpit
    } else {
        debug!("refused: rate limit");
        RejectReason::RateLimit
    };
    worker.shard.admission_rejected(tag.country, reason);
    Refusal { reason, tarpit }
}
