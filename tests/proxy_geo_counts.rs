//! PROXY v1 and v2 connections claiming addresses in each documentation range are counted
//! under that range's country and ASN, exactly (issue 5, test 1), with fixture GeoIP
//! databases of both record shapes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use common::mmdb::{asn_record, flat_country, nested_country, write_db};
use common::stats::{stats_doc, wait_stats};
use common::*;
use levee::net::proxy_protocol::{encode_v1, encode_v2};

use mmdb_writer::ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// (range, sample client, country, ASN, organisation, PROXY v1 connections, v2 connections).
const RANGES: [(&str, &str, &str, u32, &str, u64, u64); 4] = [
    (
        "192.0.2.0/24",
        "192.0.2.10",
        "BR",
        64_500,
        "Example BR",
        3,
        4,
    ),
    (
        "198.51.100.0/24",
        "198.51.100.7",
        "DE",
        64_501,
        "Example DE",
        2,
        1,
    ),
    (
        "203.0.113.0/24",
        "203.0.113.9",
        "JP",
        64_502,
        "Example JP",
        1,
        2,
    ),
    (
        "2001:db8::/32",
        "2001:db8::5",
        "US",
        64_503,
        "Example US",
        2,
        2,
    ),
];

/// `country_db` in the GeoLite2 shape (`country.iso_code`) when `nested`, else the flat
/// ip-location-db shape; and a GeoLite2-ASN `asn_db`.
fn write_fixtures(dir: &Path, nested: bool) {
    let countries: Vec<_> = RANGES
        .iter()
        .map(|&(range, _, code, ..)| {
            let record = if nested {
                nested_country(code)
            } else {
                flat_country(code)
            };
            (range.parse::<IpNet>().unwrap(), record)
        })
        .collect();
    write_db(&dir.join("countries.mmdb"), "levee-test-country", countries);
    let asns: Vec<_> = RANGES
        .iter()
        .map(|&(range, _, _, asn, org, ..)| (range.parse::<IpNet>().unwrap(), asn_record(asn, org)))
        .collect();
    write_db(&dir.join("asns.mmdb"), "GeoLite2-ASN", asns);
}

fn start(backend: SocketAddr, nested: bool) -> Levee {
    let dir = tempfile::tempdir().unwrap();
    write_fixtures(dir.path(), nested);
    let toml = format!(
        "[server]\nworkers = 2\nshutdown_timeout = \"2s\"\naccess_log = false\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [geo]\ncountry_db = \"countries.mmdb\"\nasn_db = \"asns.mmdb\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"web\"\n\
         proxy_protocol = \"any\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n\
         [pools.web]\n[[pools.web.backends]]\naddress = \"{backend}\"\n"
    );
    start_levee_in(dir, &toml)
}

/// One connection: the PROXY header naming `client`, then a GET; returns the status line.
async fn proxied_get(levee_addr: SocketAddr, client: IpAddr, v2: bool) -> String {
    let source = SocketAddr::new(client, 40_000);
    let destination = if client.is_ipv4() {
        SocketAddr::from(([192, 0, 2, 1], 443))
    } else {
        SocketAddr::new("2001:db8::1".parse().unwrap(), 443)
    };
    let mut bytes = if v2 {
        encode_v2(source, destination)
    } else {
        encode_v1(source, destination).into_bytes()
    };
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: levee.test\r\nConnection: close\r\n\r\n");
    let mut tcp = TcpStream::connect(levee_addr).await.unwrap();
    tcp.write_all(&bytes).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(SLACK * 5, tcp.read_to_end(&mut reply))
        .await
        .expect("levee did not answer")
        .unwrap();
    String::from_utf8_lossy(&reply)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

async fn counts_every_range_exactly(nested: bool) {
    let backend = Backend::start("b");
    let levee = start(backend.addr, nested);
    let web = levee.addr("web");
    let mut total = 0;
    for &(_, client, _, _, _, v1, v2) in &RANGES {
        let client: IpAddr = client.parse().unwrap();
        for i in 0..v1 + v2 {
            let status = proxied_get(web, client, i >= v1).await;
            assert_eq!(status, "HTTP/1.1 200 OK", "{client}");
        }
        total += v1 + v2;
    }
    // Every client the backend saw came from its claimed address.
    assert_eq!(backend.requests(), total);
    let doc = wait_stats(&levee, None, |d| {
        d["asns"].as_array().map_or(0, |a| {
            a.iter()
                .map(|r| r["requests"].as_u64().unwrap_or(0))
                .sum::<u64>()
        }) == total
    })
    .await;
    for &(_, client, code, asn, org, v1, v2) in &RANGES {
        let row = doc["countries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["country"] == code)
            .unwrap_or_else(|| panic!("no row for {code} ({client}): {doc:#}"));
        assert_eq!(row["connections"], v1 + v2, "{code}: {row:#}");
        assert_eq!(row["requests"]["2xx"], v1 + v2, "{code}: {row:#}");
        let asn_row = doc["asns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["asn"] == asn)
            .unwrap_or_else(|| panic!("no row for AS{asn}: {doc:#}"));
        assert_eq!(asn_row["connections"], v1 + v2, "AS{asn}");
        assert_eq!(asn_row["requests"], v1 + v2, "AS{asn}");
        assert_eq!(asn_row["org"], org);
        assert_eq!(asn_row["country"], code);
    }
    // Nothing landed in the unknown country: the transport peer (127.0.0.1) was never used.
    let stats = stats_doc(&levee, None).await;
    let zz = stats["countries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["country"] == "ZZ");
    assert!(
        zz.is_none_or(|z| z["connections"] == 0),
        "connections counted as ZZ: {zz:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v1_and_v2_clients_count_under_their_country_and_asn_nested_shape() {
    counts_every_range_exactly(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v1_and_v2_clients_count_under_their_country_and_asn_flat_shape() {
    counts_every_range_exactly(false).await;
}
