//! `[geo]` tests: the bundled defaults (and `asn_db = ""`), bad paths and wrong kinds of database refused on the
//! right key, both country record shapes, ASN records, relative paths, and reuse on reload.
//! Fixture databases are written with `mmdb-writer` over documentation ranges.
#![allow(clippy::unwrap_used)] // tests may panic

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{Value, Writer};

use crate::config::validate::test_support::{MINIMAL as BASE, context};
use crate::config::{BuildContext, ConfigError, ConfigErrors, Snapshot, load_str};
use crate::geo::db::{BUNDLED_ASN_DB_NAME, BUNDLED_COUNTRY_DB_NAME};
use crate::geo::{CountryShape, DbOrigin};

fn ctx(base_dir: &Path, previous: Option<Arc<Snapshot>>) -> BuildContext {
    BuildContext {
        previous,
        ..context(base_dir)
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The committed copy of the bundled database, as a file.
fn bundled_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/iptoasn-country.mmdb")
}

/// A config with a `[geo]` table holding `geo` (TOML lines).
fn with_geo(geo: &str) -> String {
    format!("{BASE}[geo]\n{geo}\n")
}

fn load(source: &str, dir: &Path) -> Snapshot {
    load_str(source, &ctx(dir, None)).unwrap_or_else(|e| panic!("refused:\n{e}"))
}

fn errors(source: &str, dir: &Path) -> Vec<ConfigError> {
    match load_str(source, &ctx(dir, None)) {
        Ok(_) => panic!("accepted:\n{source}"),
        Err(ConfigErrors(errs)) => errs,
    }
}

fn assert_rejects(source: &str, dir: &Path, key: &str, needles: &[&str]) {
    let errs = errors(source, dir);
    let found = errs
        .iter()
        .any(|e| e.key == key && needles.iter().all(|n| e.reason.contains(n)));
    assert!(
        found,
        "want `{key}: ..{needles:?}..`, got:\n{}",
        ConfigErrors(errs)
    );
}

/// Writes a database of `database_type` mapping each network to its record.
fn write_db(path: &Path, database_type: &str, records: &[(&str, Value)]) {
    let mut writer = Writer::new(database_type);
    for (net, value) in records {
        writer
            .insert_value(net.parse::<IpNet>().unwrap(), value.clone())
            .unwrap();
    }
    std::fs::write(path, writer.to_bytes().unwrap()).unwrap();
}

/// GeoLite2-Country shape: `country.iso_code`.
fn nested_country(code: &str) -> Value {
    let country = Value::map([
        ("iso_code", Value::from(code)),
        ("geoname_id", 1_u32.into()),
    ]);
    Value::map([
        ("country", country.clone()),
        ("registered_country", country),
    ])
}

fn flat_country(code: &str) -> Value {
    Value::map([("country_code", code)])
}

fn asn(number: u32, org: &str) -> Value {
    Value::map([
        ("autonomous_system_number", Value::from(number)),
        ("autonomous_system_organization", Value::from(org)),
    ])
}

#[test]
fn default_is_the_bundled_database_and_tags_a_public_address() {
    let snap = load(BASE, Path::new("."));
    let country = snap.geo.country_db();
    assert_eq!(
        country.origin(),
        &DbOrigin::Bundled(BUNDLED_COUNTRY_DB_NAME)
    );
    assert_eq!(country.shape(), CountryShape::Flat);
    let asn = snap.geo.asn_db().unwrap();
    assert_eq!(asn.origin(), &DbOrigin::Bundled(BUNDLED_ASN_DB_NAME));
    let info = snap.geo.lookup(ip("8.8.8.8"));
    assert_eq!(info.country_str(), Some("US"));
    assert_eq!((info.asn, info.asn_org), (Some(15_169), Some("Google LLC")));
    assert_eq!(snap.geo.lookup(ip("193.0.6.139")).country, Some(*b"NL"));
    assert_eq!(snap.geo.lookup(ip("127.0.0.1")).country, None);
    let snap = Arc::new(snap);
    let reloaded = load_str(BASE, &ctx(Path::new("."), Some(Arc::clone(&snap)))).unwrap();
    assert!(Arc::ptr_eq(
        snap.geo.country_db(),
        reloaded.geo.country_db()
    ));
    assert!(Arc::ptr_eq(
        snap.geo.asn_db().unwrap(),
        reloaded.geo.asn_db().unwrap()
    ));
}

#[test]
fn empty_asn_db_turns_the_bundled_one_off() {
    let off = with_geo("asn_db = \"\"");
    let snap = Arc::new(load(&off, Path::new(".")));
    assert!(snap.geo.asn_db().is_none());
    let info = snap.geo.lookup(ip("8.8.8.8"));
    assert_eq!((info.country_str(), info.asn), (Some("US"), None));
    // A reload back to the default opens the bundled one again.
    let on = load_str(BASE, &ctx(Path::new("."), Some(snap))).unwrap();
    assert_eq!(on.geo.lookup(ip("8.8.8.8")).asn, Some(15_169));
}

#[test]
fn missing_country_db_is_refused_on_its_key() {
    let src = with_geo("country_db = \"/nonexistent/levee-country.mmdb\"");
    assert_rejects(
        &src,
        Path::new("."),
        "geo.country_db",
        &[
            "cannot open \"/nonexistent/levee-country.mmdb\"",
            "No such file",
        ],
    );
}

#[test]
fn non_mmdb_file_is_refused_on_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("not.mmdb"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    let src = with_geo("country_db = \"not.mmdb\"");
    assert_rejects(
        &src,
        dir.path(),
        "geo.country_db",
        &["is not a MaxMind DB file"],
    );
    let src = with_geo("country_db = \".\"");
    assert_rejects(&src, dir.path(), "geo.country_db", &["is a directory"]);
    let src = with_geo("country_db = \"\"");
    assert_rejects(&src, dir.path(), "geo.country_db", &["must not be empty"]);
}

#[test]
fn country_database_as_asn_db_is_refused_on_its_key() {
    let src = with_geo(&format!("asn_db = {:?}", bundled_file()));
    assert_rejects(
        &src,
        Path::new("."),
        "geo.asn_db",
        &["is not an ASN database", "autonomous_system_number"],
    );
}

#[test]
fn asn_database_as_country_db_is_refused_on_its_key() {
    let dir = tempfile::tempdir().unwrap();
    write_db(
        &dir.path().join("asn.mmdb"),
        "GeoLite2-ASN",
        &[("198.51.100.0/24", asn(64_500, "Example Net"))],
    );
    let src = with_geo("country_db = \"asn.mmdb\"\nasn_db = \"missing.mmdb\"");
    let errs = errors(&src, dir.path());
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["geo.country_db", "geo.asn_db"],
        "{}",
        ConfigErrors(errs.clone())
    );
    assert!(
        errs[0].reason.contains("is not a country database"),
        "{}",
        errs[0]
    );
    assert!(errs[0].reason.contains("GeoLite2-ASN"), "{}", errs[0]);
}

