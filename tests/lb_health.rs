//! Backend health: active checks take a dead backend out within `fall x interval` and put it
//! back within `rise x interval`; outlier detection ejects a backend that resets connections;
//! `GET /pools` on the admin API shows all of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_takes_a_dead_backend_out_and_puts_it_back() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let b_addr = b.addr;
    let (interval, rise, fall) = (Duration::from_millis(200), 2u32, 3u32);
    let check = format!(
        "[pools.web.health_check]\npath = \"/health\"\ninterval = \"200ms\"\n\
         timeout = \"100ms\"\nrise = {rise}\nfall = {fall}\n"
    );
    let toml = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[a.addr, b_addr], &check);
    let levee = start_levee(&toml);
    // The probe: GET path, Host = the backend address.
    assert!(b.wait_requests(1, SLACK * 2).await, "no check reached b");
    let probe = b.last();
    let host = probe.header("host");
    assert_eq!(
        (probe.target.as_str(), host),
        ("/health", Some(b_addr.to_string()))
    );

    b.stop();
    let took = wait_state(&levee, "web", b_addr, "down", interval * fall + SLACK).await;
    eprintln!("marked down after {took:?}");
    // While b is down every request goes to a, which stays up.
    let mut c = Conn::plain(levee.addr("web"), Proto::H1).await;
    for _ in 0..6 {
        let reply = c.get("/").await;
        assert_eq!((reply.status.as_u16(), reply.backend()), (200, Some("a")));
    }

    let b = Backend::start_at("b", b_addr);
    let took = wait_state(&levee, "web", b_addr, "up", interval * rise + SLACK).await;
    eprintln!("marked up after {took:?}");
    let before = b.requests();
    for _ in 0..6 {
        assert_eq!(c.get("/").await.status, 200);
    }
    let proxied = b.seen()[before as usize..]
        .iter()
        .filter(|s| s.target == "/")
        .count();
    assert!(
        proxied >= 2,
        "b got {proxied} of 6 requests after coming back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_check_marks_a_closed_port_down() {
    let a = Backend::start("a");
    let dead = closed_addr();
    let check = "[pools.web.health_check]\ntype = \"tcp\"\ninterval = \"100ms\"\n\
                 timeout = \"100ms\"\nfall = 2\n";
    let toml = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[a.addr, dead], check);
    let levee = start_levee(&toml);
    wait_state(
        &levee,
        "web",
        dead,
        "down",
        Duration::from_millis(200) + SLACK,
    )
    .await;
    let doc = pools(&levee).await;
    assert_eq!(backend_entry(&doc, "web", a.addr)["state"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_a_backend_that_resets_connections() {
    let good = Backend::start("good");
    let bad = Resetter::start();
    let outlier = "[pools.web.outlier_detection]\nconsecutive_failures = 3\n\
                   ejection_time = \"30s\"\nmax_ejected_percent = 50\n";
    let toml = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml(
            "web",
            &[good.addr, bad.addr],
            &format!("retries = 2\n{outlier}"),
        );
    let levee = start_levee(&toml);
    let mut c = Conn::plain(levee.addr("web"), Proto::H1).await;
    let started = Instant::now();
    while backend_entry(&pools(&levee).await, "web", bad.addr)["state"] != "ejected" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not ejected after {} attempts on it: {}",
            bad.accepted(),
            pools(&levee).await
        );
        // A request that meets the resetter may fail (502) when it cannot be retried.
        let reply = c.get("/").await;
        assert!(
            matches!(reply.status.as_u16(), 200 | 502),
            "{}",
            reply.text()
        );
    }
    let doc = pools(&levee).await;
    let entry = backend_entry(&doc, "web", bad.addr);
    assert!(entry["failures"].as_u64().unwrap() >= 3, "{entry}");
    // max_ejected_percent = 50 of 2 backends: the good one stays up and gets everything now.
    assert_eq!(backend_entry(&doc, "web", good.addr)["state"], "up");
    let attempts = bad.accepted();
    for _ in 0..10 {
        let reply = c.get("/").await;
        assert_eq!(
            (reply.status.as_u16(), reply.backend()),
            (200, Some("good"))
        );
    }
    assert_eq!(bad.accepted(), attempts, "an ejected backend got requests");
}

/// The keys of a backend in `/pools`, sorted.
const BACKEND_KEYS: [&str; 8] = [
    "address",
    "consecutive_failures",
    "failures",
    "in_flight",
    "latency_ewma_ms",
    "requests",
    "state",
    "weight",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_endpoint_lists_every_pool_and_backend() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let toml = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[a.addr, b.addr], "")
        + &format!(
            "[pools.api]\nalgorithm = \"least_conn\"\n\
             [[pools.api.backends]]\naddress = \"{}\"\nweight = 5\n",
            a.addr
        );
    let levee = start_levee(&toml);
    let mut c = Conn::plain(levee.addr("web"), Proto::H1).await;
    for _ in 0..4 {
        assert_eq!(c.get("/").await.status, 200);
    }
    let doc = pools(&levee).await;
    let list = doc["pools"].as_array().expect("pools is an array");
    let names: Vec<&str> = list.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api", "web"]);
    assert_eq!(list[0]["algorithm"], "least_conn");
    assert_eq!(list[1]["algorithm"], "round_robin");
    assert_eq!(list[0]["backends"][0]["weight"], 5);
    for (pool, addr) in [("web", a.addr), ("web", b.addr), ("api", a.addr)] {
        let e = backend_entry(&doc, pool, addr);
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BACKEND_KEYS, "{e}");
        assert_eq!(e["state"], "up");
        assert_eq!(e["in_flight"], 0);
        assert_eq!(e["failures"], 0);
        assert!(e["latency_ewma_ms"].is_number(), "{e}");
    }
    for addr in [a.addr, b.addr] {
        let e = backend_entry(&doc, "web", addr);
        assert_eq!(e["requests"], 2, "{e}");
        assert!(e["latency_ewma_ms"].as_f64().unwrap() > 0.0, "{e}");
    }
    let admin = levee.running().admin_addr().unwrap();
    let mut c = Conn::plain(admin, Proto::H1).await;
    let req = c.request("POST", "/pools").body(empty()).unwrap();
    assert_eq!(c.send(req).await.status, 405);
}
