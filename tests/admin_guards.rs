//! The admin API defends itself as the listeners do: a half-sent request is closed at the
//! header deadline, and connections beyond the cap are closed at once, while the API keeps
//! answering once they are gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::admin::server_with_admin;
use common::client::closed_within;
use common::*;
use levee::admin::{ADMIN_HEADER_TIMEOUT, ADMIN_MAX_CONNECTIONS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn levee_with_admin(backend: &Backend) -> (Levee, SocketAddr) {
    let toml = server_with_admin()
        + &listener_toml("web", "web", None, "", "")
        + &pool_toml("web", &[backend.addr], "");
    let levee = start_levee(&toml);
    let admin = levee.running().admin_addr().expect("admin API enabled");
    (levee, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_admin_request_is_closed_at_the_header_deadline() {
    let backend = Backend::start("b1");
    let (_levee, admin) = levee_with_admin(&backend);
    let mut tcp = TcpStream::connect(admin).await.unwrap();
    tcp.write_all(b"GET /stats HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut tcp, ADMIN_HEADER_TIMEOUT * 3)
        .await
        .expect("still open at three times the header deadline");
    assert!(
        took >= ADMIN_HEADER_TIMEOUT - Duration::from_millis(500),
        "closed early: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_beyond_the_cap_are_closed_at_once() {
    let backend = Backend::start("b1");
    let (_levee, admin) = levee_with_admin(&backend);
    let mut held = Vec::new();
    for _ in 0..ADMIN_MAX_CONNECTIONS {
        held.push(TcpStream::connect(admin).await.unwrap());
    }
    // Accepted in order, so this one comes after the cap is full.
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let mut extra = TcpStream::connect(admin).await.unwrap();
    let closed = closed_within(&mut extra, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "a connection beyond the cap was kept");
    drop(held);
    // Once they are gone (their slots come back as levee sees each close), the API answers
    // again; until then a connection may still be closed unanswered.
    let mut answered = false;
    for _ in 0..50 {
        let mut tcp = TcpStream::connect(admin).await.unwrap();
        tcp.write_all(healthz).await.unwrap();
        let mut reply = Vec::new();
        let read = tcp.read_to_end(&mut reply);
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
        if reply.starts_with(b"HTTP/1.1 200") {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answered,
        "the admin API did not answer after the flood left"
    );
}
