//! The verdict on a new connection once its real client address and tag are known, before
//! any TLS byte is answered: the allowlist, the country and ASN buckets (reject or tarpit),
//! the automatic cap, then the per-IP cap; and, for a connection admitted before its
//! country's automatic cap started, the cap met again at its handshake slot.
//!
//! Verdicts only: nothing here writes stats or touches a socket. The caller (the front,
//! `runtime::front`) records each verdict once on its worker's shard and closes, holds or
//! serves the connection. The decision is synchronous, so the accept loop can take it for a
//! connection whose PROXY header is already in; only a tarpit needs time, and
//! [`Admission::hold_tarpitted`] spends it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;

use super::auto::CapCheck;
use super::{Admission, AdmissionSettings, IpPermit, LimitAction, MAX_TARPITTED};
use crate::geo::ClientTag;
use crate::labels::{CountryIdx, RejectReason};

/// A connection let in.
#[derive(Debug)]
pub struct Admitted {
    /// Its per-IP slot (held until the connection closes), when that cap is set.
    pub ip_permit: Option<IpPermit>,
    /// Allowlisted: never limited, and served first by the handshake scheduler.
    pub allowlisted: bool,
    /// Its country had an automatic cap when it was admitted (so it passed that cap): one
    /// admitted before a cap started meets it at its handshake slot instead
    /// ([`Admission::late_cap`]).
    pub cap_checked: bool,
    /// A dry run's automatic cap would have refused it (`auto_cap_dry_run`, to be counted).
    pub dry_run_refusal: bool,
    /// Over its country's automatic cap on a TLS listener: refused (`auto_cap`) once its
    /// ClientHello shows it is not a resumption attempt, before any TLS byte is sent. A
    /// returning client with a ticket is never refused for its country's spike.
    pub cap_deferred: bool,
}

impl Admitted {
    /// Allowlisted, or checked against its country's cap when admitted: a cap that starts
    /// later does not apply to it ([`Admission::late_cap`]).
    pub fn exempt_from_late_cap(&self) -> bool {
        self.allowlisted || self.cap_checked
    }
}

/// A connection refused: why, and whether it is to be held (tarpitted) before it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The reason (the caller counts it).
    pub reason: RejectReason,
    /// Hold it for `tarpit_delay`, then close (its place among `MAX_TARPITTED` is taken; give
    /// it back with [`Admission::hold_tarpitted`]).
    pub tarpit: bool,
    /// A dry run's automatic cap would have refused it before the per-IP cap did.
    pub dry_run_refusal: bool,
}

impl Refusal {
    /// A refusal closed at once.
    fn closed(reason: RejectReason) -> Self {
        Self {
            reason,
            tarpit: false,
            dry_run_refusal: false,
        }
    }
}

/// A queued connection's meeting with its country's automatic cap at its handshake slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateCap {
    /// No cap applies, or it is under the cap.
    Pass,
    /// Over the cap of a dry run: let through, counted as `auto_cap_dry_run`.
    WouldRefuse,
    /// Over the cap: refuse it (`auto_cap_queued`) before its handshake.
    Refuse,
}

impl Admission {
    /// Whether a new connection from `client` (tagged `tag`) is let in. On a TLS listener
    /// (`tls`), a connection over its country's automatic cap is let in with
    /// [`Admitted::cap_deferred`]: the cap is applied once its ClientHello is classified.
    pub fn decide(
        &self,
        settings: &AdmissionSettings,
        client: IpAddr,
        tag: &ClientTag,
        tls: bool,
    ) -> Result<Admitted, Refusal> {
        let rules = &settings.rate_limits;
        let allowlisted = rules.allowed(client, tag);
        let mut cap_checked = false;
        let mut dry_run_refusal = false;
        let mut cap_deferred = false;
        if !allowlisted {
            if !rules.is_empty()
                && let Err(limited) = self.rates.admit_connection(rules, tag)
            {
                return Err(self.over_bucket(limited.action));
            }
            cap_checked = self.auto.is_capped(tag.country);
            if self.auto.check(tag.country) == CapCheck::Over {
                if settings.auto.dry_run {
                    dry_run_refusal = true;
                } else if tls {
                    cap_deferred = true;
                } else {
                    return Err(Refusal::closed(RejectReason::AutoCap));
                }
            }
        }
        let ip_permit = match settings.max_connections_per_ip {
            None => None,
            Some(limit) => match self.per_ip.try_acquire(client, limit) {
                Some(p) => Some(p),
                None => {
                    return Err(Refusal {
                        dry_run_refusal,
                        ..Refusal::closed(RejectReason::PerIp)
                    });
                }
            },
        };
        Ok(Admitted {
            ip_permit,
            allowlisted,
            cap_checked,
            dry_run_refusal,
            cap_deferred,
        })
    }

    /// Whether a connection admitted before its country's automatic cap started, and given a
    /// handshake slot only now (it waited in the queue), is over that cap: the flood queued in
    /// the moments before a cap must not get the handshakes the cap denies. `exempt`:
    /// allowlisted, or already checked against a cap (`Admitted::exempt_from_late_cap`).
    pub fn late_cap(
        &self,
        settings: &AdmissionSettings,
        exempt: bool,
        country: CountryIdx,
    ) -> LateCap {
        if exempt || !self.auto.is_capped(country) || self.auto.check(country) == CapCheck::Pass {
            return LateCap::Pass;
        }
        if settings.auto.dry_run {
            LateCap::WouldRefuse
        } else {
            LateCap::Refuse
        }
    }

