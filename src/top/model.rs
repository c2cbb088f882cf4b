//! What `levee top` reads from `GET /stats` (serde structs that tolerate missing and `null`
//! fields, so an older or newer levee still renders), and how its rows are ordered.
//!
//! Nothing here does I/O or rendering: [`Stats`] is parsed from the admin API's JSON and
//! [`sorted_countries`] / [`sorted_asns`] order its rows for the view.

use std::cmp::Ordering;

use serde::{Deserialize, Deserializer};

/// Accepts `null` where a value is expected, as the value's default (0, empty): the admin API
/// writes `null` for "no data yet" in some fields, and top shows those as 0 or `-`.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The whole `GET /stats` answer (the fields top shows).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// When the answer was made, unix seconds.
    #[serde(deserialize_with = "nullable")]
    pub generated_at: f64,
    /// How long the levee has been running, seconds.
    #[serde(deserialize_with = "nullable")]
    pub uptime_seconds: f64,
    /// Config generation and reloads.
    #[serde(deserialize_with = "nullable")]
    pub config: ConfigInfo,
    /// Totals over every country.
    #[serde(deserialize_with = "nullable")]
    pub totals: Totals,
    /// Countries with any traffic.
    #[serde(deserialize_with = "nullable")]
    pub countries: Vec<CountryStats>,
    /// Top ASNs, then an "other" row with `asn` 0.
    #[serde(deserialize_with = "nullable")]
    pub asns: Vec<AsnStats>,
    /// Countries spiking now.
    #[serde(deserialize_with = "nullable")]
    pub spikes: Vec<Spike>,
    /// One entry per worker.
    #[serde(deserialize_with = "nullable")]
    pub workers: Vec<WorkerStats>,
    /// Admission control (only the automatic caps are shown).
    #[serde(deserialize_with = "nullable")]
    pub admission: AdmissionInfo,
}

/// `admission`: what top shows of it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AdmissionInfo {
    /// `[admission] auto` and its caps in force.
    #[serde(deserialize_with = "nullable")]
    pub auto: AutoInfo,
}

/// `admission.auto`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AutoInfo {
    /// Countries capped now.
    #[serde(deserialize_with = "nullable")]
    pub caps: Vec<AutoCap>,
}

/// One automatic cap in force.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AutoCap {
    /// Country code.
    #[serde(deserialize_with = "nullable")]
    pub country: String,
    /// New connections a second it is held to.
    #[serde(deserialize_with = "nullable")]
    pub cap_per_sec: f64,
    /// Only counted, not enforced.
    #[serde(deserialize_with = "nullable")]
    pub dry_run: bool,
}

/// `config`: which config is serving.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ConfigInfo {
    /// Generation number of the serving snapshot.
    #[serde(deserialize_with = "nullable")]
    pub generation: u64,
    /// Hash of the config source, hex.
    #[serde(deserialize_with = "nullable")]
    pub source_hash: String,
}

/// TLS handshakes by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Handshakes {
    /// Full handshakes.
    #[serde(deserialize_with = "nullable")]
    pub full: u64,
    /// Resumed handshakes.
    #[serde(deserialize_with = "nullable")]
    pub resumed: u64,
    /// Failed handshakes (including timeouts).
    #[serde(deserialize_with = "nullable")]
    pub failed: u64,
}

/// Requests by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Requests {
    /// 1xx.
    #[serde(rename = "1xx", deserialize_with = "nullable")]
    pub c1xx: u64,
    /// 2xx.
    #[serde(rename = "2xx", deserialize_with = "nullable")]
    pub c2xx: u64,
    /// 3xx.
    #[serde(rename = "3xx", deserialize_with = "nullable")]
    pub c3xx: u64,
    /// 4xx.
    #[serde(rename = "4xx", deserialize_with = "nullable")]
    pub c4xx: u64,
    /// 5xx.
    #[serde(rename = "5xx", deserialize_with = "nullable")]
    pub c5xx: u64,
}

impl Requests {
    /// All classes together.
    pub fn total(&self) -> u64 {
        self.c1xx + self.c2xx + self.c3xx + self.c4xx + self.c5xx
    }
}

