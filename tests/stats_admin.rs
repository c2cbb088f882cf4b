//! Per-country stats on the admin API: `/metrics` parses as Prometheus text and its counters
//! equal the traffic sent from each country, `/stats` says the same with its windows, and
//! `[admin] token` guards every endpoint but `/healthz` (and `levee reload` sends it).
//!
//! A country whose every connection is refused before it opens still shows, with its shed
//! traffic, in both.
//!
//! Clients pick their country by their loopback source address (`common::stats`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::prom::{Exposition, parse_exposition};
use common::stats::*;
use common::*;
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789";

async fn metrics(levee: &Levee, token: Option<&str>) -> Exposition {
    let reply = admin_request(levee, "GET", "/metrics", token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    parse_exposition(&reply.text())
}

/// The distinct values of label `label` among the samples of `name`.
fn label_values(doc: &Exposition, name: &str, label: &str) -> BTreeSet<String> {
    doc.samples
        .iter()
        .filter(|s| s.name == name)
        .filter_map(|s| s.labels.iter().find(|(k, _)| k == label))
        .map(|(_, v)| v.clone())
        .collect()
}

fn history_sum(row: &Value) -> u64 {
    row["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_stats_count_the_traffic_of_each_country() {
    let backend = Backend::start("a");
    let levee = start_stats_levee(backend.addr, closed_addr(), None, "");
    let web = levee.addr("web");
    // BR: 4 GETs; DE: 2 POSTs of 100 bytes; JP: 3 GETs that fail upstream (502); ZZ: 1 GET.
    for _ in 0..4 {
        assert_eq!(
            request_from(BR_IP, web, &get_request("/")).await.status,
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            request_from(DE_IP, web, &echo_request(100)).await.status,
            200
        );
    }
    for _ in 0..3 {
        let reply = request_from(JP_IP, web, &get_request("/down/x")).await;
        assert_eq!(reply.status, 502);
    }
    assert_eq!(
        request_from(ZZ_IP, web, &get_request("/")).await.status,
        200
    );

    // Requests are counted when their response ends, connections when they close: poll.
    let started = Instant::now();
    let doc = loop {
        let doc = metrics(&levee, None).await;
        let requests: f64 = doc
            .samples
            .iter()
            .filter(|s| s.name == "levee_requests_total")
            .map(|s| s.value)
            .sum();
        let active: f64 = doc
            .samples
            .iter()
            .filter(|s| s.name == "levee_connections_active")
            .map(|s| s.value)
            .sum();
        if (requests == 10.0 && active == 0.0) || started.elapsed() > SLACK * 5 {
            break doc;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let countries: BTreeSet<String> = ["BR", "DE", "JP", "ZZ"].map(String::from).into();
    for family in [
        "levee_connections_total",
        "levee_connections_active",
        "levee_requests_total",
        "levee_tls_handshake_duration_seconds_count",
        "levee_country_spike_ratio",
        "levee_country_connection_baseline_per_second",
        "levee_country_spiking",
    ] {
        assert_eq!(
            label_values(&doc, family, "country"),
            countries,
            "{family}: only the countries with traffic, and ZZ"
        );
    }
    for (country, connections, class, requests) in [
        ("BR", 4.0, "2xx", 4.0),
        ("DE", 2.0, "2xx", 2.0),
        ("JP", 3.0, "5xx", 3.0),
        ("ZZ", 1.0, "2xx", 1.0),
    ] {
        let c = [("country", country)];
        assert_eq!(
            doc.get("levee_connections_total", &c),
            connections,
            "{country}"
        );
        assert_eq!(doc.get("levee_connections_active", &c), 0.0, "{country}");
        let by_class = |cc| {
            doc.get(
                "levee_requests_total",
                &[("country", country), ("code_class", cc)],
            )
        };
        assert_eq!(by_class(class), requests, "{country} {class}");
        let all: f64 = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .map(by_class)
            .iter()
            .sum();
        assert_eq!(all, requests, "{country}: no other class");
        for kind in ["full", "resumed", "failed"] {
            let labels = [("country", country), ("kind", kind)];
            assert_eq!(
                doc.get("levee_tls_handshakes_total", &labels),
                0.0,
                "plain HTTP"
            );
        }
    }
    let de = [("country", "DE")];
    assert_eq!(doc.get("levee_received_bytes_total", &de), 200.0);
    assert_eq!(doc.get("levee_sent_bytes_total", &de), 200.0);
    assert_eq!(
        doc.get("levee_received_bytes_total", &[("country", "BR")]),
        0.0
    );
    assert_eq!(
        doc.get("levee_upstream_latency_seconds_count", &[("country", "BR")]),
        4.0
    );

    // `/stats` once the windows have recorded every connection.
    let stats = wait_stats(&levee, None, |d| {
        let countries = d["countries"].as_array().unwrap();
        countries.len() == 4 && countries.iter().map(history_sum).sum::<u64>() == 10
    })
    .await;
    let t = &stats["totals"];
    assert_eq!(t["connections"], 10);
    assert_eq!(t["connections_active"], 0);
    assert_eq!(
        (t["requests"]["2xx"].as_u64(), t["requests"]["5xx"].as_u64()),
        (Some(7), Some(3))
    );
    assert!(t["conn_rate_10s"].as_f64().unwrap() > 0.0);
    let order: Vec<&str> = stats["countries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["country"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec!["BR", "JP", "DE", "ZZ"], "sorted by 10 s rate");
    for code in ["BR", "DE", "JP", "ZZ"] {
        let row = country_row(&stats, code).unwrap();
        let labels = [("country", code)];
        let c = doc.get("levee_connections_total", &labels);
        assert_eq!(row["connections"].as_f64(), Some(c), "{code}");
        assert_eq!(history_sum(row) as f64, c, "{code}: history");
        assert_eq!(row["history"].as_array().unwrap().len(), 60);
        let r = &row["requests"];
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            let m = doc.get(
                "levee_requests_total",
                &[("country", code), ("code_class", class)],
            );
            assert_eq!(r[class].as_f64(), Some(m), "{code} {class}");
        }
        assert_eq!(
            row["bytes_in"].as_f64(),
            Some(doc.get("levee_received_bytes_total", &labels))
        );
        assert_eq!(
            row["bytes_out"].as_f64(),
            Some(doc.get("levee_sent_bytes_total", &labels))
        );
        assert!(row["conn_rate_10s"].as_f64().unwrap() > 0.0, "{code}");
        assert!(row["resumed_share"].is_null() && row["handshake_p50_ms"].is_null());
        assert_eq!(row["spiking"], false);
    }
    // What `levee top` reads of it.
    let top: levee::top::Stats = serde_json::from_value(stats.clone()).unwrap();
    assert_eq!(top.countries.len(), 4);
    assert_eq!(
        (
            top.countries[0].country.as_str(),
            top.countries[0].connections
        ),
        ("BR", 4)
    );
    assert_eq!(top.countries[0].history.len(), 60);
    assert_eq!(top.workers.len(), 2);
    assert_eq!(country_row(&stats, "JP").unwrap()["share_5xx"], 1.0);
    assert_eq!(country_row(&stats, "BR").unwrap()["share_5xx"], 0.0);
    // ASN rows end with "other", and all the rows together hold every connection.
    let asns = stats["asns"].as_array().unwrap();
    let other = asns.last().unwrap();
    assert_eq!(
        (other["asn"].as_u64(), other["org"].as_str()),
        (Some(0), Some("other"))
    );
    let listed: u64 = asns
        .iter()
        .map(|a| a["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(listed, 10);
    let workers = stats["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let per_worker: u64 = workers
        .iter()
        .map(|w| w["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(per_worker, 10);
    assert_eq!(stats["config"]["generation"], 1);
    assert_eq!(stats["spikes"], Value::Array(Vec::new()));
    assert!(stats["uptime_seconds"].as_f64().unwrap() > 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((stats["generated_at"].as_f64().unwrap() - now).abs() < 60.0);
    // `/metrics` has the same ASN rows.
    let doc = metrics(&levee, None).await;
    dashboard_uses_only_exported_metrics(&doc);
    assert_eq!(
        doc.get(
            "levee_asn_connections_total",
            &[("asn", "0"), ("org", "other")]
        ),
        other["connections"].as_f64().unwrap()
    );
}

/// The per-ASN rows. Needs the ASN recording calls where a connection opens and a request
/// ends (`Shard::asn_connection` in `proxy/conn.rs`, `Shard::asn_request` in
/// `proxy/service.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asn_rows_count_the_traffic_of_each_asn() {
    let backend = Backend::start("a");
    let levee = start_stats_levee(backend.addr, closed_addr(), None, "");
    let web = levee.addr("web");
    for (ip, n) in [(BR_IP, 5), (DE_IP, 3), (JP_IP, 1), (ZZ_IP, 2)] {
        for _ in 0..n {
            assert_eq!(request_from(ip, web, &get_request("/")).await.status, 200);
        }
    }
    let stats = wait_stats(&levee, None, |d| {
        d["asns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["requests"].as_u64().unwrap())
            .sum::<u64>()
            == 11
    })
    .await;
    let asns = stats["asns"].as_array().unwrap();
    let rows: Vec<(u64, &str, &str, u64, u64)> = asns
        .iter()
        .map(|a| {
            (
                a["asn"].as_u64().unwrap(),
                a["org"].as_str().unwrap(),
                a["country"].as_str().unwrap(),
                a["connections"].as_u64().unwrap(),
                a["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (64_500, "Example BR Net", "BR", 5, 5),
            (64_501, "Example DE Net", "DE", 3, 3),
            (64_502, "Example JP Net", "JP", 1, 1),
            (0, "other", "ZZ", 2, 2),
        ]
    );
    let doc = metrics(&levee, None).await;
    let labels = [("asn", "64500"), ("org", "Example BR Net")];
    assert_eq!(doc.get("levee_asn_connections_total", &labels), 5.0);
    assert_eq!(doc.get("levee_asn_requests_total", &labels), 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_everything_but_healthz() {
    let backend = Backend::start("a");
    let levee = start_stats_levee(backend.addr, closed_addr(), Some(TOKEN), "");
    for (method, path) in [
        ("GET", "/stats"),
        ("GET", "/metrics"),
        ("GET", "/pools"),
        ("POST", "/reload"),
        ("GET", "/nowhere"),
    ] {
        for wrong in [
            None,
            Some("wrong-token-0123456789"),
            Some("test-token-012345678"),
        ] {
            let r = admin_request(&levee, method, path, wrong).await;
            assert_eq!(r.status, 401, "{method} {path} with {wrong:?}");
            let challenge = r.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
        let r = admin_request(&levee, method, path, Some(TOKEN)).await;
        let expected = if path == "/nowhere" { 404 } else { 200 };
        assert_eq!(r.status, expected, "{method} {path}: {}", r.text());
    }
    assert_eq!(
        admin_request(&levee, "GET", "/healthz", None).await.status,
        200
    );

    // `levee reload`'s client: refused without the token, served with it.
    use levee::admin::client::{ClientError, admin_token, post_reload_with};
    let admin = levee.running().admin_addr().unwrap().to_string();
    let e = post_reload_with(&admin, None).await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("LEVEE_ADMIN_TOKEN"), "{e}");
    let answer = post_reload_with(&admin, Some(TOKEN)).await.unwrap();
    assert!(answer.report.ok, "{}", answer.json);
    if std::env::var_os("LEVEE_ADMIN_TOKEN").is_none() {
        assert_eq!(
            admin_token(Some(&levee.config_path())).as_deref(),
            Some(TOKEN)
        );
    }

    // The `levee reload` binary: the token from --config or LEVEE_ADMIN_TOKEN.
    let config = levee.config_path();
    let run = |args: Vec<String>, env: Option<&'static str>| {
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(levee_bin());
            cmd.args(&args).env_remove("LEVEE_ADMIN_TOKEN");
            if let Some(t) = env {
                cmd.env("LEVEE_ADMIN_TOKEN", t);
            }
            cmd.output().unwrap()
        })
    };
    let with_config = vec![
        "reload".into(),
        "--admin".into(),
        admin.clone(),
        "--config".into(),
        config.display().to_string(),
    ];
    let out = run(with_config, None).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let bare = vec!["reload".to_string(), "--admin".into(), admin.clone()];
    let out = run(bare.clone(), None).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("LEVEE_ADMIN_TOKEN"),
        "{out:?}"
    );
    let out = run(bare, Some(TOKEN)).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // A reload changes the token at once.
    let source = std::fs::read_to_string(levee.config_path()).unwrap();
    let next = "next-token-0123456789";
    let report = levee.reload_with(&source.replace(TOKEN, next));
    assert!(report.ok, "{:?}", report.errors);
    assert_eq!(
        admin_request(&levee, "GET", "/stats", Some(TOKEN))
            .await
            .status,
        401
    );
    assert_eq!(
        admin_request(&levee, "GET", "/stats", Some(next))
            .await
            .status,
        200
    );
}

/// A connection from `from` to `to`, not yet used.
async fn connect_from(from: std::net::IpAddr, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(from, 0)).unwrap();
    tokio::time::timeout(SLACK, socket.connect(to))
        .await
        .expect("connect in time")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_country_refused_before_open_shows_its_shed_traffic() {
    use tokio::io::AsyncReadExt;
    let backend = Backend::start("a");
    // The `[stats]` text may open the next table: one connection at most, held by DE.
    let admission = "\n[admission]\nmax_connections = 1";
    let levee = start_stats_levee(backend.addr, closed_addr(), None, admission);
    let web = levee.addr("web");
    let mut held = connect_from(DE_IP, web).await;
    let req = b"GET / HTTP/1.1\r\nHost: levee.test\r\n\r\n";
    assert_eq!(common::client::raw_head(&mut held, req).await.status, 200);
    for _ in 0..3 {
        let mut br = connect_from(BR_IP, web).await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(SLACK * 3, br.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "BR refused: {read:?}");
    }
    let stats = wait_stats(&levee, None, |d| {
        country_row(d, "BR").is_some_and(|r| r["shed"] == 3 && r["shed_rate"].as_f64() > Some(0.0))
    })
    .await;
    let br = country_row(&stats, "BR").unwrap();
    assert_eq!(br["connections"], 0, "refused before open");
    assert_eq!(br["conn_rate_10s"], 0.0);
    assert!(br["offered_rate_10s"].as_f64().unwrap() > 0.0, "{br}");
    assert_eq!(stats["totals"]["shed"], 3);
    let a = &stats["admission"];
    assert_eq!(a["rejected"]["max_connections"], 3);
    assert!(a["rejected"].get("auto_cap_dry_run").is_none(), "{a}");
    assert_eq!(a["dry_run_would_reject"], 0);
    assert_eq!(a["handshake_queue_depth"], 0);
    let wait = &a["queue_wait"];
    assert!(
        wait["p50_ms"].is_null() && wait["p99_ms"].is_null(),
        "{wait}"
    );
    assert_eq!(wait["count"], 0, "plain HTTP: no handshake queue");
    let top: levee::top::Stats = serde_json::from_value(stats.clone()).unwrap();
    let row = top.countries.iter().find(|c| c.country == "BR").unwrap();
    assert!(row.shed_rate.unwrap() > 0.0);

    let doc = metrics(&levee, None).await;
    let br = [("country", "BR")];
    let refused = [("country", "BR"), ("reason", "max_connections")];
    assert_eq!(doc.get("levee_admission_rejected_total", &refused), 3.0);
    assert_eq!(doc.get("levee_admission_dry_run_total", &br), 0.0);
    assert_eq!(doc.get("levee_connections_total", &br), 0.0, "BR has a row");
    let reasons = label_values(&doc, "levee_admission_rejected_total", "reason");
    assert!(!reasons.contains("auto_cap_dry_run"), "{reasons:?}");
    assert!(reasons.contains("auto_cap_queued"), "{reasons:?}");
    assert_eq!(reasons.len(), 11);
    let count = "levee_admission_handshake_queue_wait_seconds_count";
    assert_eq!(doc.get(count, &[]), 0.0);
    assert_eq!(
        doc.types["levee_admission_handshake_queue_wait_seconds"],
        "histogram"
    );
    drop(held);
}

/// Every metric the Grafana dashboard queries (`levee_*`, `process_*`) is a family `/metrics`
/// declares.
fn dashboard_uses_only_exported_metrics(doc: &Exposition) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/grafana/levee-dashboard.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() > 10, "{exprs:?}");
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(i) = ["levee_", "process_"]
            .iter()
            .filter_map(|prefix| rest.find(prefix))
            .min()
        {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            let family = name.strip_suffix("_bucket").unwrap_or(&name);
            assert!(doc.types.contains_key(family), "{name} in {expr}");
        }
    }
}
