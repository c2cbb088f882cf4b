//! `GET /metrics` on the admin API: Prometheus text format 0.0.4 whose counters match the
//! traffic sent, and whose config metrics follow reloads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::prom::{Exposition, parse_exposition};
use common::*;

#[test]
fn line_checker_rejects_bad_lines() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\\n\"} 1\n";
    let doc = parse_exposition(ok);
    assert_eq!(doc.get("a_total", &[("k", "v\"\n")]), 1.0);
    for bad in [
        "a 1\n",                                                    // no TYPE
        "# TYPE a gauge\na{k=\"v} 1\n",                             // unterminated
        "# TYPE a gauge\na{k=\"v\"} x\n",                           // bad value
        "# TYPE a gauge\na{k=\"\\t\"} 1\n",                         // bad escape
        "# TYPE a gauge\na 1\na 2\n",                               // duplicate series
        "# TYPE a gauge\n\na 1\n",                                  // blank line
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 1\n", // split family
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
    ] {
        let caught = std::panic::catch_unwind(|| parse_exposition(bad));
        assert!(caught.is_err(), "accepted: {bad:?}");
    }
}

/// levee with the admin API on, one plain listener and a pool of one backend; the admin
/// API's address.
fn one_pool_with_admin() -> (Backend, Levee, SocketAddr) {
    let backend = Backend::start("a");
    let toml = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[backend.addr], "");
    let levee = start_levee(&toml);
    let admin = levee.running().admin_addr().expect("admin API enabled");
    (backend, levee, admin)
}

async fn scrape(admin: SocketAddr) -> (Reply, Exposition) {
    let mut c = Conn::plain(admin, Proto::H1).await;
    let reply = c.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let doc = parse_exposition(&reply.text());
    (reply, doc)
}

