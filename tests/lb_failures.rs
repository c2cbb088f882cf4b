//! Failure handling of a pool: the retry budget caps upstream attempts when every backend
//! fails, and `max_connections` with a bounded queue answers 503 beyond the queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_caps_attempts_when_every_backend_fails() {
    let failing: Vec<Resetter> = (0..3).map(|_| Resetter::start()).collect();
    let addrs: Vec<SocketAddr> = failing.iter().map(|r| r.addr).collect();
    let toml = server_toml(2)
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &addrs, "retries = 2\nretry_budget_percent = 20");
    let levee = start_levee(&toml);
    let mut conn_errors = 0;
    let requests = 300u64;
    let started = Instant::now();
    for _ in 0..requests {
        let mut c = Conn::plain(levee.addr("web"), Proto::H1).await;
        let reply = c.get("/").await;
        assert_eq!(reply.status, 502, "{}", reply.text());
        conn_errors += 1;
    }
    let elapsed = started.elapsed().as_secs() + 1;
    let attempts: u64 = failing.iter().map(Resetter::accepted).sum();
    // One attempt per request, plus at most 20% in retries, plus the budget's floor of
    // 10 retries at start and 10 per second.
    let ceiling = requests + requests / 5 + 10 + 10 * elapsed;
    assert!(
        attempts >= requests,
        "{attempts} attempts for {requests} requests"
    );
    assert!(
        attempts <= ceiling,
        "{attempts} upstream attempts for {requests} requests (ceiling {ceiling})"
    );
    assert_eq!(conn_errors, requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_queue_answers_503_beyond_the_queue() {
    let backend = Backend::start("b1");
    let toml = server_toml(2)
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml(
            "web",
            &[backend.addr],
            "max_connections = 1\nqueue_size = 2\nqueue_timeout = \"10s\"",
        );
    let levee = start_levee(&toml);
    let addr = levee.addr("web");
    // Three requests: one takes the slot, two wait in the queue.
    let mut holders = Vec::new();
    for _ in 0..3 {
        holders.push(tokio::spawn(async move {
            let mut c = Conn::plain(addr, Proto::H1).await;
            c.get("/slow?ms=700").await.status
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The fourth finds the slot taken and the queue full: 503 at once.
    let started = Instant::now();
    let mut c = Conn::plain(addr, Proto::H1).await;
    let reply = c.get("/").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_millis(500));
    for h in holders {
        assert_eq!(h.await.unwrap(), 200);
    }
    // The three admitted requests all reached the backend, the refused one did not.
    assert_eq!(backend.requests(), 3);
}
