//! `[admission.countries.*]`, `[admission.asns.*]`, `allowlist`, `tarpit_delay`, and the
//! automatic mode keys (`auto`, `dry_run`, `auto_headroom`), checked into `RateLimits` and
//! `AutoSettings`.
//!
//! Merging rule: a key of a per-key table that is not set comes from the section's
//! `default` table, except that a `burst` (`request_burst`) is inherited only together with
//! its rate: a country that sets its own `new_connections_per_sec` and no `burst` gets a
//! burst of one second's worth, not the default table's (sized for another rate).

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::file::{RawAdmission, RawRateLimit};
use super::Scope;
use crate::admission::gcra::Rate;
use crate::admission::limits::DEFAULT_TARPIT_DELAY;
use crate::admission::settings::DEFAULT_AUTO_HEADROOM;
use crate::admission::{AutoSettings, LimitAction, LimitRule, RateLimits};
use crate::geo::country::{self, COUNTRY_COUNT};
use crate::net::{TrustedProxies, parse_cidr};

/// The name of the table every other key of a section inherits from.
const DEFAULT_KEY: &str = "default";
/// Largest accepted rate (a second) and burst.
const MAX_RATE: f64 = 10_000_000.0;
/// Accepted bursts.
const BURST_RANGE: (i64, i64) = (1, 10_000_000);
/// Accepted `auto_headroom`.
const HEADROOM_RANGE: (f64, f64) = (1.0, 1000.0);
/// Longest `tarpit_delay`.
const MAX_TARPIT: Duration = Duration::from_secs(300);

/// Builds the rate-limit rules of `[admission]`.
pub(super) fn build_rate_limits(raw: &RawAdmission, s: &mut Scope<'_>) -> Option<RateLimits> {
    let countries = section(s, "countries", &raw.countries, country_key);
    let asns = section(s, "asns", &raw.asns, asn_key);
    let allow = allowlist(s, raw.allowlist.as_deref().unwrap_or_default());
    let tarpit_delay = s
        .timeout(
            "tarpit_delay",
            raw.tarpit_delay.as_deref(),
            DEFAULT_TARPIT_DELAY,
        )
        .filter(|d| {
            let ok = *d <= MAX_TARPIT;
            if !ok {
                s.add("tarpit_delay", "must be at most 5m");
            }
            ok
        });
    let (country_default, by_country) = countries?;
    let (asn_default, by_asn) = asns?;
    let (allow_nets, allow_asns) = allow?;
    let mut per_country = Vec::new();
    if country_default.is_some() || !by_country.is_empty() {
        per_country = vec![country_default.unwrap_or_default(); COUNTRY_COUNT];
        for (idx, rule) in by_country {
            if let Some(slot) = per_country.get_mut(usize::from(idx)) {
                *slot = rule;
            }
        }
    }
    Some(
        RateLimits {
            countries: per_country,
            asn_default,
            asns: by_asn.into_iter().collect(),
            allow_nets,
            allow_asns,
            tarpit_delay: tarpit_delay?,
            ..RateLimits::default()
        }
        .finish(),
    )
}

/// Builds `auto` (on by default), `dry_run` and `auto_headroom`.
pub(super) fn build_auto(raw: &RawAdmission, s: &mut Scope<'_>) -> Option<AutoSettings> {
    let enabled = raw.auto.unwrap_or(true);
    let dry_run = raw.dry_run.unwrap_or(false);
    let mut ok = true;
    if dry_run && !enabled {
        s.add("dry_run", "only applies with auto = true");
        ok = false;
    }
    let headroom = raw.auto_headroom.unwrap_or(DEFAULT_AUTO_HEADROOM);
    if !(HEADROOM_RANGE.0..=HEADROOM_RANGE.1).contains(&headroom) {
        let (lo, hi) = HEADROOM_RANGE;
        s.add(
            "auto_headroom",
            format!("must be a number from {lo} to {hi} (got {headroom})"),
        );
        ok = false;
    }
    ok.then_some(AutoSettings {
        enabled,
        dry_run,
        headroom,
    })
}

/// A section's `default` rule and its per-key rules (keys parsed by `parse_key`).
type Section<K> = (Option<LimitRule>, Vec<(K, LimitRule)>);