const ZZ_2XX: [(&str, &str); 2] = [("country", "ZZ"), ("code_class", "2xx")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_and_follow_reloads() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let toml_a = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[a.addr], "");
    let levee = start_levee(&toml_a);
    let admin = levee.running().admin_addr().expect("admin API enabled");

    // Before any traffic: every family is there, counters at zero.
    let (reply, doc) = scrape(admin).await;
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(doc.get("levee_config_generation", &[]), 1.0);
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "ok")]),
        0.0
    );
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "error")]),
        0.0
    );
    assert_eq!(
        doc.get("levee_config_last_reload_timestamp_seconds", &[]),
        0.0
    );
    assert_eq!(doc.get("levee_requests_total", &ZZ_2XX), 0.0);
    for (family, kind) in [
        ("levee_config_generation", "gauge"),
        ("levee_config_info", "gauge"),
        ("levee_config_reloads_total", "counter"),
        ("levee_config_last_reload_timestamp_seconds", "gauge"),
        ("levee_connections_total", "counter"),
        ("levee_connections_active", "gauge"),
        ("levee_tls_handshakes_total", "counter"),
        ("levee_tls_handshake_duration_seconds", "histogram"),
        ("levee_requests_total", "counter"),
        ("levee_received_bytes_total", "counter"),
        ("levee_sent_bytes_total", "counter"),
        ("levee_upstream_latency_seconds", "histogram"),
        ("levee_backend_up", "gauge"),
        ("levee_backend_in_flight", "gauge"),
        ("levee_backend_requests_total", "counter"),
        ("levee_backend_failures_total", "counter"),
        ("levee_backend_connect_errors_total", "counter"),
        ("levee_pool_requests_total", "counter"),
        ("levee_pool_request_duration_seconds", "histogram"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
    ] {
        assert_eq!(
            doc.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }

    // Traffic: 5 GETs and 2 POSTs with bodies, on one keep-alive connection.
    const GETS: u64 = 5;
    const BODY: usize = 1000;
    let mut c = Conn::plain(levee.addr("web"), Proto::H1).await;
    for _ in 0..GETS {
        assert_eq!(c.get("/").await.status, 200);
    }
    for _ in 0..2 {
        let req = c
            .request("POST", "/echo")
            .body(full(vec![b'x'; BODY]))
            .unwrap();
        assert_eq!(c.send(req).await.status, 200);
    }
    let sent = GETS + 2;
    drop(c);

    // Stats are written when a response body ends (and a connection when it closes): poll.
    let started = Instant::now();
    let doc = loop {
        let (_, doc) = scrape(admin).await;
        let done = doc.get("levee_requests_total", &ZZ_2XX) == sent as f64
            && doc.get("levee_connections_active", &[("country", "ZZ")]) == 0.0;
        if done || started.elapsed() > SLACK * 5 {
            break doc;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(doc.get("levee_requests_total", &ZZ_2XX), sent as f64);
    for class in ["1xx", "3xx", "4xx", "5xx"] {
        let labels = [("country", "ZZ"), ("code_class", class)];
        assert_eq!(doc.get("levee_requests_total", &labels), 0.0, "{class}");
    }
    // One traffic connection; the admin API's own connections are not counted.
    assert_eq!(
        doc.get("levee_connections_total", &[("country", "ZZ")]),
        1.0
    );
    assert_eq!(
        doc.get("levee_connections_active", &[("country", "ZZ")]),
        0.0
    );
    let received = doc.get("levee_received_bytes_total", &[("country", "ZZ")]);
    assert!(received >= (2 * BODY) as f64, "bytes received {received}");
    let sent_bytes = doc.get("levee_sent_bytes_total", &[("country", "ZZ")]);
    assert!(sent_bytes >= (2 * BODY) as f64, "bytes sent {sent_bytes}");
    // Plain HTTP: no handshakes; every proxied request has an upstream latency.
    for kind in ["full", "resumed", "failed"] {
        let labels = [("country", "ZZ"), ("kind", kind)];
        assert_eq!(doc.get("levee_tls_handshakes_total", &labels), 0.0);
    }
    let zz = [("country", "ZZ")];
    assert_eq!(
        doc.get("levee_tls_handshake_duration_seconds_count", &zz),
        0.0
    );
    assert_eq!(
        doc.get("levee_upstream_latency_seconds_count", &zz),
        sent as f64
    );
    assert!(doc.get("levee_upstream_latency_seconds_sum", &zz) > 0.0);
    // The backend.
    let a_labels = [("pool", "web"), ("backend", &*a.addr.to_string())];
    assert_eq!(doc.get("levee_backend_up", &a_labels), 1.0);
    assert_eq!(doc.get("levee_backend_in_flight", &a_labels), 0.0);
    assert_eq!(
        doc.get("levee_backend_requests_total", &a_labels),
        sent as f64
    );
    assert_eq!(doc.get("levee_backend_failures_total", &a_labels), 0.0);

    // A successful reload: generation 2, one ok reload, the new backend listed, a's counters
    // carried over.
    let toml_ab = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[a.addr, b.addr], "");
    let before_reload = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let report = levee.reload_with(&toml_ab);
    assert!(report.ok, "{:?}", report.errors);
    assert_eq!(report.generation, 2);
    let (_, doc) = scrape(admin).await;
    assert_eq!(doc.get("levee_config_generation", &[]), 2.0);
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "error")]),
        0.0
    );
    let last = doc.get("levee_config_last_reload_timestamp_seconds", &[]);
    assert!(
        last >= before_reload - 1.0 && last < before_reload + 60.0,
        "last reload {last}, reloaded at {before_reload}"
    );
    let hash = format!("{:016x}", report.source_hash);
    assert_eq!(doc.get("levee_config_info", &[("source_hash", &hash)]), 1.0);
    assert_eq!(
        doc.get("levee_backend_requests_total", &a_labels),
        sent as f64
    );
    let b_labels = [("pool", "web"), ("backend", &*b.addr.to_string())];
    assert_eq!(doc.get("levee_backend_up", &b_labels), 1.0);
    assert_eq!(doc.get("levee_backend_requests_total", &b_labels), 0.0);
    // Traffic stats are not reset by a reload.
    assert_eq!(doc.get("levee_requests_total", &ZZ_2XX), sent as f64);

    // A refused reload: counted as an error, the generation stays.
    let report = levee.reload_with("this is not toml [");
    assert!(!report.ok);
    let (_, doc) = scrape(admin).await;
    assert_eq!(doc.get("levee_config_generation", &[]), 2.0);
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        doc.get("levee_config_reloads_total", &[("result", "error")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answers_get_only() {
    let (_backend, _levee, admin) = one_pool_with_admin();
    let mut c = Conn::plain(admin, Proto::H1).await;
    let req = c.request("POST", "/metrics").body(empty()).unwrap();
    assert_eq!(c.send(req).await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_the_build() {
    let (_backend, _levee, admin) = one_pool_with_admin();
    let (_, doc) = scrape(admin).await;
    let build = doc
        .samples
        .iter()
        .find(|s| s.name == "levee_build_info")
        .expect("levee_build_info");
    assert_eq!(build.value, 1.0);
    let label = |k: &str| {
        build
            .labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(label("version"), Some(env!("CARGO_PKG_VERSION")));
    assert!(label("commit").is_some_and(|c| !c.is_empty()), "{build:?}");
    assert_eq!(doc.types["levee_build_info"], "gauge");
}
