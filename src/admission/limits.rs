//! Per-country and per-ASN token buckets (`[admission.countries.*]`, `[admission.asns.*]`)
//! and the allowlist that is never limited.
//!
//! A client is checked against its country's rule (its own table, else `default`) and its
//! ASN's rule (its own table, else `default`); it must pass both. A key of a per-key table
//! that is not set is taken from that section's `default` table, so
//! `[admission.countries.BR] new_connections_per_sec = 20` keeps the default request limit.
//! The rules live in the snapshot (a reload swaps them); the buckets live in
//! [`RateState`], kept for the life of the process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::gcra::{AsnCells, Cell, Clock, Rate};
use crate::geo::country::COUNTRY_COUNT;
use crate::geo::tag::ClientTag;
use crate::net::TrustedProxies;

/// What happens to a new connection over its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitAction {
    /// Close it at once, before the TLS handshake (costs almost nothing).
    #[default]
    Reject,
    /// Hold it, reading nothing, for `tarpit_delay`, then close it: slows down clients that
    /// reconnect at once.
    Tarpit,
}

/// The limits of one key (a country or an ASN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitRule {
    /// New connections a second and burst; `None`: not limited.
    pub new_connections: Option<Rate>,
    /// Requests a second and burst; `None`: not limited.
    pub requests: Option<Rate>,
    /// What happens to a connection over `new_connections`.
    pub action: LimitAction,
}

impl LimitRule {
    fn is_unlimited(&self) -> bool {
        self.new_connections.is_none() && self.requests.is_none()
    }
}

/// The rate-limit rules of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// One rule per country slot (the `default` merged in); empty when no country has one.
    pub countries: Vec<LimitRule>,
    /// `[admission.asns.default]`.
    pub asn_default: Option<LimitRule>,
    /// `[admission.asns.ASN]`, the `default` merged in.
    pub asns: HashMap<u32, LimitRule>,
    /// Client networks that are never limited.
    pub allow_nets: TrustedProxies,
    /// Autonomous systems that are never limited.
    pub allow_asns: Vec<u32>,
    /// How long a tarpitted connection is held before it is closed.
    pub tarpit_delay: Duration,
    /// Whether any rule limits anything (set by [`RateLimits::finish`]).
    pub limited: bool,
}

/// Default `tarpit_delay`.
pub const DEFAULT_TARPIT_DELAY: Duration = Duration::from_secs(10);

/// Which bucket refused, and how long until it has a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The action of the rule that refused.
    pub action: LimitAction,
    /// Time until the bucket has a token again (for `Retry-After`).
    pub retry_after: Duration,
}

impl RateLimits {
    /// The rules, with the "anything limited" flag worked out once (call after building).
    pub fn finish(mut self) -> Self {
        self.limited = !(self.countries.iter().all(LimitRule::is_unlimited)
            && self.asns.values().all(LimitRule::is_unlimited)
            && self.asn_default.is_none_or(|r| r.is_unlimited()));
        self
    }

    /// Whether no rule limits anything (the bucket checks are skipped).
    pub fn is_empty(&self) -> bool {
        !self.limited
    }

    /// Whether a client is on the allowlist (by address or ASN).
    pub fn allowed(&self, ip: IpAddr, tag: &ClientTag) -> bool {
        (!self.allow_nets.is_empty() && self.allow_nets.contains(ip))
            || tag.asn.is_some_and(|a| self.allow_asns.contains(&a))
    }

    fn country_rule(&self, tag: &ClientTag) -> Option<&LimitRule> {
        self.countries.get(usize::from(tag.country.0))
    }

    fn asn_rule(&self, tag: &ClientTag) -> Option<(u32, &LimitRule)> {
        let asn = tag.asn?;
        self.asns
            .get(&asn)
            .or(self.asn_default.as_ref())
            .map(|r| (asn, r))
    }
}

/// Which bucket a check takes from.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Connections,
    Requests,
}

/// The buckets of every country and ASN, for connections and for requests; shared by the
/// workers and kept across reloads.
#[derive(Debug)]
pub struct RateState {
    clock: Clock,
    country_connections: Box<[Cell]>,
    country_requests: Box<[Cell]>,
    asn_connections: AsnCells,
    asn_requests: AsnCells,
}

impl Default for RateState {
    fn default() -> Self {
        Self {
            clock: Clock::default(),
            country_connections: (0..COUNTRY_COUNT).map(|_| Cell::default()).collect(),
            country_requests: (0..COUNTRY_COUNT).map(|_| Cell::default()).collect(),
            asn_connections: AsnCells::default(),
            asn_requests: AsnCells::default(),
        }
    }
}

