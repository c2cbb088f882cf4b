//! No delayed-ACK stall with backends that write the response head and body in separate
//! sends without TCP_NODELAY (Python's `http.server`, many dev servers), write the head
//! itself in pieces, or stream a chunked body in small writes: each response completes in
//! well under the 40 ms of a delayed ACK, on new and on reused connections, to levee and
//! to the backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::client::{Conn, Proto, raw_exchange};
use common::split_backend::SplitBackend;
use common::*;
use tokio::net::TcpStream;

/// Requests per case.
const ROUNDS: usize = 30;

/// A response slower than this is a stall (a delayed ACK costs 40 ms on Linux).
const STALL: Duration = Duration::from_millis(20);

fn levee_for(backend: &SplitBackend) -> Levee {
    start_levee(
        &(server_toml(1)
            + &listener_toml("web", "web", None, "", "")
            + &pool_toml("web", &[backend.addr], "")),
    )
}

/// The 90th percentile of `times`, with all of them for the message.
fn p90(mut times: Vec<Duration>) -> (Duration, String) {
    times.sort_unstable();
    let shown = format!("{times:?}");
    (times[times.len() * 9 / 10], shown)
}

fn assert_no_stall(case: &str, times: Vec<Duration>) {
    let (p90, all) = p90(times);
    assert!(
        p90 < STALL,
        "{case}: p90 {p90:?} (a delayed-ACK stall); all: {all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_writes_do_not_stall_on_new_connections() {
    let backend = SplitBackend::start();
    let levee = levee_for(&backend);
    let paths = [
        "/split",
        "/chunks",
        "/pieces",
        "/split?close",
        "/chunks?close",
        "/pieces?close",
    ];
    for path in paths {
        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            // A new client connection each time, and with `?close` a new backend one too.
            let head = format!("GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n");
            let tcp = TcpStream::connect(levee.addr("web")).await.unwrap();
            let started = Instant::now();
            let reply = raw_exchange(tcp, head.as_bytes()).await;
            times.push(started.elapsed());
            assert_eq!(reply.status, 200, "{}", reply.head);
        }
        assert_no_stall(path, times);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_writes_do_not_stall_on_kept_alive_connections() {
    let backend = SplitBackend::start();
    let levee = levee_for(&backend);
    let mut conn = Conn::plain(levee.addr("web"), Proto::H1).await;
    for path in ["/split", "/chunks", "/pieces"] {
        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let reply = conn.get(path).await;
            times.push(started.elapsed());
            assert_eq!(reply.status, 200);
            let want = match path {
                "/split" => 64,
                "/pieces" => 32,
                _ => 8 * 16,
            };
            assert_eq!(reply.body.len(), want, "{path}");
        }
        assert_no_stall(path, times);
    }
}