/// `totals`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Totals {
    /// Client connections accepted so far.
    #[serde(deserialize_with = "nullable")]
    pub connections: u64,
    /// Client connections open now.
    #[serde(deserialize_with = "nullable")]
    pub connections_active: u64,
    /// TLS handshakes so far.
    #[serde(deserialize_with = "nullable")]
    pub tls_handshakes: Handshakes,
    /// Requests so far.
    #[serde(deserialize_with = "nullable")]
    pub requests: Requests,
    /// Bytes received from clients.
    #[serde(deserialize_with = "nullable")]
    pub bytes_in: u64,
    /// Bytes sent to clients.
    #[serde(deserialize_with = "nullable")]
    pub bytes_out: u64,
    /// New connections per second over the last second.
    #[serde(deserialize_with = "nullable")]
    pub conn_rate_1s: f64,
    /// ... over the last 10 s.
    #[serde(deserialize_with = "nullable")]
    pub conn_rate_10s: f64,
    /// ... over the last 60 s.
    #[serde(deserialize_with = "nullable")]
    pub conn_rate_60s: f64,
    /// Requests per second over the last 10 s.
    #[serde(deserialize_with = "nullable")]
    pub req_rate_10s: f64,
    /// Connections and requests shed per second over the last 10 s; `None` from a levee
    /// that does not report it.
    pub shed_rate: Option<f64>,
}

/// One row of `countries`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CountryStats {
    /// ISO 3166-1 alpha-2 code, `ZZ` for unknown.
    #[serde(deserialize_with = "nullable")]
    pub country: String,
    /// Client connections accepted so far.
    #[serde(deserialize_with = "nullable")]
    pub connections: u64,
    /// Client connections open now.
    #[serde(deserialize_with = "nullable")]
    pub connections_active: u64,
    /// New connections per second over the last second.
    #[serde(deserialize_with = "nullable")]
    pub conn_rate_1s: f64,
    /// ... over the last 10 s (the "current rate").
    #[serde(deserialize_with = "nullable")]
    pub conn_rate_10s: f64,
    /// ... over the last 60 s.
    #[serde(deserialize_with = "nullable")]
    pub conn_rate_60s: f64,
    /// Requests per second over the last 10 s.
    #[serde(deserialize_with = "nullable")]
    pub req_rate_10s: f64,
    /// Connections and requests shed by admission control per second over the last 10 s;
    /// `None` from a levee that does not report it.
    pub shed_rate: Option<f64>,
    /// Slow EWMA of the (offered) connection rate.
    #[serde(deserialize_with = "nullable")]
    pub baseline: f64,
    /// The offered connection rate (opened + refused before open) over the baseline (with a
    /// floor).
    #[serde(deserialize_with = "nullable")]
    pub spike_ratio: f64,
    /// Whether the country is spiking now.
    #[serde(deserialize_with = "nullable")]
    pub spiking: bool,
    /// TLS handshakes so far.
    #[serde(deserialize_with = "nullable")]
    pub tls_handshakes: Handshakes,
    /// Resumed share of handshakes over the last 10 s, 0..1; `None` when there were none.
    pub resumed_share: Option<f64>,
    /// Slow EWMA of the resumed share.
    pub resumed_share_baseline: Option<f64>,
    /// Handshake duration median over the last 60 s, ms.
    pub handshake_p50_ms: Option<f64>,
    /// Handshake duration 99th percentile over the last 60 s, ms.
    pub handshake_p99_ms: Option<f64>,
    /// Requests so far.
    #[serde(deserialize_with = "nullable")]
    pub requests: Requests,
    /// 5xx share of the requests of the last 10 s, 0..1.
    #[serde(deserialize_with = "nullable")]
    pub share_5xx: f64,
    /// Bytes received from clients.
    #[serde(deserialize_with = "nullable")]
    pub bytes_in: u64,
    /// Bytes sent to clients.
    #[serde(deserialize_with = "nullable")]
    pub bytes_out: u64,
    /// New connections per second, the last 60 s, oldest first.
    #[serde(deserialize_with = "nullable")]
    pub history: Vec<f64>,
}

/// One row of `asns`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AsnStats {
    /// Autonomous system number; 0 for the "other" row.
    #[serde(deserialize_with = "nullable")]
    pub asn: u32,
    /// Organisation, as the ASN database names it.
    #[serde(deserialize_with = "nullable")]
    pub org: String,
    /// Country most of its traffic comes from.
    #[serde(deserialize_with = "nullable")]
    pub country: String,
    /// Client connections accepted so far.
    #[serde(deserialize_with = "nullable")]
    pub connections: u64,
    /// New connections per second over the last 10 s.
    #[serde(deserialize_with = "nullable")]
    pub conn_rate_10s: f64,
    /// Requests so far.
    #[serde(deserialize_with = "nullable")]
    pub requests: u64,
    /// New connections per second, the last 60 s, oldest first.
    #[serde(deserialize_with = "nullable")]
    pub history: Vec<f64>,
}

