//! TLS termination: certificate choice by SNI (default when absent or unknown), ALPN, protocol
//! versions, the generated certificate, and the handshake deadline for silent clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::client::{Proto, TLS12, TLS13, tls_connect};
use common::*;
use levee::stats::HandshakeKind;
use rustls::ProtocolVersion;
use tokio::io::AsyncReadExt;

struct Sni {
    ca: TestCa,
    a: Leaf,
    b: Leaf,
    _backend: Backend,
    levee: Levee,
}

/// A listener with a.test (first, so the default) and b.test.
fn sni_setup() -> Sni {
    let ca = TestCa::new();
    let a = ca.leaf("a", &["a.test"]);
    let b = ca.leaf("b", &["b.test"]);
    let backend = Backend::start("b1");
    let toml = server_toml(2)
        + &listener_toml("tls", "web", Some(&[&a, &b]), "", "")
        + &pool_toml("web", &[backend.addr], "");
    let levee = start_levee(&toml);
    Sni {
        ca,
        a,
        b,
        _backend: backend,
        levee,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sni_name_gets_its_own_certificate() {
    let s = sni_setup();
    let addr = s.levee.addr("tls");
    for (name, leaf) in [("a.test", &s.a), ("b.test", &s.b)] {
        for versions in [TLS13, TLS12] {
            // Verified against the CA for that name, and the exact leaf compared.
            let cfg = client_config(&s.ca.der(), TlsOpts::default().versions(versions));
            let (reply, info) = tls_get(addr, cfg, name, Proto::H1, "/").await;
            assert_eq!(reply.status, 200);
            assert_eq!(info.peer_cert.as_ref(), Some(&leaf.der), "{name}");
        }
    }
    assert_ne!(s.a.der, s.b.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sni_gets_the_default_certificate() {
    let s = sni_setup();
    let addr = s.levee.addr("tls");
    let no_sni = TlsOpts {
        sni: false,
        ..TlsOpts::default()
    };
    for versions in [TLS13, TLS12] {
        // Verified for a.test while sending no SNI at all.
        let cfg = client_config(&s.ca.der(), no_sni.clone().versions(versions));
        let (reply, info) = tls_get(addr, cfg, "a.test", Proto::H1, "/").await;
        assert_eq!(reply.status, 200);
        assert_eq!(info.peer_cert.as_ref(), Some(&s.a.der));
        // Asking to verify b.test without SNI fails: the default (a.test) is served.
        let cfg = client_config(&s.ca.der(), no_sni.clone().versions(versions));
        assert!(tls_connect(addr, cfg, "b.test").await.is_err());
    }
    // An IP address as server name sends no SNI either.
    let cfg = client_config_insecure(TlsOpts::default());
    let (_, info) = tls_get(addr, cfg, "127.0.0.1", Proto::H1, "/").await;
    assert_eq!(info.peer_cert.as_ref(), Some(&s.a.der));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sni_gets_the_default_certificate() {
    let s = sni_setup();
    let addr = s.levee.addr("tls");
    let cfg = client_config_insecure(TlsOpts::default());
    let (reply, info) = tls_get(addr, cfg, "unknown.test", Proto::H1, "/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(info.peer_cert.as_ref(), Some(&s.a.der));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_selects_the_protocol_and_both_tls_versions_work() {
    let s = sni_setup();
    let addr = s.levee.addr("tls");
    let cases: [(TlsOpts, Proto, Option<&[u8]>, ProtocolVersion); 4] = [
        (
            TlsOpts::default().h2().versions(TLS13),
            Proto::H2,
            Some(b"h2"),
            ProtocolVersion::TLSv1_3,
        ),
        (
            TlsOpts::default().h2().versions(TLS12),
            Proto::H2,
            Some(b"h2"),
            ProtocolVersion::TLSv1_2,
        ),
        (
            TlsOpts::default().h1().versions(TLS12),
            Proto::H1,
            Some(b"http/1.1"),
            ProtocolVersion::TLSv1_2,
        ),
        // No ALPN at all: HTTP/1.1.
        (
            TlsOpts {
                alpn: Vec::new(),
                ..TlsOpts::default()
            },
            Proto::H1,
            None,
            ProtocolVersion::TLSv1_3,
        ),
    ];
    for (opts, proto, alpn, version) in cases {
        let cfg = client_config(&s.ca.der(), opts);
        let (reply, info) = tls_get(addr, cfg, "b.test", proto, "/").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello from b1\n");
        assert_eq!(info.alpn.as_deref(), alpn);
        assert_eq!(info.version, Some(version));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_without_certificates_serves_a_generated_one() {
    let backend = Backend::start("b1");
    let toml = server_toml(1)
        + &listener_toml("tls", "web", Some(&[]), "", "")
        + &pool_toml("web", &[backend.addr], "");
    let levee = start_levee(&toml);
    let cfg = client_config_insecure(TlsOpts::default());
    let (reply, info) = tls_get(levee.addr("tls"), cfg, "localhost", Proto::H1, "/").await;
    assert_eq!(reply.status, 200);
    assert!(info.peer_cert.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_at_the_handshake_deadline() {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["localhost"]);
    let backend = Backend::start("b1");
    let toml = server_toml(2)
        + &listener_toml(
            "tls",
            "web",
            Some(&[&leaf]),
            "handshake_timeout = \"1s\"",
            "",
        )
        + &pool_toml("web", &[backend.addr], "");
    let levee = start_levee(&toml);
    let addr = levee.addr("tls");
    let failed_before = levee.totals().handshakes_of(HandshakeKind::Failed);

    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("levee kept a silent connection open for 10 s");
    let elapsed = started.elapsed();
    // Closed (EOF or reset), without a byte sent.
    assert!(matches!(read, Ok(0) | Err(_)), "read {read:?}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}, before the 1 s deadline"
    );
    assert!(elapsed < Duration::from_secs(4), "closed after {elapsed:?}");

    let t = levee
        .wait_totals(Duration::from_secs(5), |t| {
            t.handshakes_of(HandshakeKind::Failed) > failed_before
        })
        .await;
    assert_eq!(t.handshakes_of(HandshakeKind::Failed), failed_before + 1);

    // A real client on the same listener is unaffected.
    let cfg = client_config(&ca.der(), TlsOpts::default());
    let (reply, _) = tls_get(addr, cfg, "localhost", Proto::H1, "/").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_mid_handshake_is_closed_at_the_deadline() {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["localhost"]);
    let backend = Backend::start("b1");
    let toml = server_toml(1)
        + &listener_toml(
            "tls",
            "web",
            Some(&[&leaf]),
            "handshake_timeout = \"1s\"",
            "",
        )
        + &pool_toml("web", &[backend.addr], "");
    let levee = start_levee(&toml);
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(levee.addr("tls"))
        .await
        .unwrap();
    // The first bytes of a TLS record header (handshake, TLS 1.0 record version), then silence.
    use tokio::io::AsyncWriteExt;
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("levee kept a stalled handshake open for 10 s");
    assert!(matches!(read, Ok(0) | Err(_)), "read {read:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?}"
    );
    let t = levee
        .wait_totals(Duration::from_secs(5), |t| {
            t.handshakes_of(HandshakeKind::Failed) >= 1
        })
        .await;
    assert_eq!(t.handshakes_of(HandshakeKind::Failed), 1);
}
