//! `[listeners.http] send_timeout`: a client that stops reading its response is closed once
//! writing to it has made no progress for that long, with the request's backend side, and
//! counted; a slow client that keeps reading is not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::client::closed_within;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn levee_for(backend: &Backend, send_timeout: &str) -> Levee {
    let http = format!("send_timeout = \"{send_timeout}\"");
    let toml = server_toml(1)
        + &listener_toml("web", "web", None, "", &http)
        + &pool_toml("web", &[backend.addr], "");
    start_levee(&toml)
}

const BIG: &[u8] = b"GET /download?bytes=200000000 HTTP/1.1\r\nHost: a\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_at_send_timeout() {
    let backend = Backend::start("b1");
    let levee = levee_for(&backend, "1s");
    let mut tcp = TcpStream::connect(levee.addr("web")).await.unwrap();
    tcp.write_all(BIG).await.unwrap();
    // Never read: levee's writes fill the socket buffers, then wait.
    let started = Instant::now();
    while levee.totals().send_timeouts == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no send timeout"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "too early: {took:?}");
    // Both sides closed: the backend's request ends, and the client's stream ends after
    // what was already in flight.
    let pools = levee.running().snapshot();
    let state = &pools.pools[0].backends[0].state;
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.in_flight() != 0 {
        assert!(
            Instant::now() < deadline,
            "the backend request is still in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = closed_within(&mut tcp, Duration::from_secs(10)).await;
    assert!(drained.is_some(), "the client connection stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_that_keeps_reading_is_not_cut() {
    // Progress as levee sees it is the kernel's: a waiting write resumes only once a good
    // part of the socket's send buffer (megabytes on loopback) has drained, so the reader
    // here is slow (about 2.5 MB/s, against gigabytes a second when it reads freely) but not
    // so slow that draining that part takes longer than send_timeout.
    let backend = Backend::start("b1");
    let levee = levee_for(&backend, "3s");
    let mut tcp = TcpStream::connect(levee.addr("web")).await.unwrap();
    let head = b"GET /download?bytes=8000000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    tcp.write_all(head).await.unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let started = Instant::now();
    loop {
        let n = tcp.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n;
        if started.elapsed() < Duration::from_secs(6) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(got > 8_000_000, "cut after {got} bytes");
    assert_eq!(levee.totals().send_timeouts, 0);
}