/// One ASN of a spike's top three.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SpikeAsn {
    /// Autonomous system number.
    #[serde(deserialize_with = "nullable")]
    pub asn: u32,
    /// Organisation.
    #[serde(deserialize_with = "nullable")]
    pub org: String,
    /// Its connection rate over the last 10 s.
    #[serde(deserialize_with = "nullable")]
    pub conn_rate_10s: f64,
}

/// One entry of `spikes`: a country spiking now.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Spike {
    /// The country.
    #[serde(deserialize_with = "nullable")]
    pub country: String,
    /// Since when, unix seconds.
    #[serde(deserialize_with = "nullable")]
    pub since: f64,
    /// Offered connection rate (opened + refused before open) over the last 10 s.
    #[serde(deserialize_with = "nullable")]
    pub rate: f64,
    /// Its baseline.
    #[serde(deserialize_with = "nullable")]
    pub baseline: f64,
    /// Rate over baseline.
    #[serde(deserialize_with = "nullable")]
    pub ratio: f64,
    /// Resumed share of handshakes, 0..1.
    pub resumed_share: Option<f64>,
    /// Handshake median, ms.
    pub handshake_p50_ms: Option<f64>,
    /// Handshake 99th percentile, ms.
    pub handshake_p99_ms: Option<f64>,
    /// The three ASNs sending most of it.
    #[serde(deserialize_with = "nullable")]
    pub top_asns: Vec<SpikeAsn>,
}

/// One entry of `workers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WorkerStats {
    /// Worker index.
    #[serde(deserialize_with = "nullable")]
    pub worker: u64,
    /// Connections accepted by this worker.
    #[serde(deserialize_with = "nullable")]
    pub connections: u64,
    /// Connections open on this worker.
    #[serde(deserialize_with = "nullable")]
    pub connections_active: u64,
    /// Requests served by this worker.
    #[serde(deserialize_with = "nullable")]
    pub requests: u64,
}

impl Stats {
    /// Parses a `GET /stats` body.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Whether `country` is spiking: its own flag, or an entry in `spikes`.
    pub fn is_spiking(&self, row: &CountryStats) -> bool {
        row.spiking || self.spikes.iter().any(|s| s.country == row.country)
    }
}

/// What `levee top` knows: the admin API it polls, the last `/stats` it got, and whether the
/// last poll failed (the last good stats stay on screen, marked stale).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    /// The admin API address, as shown in the header.
    pub source: String,
    /// The last `/stats` answer that parsed.
    pub stats: Option<Stats>,
    /// Why the last poll failed; `None` when it succeeded.
    pub error: Option<String>,
}

/// How rows are ordered; `s` cycles through them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Current connection rate (`conn_rate_10s`), highest first.
    #[default]
    Rate,
    /// Spike ratio, highest first (ASNs, which have none, fall back to the rate).
    Ratio,
    /// 5xx share, highest first (ASNs: requests so far).
    Errors,
    /// Country code or ASN, ascending.
    Name,
}

impl SortKey {
    /// The next key in the cycle.
    pub fn next(self) -> Self {
        match self {
            Self::Rate => Self::Ratio,
            Self::Ratio => Self::Errors,
            Self::Errors => Self::Name,
            Self::Name => Self::Rate,
        }
    }

    /// Short name for the footer.
    pub fn label(self) -> &'static str {
        match self {
            Self::Rate => "rate",
            Self::Ratio => "ratio",
            Self::Errors => "5xx",
            Self::Name => "name",
        }
    }
}

/// Descending order of two floats (NaN last), for "highest first".
fn desc(a: f64, b: f64) -> Ordering {
    let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
    key(b).total_cmp(&key(a))
}

/// The countries in `key` order; ties go by rate, then code, so rows do not jump around.
pub fn sorted_countries(stats: &Stats, key: SortKey) -> Vec<&CountryStats> {
    let mut rows: Vec<&CountryStats> = stats.countries.iter().collect();
    rows.sort_by(|a, b| {
        let primary = match key {
            SortKey::Rate => desc(a.conn_rate_10s, b.conn_rate_10s),
            SortKey::Ratio => desc(a.spike_ratio, b.spike_ratio),
            SortKey::Errors => desc(a.share_5xx, b.share_5xx),
            SortKey::Name => a.country.cmp(&b.country),
        };
        primary
            .then_with(|| desc(a.conn_rate_10s, b.conn_rate_10s))
            .then_with(|| a.country.cmp(&b.country))
    });
    rows
}

