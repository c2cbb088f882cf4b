//! The operator families of `/metrics` (issue 13, item 10): requests per pool and backend by
//! status class, whole-request durations per pool, backend connect errors, `process_*`, and
//! the renamed families with their deprecated aliases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::prom::{Exposition, parse_exposition};
use common::*;

async fn scrape(admin: SocketAddr) -> Exposition {
    let mut c = Conn::plain(admin, Proto::H1).await;
    let reply = c.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    parse_exposition(&reply.text())
}

/// Scrapes until `done` holds (stats are written when a response body ends), at most a few
/// seconds; the last document either way.
async fn scrape_until(admin: SocketAddr, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let started = Instant::now();
    loop {
        let doc = scrape(admin).await;
        if done(&doc) || started.elapsed() > SLACK * 5 {
            return doc;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `count` GETs of `path` on one connection to `addr`, each answered `status`.
async fn get_n(addr: SocketAddr, path: &str, count: usize, status: u16) {
    let mut c = Conn::plain(addr, Proto::H1).await;
    for _ in 0..count {
        assert_eq!(c.get(path).await.status, status, "{path}");
    }
}

/// `levee_pool_requests_total` of one (pool, backend) pair, by class 1xx..5xx.
fn by_class(doc: &Exposition, pool: &str, backend: &str) -> [f64; 5] {
    ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
        let labels = [("pool", pool), ("backend", backend), ("code_class", class)];
        doc.get("levee_pool_requests_total", &labels)
    })
}

fn duration_count(doc: &Exposition, pool: &str) -> f64 {
    doc.get(
        "levee_pool_request_duration_seconds_count",
        &[("pool", pool)],
    )
}

/// Three pools behind three listeners: `pa` (backend A), `pb` (backend B), `pc` (a closed
/// port); plus `extra_pa` more backends in `pa`.
fn three_pools(
    a: SocketAddr,
    b: SocketAddr,
    closed: SocketAddr,
    extra_pa: &[SocketAddr],
) -> String {
    let pa: Vec<SocketAddr> = std::iter::once(a).chain(extra_pa.iter().copied()).collect();
    server_with_admin()
        + &listener_toml("wa", "pa", None, "", "")
        + &listener_toml("wb", "pb", None, "", "")
        + &listener_toml("wc", "pc", None, "", "")
        + &pool_toml("pa", &pa, "")
        + &pool_toml("pb", &[b], "")
        + &pool_toml("pc", &[closed], "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_requests_are_counted_per_backend_and_class_and_survive_a_reload() {
    let (a, b, closed) = (Backend::start("a"), Backend::start("b"), closed_addr());
    let levee = start_levee(&three_pools(a.addr, b.addr, closed, &[]));
    let admin = levee.running().admin_addr().expect("admin API enabled");
    let (a_s, b_s, closed_s) = (a.addr.to_string(), b.addr.to_string(), closed.to_string());

    let doc = scrape(admin).await;
    for (family, kind) in [
        ("levee_pool_requests_total", "counter"),
        ("levee_pool_request_duration_seconds", "histogram"),
        ("levee_backend_connect_errors_total", "counter"),
    ] {
        assert_eq!(
            doc.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert_eq!(by_class(&doc, "pa", &a_s), [0.0; 5]);
    assert_eq!(duration_count(&doc, "pa"), 0.0);

    get_n(levee.addr("wa"), "/", 3, 200).await;
    get_n(levee.addr("wb"), "/status?code=503", 2, 503).await;
    // Nothing listens behind pc: levee answers 502 itself, after one failed connect each.
    get_n(levee.addr("wc"), "/", 2, 502).await;

    let doc = scrape_until(admin, |d| {
        duration_count(d, "pa") == 3.0
            && duration_count(d, "pb") == 2.0
            && duration_count(d, "pc") == 2.0
    })
    .await;
    assert_eq!(by_class(&doc, "pa", &a_s), [0.0, 3.0, 0.0, 0.0, 0.0]);
    assert_eq!(
        by_class(&doc, "pa", ""),
        [0.0; 5],
        "levee answered none of pa's"
    );
    assert_eq!(
        by_class(&doc, "pb", &b_s),
        [0.0, 0.0, 0.0, 0.0, 2.0],
        "B's own 503s"
    );
    assert_eq!(by_class(&doc, "pb", ""), [0.0; 5]);
    assert_eq!(
        by_class(&doc, "pc", &closed_s),
        [0.0; 5],
        "the closed port answered nothing"
    );
    assert_eq!(
        by_class(&doc, "pc", ""),
        [0.0, 0.0, 0.0, 0.0, 2.0],
        "levee's 502s"
    );
    for (pool, n) in [("pa", 3.0), ("pb", 2.0), ("pc", 2.0)] {
        assert_eq!(
            duration_count(&doc, pool),
            n,
            "{pool}: one duration a request"
        );
        let sum = doc.get("levee_pool_request_duration_seconds_sum", &[("pool", pool)]);
        assert!(sum > 0.0 && sum < 30.0, "{pool}: {sum}");
    }
    let errors = |doc: &Exposition, pool: &str, backend: &str| {
        let labels = [("pool", pool), ("backend", backend)];
        doc.get("levee_backend_connect_errors_total", &labels)
    };
    assert_eq!(errors(&doc, "pc", &closed_s), 2.0);
    assert_eq!(errors(&doc, "pa", &a_s), 0.0);
    assert_eq!(errors(&doc, "pb", &b_s), 0.0);

    // A reload adds a backend to pa: A's counts and pa's durations carry over, the new
    // backend starts at zero, and the closed port's connect errors keep growing.
    let c = Backend::start("c");
    let report = levee.reload_with(&three_pools(a.addr, b.addr, closed, &[c.addr]));
    assert!(report.ok, "{:?}", report.errors);
    get_n(levee.addr("wc"), "/", 1, 502).await;
    let doc = scrape_until(admin, |d| duration_count(d, "pc") == 3.0).await;
    assert_eq!(by_class(&doc, "pa", &a_s), [0.0, 3.0, 0.0, 0.0, 0.0]);
    assert_eq!(by_class(&doc, "pa", &c.addr.to_string()), [0.0; 5]);
    assert_eq!(duration_count(&doc, "pa"), 3.0);
    assert_eq!(errors(&doc, "pc", &closed_s), 3.0);
    assert_eq!(by_class(&doc, "pc", ""), [0.0, 0.0, 0.0, 0.0, 3.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_metrics_are_plausible() {
    let backend = Backend::start("a");
    let levee = start_levee(
        &(server_with_admin()
            + &listener_toml("web", "web", None, "", "")
            + &pool_toml("web", &[backend.addr], "")),
    );
    let admin = levee.running().admin_addr().expect("admin API enabled");
    let doc = scrape(admin).await;
    for (family, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert_eq!(
            doc.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    let get = |name: &str| doc.get(name, &[]);
    let rss = get("process_resident_memory_bytes");
    assert!(rss > 1024.0 * 1024.0, "rss {rss}");
    assert!(get("process_virtual_memory_bytes") >= rss);
    let fds = get("process_open_fds");
    assert!(fds >= 3.0, "open fds {fds}");
    assert!(get("process_max_fds") >= fds);
    assert!(get("process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // The test process is levee's process: it started within the last hour.
    let start = get("process_start_time_seconds");
    assert!(
        start > now - 3600.0 && start <= now + 1.0,
        "start {start}, now {now}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_families_keep_their_old_names_as_aliases() {
    let backend = Backend::start("a");
    let levee = start_levee(
        &(server_with_admin()
            + &listener_toml("web", "web", None, "", "")
            + &pool_toml("web", &[backend.addr], "")),
    );
    let admin = levee.running().admin_addr().expect("admin API enabled");
    let mut c = Conn::plain(levee.addr("web"), Proto::H1).await;
    let req = c
        .request("POST", "/echo")
        .body(full(vec![b'x'; 700]))
        .unwrap();
    assert_eq!(c.send(req).await.status, 200);
    drop(c);
    let zz = [("country", "ZZ")];
    let doc = scrape_until(admin, |d| d.get("levee_received_bytes_total", &zz) >= 700.0).await;
    for (new, old, kind) in [
        (
            "levee_received_bytes_total",
            "levee_bytes_received_total",
            "counter",
        ),
        (
            "levee_sent_bytes_total",
            "levee_bytes_sent_total",
            "counter",
        ),
        (
            "levee_country_connection_baseline_per_second",
            "levee_country_connection_baseline",
            "gauge",
        ),
    ] {
        assert_eq!(doc.types.get(new).map(String::as_str), Some(kind), "{new}");
        assert_eq!(doc.types.get(old).map(String::as_str), Some(kind), "{old}");
        let samples = |name: &str| -> Vec<(Vec<(String, String)>, f64)> {
            let mut v: Vec<_> = doc
                .samples
                .iter()
                .filter(|s| s.name == name)
                .map(|s| (s.labels.clone(), s.value))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert!(!samples(new).is_empty(), "{new}");
        assert_eq!(
            samples(new),
            samples(old),
            "{old} is {new} under its old name"
        );
    }
    assert!(doc.get("levee_received_bytes_total", &zz) >= 700.0);
    assert!(doc.get("levee_sent_bytes_total", &zz) >= 700.0);
}