#[test]
fn unknown_geo_key_is_refused() {
    let errs = errors(&with_geo("city_db = \"x.mmdb\""), Path::new("."));
    assert_eq!(errs[0].key, "geo.city_db", "{}", ConfigErrors(errs.clone()));
}

#[test]
fn both_country_shapes_and_asn_records_decode() {
    let dir = tempfile::tempdir().unwrap();
    write_db(
        &dir.path().join("nested.mmdb"),
        "GeoLite2-Country",
        &[
            ("192.0.2.0/24", nested_country("DE")),
            ("2001:db8::/32", nested_country("fr")),
        ],
    );
    write_db(
        &dir.path().join("flat.mmdb"),
        "ip-location-db country",
        &[("203.0.113.0/24", flat_country("JP"))],
    );
    write_db(
        &dir.path().join("asn.mmdb"),
        "GeoLite2-ASN",
        &[("192.0.2.0/25", asn(64_496, "Documentation One"))],
    );

    let snap = load(
        &with_geo("country_db = \"nested.mmdb\"\nasn_db = \"asn.mmdb\""),
        dir.path(),
    );
    assert_eq!(snap.geo.country_db().shape(), CountryShape::Nested);
    let info = snap.geo.lookup(ip("192.0.2.10"));
    assert_eq!(info.country_str(), Some("DE"));
    assert_eq!(info.asn, Some(64_496));
    assert_eq!(info.asn_org, Some("Documentation One"));
    let info = snap.geo.lookup(ip("192.0.2.200"));
    assert_eq!(
        (info.country, info.asn, info.asn_org),
        (Some(*b"DE"), None, None)
    );
    // Lower case in the file is upper case in the tag.
    assert_eq!(snap.geo.lookup(ip("2001:db8::1")).country, Some(*b"FR"));
    assert_eq!(snap.geo.lookup(ip("198.51.100.1")), Default::default());

    let snap = load(&with_geo("country_db = \"flat.mmdb\""), dir.path());
    assert_eq!(snap.geo.country_db().shape(), CountryShape::Flat);
    assert_eq!(snap.geo.lookup(ip("203.0.113.9")).country_str(), Some("JP"));
    assert_eq!(
        snap.geo.lookup(ip("::ffff:203.0.113.9")).country_str(),
        Some("JP")
    );
    assert_eq!(snap.geo.lookup(ip("127.0.0.1")).country, None);
}

