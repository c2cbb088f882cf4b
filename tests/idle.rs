//! Idle client connections are closed after the listener's `idle_timeout`, on HTTP/1.1
//! keep-alive and HTTP/2 alike, but never while a request is still in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::client::{Proto, raw_exchange};
use common::*;
use tokio::net::TcpStream;

fn plain_levee(backend: &Backend) -> Levee {
    let toml = server_toml(1)
        + &listener_toml("web", "web", None, "", "idle_timeout = \"1s\"")
        + &pool_toml("web", &[backend.addr], "");
    start_levee(&toml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http1_keep_alive_connection_is_closed_after_idle_timeout() {
    let backend = Backend::start("b1");
    let levee = plain_levee(&backend);
    let tcp = TcpStream::connect(levee.addr("web")).await.unwrap();
    let started = Instant::now();
    // Keep-alive request: levee answers, then must close the idle connection by itself.
    let reply = raw_exchange(tcp, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 200);
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_idle_timeout_is_not_cut() {
    let backend = Backend::start("b1");
    let levee = plain_levee(&backend);
    let tcp = TcpStream::connect(levee.addr("web")).await.unwrap();
    let started = Instant::now();
    let reply = raw_exchange(tcp, b"GET /slow?ms=1800 HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert!(started.elapsed() >= Duration::from_millis(1800));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2_connection_is_closed_after_idle_timeout() {
    let backend = Backend::start("b1");
    let levee = plain_levee(&backend);
    let mut conn = Conn::plain(levee.addr("web"), Proto::H2).await;
    assert_eq!(conn.get("/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let req = conn
        .request("GET", "/")
        .body(common::body::empty())
        .unwrap();
    let after_idle = conn.try_send(req).await;
    assert!(
        after_idle.is_err(),
        "h2 connection still open: {after_idle:?}"
    );
}
