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
    /// Its country had an automatic cap when it was admitted (so it passed that cap): one
    /// admitted before a cap started meets it at its handshake slot instead (see
    /// `meets_late_cap`).
    pub cap_checked: bool,
}

impl Admitted {
    /// Allowlisted, or checked against its country's cap when admitted: a cap that starts
    /// later does not apply to it (`meets_late_cap`).
    pub fn exempt_from_late_cap(&self) -> bool {
        self.allowlisted || self.cap_checked
    }
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
    let mut cap_checked = false;
    if !allowlisted {
        if !rules.is_empty() {
            if let Err(limited) = worker.admission.rates.admit_connection(rules, tag) {
                return Err(over_bucket(worker, tag, limited.action));
            }
        }
        cap_checked = worker.admission.auto.is_capped(tag.country);
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
        cap_checked,
    })
}

/// Whether a connection admitted before its country's automatic cap started, and given a
/// handshake slot only now (it waited in the queue), is over that cap: the flood queued in
/// the moments before a cap must not get the handshakes the cap denies. Counts it (a dry
/// run's "would have" too); `true`: refuse it (`auto_cap_queued`) before its handshake. `exempt`:
/// allowlisted, or already checked against a cap (`Admitted::exempt_from_late_cap`).
pub fn meets_late_cap(
    worker: &WorkerCtx,
    settings: &AdmissionSettings,
    exempt: bool,
    country: crate::stats::CountryIdx,
) -> bool {
    let auto = &worker.admission.auto;
    if exempt || !auto.is_capped(country) {
        return false;
    }
    if auto.check(country) == CapCheck::Pass {
        return false;
    }
    if settings.auto.dry_run {
        worker
            .shard
            .admission_rejected(country, RejectReason::AutoCapDryRun);
        return false;
    }
    debug!("refused: automatic cap, at the handshake slot");
    true
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::admission::auto::AutoController;
    use crate::geo::country;
    use crate::proxy::test_support::worker;
    use crate::stats::Onset;

    /// Starts a cap of 1/s (a baseline of 0) on `country`, as the fast onset would.
    fn cap(w: &WorkerCtx, settings: &AdmissionSettings, country: crate::stats::CountryIdx) {
        w.admission.shares.mark_saturated();
        let onset = Onset {
            country,
            rate: 500.0,
            baseline: 0.0,
            ratio: 500.0,
        };
        let events = AutoController::default().onset(
            &[onset],
            &settings.auto,
            &w.admission.shares,
            &w.admission.auto,
            1.0,
        );
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn a_cap_that_starts_after_admission_is_met_at_the_handshake_slot() {
        let w = worker("max_handshakes_in_flight = 1\nauto = true\nallowlist = [\"192.0.2.1\"]");
        let snapshot: Rc<_> = w.snapshot.current();
        let settings = &snapshot.admission;
        let br = country::index_of("BR");
        let tag = ClientTag {
            country: br,
            ..ClientTag::unknown()
        };
        let (client, listed) = (
            "198.51.100.7".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
        );
        // Admitted before any cap: it has not met one.
        let early = decide(&w, settings, client, &tag).unwrap();
        let listed_early = decide(&w, settings, listed, &tag).unwrap();
        assert!(!early.exempt_from_late_cap() && listed_early.exempt_from_late_cap());
        cap(&w, settings, br);
        // Admitted under the cap (its one token): it met the cap at admission.
        let later = decide(&w, settings, client, &tag).unwrap();
        assert!(later.exempt_from_late_cap());
        let refused = decide(&w, settings, client, &tag).unwrap_err();
        assert_eq!(refused.reason, RejectReason::AutoCap);
        // At their handshake slots: the early one meets the (empty) cap, the others do not.
        assert!(meets_late_cap(
            &w,
            settings,
            early.exempt_from_late_cap(),
            br
        ));
        assert!(!meets_late_cap(
            &w,
            settings,
            later.exempt_from_late_cap(),
            br
        ));
        assert!(!meets_late_cap(
            &w,
            settings,
            listed_early.exempt_from_late_cap(),
            br
        ));
        let de = country::index_of("DE");
        assert!(!meets_late_cap(&w, settings, false, de), "DE has no cap");
    }

    #[test]
    fn a_dry_run_counts_the_late_cap_and_lets_it_through() {
        let w = worker("max_handshakes_in_flight = 1\nauto = true\ndry_run = true");
        let snapshot: Rc<_> = w.snapshot.current();
        let settings = &snapshot.admission;
        let br = country::index_of("BR");
        cap(&w, settings, br);
        assert_eq!(w.admission.auto.check(br), CapCheck::Pass, "the one token");
        assert!(!meets_late_cap(&w, settings, false, br));
        let mut counted = [0; RejectReason::COUNT];
        w.shard.add_rejected(br, &mut counted);
        assert_eq!(counted[RejectReason::AutoCapDryRun as usize], 1);
    }
}