#[test]
fn reload_shares_an_unchanged_database_and_rereads_a_replaced_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("country.mmdb");
    write_db(
        &path,
        "GeoLite2-Country",
        &[("192.0.2.0/24", nested_country("DE"))],
    );
    let src = with_geo("country_db = \"country.mmdb\"");
    let first = Arc::new(load(&src, dir.path()));

    let second = load_str(&src, &ctx(dir.path(), Some(Arc::clone(&first)))).unwrap();
    assert!(Arc::ptr_eq(first.geo.country_db(), second.geo.country_db()));

    // Replaced the way updaters do it: a new file renamed over the old one.
    let staged = dir.path().join("country.mmdb.new");
    write_db(
        &staged,
        "GeoLite2-Country",
        &[("192.0.2.0/24", nested_country("IT"))],
    );
    std::fs::rename(&staged, &path).unwrap();
    let third = load_str(&src, &ctx(dir.path(), Some(Arc::clone(&first)))).unwrap();
    assert!(!Arc::ptr_eq(first.geo.country_db(), third.geo.country_db()));
    assert_eq!(third.geo.lookup(ip("192.0.2.1")).country, Some(*b"IT"));
    assert_eq!(first.geo.lookup(ip("192.0.2.1")).country, Some(*b"DE"));

    // Removed: the reload is refused, the running snapshot keeps its reader.
    std::fs::remove_file(&path).unwrap();
    match load_str(&src, &ctx(dir.path(), Some(Arc::clone(&first)))) {
        Ok(_) => panic!("accepted a removed database"),
        Err(ConfigErrors(errs)) => assert_eq!(errs[0].key, "geo.country_db"),
    }
}

#[test]
fn lookup_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_db(
        &dir.path().join("asn.mmdb"),
        "GeoLite2-ASN",
        &[("8.8.8.0/24", asn(15_169, "Example Resolver Org"))],
    );
    let snap = load(&with_geo("asn_db = \"asn.mmdb\""), dir.path());
    let addrs = [
        ip("8.8.8.8"),
        ip("::ffff:8.8.8.8"),
        ip("127.0.0.1"),
        ip("2001:db8::1"),
    ];
    let mut tagged = 0;
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            for &addr in &addrs {
                let info = std::hint::black_box(snap.geo.lookup(addr));
                tagged += usize::from(info.asn_org.is_some() && info.country.is_some());
            }
        }
    });
    assert_eq!(
        tagged, 200,
        "8.8.8.8 and its mapped form carry a country and an ASN org"
    );
    assert_eq!(info.count_total, 0, "{info:?}");
}

#[test]
fn tagging_settings_default_and_configured() {
    let snap = load(BASE, Path::new("."));
    let s = &snap.geo_settings;
    assert!(s.enabled);
    assert_eq!(s.country_header, "x-client-country");
    assert_eq!(s.asn_header, "x-client-asn");
    assert_eq!(snap.client_tag(ip("8.8.8.8")).country_code(), "US");

    let src = with_geo(
        "enabled = false\ncountry_header = \"CF-IPCountry\"\nasn_header = \"X-Client-AS-Number\"",
    );
    let snap = load(&src, Path::new("."));
    let s = &snap.geo_settings;
    assert!(!s.enabled);
    assert_eq!(s.country_header, "cf-ipcountry");
    assert_eq!(s.asn_header, "x-client-as-number");
    // Disabled: the databases are still there, but nobody is looked up.
    assert_eq!(snap.geo.lookup(ip("8.8.8.8")).country_str(), Some("US"));
    assert_eq!(snap.client_tag(ip("8.8.8.8")).country_code(), "ZZ");
}

#[test]
fn bad_tag_header_names_are_refused_on_their_key() {
    let dir = Path::new(".");
    let src = with_geo("country_header = \"X Client Country\"");
    assert_rejects(&src, dir, "geo.country_header", &["invalid header name"]);
    let src = with_geo("asn_header = \"\"");
    assert_rejects(&src, dir, "geo.asn_header", &["invalid header name"]);
    let src = with_geo("country_header = \"X-Forwarded-For\"");
    assert_rejects(&src, dir, "geo.country_header", &["levee sets or removes"]);
    let src = with_geo("asn_header = \"host\"");
    assert_rejects(&src, dir, "geo.asn_header", &["levee sets or removes"]);
    let src = with_geo("asn_header = \"X-CLIENT-COUNTRY\"");
    assert_rejects(
        &src,
        dir,
        "geo.asn_header",
        &["must differ from country_header"],
    );
    let src = with_geo("enabled = \"yes\"");
    assert_rejects(&src, dir, "geo.enabled", &[]);
}

#[test]
fn reload_keeps_the_built_header_names() {
    let src = with_geo("country_header = \"X-Geo-Country\"");
    let first = Arc::new(load(&src, Path::new(".")));
    let second = load_str(&src, &ctx(Path::new("."), Some(Arc::clone(&first)))).unwrap();
    let (a, b) = (
        first.geo_settings.country_header.as_str(),
        second.geo_settings.country_header.as_str(),
    );
    assert_eq!(a, "x-geo-country");
    assert!(std::ptr::eq(a, b), "the name is reused, not built again");
}