    /// Holds a tarpitted connection for `tarpit_delay` (or until `drain`), then gives its
    /// place among `MAX_TARPITTED` back (also if this future is dropped). The caller closes
    /// it afterwards.
    pub async fn hold_tarpitted(&self, settings: &AdmissionSettings, drain: &CancellationToken) {
        let _place = TarpitPlace(&self.tarpitted);
        tokio::select! {
            _ = tokio::time::sleep(settings.rate_limits.tarpit_delay) => {}
            _ = drain.cancelled() => {}
        }
    }

    /// Refuses a connection over its bucket: at once, or after a tarpit when its rule says
    /// so and fewer than `MAX_TARPITTED` are held.
    fn over_bucket(&self, action: LimitAction) -> Refusal {
        let tarpit = action == LimitAction::Tarpit
            && self
                .tarpitted
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < MAX_TARPITTED).then_some(n + 1)
                })
                .is_ok();
        let reason = if tarpit {
            RejectReason::Tarpit
        } else {
            RejectReason::RateLimit
        };
        Refusal {
            reason,
            tarpit,
            dry_run_refusal: false,
        }
    }
}

/// A place among the tarpitted connections, given back when dropped.
struct TarpitPlace<'a>(&'a AtomicUsize);

impl Drop for TarpitPlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use std::path::Path;

    use super::*;
    use crate::admission::auto::AutoController;
    use crate::config::load_str;
    use crate::config::validate::test_support::{MINIMAL, context};
    use crate::geo::country;
    use crate::stats::Onset;

    /// The `[admission]` settings of the minimal config plus `toml`.
    fn settings(toml: &str) -> AdmissionSettings {
        let source = format!("{MINIMAL}[admission]\n{toml}\n");
        load_str(&source, &context(Path::new(".")))
            .unwrap()
            .admission
    }

    /// Starts a cap of 1/s (a baseline of 0) on `country`, as the fast onset would.
    fn cap(admission: &Admission, settings: &AdmissionSettings, country: CountryIdx) {
        admission.shares.mark_saturated();
        let onset = Onset {
            country,
            rate: 500.0,
            baseline: 0.0,
            ratio: 500.0,
        };
        let events = AutoController::default().onset(
            &[onset],
            &settings.auto,
            &admission.shares,
            &admission.auto,
            1.0,
        );
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn a_cap_that_starts_after_admission_is_met_at_the_handshake_slot() {
        let admission = Admission::default();
        let settings =
            &settings("max_handshakes_in_flight = 1\nauto = true\nallowlist = [\"192.0.2.1\"]");
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
        let before = admission.decide(settings, client, &tag, false).unwrap();
        let listed_before = admission.decide(settings, listed, &tag, false).unwrap();
        assert!(!before.exempt_from_late_cap() && listed_before.exempt_from_late_cap());
        cap(&admission, settings, br);
        // Admitted under the cap (its one token): it met the cap at admission.
        let later = admission.decide(settings, client, &tag, false).unwrap();
        assert!(later.exempt_from_late_cap());
        let refused = admission.decide(settings, client, &tag, false).unwrap_err();
        assert_eq!(refused.reason, RejectReason::AutoCap);
        // On a TLS listener the same connection is let in with the cap deferred to its
        // ClientHello (a resumption attempt passes it).
        let deferred = admission.decide(settings, client, &tag, true).unwrap();
        assert!(deferred.cap_deferred);
        // At their handshake slots: the one admitted before the cap meets the (empty) cap, the others do not.
        let late = |exempt| admission.late_cap(settings, exempt, br);
        assert_eq!(late(before.exempt_from_late_cap()), LateCap::Refuse);
        assert_eq!(late(later.exempt_from_late_cap()), LateCap::Pass);
        assert_eq!(late(listed_before.exempt_from_late_cap()), LateCap::Pass);
        let de = country::index_of("DE");
        assert_eq!(admission.late_cap(settings, false, de), LateCap::Pass);
    }

    #[test]
    fn a_dry_run_reports_the_late_cap_and_lets_it_through() {
        let admission = Admission::default();
        let settings = &settings("max_handshakes_in_flight = 1\nauto = true\ndry_run = true");
        let br = country::index_of("BR");
        cap(&admission, settings, br);
        assert_eq!(admission.auto.check(br), CapCheck::Pass, "the one token");
        assert_eq!(
            admission.late_cap(settings, false, br),
            LateCap::WouldRefuse
        );
    }

    #[test]
    fn a_bucket_refuses_and_a_tarpit_takes_a_place_until_its_hold_ends() {
        let admission = Admission::default();
        let settings = &settings(
            "[admission.countries.default]\nnew_connections_per_sec = 1\nburst = 1\n\
             action = \"tarpit\"",
        );
        let tag = ClientTag::unknown();
        let client = "198.51.100.7".parse().unwrap();
        assert!(admission.decide(settings, client, &tag, false).is_ok());
        let refused = admission.decide(settings, client, &tag, false).unwrap_err();
        assert_eq!(refused.reason, RejectReason::Tarpit);
        assert!(refused.tarpit);
        assert_eq!(admission.tarpitted.load(Ordering::Relaxed), 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let drain = CancellationToken::new();
        drain.cancel();
        rt.block_on(admission.hold_tarpitted(settings, &drain));
        assert_eq!(admission.tarpitted.load(Ordering::Relaxed), 0);
    }
}
