//! What a client is tagged with ([`ClientTag`]): its country slot and ASN, and the header
//! values that carry them upstream, built once per connection by [`tag`].
//!
//! A connection is looked up once, when it is accepted (`proxy::conn`), and every request on
//! it reuses the tag: the country value is a static string (no allocation), the ASN value is
//! formatted once. The `[geo]` settings a snapshot carries ([`GeoSettings`]: on/off and the
//! header names) live here too, with their defaults.

use std::net::IpAddr;

use http::{HeaderName, HeaderValue};

use super::country::{self, UNKNOWN};
use super::db::GeoDb;
use crate::labels::CountryIdx;

/// Default name of the upstream request header carrying the client's country.
pub const DEFAULT_COUNTRY_HEADER: &str = "x-client-country";
/// Default name of the upstream request header carrying the client's ASN.
pub const DEFAULT_ASN_HEADER: &str = "x-client-asn";

/// What a client is tagged with, for stats, the access log and the upstream headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTag {
    /// Country slot (`country::UNKNOWN`, i.e. `ZZ`, when not known).
    pub country: CountryIdx,
    /// Autonomous system number, when an ASN database is configured and has the address.
    pub asn: Option<u32>,
    /// Value of the country header: the two-letter code, `ZZ` when unknown (a static string).
    pub country_header: HeaderValue,
    /// Value of the ASN header (the number in decimal); `None` when the ASN is not known, and
    /// then the header is not sent.
    pub asn_header: Option<HeaderValue>,
}

impl ClientTag {
    /// The tag of a client nothing is known about: `ZZ`, no ASN. Allocates nothing.
    pub fn unknown() -> Self {
        Self {
            country: UNKNOWN,
            asn: None,
            country_header: HeaderValue::from_static(country::code(UNKNOWN)),
            asn_header: None,
        }
    }

    /// The country code (`"BR"`, `"ZZ"` when unknown).
    pub fn country_code(&self) -> &'static str {
        country::code(self.country)
    }
}

impl Default for ClientTag {
    fn default() -> Self {
        Self::unknown()
    }
}

/// Looks `ip` up in `geo` and builds its tag. One lookup (allocation-free) and, when the ASN is
/// known, one small allocation for its header value.
///
/// This ignores `[geo] enabled`; [`GeoSettings::tag`] honours it.
pub fn tag(geo: &GeoDb, ip: IpAddr) -> ClientTag {
    let info = geo.lookup(ip);
    let idx = info.country.map_or(UNKNOWN, country::index);
    ClientTag {
        country: idx,
        asn: info.asn,
        // A code the country table does not list (a database's private use of `XX`) is `ZZ`
        // in stats, and the header says the same.
        country_header: HeaderValue::from_static(country::code(idx)),
        asn_header: info.asn.map(asn_value),
    }
}

/// The ASN header value. The value is cloned into every request on the connection; cloning a
/// freshly built value once here moves its bytes to their shared form, so the per-request
/// clones are a reference count on this connection's value and never allocate.
fn asn_value(asn: u32) -> HeaderValue {
    let built = HeaderValue::from(asn);
    let shared = built.clone();
    drop(built);
    shared
}

/// `[geo]` settings that shape tagging: whether lookups happen and the upstream header names.
/// The header names are prebuilt once per snapshot.
#[derive(Debug, Clone)]
pub struct GeoSettings {
    /// `[geo] enabled`: when false, nothing is looked up and every client is `ZZ` with no ASN
    /// (the client-sent copies of the headers are still removed).
    pub enabled: bool,
    /// `[geo] country_header` (default `X-Client-Country`).
    pub country_header: HeaderName,
    /// `[geo] asn_header` (default `X-Client-ASN`).
    pub asn_header: HeaderName,
}

impl GeoSettings {
    /// The tag of `ip`: looked up in `geo` when enabled, else [`ClientTag::unknown`].
    pub fn tag(&self, geo: &GeoDb, ip: IpAddr) -> ClientTag {
        if self.enabled {
            tag(geo, ip)
        } else {
            ClientTag::unknown()
        }
    }
}

