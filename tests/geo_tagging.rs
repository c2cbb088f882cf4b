//! GeoIP tagging end to end: the upstream sees the connection's `X-Client-Country` /
//! `X-Client-ASN` (never the client's spoofed copies), from either country record shape,
//! with configurable header names; `[geo] enabled = false` tags `ZZ` with no ASN; the access
//! log carries `country` and `asn`; `levee geo lookup` (the real binary) prints what levee
//! would tag, from the bundled databases (country and ASN) or a config's `[geo]`.
//!
//! Fixture databases are written here with `mmdb-writer` over the documentation ranges
//! (192.0.2.0/24 BR AS64500, 198.51.100.0/24 DE AS64501, 203.0.113.0/24 JP, 2001:db8::/32
//! US). Test clients connect from 127.0.0.1, so the fixtures also map 127.0.0.0/8 to a
//! country (BR with AS64500 in the GeoLite2-shaped one, DE in the flat one): it is only a
//! test database. Clients presenting documentation addresses over PROXY protocol are
//! covered by the PROXY-protocol tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::backend::Seen;
use common::client::Proto;
use common::mmdb::{asn_record, flat_country, nested_country, write_db};
use common::*;
use mmdb_writer::Value;
use mmdb_writer::ipnet::IpNet;

/// `(network, record)` pairs for `write_db`, networks as text.
fn records<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Vec<(IpNet, Value)> {
    pairs
        .into_iter()
        .map(|(net, value)| (net.parse::<IpNet>().unwrap(), value))
        .collect()
}

/// The fixture databases in `dir`: `nested.mmdb`, `flat.mmdb` and `asn.mmdb`.
fn write_fixtures(dir: &Path) {
    let ranges = [
        ("192.0.2.0/24", "BR"),
        ("198.51.100.0/24", "DE"),
        ("203.0.113.0/24", "JP"),
        ("2001:db8::/32", "US"),
    ];
    let mut shaped: Vec<(&str, Value)> = ranges
        .iter()
        .map(|(n, c)| (*n, nested_country(c)))
        .collect();
    shaped.push(("127.0.0.0/8", nested_country("BR")));
    write_db(
        &dir.join("nested.mmdb"),
        "GeoLite2-Country",
        records(shaped),
    );
    let mut shaped: Vec<(&str, Value)> =
        ranges.iter().map(|(n, c)| (*n, flat_country(c))).collect();
    shaped.push(("127.0.0.0/8", flat_country("DE")));
    write_db(
        &dir.join("flat.mmdb"),
        "ip-location-db country",
        records(shaped),
    );
    write_db(
        &dir.join("asn.mmdb"),
        "GeoLite2-ASN",
        records([
            ("192.0.2.0/24", asn_record(64_500, "Example BR")),
            ("198.51.100.0/24", asn_record(64_501, "Example DE")),
            ("127.0.0.0/8", asn_record(64_500, "Example BR")),
        ]),
    );
}

/// A plain listener "plain" and a TLS listener "tls" (generated certificate), both to pool
/// "web" on `backend`, with `[geo]` holding `geo`.
fn config(backend: &Backend, geo: &str, access_log: bool) -> String {
    let log = format!(
        "access_log = {access_log}\naccess_log_path = \"{ACCESS_LOG_FILE}\"\nlog_format = \"json\""
    );
    let server = server_toml(2).replace("access_log = false", &log);
    server
        + &listener_toml("plain", "web", None, "", "")
        + &listener_toml("tls", "web", Some(&[]), "", "")
        + &pool_toml("web", &[backend.addr], "")
        + &format!("[geo]\n{geo}\n")
}

/// Starts levee in a directory holding the fixture databases.
fn start(backend: &Backend, geo: &str, access_log: bool) -> Levee {
    let dir = tempfile::tempdir().unwrap();
    write_fixtures(dir.path());
    start_levee_in(dir, &config(backend, geo, access_log))
}

/// Connections of each kind levee serves: plain HTTP/1.1, plain h2 (prior knowledge), TLS
/// with HTTP/1.1 and TLS with h2.
async fn connections(levee: &Levee) -> Vec<Conn> {
    let insecure = client_config_insecure;
    vec![
        Conn::plain(levee.addr("plain"), Proto::H1).await,
        Conn::plain(levee.addr("plain"), Proto::H2).await,
        Conn::tls(
            levee.addr("tls"),
            insecure(TlsOpts::default().h1()),
            "localhost",
            Proto::H1,
        )
        .await,
        Conn::tls(
            levee.addr("tls"),
            insecure(TlsOpts::default().h2()),
            "localhost",
            Proto::H2,
        )
        .await,
    ]
}

/// Sends a request carrying spoofed copies of both tag headers (under the default names and
/// under `extra`, as mixed-case repeats) and returns what the backend saw.
async fn spoofed_get(conn: &mut Conn, backend: &Backend, extra: &[&str]) -> Seen {
    let mut req = conn
        .request("GET", "/tagged")
        .header("x-client-country", "US")
        .header("X-Client-Country", "CA")
        .header("x-client-asn", "15169");
    for name in extra {
        req = req.header(*name, "spoofed");
    }
    let reply = conn.send(req.body(empty()).unwrap()).await;
    assert_eq!(reply.status, 200);
    backend.last()
}