/// The ASNs in `key` order, with the "other" row (ASN 0) always last.
pub fn sorted_asns(stats: &Stats, key: SortKey) -> Vec<&AsnStats> {
    let mut rows: Vec<&AsnStats> = stats.asns.iter().collect();
    rows.sort_by(|a, b| {
        let primary = match key {
            SortKey::Rate | SortKey::Ratio => desc(a.conn_rate_10s, b.conn_rate_10s),
            SortKey::Errors => b.requests.cmp(&a.requests),
            SortKey::Name => a.asn.cmp(&b.asn),
        };
        (a.asn == 0)
            .cmp(&(b.asn == 0))
            .then(primary)
            .then_with(|| desc(a.conn_rate_10s, b.conn_rate_10s))
            .then_with(|| a.asn.cmp(&b.asn))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn country(code: &str, rate: f64, ratio: f64, share_5xx: f64) -> CountryStats {
        CountryStats {
            country: code.into(),
            conn_rate_10s: rate,
            spike_ratio: ratio,
            share_5xx,
            ..CountryStats::default()
        }
    }

    fn codes(rows: &[&CountryStats]) -> Vec<String> {
        rows.iter().map(|r| r.country.clone()).collect()
    }

    fn sample() -> Stats {
        Stats {
            countries: vec![
                country("US", 8.0, 1.0, 0.01),
                country("BR", 30.0, 9.5, 0.0),
                country("DE", 8.0, 1.2, 0.0),
                country("JP", 2.0, 0.9, 0.2),
                country("ZZ", f64::NAN, 0.0, 0.0),
            ],
            ..Stats::default()
        }
    }

    #[test]
    fn countries_sort_by_rate_then_code() {
        let s = sample();
        assert_eq!(
            codes(&sorted_countries(&s, SortKey::Rate)),
            ["BR", "DE", "US", "JP", "ZZ"]
        );
    }

    #[test]
    fn countries_sort_by_ratio_errors_and_name() {
        let s = sample();
        assert_eq!(
            codes(&sorted_countries(&s, SortKey::Ratio)),
            ["BR", "DE", "US", "JP", "ZZ"]
        );
        assert_eq!(
            codes(&sorted_countries(&s, SortKey::Errors)),
            ["JP", "US", "BR", "DE", "ZZ"]
        );
        assert_eq!(
            codes(&sorted_countries(&s, SortKey::Name)),
            ["BR", "DE", "JP", "US", "ZZ"]
        );
    }

    #[test]
    fn sort_key_cycles_through_all() {
        let mut k = SortKey::default();
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(k.label());
            k = k.next();
        }
        assert_eq!(k, SortKey::Rate);
        assert_eq!(seen, ["rate", "ratio", "5xx", "name"]);
    }

    #[test]
    fn asns_keep_other_last() {
        let asn = |asn: u32, rate: f64, requests: u64| AsnStats {
            asn,
            conn_rate_10s: rate,
            requests,
            ..AsnStats::default()
        };
        let s = Stats {
            asns: vec![asn(0, 99.0, 1), asn(3320, 5.0, 50), asn(28573, 20.0, 10)],
            ..Stats::default()
        };
        let order = |k| sorted_asns(&s, k).iter().map(|a| a.asn).collect::<Vec<_>>();
        assert_eq!(order(SortKey::Rate), [28573, 3320, 0]);
        assert_eq!(order(SortKey::Ratio), [28573, 3320, 0]);
        assert_eq!(order(SortKey::Errors), [3320, 28573, 0]);
        assert_eq!(order(SortKey::Name), [3320, 28573, 0]);
    }

    #[test]
    fn missing_and_null_fields_are_tolerated() {
        let s = Stats::from_json(
            r#"{"config":{"generation":4},"totals":{"connections":3,"conn_rate_10s":null},
                "countries":[{"country":"FR","resumed_share":null,"history":null,
                              "baseline":null,"future_field":[1,2]}],
                "asns":null}"#,
        )
        .unwrap();
        assert_eq!(s.config.generation, 4);
        assert_eq!(s.totals.connections, 3);
        assert_eq!(s.countries[0].country, "FR");
        assert_eq!(s.countries[0].resumed_share, None);
        assert!(s.countries[0].history.is_empty() && s.asns.is_empty());
        // Today's /stats (no per-country data) parses too.
        let today = Stats::from_json(r#"{"config":{"generation":1},"workers":[]}"#).unwrap();
        assert!(today.countries.is_empty());
    }

    #[test]
    fn spiking_comes_from_the_flag_or_the_spikes_list() {
        let mut s = sample();
        s.spikes.push(Spike {
            country: "JP".into(),
            ..Spike::default()
        });
        s.countries[1].spiking = true;
        let spiking: Vec<_> = s
            .countries
            .iter()
            .filter(|c| s.is_spiking(c))
            .map(|c| c.country.as_str())
            .collect();
        assert_eq!(spiking, ["BR", "JP"]);
    }
}
