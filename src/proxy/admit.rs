//! Admission of a new connection once its real client address and tag are known, before
//! any TLS byte is answered: the allowlist, the country and ASN buckets (reject or
//! tarpit), the automatic cap, then the per-IP cap. Every refusal is counted by country
//! and reason on the worker's shard.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::conn::WorkerCtx;
use crate::admission::auto::CapCheck;
use crate::admission::{AdmissionSettings, IpPermit, LimitAction, MAX_TARPITTED, RejectReason};
use crate::geo::ClientTag;

/// A connection let in.
#[derive(Debug)]
pub struct Admitted {
    /// Its per-IP slot (held until the connection closes), when that cap is set.
    pub ip_permit: Option<IpPermit>,
    /// Allowlisted: never limited, and served first by the handshake scheduler.
    pub allowlisted: bool,
}

/// Decides whether a new connection from `client` (tagged `tag`) is let in; `Err` names why
/// it is refused (it has then been held for a tarpit if its rule says so).
pub async fn admit(
    worker: &WorkerCtx,
    settings: &AdmissionSettings,
    client: IpAddr,
    tag: &ClientTag,
    drain: &CancellationToken,
) -> Result<Admitted, RejectReason> {
    let shard = &worker.shard;
    let rules = &settings.rate_limits;
    let allowlisted = rules.allowed(client, tag);
    if !allowlisted {
        if !rules.is_empty() {
            if let Err(limited) = worker.admission.rates.admit_connection(rules, tag) {
                return Err(refuse(worker, tag, limited.action, settings, drain).await);
            }
        }
        if worker.admission.auto.check(tag.country) == CapCheck::Over {
            if settings.auto.dry_run {
                shard.admission_rejected(tag.country, RejectReason::AutoCapDryRun);
            } else {
                shard.admission_rejected(tag.country, RejectReason::AutoCap);
                debug!("refused: automatic cap");
                return Err(RejectReason::AutoCap);
            }
        }
    }
    let ip_permit = match settings.max_connections_per_ip {
        None => None,
        Some(limit) => {
            let Some(p) = worker.admission.per_ip.try_acquire(client, limit) else {
                shard.admission_rejected(tag.country, RejectReason::PerIp);
                debug!("refused: max_connections_per_ip");
                return Err(RejectReason::PerIp);
            };
            Some(p)
        }
    };
    Ok(Admitted {
        ip_permit,
        allowlisted,
    })
}

/// Refuses a connection over its bucket: closes it at once, or holds it for
/// `tarpit_delay` first (while fewer than `MAX_TARPITTED` are held).
async fn refuse(
    worker: &WorkerCtx,
    tag: &ClientTag,
    action: LimitAction,
    settings: &AdmissionSettings,
    drain: &CancellationToken,
) -> RejectReason {
    let tarpits = &worker.admission.tarpitted;
    let tarpit = action == LimitAction::Tarpit
        && tarpits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_TARPITTED).then_some(n + 1)
            })
            .is_ok();
    if !tarpit {
        worker
            .shard
            .admission_rejected(tag.country, RejectReason::RateLimit);
        debug!("refused: rate limit");
        return RejectReason::RateLimit;
    }
    worker
        .shard
        .admission_rejected(tag.country, RejectReason::Tarpit);
    debug!("refused: rate limit, tarpit");
    tokio::select! {
        _ = tokio::time::sleep(settings.rate_limits.tarpit_delay) => {}
        _ = drain.cancelled() => {}
    }
    tarpits.fetch_sub(1, Ordering::Relaxed);
    RejectReason::Tarpit
}
