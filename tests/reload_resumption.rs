//! TLS resumption across reloads: a session made before a reload resumes after it, even when
//! the reload replaced the listener's certificate (the ticketer and the session-ID cache are
//! kept), while new full handshakes get the new certificate. With `workers = 2`, for TLS 1.3
//! tickets (HTTP/1.1 and h2), TLS 1.2 tickets and TLS 1.2 session IDs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::client::{Proto, TLS12, TLS13};
use common::*;
use levee::stats::HandshakeKind;
use rustls::client::{Resumption, Tls12Resumption};
use rustls::{HandshakeKind as Kind, ProtocolVersion, SupportedProtocolVersion};

/// Connections after each reload, each of which must resume.
const AFTER_EACH_RELOAD: usize = 4;

async fn sessions_resume_across_reloads(
    versions: &'static [&'static SupportedProtocolVersion],
    resumption: Resumption,
    version: ProtocolVersion,
    proto: Proto,
) {
    let ca = TestCa::new();
    let one = ca.leaf("one", &["localhost"]);
    let two = ca.leaf("two", &["localhost"]);
    let (b1, b2) = (Backend::start("b1"), Backend::start("b2"));
    let config = |leaf: &Leaf, backend: &Backend| {
        server_toml(2)
            + &listener_toml("tls", "web", Some(&[leaf]), "", "")
            + &pool_toml("web", &[backend.addr], "")
    };
    let levee = Arc::new(start_levee(&config(&one, &b1)));
    let addr = levee.addr("tls");
    let opts = TlsOpts {
        versions,
        resumption,
        ..TlsOpts::default()
    };
    let opts = if proto == Proto::H2 {
        opts.h2()
    } else {
        opts.h1()
    };
    // One client config, so one client session cache, for every connection below.
    let cfg = client_config(&ca.der(), opts.clone());
    let (reply, info) = tls_get(addr, cfg.clone(), "localhost", proto, "/").await;
    assert_eq!(reply.backend(), Some("b1"));
    assert_eq!(info.handshake, Some(Kind::Full));
    assert_eq!(info.version, Some(version));
    assert_eq!(info.peer_cert.as_ref(), Some(&one.der));

    // Reload twice: the certificate and the backend change; the listener stays bound.
    let steps = [(&two, &b2, "b2"), (&one, &b1, "b1")];
    for (i, (leaf, backend, name)) in steps.into_iter().enumerate() {
        assert_reloaded(
            &reload_to(&levee, &config(leaf, backend)).await,
            i as u64 + 2,
        );
        assert_eq!(levee.addr("tls"), addr, "the listener was re-bound");
        for n in 0..AFTER_EACH_RELOAD {
            let (reply, info) = tls_get(addr, cfg.clone(), "localhost", proto, "/").await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.backend(), Some(name), "reload {i}, connection {n}");
            assert_eq!(
                info.handshake,
                Some(Kind::Resumed),
                "reload {i}, connection {n}: the session from before the reload did not resume"
            );
            assert_eq!(info.version, Some(version));
        }
        // A client without a session gets the certificate of the config now serving. (Its
        // own store: cloned `TlsOpts` share one, and rustls would file this session there.)
        let fresh_opts = TlsOpts {
            resumption: Resumption::disabled(),
            ..opts.clone()
        };
        let fresh = client_config(&ca.der(), fresh_opts);
        let (_, info) = tls_get(addr, fresh, "localhost", proto, "/").await;
        assert_eq!(info.handshake, Some(Kind::Full));
        assert_eq!(
            info.peer_cert.as_ref(),
            Some(&leaf.der),
            "reload {i}: new handshakes do not get the new certificate"
        );
    }

    let resumed = (steps.len() * AFTER_EACH_RELOAD) as u64;
    let t = levee
        .wait_totals(Duration::from_secs(5), |t| {
            t.handshakes_of(HandshakeKind::Resumed) >= resumed
        })
        .await;
    assert_eq!(t.handshakes_of(HandshakeKind::Resumed), resumed);
    assert_eq!(t.handshakes_of(HandshakeKind::Full), 1 + steps.len() as u64);
    assert_eq!(t.handshakes_of(HandshakeKind::Failed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_tickets_resume_across_reloads() {
    sessions_resume_across_reloads(
        TLS13,
        Resumption::default(),
        ProtocolVersion::TLSv1_3,
        Proto::H1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_tickets_resume_across_reloads_over_h2() {
    sessions_resume_across_reloads(
        TLS13,
        Resumption::default(),
        ProtocolVersion::TLSv1_3,
        Proto::H2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_tickets_resume_across_reloads() {
    sessions_resume_across_reloads(
        TLS12,
        Resumption::default().tls12_resumption(Tls12Resumption::SessionIdOrTickets),
        ProtocolVersion::TLSv1_2,
        Proto::H1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_session_ids_resume_across_reloads() {
    sessions_resume_across_reloads(
        TLS12,
        Resumption::default().tls12_resumption(Tls12Resumption::SessionIdOnly),
        ProtocolVersion::TLSv1_2,
        Proto::H1,
    )
    .await;
}
