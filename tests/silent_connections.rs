//! A connection that sends nothing useful is closed at the listener's `header_timeout`, not
//! held to the idle timeout (or forever): an h2-over-TLS connection that never sends the
//! HTTP/2 preface, and a plain connection that sends nothing. A connection that did send a
//! request, or the h2 preface, is left to the idle timeout as before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::client::{Conn, Proto, TlsOpts, client_config_insecure, closed_within, tls_connect};
use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// header_timeout 1 s, idle_timeout 30 s: a close within a few seconds is the header
/// deadline's, not the idle one's.
const HTTP: &str = "header_timeout = \"1s\"\nidle_timeout = \"30s\"";

fn levee_with(backend: &Backend, tls: bool) -> Levee {
    let certs: &[&Leaf] = &[];
    let toml = server_toml(1)
        + &listener_toml("web", "web", tls.then_some(certs), "", HTTP)
        + &pool_toml("web", &[backend.addr], "");
    start_levee(&toml)
}

/// How long until the peer closes (at most 10 s).
async fn time_to_close<S: AsyncRead + Unpin>(stream: &mut S) -> Duration {
    closed_within(stream, Duration::from_secs(10))
        .await
        .expect("still open after 10 s")
}

fn assert_header_deadline(took: Duration) {
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
}

async fn h2_tls(addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = client_config_insecure(TlsOpts::default().h2());
    let (tls, info) = tls_connect(addr, config, "localhost").await.unwrap();
    assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_connection_without_a_preface_is_closed_at_header_timeout() {
    let backend = Backend::start("b1");
    let levee = levee_with(&backend, true);
    let mut tls = h2_tls(levee.addr("web")).await;
    assert_header_deadline(time_to_close(&mut tls).await);
    // Half a preface is not a preface.
    let mut tls = h2_tls(levee.addr("web")).await;
    tls.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert_header_deadline(time_to_close(&mut tls).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_plain_connection_is_closed_at_header_timeout() {
    let backend = Backend::start("b1");
    let levee = levee_with(&backend, false);
    let mut tcp = TcpStream::connect(levee.addr("web")).await.unwrap();
    assert_header_deadline(time_to_close(&mut tcp).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_spoke_are_left_to_the_idle_timeout() {
    let backend = Backend::start("b1");
    let levee = levee_with(&backend, true);
    let config = client_config_insecure(TlsOpts::default().h2());
    let mut h2 = Conn::tls(levee.addr("web"), config, "localhost", Proto::H2).await;
    assert_eq!(h2.get("/").await.status, 200);
    // A preface and its SETTINGS, no request yet (a browser's preconnect).
    let mut preconnected = h2_tls(levee.addr("web")).await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    preconnected.write_all(preface).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(h2.get("/").await.status, 200, "after header_timeout");
    let mut buf = [0u8; 256];
    // Still open: the server's SETTINGS (and its ACK) arrive, no close.
    let read = tokio::time::timeout(Duration::from_millis(500), preconnected.read(&mut buf));
    match read.await {
        Ok(Ok(n)) => assert!(n > 0, "closed"),
        Ok(Err(e)) => panic!("closed: {e}"),
        Err(_) => {}
    }
}