impl RateState {
    /// The time base of the buckets (shared with the automatic caps).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Takes a new-connection token from the client's country and ASN buckets.
    /// (Allowlisted clients are not checked: see [`RateLimits::allowed`].)
    pub fn admit_connection(&self, rules: &RateLimits, tag: &ClientTag) -> Result<(), Limited> {
        self.admit(rules, tag, Kind::Connections)
    }

    /// Takes a request token from the client's country and ASN buckets.
    pub fn admit_request(&self, rules: &RateLimits, tag: &ClientTag) -> Result<(), Limited> {
        self.admit(rules, tag, Kind::Requests)
    }

    fn admit(&self, rules: &RateLimits, tag: &ClientTag, kind: Kind) -> Result<(), Limited> {
        let rate_of = |r: &LimitRule| match kind {
            Kind::Connections => r.new_connections,
            Kind::Requests => r.requests,
        };
        let country = rules
            .country_rule(tag)
            .and_then(|r| rate_of(r).map(|rate| (r.action, rate)));
        let asn = rules
            .asn_rule(tag)
            .and_then(|(asn, r)| rate_of(r).map(|rate| (asn, r.action, rate)));
        if country.is_none() && asn.is_none() {
            return Ok(());
        }
        let now = self.clock.now_ns();
        if let Some((action, rate)) = country {
            let cells = match kind {
                Kind::Connections => &self.country_connections,
                Kind::Requests => &self.country_requests,
            };
            if let Some(cell) = cells.get(usize::from(tag.country.0)) {
                cell.take(rate, now).map_err(|retry_after| Limited {
                    action,
                    retry_after,
                })?;
            }
        }
        if let Some((asn, action, rate)) = asn {
            let cells = match kind {
                Kind::Connections => &self.asn_connections,
                Kind::Requests => &self.asn_requests,
            };
            cells
                .cell(asn, now)
                .take(rate, now)
                .map_err(|retry_after| Limited {
                    action,
                    retry_after,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::geo::country;
    use crate::net::parse_cidr;

    fn tag(code: &str, asn: Option<u32>) -> ClientTag {
        ClientTag {
            country: country::index_of(code),
            asn,
            ..ClientTag::unknown()
        }
    }

    fn rules() -> RateLimits {
        let mut countries = vec![LimitRule::default(); COUNTRY_COUNT];
        countries[usize::from(country::index_of("BR").0)] = LimitRule {
            new_connections: Some(Rate::per_second(1.0, 2)),
            requests: Some(Rate::per_second(1.0, 1)),
            action: LimitAction::Tarpit,
        };
        let asn_rule = LimitRule {
            new_connections: Some(Rate::per_second(1.0, 1)),
            ..LimitRule::default()
        };
        RateLimits {
            countries,
            asns: HashMap::from([(64500, asn_rule)]),
            allow_nets: TrustedProxies::new(vec![parse_cidr("192.0.2.0/24").unwrap()]),
            allow_asns: vec![64999],
            ..RateLimits::default()
        }
        .finish()
    }

    #[test]
    fn country_and_asn_buckets_both_apply() {
        let (state, rules) = (RateState::default(), rules());
        let br = tag("BR", None);
        assert!(state.admit_connection(&rules, &br).is_ok());
        assert!(state.admit_connection(&rules, &br).is_ok());
        let limited = state.admit_connection(&rules, &br).unwrap_err();
        assert_eq!(limited.action, LimitAction::Tarpit);
        assert!(limited.retry_after > Duration::from_millis(500));
        // Another country has no rule; the ASN rule applies wherever the client is.
        let de = tag("DE", Some(64500));
        assert!(state.admit_connection(&rules, &de).is_ok());
        let by_asn = state.admit_connection(&rules, &de).unwrap_err();
        assert_eq!(by_asn.action, LimitAction::Reject);
        // Requests have their own buckets.
        assert!(state.admit_request(&rules, &br).is_ok());
        assert!(state.admit_request(&rules, &br).is_err());
        assert!(!rules.is_empty());
        assert!(RateLimits::default().is_empty());
    }

    #[test]
    fn allowlist_by_network_and_asn() {
        let rules = rules();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(rules.allowed(ip, &tag("BR", None)));
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(rules.allowed(other, &tag("BR", Some(64999))));
        assert!(!rules.allowed(other, &tag("BR", Some(64500))));
    }
}
