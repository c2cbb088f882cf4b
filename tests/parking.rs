//! HTTP/1.1 keep-alive connections over TLS are parked after a second between requests
//! (hyper's buffers and state dropped, the TLS stream kept): every shape of what comes
//! next is still served on the same connection — a plain next request, one after a
//! request body, a head that arrives in two parts across the park, pipelined requests
//! with a partial one behind them — and a parked connection still closes at
//! `idle_timeout`, with a clean TLS close.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::client::tls_connect;
use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longer than levee's park delay (one second between requests).
const PARKED: Duration = Duration::from_millis(2200);

/// Bound on every read.
const STEP: Duration = Duration::from_secs(10);

struct Setup {
    ca: TestCa,
    _backend: Backend,
    levee: Levee,
}

fn setup(http: &str) -> Setup {
    let ca = TestCa::new();
    let leaf = ca.leaf("leaf", &["park.test"]);
    let backend = Backend::start("b1");
    let toml = server_toml(1)
        + &listener_toml("tls", "web", Some(&[&leaf]), "", http)
        + &pool_toml("web", &[backend.addr], "");
    let levee = start_levee(&toml);
    Setup {
        ca,
        _backend: backend,
        levee,
    }
}

impl Setup {
    async fn connect(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let cfg = client_config(&self.ca.der(), TlsOpts::default().h1());
        let (tls, _) = tls_connect(self.levee.addr("tls"), cfg, "park.test")
            .await
            .unwrap();
        tls
    }
}

/// One response off the stream: status and body (Content-Length or chunked).
async fn response<S: AsyncRead + Unpin>(stream: &mut S, pending: &mut Vec<u8>) -> (u16, Vec<u8>) {
    let read = async {
        let head_end = loop {
            if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            fill(stream, pending).await;
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        pending.drain(..head_end);
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse::<usize>().unwrap());
        let body = match length {
            Some(n) => {
                while pending.len() < n {
                    fill(stream, pending).await;
                }
                pending.drain(..n).collect()
            }
            None => {
                // Chunked: the raw chunks up to the last one.
                while !pending.windows(5).any(|w| w == b"0\r\n\r\n") {
                    fill(stream, pending).await;
                }
                let end = pending.windows(5).position(|w| w == b"0\r\n\r\n").unwrap() + 5;
                pending.drain(..end).collect()
            }
        };
        (status, body)
    };
    tokio::time::timeout(STEP, read)
        .await
        .expect("response timed out")
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, pending: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.expect("read");
    assert!(
        n > 0,
        "connection closed; had {:?}",
        String::from_utf8_lossy(pending)
    );
    pending.extend_from_slice(&chunk[..n]);
}

/// Waits past the park delay, then a GET on the same connection must be answered.
async fn get_after_park<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, pending: &mut Vec<u8>) {
    tokio::time::sleep(PARKED).await;
    send(stream, GET).await;
    assert_eq!(response(stream, pending).await, (200, B1.to_vec()));
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
}

/// The test backend's answer to `GET /`.
const B1: &[u8] = b"hello from b1\n";

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: park.test\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_serves_the_next_requests() {
    let s = setup("");
    let mut tls = s.connect().await;
    let mut pending = Vec::new();
    for round in 0..3 {
        send(&mut tls, GET).await;
        let (status, body) = response(&mut tls, &mut pending).await;
        assert_eq!((status, &body[..]), (200, B1), "round {round}");
        tokio::time::sleep(PARKED).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_then_a_park_then_the_next_request() {
    let s = setup("");
    let mut tls = s.connect().await;
    let mut pending = Vec::new();
    let post = b"POST /echo HTTP/1.1\r\nHost: park.test\r\nContent-Length: 11\r\n\r\nhello world";
    send(&mut tls, post).await;
    let (status, body) = response(&mut tls, &mut pending).await;
    assert_eq!(status, 200);
    assert!(
        body.windows(11).any(|w| w == b"hello world"),
        "{:?}",
        String::from_utf8_lossy(&body)
    );
    get_after_park(&mut tls, &mut pending).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_in_two_parts_across_the_park_is_served() {
    let s = setup("");
    let mut tls = s.connect().await;
    let mut pending = Vec::new();
    send(&mut tls, GET).await;
    assert_eq!(response(&mut tls, &mut pending).await.0, 200);
    tokio::time::sleep(PARKED).await;
    // Half a head: hyper holds it when the next park is tried, and must get it back.
    send(&mut tls, b"GET / HTTP/1.1\r\nHo").await;
    tokio::time::sleep(PARKED).await;
    send(&mut tls, b"st: park.test\r\n\r\n").await;
    assert_eq!(response(&mut tls, &mut pending).await, (200, B1.to_vec()));
    // And it parks and serves again after that.
    get_after_park(&mut tls, &mut pending).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_with_a_partial_one_survive_the_park() {
    let s = setup("");
    let mut tls = s.connect().await;
    let mut pending = Vec::new();
    let mut burst = [GET, GET].concat();
    burst.extend_from_slice(b"GET / HTTP/1.1\r\nHost: pa");
    send(&mut tls, &burst).await;
    for _ in 0..2 {
        assert_eq!(response(&mut tls, &mut pending).await, (200, B1.to_vec()));
    }
    tokio::time::sleep(PARKED).await;
    send(&mut tls, b"rk.test\r\n\r\n").await;
    assert_eq!(response(&mut tls, &mut pending).await, (200, B1.to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_closes_cleanly_at_idle_timeout() {
    let s = setup("idle_timeout = \"3s\"");
    let mut tls = s.connect().await;
    let mut pending = Vec::new();
    send(&mut tls, GET).await;
    assert_eq!(response(&mut tls, &mut pending).await.0, 200);
    let idle_from = Instant::now();
    // A clean close: close_notify, so the TLS read ends with Ok(0), not an error.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(STEP, tls.read_to_end(&mut rest)).await;
    let waited = idle_from.elapsed();
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    assert!(
        waited >= Duration::from_millis(2800) && waited < Duration::from_secs(6),
        "closed after {waited:?}"
    );
}