fn section<K>(
    s: &mut Scope<'_>,
    name: &str,
    tables: &BTreeMap<String, RawRateLimit>,
    parse_key: fn(&str) -> Result<K, String>,
) -> Option<Section<K>> {
    let mut s = s.child(name);
    let empty = RawRateLimit::default();
    let default_raw = tables.get(DEFAULT_KEY);
    let default = default_raw.map(|t| rule(&mut s.child(DEFAULT_KEY), t, &empty));
    let mut ok = default.as_ref().is_none_or(Option::is_some);
    let mut rules = Vec::new();
    for (key, table) in tables.iter().filter(|(k, _)| *k != DEFAULT_KEY) {
        let mut ks = s.child(key);
        let parsed = parse_key(key).map_err(|reason| ks.add("", reason)).ok();
        let built = rule(&mut ks, table, default_raw.unwrap_or(&empty));
        match (parsed, built) {
            (Some(k), Some(r)) => rules.push((k, r)),
            _ => ok = false,
        }
    }
    ok.then(|| (default.flatten(), rules))
}

/// One table, unset keys taken from `fallback` (the section's `default`).
fn rule(s: &mut Scope<'_>, t: &RawRateLimit, fallback: &RawRateLimit) -> Option<LimitRule> {
    let connections = rate(
        s,
        ("new_connections_per_sec", "burst"),
        (t.new_connections_per_sec, t.burst),
        (fallback.new_connections_per_sec, fallback.burst),
    );
    let requests = rate(
        s,
        ("requests_per_sec", "request_burst"),
        (t.requests_per_sec, t.request_burst),
        (fallback.requests_per_sec, fallback.request_burst),
    );
    let action = match t.action.as_deref().or(fallback.action.as_deref()) {
        None | Some("reject") => Some(LimitAction::Reject),
        Some("tarpit") => Some(LimitAction::Tarpit),
        Some(other) => {
            let reason = format!("unknown action \"{other}\" (expected \"reject\" or \"tarpit\")");
            s.add("action", reason);
            None
        }
    };
    Some(LimitRule {
        new_connections: connections?,
        requests: requests?,
        action: action?,
    })
}

/// A rate and its burst: the table's own, else the fallback's (burst with its rate).
fn rate(
    s: &mut Scope<'_>,
    (rate_key, burst_key): (&str, &str),
    own: (Option<f64>, Option<i64>),
    fallback: (Option<f64>, Option<i64>),
) -> Option<Option<Rate>> {
    let (per_sec, burst) = match own {
        (Some(r), b) => (Some(r), b),
        (None, Some(b)) => (fallback.0, Some(b)),
        (None, None) => fallback,
    };
    let Some(per_sec) = per_sec else {
        if own.1.is_some() {
            s.add(burst_key, format!("needs {rate_key}"));
            return None;
        }
        return Some(None);
    };
    if !per_sec.is_finite() || per_sec <= 0.0 || per_sec > MAX_RATE {
        let reason = format!("must be a number above 0 and at most {MAX_RATE} (got {per_sec})");
        s.add(rate_key, reason);
        return None;
    }
    let one_second = per_sec.ceil().max(1.0) as u32;
    let burst = s.int(burst_key, burst, one_second, BURST_RANGE)?;
    Some(Some(Rate::per_second(per_sec, burst)))
}

/// `BR`, `br`, or `ZZ` (clients whose country is unknown) to a country slot.
fn country_key(key: &str) -> Result<u16, String> {
    let idx = country::index_of(key);
    if idx.0 != 0 || key.eq_ignore_ascii_case("ZZ") {
        return Ok(idx.0);
    }
    Err(format!(
        "unknown country \"{key}\": expected a two-letter ISO 3166 code such as \"BR\", \
         \"ZZ\" for unknown, or \"default\""
    ))
}

/// `AS64500` or `64500` to an ASN.
fn asn_key(key: &str) -> Result<u32, String> {
    parse_asn(key).ok_or_else(|| {
        format!("invalid ASN \"{key}\": expected \"AS64500\", \"64500\" or \"default\"")
    })
}

fn parse_asn(text: &str) -> Option<u32> {
    let t = text.trim();
    let digits = t
        .strip_prefix("AS")
        .or_else(|| t.strip_prefix("as"))
        .unwrap_or(t);
    digits.parse().ok()
}