/// Every value of header `name` the backend saw.
fn values(seen: &Seen, name: &str) -> Vec<String> {
    seen.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sees_the_connection_tag_not_the_clients_copy() {
    let backend = Backend::start("b");
    let levee = start(
        &backend,
        "country_db = \"nested.mmdb\"\nasn_db = \"asn.mmdb\"",
        false,
    );
    for (i, mut conn) in connections(&levee).await.into_iter().enumerate() {
        // Twice on one connection: the tag is the connection's, every request carries it.
        for _ in 0..2 {
            let seen = spoofed_get(&mut conn, &backend, &[]).await;
            assert_eq!(values(&seen, "x-client-country"), ["BR"], "conn {i}");
            assert_eq!(values(&seen, "x-client-asn"), ["64500"], "conn {i}");
        }
    }
    assert_eq!(backend.requests(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flat_shape_without_asn_database_and_custom_header_names() {
    let backend = Backend::start("b");
    let geo = "country_db = \"flat.mmdb\"\nasn_db = \"\"\n\
               country_header = \"CF-IPCountry\"\nasn_header = \"X-Geo-ASN\"";
    let levee = start(&backend, geo, false);
    for (i, mut conn) in connections(&levee).await.into_iter().enumerate() {
        let seen = spoofed_get(&mut conn, &backend, &["cf-ipcountry", "x-geo-asn"]).await;
        assert_eq!(values(&seen, "cf-ipcountry"), ["DE"], "conn {i}");
        // No ASN database: no ASN header, and the client's copy is gone.
        assert!(values(&seen, "x-geo-asn").is_empty(), "conn {i}");
        // The default names are not levee's any more: passed through as sent.
        assert_eq!(values(&seen, "x-client-country"), ["US", "CA"], "conn {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geo_disabled_tags_zz_and_sends_no_asn() {
    let backend = Backend::start("b");
    let geo = "enabled = false\ncountry_db = \"nested.mmdb\"\nasn_db = \"asn.mmdb\"";
    let levee = start(&backend, geo, false);
    for (i, mut conn) in connections(&levee).await.into_iter().enumerate() {
        let seen = spoofed_get(&mut conn, &backend, &[]).await;
        assert_eq!(values(&seen, "x-client-country"), ["ZZ"], "conn {i}");
        assert!(values(&seen, "x-client-asn").is_empty(), "conn {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_database_tags_loopback_zz() {
    let backend = Backend::start("b");
    let levee = start(&backend, "", false);
    let mut conn = Conn::plain(levee.addr("plain"), Proto::H1).await;
    let seen = spoofed_get(&mut conn, &backend, &[]).await;
    assert_eq!(values(&seen, "x-client-country"), ["ZZ"]);
    assert!(values(&seen, "x-client-asn").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_country_and_asn() {
    let backend = Backend::start("b");
    let levee = start(
        &backend,
        "country_db = \"nested.mmdb\"\nasn_db = \"asn.mmdb\"",
        true,
    );
    let mut conn = Conn::plain(levee.addr("plain"), Proto::H1).await;
    let path = "/logged-with-geo";
    assert_eq!(conn.get(path).await.status, 200);
    // The line is written when the response body ends, and reaches the file within the
    // worker's ship delay.
    let line = levee.access_log_line(path, Duration::from_secs(5)).await;
    let fields: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(fields["target"], "levee::access", "{line}");
    assert_eq!(fields["country"], "BR", "{line}");
    assert_eq!(fields["asn"], 64_500, "{line}");
    assert_eq!(fields["client"], "127.0.0.1", "{line}");
}

/// A config for `levee geo lookup --config` in a fresh directory holding the fixtures.
fn lookup_config(geo: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write_fixtures(dir.path());
    let toml = "[admin]\nlisten = \"off\"\n\n".to_string()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &["127.0.0.1:9".parse().unwrap()], "")
        + &format!("[geo]\n{geo}\n");
    let path = write_file(dir.path(), "levee.toml", &toml);
    (dir, path)
}

fn lookup(args: &[&str]) -> String {
    let mut all = vec!["geo", "lookup"];
    all.extend_from_slice(args);
    let out = run_levee(&all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "levee {all:?}: {}\n{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

fn lookup_json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = lookup(&all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn geo_lookup_cli_on_the_bundled_database() {
    let text = lookup(&["8.8.8.8"]);
    assert!(text.contains("country:    US (index "), "{text}");
    assert!(text.contains("asn:        15169\n"), "{text}");
    assert!(text.contains("org:        Google LLC\n"), "{text}");
    assert!(text.contains("bundled iptoasn-country database"), "{text}");
    assert!(
        text.contains("bundled ip-location-db asn database"),
        "{text}"
    );
    let j = lookup_json(&["8.8.8.8"]);
    assert_eq!(j["country"], "US");
    assert_eq!(j["country_db"]["bundled"], true);
    assert_eq!(j["asn_db"]["bundled"], true);
    let j = lookup_json(&["2001:4860:4860::8888"]);
    assert_eq!(j["country"], "US");
    assert_eq!(j["asn"], 15_169);
    let j = lookup_json(&["127.0.0.1"]);
    assert_eq!(
        (j["country"].as_str(), j["country_index"].as_u64()),
        (Some("ZZ"), Some(0))
    );
    assert!(j["asn"].is_null(), "{j}");
    assert!(
        j["asn_source"]
            .as_str()
            .unwrap()
            .starts_with("no record in")
    );

    let out = run_levee(&["geo", "lookup", "not-an-ip"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
}

/// The bundled ASN data with no config: Google's and Cloudflare's resolvers and a Brazilian
/// address (UOL's 200.147.0.0/16), as `levee geo lookup` prints them and as the upstream
/// header would carry them.
#[test]
fn geo_lookup_cli_shows_the_bundled_asn_and_organisation() {
    let expect = [
        ("8.8.8.8", 15_169_u64, "Google LLC"),
        ("1.1.1.1", 13_335, "Cloudflare, Inc."),
        ("200.147.0.1", 7_162, "Universo Online S.A."),
    ];
    for (ip, asn, org) in expect {
        let text = lookup(&[ip]);
        assert!(text.contains(&format!("asn:        {asn}\n")), "{text}");
        assert!(text.contains(&format!("org:        {org}\n")), "{text}");
        assert!(text.contains(&format!("x-client-asn: {asn}\n")), "{text}");
        let j = lookup_json(&[ip]);
        assert_eq!(
            (j["asn"].as_u64(), j["asn_org"].as_str()),
            (Some(asn), Some(org))
        );
        let source = j["asn_source"].as_str().unwrap();
        assert_eq!(source, "bundled ip-location-db asn database", "{j}");
    }
    let j = lookup_json(&["200.147.0.1"]);
    assert_eq!(j["country"], "BR", "{j}");
    let j = lookup_json(&["2606:4700:4700::1111"]);
    assert_eq!(j["asn"], 13_335, "{j}");
}

#[test]
fn geo_lookup_cli_with_a_config_of_either_shape() {
    let (dir, nested) = lookup_config("country_db = \"nested.mmdb\"\nasn_db = \"asn.mmdb\"");
    let cfg = nested.to_str().unwrap();
    let text = lookup(&["192.0.2.1", "--config", cfg]);
    assert!(text.contains("country:    BR (index "), "{text}");
    assert!(text.contains("asn:        64500"), "{text}");
    assert!(text.contains("org:        Example BR"), "{text}");
    assert!(text.contains("nested.mmdb"), "{text}");
    assert!(text.contains("x-client-asn: 64500"), "{text}");

    let expect = [
        ("192.0.2.1", "BR", Some(64_500_u64), Some("Example BR")),
        ("198.51.100.20", "DE", Some(64_501), Some("Example DE")),
        ("203.0.113.5", "JP", None, None),
        ("2001:db8::7", "US", None, None),
        ("10.0.0.1", "ZZ", None, None),
    ];
    for (ip, country, asn, org) in expect {
        let j = lookup_json(&[ip, "--config", cfg]);
        assert_eq!(j["country"], country, "{ip}: {j}");
        assert_eq!(j["asn"].as_u64(), asn, "{ip}: {j}");
        assert_eq!(j["asn_org"].as_str(), org, "{ip}: {j}");
        let path = j["country_db"]["path"].as_str().unwrap();
        assert!(path.ends_with("nested.mmdb"), "{j}");
        assert!(j["asn_db"]["path"].as_str().unwrap().ends_with("asn.mmdb"));
    }

    let flat_cfg = write_file(
        dir.path(),
        "flat.toml",
        &std::fs::read_to_string(&nested)
            .unwrap()
            .replace("nested.mmdb", "flat.mmdb")
            .replace(
                "asn_db = \"asn.mmdb\"\n",
                "asn_db = \"\"\ncountry_header = \"X-Geo\"\n",
            ),
    );
    let j = lookup_json(&["203.0.113.5", "--config", flat_cfg.to_str().unwrap()]);
    assert_eq!(j["country"], "JP", "{j}");
    assert!(j["asn_db"].is_null(), "{j}");
    assert_eq!(j["headers"]["x-geo"], "JP", "{j}");

    let (_off_dir, off) = lookup_config("enabled = false\ncountry_db = \"nested.mmdb\"");
    let j = lookup_json(&["192.0.2.1", "--config", off.to_str().unwrap()]);
    assert_eq!(
        (j["country"].as_str(), j["enabled"].as_bool()),
        (Some("ZZ"), Some(false))
    );
    assert_eq!(j["country_in_db"], "BR", "{j}");
}
