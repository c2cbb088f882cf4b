//! Large bodies stream through intact both ways, over HTTP/1.1 and h2 (compared by SHA-256).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::Proto;
use common::*;

const TEN_MB: u64 = 10 * 1024 * 1024;

struct Setup {
    ca: TestCa,
    backend: Backend,
    levee: Levee,
}

fn setup() -> Setup {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["localhost"]);
    let backend = Backend::start("bulk");
    let toml = server_toml(2)
        + &listener_toml(
            "tls",
            "web",
            Some(&[&leaf]),
            "",
            "max_body_bytes = 67108864",
        )
        + &pool_toml("web", &[backend.addr], "response_timeout = \"60s\"");
    Setup {
        ca,
        backend,
        levee: start_levee(&toml),
    }
}

async fn conn(s: &Setup, proto: Proto) -> Conn {
    let opts = match proto {
        Proto::H1 => TlsOpts::default().h1(),
        Proto::H2 => TlsOpts::default().h2(),
    };
    let cfg = client_config(&s.ca.der(), opts);
    Conn::tls(s.levee.addr("tls"), cfg, "localhost", proto).await
}

async fn upload(proto: Proto, chunked: bool) {
    let s = setup();
    let mut c = conn(&s, proto).await;
    let body = if chunked {
        pattern_chunked(TEN_MB)
    } else {
        pattern(TEN_MB)
    };
    let req = c.request("POST", "/digest").body(body).unwrap();
    let reply = c.send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("x-body-len"),
        Some(TEN_MB.to_string().as_str())
    );
    assert_eq!(
        reply.header("x-body-sha256"),
        Some(pattern_sha256(TEN_MB).as_str())
    );
    assert_eq!(s.backend.requests(), 1);
    let t = s
        .levee
        .wait_totals(std::time::Duration::from_secs(5), |t| t.bytes_in >= TEN_MB)
        .await;
    assert!(t.bytes_in >= TEN_MB, "bytes_in {}", t.bytes_in);
}

async fn download(proto: Proto, chunked: bool) {
    let s = setup();
    let mut c = conn(&s, proto).await;
    let path = if chunked {
        format!("/download?bytes={TEN_MB}&chunked=1")
    } else {
        format!("/download?bytes={TEN_MB}")
    };
    let reply = c.get(&path).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len() as u64, TEN_MB);
    assert_eq!(sha256(&reply.body), pattern_sha256(TEN_MB));
    // The connection is still good afterwards (the upstream connection went back clean).
    let again = c.get("/").await;
    assert_eq!(again.text(), "hello from bulk\n");
    let t = s
        .levee
        .wait_totals(std::time::Duration::from_secs(5), |t| t.bytes_out >= TEN_MB)
        .await;
    assert!(t.bytes_out >= TEN_MB, "bytes_out {}", t.bytes_out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_10mb_over_http11() {
    upload(Proto::H1, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_10mb_chunked_over_http11() {
    upload(Proto::H1, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_10mb_over_h2() {
    upload(Proto::H2, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_10mb_without_length_over_h2() {
    upload(Proto::H2, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_10mb_over_http11() {
    download(Proto::H1, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_10mb_chunked_over_http11() {
    download(Proto::H1, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_10mb_over_h2() {
    download(Proto::H2, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_streams_the_body_back_over_both_protocols() {
    let s = setup();
    for proto in [Proto::H1, Proto::H2] {
        let mut c = conn(&s, proto).await;
        let n = 300 * 1024;
        let req = c.request("POST", "/echo").body(pattern(n)).unwrap();
        let reply = c.send(req).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.len() as u64, n, "{proto:?}");
        assert_eq!(sha256(&reply.body), pattern_sha256(n), "{proto:?}");
    }
}