/// `allowlist`: CIDRs (or bare addresses) and `AS<number>` entries.
fn allowlist(s: &mut Scope<'_>, entries: &[String]) -> Option<(TrustedProxies, Vec<u32>)> {
    let mut nets = Vec::new();
    let mut asns = Vec::new();
    let mut ok = true;
    for (i, entry) in entries.iter().enumerate() {
        let t = entry.trim();
        if t.len() > 2 && t[..2].eq_ignore_ascii_case("AS") {
            match parse_asn(t) {
                Some(a) => asns.push(a),
                None => {
                    s.add(&format!("allowlist[{i}]"), format!("invalid ASN \"{t}\""));
                    ok = false;
                }
            }
            continue;
        }
        match parse_cidr(t) {
            Ok(n) => nets.push(n),
            Err(e) => {
                let reason = format!("{e}, or an ASN such as \"AS64500\"");
                s.add(&format!("allowlist[{i}]"), reason);
                ok = false;
            }
        }
    }
    ok.then(|| (TrustedProxies::new(nets), asns))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::super::test_support::{MINIMAL, assert_rejected, context};
    use crate::admission::{AdmissionSettings, LimitAction};
    use crate::config::{ConfigErrors, load_str};
    use crate::geo::country;

    fn admission(extra: &str) -> Result<AdmissionSettings, ConfigErrors> {
        let text = format!("{MINIMAL}{extra}\n");
        load_str(&text, &context(Path::new("."))).map(|s| s.admission)
    }

    #[test]
    fn per_key_tables_inherit_from_default() {
        let a = admission(
            "[admission]\nallowlist = [\"192.0.2.0/24\", \"AS64999\"]\n\
             [admission.countries.default]\nnew_connections_per_sec = 100\nburst = 500\n\
             requests_per_sec = 50\n\
             [admission.countries.br]\nnew_connections_per_sec = 20\naction = \"tarpit\"\n\
             [admission.asns.AS64500]\nrequests_per_sec = 5\nrequest_burst = 10\n",
        )
        .unwrap();
        let r = &a.rate_limits;
        let br = r.countries[usize::from(country::index_of("BR").0)];
        let conn = br.new_connections.unwrap();
        assert_eq!((conn.per_sec().round(), conn.burst), (20.0, 20));
        assert_eq!(br.requests.unwrap().burst, 50, "inherited with its rate");
        assert_eq!(br.action, LimitAction::Tarpit);
        let de = r.countries[usize::from(country::index_of("DE").0)];
        assert_eq!(de.new_connections.unwrap().burst, 500);
        assert_eq!(de.action, LimitAction::Reject);
        assert_eq!(r.asns[&64500].requests.unwrap().burst, 10);
        assert!(r.asns[&64500].new_connections.is_none());
        assert_eq!(r.allow_asns, vec![64999]);
        assert!(!r.allow_nets.is_empty());
    }

    #[test]
    fn bad_tables_name_the_key() {
        let cases = [
            (
                "[admission.countries.XY]\nnew_connections_per_sec = 1\n",
                "admission.countries.XY",
                "unknown country",
            ),
            (
                "[admission.countries.BR]\nnew_connections_per_sec = 0\n",
                "admission.countries.BR.new_connections_per_sec",
                "above 0",
            ),
            (
                "[admission.countries.BR]\nburst = 5\n",
                "admission.countries.BR.burst",
                "needs new_connections_per_sec",
            ),
            (
                "[admission.asns.ASX]\nrequests_per_sec = 1\n",
                "admission.asns.ASX",
                "invalid ASN",
            ),
            (
                "[admission.asns.default]\nrequests_per_sec = 1\naction = \"drop\"\n",
                "admission.asns.default.action",
                "unknown action",
            ),
            (
                "[admission]\nallowlist = [\"10.0.0.1/8\"]\n",
                "admission.allowlist[0]",
                "10.0.0.0/8",
            ),
            (
                "[admission]\nauto = false\ndry_run = true\n",
                "admission.dry_run",
                "auto = true",
            ),
            (
                "[admission]\nmax_handshakes_in_flight = 4\nauto = true\nauto_headroom = 0.5\n",
                "admission.auto_headroom",
                "from 1",
            ),
            (
                "[admission]\ntarpit_delay = \"1h\"\n",
                "admission.tarpit_delay",
                "at most",
            ),
        ];
        for (table, key, needle) in cases {
            assert_rejected(&format!("{MINIMAL}{table}"), key, needle);
        }
    }
}
