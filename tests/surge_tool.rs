//! `levee bench surge` end to end, through its library entry point (`levee::surge::run`):
//! two seconds at low rates against a real levee whose TLS listener (generated certificate)
//! takes PROXY v2 from 127.0.0.1. Every country of the run is in the report with successes,
//! the JSON has the documented fields, and levee's `/stats` counts exactly as many
//! connections per country as the tool opened, so the GeoIP-chosen addresses map to the
//! intended countries.
//!
//! Hello mode (the default surge and capacity mode): the surge country's connections reach
//! the server's first flight, and levee counts each as a handshake that failed (it did the
//! full handshake's work, then the client reset the connection without its Finished), none
//! as full; the baseline's stay full handshakes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use clap::Parser;
use common::stats::{country_row, wait_stats};
use common::*;
use levee::surge::{SurgeArgs, report};

fn start() -> Levee {
    let backends = levee::demo::spawn_backends(1).unwrap();
    let toml = format!(
        "[server]\nworkers = 1\nshutdown_timeout = \"2s\"\naccess_log = false\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"surge\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"demo\"\n\
         proxy_protocol = \"v2\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n[listeners.tls]\n\n\
         [pools.demo]\n[[pools.demo.backends]]\naddress = \"{}\"\n",
        backends[0]
    );
    start_levee(&toml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_surge_reports_every_country_and_matches_levee_counts() {
    let levee = start();
    let target = levee.addr("surge").to_string();
    let args = SurgeArgs::try_parse_from([
        "surge",
        "--target",
        &target,
        "--duration",
        "2s",
        "--surge-after",
        "1s",
        "--baseline",
        "DE,JP",
        "--baseline-rate",
        "8",
        "--keepalive-clients",
        "1",
        "--keepalive-rate",
        "5",
        "--surge-country",
        "BR",
        "--surge-rate",
        "20",
        "--surge-mode",
        "full",
        "--timeout",
        "3s",
    ])
    .unwrap();
    let r = levee::surge::run(&args).await.unwrap();

    let codes: Vec<&str> = r.countries.iter().map(|c| c.country.as_str()).collect();
    assert_eq!(codes, ["DE", "JP", "BR"]);
    for c in &r.countries {
        assert!(
            c.new_connections.ok > 0,
            "{}: {:?}",
            c.country,
            c.new_connections
        );
        assert!(c.all.ok >= c.new_connections.ok);
        assert!(c.connections >= c.new_connections.ok);
    }
    assert!(
        r.countries[0].keepalive.ok > 0,
        "{:?}",
        r.countries[0].keepalive
    );
    assert_eq!(r.countries[2].keepalive.attempts, 0);

    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(json["mode"], "surge");
    assert_eq!(json["surge_mode"], "full");
    assert_eq!(json["window_from_s"], 1.0);
    assert_eq!(json["surge_country"], "BR");
    assert!(json["client_lag"]["late_starts"].is_u64());
    for c in json["countries"].as_array().unwrap() {
        assert!(c["role"] == "baseline" || c["role"] == "surge");
        assert_eq!(c["connection_kind"], "full");
        for kind in ["new_connections", "keepalive", "all"] {
            let s = &c[kind];
            for f in [
                "attempts",
                "ok",
                "success_rate",
                "p50_ms",
                "p99_ms",
                "max_ms",
            ] {
                assert!(s[f].is_number(), "{kind}.{f} in {c}");
            }
            for e in ["refused", "timeout", "tls", "status", "other", "skipped"] {
                assert!(s["errors"][e].is_u64(), "{kind}.errors.{e} in {c}");
            }
        }
    }
    assert_eq!(json["countries"][2]["role"], "surge");

    let table = report::table(&r);
    for code in ["DE", "JP", "BR"] {
        assert!(table.contains(code), "{table}");
    }

    // levee tagged each connection with the country the tool meant.
    let want: Vec<(String, u64)> = r
        .countries
        .iter()
        .map(|c| (c.country.clone(), c.connections))
        .collect();
    let doc = wait_stats(&levee, None, |doc| {
        want.iter().all(|(code, n)| {
            country_row(doc, code).is_some_and(|row| row["connections"].as_u64() == Some(*n))
        })
    })
    .await;
    assert!(
        country_row(&doc, "ZZ").is_none_or(|row| row["connections"] == 0),
        "{doc:#}"
    );
}

fn handshakes(doc: &serde_json::Value, code: &str, kind: &str) -> Option<u64> {
    country_row(doc, code).and_then(|row| row["tls_handshakes"][kind].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_surge_reaches_the_server_flight_and_levee_counts_it() {
    let levee = start();
    let target = levee.addr("surge").to_string();
    let args = SurgeArgs::try_parse_from([
        "surge",
        "--target",
        &target,
        "--duration",
        "2s",
        "--surge-after",
        "1s",
        "--baseline",
        "DE",
        "--baseline-rate",
        "8",
        "--keepalive-rate",
        "0",
        "--surge-country",
        "BR",
        "--surge-rate",
        "100",
        "--timeout",
        "3s",
    ])
    .unwrap();
    let r = levee::surge::run(&args).await.unwrap();
    assert_eq!(r.surge_mode, "hello");
    let (de, br) = (&r.countries[0], &r.countries[1]);
    assert_eq!((de.country.as_str(), de.connection_kind), ("DE", "full"));
    assert_eq!((br.country.as_str(), br.connection_kind), ("BR", "hello"));
    let s = &br.new_connections;
    assert!(s.ok > 0, "{s:?}");
    assert_eq!(s.ok, s.attempts, "{s:?}");
    assert!(s.p99_ms > 0.0 && s.p99_ms < 3000.0, "{s:?}");
    // No warm-up surge connections: the whole-run count is the window's, give or take the
    // one arrival that may fall on the window's first instant.
    assert!(
        (s.ok..=s.ok + 1).contains(&br.connections),
        "no warm-up surge connections: {} vs {s:?}",
        br.connections
    );
    assert!(de.new_connections.ok > 0, "{:?}", de.new_connections);
    let table = report::table(&r);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("BR") && l.contains("hello")),
        "{table}"
    );

    // Each surge connection cost levee a full handshake's work, then the client reset it
    // before its Finished: a failed handshake for BR, never a full one. DE's are full.
    let (n_br, n_de) = (br.connections, de.connections);
    let doc = wait_stats(&levee, None, |doc| {
        handshakes(doc, "BR", "failed") == Some(n_br) && handshakes(doc, "DE", "full") == Some(n_de)
    })
    .await;
    assert_eq!(handshakes(&doc, "BR", "full"), Some(0), "{doc:#}");
    assert_eq!(
        country_row(&doc, "BR").and_then(|row| row["connections"].as_u64()),
        Some(n_br)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_capacity_counts_server_flights() {
    let levee = start();
    let target = levee.addr("surge").to_string();
    let args = SurgeArgs::try_parse_from([
        "surge",
        "--target",
        &target,
        "--capacity",
        "--duration",
        "1s",
        "--concurrency",
        "4",
        "--baseline",
        "DE,JP",
    ])
    .unwrap();
    let r = levee::surge::run(&args).await.unwrap();
    let cap = r.capacity.as_ref().unwrap();
    assert_eq!(cap.kind, "hello");
    assert!(cap.ok > 0 && cap.connections_per_s > 0.0, "{cap:?}");
    assert!(r.countries.iter().all(|c| c.connection_kind == "hello"));
    let table = report::table(&r);
    assert!(table.contains("server first flights/s"), "{table}");
    assert!(table.contains("full-handshake capacity"), "{table}");
}

/// The two halves of a split run (`benches/surge/run.sh`): the surge generator alone
/// (`--no-baseline`, only the surge row) and the baseline clients alone (`--surge-rate 0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surge_only_and_baseline_only_runs_report_their_own_rows() {
    let levee = start();
    let target = levee.addr("surge").to_string();
    let common = [
        "surge",
        "--target",
        &target,
        "--duration",
        "2s",
        "--surge-after",
        "1s",
        "--surge-country",
        "BR",
        "--timeout",
        "3s",
    ];
    let surge_only = [&common[..], &["--no-baseline", "--surge-rate", "50"]].concat();
    let baseline_only = [
        &common[..],
        &[
            "--baseline",
            "DE",
            "--baseline-rate",
            "8",
            "--keepalive-rate",
            "0",
            "--surge-rate",
            "0",
        ],
    ]
    .concat();
    let surge_only = SurgeArgs::try_parse_from(surge_only).unwrap();
    let baseline_only = SurgeArgs::try_parse_from(baseline_only).unwrap();
    let (s, b) = tokio::join!(
        levee::surge::run(&surge_only),
        levee::surge::run(&baseline_only),
    );
    let (s, b) = (s.unwrap(), b.unwrap());

    assert_eq!(s.countries.len(), 1);
    let br = &s.countries[0];
    assert_eq!((br.country.as_str(), br.connection_kind), ("BR", "hello"));
    assert!(br.new_connections.ok > 0, "{:?}", br.new_connections);
    assert_eq!(br.keepalive.attempts, 0);
    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(json["surge_rate"], 50.0);
    assert_eq!(json["baseline_rate"], 0.0);
    assert_eq!(json["countries"][0]["role"], "surge");
    assert!(
        json["client_lag"]["last_start_s"].as_f64().unwrap() > 1.0,
        "{json}"
    );
    assert!(report::table(&s).lines().any(|l| l.starts_with("BR")));

    let codes: Vec<&str> = b.countries.iter().map(|c| c.country.as_str()).collect();
    assert_eq!(codes, ["DE"]);
    assert!(
        b.countries
            .iter()
            .all(|c| c.role == levee::surge::plan::Role::Baseline)
    );
    assert!(b.countries[0].new_connections.ok > 0);
    assert_eq!((b.surge_rate, b.window_from_s), (0.0, 1.0));
}