impl Default for GeoSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            country_header: HeaderName::from_static(DEFAULT_COUNTRY_HEADER),
            asn_header: HeaderName::from_static(DEFAULT_ASN_HEADER),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use mmdb_writer::ipnet::IpNet;
    use mmdb_writer::{Value, Writer};

    use super::*;
    use crate::geo::{AsnDb, CountryDb};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn write_db(path: &std::path::Path, kind: &str, records: &[(&str, Value)]) {
        let mut writer = Writer::new(kind);
        for (net, value) in records {
            writer
                .insert_value(net.parse::<IpNet>().unwrap(), value.clone())
                .unwrap();
        }
        std::fs::write(path, writer.to_bytes().unwrap()).unwrap();
    }

    /// A flat country database and an ASN database over documentation ranges.
    fn fixture() -> (tempfile::TempDir, GeoDb) {
        let dir = tempfile::tempdir().unwrap();
        let country = dir.path().join("country.mmdb");
        let asn = dir.path().join("asn.mmdb");
        write_db(
            &country,
            "ip-location-db country",
            &[
                ("192.0.2.0/24", Value::map([("country_code", "BR")])),
                ("198.51.100.0/24", Value::map([("country_code", "XX")])),
            ],
        );
        let asn_record = Value::map([
            ("autonomous_system_number", Value::from(64_500_u32)),
            ("autonomous_system_organization", Value::from("Example BR")),
        ]);
        write_db(&asn, "GeoLite2-ASN", &[("192.0.2.0/25", asn_record)]);
        let geo = GeoDb::new(
            CountryDb::open(&country, None).unwrap(),
            Some(AsnDb::open(&asn, None).unwrap()),
        );
        (dir, geo)
    }

    #[test]
    fn tags_country_and_asn() {
        let (_dir, geo) = fixture();
        let t = tag(&geo, ip("192.0.2.1"));
        assert_eq!(t.country, country::index(*b"BR"));
        assert_eq!(t.country_code(), "BR");
        assert_eq!(t.asn, Some(64_500));
        assert_eq!(t.country_header, "BR");
        assert_eq!(t.asn_header.as_ref().unwrap(), "64500");
        // Mapped IPv4 is IPv4.
        assert_eq!(tag(&geo, ip("::ffff:192.0.2.1")), t);
    }

    #[test]
    fn unknown_parts_are_zz_and_no_asn() {
        let (_dir, geo) = fixture();
        // Country known, ASN not.
        let t = tag(&geo, ip("192.0.2.200"));
        assert_eq!((t.country_code(), t.asn, t.asn_header), ("BR", None, None));
        // Not in the database at all.
        assert_eq!(tag(&geo, ip("127.0.0.1")), ClientTag::unknown());
        assert_eq!(tag(&geo, ip("2001:db8::1")), ClientTag::unknown());
        // A code the country table does not know is ZZ, in stats and in the header alike.
        let t = tag(&geo, ip("198.51.100.7"));
        assert_eq!(t.country, UNKNOWN);
        assert_eq!(t.country_header, "ZZ");
    }

    #[test]
    fn bundled_database_tags_a_public_address() {
        let geo = GeoDb::bundled().unwrap();
        let t = tag(&geo, ip("8.8.8.8"));
        assert_eq!(t.country_code(), "US");
        assert_eq!(t.country_header, "US");
        assert_eq!(t.asn, Some(15_169));
        assert_eq!(t.asn_header.as_ref().unwrap(), "15169");
    }

    #[test]
    fn disabled_settings_tag_everything_unknown() {
        let (_dir, geo) = fixture();
        let on = GeoSettings::default();
        assert!(on.enabled);
        assert_eq!(on.country_header, "x-client-country");
        assert_eq!(on.asn_header, "x-client-asn");
        assert_eq!(on.tag(&geo, ip("192.0.2.1")).country_code(), "BR");
        let off = GeoSettings {
            enabled: false,
            ..GeoSettings::default()
        };
        assert_eq!(off.tag(&geo, ip("192.0.2.1")), ClientTag::unknown());
    }

    #[test]
    fn cloning_a_tag_allocates_nothing() {
        let (_dir, geo) = fixture();
        let t = tag(&geo, ip("192.0.2.1"));
        let unknown = ClientTag::unknown();
        let info = allocation_counter::measure(|| {
            for _ in 0..100 {
                std::hint::black_box(t.country_header.clone());
                std::hint::black_box(t.asn_header.clone());
                std::hint::black_box(ClientTag::unknown());
                std::hint::black_box(unknown.clone());
            }
        });
        assert_eq!(info.count_total, 0, "{info:?}");
    }
}
