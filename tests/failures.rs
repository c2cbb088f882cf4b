//! Upstream failures answer fast and clearly (502, 504), and request limits answer 431/413.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::client::{Proto, raw_head, tls_connect};
use common::*;

struct Setup {
    ca: TestCa,
    levee: Levee,
}

/// Listener "tls" to pool "web" (`backends`, `pool_extra`), with `http` limits.
fn setup(backends: &[SocketAddr], pool_extra: &str, http: &str) -> Setup {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["localhost"]);
    let toml = server_toml(2)
        + &listener_toml("tls", "web", Some(&[&leaf]), "", http)
        + &pool_toml("web", backends, pool_extra);
    Setup {
        levee: start_levee(&toml),
        ca,
    }
}

impl Setup {
    async fn conn(&self, proto: Proto) -> Conn {
        let opts = match proto {
            Proto::H1 => TlsOpts::default().h1(),
            Proto::H2 => TlsOpts::default().h2(),
        };
        let cfg = client_config(&self.ca.der(), opts);
        Conn::tls(self.levee.addr("tls"), cfg, "localhost", proto).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_answers_502_within_a_second() {
    let down = closed_addr();
    let s = setup(&[down], "connect_timeout = \"3s\"", "");
    for proto in [Proto::H1, Proto::H2] {
        let mut c = s.conn(proto).await;
        for _ in 0..2 {
            let started = Instant::now();
            let reply = c.get("/").await;
            let elapsed = started.elapsed();
            assert_eq!(reply.status, 502, "{proto:?}: {}", reply.text());
            assert!(
                elapsed < Duration::from_secs(1),
                "{proto:?}: took {elapsed:?}"
            );
            assert!(reply.text().contains("502"), "body {:?}", reply.text());
            assert!(
                reply
                    .header("content-type")
                    .is_some_and(|v| v.starts_with("text/plain")),
                "{:?}",
                reply.headers
            );
        }
    }
    let t = s.levee.totals();
    assert!(t.requests[4] >= 4, "5xx counted: {:?}", t.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_that_never_answers_gets_504_at_the_response_timeout() {
    let backend = Backend::start("hang");
    let s = setup(&[backend.addr], "response_timeout = \"1s\"", "");
    for proto in [Proto::H1, Proto::H2] {
        let mut c = s.conn(proto).await;
        let started = Instant::now();
        let reply = c.get("/hang").await;
        let elapsed = started.elapsed();
        assert_eq!(reply.status, 504, "{proto:?}: {}", reply.text());
        assert!(reply.text().contains("504"), "body {:?}", reply.text());
        assert!(
            elapsed >= Duration::from_millis(900),
            "{proto:?}: 504 after {elapsed:?}, before the timeout"
        );
        assert!(
            elapsed < Duration::from_secs(3),
            "{proto:?}: 504 after {elapsed:?}"
        );
        // The client connection is still usable, and a slow-but-in-time answer passes.
        let reply = c.get("/slow?ms=200").await;
        assert_eq!(reply.status, 200, "{proto:?}");
        assert_eq!(reply.text(), "slow done by hang\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_backend_does_not_hide_a_good_one() {
    let good = Backend::start("good");
    let down = closed_addr();
    let s = setup(&[down, good.addr], "", "");
    let mut c = s.conn(Proto::H1).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(c.get("/").await.status.as_u16());
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 502),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_head_over_max_header_bytes_gets_431() {
    let backend = Backend::start("b1");
    let s = setup(&[backend.addr], "", "max_header_bytes = 8192");
    let cfg = client_config(&s.ca.der(), TlsOpts::default().h1());
    let (mut tls, _) = tls_connect(s.levee.addr("tls"), cfg, "localhost")
        .await
        .unwrap();
    let big = "x".repeat(16 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n");
    let reply = raw_head(&mut tls, request.as_bytes()).await;
    assert_eq!(reply.status, 431, "{}", reply.head);
    assert_eq!(backend.requests(), 0);

    // Just under the limit still passes.
    let mut c = s.conn(Proto::H1).await;
    let req = c
        .request("GET", "/")
        .header("x-medium", "y".repeat(4 * 1024))
        .body(empty())
        .unwrap();
    assert_eq!(c.send(req).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_over_max_body_bytes_gets_413() {
    let backend = Backend::start("b1");
    let s = setup(&[backend.addr], "", "max_body_bytes = 1024");
    for proto in [Proto::H1, Proto::H2] {
        let mut c = s.conn(proto).await;
        let req = c
            .request("POST", "/digest")
            .body(full(vec![7u8; 4096]))
            .unwrap();
        let reply = c.send(req).await;
        assert_eq!(reply.status, 413, "{proto:?}: {}", reply.text());
        assert_eq!(backend.requests(), 0, "{proto:?}: the backend was bothered");
    }
    // A body at the limit passes.
    let mut c = s.conn(Proto::H1).await;
    let req = c
        .request("POST", "/digest")
        .body(full(vec![7u8; 1024]))
        .unwrap();
    let reply = c.send(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-body-len"), Some("1024"));

    // A declared length over the limit is refused without waiting for the body.
    let cfg = client_config(&s.ca.der(), TlsOpts::default().h1());
    let (mut tls, _) = tls_connect(s.levee.addr("tls"), cfg, "localhost")
        .await
        .unwrap();
    let head = b"POST /digest HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000\r\n\r\n";
    let reply = raw_head(&mut tls, head).await;
    assert_eq!(reply.status, 413, "{}", reply.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_body_over_max_body_bytes_gets_413() {
    let backend = Backend::start("b1");
    let s = setup(&[backend.addr], "", "max_body_bytes = 65536");
    for proto in [Proto::H1, Proto::H2] {
        let mut c = s.conn(proto).await;
        // No Content-Length: the limit can only be found while streaming.
        let req = c
            .request("POST", "/digest")
            .body(pattern_chunked(1024 * 1024))
            .unwrap();
        match c.try_send(req).await {
            Ok(reply) => assert_eq!(reply.status, 413, "{proto:?}: {}", reply.text()),
            // Refusing mid-body may also reset the stream/connection; never a hang or 2xx.
            Err(e) => {
                eprintln!("{proto:?}: over-limit body ended with an error: {e}");
                assert!(!e.contains("timed out"), "{proto:?}: {e}");
            }
        }
    }
}
